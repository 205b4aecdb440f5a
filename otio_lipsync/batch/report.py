"""`lipsync batch`, reporting: each result's class (failed, no_sync, out_of_tolerance, ...), and the files
rebuilt from the per-item results at the end: results.jsonl, summary.csv, summary.json, report.html (and the
--filter list)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .results import _dump, item_path

if TYPE_CHECKING:
    from .discover import Item

# --- summary, results.jsonl, report -----------------------------------------------------------------------

def classify(result: dict) -> str:
    if result.get("status") != "ok":
        return "failed"
    if (result.get("analysis") or {}).get("verdict") == "no_sync":
        return "no_sync"
    if "qc" in result:
        return "pass" if result["qc"]["pass"] else "out_of_tolerance"
    report = result.get("timeline_report")
    if report and (report["summary"]["out_of_tolerance"]):
        return "out_of_tolerance"
    if report and report.get("warnings"):
        return "warning"
    return "measured"


ORDER = {"failed": 0, "no_sync": 1, "out_of_tolerance": 2, "warning": 3, "measured": 4, "pass": 5}


@dataclass(frozen=True)
class ScoreFilter:
    """--filter: where to write the files that pass IC-SyncNet's rule (metrics.passes_filter), and its bounds."""
    path: str
    min_probability: float = 0.9
    max_offscreen: float = 0.2


def score_metrics(results: list[dict]) -> list:
    """The metrics the items were scored with (asked for, even if every such item failed), in registry order."""
    from ..metrics import METRICS

    asked = {(r.get("options") or {}).get("score") for r in results if r["kind"] == "media"}
    return [m for name, m in METRICS.items() if name in asked]


def score_summaries(results: list[dict], metrics: list) -> dict:
    """metric name -> metrics.summarise over the items scored with it: the averages `lipsync score` prints."""
    from ..metrics import FileScore, summarise

    out = {}
    for metric in metrics:
        asked = [r for r in results if r["kind"] == "media" and r["options"].get("score") == metric.name]
        scores = [FileScore(r["file"], metric.name, r["score"]["values"], r["score"]["tracks"],
                            r["analysis"]["decode"], r["options"]["face_cropped"]) for r in asked if "score" in r]
        out[metric.name] = summarise(metric, scores, failed=len(asked) - len(scores))
    return out


def write_filter(results: list[dict], score_filter: ScoreFilter) -> list[str]:
    """The icsyncnet-scored files that pass, one per line, sorted (as `lipsync score --filter`)."""
    from ..outputs import atomic_output
    from ..metrics import passes_filter

    kept = sorted({r["file"] for r in results if (r.get("score") or {}).get("metric") == "icsyncnet"
                   and passes_filter(r["score"]["values"], score_filter.min_probability, score_filter.max_offscreen)})
    with atomic_output(score_filter.path, ".txt") as tmp, open(tmp, "w") as f:
        f.writelines(f"{k}\n" for k in kept)
    return kept


def finish(results_dir: str, items: list[Item], standard: str | None, plots: int = 100,
           score_filter: ScoreFilter | None = None) -> dict:
    """Rebuild results.jsonl, summary.csv, summary.json and report.html from the per-item files of ITEMS
    (and the --filter list)."""
    from ..outputs import atomic_output

    results = []
    for item in items:
        with open(item_path(results_dir, item.key)) as f:
            results.append(json.load(f))
    results.sort(key=lambda r: (r["file"], r["key"]))
    with atomic_output(os.path.join(results_dir, "results.jsonl"), ".jsonl") as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n" for r in results)
    counts = {k: 0 for k in ORDER}
    for r in results:
        counts[classify(r)] += 1
    rows = sorted(results, key=lambda r: (ORDER[classify(r)], r["file"], r["key"]))
    metrics = score_metrics(results)
    # one column per metric value (the file's value: the mean over its face tracks), only when scored
    score_keys = [c.key for m in metrics for c in m.columns]
    with atomic_output(os.path.join(results_dir, "summary.csv"), ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "kind", "status", "audio_delay_ms", "offset_frames", "confidence", "drift_ms_per_min",
                    "drift_verdict", "qc_reasons", *score_keys, "error_type", "error", "key", "result"])
        for r in rows:
            a = r.get("analysis") or {}
            drift = a.get("drift") or {}
            values = (r.get("score") or {}).get("values", {})
            w.writerow([r["file"], r["kind"], classify(r), a.get("audio_delay_ms", ""), a.get("offset_frames", ""),
                        a.get("confidence", ""), drift.get("ms_per_minute", "") if drift.get("ms_per_minute")
                        is not None else "", drift.get("verdict", ""), "; ".join((r.get("qc") or {}).get("reasons", [])),
                        *[repr(values[k]) if values.get(k) is not None else "" for k in score_keys],
                        r.get("error_type", ""), r.get("error", ""), r["key"], f"items/{r['key']}.json"])
    # `measured` counts every item that got a measurement, whatever its verdict (pass, out of tolerance,
    # warning are subsets of it); the other keys are disjoint
    counts = {**counts, "measured": len(results) - counts["failed"]}
    summary = {"items": len(results), **counts,
               "out_of_tolerance_files": [r["file"] for r in rows if classify(r) == "out_of_tolerance"],
               "failures": [{"file": r["file"], "error_type": r["error_type"], "error": r["error"]}
                            for r in rows if classify(r) == "failed"]}
    if metrics:
        summary["scores"] = score_summaries(results, metrics)
    if score_filter:
        kept = write_filter(results, score_filter)
        summary["filter"] = {"path": score_filter.path, "min_probability": score_filter.min_probability,
                             "max_offscreen": score_filter.max_offscreen, "kept": len(kept)}
    with atomic_output(os.path.join(results_dir, "summary.json"), ".json") as tmp, open(tmp, "w") as f:
        f.write(_dump(summary))
    write_report(results_dir, rows, counts, standard, plots, summary.get("scores"))
    return summary


def _plot_png(results_dir: str, result: dict, standard: str | None) -> str | None:
    """plots/<key>.png for a measured media item (made once; a resumed batch reuses it)."""
    if not result.get("analysis"):
        return None
    rel = os.path.join("plots", f"{result['key']}.png")
    target = os.path.join(results_dir, rel)
    if not os.path.exists(target):
        from types import SimpleNamespace

        from ..ffmpeg_filter import qc
        from ..ffmpeg_filter.plot import plot_analysis

        os.makedirs(os.path.dirname(target), exist_ok=True)
        plot_analysis(SimpleNamespace(**result["analysis"]), target, qc.STANDARDS[standard] if standard else None)
    return rel


def note_of(result: dict) -> str:
    """The notes cell of a measured media item, in words: the QC reasons, else what the drift says."""
    from ..drift import Drift

    reasons = (result.get("qc") or {}).get("reasons", [])
    if reasons:
        return "; ".join(reasons)
    analysis = result.get("analysis") or {}
    if analysis.get("verdict") == "no_sync":
        return f"no sync found: the audio does not match the faces (p={analysis['sync_probability']:.2f})"
    drift = (result.get("analysis") or {}).get("drift")
    return Drift(**drift).describe() if drift else ""


def write_report(results_dir: str, rows: list[dict], counts: dict, standard: str | None, plots: int,
                 scores: dict | None = None) -> None:
    """report.html: counts (and score averages) at the top, one row per item (failures and out-of-tolerance
    first) with its score values, the offset / confidence plot of the first `plots` measured rows inline
    (base64 PNG), later ones linked."""
    import base64
    import html

    from .. import __version__
    from ..outputs import atomic_output
    from ..metrics import get_metric, summary_line

    metrics = [get_metric(name) for name in scores or {}]
    columns = [c for m in metrics for c in m.columns]

    esc = html.escape
    files = [r["file"] for r in rows]
    root = os.path.commonpath(files) if files else ""
    if len(files) == 1 or (root in files):  # one file (or a file that is the root): its folder
        root = os.path.dirname(root)

    def shown(path: str) -> str:
        return os.path.relpath(path, root) if root else path

    colour = {"failed": "#f4c7c3", "no_sync": "#e1d5f0", "out_of_tolerance": "#fce8b2", "warning": "#fce8b2", "measured": "#ffffff",
              "pass": "#d9ead3"}
    body = []
    inline = 0
    for r in rows:
        status = classify(r)
        a = r.get("analysis") or {}
        cells = [esc(shown(r["file"])), esc(status)]
        if r.get("status") != "ok":
            error = r.get("error", "")
            cells += ["", "", "", esc(error[len(r["file"]) + 2:] if error.startswith(f"{r['file']}: ") else error)]
        elif r["kind"] == "timeline":
            s = r["timeline_report"]["summary"]
            cells += ["", "", "", esc(f"{s['clips_analysed']} clip(s) analysed, {s['out_of_tolerance']} out of "
                                  f"tolerance (EBU R37); annotated: {r.get('timeline', '')}")]
        else:
            p = a.get("sync_probability")
            cells += [f"{a['audio_delay_ms']:+.0f}", f"{a['confidence']:.2f}", "" if p is None else f"{p:.2f}",
                      esc(note_of(r))]
        values = (r.get("score") or {}).get("values", {})
        cells += [f"{values[c.key]:.3f}" if values.get(c.key) is not None else "" for c in columns]
        picture = ""
        rel = _plot_png(results_dir, r, standard)
        if rel and inline < plots:
            with open(os.path.join(results_dir, rel), "rb") as f:
                data = base64.b64encode(f.read()).decode()
            # one line per row: the plot opens on click
            picture = (f'<details><summary>plot</summary><img loading="lazy" width="500" '
                       f'src="data:image/png;base64,{data}"></details>')
            inline += 1
        elif rel:
            picture = f'<a href="{esc(rel)}">plot</a>'
        body.append(f'<tr style="background:{colour[status]}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{picture}</td></tr>")
    head = " &middot; ".join(f"{esc(k.replace('_', ' '))}: <b>{v}</b>" for k, v in counts.items()
                             if v and k != "measured")
    averages = "".join(f"<p>{esc(summary_line(m, scores[m.name]))}</p>" for m in metrics)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lipsync batch report</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 4px;vertical-align:top;font-size:13px;white-space:nowrap}}
details[open] summary{{margin-bottom:4px}}</style></head><body>
<h1>lipsync batch report</h1>
<p>{len(rows)} item(s), {counts.get("measured", 0)} measured: {head}</p>
<p>Paths below are relative to <code>{esc(root)}</code>.</p>
{averages}<p>standard: {esc(standard or "none")}; otio-lipsync {esc(__version__)}. Audio delay: positive = the sound is
late. Failures and out-of-tolerance items first.</p>
<table><tr><th>file</th><th>status</th><th>audio delay (ms)</th><th>confidence</th><th title="sync_probability: how likely the offset is the true one (README: Verdicts)">p(sync)</th><th>notes</th>
{"".join(f"<th>{esc(c.label)}</th>" for c in columns)}<th>offset / confidence over time</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
    with atomic_output(os.path.join(results_dir, "report.html"), ".html") as tmp, open(tmp, "w") as f:
        f.write(page)

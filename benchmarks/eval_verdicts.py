#!/usr/bin/env python
"""Verdicts on the shared clips: `lipsync check` (raw footage, the default model and its calibration) on
every clip of ../shared/data/clips, counted by catalog group. The issue's goals: every `mismatched_*`
clip `no_sync`; >= 95% of synced clips `in_sync` / `offset`. Clips of the calibration persons are
counted apart (they were seen by the calibration, never by the model's training).

    python benchmarks/eval_verdicts.py            # -> benchmarks/results/verdicts_shared.{json,md}
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "clips"


def main():
    from otio_lipsync.errors import LipsyncError
    from otio_lipsync.faces.detectors import make_detector
    from otio_lipsync.footage import analyse_footage
    from otio_lipsync.model import registry
    from otio_lipsync.sync import SyncEngine
    from otio_lipsync.verdict import calibration_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(CLIPS))
    ap.add_argument("--model", default=None)
    ap.add_argument("--groups", default="synced,mismatched,generated")
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "verdicts_shared"))
    args = ap.parse_args()

    model = registry.load(args.model)
    engine = SyncEngine(model)
    calibration = calibration_for(model, engine.vshift)
    calibrated_persons = set(calibration.fitted_on.get("persons", [])) if calibration else set()
    detector = make_detector("blazeface")
    groups = set(args.groups.split(","))
    with open(Path(args.clips) / "catalog.tsv", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["group"] in groups]
    items = []
    t0 = time.time()
    for r in rows:
        path = str(Path(args.clips) / r["file"])
        try:
            a, _ = analyse_footage(path, engine, detector=detector)
            verdict, p, delay = a.verdict, a.sync_probability, a.audio_delay_ms
        except LipsyncError as exc:
            verdict, p, delay = ("no_face" if type(exc).__name__ == "NoFace" else "error"), None, None
        items.append({"file": r["file"], "group": r["group"], "person": r["speaker_hint"],
                      "calibration_person": r["speaker_hint"] in calibrated_persons,
                      "verdict": verdict, "sync_probability": p, "audio_delay_ms": delay})
        print(f"{r['file']}: {verdict} p={p} {delay}", flush=True)

    def table(chosen):
        c = Counter(i["verdict"] for i in chosen)
        return {k: c.get(k, 0) for k in ("in_sync", "offset", "no_sync", "no_face", "error")}

    summary = {}
    for name, chosen in [
        ("synced (all)", [i for i in items if i["group"] == "synced"]),
        ("synced, calibration persons", [i for i in items if i["group"] == "synced" and i["calibration_person"]]),
        ("synced, other persons (house training persons)",
         [i for i in items if i["group"] == "synced" and not i["calibration_person"]]),
        ("mismatched", [i for i in items if i["group"] == "mismatched"]),
        ("generated", [i for i in items if i["group"] == "generated"]),
    ]:
        if chosen:
            summary[name] = {"clips": len(chosen), **table(chosen)}
    synced = summary.get("synced (all)", {})
    result = {"model": model.describe(), "calibration": calibration.no_sync_below if calibration else None,
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
              "seconds": round(time.time() - t0, 1), "summary": summary, "items": items,
              "goals": {"mismatched_all_no_sync": summary.get("mismatched", {}).get("no_sync") == summary.get("mismatched", {}).get("clips"),
                        "synced_measured_share": round((synced.get("in_sync", 0) + synced.get("offset", 0)) / max(synced.get("clips", 1), 1), 4)}}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"Verdicts on ../shared/data/clips, model {model.name} (sha256 {model.sha256[:12]}), "
             f"no_sync below p={result['calibration']}; {result['seconds']} s", "",
             "| group | clips | in_sync | offset | no_sync | no_face | error |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['clips']} | {s['in_sync']} | {s['offset']} | {s['no_sync']} | {s['no_face']} | {s['error']} |")
    lines += ["", "no_sync among synced clips: " + (", ".join(f"{i['file']} (p={i['sync_probability']})" for i in items
                                                             if i["group"] == "synced" and i["verdict"] == "no_sync") or "none"),
              "mismatched: " + ", ".join(f"{i['file']} {i['verdict']} (p={i['sync_probability']})" for i in items
                                         if i["group"] == "mismatched")]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

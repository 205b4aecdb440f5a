#!/usr/bin/env python
"""Does detecting faces on fewer frames change any answer? The raw-footage pipeline on catalog clips with the
detector on every frame (the careful path) and on every 2nd, 3rd and 4th frame (tracking fills in between):
file offset, verdict and number of face tracks side by side, and the CPU each cadence costs.
Results go to benchmarks/results/cadence_shared.{json,md}.

    python benchmarks/bench_cadence.py                  # every 3rd synced and multi-speaker clip, first 5 s
    python benchmarks/bench_cadence.py --every-clip --seconds 20
    python benchmarks/bench_cadence.py --table-only     # the table again from the last run's JSON
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import machine, write_results  # noqa: E402

CLIPS = REPO.parent / "shared" / "data" / "clips"
CADENCES = (1, 2, 3, 4)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=CLIPS, help="a folder with catalog.tsv")
    ap.add_argument("--seconds", type=float, default=5.0, help="analyse each clip's first N seconds")
    ap.add_argument("--every-clip", action="store_true", help="all synced and multi clips (default: every 3rd)")
    ap.add_argument("--model", default=None, help="model name or file (default: the default model)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the last run's .json")
    args = ap.parse_args()
    if args.table_only:
        return rewrite(args.out)

    from otio_lipsync.errors import LipsyncError
    from otio_lipsync.footage import FootageOptions
    from otio_lipsync.pipeline import make_engine, measure, shared_detector

    rows = [r for r in csv.DictReader(open(args.clips / "catalog.tsv"), delimiter="\t")
            if r["group"] in ("synced", "multi_speaker")]
    if not args.every_clip:
        rows = rows[::3]
    engine, detector = make_engine(args.model), shared_detector()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": args.seconds, "clips": {}}
    cpu = {n: 0.0 for n in CADENCES}
    for row in rows:
        path = str(args.clips / row["file"])
        out = {}
        for every in CADENCES:
            t0 = time.process_time()
            try:
                a, _ = measure(path, engine, detector=detector, duration_s=args.seconds,
                               footage_options=FootageOptions(detect_every=every))
                out[every] = {"offset": a.offset_frames, "verdict": a.verdict, "tracks": len(a.tracks)}
            except LipsyncError as exc:
                out[every] = {"error": type(exc).__name__}
            cpu[every] += time.process_time() - t0
        results["clips"][row["file"]] = out
        print(row["file"], out, flush=True)
    results["cpu_s"] = cpu
    write_results(args.out, "cadence_shared", results, markdown(results))


def rewrite(out: Path) -> None:
    """The table again from the JSON of a run (after a change to the table's wording only)."""
    import json

    results = json.loads((out / "cadence_shared.json").read_text())
    results["clips"] = {n: {int(k): v for k, v in c.items()} for n, c in results["clips"].items()}
    results["cpu_s"] = {int(k): v for k, v in results["cpu_s"].items()}
    write_results(out, "cadence_shared", results, markdown(results))


def markdown(r: dict) -> str:
    m, clips = r["machine"], r["clips"]
    lines = [f"# Detection cadence against detecting every frame ({r['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores. {len(clips)} catalog clips "
             f"({sum(n.startswith('synced') for n in clips)} synced, {sum(n.startswith('multi') for n in clips)} "
             "multi-speaker), "
             f"first {r['seconds']:g} s each, default model. `python benchmarks/bench_cadence.py`", "",
             "| detector on | same offset | same verdict | same track count | CPU s (all clips) |", "|---|---|---|---|---|"]
    for every in CADENCES[1:]:
        same = lambda field: sum(c[every].get(field) == c[CADENCES[0]].get(field) for c in clips.values())
        lines.append(f"| every {every}{'nd' if every == 2 else 'rd' if every == 3 else 'th'} frame | "
                     f"{same('offset')}/{len(clips)} | {same('verdict')}/{len(clips)} | {same('tracks')}/{len(clips)} | "
                     f"{r['cpu_s'][every]:.0f} |")
    lines.append(f"| every frame (reference) | — | — | — | {r['cpu_s'][CADENCES[0]]:.0f} |")
    differ = [f"`{name}`: " + ", ".join(f"{k}: {v.get('offset', v.get('error'))}" for k, v in c.items())
              for name, c in clips.items() if len({str(v.get('offset', v.get('error'))) for v in c.values()}) > 1]
    if differ:
        lines += ["", "Clips whose offset differs by cadence (cadence: offset):", ""] + [f"- {d}" for d in differ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

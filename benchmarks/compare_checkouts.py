#!/usr/bin/env python
"""The raw-footage pipeline of two checkouts side by side, in one run, on the same file: each checkout's own
Python (its venv, the package installed from it) times `measure` with the default model loaded, best of 2,
alternating rounds so that both see the same machine. Results: benchmarks/results/checkouts_cpu.{json,md}.

    python benchmarks/compare_checkouts.py --before /work/ci4 --after . --file 1080p.mp4

--fresh times the whole `lipsync check` command instead, one fresh process per run (imports, model load and a
cold process included), as a render farm runs it per file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import machine, write_results  # noqa: E402

TIMING = """
import sys, time, json
import otio_lipsync.cli  # each checkout's command-line process setup, before torch loads (e.g. OMP_WAIT_POLICY)
from otio_lipsync.pipeline import make_engine, measure, shared_detector
engine, detector = make_engine(None), shared_detector()
measure(sys.argv[1], engine, detector=detector)  # warm-up
best = 1e9
for _ in range(2):
    t0 = time.perf_counter(); a, _ = measure(sys.argv[1], engine, detector=detector)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({"seconds": best, "x_realtime": a.duration_s / best, "offset": a.offset_frames}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a checkout with its own .venv")
    ap.add_argument("--after", type=Path, default=REPO)
    ap.add_argument("--file", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--name", default="checkouts_cpu", help="results file name (without .json / .md)")
    ap.add_argument("--fresh", action="store_true", help="time `lipsync check` in a fresh process per run")
    args = ap.parse_args()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "file": args.file.name, "runs": {},
               "fresh": args.fresh}
    for side, checkout in (("before", args.before), ("after", args.after)):
        rev = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        results["runs"][side] = {"commit": rev, "rounds": []}
    for _ in range(args.rounds):
        for side, checkout in (("before", args.before), ("after", args.after)):
            if args.fresh:
                results["runs"][side]["rounds"].append(fresh_run(checkout, args.file))
            else:
                out = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", TIMING, str(args.file)],
                                     capture_output=True, text=True, check=True, cwd=checkout)
                results["runs"][side]["rounds"].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(side, results["runs"][side]["rounds"][-1], flush=True)
    write_results(args.out, args.name, results, markdown(results))


def fresh_run(checkout: Path, file: Path) -> dict:
    """One `lipsync check` of `file` from the checkout's venv, a new process: its wall time and offset."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        t0 = time.perf_counter()
        subprocess.run([str(checkout / ".venv" / "bin" / "lipsync"), "check", "-q", "--json", str(report), str(file)],
                       check=True, cwd=checkout, capture_output=True)
        seconds = time.perf_counter() - t0
        entry = json.loads(report.read_text())
        entry = entry[0] if isinstance(entry, list) else entry
    return {"seconds": seconds, "x_realtime": entry["duration_s"] / seconds, "offset": entry["offset_frames"]}


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Raw-footage pipeline, two checkouts side by side ({r['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. `{r['file']}`, "
             + ("the whole `lipsync check` command, a fresh process per run (`--fresh`)" if r.get("fresh") else
                "default model loaded, best of 2 per round")
             + ", rounds alternating. `python benchmarks/compare_checkouts.py`", "",
             "| checkout | commit | seconds (best round) | x real time | seconds, each round | offset |",
             "|---|---|---|---|---|---|"]
    for side, run in r["runs"].items():
        best = min(run["rounds"], key=lambda x: x["seconds"])
        each = ", ".join(f"{x['seconds']:.2f}" for x in run["rounds"])
        lines.append(f"| {side} | {run['commit']} | {best['seconds']:.1f} | {best['x_realtime']:.2f}x | {each} | "
                     f"{best['offset']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

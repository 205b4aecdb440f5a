#!/usr/bin/env python
"""`lipsync batch` throughput: the same real clips through the local pool with 1 and 2 workers and through a
local Ray instance with 2 worker processes, plus raw footage (face detection) for the per-second cost of
real work, and an estimate of what a 1,000-hour archive takes on N nodes. Each configuration runs from an
empty results folder (model loads, pool/Ray start-up and the final report included in the wall time).
Results go to benchmarks/results/batch_cpu.{json,md}.

    python benchmarks/bench_batch.py            # 40 GRID clips (3 s, face-cropped) + 4 raw 10 s clips
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OTIO_LIPSYNC_SHARED", REPO.parent / "shared"))
GRID = SHARED / "data" / "grid_s1" / "video"
RAW = [SHARED / "data" / "clips" / n for n in ("synced_dfrf_cnn_anchor_01.mp4", "synced_dfrf_cnn_anchor_02.mp4",
                                               "synced_edtalk_ted_lieu_01.mp4", "synced_hdtf_aoc_01.mp4")]


def one(inputs, options, workers, ray=False, threads=None):
    from otio_lipsync.batch import run_batch

    out = tempfile.mkdtemp(prefix="bench-batch-")
    try:
        t0 = time.perf_counter()
        summary = run_batch([str(p) for p in inputs], out, options=options, workers=workers, ray=ray, threads=threads,
                            progress=False, log=lambda m: None)
        wall = time.perf_counter() - t0
        runs = [json.loads(line) for line in Path(out, "runs.jsonl").read_text().splitlines()]
        results = [json.loads(line) for line in Path(out, "results.jsonl").read_text().splitlines()]
    finally:
        shutil.rmtree(out)
    media_s = sum(r["analysis"]["duration_s"] for r in results if r.get("analysis"))
    item_s = [r["seconds"] for r in runs]
    return {"items": len(results), "failed": summary["failed"], "workers": workers, "ray": ray,
            "wall_s": round(wall, 2), "items_per_hour": round(len(results) / wall * 3600),
            "media_s": round(media_s, 2), "media_hours_per_hour": round(media_s / wall, 2),
            "median_item_s": round(statistics.median(item_s), 3),
            "cpu_s_per_media_s": round(sum(item_s) / media_s, 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    args = ap.parse_args()
    grid = sorted(GRID.glob("*.mp4"))[: args.clips]
    if len(grid) < args.clips:
        raise SystemExit(f"needs {args.clips} clips in {GRID}")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    load_before = os.getloadavg()[0]
    rows = []
    for workers, ray, threads in ((1, False, None), (1, False, 1), (2, False, None), (2, True, None)):
        row = one(grid, {"face_cropped": True}, workers, ray, threads)
        row["threads_per_worker"] = threads or max(1, len(os.sched_getaffinity(0)) // workers)
        row["config"] = (f"{'Ray (local, 2 worker processes)' if ray else f'local pool, {workers} worker(s)'}, "
                         f"{row['threads_per_worker']} thread(s) each")
        row["input"] = f"{len(grid)} GRID s1 clips (3 s, face-cropped)"
        rows.append(row)
        print(row, flush=True)
        if ray:
            import ray as ray_module

            ray_module.shutdown()
    raw = one([p for p in RAW if p.exists()], {"face_cropped": False}, 2)
    raw["config"], raw["input"] = "local pool, 2 workers, 1 thread each", f"{raw['items']} real 10 s clips, raw footage (BlazeFace)"
    rows.append(raw)
    print(raw, flush=True)
    with open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    cores = len(os.sched_getaffinity(0))
    # archive estimate: a node like this one, running 2 workers, processes media at the measured rate of the
    # 2-worker pool; N nodes scale linearly (items are independent, storage assumed not the bottleneck)
    archive_h = 1000.0
    estimate = []
    for label, row in (("face-cropped (GRID)", rows[2]), ("raw footage", raw)):
        node_hours = archive_h / row["media_hours_per_hour"]
        estimate.append({"footage": label, "media_hours_per_node_hour": row["media_hours_per_hour"],
                         "node_hours": round(node_hours, 1),
                         "wall_hours": {n: round(node_hours / n, 2) for n in (1, 10, 100)}})
    load_after = os.getloadavg()[0]
    out = {"cpu": cpu, "cores": cores, "load_average_1min": [load_before, load_after], "rows": rows, "archive_hours": archive_h, "estimate": estimate}
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "batch_cpu.json").write_text(json.dumps(out, indent=1) + "\n")
    md = [(f"`lipsync batch`, house model, {cpu}, {cores} cores (shared with other work). Wall time from an empty "
          "results folder: pool/Ray start-up, model loads and the final report included. 1-minute load average "
          f"{load_before:.1f} before the runs, {load_after:.1f} after: other processes on the machine take cores from "
          "these numbers (a 1-worker run uses 2 torch threads, so it suffers most)."), "",
          ("| configuration | input | items | wall (s) | items/hour | media h per hour | median s/item | "
          "worker s per media s |"), "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['config']} | {r['input']} | {r['items']} | {r['wall_s']} | {r['items_per_hour']} | "
           f"{r['media_hours_per_hour']} | {r['median_item_s']} | {r['cpu_s_per_media_s']} |" for r in rows]
    md += ["", (f"Estimate for a {archive_h:.0f}-hour archive, from the measured rate of the 2-worker pool on this "
           "machine (one node = this 2-core machine; N nodes scale linearly: items are independent, the media on "
           "storage that keeps up; Ray's scheduling overhead per task is the difference between the pool and Ray "
           "rows above):"), "",
           "| footage | media h per node-hour | node-hours | 1 node (h) | 10 nodes (h) | 100 nodes (h) |",
           "|---|---|---|---|---|---|"]
    md += [f"| {e['footage']} | {e['media_hours_per_node_hour']} | {e['node_hours']} | {e['wall_hours'][1]} | "
           f"{e['wall_hours'][10]} | {e['wall_hours'][100]} |" for e in estimate]
    (res / "batch_cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

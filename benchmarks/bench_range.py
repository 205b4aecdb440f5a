#!/usr/bin/env python
"""What the wider default search costs: the SyncNet stage (SyncEngine, house model, streaming distances and
the offset included) on a 20 s clip at +-15 frames (the old default) and +-25 frames (+-1 s, the default
now), on the same decoded 224x224 frames and audio. Results go to benchmarks/results/range_cpu.{json,md}.

    python benchmarks/bench_range.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "synced_latentsync_young_man_white_tee_01.mp4"


def run(engine, frames, audio, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        s = engine.stream()
        for i in range(0, len(frames), 64):  # chunks as media.decode yields them
            s.feed_video(frames[i:i + 64])
            s.feed_audio(audio[i * 640:(i + 64) * 640])
        r = s.finish()
        best = min(best, time.perf_counter() - t0)
    return best, r


def main():
    from otio_lipsync import media
    from otio_lipsync.model import registry
    from otio_lipsync.sync import SyncEngine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, audio = media.read_all(args.clip, size=(224, 224))
    house = registry.load("house")
    rows = []
    for vshift in (15, 25):
        engine = SyncEngine(house, vshift=vshift)
        run(engine, frames[:40], audio[:40 * 640], 1)  # warm-up
        seconds, r = run(engine, frames, audio, args.repeats)
        rows.append({"vshift": vshift, "range_ms": vshift * 40, "seconds": seconds, "windows": r.num_windows,
                     "realtime_x": len(frames) / 25 / seconds, "offset_frames": r.offset_frames})
        print(f"+-{vshift} frames: {seconds:.2f} s for {len(frames) / 25:.1f} s of video "
              f"({rows[-1]['realtime_x']:.1f}x real time), offset {r.offset_frames}")
    cost = rows[1]["seconds"] / rows[0]["seconds"] - 1
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    out = {"clip": args.clip, "frames": len(frames), "cpu": cpu, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "model": house.sha256[:12], "rows": rows, "extra_time": cost}
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "range_cpu.json").write_text(json.dumps(out, indent=1) + "\n")
    md = [f"SyncNet stage (SyncEngine, house {house.sha256[:12]}) on {Path(args.clip).name} ({len(frames)} frames, "
          f"{len(frames) / 25:.0f} s), {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"best of {args.repeats}", "",
          "| search | seconds | x real time | offset (frames) |", "|---|---|---|---|"]
    md += [f"| +-{r['vshift']} frames (+-{r['range_ms']} ms) | {r['seconds']:.2f} | {r['realtime_x']:.1f} | "
           f"{r['offset_frames']} |" for r in rows]
    md += ["", f"+-25 costs {cost:+.0%} against +-15."]
    (res / "range_cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""The two architectures side by side in one run: SyncNet (FastSyncNet layout, float32 and bfloat16)
and the compact house model, on the same decoded 224x224 face crops and audio, through `SyncEngine`
(streaming distances over +-15 frames included). Reports windows per second (one window = one 25-fps
frame of input) and the real-time factor. Results go to benchmarks/results/models_cpu.{json,md}.

    python benchmarks/bench_models.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "reference" / "inputs" / "hdtf_kh_sync.mp4"
STAND_IN = REPO.parent / "shared" / "reference" / "syncnet_v2_seed0.model"


def run(engine, frames, audio, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        s = engine.stream()
        for i in range(0, len(frames), 64):
            s.feed_video(frames[i:i + 64])
            s.feed_audio(audio[i * 640:(i + 64) * 640])
        r = s.finish()
        best = min(best, time.perf_counter() - t0)
    return best, r.num_windows


def main():
    from otio_lipsync import media
    from otio_lipsync.model import load_model, registry
    from otio_lipsync.sync import SyncEngine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(DEFAULT_CLIP))
    ap.add_argument("--syncnet", default=str(STAND_IN), help="SyncNet weights (speed does not depend on them)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    frames, audio = media.read_all(args.clip, size=(224, 224))
    syncnet = load_model(args.syncnet)
    house = registry.load("house")
    rows = []
    for label, model, precision in [("SyncNet (float32)", syncnet, "float32"), ("SyncNet (bfloat16)", syncnet, "bfloat16"),
                                    (f"compact house ({house.sha256[:12]})", house, "float32")]:
        engine = SyncEngine(model, precision=precision, vshift=15)  # one range for both architectures
        run(engine, frames[:40], audio[:40 * 640], 1)  # warm-up
        seconds, windows = run(engine, frames, audio, args.repeats)
        params = sum(p.numel() for p in model.net.parameters())
        rows.append({"model": label, "windows_per_s": windows / seconds, "realtime_x": windows / seconds / 25,
                     "seconds": seconds, "windows": windows, "parameters": params})
        print(f"{label}: {windows / seconds:.1f} windows/s ({windows / seconds / 25:.1f}x real time), {params / 1e6:.1f} M parameters")
    base = rows[0]["windows_per_s"]
    for r in rows:
        r["speedup_vs_syncnet_float32"] = r["windows_per_s"] / base
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"clip": args.clip, "frames": len(frames), "cpu": cpu, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "rows": rows}
    res = REPO / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "models_cpu.json").write_text(json.dumps(out, indent=1))
    md = [f"SyncEngine on {Path(args.clip).name} ({len(frames)} frames), {cpu}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; best of {args.repeats}", "",
          "| model | windows/s | x real time | vs SyncNet fp32 | parameters |", "|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['windows_per_s']:.1f} | {r['realtime_x']:.1f} | {r['speedup_vs_syncnet_float32']:.1f}x | "
           f"{r['parameters'] / 1e6:.1f} M |" for r in rows]
    (res / "models_cpu.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

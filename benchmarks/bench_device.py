#!/usr/bin/env python
"""The SyncNet stage on a device: windows per second and x real time for each model and batch size, ready
for a GPU machine and runnable on the CPU (where it checks the code path). Same decoded input for every row;
the offset must not depend on the device, the batch or the precision. Then a multi-speaker scene from raw
footage with every open face track's windows in one batch (`batch_tracks`, on by default on a GPU) against
one batch per track. Results go to benchmarks/results/device_<device>.{json,md}.

    python benchmarks/bench_device.py --device auto              # CUDA when torch sees a GPU
    python benchmarks/bench_device.py --device cuda --batch-sizes 16 64 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import DEFAULT_CLIP, DEFAULT_MODEL, best_time, machine, write_results  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a 224x224 face-crop clip")
    ap.add_argument("--models", nargs="+", default=["house", str(DEFAULT_MODEL)],
                    help="names or files (default: the house model and syncnet_v2-format stand-in weights)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loops", type=int, default=1,
                    help="play the clip this many times end to end (a GPU needs more than 8 s to fill its batches)")
    ap.add_argument("--scene", type=Path, default=REPO.parent / "shared" / "data" / "clips" /
                    "multi_avobjects_cnn_panel_01.mp4", help="raw multi-speaker footage for the tracks rows")
    ap.add_argument("--scene-seconds", type=float, default=8.0, help="how much of the scene to analyse")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    from otio_lipsync import media
    from otio_lipsync.pipeline import load_model, make_engine, resolve_device
    from otio_lipsync.sync import SAMPLES_PER_FRAME

    device = resolve_device(args.device)
    frames, audio = media.read_all(str(args.clip))
    if args.loops > 1:  # whole 40 ms frames of audio per video frame, so the loops stay in step
        audio = audio[:len(frames) * SAMPLES_PER_FRAME]
        frames, audio = np.concatenate([frames] * args.loops), np.concatenate([audio] * args.loops)
    duration = len(frames) / 25.0
    results = {"machine": machine(), "device": device, "date": time.strftime("%Y-%m-%d"), "clip": args.clip.name,
               "loops": args.loops, "seconds": duration, "rows": []}
    if device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name(torch.device(device))
    for name in args.models:
        loaded = load_model(name)
        offsets = set()
        for batch in args.batch_sizes:
            # bfloat16 on GPUs only: CPUs without AVX512-BF16/AMX emulate it ~20x slower (README, Speed);
            # int8 is a CPU mode
            precisions = ["float32"]
            if loaded.architecture == "syncnet":
                precisions.append("bfloat16" if device.startswith("cuda") else "int8")
            for precision in precisions:
                engine = make_engine(loaded, batch_size=batch, precision=precision, device=device)

                def run():
                    result = engine.analyse([("video", frames), ("audio", audio)])
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    return result

                result = run()  # warm-up: kernels are chosen on first use
                best = best_time(args.repeats, run)
                offsets.add(result.offset_frames)
                row = {"model": loaded.describe()["name"], "batch": batch, "precision": precision,
                       "windows": result.num_windows, "windows_per_s": result.num_windows / best,
                       "x_realtime": duration / best, "offset": result.offset_frames}
                results["rows"].append(row)
                print(row, flush=True)
        assert len(offsets) == 1, f"{name}: the offset depends on the batch or precision: {offsets}"
    if args.scene.exists():
        results["tracks"] = scene_rows(args, device)
    write_results(args.out, f"device_{device.replace(':', '')}", results, markdown(results))


def scene_rows(args, device: str) -> list[dict]:
    """The default model on raw multi-speaker footage: tracks batched together or one batch per track."""
    from otio_lipsync import media
    from otio_lipsync.footage import analyse_footage
    from otio_lipsync.pipeline import make_engine, shared_detector

    engine, detector = make_engine(None, device=device), shared_detector()
    seconds = min(args.scene_seconds, media.probe(str(args.scene)).duration_s)
    rows = []
    for together in (False, True):
        engine.batch_tracks = together

        def run():
            return analyse_footage(str(args.scene), engine, detector=detector, duration_s=seconds)

        analysis, tracks = run()
        best = best_time(args.repeats, run)
        rows.append({"scene": args.scene.name, "seconds": seconds, "batch_tracks": together, "tracks": len(tracks),
                     "x_realtime": seconds / best, "offset": analysis.offset_frames})
        print(rows[-1], flush=True)
    assert rows[0]["offset"] == rows[1]["offset"], "batching tracks together changed the offset"
    return rows


def markdown(r: dict) -> str:
    m = r["machine"]
    where = r.get("gpu") or f"{m['cpu']}, {m['cores']} cores"
    looped = f", the clip played {r['loops']} times" if r.get("loops", 1) > 1 else ""
    lines = [f"# SyncNet stage on {r['device']} ({r['date']})", "",
             f"{where}; torch {m['torch']}. `{r['clip']}` ({r['seconds']:.1f} s{looped}), decoded once, model loaded; "
             "best of runs. `python benchmarks/bench_device.py`", "",
             "| model | batch | precision | windows/s | x real time | offset |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['model']} | {row['batch']} | {row['precision']} | {row['windows_per_s']:.0f} | "
                     f"{row['x_realtime']:.1f}x | {row['offset']} |")
    if r.get("tracks"):
        first = r["tracks"][0]
        lines += ["", f"Raw footage, default model, the first {first['seconds']:g} s of `{first['scene']}` "
                  f"({first['tracks']} face tracks; decoding and detection included):", "",
                  "| tracks' windows | x real time | offset |", "|---|---|---|"]
        for row in r["tracks"]:
            lines.append(f"| {'one batch for all tracks' if row['batch_tracks'] else 'one batch per track'} | "
                         f"{row['x_realtime']:.2f}x | {row['offset']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

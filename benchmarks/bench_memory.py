#!/usr/bin/env python
"""Peak memory of a whole `lipsync check` against file length, on generated 1080p25 raw footage.

A real 720p single-speaker clip is scaled to 1080p25 and encoded once (~22 s); longer files are that encode
looped with `-c copy` (no re-encode, so building a 1-hour file takes seconds). Each file is checked by a fresh
`lipsync check` process (default model, its JSON written to a temporary file), whose peak RSS and wall time are
recorded, and its heap sampled (`heap_sampled`: what the program holds against what malloc keeps mapped).
Results go to benchmarks/results/memory_cpu.{json,md}.

    python benchmarks/bench_memory.py                 # 1 min and 60 min (the 60 min run takes ~9 min on VM B)
    python benchmarks/bench_memory.py --minutes 1 10
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "synced_w2lgfpgan_presenter_01.mp4"
GOAL_MIB = 1.5 * 1024


def main():
    if sys.argv[1:2] == ["--child"]:  # `lipsync check` itself, its heap sampled (heap_sampled): --child HEAP_JSON ARGS
        heap_sampled(sys.argv[2])
        from otio_lipsync.cli import main as lipsync

        lipsync(sys.argv[3:], prog_name="lipsync")
        return
    # imported after the child's branch: bench_sync imports torch, which `lipsync check` imports only once its
    # process settings are made (otio_lipsync/cli.py)
    from bench_sync import machine, peak_rss_of, write_results

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real single-speaker clip to loop")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 60], help="file lengths to check")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--table-only", action="store_true", help="rewrite the .md from the saved .json")
    args = ap.parse_args()
    if args.table_only:
        results = json.loads((args.out / "memory_cpu.json").read_text())
        write_results(args.out, "memory_cpu", results, markdown(results))
        return

    from otio_lipsync import media

    ffmpeg = media.find_ffmpeg()
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "load_before": os.getloadavg()[0],
               "clip": args.clip.name, "runs": []}
    with tempfile.TemporaryDirectory(prefix="lipsync-memory-") as tmp:
        base = Path(tmp) / "base_1080p25.mp4"
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-stream_loop", "2", "-i", str(args.clip),
                        "-vf", "scale=1920:1080:flags=lanczos,fps=25", "-c:v", "libx264", "-crf", "18",
                        "-preset", "fast", "-c:a", "aac", str(base)], check=True)
        for minutes in args.minutes:
            path = Path(tmp) / f"long_{minutes:g}min.mp4"
            subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(base),
                            "-t", str(minutes * 60), "-c", "copy", str(path)], check=True)
            duration = media.probe(str(path)).duration_s
            report = Path(tmp) / f"long_{minutes:g}min.json"
            heap = Path(tmp) / f"heap_{minutes:g}min.json"
            mib, wall, code = peak_rss_of([sys.executable, __file__, "--child", str(heap), "check", "--json",
                                           str(report), "-q", str(path)])
            offset = json.loads(report.read_text())[0]["offset_frames"] if code == 0 else None
            run = {"minutes": minutes, "duration_s": duration, "exit_code": code, "peak_rss_mib": mib,
                   "wall_s": wall, "x_real_time": duration / wall, "offset_frames": offset,
                   "json_mib": report.stat().st_size / 2**20 if report.exists() else None,
                   "heap": json.loads(heap.read_text()) if heap.exists() else None}
            results["runs"].append(run)
            print(run, flush=True)
            path.unlink()
    results["load_after"] = os.getloadavg()[0]
    write_results(args.out, "memory_cpu", results, markdown(results))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def heap_sampled(out: str, every_s: float = 0.5) -> None:
    """From now until exit, sample glibc's heap in this process (mallinfo2): the bytes the program holds (in use)
    and the bytes malloc keeps mapped for it (in use + freed but kept), at their highest, written to `out` at exit.
    RSS alone cannot tell the two apart. Nothing is written where glibc has no mallinfo2 (before 2.33, not Linux)."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return
    mallinfo2.restype = _Mallinfo2
    mib = 2 ** 20
    peak = {"in_use_mib": 0.0, "held_mib": 0.0, "samples": 0}

    def sample():
        info = mallinfo2()
        peak["in_use_mib"] = max(peak["in_use_mib"], (info.uordblks + info.hblkhd) / mib)
        peak["held_mib"] = max(peak["held_mib"], (info.arena + info.hblkhd) / mib)
        peak["samples"] += 1

    def sampler():
        while True:
            sample()
            time.sleep(every_s)

    def write():
        sample()
        Path(out).write_text(json.dumps(peak))

    threading.Thread(target=sampler, daemon=True).start()
    atexit.register(write)


def markdown(r: dict) -> str:
    from bench_sync import machine_line

    lines = [f"# Peak memory of `lipsync check` against file length ({r['date']})", "",
             f"{machine_line(r)} 1080p25 H.264 made by looping "
             f"{r['clip']} (scaled, encoded once, then `-c copy`); default model; one fresh process per file.", "",
             "| file length | peak RSS | heap in use, highest | heap held by malloc, highest | wall | x real time | "
             "offset | JSON report |", "|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        heap = run.get("heap") or {}
        in_use = f"{heap['in_use_mib']:.0f} MiB" if heap else "—"
        held = f"{heap['held_mib']:.0f} MiB" if heap else "—"
        lines.append(f"| {run['minutes']:g} min | {run['peak_rss_mib']:.0f} MiB | {in_use} | {held} | "
                     f"{run['wall_s']:.0f} s | {run['x_real_time']:.2f}x | {run['offset_frames']} | "
                     f"{run['json_mib'] or 0:.1f} MiB |")
    worst = max(run["peak_rss_mib"] for run in r["runs"])
    lines += ["", f"Goal: under {GOAL_MIB:.0f} MiB for a 1-hour file; worst here {worst:.0f} MiB. Frames, crops and "
              "embeddings are dropped as the analysis streams; what the program holds is the heap in use (glibc's "
              "mallinfo2, sampled every 0.5 s through the run: allocations by Python, numpy, torch's CPU tensors and "
              "the native libraries alike), and what malloc keeps mapped for it besides is freed memory held for "
              "reuse (the `lipsync` command lets malloc keep up to 256 MiB free at the top of each heap, "
              "otio_lipsync/allocator.py; freed blocks inside a heap stay mapped too). The offsets are no "
              "accuracy check: the file is one clip looped with `-c copy`, a seam every ~22 s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

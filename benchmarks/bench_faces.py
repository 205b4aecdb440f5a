#!/usr/bin/env python
"""Raw-footage pipeline speed and memory at 720p and 1080p25, side by side with decoding alone.

For each clip (a real 720p single-speaker clip looped to ~22 s, and the same scaled to 1080p25): decoding alone
with the ffmpeg CLI (`ffmpeg -i clip -f null -`, its default threads, and with `-threads` set to the decoder threads
the pipeline gives the file) and with our decoder
(YUV pictures + detector previews, as the faces stage asks), the faces stage alone (shots, BlazeFace, tracks,
crops), the whole `lipsync check` pipeline with the model loaded (the default model, and the original SyncNet
architecture with syncnet_v2-format weights; the default model's runs alternate with ffmpeg's, `--pairs`), the
offset against the careful path (detector on every frame), and the peak RSS
and wall time of a whole `lipsync check` process. Results go to benchmarks/results/faces_cpu.{json,md}.

    python benchmarks/bench_faces.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# as the `lipsync` command sets it before torch loads (otio_lipsync/cli.py): OpenMP threads sleep between regions
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from bench_sync import (DEFAULT_MODEL, best_time, machine, machine_line, peak_rss_of, timed,  # noqa: E402
                        write_results)

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "synced_w2lgfpgan_presenter_01.mp4"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", type=Path, default=DEFAULT_MODEL,
                    help="syncnet_v2-format weights for the original architecture's row")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real single-speaker 720p clip")
    ap.add_argument("--loops", type=int, default=3, help="play the clip this many times (longer runs, steadier)")
    ap.add_argument("--repeats", type=int, default=2, help="best of N for each in-process timing")
    ap.add_argument("--pairs", type=int, default=5,
                    help="rounds of ffmpeg decode then the whole pipeline, back to back, for the 2x ratio")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    from otio_lipsync import media
    from otio_lipsync.allocator import keep_freed_memory
    from otio_lipsync.footage import FootageOptions, FootageScan, decoder_threads_for
    from otio_lipsync.pipeline import make_engine, measure, shared_detector

    keep_freed_memory()  # as the `lipsync` command's processes do (otio_lipsync/allocator.py)
    engines = {"default": make_engine(None), "original": make_engine(str(args.original))}
    detector = shared_detector()
    ffmpeg = media.find_ffmpeg()
    load = os.getloadavg()[0]
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "load_before": load, "clips": {}}
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as tmp:
        looped, hd = Path(tmp) / "720p.mp4", Path(tmp) / "1080p25.mp4"
        encode = ["-c:v", "libx264", "-crf", "18", "-preset", "fast", "-c:a", "aac"]
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-stream_loop", str(args.loops - 1), "-i",
                        str(args.clip), *encode, str(looped)], check=True)
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(looped), "-vf",
                        "scale=1920:1080:flags=lanczos,fps=25", *encode, str(hd)], check=True)
        for label, path in [("720p (source, looped)", looped), ("1080p25 (upscaled)", hd)]:
            path = str(path)
            info = media.probe(path)
            duration = info.duration_s
            row = {"file": Path(path).name, "size": f"{info.width}x{info.height}", "fps": info.fps,
                   "duration_s": duration}
            # the decoder threads the pipeline gives this file (one on two cores up to 4K: the analysis holds a core)
            our_threads = decoder_threads_for(info)
            row["decoder_threads"] = our_threads or "ffmpeg's default"

            def ffmpeg_decode(threads=None):
                cap = ["-threads", str(threads)] if threads else []
                subprocess.run([ffmpeg, "-nostdin", "-v", "error", *cap, "-i", path, "-f", "null", "-"], check=True)

            ffmpeg_s = best_time(args.repeats, ffmpeg_decode)
            row["ffmpeg_decode_x"] = duration / ffmpeg_s
            # as the faces stage decodes: YUV pictures (no full-frame BGR), the detector's previews, and the decoder
            # threads it leaves beside the analysis (one on two cores: slower alone, faster in the pipeline)
            decode = lambda: [None for _ in FootageScan(path, detector=detector).decoded({})]  # noqa: E731
            row["decode_x"] = duration / best_time(args.repeats, decode)

            def scan():
                for _ in FootageScan(path, detector=detector):
                    pass

            row["faces_stage_x"] = duration / best_time(args.repeats, scan)
            for name, engine in engines.items():
                measure(path, engine, detector=detector)  # warm-up
                if name == "default":
                    # the 2x goal: ffmpeg and the whole pipeline back to back in each round, so that both see the
                    # same moment of a shared machine; the ratio of the bests, and the median of the rounds' ratios
                    # (also ffmpeg on the pipeline's own decoder threads: the "with the same threads")
                    rounds = [(timed(ffmpeg_decode), timed(lambda: ffmpeg_decode(our_threads)),
                               timed(lambda: measure(path, engine, detector=detector))) for _ in range(args.pairs)]
                    whole = min(w for _, _, w in rounds)
                    ffmpeg_s = min(ffmpeg_s, *(f for f, _, _ in rounds))
                    same_s = min(f for _, f, _ in rounds)
                    row["ffmpeg_decode_x"] = duration / ffmpeg_s
                    row["ffmpeg_decode_same_threads_x"] = duration / same_s
                    row["paired_ratios"] = [w / f for f, _, w in rounds]
                    row["whole_default_vs_ffmpeg_decode_median"] = float(np.median(row["paired_ratios"]))
                    row["whole_default_vs_ffmpeg_same_threads"] = whole / same_s
                    row["whole_default_vs_ffmpeg_same_threads_median"] = float(np.median([w / f for _, f, w in rounds]))
                else:
                    whole = best_time(args.repeats, lambda: measure(path, engine, detector=detector))
                row[f"whole_{name}_x"] = duration / whole
                row[f"whole_{name}_vs_ffmpeg_decode"] = whole / ffmpeg_s
            fast, _ = measure(path, engines["default"], detector=detector)
            careful, _ = measure(path, engines["default"], detector=detector,
                                 footage_options=FootageOptions(detect_every=1))
            row["offset"], row["offset_careful"] = fast.offset_frames, careful.offset_frames
            mib, wall, code = peak_rss_of([sys.executable, "-m", "otio_lipsync", "check", "--json", "/dev/null",
                                           "-q", path])
            assert code == 0
            row["peak_rss_mib"], row["cli_wall_s"] = mib, wall
            results["clips"][label] = row
            print(label, row, flush=True)
    results["load_after"] = os.getloadavg()[0]
    write_results(args.out, "faces_cpu", results, markdown(results))


def markdown(r: dict) -> str:
    lines = [f"# Raw-footage pipeline on CPU ({r['date']})", "",
             f"{machine_line(r)} x = times faster than real time, best of runs; whole pipeline "
             "with the model loaded; `python benchmarks/bench_faces.py`.", "",
             "| clip | ffmpeg -f null | our decode | faces stage | whole, default model | whole / ffmpeg decode "
             "(best; median of paired rounds; their range) | ffmpeg on our decoder's threads; whole / it "
             "(best; median) "
             "| whole, original SyncNet | offset (careful path) | `lipsync check` wall, peak RSS |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, c in r["clips"].items():
        lines.append(f"| {label}, {c['size']}, {c['duration_s']:.1f} s | {c['ffmpeg_decode_x']:.1f}x | "
                     f"{c['decode_x']:.1f}x | {c['faces_stage_x']:.1f}x | **{c['whole_default_x']:.2f}x** | "
                     f"{c['whole_default_vs_ffmpeg_decode']:.2f}; {c['whole_default_vs_ffmpeg_decode_median']:.2f}; "
                     f"{min(c['paired_ratios']):.2f}-{max(c['paired_ratios']):.2f} | "
                     f"{c['ffmpeg_decode_same_threads_x']:.1f}x ({c['decoder_threads']}); "
                     f"{c['whole_default_vs_ffmpeg_same_threads']:.2f}; "
                     f"{c['whole_default_vs_ffmpeg_same_threads_median']:.2f} | "
                     f"{c['whole_original_x']:.2f}x | "
                     f"{c['offset']} ({c['offset_careful']}) | {c['cli_wall_s']:.1f} s, {c['peak_rss_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Raw-footage pipeline speed and memory on a 720p real clip and a 1080p25 version of it.

For each: decoding alone, the faces stage alone (shots + BlazeFace + tracks + crops), the whole
`lipsync check` pipeline at float32 and bfloat16 (x real time, model loaded), and the peak RSS of a
`lipsync check` process. Results go to benchmarks/results/faces_cpu.{json,md}.

    python benchmarks/bench_faces.py --model ../shared/reference/syncnet_v2_seed0.model
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sync import DEFAULT_MODEL, machine, peak_rss_of, write_results  # noqa: E402

DEFAULT_CLIP = REPO.parent / "shared" / "data" / "clips" / "synced_w2lgfpgan_presenter_01.mp4"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real single-speaker 720p clip")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()

    from otio_lipsync import media
    from otio_lipsync.footage import FootageScan, analyse_footage
    from otio_lipsync.model import load_model
    from otio_lipsync.sync import SyncEngine

    loaded = load_model(args.model)
    engines = {"float32": SyncEngine(loaded), "bfloat16": SyncEngine(loaded, precision="bfloat16")}
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "clips": {}}
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as tmp:
        hd = Path(tmp) / "1080p25.mp4"
        subprocess.run([media.find_ffmpeg(), "-nostdin", "-v", "error", "-y", "-i", str(args.clip), "-vf",
                        "scale=1920:1080:flags=lanczos,fps=25", "-c:v", "libx264", "-crf", "18", "-preset", "fast",
                        "-c:a", "copy", str(hd)], check=True)
        for label, path in [("720p (source)", args.clip), ("1080p25 (upscaled)", hd)]:
            info = media.probe(str(path))
            duration = info.duration_s
            row = {"file": Path(path).name, "size": f"{info.width}x{info.height}", "fps": info.fps,
                   "duration_s": duration}
            row["decode_x"] = duration / timed(lambda: [None for _ in media.decode(str(path))])

            def scan():
                for _ in FootageScan(str(path)):
                    pass

            row["faces_stage_x"] = duration / timed(scan)
            for precision, engine in engines.items():
                analyse_footage(str(path), engine)  # warm-up
                row[f"whole_{precision}_x"] = duration / timed(lambda: analyse_footage(str(path), engine))
            mib, wall, code = peak_rss_of([sys.executable, "-m", "otio_lipsync", "check", "--model", str(args.model),
                                           "--json", "/dev/null", "-q", str(path)])
            assert code == 0
            row["peak_rss_mib"] = mib
            row["cli_wall_s"] = wall
            results["clips"][label] = row
            print(label, row, flush=True)
    write_results(args.out, "faces_cpu", results, markdown(results))


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [f"# Raw-footage pipeline on CPU ({r['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}. Detection every 2nd frame (default), "
             "one face. x = times faster than real time; whole pipeline with the model already loaded.", "",
             "| clip | decode | faces stage | whole, float32 | whole, bfloat16 | peak RSS (CLI) |",
             "|---|---|---|---|---|---|"]
    for label, c in r["clips"].items():
        lines.append(f"| {label}, {c['size']} | {c['decode_x']:.1f}x | {c['faces_stage_x']:.1f}x | "
                     f"{c['whole_float32_x']:.2f}x | {c['whole_bfloat16_x']:.2f}x | {c['peak_rss_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

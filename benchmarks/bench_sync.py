#!/usr/bin/env python
"""SyncNet stage speed and memory, side by side in one run.

- ours: `SyncEngine` (2-D lip tower, folded BN, channels-last, inference mode, streaming distances);
- reference-style: syncnet_python's `evaluate` loop re-typed naively (the whole clip as float64 then
  float32, the Conv3d network, batches of 20 built by slicing and cat, autograd on, a Python loop of
  pairwise distances), same weights, same decoded frames and audio;
- optionally the real syncnet_python (`--syncnet-python DIR`, a checkout; its `.cuda()` calls are
  removed in a temporary copy; needs opencv-python-headless and python_speech_features).

Then the peak RSS of `lipsync check` on 60 s and 10 min inputs (the clip looped with `-c copy`), and of
the reference-style loop on 60 s. Results go to benchmarks/results/sync_cpu.{json,md}.

    python benchmarks/bench_sync.py --model ../shared/reference/syncnet_v2_seed0.model
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "reference" / "inputs" / "hdtf_kh_sync.mp4"
DEFAULT_MODEL = REPO.parent / "shared" / "reference" / "syncnet_v2_seed0.model"


def reference_style(net, frames: np.ndarray, audio: np.ndarray, batch_size=20, vshift=15):
    """syncnet_python's evaluate() arithmetic, written the way it is written there."""
    from otio_lipsync.model import mfcc

    im = np.expand_dims(np.stack(list(frames), axis=3), 0)  # (1, H, W, 3, T) -> as the reference
    im = np.transpose(im, (0, 3, 4, 1, 2))
    imtv = torch.from_numpy(im.astype(float)).float()
    cc = np.expand_dims(np.expand_dims(mfcc(audio), 0), 0)
    cct = torch.from_numpy(cc.astype(float)).float()
    min_length = min(len(frames), math.floor(len(audio) / 640))
    lastframe = min_length - 5
    t0 = time.perf_counter()
    im_feat, cc_feat = [], []
    for i in range(0, lastframe, batch_size):
        im_in = torch.cat([imtv[:, :, v:v + 5, :, :] for v in range(i, min(lastframe, i + batch_size))], 0)
        im_feat.append(net.forward_lip(im_in).data.cpu())
        cc_in = torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in range(i, min(lastframe, i + batch_size))], 0)
        cc_feat.append(net.forward_aud(cc_in).data.cpu())
    im_feat, cc_feat = torch.cat(im_feat, 0), torch.cat(cc_feat, 0)
    win = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(im_feat[[i], :].repeat(win, 1), feat2p[i:i + win, :])
             for i in range(len(im_feat))]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    elapsed = time.perf_counter() - t0
    return {"offset": vshift - int(minidx), "windows": lastframe, "seconds": elapsed,
            "dists": torch.stack(dists).numpy()}


def run_syncnet_python(checkout: Path, clip: Path, model: Path):
    """The real reference, CPU-patched in a temp copy; returns its own 'Compute time' and result."""
    tmp = Path(tempfile.mkdtemp(prefix="syncnet_python-"))
    for name in ("SyncNetInstance.py", "SyncNetModel.py"):
        text = (checkout / name).read_text().replace(".cuda()", "")
        (tmp / name).write_text(text)
    sys.path.insert(0, str(tmp))
    try:
        from SyncNetInstance import SyncNetInstance  # noqa: E402
    finally:
        sys.path.pop(0)

    class Opt:
        batch_size, vshift, tmp_dir, reference = 20, 15, str(tmp / "work"), "bench"

    inst = SyncNetInstance()
    inst.loadParameters(str(model))
    t0 = time.perf_counter()
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        offset, conf, _ = inst.evaluate(Opt, videofile=str(clip))
    total = time.perf_counter() - t0
    compute = float(re.search(r"Compute time ([0-9.]+)", buf.getvalue()).group(1))
    shutil.rmtree(tmp, ignore_errors=True)
    return {"offset": int(offset), "conf": float(conf), "compute_seconds": compute, "evaluate_seconds": total}


def golden_int8(loaded, engine) -> dict:
    """int8 against float32 on every golden clip (our decoded frames, the reference's audio samples)."""
    from otio_lipsync import media
    from otio_lipsync.sync import SyncEngine

    quantized = SyncEngine(loaded, precision="int8")
    table = {}
    for npz in sorted((REPO.parent / "shared" / "reference" / "golden").glob("*.npz")):
        g = np.load(npz)
        frames, _ = media.read_all(str(REPO.parent / "shared" / "reference" / "inputs" / f"{npz.stem}.mp4"))
        chunks = [("video", frames), ("audio", g["audio"])]
        exact, fast = engine.analyse(chunks), quantized.analyse(chunks)
        rel = np.abs(fast.dists - exact.dists) / exact.dists
        table[npz.stem] = {"golden_offset": int(g["raw_offset"]), "float32_offset": exact.offset_frames,
                           "int8_offset": fast.offset_frames, "float32_conf": exact.confidence,
                           "int8_conf": fast.confidence, "dist_rel_diff_median": float(np.median(rel)),
                           "dist_rel_diff_max": float(rel.max()), "windows": exact.num_windows}
        print(npz.stem, table[npz.stem], flush=True)
    return table


def multiply_adds(net) -> dict:
    """Multiply-adds of one window through each tower of the reference network, counted from the layers' own
    shapes while one window runs (a conv: each output element takes in_channels/groups x kernel volume)."""
    counts = {"lip": 0, "audio": 0}

    def counter(tower):
        def hook(module, inputs, output):
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
                per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
                counts[tower] += output.numel() * per_output
            elif isinstance(module, torch.nn.Linear):
                counts[tower] += output.numel() * module.in_features
        return hook

    handles = [m.register_forward_hook(counter(tower))
               for tower, parts in (("lip", (net.netcnnlip, net.netfclip)), ("audio", (net.netcnnaud, net.netfcaud)))
               for part in parts for m in part.modules()]
    try:
        with torch.inference_mode():
            net.eval()
            net.forward_lip(torch.zeros(1, 3, 5, 224, 224))
            net.forward_aud(torch.zeros(1, 1, 13, 20))
    finally:
        for h in handles:
            h.remove()
    return counts


def float32_ceiling(loaded, reference_windows_per_s: float, frames: int = 24, repeats: int = 5) -> dict:
    """How far float32 arithmetic can go on this CPU: the lip tower alone, laid out as SyncEngine runs it
    (FastSyncNet, channels-last), in GFLOP/s, beside the fastest of a few large convolutions oneDNN runs here. The
    goal's 3x needs the lip tower alone at 3x the reference loop's windows/s, before audio, features and distances."""
    from otio_lipsync.model import FastSyncNet

    macs = multiply_adds(loaded.net)
    fast = FastSyncNet(loaded.net).channels_last()
    run = torch.rand(1, 3, frames, 224, 224) * 255
    with torch.inference_mode():
        fast.forward_lip_sequence(run)  # oneDNN builds its kernels on first use
        seconds = best_time(repeats, lambda: fast.forward_lip_sequence(run))
    lip_windows_per_s = (frames - 4) / seconds
    best_conv = 0.0
    for cin, cout, k, side, n in [(256, 256, 3, 28, 16), (512, 512, 1, 56, 8), (1024, 1024, 1, 28, 8)]:
        conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2).eval().to(memory_format=torch.channels_last)
        x = torch.randn(n, cin, side, side).to(memory_format=torch.channels_last)
        with torch.inference_mode():
            conv(x)
            t = best_time(repeats, lambda: conv(x))
        best_conv = max(best_conv, 2 * n * side * side * cout * cin * k * k / t / 1e9)
    lip_flop = 2 * macs["lip"]
    return {"lip_gflop_per_window": lip_flop / 1e9, "audio_gflop_per_window": 2 * macs["audio"] / 1e9,
            "lip_tower_windows_per_s": lip_windows_per_s, "lip_tower_gflops": lip_windows_per_s * lip_flop / 1e9,
            "best_conv_gflops": best_conv,
            "gflops_needed_for_3x": 3 * reference_windows_per_s * lip_flop / 1e9}


def best_of(n, fn):
    runs = [fn() for _ in range(n)]
    return min(runs, key=lambda r: r["seconds"]), [r["seconds"] for r in runs]


def timed(fn) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_time(n: int, fn) -> float:
    """The fastest of n calls, in wall seconds (the run least disturbed by anything else)."""
    return min(timed(fn) for _ in range(n))


def peak_rss_of(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS MiB, wall seconds, exit code) of a command. It is started from a small launcher
    process: ru_maxrss survives exec, so a child forked straight from this (large) process would
    report this process's size instead of its own."""
    launcher = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:], "
                "stdout=subprocess.DEVNULL); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", launcher, *cmd], capture_output=True, text=True, check=True)
    kib, code = out.stdout.split()
    return int(kib) / 1024.0, time.perf_counter() - t0, int(code)


def looped(clip: Path, seconds: float, directory: Path, ffmpeg: str) -> Path:
    out = directory / f"loop_{int(seconds)}s.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(clip), "-t",
                    str(seconds), "-c", "copy", str(out)], check=True)
    return out


def write_results(directory: Path, stem: str, results: dict, table: str) -> None:
    """<stem>.json (every number) and <stem>.md (the table the README quotes), and the table on stdout."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (directory / f"{stem}.md").write_text(table)
    print(table)


def machine_line(r: dict) -> str:
    """"Machine: CPU, cores, torch; load average before/after." for a results table (r: machine, load_*)."""
    m = r["machine"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load average {r['load_before']:.1f} "
            f"before, {r['load_after']:.1f} after.")


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a 224x224 face-crop clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--syncnet-python", type=Path, default=None, help="checkout of joonson/syncnet_python")
    ap.add_argument("--skip-rss", action="store_true", help="no peak-RSS runs")
    ap.add_argument("--skip-golden", action="store_true", help="no int8-against-float32 table on the golden clips")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    from otio_lipsync import media
    from otio_lipsync.analysis import analyse_file
    from otio_lipsync.model import load_model
    from otio_lipsync.sync import SyncEngine, native_bfloat16

    loaded = load_model(args.model)
    if args.child:  # measured in a subprocess for its peak RSS
        frames, audio = media.read_all(args.child[1])
        reference_style(loaded.net, frames, audio)
        return

    results = {"machine": machine(), "clip": str(args.clip), "model": loaded.describe(),
               "date": time.strftime("%Y-%m-%d")}
    frames, audio = media.read_all(str(args.clip))
    duration = len(frames) / 25.0
    engine = SyncEngine(loaded)

    def ours(engine):
        t0 = time.perf_counter()
        r = engine.analyse([("video", frames), ("audio", audio)])
        return {"seconds": time.perf_counter() - t0, "offset": r.offset_frames, "windows": r.num_windows,
                "dists": r.dists, "conf": r.confidence}

    # bfloat16 only where the CPU has it: emulated, 16 windows take ~19 s (README: Speed)
    precisions = ["float32", "int8"] + (["bfloat16"] if native_bfloat16() else [])
    runs = {}
    for precision in precisions:
        timed_engine = engine if precision == "float32" else SyncEngine(loaded, precision=precision)
        with torch.inference_mode():
            ours(timed_engine)  # warm-up: oneDNN builds its kernels on first use
        runs[precision] = best_of(args.repeats, lambda: ours(timed_engine))
    ref_best, ref_runs = best_of(args.repeats, lambda: reference_style(loaded.net, frames, audio))
    ours_best = runs["float32"][0]
    windows = ours_best["windows"]
    assert ref_best["windows"] == windows and ref_best["offset"] == ours_best["offset"]
    agree = float(np.max(np.abs(ours_best["dists"] - ref_best["dists"]) / np.abs(ref_best["dists"])))
    stage = {"windows": windows, "clip_seconds": duration,
             "reference_style": {"windows_per_s": windows / ref_best["seconds"],
                                 "x_realtime": duration / ref_best["seconds"], "runs_s": ref_runs},
             "max_relative_dist_difference": agree, "precisions": {}}
    for precision, (best, times) in runs.items():
        rel = np.abs(best["dists"] - ours_best["dists"]) / ours_best["dists"]
        stage["precisions"][precision] = {
            "windows_per_s": windows / best["seconds"], "x_realtime": duration / best["seconds"], "runs_s": times,
            "speedup": ref_best["seconds"] / best["seconds"], "offset_equal": best["offset"] == ref_best["offset"],
            "conf": best["conf"], "dist_rel_diff_median": float(np.median(rel)), "dist_rel_diff_max": float(rel.max())}
    results["syncnet_stage"] = stage
    results["float32_ceiling"] = float32_ceiling(loaded, stage["reference_style"]["windows_per_s"])
    if not args.skip_golden:
        results["golden_int8"] = golden_int8(loaded, engine)

    t0 = time.perf_counter()
    analyse_file(str(args.clip), engine)
    whole = time.perf_counter() - t0
    results["whole_file"] = {"seconds": whole, "x_realtime": duration / whole,
                             "note": "decode + resample + MFCC + SyncNet + offset, model already loaded"}

    if args.syncnet_python:
        real = run_syncnet_python(args.syncnet_python, args.clip, args.model)
        real["windows_per_s"] = windows / real["compute_seconds"]
        real["x_realtime_evaluate"] = duration / real["evaluate_seconds"]
        results["syncnet_python"] = real

    if not args.skip_rss:
        ffmpeg = media.find_ffmpeg()
        rss = {}
        with tempfile.TemporaryDirectory(prefix="lipsync-bench-") as tmp:
            for seconds in (60, 600):
                path = looped(args.clip, seconds, Path(tmp), ffmpeg)
                mib, wall, code = peak_rss_of([sys.executable, "-m", "otio_lipsync", "check", "--face-cropped",
                                               "--model", str(args.model), "--json", os.devnull, str(path)])
                assert code == 0, f"lipsync check failed on {path}"
                rss[f"ours_{seconds}s"] = {"peak_rss_mib": mib, "wall_s": wall, "x_realtime": seconds / wall}
            path = looped(args.clip, 60, Path(tmp), ffmpeg)
            mib, wall, code = peak_rss_of([sys.executable, __file__, "--model", str(args.model),
                                           "--child", "reference", str(path)])
            rss["reference_style_60s"] = {"peak_rss_mib": mib, "wall_s": wall, "exit": code}
        results["peak_rss"] = rss

    write_results(args.out, "sync_cpu", results, markdown(results))


def markdown(r: dict) -> str:
    s = r["syncnet_stage"]
    m = r["machine"]
    lines = [
        f"# SyncNet stage on CPU ({r['date']})", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Python {m['python']}. Clip: `{Path(r['clip']).name}` ({s['clip_seconds']:.1f} s, {s['windows']} windows); "
        f"model sha256 {r['model']['sha256'][:12]}.", "",
        "| implementation | windows/s | x real time | vs reference-style | offset |", "|---|---|---|---|---|",
    ]
    names = {"float32": "otio-lipsync `SyncEngine` (float32, parity)", "bfloat16": "`--precision bfloat16`",
             "int8": "`--precision int8`"}
    for precision, p in s["precisions"].items():
        lines.append(f"| {names[precision]} | {p['windows_per_s']:.1f} | {p['x_realtime']:.2f} | "
                     f"**{p['speedup']:.2f}x** | {'same' if p['offset_equal'] else 'DIFFERENT'} |")
    lines.append(f"| reference-style loop (same weights, same input) | {s['reference_style']['windows_per_s']:.1f} | "
                 f"{s['reference_style']['x_realtime']:.2f} | 1.00x | — |")
    if "syncnet_python" in r:
        p = r["syncnet_python"]
        lines.append(f"| syncnet_python `evaluate` (its Compute time; whole evaluate {p['x_realtime_evaluate']:.2f}x) "
                     f"| {p['windows_per_s']:.1f} | — |")
    lines += ["", f"float32 and the reference agree on the offset and within {s['max_relative_dist_difference']:.1e} "
              f"relative on every distance (best of {len(s['reference_style']['runs_s'])} runs each).",
              f"Whole file (decode + features + SyncNet, model loaded): {r['whole_file']['x_realtime']:.2f}x real time."]
    if "float32_ceiling" in r:
        c = r["float32_ceiling"]
        lines += ["", f"float32's ceiling: a window is {c['lip_gflop_per_window']:.2f} GFLOP in the lip tower "
                  f"({c['audio_gflop_per_window']:.2f} in the audio tower). The lip tower alone, as SyncEngine "
                  f"runs it, does {c['lip_tower_windows_per_s']:.0f} windows/s = {c['lip_tower_gflops']:.0f} GFLOP/s; the "
                  f"fastest large convolution on this CPU ran {c['best_conv_gflops']:.0f} GFLOP/s. 3x the reference "
                  f"loop in float32 needs the lip tower alone at {c['gflops_needed_for_3x']:.0f} GFLOP/s."]
    if "golden_int8" in r:
        lines += ["", "int8 against float32 on the golden clips (our decoded frames, the reference's audio):", "",
                  "| clip | golden offset | float32 | int8 | confidence float32 -> int8 | distances, median / max relative change |",
                  "|---|---|---|---|---|---|"]
        for name, g in r["golden_int8"].items():
            lines.append(f"| {name} | {g['golden_offset']} | {g['float32_offset']} | {g['int8_offset']} | "
                         f"{g['float32_conf']:.2f} -> {g['int8_conf']:.2f} "
                         f"({100 * (g['int8_conf'] / g['float32_conf'] - 1):+.0f}%) | "
                         f"{100 * g['dist_rel_diff_median']:.1f}% / {100 * g['dist_rel_diff_max']:.0f}% |")
    if "peak_rss" in r:
        lines += ["", "| peak RSS | MiB | wall s |", "|---|---|---|"]
        for k, v in r["peak_rss"].items():
            lines.append(f"| {k} | {v['peak_rss_mib']:.0f} | {v['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Active speakers, measured as issue #20 asks, with the default model and its calibration:

1. **Composites**: two validation persons' clips side by side (both talking all the time), the soundtrack
   switching from one's own audio to the other's every 3 s. A frame is right when each face's `speaking`
   state is the truth (the face whose audio plays speaks, the other does not); 0.5 s around each switch is
   not scored. Tracks map to left/right by their box.
2. **A real scene with an RTTM** (`multi_diarvis_msdwild00115_two_women_01`): each RTTM speaker id is mapped
   to the face track that agrees with it best; frame agreement over the frames where both faces are tracked.

    python benchmarks/eval_speakers.py            # -> benchmarks/results/speakers_shared.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "clips"
FPS = 25
SWITCH_S = 3.0
SKIP_S = 0.5
PAIRS = [  # (left, right): 10 s / 8 s clips of the house model's validation persons, 25 fps
    ("synced_edtalk_ted_lieu_01.mp4", "synced_voxceleb2_id00104_01.mp4"),
    ("synced_lrs2_demo00016_01.mp4", "synced_edtalk_ted_lieu_02.mp4"),
    ("synced_voxceleb2_id00104_02.mp4", "synced_lrs2_demo00016_01.mp4"),
    ("synced_hdtf_aoc_01.mp4", "synced_hdtf_rd_radio2_01.mp4"),
]
RTTM_CLIP = "multi_diarvis_msdwild00115_two_women_01"


def make_composite(left: Path, right: Path, out: Path, switch_s: float = SWITCH_S, size: int = 256) -> float:
    """Side by side, soundtrack from the left clip for the first `switch_s`, then the right, and so on.
    -> duration (the shorter clip's)."""
    from otio_lipsync.media import probe

    duration = min(probe(str(left)).duration_s, probe(str(right)).duration_s)
    on_left = f"lt(mod(t,{2 * switch_s}),{switch_s})"
    graph = (f"[0:v]scale={size}:{size},setsar=1,fps={FPS}[a];[1:v]scale={size}:{size},setsar=1,fps={FPS}[b];"
             f"[a][b]hstack=inputs=2[v];"
             f"[0:a]aresample=16000,volume='if({on_left},1,0)':eval=frame[x];"
             f"[1:a]aresample=16000,volume='if({on_left},0,1)':eval=frame[y];"
             f"[x][y]amix=inputs=2:normalize=0[au]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(left), "-i", str(right), "-filter_complex", graph,
                    "-map", "[v]", "-map", "[au]", "-t", f"{duration:.3f}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-crf", "18", "-c:a", "aac", str(out)], check=True)
    return duration


def speaking_frames(track: dict, num_frames: int) -> np.ndarray:
    mask = np.zeros(num_frames, bool)
    for a, b in track.get("speaking") or []:
        mask[int(round(a * FPS)):int(round(b * FPS))] = True
    return mask


def tracked_frames(track: dict, num_frames: int) -> np.ndarray:
    mask = np.zeros(num_frames, bool)
    mask[int(round(track["start_s"] * FPS)):int(round(track["end_s"] * FPS))] = True
    return mask


def score_composite(analysis: dict, duration: float, switch_s: float = SWITCH_S) -> dict:
    n = int(duration * FPS)
    t = np.arange(n) / FPS
    left_plays = (t % (2 * switch_s)) < switch_s
    scored = np.ones(n, bool)
    for k in np.arange(switch_s, duration, switch_s):
        scored &= np.abs(t - k) > SKIP_S
    tracks = sorted(analysis["tracks"], key=lambda tr: tr["box"][0] + tr["box"][2])[:2]
    if len(tracks) < 2:
        return {"frames_right": None, "note": f"{len(tracks)} face track(s)"}
    right = np.ones(n, bool)
    for track, truth in zip(tracks, (left_plays, ~left_plays)):
        right &= speaking_frames(track, n) == truth
        scored &= tracked_frames(track, n)
    both = speaking_frames(tracks[0], n) & speaking_frames(tracks[1], n)
    return {"frames_scored": int(scored.sum()), "frames_right": round(float(right[scored].mean()), 4),
            "both_speaking": round(float(both[scored].mean()), 4), "offset_frames": analysis["offset_frames"],
            "sync_probability": analysis["sync_probability"]}


def read_rttm(path: Path, num_frames: int) -> dict[str, np.ndarray]:
    speakers: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur, who = float(f[3]), float(f[4]), f[7]
            mask = speakers.setdefault(who, np.zeros(num_frames, bool))
            mask[int(round(start * FPS)):int(round((start + dur) * FPS))] = True
    return speakers


def score_rttm(analysis: dict, rttm: Path) -> dict:
    n = int(analysis["duration_s"] * FPS)
    truth = read_rttm(rttm, n)
    tracks = analysis["tracks"]
    result = {"speakers": {}}
    agree_all, count_all = 0, 0
    for who, mask in sorted(truth.items()):
        best = max(range(len(tracks)), key=lambda i: float(
            (speaking_frames(tracks[i], n) == mask)[tracked_frames(tracks[i], n)].mean()))
        tr = tracked_frames(tracks[best], n)
        agree = speaking_frames(tracks[best], n) == mask
        result["speakers"][who] = {"track": best, "frames": int(tr.sum()),
                                   "agreement": round(float(agree[tr].mean()), 4)}
        agree_all += int(agree[tr].sum())
        count_all += int(tr.sum())
    result["frame_agreement"] = round(agree_all / max(count_all, 1), 4)
    return result


def main():
    from otio_lipsync.faces.detectors import make_detector
    from otio_lipsync.footage import analyse_footage
    from otio_lipsync.model import registry
    from otio_lipsync.sync import SyncEngine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=str(CLIPS))
    ap.add_argument("--model", default=None)
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "speakers_shared"))
    args = ap.parse_args()
    clips = Path(args.clips)
    model = registry.load(args.model)
    engine = SyncEngine(model)
    detector = make_detector("blazeface")
    t0 = time.time()
    composites = []
    with tempfile.TemporaryDirectory() as tmp:
        for left, right in PAIRS:
            out = Path(tmp) / f"{Path(left).stem}+{Path(right).stem}.mp4"
            duration = make_composite(clips / left, clips / right, out)
            analysis, _ = analyse_footage(str(out), engine, detector=detector)
            row = {"left": left, "right": right, **score_composite(analysis.to_dict(), duration)}
            composites.append(row)
            print(row, flush=True)
    scene, _ = analyse_footage(str(clips / f"{RTTM_CLIP}.mp4"), engine, detector=detector)
    rttm = score_rttm(scene.to_dict(), clips / f"{RTTM_CLIP}.rttm")
    print(rttm, flush=True)
    scored = sum(c.get("frames_scored", 0) for c in composites)
    right = sum(c["frames_right"] * c["frames_scored"] for c in composites if c.get("frames_right") is not None)
    result = {
        "model": model.describe(), "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "seconds": round(time.time() - t0, 1), "composites": composites,
        "composite_frames_right": round(right / max(scored, 1), 4), "rttm": rttm,
        "floors": {"composite_frames_right": 0.9, "rttm_frame_agreement": 0.8},
    }
    Path(args.output).with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Active speakers (benchmarks/eval_speakers.py), model {model.describe().get('name')}", "",
             "| composite (left + right, soundtrack switching every 3 s) | frames right | both speaking | offset |",
             "|---|---|---|---|"]
    for c in composites:
        lines.append(f"| {c['left']} + {c['right']} | {c.get('frames_right')} | {c.get('both_speaking')} | "
                     f"{c.get('offset_frames')} |")
    lines += ["", f"All composites: {result['composite_frames_right']:.1%} of scored frames right (floor 90%).", "",
              f"RTTM scene `{RTTM_CLIP}`: frame agreement {rttm['frame_agreement']:.1%} (floor 80%); "
              + ", ".join(f"speaker {k} -> track {v['track']} ({v['agreement']:.1%} of {v['frames']} frames)"
                          for k, v in rttm["speakers"].items()), ""]
    Path(args.output).with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

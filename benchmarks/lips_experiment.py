#!/usr/bin/env python
"""Issue #19's first lever, measured: the lips model (face-mesh lip geometry, `lipsync-train fit-lips`)
beside house.model on the same validation persons and tracks, with `lipsync-train eval`'s metric
(train/evaluate.py: window accuracy at 1/5/11/15 windows, +-15 frame search, right within +-1 frame;
clips with applied shifts of +-40/120/200 ms), plus

- fusions of the two: distances d = sqrt((d_house / m_house)^2 + (d_lips / m_lips)^2), each model's
  distances divided by its median distance over the validation windows (the Euclidean distance between
  the two embeddings concatenated, each scaled to a median distance of 1);
- window accuracy against each track's own whole-track offset as this model finds it unshifted ("own
  offset": how consistent the per-moment answer is, whatever constant offset the clip has);
- the clip accuracy *relative to the unshifted clip* (found(shift) - found(0) within one frame), which does
  not count the clips' own constant offsets (README: "Are those offsets the model's or the clips'?");
- the training curve of each lips run (curve.csv: accuracy vs steps and training seconds).

    python benchmarks/lips_experiment.py --lips /work/runs/lips/RUN/best.pt [--lips ...] \
        --data /work/data/lips/clips62 -o benchmarks/results/lips_experiment.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from otio_lipsync.model import load_model
from otio_lipsync.train.data import load_tracks
from otio_lipsync.train.evaluate import APPLIED_SHIFTS, CONTEXTS, VSHIFT, clip_offset, track_dists, window_accuracy
from otio_lipsync.train.export import load_checkpoint
from otio_lipsync.train.pairs import featurize

REPO = Path(__file__).resolve().parents[1]
VAL = ("ted_lieu,voxceleb2_id00104,alexandria_ocasio_cortez,lrs2_demo00016,vr4_woman_blue,mead_m030,"
       "multivsr_hxn8clTtMTo_fr,hdtf_RD_Radio2_woman,msdwild_demo1_woman_long_hair,lrs2dd_deborah_meaden")


def score(dists_per_track: list[np.ndarray], tracks) -> dict:
    """evaluate()'s numbers from precomputed (windows, 2*(15+5)+1) distances, plus relative clip accuracy."""
    max_shift = max(abs(s) for s in APPLIED_SHIFTS)
    win = {c: [0, 0] for c in CONTEXTS}
    own = {c: [0, 0] for c in CONTEXTS}
    clip, rel = [0, 0], [0, 0]
    per_track = []
    for d, t in zip(dists_per_track, tracks):
        core = d[:, max_shift:max_shift + 2 * VSHIFT + 1]
        base = clip_offset(d, 0, VSHIFT)
        for c in CONTEXTS:
            ok, tot = window_accuracy(core, c)
            win[c][0] += ok
            win[c][1] += tot
            ok, tot = window_accuracy(core, c, truth=base)
            own[c][0] += ok
            own[c][1] += tot
        found = {}
        if t.num_windows >= 25:
            for s in APPLIED_SHIFTS:
                f = clip_offset(d, s, VSHIFT)
                found[s] = f
                clip[0] += abs(f - s) <= 1
                rel[0] += abs(f - base - s) <= 1
                clip[1] += 1
                rel[1] += 1
            per_track.append({"source": t.source, "person": t.person, "windows": t.num_windows,
                              "unshifted": base, "found_for_shift": found})
        else:
            per_track.append({"source": t.source, "person": t.person, "windows": t.num_windows})
    return {"window_accuracy": {str(c): win[c][0] / win[c][1] for c in CONTEXTS},
            "window_counts": {str(c): win[c][1] for c in CONTEXTS},
            "clip_accuracy": clip[0] / clip[1], "clip_count": clip[1],
            "clip_accuracy_relative": rel[0] / rel[1],
            "window_accuracy_own_offset": {str(c): own[c][0] / own[c][1] for c in CONTEXTS},
            "tracks": per_track}


def median(ds) -> float:
    return float(np.nanmedian(np.concatenate([x.ravel() for x in ds])))


def model_dists(net, tracks) -> list[np.ndarray]:
    net.eval()
    return [track_dists(net, t, 20, VSHIFT + max(abs(s) for s in APPLIED_SHIFTS)) for t in tracks]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lips", action="append", required=True, help="lips checkpoint(s) (.pt)")
    ap.add_argument("--ensemble", action="append", default=[],
                    help="comma list of lips checkpoints: their distances (each / its median) averaged")
    ap.add_argument("--no-fusion", action="store_true")
    ap.add_argument("--house", default=str(REPO / "model" / "weights" / "house.model"))
    ap.add_argument("--data", default="/work/data/lips/clips62")
    ap.add_argument("--persons", default=VAL)
    ap.add_argument("-o", "--output", default=str(REPO / "benchmarks" / "results" / "lips_experiment.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    persons = set(args.persons.split(","))
    tracks = featurize([t for t in load_tracks(args.data) if t.person in persons], "mfcc13", 20)
    rows, dists = {}, {}
    house = load_model(args.house).net
    dists["house.model"] = model_dists(house, tracks)
    for path in args.lips:
        net, state = load_checkpoint(path)
        name = f"{Path(path).parent.name}/{Path(path).name}"
        dists[name] = model_dists(net, tracks)
    for name, d in dists.items():
        rows[name] = score(d, tracks)

    for group in args.ensemble:
        parts = []
        for path in group.split(","):
            name = f"{Path(path).parent.name}/{Path(path).name}"
            if name not in dists:
                dists[name] = model_dists(load_checkpoint(path)[0], tracks)
            parts.append([x / median(dists[name]) for x in dists[name]])
        ens = [np.mean([p[i] for p in parts], 0) for i in range(len(tracks))]
        rows[f"ensemble: {group}"] = score(ens, tracks)
    for path in [] if args.no_fusion else args.lips:
        name = f"{Path(path).parent.name}/{Path(path).name}"
        mh, ml = median(dists["house.model"]), median(dists[name])
        fused = [np.sqrt((a / mh) ** 2 + (b / ml) ** 2) for a, b in zip(dists["house.model"], dists[name])]
        rows[f"fusion: house.model + {name}"] = score(fused, tracks)
    out = {"persons": sorted(persons), "tracks": len(tracks), "data": args.data, "models": rows}
    curves = {}
    for path in args.lips:
        p = Path(path).parent / "curve.csv"
        if p.exists():
            with open(p, newline="") as f:
                curves[Path(path).parent.name] = list(csv.DictReader(f))
    out["curves"] = curves
    Path(args.output).write_text(json.dumps(out, indent=1))
    print("| model | 1 window | 5 windows | 11 windows | 15 windows | clips, applied shifts | clips, relative "
          "| 5 / 15 windows vs own offset |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        w, o = r["window_accuracy"], r["window_accuracy_own_offset"]
        print(f"| {name} | " + " | ".join(f"{100 * w[str(c)]:.1f}%" for c in CONTEXTS) +
              f" | {100 * r['clip_accuracy']:.1f}% of {r['clip_count']} | {100 * r['clip_accuracy_relative']:.1f}% "
              f"| {100 * o['5']:.1f}% / {100 * o['15']:.1f}% |")


if __name__ == "__main__":
    main()

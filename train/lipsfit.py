"""`lipsync-train fit-lips`: a fast training loop for the lips architecture (model/lips.py).

The lip stream is an MLP on ~900 numbers a window, so a step's cost is all in the audio tower (~1 s a
step on one shared core, against ~0.05 s for the lips). With `--freeze-audio-tower` the audio tower (and
its input BatchNorm) is taken from a trained model (`--init-audio`, e.g. house.model), frozen, and its
output for every audio window of every track computed once; training then runs the lip MLP and the audio
head only: tens of steps a second.

Same pairs and objective as `lipsync-train fit` (PairSampler's segments: genuine, hard negatives within
8 frames, far ones up to 2 s; `multiway` softmax), same evaluation (train/evaluate.py) on the same
validation persons, and checkpoints `lipsync-train eval` / `export` read (`checkpoint.pt`, `best.pt`, and
`step_NNNNNN.pt` at every evaluation). `curve.csv`: step, training seconds (evaluation and loading
excluded), loss, window accuracy at 1/5/11/15 windows and clip accuracy on the validation persons.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..model.lips import LipsSyncNet
from ..outputs import atomic_output
from .data import load_tracks
from .evaluate import evaluate
from .fit import init_audio, split_persons
from .nets import check_tracks
from .objectives import pair_loss
from .pairs import COLUMNS_PER_FRAME, Batch, PairIndex, PairSampler, featurize


@dataclass
class LipsFitOptions:
    steps: int = 3000
    segments: int = 6
    seg_len: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2
    hidden: int = 512
    seed: int = 0
    val_persons: list[str] = field(default_factory=list)
    eval_every: int = 250
    init_audio: str | None = None
    freeze_audio_tower: bool = False
    freeze_audio_head: bool = False  # with the tower: the whole audio stream fixed; only the lip stream learns
    threads: int | None = 1
    objective: str = "multiway"
    augment: bool = True
    inputs: str = "points"  # LipsSyncNet inputs: points, shape (mouth measures) or both
    context: int = 0  # LipsSyncNet context: frames each side of the 5
    centre: str = "none"  # "track": subtract each track's median lip shape (the person's neutral mouth)


@torch.inference_mode()
def _tower_features(net: LipsSyncNet, t, columns: int) -> torch.Tensor:
    cols = (torch.arange(t.num_windows) * COLUMNS_PER_FRAME)[:, None] + torch.arange(columns)
    x = t.features[:, cols].permute(1, 0, 2)[:, None].float()
    out = [net.audio_tower(net.audio_norm(x[s:s + 1024])).flatten(1) for s in range(0, len(x), 1024)]
    return torch.cat(out)


def fit_lips(datasets: list[str], out: str, options: LipsFitOptions, report: Callable[[str], None] = print) -> dict:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    t_load = time.perf_counter()
    cfg = {"audio_feature": "mfcc13", "audio_columns": 20, "normalize": False, "dropout": options.dropout,
           "hidden": options.hidden, "inputs": options.inputs, "context": options.context,
           "centre": {"none": 0, "track": -1}.get(options.centre) if not options.centre.startswith("local")
           else int(options.centre[5:])}
    tracks = featurize([t for d in datasets for t in load_tracks(d)], "mfcc13", 20)
    check_tracks("lips", tracks, datasets)
    persons = sorted({t.person for t in tracks})
    val_set = split_persons(persons, options.val_persons, 0.15, options.seed)
    train_tracks = [t for t in tracks if t.person not in val_set]
    val_tracks = [t for t in tracks if t.person in val_set]
    report(f"{len(train_tracks)} training tracks ({sum(t.num_windows for t in train_tracks)} windows, "
           f"{len(persons) - len(val_set)} persons), {len(val_tracks)} validation tracks ({len(val_set)} persons)")
    net = LipsSyncNet(**cfg)
    for t in train_tracks:  # the sampler reads centred features; evaluation centres through the net itself
        t.lips = net.centred(t.lips)
    if options.init_audio:
        init_audio(net, options.init_audio)
    frozen = options.freeze_audio_tower
    if frozen:
        if not options.init_audio:
            raise ValueError("--freeze-audio-tower needs --init-audio (a trained audio tower to freeze)")
        for p in [*net.audio_tower.parameters(), *net.audio_norm.parameters()]:
            p.requires_grad_(False)
        if options.freeze_audio_head:
            for p in net.audio_head.parameters():
                p.requires_grad_(False)
        net.eval()
        cached = [_tower_features(net, t, 20) for t in train_tracks]
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=options.lr, total_steps=options.steps, pct_start=0.05)
    sampler = PairSampler(train_tracks, 20, seg_len=options.seg_len, seed=options.seed, lips=True)
    report(f"loaded in {time.perf_counter() - t_load:.0f} s")

    def train_mode():
        net.train()
        if frozen:  # the frozen tower keeps its BatchNorm statistics
            net.audio_tower.eval()
            net.audio_norm.eval()
            if options.freeze_audio_head:
                net.audio_head.eval()

    def draw() -> tuple[Batch, torch.Tensor]:
        """PairSampler's segments and pairs; audio = the cached tower outputs (frozen) or MFCC windows."""
        if not frozen:
            if options.context:
                raise ValueError("--context needs --freeze-audio-tower (the fast loop's own sampler)")
            b = sampler.sample(options.segments, augment=options.augment)
            return b, b.audio
        lips, auds = [], []
        pairs = PairIndex()
        picks = sampler.rng.choice(len(sampler.tracks), size=options.segments, p=sampler.p)
        for k in picks:
            t = sampler.tracks[k]
            lip, aud = sampler._segment(t)
            c = options.context
            frames = t.lips[torch.arange(lip[0] - c, lip[-1] + 5 + c).clamp(0, len(t.lips) - 1)]
            if options.augment:
                frames = sampler._augment_lips(frames)
            lips.append(frames.unfold(0, 5 + 2 * c, 1).permute(0, 2, 1))
            auds.append(cached[k][torch.from_numpy(aud)])
            pairs.add(lip, aud, sampler.max_shift, sampler.min_false_shift)
        audio = torch.cat(auds)
        b = Batch(torch.cat(lips), audio, *pairs.tensors())
        return b, audio

    def aud_embed(audio: torch.Tensor) -> torch.Tensor:
        if not frozen:
            return net.forward_aud(audio)
        x = torch.nn.functional.dropout(audio, net.dropout, net.training)
        return net._finish(net.audio_head(x))

    curve_path = out_dir / "curve.csv"
    curve = open(curve_path, "w", newline="")  # noqa: SIM115
    writer = csv.writer(curve)
    writer.writerow(["step", "train_s", "loss", "acc1", "acc5", "acc11", "acc15", "clip_acc", "clip_count"])
    history, best, train_s, losses = [], -1.0, 0.0, []

    def save(name: str, step: int):
        payload = {"model": net.state_dict(), "model_config": cfg, "step": step,
                   "options": {**asdict(options), "arch": "lips", "objective": options.objective},
                   "val_persons": sorted(val_set), "datasets": [str(d) for d in datasets], "history": history,
                   "train_summary": {"tracks": len(train_tracks),
                                     "windows": int(sum(t.num_windows for t in train_tracks)),
                                     "persons": len(persons) - len(val_set)}}
        with atomic_output(str(out_dir / name)) as tmp:
            torch.save(payload, tmp)

    def do_eval(step: int):
        nonlocal best
        r = evaluate(net, val_tracks, 20)
        w = r["window_accuracy"]
        row = {"step": step, "train_s": round(train_s, 1), "loss": float(np.mean(losses)) if losses else None,
               **{f"acc{c}": w[str(c)] for c in (1, 5, 11, 15)}, "clip_acc": r["clip_accuracy"],
               "clip_count": r["clip_count"]}
        history.append(row)
        writer.writerow([row[k] if not isinstance(row[k], float) else f"{row[k]:.4f}" for k in
                         ["step", "train_s", "loss", "acc1", "acc5", "acc11", "acc15", "clip_acc", "clip_count"]])
        curve.flush()
        report(f"step {step} ({train_s:.0f} s): loss {row['loss'] or 0:.3f} acc 1/5/11/15 "
               f"{w['1']:.3f}/{w['5']:.3f}/{w['11']:.3f}/{w['15']:.3f} clips {r['clip_accuracy']:.3f}")
        save(f"step_{step:06d}.pt", step)
        score = (w["5"] or 0) + (r["clip_accuracy"] or 0)
        if score > best:
            best = score
            shutil.copyfile(out_dir / f"step_{step:06d}.pt", out_dir / "best.pt")
        losses.clear()

    do_eval(0)
    for step in range(1, options.steps + 1):
        train_mode()
        t0 = time.perf_counter()
        batch, audio = draw()
        lip = net.forward_lip_windows(batch.lips)
        aud = aud_embed(audio)
        loss = pair_loss(options.objective, net, lip, aud, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        train_s += time.perf_counter() - t0
        losses.append(loss.item())
        if step % options.eval_every == 0 or step == options.steps:
            do_eval(step)
    curve.close()
    save("checkpoint.pt", options.steps)
    summary = {"steps": options.steps, "train_s": round(train_s, 1), "history": history,
               "val_persons": sorted(val_set), "options": asdict(options)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary

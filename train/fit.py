"""`lipsync-train fit`: the training loop, with checkpoints, `--resume`, a CSV log and refinement.

Everything the loop needs is in memory before the first step (shards decompressed, audio features
computed once), so there is no per-epoch loader to re-initialise; the log's `data_share` column is the
fraction of wall time spent drawing batches, the rest is the network.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..model.weights import BadWeights, check_state_dict
from ..outputs import atomic_output
from .data import load_tracks
from .evaluate import evaluate, refine_mask, track_dists
from .nets import ARCHITECTURES, SYNCNET_FEATURES, arch_of, batch_lip_embeddings, build, check_tracks
from .objectives import OBJECTIVES, pair_loss
from .pairs import PairSampler, featurize

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
REFINE_MIN_ACCURACY = 0.6  # judge samples only with a model that mostly gets its own training data right


@dataclass
class FitOptions:
    arch: str = "compact"  # or "syncnet", the original architecture (needs a dataset prepared with --faces)
    objective: str = "multiway"
    steps: int = 3000
    segments: int = 6  # segments per batch (from different tracks); each ~32 lip windows
    seg_len: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    margin: float = 2.0
    seed: int = 0
    val_persons: list[str] = field(default_factory=list)
    val_fraction: float = 0.15
    refine_at: float = 0.75  # fraction of the steps after which refinement drops out-of-sync windows (0: never)
    checkpoint_every: int = 100
    eval_every: int = 500
    threads: int | None = None
    device: str = "cpu"  # "cpu", "cuda", "cuda:N" or "auto" (cuda when there is one); not part of the checkpoint
    pooled: bool = False
    dropout: float = 0.0
    augment: str = "geometric"  # "basic" (the first house model's) or "geometric" (see pairs.PairSampler._augment)
    stop_after: int | None = None  # end this invocation at this step (resume later); not a run option
    init: str | None = None  # start from these weights (a model file or checkpoint) instead of random ones
    hidden: int = 512  # arch lips: width of the lip MLP's first layer
    init_audio: str | None = None  # arch lips: copy the audio stream (tower + head) from this model file

    @property
    def model_config(self) -> dict:
        if self.arch == "syncnet":
            return dict(SYNCNET_FEATURES)
        if self.arch == "lips":
            return {"audio_feature": "mfcc13", "audio_columns": 20, "normalize": False, "dropout": self.dropout,
                    "hidden": self.hidden}
        extra = {"pooled": self.pooled, "dropout": self.dropout}
        if self.objective == "icsyncnet":  # 0.4 s of log mel, unit-length embeddings
            return {"audio_feature": "logmel26", "audio_columns": 40, "normalize": True, **extra}
        return {"audio_feature": "mfcc13", "audio_columns": 20, "normalize": False, **extra}


def split_persons(persons: list[str], val_persons: list[str], fraction: float, seed: int) -> set[str]:
    """Validation persons: the named ones, else a deterministic `fraction` of the persons by hash."""
    if val_persons:
        return set(val_persons)
    ranked = sorted(persons, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    return set(ranked[:max(1, round(fraction * len(persons)))]) if len(persons) > 1 else set()


def resolve_device(name: str) -> torch.device:
    """The torch device for --device, or ValueError naming what is missing."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch ({torch.__version__}) sees no CUDA GPU; train with "
                         f"--device cpu, or install a CUDA build of torch on a GPU machine")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: only cpu and cuda are supported")
    return device


def _tensorboard(folder: Path, report: Callable[[str], None]):
    """A SummaryWriter when the `tensorboard` package is installed (the same numbers as log.csv), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    report(f"TensorBoard logs in {folder} (tensorboard --logdir {folder.parent})")
    return SummaryWriter(str(folder))


def init_weights(net: torch.nn.Module, source: str) -> None:
    """Warm start: copy the weights of a model file (.model) or a checkpoint (.pt) of the same architecture
    into `net`. An exported model's `distance_scale` is reset to 1: it was calibrated for confidences, and
    training's softmax must see distances as the run that made them did."""
    from ..model.weights import BadWeights, load_model
    from .export import load_checkpoint

    try:
        other = load_checkpoint(source)[0] if source.endswith(".pt") else load_model(source).net
    except (BadWeights, OSError, KeyError, RuntimeError) as exc:
        raise ValueError(f"--init {source}: cannot be read as a model or checkpoint ({str(exc).splitlines()[0]})") from None
    state = other.state_dict()
    mine = net.state_dict()
    if set(state) != set(mine) or any(state[k].shape != mine[k].shape for k in mine):
        raise ValueError(f"--init {source}: its network does not match --arch {arch_of(net)} with these options "
                         f"(different layers or sizes)")
    if "distance_scale" in state:
        state = {**state, "distance_scale": torch.tensor(1.0)}
    net.load_state_dict(state)


def init_audio(net: torch.nn.Module, source: str) -> None:
    """Copy the audio stream (audio_norm, audio_tower, audio_head) of a model file or checkpoint into `net`."""
    from ..model.weights import load_model
    from .export import load_checkpoint

    other = load_checkpoint(source)[0] if source.endswith(".pt") else load_model(source).net
    state = {k: v for k, v in other.state_dict().items() if k.startswith("audio_")}
    mine = net.state_dict()
    if not state or any(k not in mine or mine[k].shape != v.shape for k, v in state.items()):
        raise ValueError(f"--init-audio {source}: its audio stream does not match this network's")
    net.load_state_dict(state, strict=False)


def _save(path: Path, payload: dict) -> None:
    with atomic_output(str(path)) as tmp:
        torch.save(payload, tmp)


def fit(dataset: str | list[str], out: str, options: FitOptions, resume: bool = False,
        report: Callable[[str], None] = print, progress=None) -> dict:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    for stale in out_dir.glob(".lipsync-*.pt"):  # a checkpoint write killed half way (never renamed into place)
        stale.unlink(missing_ok=True)
    state = None
    if resume and not ckpt_path.exists():
        report(f"--resume: no {ckpt_path} yet: starting from step 0")
    if resume and ckpt_path.exists():
        from .export import read_checkpoint

        state = read_checkpoint(ckpt_path)  # BadWeights on a damaged file: refuse, never restart silently
        # the run's options come from the checkpoint; --steps may extend it, --stop-after is per invocation
        try:
            options = FitOptions(**{**state["options"], "steps": options.steps, "stop_after": options.stop_after,
                                    "device": options.device, "threads": options.threads})
        except TypeError as exc:
            raise BadWeights(ckpt_path, f"options not from this version of lipsync-train ({exc})") from None
        report(f"resuming {ckpt_path} at step {state['step']} of {options.steps}")
    if options.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {options.objective!r} (known: {', '.join(OBJECTIVES)})")
    if options.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {options.arch!r} (known: {', '.join(ARCHITECTURES)})")
    if options.arch == "syncnet" and (options.objective == "icsyncnet" or options.pooled or options.dropout):
        raise ValueError("--arch syncnet is the original network as published: objectives multiway or contrastive, "
                         "no --pooled, no --dropout (IC-SyncNet's head and those options belong to --arch compact)")
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    torch.manual_seed(options.seed)

    cfg = options.model_config
    datasets = [dataset] if isinstance(dataset, (str, os.PathLike)) else list(dataset)
    tracks = featurize([t for d in datasets for t in load_tracks(d)], cfg["audio_feature"], cfg["audio_columns"])
    check_tracks(options.arch, tracks, datasets)
    persons = sorted({t.person for t in tracks})
    val_set = split_persons(persons, options.val_persons, options.val_fraction, options.seed)
    train_tracks = [t for t in tracks if t.person not in val_set]
    val_tracks = [t for t in tracks if t.person in val_set]
    if not train_tracks:
        raise ValueError(f"{', '.join(map(str, datasets))}: every person is in the validation split; nothing to train on")
    report(f"{len(train_tracks)} training tracks ({sum(t.num_windows for t in train_tracks)} windows, "
           f"{len(persons) - len(val_set)} persons), {len(val_tracks)} validation tracks "
           f"({len(val_set)} persons: {', '.join(sorted(val_set)) or 'none'})")

    net = build(options.arch, cfg)
    if options.init and not state:  # a resumed run has its own weights
        init_weights(net, options.init)
        report(f"starting from the weights of {options.init}")
    if options.init_audio and not state:
        init_audio(net, options.init_audio)
        report(f"audio stream from {options.init_audio}")
    net = net.to(device)
    # AMP on GPU: bfloat16 autocast (same exponent range as float32: no loss scaling needed); CPU stays
    # float32, so CPU runs are bit-reproducible
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    opt = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=options.lr, total_steps=options.steps,
                                                pct_start=0.05)
    sampler = PairSampler(train_tracks, cfg["audio_columns"], seg_len=options.seg_len, seed=options.seed,
                          augment=options.augment, faces=options.arch == "syncnet", lips=options.arch == "lips")
    step, refined, history, best_score = 0, False, [], -1.0
    if state:
        try:
            _restore(ckpt_path, state, net, opt, sched, sampler, device, options)
            step, refined, history = int(state["step"]), bool(state["refined"]), list(state.get("history", []))
            best_score = float(state.get("best_score", -1.0))
            if refined:
                for t in train_tracks:
                    t.valid = torch.from_numpy(np.asarray(state["valid"][t.source + f"#{t.num_windows}"]))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise BadWeights(ckpt_path, f"damaged checkpoint: cannot resume from it ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

    log_path = out_dir / "log.csv"
    new_log = not log_path.exists() or state is None
    if not new_log:  # rows written after the checkpoint we resume from (a run killed in between) are redone
        _truncate_log(log_path, step)
    log = open(log_path, "w" if new_log else "a", newline="")  # noqa: SIM115 - open for the whole run, flushed per row
    writer = csv.writer(log)
    board = _tensorboard(out_dir / "tensorboard", report)
    if new_log:
        writer.writerow(["step", "loss", "lr", "lip_windows_per_s", "pairs_per_s", "data_share", "val_acc5",
                         "val_clip_acc"])

    def checkpoint():
        _save(ckpt_path, {
            "model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "sampler_rng": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,  # dropout on GPU
            "step": step, "refined": refined, "best_score": best_score,
            "options": {**asdict(options), "stop_after": None, "device": "cpu", "threads": None}, "model_config": cfg,
            "history": history, "val_persons": sorted(val_set), "datasets": [str(d) for d in datasets],
            "train_summary": {"tracks": len(train_tracks), "windows": int(sum(t.num_windows for t in train_tracks)),
                              "persons": len(persons) - len(val_set)},
            "valid": {t.source + f"#{t.num_windows}": t.valid.numpy().tolist() for t in train_tracks} if refined else {},
        })

    bar = progress(total=options.steps, initial=step) if progress else None
    t_data = t_all = 0.0
    lip_count = pair_count = 0
    losses = []
    end = min(options.steps, options.stop_after or options.steps)
    while step < end:
        if not refined and options.refine_at and step >= int(options.refine_at * options.steps):
            acc = evaluate(net, train_tracks, cfg["audio_columns"], contexts=(11,))["window_accuracy"]["11"] or 0
            refined = True
            if acc >= REFINE_MIN_ACCURACY:
                dropped = refine(net, train_tracks, cfg["audio_columns"])
                report(f"refinement at step {step}: {dropped} of {sum(t.num_windows for t in train_tracks)} "
                       f"genuine windows judged clearly out of sync and dropped")
            else:
                report(f"refinement at step {step} skipped: training accuracy {acc:.2f} (11 windows) is below "
                       f"{REFINE_MIN_ACCURACY}; a model this weak would drop good samples")
            net.train()
        net.train()
        t0 = time.perf_counter()
        batch = sampler.sample(options.segments)
        if device.type != "cpu":
            batch = batch.to(device)
        t1 = time.perf_counter()
        with amp:
            lip = batch_lip_embeddings(net, batch.lips, batch.lip_runs)
            aud = net.forward_aud(batch.audio)
            loss = pair_loss(options.objective, net, lip.float(), aud.float(), batch, options.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_all += t2 - t0
        lip_count += batch.num_lip_windows
        pair_count += len(batch.shift)
        losses.append(loss.item())
        step += 1
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if step % options.checkpoint_every == 0 or step == end:
            val = {}
            if val_tracks and (step % options.eval_every == 0 or step == end):
                val = evaluate(net, val_tracks, cfg["audio_columns"], contexts=(5,))
            row = [step, f"{np.mean(losses):.4f}", f"{sched.get_last_lr()[0]:.2e}", f"{lip_count / t_all:.1f}",
                   f"{pair_count / t_all:.0f}", f"{t_data / t_all:.3f}",
                   "" if not val else f"{val['window_accuracy']['5']:.4f}",
                   "" if not val or val["clip_accuracy"] is None else f"{val['clip_accuracy']:.4f}"]
            writer.writerow(row)
            log.flush()
            if board:
                for name, value in zip(["loss", "lr", "lip_windows_per_s", "pairs_per_s", "data_share", "val_acc5",
                                        "val_clip_acc"], row[1:]):
                    if value != "":
                        board.add_scalar(name, float(value), step)
                board.flush()
            history.append(dict(zip(["step", "loss", "lr", "lip_windows_per_s", "pairs_per_s", "data_share",
                                     "val_acc5", "val_clip_acc"], row)))
            if val and bar:
                bar.write(f"step {step}: loss {np.mean(losses):.3f}, val acc (5 windows) "
                          f"{val['window_accuracy']['5']:.3f}, clip {val['clip_accuracy']}")
            losses, t_data, t_all, lip_count, pair_count = [], 0.0, 0.0, 0, 0
            # keep the checkpoint the validation persons liked best (model selection: the README says so);
            # the score is updated first so a resumed run knows the best it has to beat
            score = (val["window_accuracy"]["5"] or 0) + (val["clip_accuracy"] or 0) if val else -1.0
            improved = score > best_score
            best_score = max(best_score, score)
            checkpoint()
            if improved:
                shutil.copyfile(ckpt_path, out_dir / BEST)
    log.close()
    if board:
        board.close()
    if bar:
        bar.close()
    summary = {"checkpoint": str(ckpt_path), "steps": step, "val_persons": sorted(val_set), "history": history}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _truncate_log(log_path: Path, step: int) -> None:
    with open(log_path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    if kept != rows:
        with atomic_output(str(log_path)) as tmp, open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)


def _restore(path, state: dict, net, opt, sched, sampler, device, options: FitOptions) -> None:
    """Weights, optimizer, schedule and random streams from a checkpoint (its contents checked first)."""
    check_state_dict(path, state["model"], net)
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if state["options"]["steps"] == options.steps:
        sched.load_state_dict(state["scheduler"])
    else:  # an extended run: the same one-cycle shape over the new length, fast-forwarded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(state["step"]):
                sched.step()
    sampler.rng.bit_generator.state = state["sampler_rng"]
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def refine(net, tracks, columns: int) -> int:
    """Mark genuine windows the current model places off sync as not genuine; returns how many."""
    net.eval()
    dropped = 0
    for t in tracks:
        keep = refine_mask(track_dists(net, t, columns))
        t.valid = torch.from_numpy(keep)
        dropped += int((~keep).sum())
    return dropped


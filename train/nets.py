"""The architectures `lipsync-train` trains, behind one interface: build one, embed a batch's lips, embed a
track's lips.

- `compact` (model/compact.py, the house model's): grey 48x80 lower faces, each window a stack of 5 frames
  as channels; trained from any dataset.
- `syncnet` (model/syncnet.py, the original network, state-dict compatible with syncnet_v2): 224x224 BGR
  face crops, so it needs a dataset prepared with `--faces`; trained on runs of consecutive frames through
  `SyncNet.forward_lip_sequence`, the same function as its per-window forward with 5x less input copying.

Both take 20 MFCC columns (0.2 s) of audio; only `compact` also has the IC-SyncNet head.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.compact import FRAMES_PER_WINDOW, CompactSyncNet, mouth_windows
from ..model.lips import LipsSyncNet
from ..model.syncnet import SyncNet

ARCHITECTURES = ("compact", "syncnet", "lips")
SYNCNET_FEATURES = {"audio_feature": "mfcc13", "audio_columns": 20, "normalize": False}


def build(arch: str, config: dict) -> nn.Module:
    if arch == "compact":
        return CompactSyncNet(**config)
    if arch == "syncnet":
        return SyncNet()
    if arch == "lips":
        return LipsSyncNet(**config)
    raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")


def arch_of(net: nn.Module) -> str:
    if isinstance(net, LipsSyncNet):
        return "lips"
    return "syncnet" if isinstance(net, SyncNet) else "compact"


def feature_config(net: nn.Module) -> dict:
    """The audio features a network takes (what `featurize` computes for it)."""
    return dict(SYNCNET_FEATURES) if isinstance(net, SyncNet) else net.config


def check_tracks(arch: str, tracks, datasets) -> None:
    if arch == "syncnet" and any(t.faces is None for t in tracks):
        raise ValueError(f"{', '.join(map(str, datasets))}: no face crops for the syncnet architecture; prepare the "
                         f"footage with `lipsync-train prepare --faces` (the compact model needs only the mouths)")
    if arch == "lips" and any(t.lips is None for t in tracks):
        raise ValueError(f"{', '.join(map(str, datasets))}: no face-mesh landmarks for the lips architecture; add them "
                         f"with `lipsync-train landmarks DATASET -o NEW` and train on NEW")


def batch_lip_embeddings(net: nn.Module, lips: torch.Tensor, runs: torch.Tensor | None) -> torch.Tensor:
    """A training batch's lip windows -> (L, D), in the batch's window order. `runs` None: `lips` are compact
    windows (L, 5, 48, 80); else `lips` are consecutive face crops (F, 224, 224, 3) cut into runs of
    `runs[k]` frames, each giving runs[k] - 4 windows (runs of equal length go through the network together,
    so BatchNorm sees the whole batch)."""
    if runs is None:
        return net.forward_lip_windows(lips)
    parts = lips.split(runs.tolist())
    out: list[torch.Tensor | None] = [None] * len(parts)
    by_length: dict[int, list[int]] = {}
    for k, p in enumerate(parts):
        by_length.setdefault(len(p), []).append(k)
    for length, ks in by_length.items():
        x = torch.stack([parts[k] for k in ks]).permute(0, 4, 1, 2, 3).float()  # (k, 3, T, 224, 224) BGR 0..255
        emb = net.forward_lip_sequence(x).reshape(len(ks), length - FRAMES_PER_WINDOW + 1, -1)
        for i, k in enumerate(ks):
            out[k] = emb[i]
    return torch.cat(out)


def track_lip_embeddings(net: nn.Module, track, start: int, stop: int) -> torch.Tensor:
    """Windows start..stop-1 of a (feature) track -> (stop - start, D) on the network's device."""
    device = next(net.parameters()).device
    if isinstance(net, LipsSyncNet):
        return net.forward_lip_windows(net.lip_input(net.centred(track.lips), start, stop).to(device))
    if isinstance(net, SyncNet):
        frames = torch.from_numpy(track.faces.decode(start, stop + FRAMES_PER_WINDOW - 1))
        return net.forward_lip_sequence(frames.permute(3, 0, 1, 2)[None].float().to(device))
    return net.forward_lip_windows(mouth_windows(track.mouths[start:stop + FRAMES_PER_WINDOW - 1]).to(device))


def eval_batch(net: nn.Module) -> int:
    """Windows per inference call: the original network's first layer alone is 4.5 MB a window."""
    return 32 if isinstance(net, SyncNet) else 256

"""LipsSyncNet: a sync network whose video stream is mouth *geometry*, not pixels.

Lip stream: per frame, 47 face-mesh points (faces/mesh.py) - the 40 of the outer and inner lip rings
and 7 of the jaw line - normalised for position, scale and in-plane rotation: the origin is the midpoint
of the two eye centres, the x axis the eye line, the unit the inter-ocular distance. So a face's size in
the frame, where it is, and its roll do not reach the network; what is left is the shape of the mouth and
jaw relative to the eyes. A window is 5 frames of these (94 numbers each) plus their 4 frame-to-frame
differences, through a small MLP. Audio stream: the compact model's (20 MFCC columns, 0.2 s).

`lip_features` is the one place the normalisation lives: training data and the engine both call it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .audio import FEATURES as AUDIO_FEATURES
from .compact import FRAMES_PER_WINDOW, _block

LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415]
JAW = [152, 148, 377, 176, 400, 149, 378]
POINTS = LIPS_OUTER + LIPS_INNER + JAW
_PAIRS = [(61, 291), (146, 375), (91, 321), (181, 405), (84, 314), (185, 409), (40, 270), (39, 269), (37, 267),
          (78, 308), (95, 324), (88, 318), (178, 402), (87, 317), (191, 415), (80, 310), (81, 311), (82, 312),
          (148, 377), (176, 400), (149, 378)]
_MATE = {a: b for a, b in _PAIRS} | {b: a for a, b in _PAIRS}
MIRROR = [POINTS.index(_MATE.get(p, p)) for p in POINTS]  # the point each point becomes in a mirrored face
LEFT_EYE, RIGHT_EYE = (33, 133), (362, 263)
FEATURES = 2 * len(POINTS)
# "shape" input: a few mouth measures instead of the raw points (distances, in inter-ocular units)
SHAPE_PAIRS = [(13, 14), (82, 87), (312, 317), (81, 178), (311, 402), (0, 17), (37, 84), (267, 314),
               (78, 308), (61, 291), (0, 152), (14, 152)]
SHAPE_FEATURES = len(SHAPE_PAIRS) + 2  # + the mouth centre's height and the chin's height below the eyes


def shape_measures(windows: torch.Tensor) -> torch.Tensor:
    """(..., F) lip features -> (..., SHAPE_FEATURES) mouth measures."""
    p = windows.reshape(*windows.shape[:-1], len(POINTS), 2)
    idx = {q: i for i, q in enumerate(POINTS)}
    d = [(p[..., idx[a], :] - p[..., idx[b], :]).norm(dim=-1) for a, b in SHAPE_PAIRS]
    centre = (p[..., idx[13], 1] + p[..., idx[14], 1]) / 2
    return torch.stack([*d, centre, p[..., idx[152], 1]], -1)


def lip_features(points: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, 468, 2 or 3) mesh points in any pixel frame -> float32 (T, 94): the lip and jaw points,
    origin at the eyes' midpoint, x along the eye line, in inter-ocular distances."""
    p = torch.as_tensor(np.asarray(points, dtype=np.float32))[..., :2]
    left = p[:, list(LEFT_EYE)].mean(1)
    right = p[:, list(RIGHT_EYE)].mean(1)
    origin = (left + right) / 2
    axis = right - left
    iod = axis.norm(dim=1, keepdim=True).clamp_min(1e-3)
    ux = axis / iod
    uy = torch.stack([-ux[:, 1], ux[:, 0]], 1)  # image y points down; uy is x rotated by +90 degrees
    rel = p[:, POINTS] - origin[:, None]
    x = (rel * ux[:, None]).sum(-1) / iod
    y = (rel * uy[:, None]).sum(-1) / iod
    return torch.stack([x, y], -1).reshape(len(p), FEATURES)


def centre_local(features: torch.Tensor, half: int) -> torch.Tensor:
    """Subtract from each frame the median of the frames within +-half of it (edges replicated): the
    person's resting mouth, estimated from the 2*half+1 frames around, so what is left is the movement.
    Streamable with `half` frames of look-ahead (a whole-track median would need the whole track)."""
    if half <= 0:
        return features
    idx = torch.arange(-half, len(features) + half).clamp(0, len(features) - 1)
    med = features[idx].unfold(0, 2 * half + 1, 1).median(-1).values
    return features - med


def lip_windows(features: torch.Tensor) -> torch.Tensor:
    """(T, F) per-frame features -> (T-4, 5, F) windows (a view)."""
    return features.unfold(0, FRAMES_PER_WINDOW, 1).permute(0, 2, 1)


class LipsSyncNet(nn.Module):
    def __init__(self, audio_feature: str = "mfcc13", audio_columns: int = 20, normalize: bool = False,
                 embedding_dim: int = 128, hidden: int = 512, dropout: float = 0.0, features: int = FEATURES,
                 inputs: str = "points", context: int = 0, centre: int = 0):
        super().__init__()
        self.config = {"audio_feature": audio_feature, "audio_columns": audio_columns, "normalize": normalize,
                       "embedding_dim": embedding_dim, "hidden": hidden, "dropout": dropout, "features": features,
                       "inputs": inputs, "context": context, "centre": centre}
        # centre: 0 none; N > 0 subtract the median of the frames within +-N (centre_local, streamable);
        # -1 subtract the whole track's median (experiments only: the engine cannot stream it)
        self.centre = centre
        # context c: window i's lip stream sees frames i-c .. i+4+c (edges of a track replicated); the
        # audio stays the 5 frames' 0.2 s
        self.context = context
        if inputs not in ("points", "shape", "both"):
            raise ValueError(f"inputs must be points, shape or both, not {inputs!r}")
        self.inputs = inputs
        features = {"points": features, "shape": SHAPE_FEATURES, "both": features + SHAPE_FEATURES}[inputs]
        self.audio_feature, self.audio_columns, self.normalize = audio_feature, audio_columns, normalize
        self.dropout = dropout
        n_in = (2 * (FRAMES_PER_WINDOW + 2 * context) - 1) * features
        self.lip_norm = nn.BatchNorm1d(n_in)
        self.lip_head = nn.Sequential(
            nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
        )
        self.lip_out = nn.Linear(256, embedding_dim)
        rows = AUDIO_FEATURES[audio_feature][0]
        self.audio_norm = nn.BatchNorm2d(1)
        self.audio_tower = nn.Sequential(
            *_block(1, 32, 3, 1),
            *_block(32, 64, 3, (1, 2)),
            *_block(64, 128, 3, 2),
            *_block(128, 128, 3, 2),
        )
        with torch.no_grad():
            aud_flat = self.audio_tower(torch.zeros(2, 1, rows, audio_columns)).flatten(1).shape[1]
        self.audio_head = nn.Sequential(nn.Linear(aud_flat, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
                                        nn.Linear(256, embedding_dim))
        self.register_buffer("distance_scale", torch.tensor(1.0))

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=1)
        return emb * self.distance_scale

    def forward_lip_windows(self, windows: torch.Tensor) -> torch.Tensor:
        """float (N, 5, F) lip features -> (N, D)."""
        w = windows.float()
        if self.inputs == "shape":
            w = shape_measures(w)
        elif self.inputs == "both":
            w = torch.cat([w, shape_measures(w)], -1)
        x = torch.cat([w, w[:, 1:] - w[:, :-1]], 1).flatten(1)
        x = self.lip_head(self.lip_norm(x))
        return self._finish(self.lip_out(nn.functional.dropout(x, self.dropout, self.training)))

    def forward_aud(self, features: torch.Tensor) -> torch.Tensor:
        x = self.audio_tower(self.audio_norm(features)).flatten(1)
        return self._finish(self.audio_head(nn.functional.dropout(x, self.dropout, self.training)))

    def centred(self, features: torch.Tensor) -> torch.Tensor:
        """A whole track's (T, F) features as this model's lip stream reads them (see `centre`)."""
        if self.centre < 0:
            return features - features.median(0).values
        return centre_local(features, self.centre)

    def lip_input(self, features: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Windows start..stop-1 of a track's (T, F) features -> (stop-start, 5+2c, F), edges replicated."""
        c = self.context
        idx = torch.arange(start - c, stop + FRAMES_PER_WINDOW - 1 + c).clamp(0, len(features) - 1)
        return features[idx].unfold(0, FRAMES_PER_WINDOW + 2 * c, 1).permute(0, 2, 1)


class LipFeatureStream:
    """The engine's lip stream for a LipsSyncNet: 224x224 crops in, window embeddings out, in order, as soon
    as every frame a window needs has arrived (`centre` look-ahead + `context`), so memory stays flat in
    file length. Windows come out exactly as `lip_input(centre_local(features))` over the whole track.

    `centre`: the half-width of the local median the model was trained with (0: none)."""

    def __init__(self, net: LipsSyncNet, mesh, centre: int = 0):
        self.net, self.mesh, self.half, self.c = net, mesh, centre, net.context
        self.raw = torch.zeros(0, FEATURES)  # features of frames base .. n-1
        self.base = 0
        self.n = 0
        self.done = 0  # windows emitted

    def _centred(self, lo: int, hi: int, total: int) -> torch.Tensor:
        """Centred features of frames lo..hi-1 (indices clamped to 0..total-1 first)."""
        f = torch.arange(lo, hi).clamp(0, total - 1)
        if self.half <= 0:
            return self.raw[f - self.base]
        idx = (f[:, None] + torch.arange(-self.half, self.half + 1)[None]).clamp(0, total - 1) - self.base
        return self.raw[f - self.base] - self.raw[idx].median(1).values

    def _emit(self, upto: int, total: int) -> torch.Tensor:
        if upto <= self.done:
            return torch.zeros(0, self.net.config["embedding_dim"])
        lo, hi = self.done - self.c, upto + FRAMES_PER_WINDOW - 1 + self.c
        frames = self._centred(lo, hi, total)
        windows = frames.unfold(0, FRAMES_PER_WINDOW + 2 * self.c, 1).permute(0, 2, 1)
        emb = self.net.forward_lip_windows(windows)
        self.done = upto
        keep = max(0, self.done - self.c - self.half)  # the earliest raw frame a later window reads
        if keep > self.base:
            self.raw = self.raw[keep - self.base:].clone()
            self.base = keep
        return emb

    @torch.inference_mode()
    def push(self, crops: np.ndarray) -> torch.Tensor:
        if len(crops):
            points, _ = self.mesh(crops)
            self.raw = torch.cat([self.raw, lip_features(points)])
            self.n += len(crops)
        # window i reads centred frames up to i+4+c, which read raw frames up to i+4+c+half
        ready = self.n - (FRAMES_PER_WINDOW - 1) - self.c - self.half
        return self._emit(max(ready, self.done), total=10**12)

    @torch.inference_mode()
    def finish(self) -> torch.Tensor:
        return self._emit(max(self.n - FRAMES_PER_WINDOW + 1, self.done), total=self.n)

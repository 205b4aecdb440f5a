"""Genuine and false pairs from synced tracks, drawn as segments so one lip forward pass serves many pairs.

A draw takes `seg_len` consecutive lip windows of one track and the audio windows around them: every
window within `hard` of the segment (the hard negatives, a few frames off) plus `far` random ones up to
`max_shift` frames away (the paper's false pairs, up to +-2 s at 25 fps). Every (lip i, audio j) with
|j - i| <= max_shift is a pair: genuine when j == i, false when |j - i| >= min_false_shift; pairs in
between are ignored (a 5-frame window one frame off is nearly the same window, not a clear negative).

Features are computed once per track at load time; drawing a batch is tensor indexing, so the input
pipeline never waits on decoding (fit reports the share of time spent here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.audio import MfccStream
from ..model.compact import FRAMES_PER_WINDOW, mouth_windows
from ..model.lips import MIRROR, lip_windows
from .data import FaceJpegs, Track

COLUMNS_PER_FRAME = 4
AUGMENTATIONS = ("basic", "geometric")


@dataclass
class FeatureTrack:
    person: str
    source: str
    mouths: torch.Tensor  # uint8 (T, 48, 80)
    features: torch.Tensor  # float32 (rows, C), (W-20)/2 zero columns at both ends: audio window j = cols [4j, 4j+W)
    num_windows: int
    valid: torch.Tensor  # bool (num_windows,): windows still used as genuine (refinement clears some)
    faces: FaceJpegs | None = None  # the 224x224 crops (datasets prepared with --faces)
    lips: torch.Tensor | None = None  # float32 (T, 94) lip geometry (datasets with landmarks)


def featurize(tracks: list[Track], feature: str = "mfcc13", columns: int = 20) -> list[FeatureTrack]:
    pad = (columns - 20) // 2
    out = []
    for t in tracks:
        feats = MfccStream(feature).feed(t.audio).astype(np.float32)
        feats = np.pad(feats, ((0, 0), (pad, pad)))
        n_audio = (feats.shape[1] - columns) // COLUMNS_PER_FRAME + 1
        n = min(len(t.mouths) - FRAMES_PER_WINDOW + 1, n_audio)
        if n < 2:
            continue
        out.append(FeatureTrack(t.person, t.source, t.mouths, torch.from_numpy(feats), n,
                                torch.ones(n, dtype=torch.bool), t.faces, t.lips))
    return out


@dataclass
class Batch:
    lips: torch.Tensor  # uint8 (L, 5, 48, 80) windows; with faces: (F, 224, 224, 3) frames, see lip_runs
    audio: torch.Tensor  # float32 (A, 1, rows, W)
    lip_index: torch.Tensor  # (P,) into the L lip windows
    audio_index: torch.Tensor  # (P,) into audio
    shift: torch.Tensor  # (P,) audio window - lip window, in frames
    genuine: torch.Tensor  # bool (P,)
    lip_runs: torch.Tensor | None = None  # faces: frames per segment (each gives frames - 4 windows)

    @property
    def num_lip_windows(self) -> int:
        return len(self.lips) if self.lip_runs is None else int((self.lip_runs - FRAMES_PER_WINDOW + 1).sum())

    def to(self, device) -> Batch:
        return Batch(*(None if x is None else x.to(device, non_blocking=True) for x in
                       (self.lips, self.audio, self.lip_index, self.audio_index, self.shift, self.genuine,
                        self.lip_runs)))


class PairIndex:
    """The (lip window, audio window) pairs of a batch built segment by segment: every pair within
    `max_shift` frames, genuine at shift 0, false at `min_false_shift` or more (nothing in between)."""

    def __init__(self):
        self.li, self.ai, self.sh, self.ge = [], [], [], []
        self.n_lip = self.n_aud = 0

    def add(self, lip: np.ndarray, aud: np.ndarray, max_shift: int, min_false_shift: int,
            valid: np.ndarray | None = None) -> None:
        d = aud[None, :] - lip[:, None]  # (L, A) shifts
        ok = (np.abs(d) <= max_shift) & ((d == 0) | (np.abs(d) >= min_false_shift))
        if valid is not None:
            ok &= ~((d == 0) & ~valid[lip][:, None])  # refinement: no genuine pair from a dropped window
        i, j = np.nonzero(ok)
        self.li.append(i + self.n_lip)
        self.ai.append(j + self.n_aud)
        self.sh.append(d[i, j])
        self.ge.append(d[i, j] == 0)
        self.n_lip += len(lip)
        self.n_aud += len(aud)

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """(lip_index, audio_index, shift, genuine), Batch's order."""
        return tuple(torch.from_numpy(np.concatenate(v)) for v in (self.li, self.ai, self.sh, self.ge))


class PairSampler:
    def __init__(self, tracks: list[FeatureTrack], columns: int, seg_len: int = 32, max_shift: int = 50,
                 hard: int = 8, far: int = 16, min_false_shift: int = 2, seed: int = 0,
                 weights: np.ndarray | None = None, augment: str = "geometric", faces: bool = False,
                 lips: bool = False):
        if augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augment!r} (known: {', '.join(AUGMENTATIONS)})")
        self.augment = augment
        self.faces = faces  # draw the 224x224 crops (the original architecture) instead of the mouths
        self.lips = lips  # draw the lip geometry (arch lips) instead of the mouths
        if not tracks:
            raise ValueError("no tracks to sample from")
        self.tracks, self.columns = tracks, columns
        self.seg_len, self.max_shift, self.hard, self.far = seg_len, max_shift, hard, far
        self.min_false_shift = min_false_shift
        self.rng = np.random.default_rng(seed)
        if weights is None:
            # a person's share grows with the square root of their footage: one speaker with hours
            # (GRID) cannot drown forty with seconds, nor be wasted by giving it 1/40 of the batches
            persons = sorted({t.person for t in tracks})
            per_person = {p: sum(t.num_windows for t in tracks if t.person == p) for p in persons}
            weights = np.array([t.num_windows / per_person[t.person] * np.sqrt(per_person[t.person])
                                for t in tracks])
        self.p = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def _segment(self, t: FeatureTrack):
        L = min(self.seg_len, t.num_windows)
        s = int(self.rng.integers(0, t.num_windows - L + 1))
        lip = np.arange(s, s + L)
        near = np.arange(max(0, s - self.hard), min(t.num_windows, s + L + self.hard))
        lo, hi = max(0, s - self.max_shift), min(t.num_windows, s + L + self.max_shift)
        pool = np.setdiff1d(np.arange(lo, hi), near)
        far = self.rng.choice(pool, size=min(self.far, len(pool)), replace=False) if len(pool) else pool
        return lip, np.concatenate([near, far])

    def sample(self, num_segments: int, augment: bool = True) -> Batch:
        lips, runs, auds = [], [], []
        pairs = PairIndex()
        picks = self.rng.choice(len(self.tracks), size=num_segments, p=self.p)
        for k in picks:
            t = self.tracks[k]
            lip, aud = self._segment(t)
            if self.faces:
                frames = torch.from_numpy(t.faces.decode(int(lip[0]), int(lip[-1]) + FRAMES_PER_WINDOW))
            elif self.lips:
                frames = t.lips[lip[0]:lip[-1] + FRAMES_PER_WINDOW]
            else:
                frames = t.mouths[lip[0]:lip[-1] + FRAMES_PER_WINDOW]
            if augment:  # on the frames, before windowing: each frame is transformed once, not 5 times
                frames = self._augment_lips(frames) if self.lips else self._augment(frames)
            if self.lips:
                windows = lip_windows(frames)  # (L, 5, 94)
            else:
                windows = frames if self.faces else mouth_windows(frames)  # (L, 5, 48, 80); faces: windowed in the net
            runs.append(len(frames))
            cols = torch.from_numpy(aud * COLUMNS_PER_FRAME)[:, None] + torch.arange(self.columns)
            feats = t.features[:, cols].permute(1, 0, 2)  # (A, rows, W)
            if augment:  # a random gain: MFCC c0 / every log-mel row moves by the same constant
                gain = float(self.rng.normal(0, 0.5))
                feats = feats.clone()
                if feats.shape[1] == 13:
                    feats[:, 0] += gain
                else:
                    feats += gain
            lips.append(windows)
            auds.append(feats)
            pairs.add(lip, aud, self.max_shift, self.min_false_shift, t.valid.numpy())
        return Batch(torch.cat(lips), torch.cat(auds)[:, None].float(), *pairs.tensors(),
                     torch.tensor(runs) if self.faces else None)

    def _augment_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """Lip geometry (T, 94), one transform per segment: mirror (x -> -x, left and right points swapped),
        a rotation of +-5 degrees, a scale of 0.9-1.1 (x and y apart by up to 5%), a shift of 0.05
        inter-ocular distances, and per-frame jitter of 0.005 (the mesh's own noise is about that)."""
        p = frames.reshape(len(frames), -1, 2).clone()
        if self.rng.random() < 0.5:
            p = p[:, MIRROR]
            p[..., 0] = -p[..., 0]
        angle = float(np.deg2rad(self.rng.uniform(-5, 5)))
        c, s = np.cos(angle), np.sin(angle)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
        scale = float(self.rng.uniform(0.9, 1.1)) * torch.tensor(self.rng.uniform(0.95, 1.05, size=2), dtype=torch.float32)
        shift = torch.tensor(self.rng.normal(0, 0.05, size=2), dtype=torch.float32)
        p = (p @ rot.T) * scale + shift
        p = p + torch.from_numpy(self.rng.normal(0, 0.005, size=p.shape).astype(np.float32))
        return p.reshape(len(frames), -1)

    def _augment(self, frames: torch.Tensor) -> torch.Tensor:
        """The same transform over a whole segment of (T, 48, 80) grey mouths or (T, 224, 224, 3) face crops.
        "basic": mirror, +-3 px shift (in mouth pixels: x2 on the crops, which have twice the resolution),
        contrast/brightness. "geometric" adds what differs between face detectors, sources and people:
        zoom 0.85-1.15, rotation +-6 degrees, a sub-pixel shift, and sometimes a low-resolution blur
        (small faces upscaled); the lip stream then leans less on one crop geometry it memorised."""
        colour = frames.dim() == 4
        px = 2 if colour else 1
        x = frames.permute(0, 3, 1, 2) if colour else frames  # (T, [C,] H, W)
        if self.rng.random() < 0.5:
            x = x.flip(-1)
        if self.augment == "basic":  # draws in the first house model's order: its recipe replays exactly
            dy, dx = (int(v) * px for v in self.rng.integers(-3, 4, size=2))
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            a, b = float(self.rng.uniform(0.7, 1.3)), float(self.rng.uniform(-25, 25))
            x = (x.float() * a + b).clamp_(0, 255).to(torch.uint8)
            return x.permute(0, 2, 3, 1) if colour else x
        a, b = float(self.rng.uniform(0.7, 1.3)), float(self.rng.uniform(-25, 25))
        h, w = x.shape[-2:]
        zoom = float(self.rng.uniform(0.85, 1.15))
        angle = float(np.deg2rad(self.rng.uniform(-6, 6)))
        ty, tx = (float(v) * px for v in self.rng.uniform(-3, 3, size=2))
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        # affine_grid works in [-1, 1] coordinates: pixel shifts become 2*px/size; the aspect ratio of
        # the 48x80 crop enters the rotation terms so that a rotation stays a rotation
        theta = torch.tensor([[cos, -sin * h / w, 2 * tx / w], [sin * w / h, cos, 2 * ty / h]], dtype=torch.float32)
        img = x.float() if colour else x.float()[:, None]
        grid = torch.nn.functional.affine_grid(theta.expand(len(img), 2, 3), list(img.shape), align_corners=False)
        img = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if self.rng.random() < 0.3:
            f = float(self.rng.uniform(1.5, 3.0))
            small = torch.nn.functional.interpolate(img, scale_factor=1 / f, mode="area")
            img = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        out = (img * a + b).clamp_(0, 255).round_().to(torch.uint8)
        return out.permute(0, 2, 3, 1) if colour else out[:, 0]

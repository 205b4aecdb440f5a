"""Speakers stage: which face is speaking when, and the file's offset from the speaking faces.

Per track, the procedure of IC-SyncNet's appendix D on the per-frame sync confidence: Gaussian
smoothing, a sigmoid to a speaking probability, probability > `threshold` (0.4), islands shorter
than `min_segment_s` dropped (and gaps shorter than it closed), so a face entering or leaving never
leaves a one-frame blip. SyncNet's per-frame confidence is a distance margin, not a probability:
`bias` (where the sigmoid crosses 0.5) and `scale` map it; their defaults are provisional until a
model that knows lips is calibrated on the shared footage.

The file's offset is then taken from the mean distance curve over the speaking windows of all
tracks, each window weighted by its confidence, not from a plain mean over faces: a silent face in
the background does not pull the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from .sync import best_offset, inside_clip, mean_curve
from .verdict import evidence


@dataclass
class SpeakerOptions:
    sigma_frames: float = 2.0
    bias: float = 2.0
    scale: float = 1.0
    threshold: float = 0.4
    min_segment_s: float = 0.4


def speaking_probability(framewise_conf: np.ndarray, opts: SpeakerOptions) -> np.ndarray:
    if len(framewise_conf) == 0:
        return np.zeros(0)
    smooth = gaussian_filter1d(np.asarray(framewise_conf, dtype=np.float64), opts.sigma_frames, mode="nearest")
    return 1.0 / (1.0 + np.exp(-(smooth - opts.bias) / opts.scale))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where mask is True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def speaking_mask(framewise_conf: np.ndarray, opts: SpeakerOptions, fps: float = 25.0) -> np.ndarray:
    mask = speaking_probability(framewise_conf, opts) > opts.threshold
    min_len = max(1, int(round(opts.min_segment_s * fps)))
    for a, b in _runs(~mask):  # close short gaps inside speech first ...
        if a > 0 and b < len(mask) and b - a < min_len:
            mask[a:b] = True
    for a, b in _runs(mask):  # ... then drop short islands
        if b - a < min_len:
            mask[a:b] = False
    return mask


def segments(mask: np.ndarray, first_frame: int, fps: float = 25.0) -> list[list[float]]:
    """Window mask -> [[start_s, end_s], ...]; window i covers frames i..i+4 of the track."""
    return [[round((first_frame + a) / fps, 3), round((first_frame + b + 4) / fps, 3)] for a, b in _runs(mask)]


@dataclass
class Combined:
    offset_frames: int
    confidence: float
    min_distance: float
    basis: str  # "speaking" or "all-tracks"
    windows: int
    evidence: dict | None = None  # what the offset rests on (verdict.evidence), for its probability


def window_weights(framewise_conf: np.ndarray) -> np.ndarray:
    """How much a window counts in a combined curve: its confidence, floored so a window on a silent
    stretch still counts a little rather than negatively."""
    return np.clip(framewise_conf, 1e-3, None)


def combine(track_dists: list[np.ndarray], track_conf: list[np.ndarray], masks: list[np.ndarray],
            vshift: int, edges: str = "zero") -> Combined | None:
    """Confidence-weighted mean distance curve over the speaking windows of every track (with edges
    "valid", over the pairs whose audio lies inside each track: see sync.py)."""
    def curve(select):
        rows, weights, inside = [], [], []
        for dists, conf, mask in zip(track_dists, track_conf, masks):
            chosen = select(mask)
            if chosen.any():
                rows.append(dists[chosen])
                weights.append(window_weights(conf[chosen]))
                if edges == "valid":
                    inside.append(inside_clip(len(dists), vshift)[chosen])
        if not rows:
            return None
        rows, weights = np.concatenate(rows), np.concatenate(weights)
        inside = np.concatenate(inside) if inside else None
        return mean_curve(rows, weights, inside), len(rows), evidence(rows, weights, inside, vshift)

    basis = "speaking"
    found = curve(lambda m: m)
    if found is None:  # nobody speaks clearly: every window of every visible face
        basis = "all-tracks"
        found = curve(lambda m: np.ones_like(m, bool))
    if found is None:
        return None
    mean, count, ev = found
    offset, minval, conf, _ = best_offset(torch.from_numpy(mean.astype(np.float32)), vshift)
    return Combined(offset_frames=offset, confidence=conf, min_distance=minval, basis=basis, windows=count,
                    evidence=ev)


def track_evidence(dists: np.ndarray, framewise_conf: np.ndarray, vshift: int, edges: str,
                   opts: SpeakerOptions | None = None) -> Combined | None:
    """One face's offset and evidence as the file's are made (its speaking windows, confidence-weighted)."""
    mask = speaking_mask(framewise_conf, opts or SpeakerOptions())
    return combine([dists], [framewise_conf], [mask], vshift, edges)

"""Speakers stage: which face is speaking when, and the file's offset from the faces that carry it.

Two decisions live here, in this order:

1. **The file's offset** from the mean distance curve over the *voting* windows of all tracks
   (`vote_windows`: confident by IC-SyncNet appendix D's smoothing and sigmoid on the per-window confidence,
   islands shorter than 0.4 s dropped, and with speech in their sound), each window weighted by its
   confidence, not a plain mean over faces: a silent face in the background does not pull the answer.
   `combine` makes it; the verdict's evidence (verdict.py) is measured on the same windows.
2. **Who speaks when, at that offset** (`attribute`): per window of each face, the *margin at the file's
   offset* (median distance over all lags minus the distance at the offset: how much better this face's
   lips fit the sound at the offset than anywhere else), smoothed over `sigma_frames`, turned into a
   speaking probability by a logistic fit on validation persons (`lipsync-train calibrate`, kept in the
   model's calibration file: "alone" for a face with no other face in view, "among" with the best other
   face's margin beside it). A face is speaking where there is speech (speech.py: nobody speaks in
   silence), its track's sound is its own (not `no_sync`), and it is the likeliest face in view; a second
   face counts at the same moment only at probability >= `threshold` (default 0.9: two at once is rare,
   and a weak model would mark it everywhere).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .filters import gaussian_smooth
from .sync import best_offset, inside_clip, mean_curve
from .verdict import evidence


@dataclass
class VoteOptions:
    """Which windows vote for the file's offset (fixed: the verdict calibration is fitted on them)."""

    sigma_frames: float = 2.0
    bias: float = 2.0
    scale: float = 1.0
    threshold: float = 0.4
    min_segment_s: float = 0.4


@dataclass
class SpeakerOptions:
    threshold: float = 0.9  # a second face speaking at the same moment needs this probability
    min_segment_s: float = 0.4  # shorter speaking islands are dropped, shorter gaps closed
    speech_threshold: float = 0.5  # silero VAD's own default


def _vote_probability(framewise_conf: np.ndarray, opts: VoteOptions) -> np.ndarray:
    if len(framewise_conf) == 0:
        return np.zeros(0)
    smooth = gaussian_smooth(np.asarray(framewise_conf, dtype=np.float64), opts.sigma_frames)
    return 1.0 / (1.0 + np.exp(-(smooth - opts.bias) / opts.scale))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where mask is True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def vote_mask(framewise_conf: np.ndarray, opts: VoteOptions | None = None, fps: float = 25.0) -> np.ndarray:
    """The windows that vote for the file's offset: a clear dip of their own, in runs of >= 0.4 s."""
    opts = opts or VoteOptions()
    return clean_runs(_vote_probability(framewise_conf, opts) > opts.threshold, opts.min_segment_s, fps)


def clean_runs(mask: np.ndarray, min_segment_s: float, fps: float = 25.0) -> np.ndarray:
    """Gaps shorter than min_segment_s inside runs closed, then islands shorter than it dropped."""
    min_len = max(1, int(round(min_segment_s * fps)))
    mask = close_gaps(mask, min_len)  # close short gaps inside runs first ...
    for a, b in runs(mask):  # ... then drop short islands
        if b - a < min_len:
            mask[a:b] = False
    return mask


def close_gaps(mask: np.ndarray, min_len: int) -> np.ndarray:
    """A copy with every gap shorter than min_len frames between two runs filled."""
    mask = np.array(mask, dtype=bool)
    for a, b in runs(~mask):
        if a > 0 and b < len(mask) and b - a < min_len:
            mask[a:b] = True
    return mask


def segments(mask: np.ndarray, first_frame: int, fps: float = 25.0) -> list[list[float]]:
    """Window mask -> [[start_s, end_s], ...]. Window i covers frames i..i+4 of the track: inside the track a
    run starts and ends at its windows' centre frames (so one face's turn ends where the next one's begins),
    at the track's ends it reaches the track's first / last frame."""
    n = len(mask)
    return [[round((first_frame + (a + 2 if a > 0 else 0)) / fps, 3),
             round((first_frame + (b + 2 if b < n else b + 4)) / fps, 3)] for a, b in runs(mask)]


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


SPEECH_REACH = 5  # frames: a window votes when speech lies within this reach of its audio at lag 0


def vote_windows(framewise_conf: np.ndarray, speech: np.ndarray | None = None) -> np.ndarray:
    """The windows that vote for an offset: confident ones (vote_mask) whose sound holds speech nearby
    (speech: per window, its audio at lag 0; None: not known, e.g. face-cropped input). Silence has no lips
    to match, so its windows would only add noise to the curve (issue #19's speech-activity lever)."""
    mask = vote_mask(framewise_conf)
    if speech is not None:
        near = np.convolve(np.asarray(speech, dtype=float), np.ones(2 * SPEECH_REACH + 1), mode="same") > 0
        mask &= near[:len(mask)] if len(near) >= len(mask) else np.pad(near, (0, len(mask) - len(near)))
    return mask


def track_evidence(dists: np.ndarray, framewise_conf: np.ndarray, vshift: int, edges: str,
                   speech: np.ndarray | None = None) -> Combined | None:
    """One face's offset and evidence as the file's are made (its voting windows, confidence-weighted)."""
    return combine([dists], [framewise_conf], [vote_windows(framewise_conf, speech)], vshift, edges)


def offset_margin(dists: np.ndarray, offset_frames: int, vshift: int, inside: np.ndarray | None = None,
                  reach: int = 0) -> np.ndarray:
    """Per window: median distance over the lags minus the least distance within `reach` frames of the
    file's offset (a measured offset is right within a frame or two, and a face's lips fit their sound at
    the true lag, not at a neighbour's). Lags whose audio lies outside the clip are left out when `inside` is
    given; 0 where no lag near the offset has its audio inside."""
    d = np.asarray(dists, dtype=np.float64)
    if len(d) == 0:
        return np.zeros(0)
    if inside is not None:
        d = np.where(inside, d, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (no lag inside): margin 0
        lo, hi = max(0, vshift + offset_frames - reach), min(d.shape[1], vshift + offset_frames + reach + 1)
        margin = np.nanmedian(d, axis=1) - np.nanmin(d[:, lo:hi], axis=1)
    return np.nan_to_num(margin, nan=0.0)


@dataclass
class SpeakingModel:
    """Speaking probability from the smoothed margin at the file's offset (fitted by lipsync-train calibrate).
    Faces are compared on their margins centred on each face's own median: some faces fit any sound better
    than others, and that bias would otherwise name the same face the speaker all the time."""

    sigma_frames: float
    alone: list[float]  # [coef_z, intercept]: a face with no other face in view
    among: list[float]  # [coef_z, coef_centred_minus_best_other_centred, intercept]
    reach_frames: int = 2  # offset_margin's reach

    @classmethod
    def from_dict(cls, d: dict | None) -> SpeakingModel | None:
        if not d:
            return None
        return cls(float(d["sigma_frames"]), list(d["alone"]), list(d["among"]), int(d.get("reach_frames", 0)))

    def smooth(self, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """-> (smoothed margin, smoothed margin centred on its median)."""
        m = np.asarray(margin, dtype=np.float64)
        if len(m) == 0:
            return np.zeros(0), np.zeros(0)
        z = gaussian_smooth(m, self.sigma_frames)
        return z, z - np.median(m)

    def probability(self, z: np.ndarray, lead: np.ndarray) -> np.ndarray:
        """lead: this face's centred margin minus the best other face's at the same window, NaN where no
        other face is in view."""
        alone = self.alone[0] * z + self.alone[1]
        among = self.among[0] * z + self.among[1] * np.nan_to_num(lead) + self.among[2]
        return 1.0 / (1.0 + np.exp(-np.where(np.isnan(lead), alone, among)))


# without a fitted model (an uncalibrated model file): the margin's sign, softly; the decision rule is the same
UNCALIBRATED = SpeakingModel(sigma_frames=12.0, alone=[1.0, 0.0], among=[0.0, 1.0, 0.0], reach_frames=2)


def attribute(margins: list[np.ndarray], firsts: list[int], speech: list[np.ndarray], own_sound: list[bool],
              model: SpeakingModel, opts: SpeakerOptions | None = None,
              fps: float = 25.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Who speaks when (see the module doc). margins[t][i]: track t's offset_margin (with the model's
    reach) for its window i, which starts at frame firsts[t] + i; speech[t][i]: the window's audio holds
    speech; own_sound[t]: the track's sound is its own (its verdict is not no_sync). -> (probabilities, masks)."""
    opts = opts or SpeakerOptions()
    smoothed = [model.smooth(m) for m in margins]
    end = max([f + len(m) for f, m in zip(firsts, margins)], default=0)
    stack = np.full((len(margins), end), np.nan)  # global window index -> each track's centred margin
    for t, (f, (_, centred)) in enumerate(zip(firsts, smoothed)):
        if own_sound[t]:  # a face whose sound is not its own does not compete
            stack[t, f:f + len(centred)] = centred
    probs, masks, leads = [], [], []
    for t, (f, (z, centred)) in enumerate(zip(firsts, smoothed)):
        others = np.delete(stack[:, f:f + len(z)], t, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # no other face at that window
            best_other = np.nanmax(others, axis=0) if len(others) else np.full(len(z), np.nan)
        lead = centred - best_other
        p = model.probability(z, lead)
        likeliest = np.isnan(lead) | (lead >= 0)
        mask = speech[t] & bool(own_sound[t]) & (likeliest | (p >= opts.threshold))
        probs.append(p)
        masks.append(clean_runs(mask, opts.min_segment_s, fps))
        leads.append(lead)
    # closing short gaps can give one face a stretch where another is likelier: one at a time again
    for t, (f, mask) in enumerate(zip(firsts, masks)):
        for u, (g, other) in enumerate(zip(firsts, masks)):
            if u == t:
                continue
            lo, hi = max(f, g), min(f + len(mask), g + len(other))
            if lo >= hi:
                continue
            both = mask[lo - f:hi - f] & other[lo - g:hi - g]
            behind = (np.nan_to_num(leads[t][lo - f:hi - f], nan=0.0) < 0) & (probs[t][lo - f:hi - f] < opts.threshold)
            mask[lo - f:hi - f] &= ~(both & behind)
    return probs, masks

"""Offsets over time and the drift they show: can one constant slip fix the file?

The per-window distance rows the sync stage keeps are averaged over sliding spans (10 s, every 5 s by
default); each span gets its own offset and confidence, as the whole file does. A line fitted through
the confident spans' offsets (weighted by confidence) gives the drift in ms per minute. The verdict:
- "constant": the fitted line moves by less than one frame (40 ms) over the file: one slip fixes it
  (`spread_ms`, the largest distance of a confident span from their median, is reported beside it);
- "drifting": it moves by a frame or more: a constant slip cannot fix it (the sound has to be
  resampled or re-conformed), and the report says so;
- "insufficient": fewer than 2 confident spans (short or face-less files), or confident spans that
  disagree without a steady trend (two spans alone, or a slope within twice its own standard error):
  evidence that something is off, not that the sound drifts. `reason` says which.
A span is confident when its confidence reaches `min_confidence` and, with a calibrated model, its own
sync probability (verdict.py, from the span's windows) is not below the `no_sync` threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .sync import audio_delay_ms, best_offset, mean_curve

FPS = 25.0
FRAME_MS = 1000.0 / FPS


@dataclass
class DriftOptions:
    window_s: float = 10.0
    hop_s: float = 5.0
    min_confidence: float = 1.0  # spans below this are shown but not fitted


@dataclass
class Drift:
    spans: list[dict]
    ms_per_minute: float | None
    change_over_file_ms: float | None
    spread_ms: float | None
    verdict: str
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.verdict == "insufficient":
            if "disagree" in self.reason:  # evidence that something is off: say what
                return f"drift: cannot tell ({self.reason})"
            return "drift: not enough confident spans to tell"
        if self.verdict == "constant":
            return f"drift: none ({self.ms_per_minute:+.1f} ms/min), one constant slip fixes it"
        return (f"drift: {self.ms_per_minute:+.1f} ms/min ({self.change_over_file_ms:+.0f} ms over the file): "
                "a constant slip cannot fix this")


def sliding_offsets(rows: np.ndarray, starts: np.ndarray, weights: np.ndarray, vshift: int,
                    options: DriftOptions | None = None, inside: np.ndarray | None = None,
                    calibration=None) -> Drift:
    """rows: (N, 2*vshift+1) distances of windows starting at 25-fps frames `starts`, with weights
    (speaking confidence; windows from several face tracks may share a start); inside: which pairs to
    average (edges "valid", see sync.py), None for all; calibration: the model's (verdict.Calibration)."""
    from .verdict import evidence

    opts = options or DriftOptions()
    spans: list[dict] = []
    confident: list[bool] = []
    if len(rows):
        span, hop = int(round(opts.window_s * FPS)), max(1, int(round(opts.hop_s * FPS)))
        first, last = int(starts.min()), int(starts.max())
        for a in range(first, max(first, last - span + hop) + 1, hop):
            chosen = (starts >= a) & (starts < a + span) & (weights > 0)
            if chosen.sum() < 5:
                continue
            chosen_inside = None if inside is None else inside[chosen]
            mean = mean_curve(rows[chosen], weights[chosen], chosen_inside)
            offset, _, conf, _ = best_offset(torch.from_numpy(mean), vshift)
            entry = {"start_s": round(a / FPS, 3), "end_s": round(min(a + span, last + 5) / FPS, 3),
                     "offset_frames": offset, "audio_delay_ms": audio_delay_ms(offset),
                     "confidence": round(conf, 4)}
            ok = conf >= opts.min_confidence
            if calibration is not None:
                p = calibration.probability(evidence(rows[chosen], weights[chosen], chosen_inside, vshift))
                entry["sync_probability"] = round(p, 4)
                ok = ok and p >= calibration.no_sync_below
            spans.append(entry)
            confident.append(ok)
    good = [s for s, ok in zip(spans, confident) if ok]
    if len(good) < 2:
        return Drift(spans, None, None, None, "insufficient",
                     f"{len(good)} confident span(s) of {len(spans)}: at least 2 are needed")
    t = np.array([(s["start_s"] + s["end_s"]) / 2 for s in good])
    d = np.array([s["audio_delay_ms"] for s in good])
    w = np.array([s["confidence"] for s in good])
    slope, intercept = np.polyfit(t, d, 1, w=np.sqrt(w))
    change = float(slope * (t.max() - t.min()))
    spread = float(np.abs(d - np.median(d)).max())
    if abs(change) < FRAME_MS:
        return Drift(spans, round(float(slope) * 60.0, 3), round(change, 1), round(spread, 1), "constant")
    if len(good) < 3:
        return Drift(spans, None, None, round(spread, 1), "insufficient",
                     "two confident spans disagree: too few to tell drift from a wrong span")
    # the slope's standard error from the spans' own scatter around the line (weighted least squares)
    residual = d - (slope * t + intercept)
    dof = len(good) - 2
    sigma2 = float((w * residual ** 2).sum() / w.sum()) * len(good) / max(dof, 1)
    tw = float((w * t).sum() / w.sum())
    se = np.sqrt(sigma2 / max(float((w * (t - tw) ** 2).sum() / w.sum()) * len(good), 1e-12))
    if abs(slope) < 2 * se:
        return Drift(spans, None, None, round(spread, 1), "insufficient",
                     f"confident spans disagree by up to {spread:.0f} ms without a steady trend")
    return Drift(spans, round(float(slope) * 60.0, 3), round(change, 1), round(spread, 1), "drifting")

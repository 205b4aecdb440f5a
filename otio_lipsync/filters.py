"""1-D smoothing filters in numpy, equal to scipy's (tested against it): importing scipy.signal / scipy.ndimage
cost every `lipsync` process ~0.6 s for these few calls. A module of its own, below every stage that smooths
(sync, speakers, face tracks), so that none of them imports another for a filter."""

from __future__ import annotations

import numpy as np


def median_filter(values: np.ndarray, kernel: int, edges: str = "zero") -> np.ndarray:
    """Sliding median of odd width `kernel` over 1-D values. edges="zero": zeros beyond both ends, equal to
    scipy.signal.medfilt(values, kernel) value for value; edges="nearest": the end values repeated."""
    if len(values) == 0:
        return values.copy()
    half = kernel // 2
    if edges == "nearest":
        padded = np.pad(values, (half, half), mode="edge")
    elif edges == "zero":
        padded = np.concatenate([np.zeros(half, values.dtype), values, np.zeros(half, values.dtype)])
    else:
        raise ValueError(f"edges must be 'zero' or 'nearest', not {edges!r}")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, kernel), axis=1)


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d(values, sigma, mode="nearest") for 1-D float64 values (its kernel, 4 sigma
    each side; within 1e-12)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * x * x)
    return np.convolve(np.pad(values, radius, mode="edge"), kernel / kernel.sum(), mode="valid")

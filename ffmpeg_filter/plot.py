"""`--plot PNG`: offset and confidence over time, for people who would rather look than read."""

from __future__ import annotations

import math
import os

from ..outputs import atomic_output
from .qc import Standard

FPS = 25.0
FRAME_MS = 1000.0 / FPS


def delay_axis(delays_ms) -> tuple[float, float]:
    """The delay axis: the data plus a margin, never narrower than one 25-fps frame either side of its
    middle (a flat 0 ms file otherwise gets a +-0.04 ms axis that makes rounding look like drift)."""
    lo, hi = min(delays_ms), max(delays_ms)
    mid, half = (lo + hi) / 2, max((hi - lo) / 2 * 1.15, FRAME_MS)
    return mid - half, mid + half


def plot_analysis(analysis, target: str, standard: Standard | None = None) -> str:
    import matplotlib.pyplot as plt

    fig = figure(analysis, standard)
    try:
        with atomic_output(target, ".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return target


def figure(analysis, standard: Standard | None = None):
    """The plot as a matplotlib Figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    drift = analysis.drift or {"spans": []}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    spans = drift["spans"]
    if standard is not None:
        top.axhspan(-standard.lead_ms, standard.lag_ms, color="#d8f0d8", label=f"{standard.name} tolerance")
    if spans:
        mids = [(s["start_s"] + s["end_s"]) / 2 for s in spans]
        top.plot(mids, [s["audio_delay_ms"] for s in spans], "o-", color="#1f5fa8", label="offset per span")
    top.axhline(analysis.audio_delay_ms, color="#c0392b", ls="--", label=f"file: {analysis.audio_delay_ms:+.0f} ms")
    top.set_ylabel("audio delay (ms)\n+ = sound late")
    top.set_ylim(*delay_axis([s["audio_delay_ms"] for s in spans] + [analysis.audio_delay_ms]))
    title = os.path.basename(analysis.file)
    if drift.get("ms_per_minute") is not None:
        title += f"  -  drift {drift['ms_per_minute']:+.1f} ms/min ({drift['verdict']})"
    top.set_title(title)
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    values = analysis.framewise_confidence
    # NaN where no face was measured: the line breaks at the gap instead of bridging it
    bottom.plot([i / FPS for i in range(len(values))], [math.nan if v is None else v for v in values], lw=0.8,
                color="#555555", label="per-frame confidence")
    if spans:
        bottom.step([s["start_s"] for s in spans], [s["confidence"] for s in spans], where="post",
                    color="#1f5fa8", label="span confidence")
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("confidence")
    bottom.legend(loc="upper right", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig

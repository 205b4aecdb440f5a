"""`lipsync-train eval`: the papers' accuracy table on speakers never seen in training.

- window accuracy: the offset found by averaging the distances of `context` consecutive 5-frame windows
  over a +-15 frame search is correct when it is within +-1 frame of the truth (0 on synced footage);
  contexts of 1, 5, 11 and 15 windows, as in Chung & Zisserman's table;
- clip accuracy with applied shifts: each whole validation track with its audio moved by -200, -120, -40,
  +40, +120, +200 ms (whole frames, done on the features exactly as `adelay`/`atrim` would on the file)
  is correct when the clip's offset comes out within one frame of the shift.
"""

from __future__ import annotations

import numpy as np
import torch

from .nets import eval_batch, track_lip_embeddings
from .pairs import COLUMNS_PER_FRAME, FeatureTrack

CONTEXTS = (1, 5, 11, 15)
APPLIED_SHIFTS = (-5, -3, -1, 1, 3, 5)  # frames at 25 fps = -200 .. +200 ms
VSHIFT = 15


@torch.inference_mode()
def embed_track(net, t: FeatureTrack, columns: int, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    n = t.num_windows
    batch = batch or eval_batch(net)
    device = next(net.parameters()).device  # tracks stay on the CPU; embeddings come back to it
    lips, auds = [], []
    for s in range(0, n, batch):
        e = min(n, s + batch)
        lips.append(track_lip_embeddings(net, t, s, e).cpu())
        cols = (torch.arange(s, e) * COLUMNS_PER_FRAME)[:, None] + torch.arange(columns)
        auds.append(net.forward_aud(t.features[:, cols].permute(1, 0, 2)[:, None].float().to(device)).cpu())
    return torch.cat(lips), torch.cat(auds)


def track_dists(net, t: FeatureTrack, columns: int, vshift: int = VSHIFT) -> np.ndarray:
    """(num_windows, 2*vshift+1) distances lip i <-> audio i+k; NaN where i+k is outside the track."""
    lip, aud = embed_track(net, t, columns)
    n = len(lip)
    k = torch.arange(-vshift, vshift + 1)
    idx = torch.arange(n)[:, None] + k[None, :]
    ok = (idx >= 0) & (idx < n)
    d = torch.nn.functional.pairwise_distance(lip[:, None, :], aud[idx.clamp(0, n - 1)], eps=1e-6)
    return torch.where(ok, d, torch.nan).numpy()


def window_accuracy(dists: np.ndarray, context: int, vshift: int = VSHIFT, truth: int = 0,
                    stride: int = 1) -> tuple[int, int]:
    """(correct, total) over the windows whose whole search range lies inside the track."""
    n = len(dists)
    correct = total = 0
    for i in range(vshift, n - context + 1 - vshift, stride):
        mean = dists[i:i + context].mean(0)
        k = int(np.argmin(mean)) - vshift
        correct += abs(k - truth) <= 1
        total += 1
    return correct, total


def clip_offset(dists: np.ndarray, shift: int, vshift: int) -> int:
    """Lag found for a whole track whose audio was delayed by `shift` frames (a'_j = a_(j-shift)),
    searched over +-vshift, from distances d[i, m] = |lip_i - a_(i+m)| computed over a wider range:
    d'[i, k] = d[i, k - shift]. The right answer is `shift`."""
    wide = (dists.shape[1] - 1) // 2
    sub = dists[:, wide - shift - vshift:wide - shift + vshift + 1]
    return int(np.nanargmin(np.nanmean(sub, 0))) - vshift


def refine_mask(dists: np.ndarray, context: int = 11, vshift: int = VSHIFT, tolerance: int = 1,
                clearly: float = 0.5) -> np.ndarray:
    """The paper's refinement: genuine windows the model, looking at `context` windows around them, places
    clearly off sync (off-screen speech, dubbing, a wrong face) -> False. "Clearly": the best lag is more
    than `tolerance` frames from 0, and the local confidence (median - best) is at least `clearly` x the
    track's typical one; windows where the model cannot tell (silence: flat distances) stay."""
    n = len(dists)
    half = context // 2
    best = np.full(n, vshift)
    spread = np.zeros(n)
    for i in range(n):
        block = dists[max(0, i - half):min(n, i + half + 1)]
        cols = ~np.all(np.isnan(block), 0)
        if not cols[vshift]:
            continue
        mean = np.full(block.shape[1], np.inf)
        mean[cols] = np.nanmean(block[:, cols], 0)
        best[i] = int(np.argmin(mean))
        spread[i] = np.median(mean[cols]) - mean[best[i]]
    typical = np.median(spread[spread > 0]) if np.any(spread > 0) else 0.0
    off = np.abs(best - vshift) > tolerance
    return ~(off & (spread >= clearly * typical) & (typical > 0))


def evaluate(net, tracks: list[FeatureTrack], columns: int, contexts=CONTEXTS) -> dict:
    net.eval()
    win = {c: [0, 0] for c in contexts}
    clip = [0, 0]
    max_shift = max(abs(s) for s in APPLIED_SHIFTS)
    per_track = []
    for t in tracks:
        d = track_dists(net, t, columns, VSHIFT + max_shift)
        core = d[:, max_shift:max_shift + 2 * VSHIFT + 1]
        for c in contexts:
            ok, tot = window_accuracy(core, c)
            win[c][0] += ok
            win[c][1] += tot
        results = {}
        if t.num_windows >= 25:  # at least one second: a clip an editor would measure
            for s in APPLIED_SHIFTS:
                found = clip_offset(d, s, VSHIFT)
                results[s] = found
                clip[0] += abs(found - s) <= 1
                clip[1] += 1
        per_track.append({"source": t.source, "person": t.person, "windows": t.num_windows,
                          "found_for_shift": results})
    return {
        "window_accuracy": {str(c): (win[c][0] / win[c][1] if win[c][1] else None) for c in contexts},
        "window_counts": {str(c): win[c][1] for c in contexts},
        "clip_accuracy": clip[0] / clip[1] if clip[1] else None,
        "clip_count": clip[1],
        "tracks": per_track,
    }


def markdown_table(results: dict[str, dict]) -> str:
    """One row per model: window accuracy per context, clip accuracy with applied shifts."""
    contexts = list(next(iter(results.values()))["window_accuracy"])
    head = "| model | " + " | ".join(f"{c} window{'s' if c != '1' else ''}" for c in contexts) + \
        " | clips, applied shifts |"
    lines = [head, "|" + "---|" * (len(contexts) + 2)]
    for name, r in results.items():
        cells = [f"{100 * v:.1f}%" if v is not None else "-" for v in r["window_accuracy"].values()]
        clip = f"{100 * r['clip_accuracy']:.1f}% of {r['clip_count']}" if r["clip_accuracy"] is not None else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {clip} |")
    return "\n".join(lines)

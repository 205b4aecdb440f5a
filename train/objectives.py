"""Training objectives over a batch of (lip, audio) pairs, all computed from one dense (L, A) matrix.

- `contrastive`: the paper's loss, E = mean over genuine pairs of d^2 + mean over false pairs of
  max(margin - d, 0)^2 (each class averaged on its own: a batch holds ~60 false pairs per genuine one);
- `icsyncnet`: cosine similarity x learnable temperature as the logit of "in sync", balanced binary
  cross-entropy (IC-SyncNet);
- `multiway`: for each lip window, a softmax over all its candidate audio windows with the genuine one as
  the target, logits = -distance (Chung, Chung & Zisserman, "Perfect match", ICASSP 2019): it trains the
  very decision the offset search makes, and converges fastest on small data.
"""

from __future__ import annotations

import torch
from torch import nn

from .pairs import Batch

OBJECTIVES = ("contrastive", "icsyncnet", "multiway")
DEFAULT_MARGIN = 2.0


def _dense(batch: Batch, values: torch.Tensor, fill: float) -> torch.Tensor:
    out = torch.full((len(batch.lips), len(batch.audio)), fill, dtype=values.dtype, device=values.device)
    out[batch.lip_index, batch.audio_index] = values
    return out


def pair_loss(objective: str, net, lip: torch.Tensor, aud: torch.Tensor, batch: Batch,
              margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    li, ai, genuine = batch.lip_index, batch.audio_index, batch.genuine
    if objective == "icsyncnet":
        logits = net.similarity_logits(lip[li], aud[ai]) + net.logit_bias
        target = genuine.float()
        bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return 0.5 * bce[genuine].mean() + 0.5 * bce[~genuine].mean()
    d = torch.nn.functional.pairwise_distance(lip[li], aud[ai], eps=1e-6)
    if objective == "contrastive":
        return (d[genuine] ** 2).mean() + (torch.clamp(margin - d[~genuine], min=0) ** 2).mean()
    if objective == "multiway":
        logits = _dense(batch, -d, float("-inf"))
        has = torch.zeros(len(batch.lips), dtype=torch.bool, device=d.device)
        has[li[genuine]] = True
        target = torch.zeros(len(batch.lips), dtype=torch.long, device=d.device)
        target[li[genuine]] = ai[genuine]
        return nn.functional.cross_entropy(logits[has], target[has])
    raise ValueError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")

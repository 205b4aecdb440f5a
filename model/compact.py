"""CompactSyncNet: a small two-stream sync network for CPU, trained by `lipsync-train`.

Same contract as SyncNet at its edges, so the engine treats both alike:
- lip stream: the engine's 224x224 BGR face crops (the reference crop geometry). The network itself
  takes the lower face (`MOUTH_ROWS` x `MOUTH_COLS` of the crop: nose tip to below the chin), turns it
  grey and halves it to 48x80, and stacks 5 consecutive frames as 5 input channels;
- audio stream: 20 MFCC columns (0.2 s) as SyncNet, or, for IC-SyncNet-style models, 40 columns (0.4 s)
  of 26 log mel energies centred on the same 5 frames.

`mouth_frames` is the one place that preprocessing lives: training shards store its output, and
inference applies the same function to the crops, so the two can never disagree.
About 18 M multiply-adds per lip window against SyncNet's ~1.7 G: see benchmarks/.
"""

from __future__ import annotations

import torch
from torch import nn

from .audio import FEATURES

MOUTH_ROWS = (80, 176)  # of the 224x224 reference crop
MOUTH_COLS = (32, 192)
MOUTH_SIZE = ((MOUTH_ROWS[1] - MOUTH_ROWS[0]) // 2, (MOUTH_COLS[1] - MOUTH_COLS[0]) // 2)  # (48, 80)
FRAMES_PER_WINDOW = 5
COMPACT_EMBEDDING_DIM = 128
_BGR_TO_GREY = (0.114, 0.587, 0.299)


def mouth_frames(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (T, 224, 224, 3) BGR crops -> uint8 (T, 48, 80) grey lower faces."""
    region = crops[:, MOUTH_ROWS[0]:MOUTH_ROWS[1], MOUTH_COLS[0]:MOUTH_COLS[1]].float()
    w = torch.tensor(_BGR_TO_GREY, device=crops.device)
    grey = (region * w).sum(-1)
    small = nn.functional.avg_pool2d(grey[:, None], 2)[:, 0]
    return small.round_().clamp_(0, 255).to(torch.uint8)


def mouth_windows(mouths: torch.Tensor) -> torch.Tensor:
    """(T, 48, 80) consecutive grey lower faces -> (T-4, 5, 48, 80): window i stacks frames i..i+4 as channels
    (a view, no copy)."""
    return mouths.unfold(0, FRAMES_PER_WINDOW, 1).permute(0, 3, 1, 2)


def _block(cin: int, cout: int, k: int = 3, stride=1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class CompactSyncNet(nn.Module):
    """config: audio_feature "mfcc13" | "logmel26", audio_columns 20 | 40, normalize (unit-length
    embeddings: IC-SyncNet's cosine similarity) and `distance_scale`, a fixed factor set at export so that
    confidences (median - min distance) read on the same scale as SyncNet's."""

    def __init__(self, audio_feature: str = "mfcc13", audio_columns: int = 20, normalize: bool = False,
                 embedding_dim: int = COMPACT_EMBEDDING_DIM, pooled: bool = False, dropout: float = 0.0):
        super().__init__()
        self.config = {"audio_feature": audio_feature, "audio_columns": audio_columns, "normalize": normalize,
                       "embedding_dim": embedding_dim, "pooled": pooled, "dropout": dropout}
        # pooled: average the last lip feature map over space (256 features instead of 256 x 3 x 5): far
        # fewer weights to memorise a few dozen faces with; dropout: on both heads' inputs, training only
        self.pooled, self.dropout = pooled, dropout
        self.audio_feature, self.audio_columns, self.normalize = audio_feature, audio_columns, normalize
        rows = FEATURES[audio_feature][0]
        h, w = MOUTH_SIZE
        self.lip_tower = nn.Sequential(
            *_block(FRAMES_PER_WINDOW, 32, 5, 2),  # 24x40
            *_block(32, 64, 3, 2),  # 12x20
            *_block(64, 128, 3, 2),  # 6x10
            *_block(128, 256, 3, 2),  # 3x5
        )
        lip_flat = 256 if pooled else 256 * ((h + 15) // 16) * ((w + 15) // 16)
        self.lip_head = nn.Sequential(nn.Linear(lip_flat, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
                                      nn.Linear(256, embedding_dim))
        self.audio_norm = nn.BatchNorm2d(1)  # features arrive unscaled (log energies); learn their scale
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
        # IC-SyncNet's learnable temperature (log scale); unused by the contrastive objective
        self.log_temperature = nn.Parameter(torch.tensor(2.3))
        self.logit_bias = nn.Parameter(torch.tensor(-2.0))
        self.register_buffer("distance_scale", torch.tensor(1.0))

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            emb = nn.functional.normalize(emb, dim=1)
        return emb * self.distance_scale

    def forward_lip_windows(self, mouths: torch.Tensor) -> torch.Tensor:
        """uint8/float (N, 5, 48, 80) grey lower faces -> (N, D)."""
        x = self.lip_tower((mouths.float() - 128.0) / 64.0)
        x = x.mean((2, 3)) if self.pooled else x.flatten(1)
        return self._finish(self.lip_head(nn.functional.dropout(x, self.dropout, self.training)))

    def forward_aud(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 1, rows, audio_columns) -> (N, D)."""
        x = self.audio_tower(self.audio_norm(features)).flatten(1)
        return self._finish(self.audio_head(nn.functional.dropout(x, self.dropout, self.training)))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR windows, SyncNet's lip input -> (N, D)."""
        n = frames.shape[0]
        crops = frames.permute(0, 2, 3, 4, 1).reshape(n * FRAMES_PER_WINDOW, 224, 224, 3)
        mouths = mouth_frames(crops.clamp(0, 255).round().to(torch.uint8))
        return self.forward_lip_windows(mouths.reshape(n, FRAMES_PER_WINDOW, *MOUTH_SIZE))

    def forward_lip_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """(1, 3, T, 224, 224) consecutive crops (a (T, 224, 224, 3) uint8 array seen channels-first)
        -> (T-4, D): each frame is reduced to its grey mouth once, then windows are 5-channel stacks."""
        return self.forward_lip_runs([frames])

    def forward_lip_runs(self, runs: list[torch.Tensor]) -> torch.Tensor:
        """Runs of consecutive crops, [(1, 3, T_i, 224, 224)] (one per face track) -> (sum(T_i - 4), D), all
        their windows in one batch."""
        windows = []
        for run in runs:
            crops = run[0].permute(1, 2, 3, 0)
            mouths = mouth_frames(crops if crops.dtype == torch.uint8 else crops.clamp(0, 255).to(torch.uint8))
            windows.append(mouth_windows(mouths))
        return self.forward_lip_windows(windows[0] if len(windows) == 1 else torch.cat(windows))

    def similarity_logits(self, lip: torch.Tensor, aud: torch.Tensor) -> torch.Tensor:
        """IC-SyncNet: cosine similarity times a learned temperature -> logit of 'in sync'."""
        cos = nn.functional.cosine_similarity(lip, aud, dim=-1)
        return cos * self.log_temperature.exp()

"""SyncNet, the two-stream network of Chung & Zisserman, "Out of time" (ACCV 2016 workshops).

`SyncNet` keeps the module layout of joonson/syncnet_python's `S` so that the public
`syncnet_v2.model` state dict loads unchanged (its keys are the Sequential indices below).

- audio stream: MFCC (N, 1, 13, 20) -> 1024-d, 20 MFCC columns = 0.2 s = 5 video frames at 25 fps
- lip stream:   frames (N, 3, 5, 224, 224), BGR, float 0..255, no normalisation -> 1024-d

`FastSyncNet` is the same function laid out for fast inference (see its docstring). Weights are
copied, not re-trained: outputs equal `SyncNet`'s up to float32 rounding (tests/test_parity.py).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

EMBEDDING_DIM = 1024
FRAMES_PER_WINDOW = 5
MFCC_COLUMNS_PER_WINDOW = 20
CROP_SIZE = 224


def _fc_head(out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, out_dim),
    )


class SyncNet(nn.Module):
    """The reference network, layer for layer (state-dict compatible with syncnet_v2.model)."""

    def __init__(self, embedding_dim: int = EMBEDDING_DIM):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(1, 1), stride=(1, 1)),
            nn.Conv2d(64, 192, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)),
            nn.BatchNorm2d(192),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(1, 2)),
            nn.Conv2d(192, 384, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(384),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=(3, 3), padding=(1, 1)),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=(3, 3), stride=(2, 2)),
            nn.Conv2d(256, 512, kernel_size=(5, 4), padding=(0, 0)),
            nn.BatchNorm2d(512),
            nn.ReLU(),
        )
        self.netfcaud = _fc_head(embedding_dim)
        self.netfclip = _fc_head(embedding_dim)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(96),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.Conv3d(256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.BatchNorm3d(256),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            nn.Conv3d(256, 512, kernel_size=(1, 6, 6), padding=0),
            nn.BatchNorm3d(512),
            nn.ReLU(inplace=True),
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        mid = self.netcnnaud(mfcc)
        return self.netfcaud(mid.flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR float frames -> (N, 1024)."""
        mid = self.netcnnlip(frames)
        return self.netfclip(mid.flatten(1))

    def forward_lip_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) runs of consecutive frames -> (B * (T-4), 1024), every 5-frame window of each
        run, run by run. The same function as `forward_lip` on each window (after the 5-frame first conv
        every layer has a temporal extent of 1), without copying frames into overlapping windows: how
        `lipsync-train` trains this architecture."""
        mid = self.netcnnlip(frames)  # (B, 512, T-4, 1, 1)
        return self.netfclip(mid[..., 0, 0].transpose(1, 2).reshape(-1, mid.shape[1]))

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor):
        return self.forward_lip(frames), self.forward_aud(mfcc)


def _conv3d_as_2d(conv: nn.Conv3d) -> nn.Conv2d:
    """A Conv3d whose kernel spans the whole temporal input, as a Conv2d over (C*T) channels."""
    out_c, in_c, kt, kh, kw = conv.weight.shape
    assert conv.padding[0] == 0 and conv.stride[0] == 1
    conv2d = nn.Conv2d(in_c * kt, out_c, (kh, kw), stride=conv.stride[1:], padding=conv.padding[1:])
    with torch.no_grad():
        # channel index c*T + t, the order of a (C, T, H, W) block reshaped to (C*T, H, W)
        conv2d.weight.copy_(conv.weight.reshape(out_c, in_c * kt, kh, kw))
        conv2d.bias.copy_(conv.bias)
    return conv2d


def _bn3d_as_2d(bn: nn.BatchNorm3d) -> nn.BatchNorm2d:
    bn2d = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum)
    bn2d.load_state_dict(bn.state_dict())
    return bn2d


def _pool3d_as_2d(pool: nn.MaxPool3d) -> nn.MaxPool2d:
    def spatial(v):
        return tuple(v[1:]) if isinstance(v, tuple) else v

    return nn.MaxPool2d(spatial(pool.kernel_size), spatial(pool.stride), spatial(pool.padding))


class FastSyncNet(nn.Module):
    """Inference layout of a `SyncNet`, the same function computed with less work on CPU.

    - The lip tower's first conv, 5 frames deep, slides over a whole frame sequence in one call: it
      gives every window's first-layer output, so T frames are converted once instead of being copied
      into T-4 overlapping 5-frame windows (5x less input traffic).
    - After it every lip layer has a temporal extent of 1, so the rest of the tower runs as 2-D
      convolutions, which are much better optimised on CPU than 3-D ones.
    - The later BatchNorms are folded into the conv before them: one pass less over activations.
    """

    def __init__(self, net: SyncNet):
        super().__init__()
        first_conv, first_bn, *rest = list(net.netcnnlip)
        # this BN stays separate: folded into the 5-frame conv it moved some distances by 2.1e-5
        # relative, past the 2e-5 parity bound; the later folds stay well inside it
        self.lip_conv1 = nn.Sequential(copy.deepcopy(first_conv), copy.deepcopy(first_bn))
        layers = []
        for layer in rest:
            if isinstance(layer, nn.Conv3d):
                layers.append(_conv3d_as_2d(layer))
            elif isinstance(layer, nn.BatchNorm3d):
                layers[-1] = fuse_conv_bn_eval(layers[-1].eval(), _bn3d_as_2d(layer).eval())
            elif isinstance(layer, nn.MaxPool3d):
                layers.append(_pool3d_as_2d(layer))
            else:
                layers.append(layer)
        self.lip_tower = nn.Sequential(*layers)
        self.lip_head = net.netfclip
        self.audio_tower = copy.deepcopy(net.netcnnaud)  # made channels-last below: not the caller's net
        self.audio_head = net.netfcaud
        self.eval()

    def channels_last(self) -> FastSyncNet:
        """The memory layout oneDNN convolutions run fastest in on CPU (the audio tower too: 1.6x)."""
        self.lip_conv1.to(memory_format=torch.channels_last_3d)
        self.lip_tower.to(memory_format=torch.channels_last)
        self.audio_tower.to(memory_format=torch.channels_last)
        return self

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.audio_head(self.audio_tower(mfcc).flatten(1))

    def _lip_rest(self, first: torch.Tensor) -> torch.Tensor:
        """(N, 96, 109, 109) first-layer outputs -> (N, 1024)."""
        return self.lip_head(self.lip_tower(first).flatten(1).float())

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) windows, as `SyncNet.forward_lip`."""
        return self._lip_rest(self.lip_conv1(frames)[:, :, 0])

    def forward_lip_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """(1, 3, T, 224, 224) consecutive frames -> (T-4, 1024), one embedding per 5-frame window.
        A (T, H, W, 3) frame array seen as (1, 3, T, H, W) is already channels-last-3d: no copy."""
        return self.forward_lip_runs([frames])

    def forward_lip_runs(self, runs: list[torch.Tensor]) -> torch.Tensor:
        """Runs of consecutive frames, [(1, 3, T_i, 224, 224)] (one per face track) -> (sum(T_i - 4), 1024):
        the 5-frame first conv slides over each run, the rest of the tower takes all their windows at once."""
        firsts = [self.lip_conv1(run)[0].transpose(0, 1) for run in runs]  # each (T_i - 4, 96, 109, 109)
        return self._lip_rest(firsts[0] if len(firsts) == 1 else torch.cat(firsts))

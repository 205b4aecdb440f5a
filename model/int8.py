"""SyncNet's lip stream in int8 on the CPU (`--precision int8`): faster than float32, not parity.

The lip stream is ~97% of SyncNet's arithmetic. Here it runs as quantized 2-D convolutions (PyTorch's x86
int8 kernels, FBGEMM/oneDNN; weights per output channel, activations per tensor):
- the 5-frame first conv becomes a Conv2d over 15 channels (3 colours x 5 frames) of stacked windows,
  read straight off the uint8 crops (no float copy) with the first BatchNorm folded in;
- activations use 7 bits (`reduce_range`), the input too (pixel // 2, scale 2): on CPUs without VNNI the
  kernels add pairs of u8*s8 products in int16, which 8-bit activations overflow (measured: 65% of a white
  frame's first-layer outputs wrong). The bias takes the half grey level lost on average;
- the fully connected head stays float32 (cheap).
Activation ranges come from data: each stream runs its first batch in float32 through observers and
quantizes the rest with the ranges seen there (`Int8Lips`). No calibration set has to ship beside user
weights, and a file's result never depends on which files went before it in a process.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .syncnet import CROP_SIZE, FRAMES_PER_WINDOW, FastSyncNet, _conv3d_as_2d

BACKEND = "x86"
INPUT_SCALE = 2.0  # pixel // 2: 7-bit input, see the module doc


def available() -> bool:
    return BACKEND in torch.backends.quantized.supported_engines


def stacked_windows(frames: torch.Tensor, count: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> uint8 (count, 15, H, W) channels-last windows of pixel // 2, channel
    c*5 + t (the order of `_conv3d_as_2d`'s weights)."""
    _, h, w, c = frames.shape
    windows = frames[:count + FRAMES_PER_WINDOW - 1].permute(3, 0, 1, 2).unfold(1, FRAMES_PER_WINDOW, 1)
    # (3, count, H, W, 5) -> (count, H, W, 3, 5): one copy, the layout a channels-last Conv2d reads
    stacked = (windows.permute(1, 2, 3, 0, 4) >> 1).reshape(count, h, w, c * FRAMES_PER_WINDOW)
    return stacked.permute(0, 3, 1, 2)


def float_lips(fast: FastSyncNet) -> nn.Sequential:
    """The lip tower as one float32 2-D network over `stacked_windows` * INPUT_SCALE (before the head)."""
    conv3d, bn = fast.lip_conv1
    bn2d = nn.BatchNorm2d(bn.num_features, eps=bn.eps)
    bn2d.load_state_dict(bn.state_dict())
    first = fuse_conv_bn_eval(_conv3d_as_2d(conv3d.float()).eval(), bn2d.float().eval())
    with torch.no_grad():  # pixel // 2 * 2 is half a grey level low on average: add it back through the bias
        first.bias += 0.5 * first.weight.sum(dim=(1, 2, 3))
    return nn.Sequential(first, *copy.deepcopy(fast.lip_tower).float()).eval()


def observed_lips(fast: FastSyncNet) -> torch.fx.GraphModule:
    """`float_lips` with activation observers, ready to calibrate (FX graph mode). Made once per engine:
    tracing takes seconds, a copy for each stream milliseconds."""
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx

    if not available():
        raise RuntimeError(f"--precision int8 needs PyTorch's {BACKEND} quantized kernels, which this build lacks")
    qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=True),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    example = torch.zeros(1, 3 * FRAMES_PER_WINDOW, CROP_SIZE, CROP_SIZE)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        # the input arrives quantized already (uint8 pixel // 2, scale 2): no float pass over the crops
        return prepare_fx(float_lips(fast), QConfigMapping().set_global(qconfig), (example,),
                          prepare_custom_config=PrepareCustomConfig().set_input_quantized_indexes([0]))


class Int8Lips:
    """One stream's int8 lip stream: the first call runs float32 and calibrates, later calls run int8."""

    def __init__(self, observed: torch.fx.GraphModule, head: nn.Module):
        self.observed = copy.deepcopy(observed)
        self.head = head
        self.quantized = None

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, count: int) -> torch.Tensor:
        """uint8 (T, 224, 224, 3) -> (count, 1024) embeddings of the first `count` 5-frame windows."""
        from torch.ao.quantization.quantize_fx import convert_fx

        windows = stacked_windows(frames, count)
        if self.quantized is None:
            mid = self.observed(windows.float() * INPUT_SCALE)
            torch.backends.quantized.engine = BACKEND
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.quantized = convert_fx(self.observed)
            self.observed = None
        else:
            mid = self.quantized(torch._make_per_tensor_quantized_tensor(windows, INPUT_SCALE, 0))
        return self.head(mid.flatten(1))

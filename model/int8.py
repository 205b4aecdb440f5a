"""SyncNet's lip stream in int8 on the CPU (`--precision int8`): faster than float32, not parity.

The lip stream is ~97% of SyncNet's arithmetic. Here it runs as quantized 2-D convolutions (PyTorch's
oneDNN int8 kernels; weights per output channel, activations per tensor):
- the 5-frame first conv becomes a Conv2d over 15 channels (3 colours x 5 frames) of stacked windows,
  read straight off the uint8 crops (no float copy) with the first BatchNorm folded in;
- activations use 7 bits (`reduce_range`), the input too (pixel // 2, scale 2): on CPUs without VNNI the
  kernels add pairs of u8*s8 products in int16, which 8-bit activations overflow (measured: 65% of a white
  frame's first-layer outputs wrong). The bias takes the half grey level lost on average;
- the fully connected head stays float32 (cheap).
Activation ranges come from data: each stream runs every 4th window of its first batch in float32 through
observers and quantizes everything with the ranges seen there (`Int8Lips`). An activation beyond them comes
out of a kernel with 8 bits, which the next layer's int16 pair sums could overflow; holding them to 7 bits
(torch.clamp) was measured and lost accuracy (hdtf_kh_sync: distances 1.7% -> 3.3% off float32, median), so
they are left as they come. No calibration set has to ship beside user weights, and a file's result never
depends on which files went before it in a process.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .syncnet import CROP_SIZE, FRAMES_PER_WINDOW, FastSyncNet, _conv3d_as_2d

# oneDNN's int8 convolutions ran this tower's layers ~9% faster than FBGEMM's alone (AMD EPYC, AVX2); whole runs
# of the two were within noise of each other
BACKEND = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "x86"
INPUT_SCALE = 2.0  # pixel // 2: 7-bit input, see the module doc


def available() -> bool:
    return BACKEND in torch.backends.quantized.supported_engines


def stacked_windows(frames: torch.Tensor, count: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) frames -> uint8 (count, 15, H, W) channels-last windows of pixel // 2, channel
    c*5 + t (the order of `_conv3d_as_2d`'s weights)."""
    _, h, w, c = frames.shape
    half = frames[:count + FRAMES_PER_WINDOW - 1] >> 1
    stacked = torch.empty(count, h, w, c, FRAMES_PER_WINDOW, dtype=torch.uint8)
    for t in range(FRAMES_PER_WINDOW):  # 5 slab copies: twice as fast as one gather from an unfolded view
        stacked[..., t] = half[t:t + count]
    return stacked.reshape(count, h, w, c * FRAMES_PER_WINDOW).permute(0, 3, 1, 2)


def float_lips(fast: FastSyncNet) -> nn.Sequential:
    """The lip tower as one float32 2-D network over `stacked_windows` * INPUT_SCALE (before the head)."""
    conv3d, bn = fast.lip_conv1
    bn2d = nn.BatchNorm2d(bn.num_features, eps=bn.eps)
    bn2d.load_state_dict(bn.state_dict())
    first = fuse_conv_bn_eval(_conv3d_as_2d(conv3d).float().eval(), bn2d.float().eval())
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


MIN_CALIBRATION_STD = 4.0  # grey levels: frames flatter than this (black, a title card) set no ranges
CALIBRATION_STRIDE = 4  # windows of the first batch that set the ranges: every 4th (4 of 16: frames 0-16 of 20)


def _flat(frames: torch.Tensor) -> bool:
    """Nearly uniform frames, whose activations would give ranges too narrow for the faces that follow."""
    return float(frames[:, ::8, ::8].float().std()) < MIN_CALIBRATION_STD


class Int8Tower:
    """The quantized lip tower of one engine: weights quantized and packed once. Activation ranges are each
    stream's own (`stream()`): they are passed to the int8 kernels per call, so streams share the packed
    weights and no stream pays for a conversion (~0.5 s, a fifth of an 8 s clip's int8 time)."""

    def __init__(self, fast: FastSyncNet):
        from torch.ao.quantization.quantize_fx import convert_fx

        self.observed = observed_lips(fast)
        self.head = fast.lip_head
        placeholder = copy.deepcopy(self.observed)
        with torch.inference_mode():  # any range will do: every stream brings its own
            placeholder(torch.zeros(1, 3 * FRAMES_PER_WINDOW, CROP_SIZE, CROP_SIZE))
        torch.backends.quantized.engine = BACKEND
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = convert_fx(placeholder)
        # the converted graph is a chain (conv+ReLU and max-pool layers, then dequantize), run layer by layer
        calls = [n.target for n in quantized.graph.nodes if n.op == "call_module"]
        self.layers = [(name, quantized.get_submodule(name)) for name in calls]
        assert [n.op for n in quantized.graph.nodes] == ["placeholder", *["call_module"] * len(calls),
                                                           "call_method", "output"], quantized.code
        kinds = {type(layer).__name__ for _, layer in self.layers}
        if not kinds <= {"ConvReLU2d", "MaxPool2d"}:  # what `Int8Lips` knows how to run
            raise RuntimeError(f"int8: unexpected layers {sorted(kinds)} in the quantized lip tower")
        convs = {name for name, layer in self.layers if type(layer).__name__ == "ConvReLU2d"}
        # each conv's output range is what the observer after it saw
        self.observer_after = {n.target: next(iter(n.users)).target for n in self.observed.graph.nodes
                               if n.op == "call_module" and n.target in convs}
        assert set(self.observer_after) == convs

    def stream(self) -> Int8Lips:
        return Int8Lips(self)


class Int8Lips:
    """One stream's int8 lip stream: the first call runs every 4th window in float32 through observers, which
    fixes the stream's activation ranges; every window runs int8. Batches of nearly uniform frames before it
    stay float32 (all their windows) and only add to what the observers saw."""

    def __init__(self, tower: Int8Tower):
        self.tower = tower
        # its own observers; the float weights (~28 MB) are the tower's, shared, not copied for every track
        self.observed = copy.deepcopy(tower.observed, memo={id(p): p for p in tower.observed.parameters()})
        self.ranges: dict[str, tuple[float, int]] | None = None  # conv layer -> output (scale, zero point)

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, count: int) -> torch.Tensor:
        """uint8 (T, 224, 224, 3) -> (count, 1024) embeddings of the first `count` 5-frame windows."""
        windows = stacked_windows(frames, count)
        if self.ranges is None:
            if _flat(frames[:count + FRAMES_PER_WINDOW - 1]):  # e.g. a fade from black: keep observing
                return self.tower.head(self.observed(windows.float() * INPUT_SCALE).flatten(1))
            # every CALIBRATION_STRIDE-th window sets the ranges: they span the batch's frames (a window holds 5),
            # at a quarter of a float32 pass through observers, which cost ~3 int8 batches
            self.observed(windows[::CALIBRATION_STRIDE].float() * INPUT_SCALE)
            self.ranges = {}
            for layer, observer in self.tower.observer_after.items():
                scale, zero_point = self.observed.get_submodule(observer).calculate_qparams()
                self.ranges[layer] = (float(scale), int(zero_point))
            self.observed = None
        x = torch._make_per_tensor_quantized_tensor(windows, INPUT_SCALE, 0)
        for name, layer in self.tower.layers:
            if name in self.ranges:
                x = torch.ops.quantized.conv2d_relu(x, layer._packed_params, *self.ranges[name])
            else:
                x = layer(x)
        return self.tower.head(x.dequantize().flatten(1))

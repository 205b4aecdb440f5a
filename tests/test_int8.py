"""`--precision int8` (model/int8.py): SyncNet-format weights quantized on the CPU. Not parity: it must keep
every answer the golden clips know, and say clearly where it cannot run. Its speed is in benchmarks/bench_sync.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import PRECISION, main
from otio_lipsync.errors import OptionError
from otio_lipsync.model import int8
from otio_lipsync.pipeline import make_engine
from otio_lipsync.sync import PRECISIONS, SyncEngine

from .conftest import clip, reference_input

# +5 and -3 frames, and the clip whose confidence int8 moves most (benchmarks/results/sync_cpu.md)
CLIPS = ("vr5_adv5", "hdtf_aoc_delay3", "grid_s1_sync")

pytestmark = pytest.mark.skipif(not int8.available(), reason="this torch build has no x86 quantized kernels")


@pytest.fixture(scope="module")
def int8_engine(stand_in):
    return SyncEngine(stand_in, precision="int8")


@pytest.mark.parametrize("name", CLIPS)
def test_int8_keeps_the_golden_offset(int8_engine, golden, name):
    g = golden(name)
    frames, _ = media.read_all(str(reference_input(name)))
    result = int8_engine.analyse([("video", frames), ("audio", g["audio"])])
    assert result.offset_frames == int(g["raw_offset"])
    # measured on the 6 golden clips: confidence -3..-13%, distances 1.6-4.6% median relative change
    assert result.confidence == pytest.approx(float(g["raw_conf"]), rel=0.2)
    assert np.median(np.abs(result.dists - g["raw_dists"]) / g["raw_dists"]) < 0.06


def test_saturated_frames_stay_exact_in_the_first_layer(int8_engine, stand_in):
    """White and black frames: the first quantized conv equals the float conv of the same quantized weights
    and input within one output step. With 8-bit pixels, CPUs without VNNI overflow int16 pair sums here."""
    frames = torch.zeros(9, 224, 224, 3, dtype=torch.uint8)
    frames[::2] = 255
    lips = int8_engine.int8_lips()
    lips(frames, 5)  # calibrates
    name, first = lips.tower.layers[0]
    step, zero_point = lips.ranges[name]
    windows = int8.stacked_windows(frames, 5)
    pixels = torch._make_per_tensor_quantized_tensor(windows, int8.INPUT_SCALE, 0)
    out = torch.ops.quantized.conv2d_relu(pixels, first._packed_params, step, zero_point).dequantize()
    expected = torch.nn.functional.conv2d(windows.float() * int8.INPUT_SCALE, first.weight().dequantize(),
                                          first.bias(), stride=first.stride).relu()
    # the ranges come from every 4th window (here those starting on white): the others may pass them, up to 8 bits
    expected = (expected / step).round().clamp(0, 255) * step
    assert (out - expected).abs().max() <= step * 1.01


def test_int8_where_it_cannot_run_is_one_clear_error(stand_in):
    with pytest.raises(OptionError, match="--precision int8 is for SyncNet-format weights"):
        make_engine(None, precision="int8")
    with pytest.raises(ValueError, match="--precision int8 runs on the CPU only"):
        SyncEngine(stand_in, precision="int8", device="meta")
    result = CliRunner().invoke(main, ["check", "--precision", "int8", str(clip("synced_mead_m030_01.mp4"))])
    assert result.exit_code == 2 and "--precision int8 is for SyncNet-format weights" in result.output, result.output


def test_the_cli_offers_every_precision_the_engine_has():
    assert list(PRECISION.choices) == list(PRECISIONS)


def test_a_fade_from_black_does_not_set_the_ranges(int8_engine, engine):
    """Black frames first (a face-cropped clip fading in): they run in float32 and the ranges come from the
    first batch with a picture, so the faces after them are not clipped to a black frame's activations."""
    frames, _ = media.read_all(str(reference_input("vr5_adv5")))
    faces = torch.from_numpy(np.ascontiguousarray(frames[:40]))
    black = torch.zeros(20, 224, 224, 3, dtype=torch.uint8)
    lips = int8_engine.int8_lips()
    lips(black, 16)
    assert lips.ranges is None
    lips(faces[:20], 16)
    assert lips.ranges is not None
    exact = engine.lip_embeddings(faces[20:40], 16)
    quantized = lips(faces[20:40], 16)
    assert float(((quantized - exact).norm(dim=1) / exact.norm(dim=1)).mean()) < 0.3

"""Model files: the public syncnet_v2 format loads unchanged; anything else is refused in one line."""

from __future__ import annotations

import collections
import os
import pickle

import pytest
import torch

from otio_lipsync.model import BadWeights, FastSyncNet, SyncNet, load_model
from otio_lipsync.model.weights import MODEL_FORMAT

STAND_IN_SHA256 = "46801fe84223d640d58d90774c7f2d9ea59fa4b4172db5aefd2c7c9afd9f4ec7"


def test_public_format_loads_unchanged(stand_in_path):
    with open(stand_in_path, "rb") as f:
        assert f.read(2) == b"\x80\x02"  # a legacy (non-zip) pickle, as the public file
    loaded = load_model(stand_in_path)
    assert loaded.architecture == "syncnet"
    assert loaded.name == "syncnet_v2_seed0"
    assert loaded.sha256 == STAND_IN_SHA256
    assert sum(p.numel() for p in loaded.net.parameters()) == 13_631_616
    raw = torch.load(stand_in_path, weights_only=True)
    assert not any(k.endswith("num_batches_tracked") for k in raw)
    for key, value in loaded.net.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, raw[key]), key


def test_fast_layout_computes_the_same_function(stand_in):
    torch.manual_seed(0)
    frames = torch.rand(3, 3, 5, 224, 224) * 255
    mfcc = torch.randn(3, 1, 13, 20) * 10
    fast = FastSyncNet(stand_in.net)
    with torch.inference_mode():
        ref_lip, ref_aud = stand_in.net(frames, mfcc)
        lip, aud = fast.forward_lip(frames), fast.forward_aud(mfcc)
    torch.testing.assert_close(lip, ref_lip, rtol=5e-5, atol=5e-5 * ref_lip.abs().max().item())
    torch.testing.assert_close(aud, ref_aud, rtol=0, atol=0)


def test_sequence_forward_equals_the_per_window_forward(stand_in):
    """SyncNet.forward_lip_sequence (how lipsync-train feeds the original architecture) gives every
    5-frame window's embedding, run by run, as forward_lip on that window alone."""
    torch.manual_seed(1)
    runs = torch.rand(2, 3, 8, 224, 224) * 255  # two runs of 8 frames: 4 windows each
    with torch.inference_mode():
        seq = stand_in.net.forward_lip_sequence(runs)
        windows = torch.cat([runs[b:b + 1, :, i:i + 5] for b in range(2) for i in range(4)])
        ref = stand_in.net.forward_lip(windows)
    assert seq.shape == (8, 1024)
    torch.testing.assert_close(seq, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_otio_lipsync_model_file_round_trips(tmp_path, stand_in):
    path = tmp_path / "house.pt"
    torch.save({"format": MODEL_FORMAT, "name": "house", "architecture": "syncnet",
                "input": {"video": {"fps": 25}}, "state_dict": stand_in.net.state_dict(),
                "validation": {"accuracy": 0.5}}, path)
    loaded = load_model(path)
    assert (loaded.name, loaded.architecture) == ("house", "syncnet")
    assert loaded.metadata["validation"] == {"accuracy": 0.5}


def _one_line(exc: BadWeights, path) -> str:
    text = str(exc)
    assert "\n" not in text
    assert str(path) in text
    return text


def test_wrong_keys_are_named(tmp_path, stand_in):
    state = collections.OrderedDict(stand_in.net.state_dict())
    state["netfclip.9.weight"] = state.pop("netfclip.3.weight")
    path = tmp_path / "renamed.model"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    with pytest.raises(BadWeights) as info:
        load_model(path)
    text = _one_line(info.value, path)
    assert "netfclip.3.weight" in text and "netfclip.9.weight" in text


def test_wrong_shape_is_named(tmp_path, stand_in):
    state = stand_in.net.state_dict()
    state["netfcaud.3.weight"] = torch.zeros(512, 512)
    path = tmp_path / "shape.model"
    torch.save(state, path)
    with pytest.raises(BadWeights) as info:
        load_model(path)
    assert "netfcaud.3.weight" in _one_line(info.value, path) and "(512, 512)" in str(info.value)


def test_pickle_that_wants_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = tmp_path / "evil.model"
    with open(path, "wb") as f:
        pickle.dump({"netcnnaud.0.weight": Payload()}, f, protocol=2)
    with pytest.raises(BadWeights) as info:
        load_model(path)
    assert "run code" in _one_line(info.value, path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x80\x02}q\x00(X"])
def test_junk_and_truncated_files(tmp_path, content):
    path = tmp_path / "junk.model"
    path.write_bytes(content)
    with pytest.raises(BadWeights) as info:
        load_model(path)
    _one_line(info.value, path)


def test_truncated_real_file(tmp_path, stand_in_path):
    path = tmp_path / "cut.model"
    path.write_bytes(stand_in_path.read_bytes()[: 1_000_000])
    with pytest.raises(BadWeights) as info:
        load_model(path)
    _one_line(info.value, path)


def test_missing_file_and_directory(tmp_path):
    for path, words in [(tmp_path / "nope.model", "does not exist"), (tmp_path, "directory")]:
        with pytest.raises(BadWeights) as info:
            load_model(path)
        assert words in _one_line(info.value, path)


def test_state_dict_layout_is_the_reference_one():
    keys = [k for k in SyncNet().state_dict() if not k.endswith("num_batches_tracked")]
    assert len(keys) == 88
    assert keys[0] == "netcnnaud.0.weight" and keys[-1] == "netcnnlip.19.running_var"

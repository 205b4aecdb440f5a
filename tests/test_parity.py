"""Parity with joonson/syncnet_python, against the golden outputs in ../shared/reference.

Tolerances are those the reference README measured for a faithful float32 reimplementation:
dists rtol 2e-5, embeddings 5e-5, offsets exact. `raw_*` golden fields are the reference fed frames
decoded straight to BGR (our normal path); the plain fields are its JPEG round trip (--reference-decode).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from otio_lipsync import media
from otio_lipsync.model import FastSyncNet, mfcc
from otio_lipsync.model.audio import MfccStream

from .conftest import GOLDEN_NAMES, reference_input, system_ffmpeg_version

EMB_TOL = 5e-5
DIST_RTOL = 2e-5


def assert_embeddings_close(ours, ref):
    # rtol 5e-5 of the embedding's scale: single elements near zero have no meaningful relative error
    np.testing.assert_allclose(ours, ref, rtol=EMB_TOL, atol=EMB_TOL * np.abs(ref).max())


def assert_reduction_matches(result, g, prefix=""):
    """Offset exactly, and min distance, confidence, framewise confidence as the reference computes them."""
    assert result.offset_frames == int(g[prefix + "offset"])
    np.testing.assert_allclose(result.dists, g[prefix + "dists"], rtol=DIST_RTOL)
    np.testing.assert_allclose(result.mean_dists, g[prefix + "mean_dists"], rtol=DIST_RTOL)
    # minval/conf/framewise are differences of distances ~30: 2e-5 relative of the distances
    scale = float(np.abs(g[prefix + "dists"]).max())
    assert result.min_distance == pytest.approx(float(g[prefix + "minval"]), abs=DIST_RTOL * scale)
    assert result.confidence == pytest.approx(float(g[prefix + "conf"]), abs=2 * DIST_RTOL * scale)
    np.testing.assert_allclose(result.framewise_confidence, g[prefix + "framewise_conf"],
                               atol=4 * DIST_RTOL * scale)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_mfcc_equals_golden(golden, name):
    g = golden(name)
    ours = mfcc(g["audio"])
    assert ours.shape == g["mfcc"].shape
    # float64 throughout; python_speech_features itself differs from the stored matrix by <= 4e-14
    np.testing.assert_allclose(ours, g["mfcc"], rtol=1e-12, atol=1e-12)


def test_dct_equals_scipys_and_gives_exact_zeros_on_a_constant_frame():
    """The MFCC's DCT is numpy's (importing scipy cost every process ~0.2 s); python_speech_features uses
    scipy.fftpack.dct. Silence at the log floor is a constant frame: the golden MFCCs hold 0.0 there, and ours
    are exact zeros too (an uncentred matrix product left ~1e-12, past the golden test's tolerance)."""
    import scipy.fftpack

    from otio_lipsync.model.audio import NUM_CEPS, NUM_FILTERS, dct_ortho

    x = np.random.default_rng(3).normal(size=(400, NUM_FILTERS)) * 12 - 20
    x[:5] = np.log(np.finfo(float).eps)
    expected = scipy.fftpack.dct(x, type=2, axis=1, norm="ortho")[:, :NUM_CEPS]
    np.testing.assert_allclose(dct_ortho(x), expected, rtol=0, atol=1e-12)
    assert (dct_ortho(x)[:5, 1:] == 0).all()


def test_streaming_mfcc_equals_whole_signal(golden):
    audio = golden("hdtf_kh_sync")["audio"]
    whole = mfcc(audio)
    stream, cols = MfccStream(), []
    rng = np.random.default_rng(1)
    pos = 0
    while pos < len(audio):
        step = int(rng.integers(1, 3000))
        cols.append(stream.feed(audio[pos:pos + step]))
        pos += step
    streamed = np.concatenate(cols, 1)
    # every complete frame; only the reference's zero-padded last frame is missing
    assert streamed.shape[1] == whole.shape[1] - 1
    np.testing.assert_allclose(streamed, whole[:, :-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["grid_s1_sync", "hdtf_kh_sync", "vr4_30fps"])
def test_embeddings_of_first_windows(stand_in, golden, name):
    g = golden(name)
    net, fast = stand_in.net, FastSyncNet(stand_in.net)
    with torch.inference_mode():
        for frames_key, emb_key in [("raw_frames_first", "raw_lip_emb_first"), ("frames_first", "lip_emb_first")]:
            frames = torch.from_numpy(g[frames_key].astype(np.float32))  # (1, 3, 5, 224, 224)
            assert_embeddings_close(net.forward_lip(frames).numpy()[0], g[emb_key][0])
            assert_embeddings_close(fast.forward_lip(frames).numpy()[0], g[emb_key][0])
        cols = torch.from_numpy(g["mfcc"].astype(np.float32))
        windows = torch.stack([cols[:, 4 * i:4 * i + 20] for i in range(20)]).unsqueeze(1)
        assert_embeddings_close(net.forward_aud(windows).numpy(), g["aud_emb_first"])
        assert_embeddings_close(fast.forward_aud(windows).numpy(), g["aud_emb_first"])


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_engine_matches_reference_on_every_clip(engine, golden, name):
    """Our decoded frames + the reference's audio samples -> every distance, offset and confidence."""
    g = golden(name)
    frames, _ = media.read_all(str(reference_input(name)))
    np.testing.assert_array_equal(frames[:5], g["raw_frames_first"][0].transpose(1, 2, 3, 0))
    result = engine.analyse([("video", frames), ("audio", g["audio"])])
    assert result.num_windows == int(g["num_windows"])
    assert_reduction_matches(result, g, prefix="raw_")
    assert_embeddings_close(result.lip_embeddings_first, g["raw_lip_emb_first"])
    assert_embeddings_close(result.audio_embeddings_first, g["raw_aud_emb_first"])


def test_streaming_chunk_sizes_do_not_change_the_result(engine, golden):
    g = golden("vr5_adv5")
    frames, _ = media.read_all(str(reference_input("vr5_adv5")))
    whole = engine.analyse([("video", frames), ("audio", g["audio"])])
    chunks, rng = [], np.random.default_rng(2)
    f = a = 0
    while f < len(frames) or a < len(g["audio"]):  # interleaved, odd sizes, audio running ahead
        n = int(rng.integers(1, 40))
        chunks.append(("audio", g["audio"][a:a + n * 700]))
        a += n * 700
        chunks.append(("video", frames[f:f + n]))
        f += n
    streamed = engine.analyse([c for c in chunks if len(c[1])])
    assert streamed.offset_frames == whole.offset_frames
    np.testing.assert_allclose(streamed.dists, whole.dists, rtol=DIST_RTOL)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_direct_pipeline_from_file(engine, golden, name):
    """The whole normal path, decoding audio with PyAV's bundled FFmpeg. Its AAC decoder (FFmpeg >= 7)
    rounds a few samples differently by 1 LSB from the reference's FFmpeg 5.1, which moves distances
    by up to ~1e-3 relative; offsets stay exact."""
    from otio_lipsync.analysis import analyse_file

    g = golden(name)
    analysis, result = analyse_file(str(reference_input(name)), engine)
    _, audio = media.read_all(str(reference_input(name)))
    assert len(audio) == int(g["num_audio_samples"])
    assert np.abs(audio.astype(int) - g["audio"]).max() <= 1
    assert analysis.offset_frames == int(g["raw_offset"])
    assert result.num_windows == int(g["num_windows"])
    np.testing.assert_allclose(result.dists, g["raw_dists"], rtol=2e-3)
    assert analysis.confidence == pytest.approx(float(g["raw_conf"]), abs=0.01)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_reference_decode_matches_plain_golden_fields(engine, golden, name):
    """--reference-decode reproduces the JPEG round trip; identical JPEGs need the reference's ffmpeg."""
    version = system_ffmpeg_version()
    if not version or not version.startswith("5.1"):
        pytest.skip(f"needs Debian 12's ffmpeg 5.1 on PATH (the golden run's build), found {version}")
    g = golden(name)
    frames = []
    chunks = list(media.reference_decode(str(reference_input(name))))
    frames = np.concatenate([c for k, c in chunks if k == "video"])
    audio = np.concatenate([c for k, c in chunks if k == "audio"])
    np.testing.assert_array_equal(frames[:5], g["frames_first"][0].transpose(1, 2, 3, 0))
    np.testing.assert_array_equal(audio, g["audio"])
    result = engine.analyse(chunks)
    assert_reduction_matches(result, g)


EMULATED_BF16_FRAMES = 24  # 19 windows: float32 already finds vr5_adv5's +5 from 15 (~1.2 s a window emulated)


def test_bfloat16_mode_keeps_every_offset(stand_in, engine, golden):
    """The opt-in fast mode is not parity, but it must not change an answer. Every golden clip where the
    CPU has native bfloat16; on emulated bfloat16 (~20x slower: all six would take ~20 minutes, vr5_adv5
    whole 137 s) the first second of vr5_adv5, against float32 on the same frames and the golden offset."""
    from otio_lipsync.sync import SyncEngine, native_bfloat16

    fast = SyncEngine(stand_in, precision="bfloat16")
    if not native_bfloat16():
        g = golden("vr5_adv5")
        frames, _ = media.read_all(str(reference_input("vr5_adv5")))
        cut = [("video", frames[:EMULATED_BF16_FRAMES]), ("audio", g["audio"][:EMULATED_BF16_FRAMES * 640])]
        exact, result = engine.analyse(cut), fast.analyse(cut)
        assert exact.offset_frames == int(g["raw_offset"])  # the cut still knows the clip's +5
        assert result.offset_frames == exact.offset_frames
        assert result.confidence == pytest.approx(exact.confidence, rel=0.03)
        return
    for name in GOLDEN_NAMES:
        g = golden(name)
        frames, _ = media.read_all(str(reference_input(name)))
        result = fast.analyse([("video", frames), ("audio", g["audio"])])
        assert result.offset_frames == int(g["raw_offset"]), name
        assert result.confidence == pytest.approx(float(g["raw_conf"]), rel=0.03), name

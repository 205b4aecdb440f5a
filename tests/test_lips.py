"""The lips architecture: face-mesh landmarks on the engine's crops, the lip-geometry normalisation, the
sampler's lip mode, and the landmarks -> fit --arch lips -> eval path on real clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from otio_lipsync.model.lips import FEATURES, MIRROR, POINTS, LipsSyncNet, lip_features, lip_windows
from otio_lipsync.train.pairs import FeatureTrack, PairSampler


def _mesh_like(n: int, seed: int = 0) -> np.ndarray:
    """n frames of 468 random points with the eyes where a face has them (the normalisation needs only those)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(60, 160, (n, 468, 3)).astype(np.float32)
    p[:, [33, 133], :2] = [[70, 80], [100, 80]]
    p[:, [362, 263], :2] = [[124, 80], [154, 80]]
    return p


def test_lip_features_ignore_position_scale_and_roll():
    p = _mesh_like(4)
    base = lip_features(p)
    assert base.shape == (4, FEATURES) and base.dtype == torch.float32
    a = np.deg2rad(17)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    moved = p.copy()
    moved[..., :2] = (p[..., :2] @ rot.T) * 1.7 + np.array([31.0, -12.0], np.float32)
    assert torch.allclose(lip_features(moved), base, atol=1e-4)
    # the mouth opening does reach the features
    opened = p.copy()
    opened[:, 14, 1] += 10
    assert not torch.allclose(lip_features(opened), base)


def test_mirror_swaps_left_and_right_points():
    assert sorted(MIRROR) == list(range(len(POINTS)))
    assert [MIRROR[m] for m in MIRROR] == list(range(len(POINTS)))  # an involution
    assert POINTS[MIRROR[POINTS.index(61)]] == 291 and POINTS[MIRROR[POINTS.index(0)]] == 0


def test_lip_sampler_windows_stay_aligned_with_their_audio():
    n = 120
    g = torch.Generator().manual_seed(0)
    track = FeatureTrack("p", "p.mp4", torch.zeros(n + 4, 48, 80, dtype=torch.uint8), torch.randn(13, 4 * (n - 1) + 20,
                         generator=g), n, torch.ones(n, dtype=torch.bool), lips=lip_features(_mesh_like(n + 4)))
    plain = PairSampler([track], columns=20, seed=3, lips=True).sample(1, augment=False)
    moved = PairSampler([track], columns=20, seed=3, lips=True).sample(1)
    assert plain.lips.shape[1:] == (5, FEATURES) and moved.lips.shape == plain.lips.shape
    assert torch.equal(moved.shift, plain.shift) and torch.equal(moved.lip_index, plain.lip_index)
    assert not torch.equal(moved.lips, plain.lips)
    assert torch.equal(moved.lips[0, 1], moved.lips[1, 0])  # consecutive frames, windowed after augmenting


def test_lips_net_embeds_windows_and_audio():
    net = LipsSyncNet().eval()
    w = lip_windows(lip_features(_mesh_like(12)))
    assert w.shape == (8, 5, FEATURES)
    assert net.forward_lip_windows(w).shape == (8, 128)
    assert net.forward_aud(torch.randn(8, 1, 13, 20)).shape == (8, 128)


def test_face_mesh_finds_the_lips_on_a_real_crop():
    pytest.importorskip("ai_edge_litert")
    from otio_lipsync.faces.mesh import FaceMesh, MeshUnavailable

    try:
        mesh = FaceMesh()
    except MeshUnavailable as exc:
        pytest.skip(str(exc))
    from otio_lipsync.faces.detectors import make_detector
    from otio_lipsync.footage import FootageOptions, FootageScan

    from .conftest import clip

    crops = []
    for kind, data in FootageScan(str(clip("synced_lrs2_demo00001_01.mp4")), FootageOptions(), make_detector("blazeface")):
        if kind == "crops":
            crops += [e.crop for e in data]
        if len(crops) >= 10:
            break
    pts, score = mesh(np.stack(crops[:10]))
    assert pts.shape == (10, 468, 3) and np.all(score > 0.5)
    # the engine's crop puts the mouth in its lower middle (rows ~100-180, columns ~80-145)
    mouth = pts[:, [13, 14, 61, 291], :2].mean(1)
    assert np.all((mouth[:, 0] > 80) & (mouth[:, 0] < 145) & (mouth[:, 1] > 95) & (mouth[:, 1] < 185))


def test_engine_lip_stream_equals_the_whole_track_computation():
    """The engine streams crops in chunks; its windows must be those training and eval see on the whole track
    (local median centring and context included)."""
    from otio_lipsync.model.lips import LipFeatureStream, centre_local

    class FakeMesh:  # crops -> 468 'points' straight from the pixels: deterministic and cheap
        def __call__(self, crops):
            pts = crops.astype(np.float32).reshape(len(crops), -1)[:, :468 * 3].reshape(-1, 468, 3)
            return pts, np.ones(len(crops), np.float32)

    crops = np.random.default_rng(0).integers(0, 255, (173, 40, 40, 3), dtype=np.uint8)
    for centre, context in [(0, 0), (50, 0), (10, 3)]:
        net = LipsSyncNet(context=context, centre=centre).eval()
        stream = LipFeatureStream(net, FakeMesh(), centre)
        got = torch.cat([stream.push(crops[i:i + 17]) for i in range(0, len(crops), 17)] + [stream.finish()])
        feats = centre_local(lip_features(FakeMesh()(crops)[0]), centre)
        with torch.no_grad():
            ref = net.forward_lip_windows(net.lip_input(feats, 0, len(crops) - 4))
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-5)
        assert len(stream.raw) <= 2 * (centre + context) + 17 + 5  # memory flat in track length


def test_landmarks_fit_lips_eval_export_then_check(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert")
    import json

    from click.testing import CliRunner
    from otio_lipsync.faces.mesh import MeshUnavailable, find_face_mesh_model
    from otio_lipsync.model.registry import resolve
    from otio_lipsync.train.cli import main as train_cli

    from otio_lipsync.cli import main as lipsync

    from .conftest import clip

    try:
        find_face_mesh_model()
    except MeshUnavailable as exc:
        pytest.skip(str(exc))
    names = ["synced_lrs2_demo00001_01.mp4", "synced_lrs2_demo00004_01.mp4"]
    data, lips = tmp_path / "data", tmp_path / "lips"
    r = CliRunner().invoke(train_cli, ["prepare", *[str(clip(n)) for n in names], "-o", str(data)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(train_cli, ["landmarks", str(data), "-o", str(lips)])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["tracks"] == 2 and not summary["mismatched_tracks"] and not summary["missing_tracks"]
    run = tmp_path / "run"
    r = CliRunner().invoke(train_cli, ["fit-lips", str(lips), "-o", str(run), "--steps", "4", "--eval-every", "2",
                                       "--val-persons", "lrs2_demo00004", "--centre", "local10", "--context", "2",
                                       "--init-audio", str(resolve("house")), "--freeze-audio-tower"])
    assert r.exit_code == 0, r.output
    assert (run / "best.pt").exists() and len((run / "curve.csv").read_text().splitlines()) == 4  # steps 0, 2, 4
    r = CliRunner().invoke(train_cli, ["eval", str(run / "checkpoint.pt"), str(lips), "--compare", str(resolve("house")),
                                       "-o", str(tmp_path / "both")])
    assert r.exit_code == 0, r.output
    table = (tmp_path / "both.md").read_text()
    assert "| run/checkpoint.pt |" in table and "| house" in table
    model = tmp_path / "models" / "tiny_lips.model"
    r = CliRunner().invoke(train_cli, ["export", str(run / "checkpoint.pt"), "-o", str(model)])
    assert r.exit_code == 0, r.output
    monkeypatch.setenv("OTIO_LIPSYNC_MODEL_DIR", str(model.parent))
    r = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--model", "tiny_lips", "--json", "-",
                                     str(clip("synced_lrs2_demo00004_01.mp4"))])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)[0]
    assert result["model"]["architecture"] == "lips" and result["num_windows"] > 100

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

"""The sync stage's reduction of distances to an offset, on constructed distance matrices whose right
answer is known (the real-footage side is in test_parity.py and test_house.py)."""

from __future__ import annotations

import numpy as np
import pytest

from otio_lipsync.sync import inside_clip, mean_curve, offset_from_dists

VSHIFT = 15


def short_clip_dists(num_windows: int, true_offset: int, pad_distance: float) -> np.ndarray:
    """Window i is closest to audio i - true_offset (offset sign as syncnet_python prints it); pairs whose
    audio lies outside the clip compare with a zero vector and get `pad_distance`."""
    rng = np.random.default_rng(0)
    d = 10.0 + rng.normal(0, 0.3, (num_windows, 2 * VSHIFT + 1))
    d[:, VSHIFT - true_offset] -= 0.8  # a weak model: a shallow dip at the right shift
    return np.where(inside_clip(num_windows, VSHIFT), d, pad_distance).astype(np.float32)


def test_inside_clip_marks_the_pairs_whose_audio_exists():
    inside = inside_clip(4, 2)  # windows 0..3, shifts -2..+2
    assert inside.tolist() == [[False, False, True, True, True],
                               [False, True, True, True, True],
                               [True, True, True, True, False],
                               [True, True, True, False, False]]


@pytest.mark.parametrize("true_offset", [-3, 0, 2])
def test_valid_edges_ignore_zero_padding_that_pulls_short_clips_to_the_search_edge(true_offset):
    # a 3.7 s clip (87 windows) and a model whose embeddings are small: distance to the zero vector 4,
    # well under the real pairs' distances
    dists = short_clip_dists(87, true_offset, pad_distance=4.0)
    zero = offset_from_dists(dists, VSHIFT, "zero")[0]
    valid = offset_from_dists(dists, VSHIFT, "valid")[0]
    assert abs(zero) == VSHIFT  # the reference's arithmetic ends at the edge of the search ...
    assert valid == true_offset  # ... averaging only real pairs finds the offset


def test_both_edges_agree_when_padding_is_harmless():
    dists = short_clip_dists(300, 2, pad_distance=30.0)
    assert offset_from_dists(dists, VSHIFT, "zero")[0] == offset_from_dists(dists, VSHIFT, "valid")[0] == 2


def test_mean_curve_weights_and_a_clip_shorter_than_the_search():
    rows = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    assert mean_curve(rows).tolist() == [2.0, 3.0, 4.0]
    assert mean_curve(rows, np.array([3.0, 1.0])).tolist() == [1.5, 2.5, 3.5]
    inside = np.array([[True, False, True], [False, False, True]])
    # a shift no window sees inside the clip keeps the plain mean (never inf or NaN)
    assert mean_curve(rows, inside=inside).tolist() == [1.0, 3.0, 4.0]

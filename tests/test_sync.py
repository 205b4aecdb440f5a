"""The sync stage's reduction of distances to an offset, on constructed distance matrices whose right
answer is known (the real-footage side is in test_parity.py and test_house.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from otio_lipsync.errors import TooShort
from otio_lipsync.sync import (
    MIN_EDGE_WINDOWS,
    MIN_VSHIFT,
    SyncResult,
    default_vshift,
    inside_clip,
    mean_curve,
    offset_from_dists,
    search_vshift,
    usable_vshift,
)

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


def test_the_default_range_is_one_second_and_syncnet_keeps_the_references():
    assert default_vshift("valid") == 25  # compact models: the paper's +-1 s at 25 fps
    assert default_vshift("zero") == 15  # syncnet_python's arithmetic and its --vshift 15, for parity


def test_max_offset_ms_is_whole_frames_rounded_up_and_agrees_with_vshift():
    assert search_vshift() is None  # nothing asked: the engine's default for its model
    assert search_vshift(max_offset_ms=1000) == 25
    assert search_vshift(max_offset_ms=1500) == 38  # 37.5 frames: the range asked for is searched
    assert search_vshift(max_offset_ms=600) == search_vshift(vshift=15) == 15
    assert search_vshift(vshift=25, max_offset_ms=1000) == 25
    with pytest.raises(ValueError, match="disagree"):
        search_vshift(vshift=15, max_offset_ms=1000)
    with pytest.raises(ValueError, match="more than 0"):
        search_vshift(max_offset_ms=0)


def test_short_clips_search_a_narrower_range():
    assert usable_vshift([500], 25, "valid") == 25
    # 3 s at 25 fps: 70 windows; the extreme shifts keep MIN_EDGE_WINDOWS windows with audio inside
    assert usable_vshift([70], 25, "valid") == 70 - MIN_EDGE_WINDOWS
    assert usable_vshift([40, 40], 25, "valid") == 40 - MIN_EDGE_WINDOWS // 2  # tracks add up
    assert usable_vshift([50 + MIN_VSHIFT], 25, "valid") == MIN_VSHIFT
    with pytest.raises(TooShort, match=r"clip.mp4: too short to measure: 1\.6 s .* needs 2\.4 s"):
        usable_vshift([40], 25, "valid", "clip.mp4")  # a narrower search would only confirm 0
    assert usable_vshift([70], 15, "zero") == 15  # the reference's arithmetic keeps its range


def test_a_narrowed_result_is_the_middle_of_the_wide_one():
    wide = 25
    rng = np.random.default_rng(3)
    d = (10.0 + rng.normal(0, 0.3, (120, 2 * wide + 1))).astype(np.float32)
    d[:, wide - 4] -= 1.0  # true offset 4
    d[:, wide + 24] -= 2.0  # a deeper dip outside +-20 (what a short clip's edge can look like)
    offset, minval, conf, mean, fconf, ffilt = offset_from_dists(d, wide, "valid")
    result = SyncResult(dists=d, mean_dists=mean, offset_frames=offset, min_distance=minval, confidence=conf,
                        framewise_confidence=ffilt, framewise_confidence_unfiltered=fconf, num_frames=125,
                        num_samples=125 * 640, vshift=wide, edges="valid")
    assert result.offset_frames == -24
    narrow = result.narrowed(20)
    assert (narrow.vshift, narrow.offset_frames, narrow.dists.shape) == (20, 4, (120, 41))
    assert narrow.offset_frames == offset_from_dists(d[:, 5:46], 20, "valid")[0]
    assert result.narrowed(25) is result


def test_the_framewise_median_filter_equals_scipys_medfilt():
    """syncnet_python smooths framewise confidence with scipy.signal.medfilt; ours is numpy's (importing
    scipy.signal cost every process ~0.6 s) and must give the same values, short and empty inputs included."""
    import scipy.signal

    from otio_lipsync.filters import median_filter
    from otio_lipsync.sync import MEDFILT_KERNEL

    rng = np.random.default_rng(0)
    for n in (1, 4, MEDFILT_KERNEL, 10, 250):
        values = rng.normal(size=n).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns when the kernel is longer than the input
            expected = scipy.signal.medfilt(values, kernel_size=MEDFILT_KERNEL)
        np.testing.assert_array_equal(median_filter(values, MEDFILT_KERNEL), expected)
        # the face tracks' box smoothing repeats the end values instead (scipy.ndimage's mode="nearest")
        import scipy.ndimage

        np.testing.assert_array_equal(median_filter(values, 13, edges="nearest"),
                                      scipy.ndimage.median_filter(values, size=13, mode="nearest"))
    assert median_filter(np.zeros(0, np.float32), MEDFILT_KERNEL).shape == (0,)
    with pytest.raises(ValueError, match="edges must be"):
        median_filter(np.ones(3), 3, edges="wrap")

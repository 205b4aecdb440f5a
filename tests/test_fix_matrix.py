"""Issue #6's matrix: `lipsync check` and `lipsync fix` with the default model (the house model) on real,
raw footage, the audio shifted with ffmpeg adelay / atrim (`shifted` from test_house: same duration, never
-itsoffset) by -200, -120, -40, +40, +120, +200 ms.

This tests the file plumbing (sign, rounding, the residual report, both fix methods, bit-exact video,
durations), not how the model generalises (that is test_house.py, on its validation persons). So the clips
are of people the house model was trained on and that measure 0 ms unshifted (first 6 s, raw footage, no
--face-cropped), checked with `lipsync check --json - <files>` on 2026-12-02:
- GRID s1 `bbaf2n`, `bbal6n` (../shared/data/grid_s1/video; 3 s, 25 fps, 360x288, 44.1 kHz AAC), the GRID
  speaker is most of the house model's training footage;
- `synced_dfrf_cnn_anchor_01` (speaker_hint cnn_reporter; 25 fps, 512x512, 44.1 kHz),
  `synced_hdtf_katie_hill_01` (katie_hill; 25 fps, 512x512, 16 kHz) and `synced_w2lgfpgan_presenter_01`
  (blue_screen_presenter; 30 fps, 1280x720, 44.1 kHz) from ../shared/data/clips, listed in its catalog.tsv.
The house model carries a constant 1-2 frame bias on some people it never saw (README, "The house model"),
which would hide what this test is about. The assertions can fail: the stand-in weights misread 3 of the
14 GRID bbaf2n / katie_hill files (+-200 ms on GRID read 0, -120 on katie_hill reads -40), and with fix's
sign reversed the +120 ms file came out with a residual of +240 ms (both tried 2026-12-02).
Measured 2026-12-02: check 35/35 within one frame (all exact); fix residual +0 ms with both methods on all
11 files fixed (9 fixed since 2026-12-03: GRID bbaf2n's +-120 ms repeat bbal6n's and cnn_reporter's cases);
the whole module ~2 min on 2 shared cores.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import main as lipsync
from otio_lipsync.ffmpeg_filter.fix import video_hashes
from otio_lipsync.model import registry

from .conftest import CLIPS, SHARED, need
from .test_house import shifted

GRID = SHARED / "data" / "grid_s1" / "video"
# name -> (source, person as the house model knows it)
SOURCES = {
    "grid_bbaf2n": (GRID / "bbaf2n.mp4", "grid_s1"),
    "grid_bbal6n": (GRID / "bbal6n.mp4", "grid_s1"),
    "cnn_reporter": (CLIPS / "synced_dfrf_cnn_anchor_01.mp4", "cnn_reporter"),
    "katie_hill": (CLIPS / "synced_hdtf_katie_hill_01.mp4", "katie_hill"),
    "presenter_30fps": (CLIPS / "synced_w2lgfpgan_presenter_01.mp4", "blue_screen_presenter"),
}
SHIFTS_MS = (-200, -120, -40, 40, 120, 200)
# fixed with both methods (each fix loads the model and measures twice: ~10 s a case on 2 cores):
# one frame and the largest shift both ways on one GRID clip (+-120 are the cnn_reporter and bbal6n cases),
# the largest both ways on the 30 fps presenter, one on each other clip
FIX = {
    "grid_bbaf2n": (-200, -40, 40, 200),
    "presenter_30fps": (-200, 200),
    "cnn_reporter": (-120,),
    "katie_hill": (40,),
    "grid_bbal6n": (120,),
}
FRAME_MS = 40  # one frame of the 25 fps analysis grid
AAC_FRAME = 1024  # samples
RESIDUAL = re.compile(r": residual ([+-]\d+) ms \(([+-]\d+) frames\)")


@pytest.fixture(scope="module")
def house():
    path = registry.find_model_file("house")
    if path is None:
        pytest.skip("needs the house model (model/weights/house.model), the default model; not in this checkout")
    if registry.resolve(None) != path:
        pytest.skip(f"needs the house model as the default model; the default resolves to {registry.resolve(None)}")
    loaded = registry.load("house")
    # people the model was trained on, never its validation persons (those carry biases: test_house.py)
    assert not {person for _, person in SOURCES.values()} & set(loaded.metadata["validation"]["persons"])
    return loaded


@pytest.fixture(scope="module")
def shifted_clips(house, ffmpeg_exe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fix_matrix")
    made = {}
    for name, (src, _) in SOURCES.items():
        need(src)
        for ms in (0, *SHIFTS_MS):
            made[(name, ms)] = shifted(ffmpeg_exe, src, ms, folder / f"{name}_{ms:+d}.mp4")
    return made


@pytest.fixture(scope="module")
def checked(shifted_clips):
    """Every shifted file measured by one `lipsync check` (the model loads once), default model."""
    keys = list(shifted_clips)
    result = CliRunner().invoke(lipsync, ["check", "--json", "-", *[str(shifted_clips[k]) for k in keys]])
    assert result.exit_code == 0, result.output
    return dict(zip(keys, json.loads(result.stdout)))


def test_check_measures_every_applied_shift_within_one_frame(checked):
    lines, misses = [], 0
    for (name, ms), r in checked.items():
        ok = abs(r["audio_delay_ms"] - ms) <= FRAME_MS
        misses += not ok
        lines.append(f"{name} {ms:+d} ms -> {r['audio_delay_ms']:+.0f} ms ({r['offset_frames']:+d} frames), "
                     f"conf {r['confidence']:.1f}{'' if ok else '  MISS'}")
    print(f"\ncheck, house model: {len(checked) - misses}/{len(checked)} within one frame")
    print("\n".join(lines))
    assert all(checked[(name, 0)]["audio_delay_ms"] == 0 for name in SOURCES), "\n".join(lines)  # chosen so
    assert misses == 0, "\n".join(lines)


def video_end_s(path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)


def run_fix(src, out, method):
    result = CliRunner().invoke(lipsync, ["fix", str(src), "-o", str(out), "--delay-ms", "auto", "--method", method])
    assert result.exit_code == 0, result.output
    found = RESIDUAL.findall(result.stdout)
    assert len(found) == 1, result.output
    ms, frames = map(int, found[0])
    assert ms == -FRAME_MS * frames  # the residual report is self-consistent (audio_delay_ms = -40 * frames)
    return ms, result


@pytest.mark.parametrize("name,ms", [(name, ms) for name, shifts in FIX.items() for ms in shifts])
def test_fix_auto_removes_the_shift_with_both_methods(checked, shifted_clips, tmp_path, name, ms):
    src = shifted_clips[(name, ms)]
    measured = checked[(name, ms)]["audio_delay_ms"]
    residuals = {}
    in_info = media.probe(str(src))
    for method in ("copy", "reencode"):
        out = tmp_path / f"{name}_{ms:+d}_{method}.mp4"
        residuals[method], result = run_fix(src, out, method)
        # fix says what it measured and which way it moved the audio
        word = "earlier" if measured > 0 else "later"
        assert f"audio moved {abs(measured):.0f} ms {word} ({method})" in result.stdout, result.output
        assert video_hashes(str(out)) == video_hashes(str(src)), method
        # OUT as long as IN within one audio frame; except copy moving the audio earlier: stream copy cannot
        # pad its end, so OUT lasts as long as the longer of the video and the shifted audio
        expected = in_info.duration_s
        if method == "copy" and measured > 0:
            expected = max(video_end_s(src), in_info.duration_s - measured / 1000)
        out_s = media.probe(str(out)).duration_s
        assert abs(out_s - expected) <= AAC_FRAME / in_info.audio_rate, (method, in_info.duration_s, out_s)
    print(f"\n{name} {ms:+d} ms: measured {measured:+.0f}, residual copy {residuals['copy']:+d} ms, "
          f"reencode {residuals['reencode']:+d} ms")
    assert abs(residuals["copy"]) <= FRAME_MS and abs(residuals["reencode"]) <= FRAME_MS, residuals
    assert residuals["copy"] == residuals["reencode"], residuals

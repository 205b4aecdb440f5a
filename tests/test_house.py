"""The committed house model on footage of people it never saw in training (its validation persons):
applied shifts made with ffmpeg adelay / atrim are recovered by `lipsync check` on raw footage."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main as lipsync
from otio_lipsync.model import registry

from .conftest import clip, run_ffmpeg

# one clip per held-out person (the model file lists them under metadata["validation"]["persons"])
HELD_OUT = {
    "ted_lieu": "synced_edtalk_ted_lieu_01.mp4",
    "voxceleb2_id00104": "synced_voxceleb2_id00104_01.mp4",
    "alexandria_ocasio_cortez": "synced_hdtf_aoc_01.mp4",
    "lrs2_demo00016": "synced_lrs2_demo00016_01.mp4",
    "vr4_woman_blue": "synced_vr_woman_blue_01.mp4",
    "mead_m030": "synced_mead_m030_01.mp4",
}
SHIFTS_MS = (-200, -120, -40, 0, 40, 120, 200)
SECONDS = 6  # the first seconds of each clip: enough windows for a clip-level offset, fast enough for CI
GOAL = 0.9  # issue #7's goal, not met yet (README: House model); the floors below guard what was measured
ABSOLUTE_FLOOR = 0.65  # measured 2026-12-02: 24/36 of the non-zero shifts (22/36 before edges="valid")
RELATIVE_FLOOR = 0.95  # measured 2026-12-02: 36/36 (33/36 before: the 3.7 s MEAD clip ended at the search edge)


@pytest.fixture(scope="module")
def house():
    path = registry.find_model_file("house")
    if path is None:
        pytest.skip("the house model (model/weights/house.model) is not in this checkout")
    loaded = registry.load("house")
    assert registry.DEFAULT_MODEL == "house"
    return loaded


def test_house_model_is_compact_small_and_describes_itself(house):
    assert house.architecture == "compact"
    assert registry.find_model_file("house").stat().st_size <= 20 * 1024 * 1024
    meta = house.metadata
    assert set(HELD_OUT) == set(meta["validation"]["persons"])  # these tests use only unseen people
    assert meta["training"]["persons"] >= 30 and meta["validation"]["window_accuracy"]


def shifted(ffmpeg_exe, src, ms, out):
    """Audio moved by `ms` (positive: later, adelay; negative: earlier, atrim), same duration."""
    af = (f"adelay={ms}:all=1" if ms > 0 else f"atrim=start={-ms / 1000},asetpts=PTS-STARTPTS" if ms < 0
          else "anull")
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-t", str(SECONDS), "-map", "0:v:0", "-map", "0:a:0", "-c:v", "copy",
               "-af", af + ",apad", "-c:a", "aac", "-b:a", "128k", "-shortest", str(out))
    return out


@pytest.fixture(scope="module")
def shifted_clips(ffmpeg_exe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("house_shifts")
    made = []
    for person, name in HELD_OUT.items():
        src = clip(name)
        for ms in SHIFTS_MS:
            made.append((person, ms, shifted(ffmpeg_exe, src, ms, folder / f"{person}_{ms:+d}.mp4")))
    return made


def test_applied_shifts_on_unseen_people_are_recovered_within_one_frame(house, shifted_clips, tmp_path):
    report = tmp_path / "report.json"
    result = CliRunner().invoke(lipsync, ["check", "--json", str(report), *[str(p) for _, _, p in shifted_clips]])
    assert result.exit_code == 0, result.output
    measured = json.loads(report.read_text())
    by_clip = {(person, ms): r for (person, ms, _), r in zip(shifted_clips, measured)}
    absolute = relative = total = 0
    lines = []
    for (person, ms, _), r in zip(shifted_clips, measured):
        if ms == 0:
            continue
        base = by_clip[(person, 0)]["audio_delay_ms"]  # the clip as it came: its own offset, if any
        absolute += abs(r["audio_delay_ms"] - ms) <= 40
        relative += abs(r["audio_delay_ms"] - base - ms) <= 40
        total += 1
        lines.append(f"{person} {ms:+d} ms -> {r['audio_delay_ms']:+.0f} ms (unshifted {base:+.0f}, "
                     f"conf {r['confidence']:.1f})")
    print(f"house model on unseen people: applied shift recovered within one frame {absolute}/{total} = "
          f"{absolute / total:.0%}; change from the unshifted clip recovered {relative}/{total} = "
          f"{relative / total:.0%} (goal {GOAL:.0%})")
    print("\n".join(lines))
    # zero-padded audio must not pull a short clip (MEAD, 3.7 s) to the edge of the search (+-25 frames now)
    assert all(abs(r["offset_frames"]) < r["vshift"] for r in measured), "\n".join(lines)
    assert absolute / total >= ABSOLUTE_FLOOR, "\n".join(lines)
    assert relative / total >= RELATIVE_FLOOR, "\n".join(lines)

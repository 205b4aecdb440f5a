"""The offset range: +-1 s by default (the SyncNet paper's), `--max-offset-ms` / `--vshift` to choose it, and
short clips that search less rather than find false minima at the edge. Shifts are applied with ffmpeg
adelay / atrim, as in test_house.py, on the house model's validation persons (people it never saw)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main as lipsync

from .conftest import clip, run_ffmpeg
from .test_house import house  # noqa: F401  (the module-scope fixture: the packaged model, loaded once)

# the validation persons whose clips are long enough (>= 8 s) to keep 7 s of speech after a 1 s shift
LONG = {
    "ted_lieu": "synced_edtalk_ted_lieu_01.mp4",
    "voxceleb2_id00104": "synced_voxceleb2_id00104_01.mp4",
    "alexandria_ocasio_cortez": "synced_hdtf_aoc_01.mp4",
    "lrs2_demo00016": "synced_lrs2_demo00016_01.mp4",
}
WIDE_SHIFTS_MS = (-1000, -800, 800, 1000)
SHORT_SHIFTS_MS = (-400, 400)
SHORT_SECONDS = 3
SHORT_FLOOR = 7  # of 8, measured 2026-12-03 (6 of 8 with the full +-25 search: false minima at its edge)


def shifted(ffmpeg_exe, src, ms, out, seconds):
    """Audio moved by `ms` (positive: later, adelay; negative: earlier, atrim), same duration."""
    af = (f"adelay={ms}:all=1" if ms > 0 else f"atrim=start={-ms / 1000},asetpts=PTS-STARTPTS" if ms < 0
          else "anull")
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-t", str(seconds), "-map", "0:v:0", "-map", "0:a:0", "-c:v", "copy",
               "-af", af + ",apad", "-c:a", "aac", "-b:a", "128k", "-shortest", str(out))
    return out


def check_json(paths, *options):
    result = CliRunner().invoke(lipsync, ["check", "-q", *options, "--json", "-", *map(str, paths)])
    return result, json.loads(result.stdout) if result.stdout.strip() else None


def recovered(measured: dict, shifts) -> tuple[list[str], list[str]]:
    """(hits, lines): the change from the unshifted clip within one frame of the applied shift."""
    hits, lines = [], []
    for person, by_ms in measured.items():
        base = by_ms[0]["audio_delay_ms"]
        for ms in shifts:
            r = by_ms[ms]
            ok = abs(r["audio_delay_ms"] - base - ms) <= 40
            hits += [f"{person} {ms:+d}"] if ok else []
            lines.append(f"{person} {ms:+d} ms -> {r['audio_delay_ms']:+.0f} ms (unshifted {base:+.0f}, "
                         f"+-{r['vshift']} frames searched, conf {r['confidence']:.1f}){'' if ok else '  MISSED'}")
    return hits, lines


def measure(ffmpeg_exe, folder, shifts, seconds):
    made = [(person, ms, shifted(ffmpeg_exe, clip(name), ms, folder / f"{person}_{ms:+d}.mp4", seconds))
            for person, name in LONG.items() for ms in (0, *shifts)]
    result, report = check_json([p for _, _, p in made])
    assert result.exit_code == 0, result.output
    measured: dict = {}
    for (person, ms, _), r in zip(made, report):
        measured.setdefault(person, {})[ms] = r
    return measured


@pytest.fixture(scope="module")
def wide(house, ffmpeg_exe, tmp_path_factory):  # noqa: F811
    return measure(ffmpeg_exe, tmp_path_factory.mktemp("range_wide"), WIDE_SHIFTS_MS, 10)


def test_the_default_search_is_one_second_and_recovers_800_and_1000_ms(wide):
    assert {r["vshift"] for by_ms in wide.values() for r in by_ms.values()} == {25}
    hits, lines = recovered(wide, WIDE_SHIFTS_MS)
    print("\n".join(lines))
    # every +-800 ms shift: 600 ms read -440 before (+-15 frames)
    assert sum(h.endswith("800") for h in hits) == 2 * len(LONG), "\n".join(lines)
    # +-1000 ms, the edge of the search: measured 6 of 8 (2026-12-03); a weak per-window model
    # (README: house model) misses some where 1 s of the clip has no partner
    assert sum(h.endswith("1000") for h in hits) >= 6, "\n".join(lines)


def test_a_3_s_clip_searches_what_it_can_and_says_so(house, ffmpeg_exe, tmp_path):  # noqa: F811
    measured = measure(ffmpeg_exe, tmp_path, SHORT_SHIFTS_MS, SHORT_SECONDS)
    hits, lines = recovered(measured, SHORT_SHIFTS_MS)
    print("\n".join(lines))
    # 3 s: about 70 windows; +-20 frames leave 50 with audio inside the clip at the extreme shifts
    assert all(r["vshift"] < 25 for by_ms in measured.values() for r in by_ms.values()), "\n".join(lines)
    assert len(hits) >= SHORT_FLOOR, "\n".join(lines)


def test_a_clip_too_short_for_any_search_is_one_line(house, ffmpeg_exe, tmp_path):  # noqa: F811
    short = shifted(ffmpeg_exe, clip(LONG["voxceleb2_id00104"]), 0, tmp_path / "two_seconds.mp4", 2)
    result = CliRunner().invoke(lipsync, ["check", "--face-cropped", str(short)])
    assert result.exit_code == 2
    assert result.output.startswith(f"{short}: too short to measure: 1.8 s"), result.output
    assert result.output.count(f"{short}") == 1  # one line for the file (then the run's count)


def test_max_offset_ms_chooses_the_range_and_vshift_must_agree(house, tmp_path):  # noqa: F811
    src = clip(LONG["voxceleb2_id00104"])  # a 224x224 face crop: the fast path
    result, report = check_json([src], "--face-cropped", "--max-offset-ms", "600")
    assert result.exit_code == 0 and report[0]["vshift"] == 15, result.output
    result, report = check_json([src], "--face-cropped", "--max-offset-ms", "1500", "--vshift", "38")
    assert result.exit_code == 0 and report[0]["vshift"] == 38, result.output
    result = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--vshift", "15", "--max-offset-ms", "1000",
                                          str(src)])
    assert result.exit_code == 2 and "disagree" in result.output and len(result.output.strip().splitlines()) == 1


def test_syncnet_keeps_the_references_range_for_parity(engine):
    assert engine.vshift == 15  # syncnet_v2's arithmetic with syncnet_python's --vshift 15 (test_parity.py)

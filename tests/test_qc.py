"""Drift, QC verdicts with their exit codes, plots, and `lipsync check -` reading a pipe.

The drifting and constant-shift files are made from a golden clip (which the stand-in weights know):
copies concatenated, the audio slowed by 0.5% with atempo (a real drift of 300 ms/min; four copies), or
delayed by 120 ms with adelay (a constant shift; two copies).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main
from otio_lipsync.ffmpeg_filter.qc import STANDARDS, verdict

from .conftest import reference_input, run_ffmpeg


def _looped(ffmpeg_exe, tmp_path, name, audio_filter, copies):
    src = reference_input("hdtf_kh_sync")
    listing = tmp_path / f"{name}.txt"
    listing.write_text("".join(f"file '{src}'\n" for _ in range(copies)))
    out = tmp_path / f"{name}.mp4"
    run_ffmpeg(ffmpeg_exe, "-f", "concat", "-safe", "0", "-i", str(listing), "-c:v", "copy", "-af", audio_filter,
               "-c:a", "aac", "-shortest", str(out))
    return out


@pytest.fixture(scope="module")
def drift_files(tmp_path_factory, ffmpeg_exe):
    tmp = tmp_path_factory.mktemp("drift")
    # drifting: 32 s, five 10 s spans, for a rate within 20%; constant: 16 s, three spans, two are enough
    return {"drifting": _looped(ffmpeg_exe, tmp, "drifting", "atempo=0.995", 4),
            "constant": _looped(ffmpeg_exe, tmp, "constant", "adelay=120:all=1", 2)}


def test_drift_is_measured_and_called(stand_in_path, drift_files, tmp_path):
    plots = tmp_path / "plots"
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["check", "--face-cropped", "--model", str(stand_in_path), "--json",
                                       str(report), "--plot", str(plots), str(drift_files["drifting"]),
                                       str(drift_files["constant"])])
    assert result.exit_code == 0, result.output
    drifting, constant = json.loads(report.read_text())
    assert drifting["drift"]["verdict"] == "drifting"
    assert 240 <= drifting["drift"]["ms_per_minute"] <= 360  # atempo 0.995: 300 ms/min
    offsets = [s["audio_delay_ms"] for s in drifting["drift"]["spans"]]
    assert offsets == sorted(offsets) and offsets[-1] - offsets[0] >= 80
    assert "a constant slip cannot fix this" in result.output
    assert constant["drift"]["verdict"] == "constant"
    assert {s["offset_frames"] for s in constant["drift"]["spans"]} == {-3}
    assert "one constant slip fixes it" in result.output
    for name in ("drifting.png", "constant.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.parametrize("key, inside, outside", [
    ("ebu-r37", [-40, 0, 40, 60], [-80, 80]),
    ("bt1359", [-80, 0, 160, 185], [-120, 200]),
    ("atsc-is191", [0, 40, 45], [-40, 80]),
])
def test_verdicts_at_the_threshold_edges(key, inside, outside):
    standard = STANDARDS[key]
    assert all(verdict(standard, ms)["pass"] for ms in inside)
    for ms in outside:
        result = verdict(standard, ms)
        assert not result["pass"] and ("lags" if ms > 0 else "leads") in result["reasons"][0]
    assert verdict(standard, 0)["limits_ms"] == {"lead": standard.lead_ms, "lag": standard.lag_ms}


@pytest.fixture(scope="module")
def first_4_s(tmp_path_factory, ffmpeg_exe):
    """The first 4 s of a golden clip (95 windows: the stand-in finds the same offset): a verdict needs
    the offset, not the length."""
    folder, made = tmp_path_factory.mktemp("qc_4s"), {}

    def cut(name):
        if name not in made:
            made[name] = folder / f"{name}.mp4"
            run_ffmpeg(ffmpeg_exe, "-i", str(reference_input(name)), "-t", "4", "-c", "copy", str(made[name]))
        return made[name]

    return cut


@pytest.mark.parametrize("clip, standard, code", [
    ("hdtf_kh_sync", "atsc-is191", 0),  # in sync
    ("hdtf_aoc_delay3", "bt1359", 0),  # 120 ms late: acceptable
    ("hdtf_aoc_delay3", "ebu-r37", 1),  # 120 ms late: over EBU's 60
    ("vr5_adv5", "bt1359", 1),  # 200 ms early: over 90
])
def test_exit_codes_follow_the_verdict(stand_in_path, first_4_s, clip, standard, code):
    result = CliRunner().invoke(main, ["check", "--face-cropped", "--model", str(stand_in_path), "--standard",
                                       standard, "--json", "-", str(first_4_s(clip))])
    assert result.exit_code == code, result.output
    qc = json.loads(result.stdout)[0]["qc"]
    assert qc["pass"] == (code == 0) and qc["standard"] == standard


def test_an_error_outranks_a_failure(stand_in_path, first_4_s, tmp_path):
    result = CliRunner().invoke(main, ["check", "--face-cropped", "--model", str(stand_in_path), "--standard",
                                       "ebu-r37", str(first_4_s("hdtf_aoc_delay3")), str(tmp_path / "gone.mp4")])
    assert result.exit_code == 2


def test_check_reads_a_stream_from_stdin(stand_in_path, ffmpeg_exe):
    feed = subprocess.Popen([ffmpeg_exe, "-nostdin", "-v", "error", "-i", str(reference_input("hdtf_aoc_delay3")),
                             "-t", "4", "-c", "copy", "-f", "matroska", "-"], stdout=subprocess.PIPE)
    proc = subprocess.run([sys.executable, "-m", "otio_lipsync", "check", "--face-cropped", "--model",
                           str(stand_in_path), "--json", "-", "-"], stdin=feed.stdout, capture_output=True, text=True)
    feed.wait()
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)
    assert entry["file"] == "-" and entry["offset_frames"] == -3

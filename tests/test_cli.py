"""`lipsync check` and `lipsync models` as a user runs them: real files, real JSON, exit codes."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main

from .conftest import REFERENCE, junk_bytes, reference_input, run_ffmpeg

CONTRACT = {"file", "offset_frames", "audio_delay_ms", "confidence", "min_distance", "framewise_confidence",
            "fps_source", "duration_s", "model"}


def check(*args):
    result = CliRunner().invoke(main, ["check", *map(str, args)], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def runner_model(stand_in_path):
    return str(stand_in_path)


@pytest.fixture(scope="module")
def vr5_short(tmp_path_factory, ffmpeg_exe):
    """The first 2.4 s of vr5_adv5 (55 windows; the stand-in still finds +5, audio 200 ms early): for the
    tests about reports, mixed inputs and models, which need a known offset, not the whole clip."""
    path = tmp_path_factory.mktemp("vr5") / "vr5_adv5_2.4s.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr5_adv5")), "-t", "2.4", "-c", "copy", str(path))
    return path


def test_done_when_command_prints_the_contract(stand_in_path, golden):
    """`lipsync check --face-cropped --model <stand-in> --json - inputs/*.mp4`, as a user runs it."""
    # the two clips whose lines the contract prints (late, early); all six golden clips' offsets and
    # confidences through the same analysis are test_parity's test_direct_pipeline_from_file
    names = ["hdtf_aoc_delay3", "vr5_adv5"]
    inputs = [str(reference_input(n)) for n in names]
    proc = subprocess.run([sys.executable, "-m", "otio_lipsync", "check", "--face-cropped", "--model",
                           str(stand_in_path), "--json", "-", *inputs], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)  # stdout is pure JSON; summaries went to stderr
    assert [r["file"] for r in results] == inputs
    for name, r in zip(names, results):
        assert CONTRACT <= set(r)
        g = golden(name)
        assert r["offset_frames"] == int(g["raw_offset"])
        assert r["audio_delay_ms"] == -40 * r["offset_frames"]
        assert r["confidence"] == pytest.approx(float(g["raw_conf"]), abs=0.01)
        assert len(r["framewise_confidence"]) == int(g["num_windows"])
        assert r["model"]["sha256"] == "46801fe84223d640d58d90774c7f2d9ea59fa4b4172db5aefd2c7c9afd9f4ec7"
        assert r["model"]["name"] == "syncnet_v2_seed0"
        assert r["fps_source"] == 25 and r["duration_s"] == pytest.approx(g["num_frames"] / 25, abs=0.05)
        assert f"{name}.mp4: " in proc.stderr
    assert "audio 120 ms late (-3 frames at 25 fps)" in proc.stderr
    assert "audio 200 ms early (+5 frames at 25 fps)" in proc.stderr


def test_adelay_120ms_moves_audio_delay_by_plus_120(runner_model, ffmpeg_exe, tmp_path):
    """The sign, proven on a real edit: delaying the audio makes it later by exactly that much."""
    src = tmp_path / "vr2_3s.mp4"  # 3 s measure the sign as well as 5
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr2_sync")), "-t", "3", "-c", "copy", str(src))
    delayed = tmp_path / "vr2_delayed_120ms.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-c:v", "copy", "-af", "adelay=120:all=1,atrim=end=3",
               "-c:a", "aac", str(delayed))
    report = tmp_path / "r.json"
    result = check("--face-cropped", "--model", runner_model, "--json", report, src, delayed)
    assert result.exit_code == 0, result.output
    before, after = json.loads(report.read_text())
    assert after["audio_delay_ms"] - before["audio_delay_ms"] == 120
    assert after["offset_frames"] == before["offset_frames"] - 3
    assert "audio 120 ms late (-3 frames at 25 fps)" in result.output


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, ffmpeg_exe):
    d = tmp_path_factory.mktemp("bad")
    src = str(reference_input("vr2_sync"))
    files = {
        "missing": d / "missing.mp4",
        "directory": d / "a_folder.mp4",
        "no_audio": d / "no_audio.mp4",
        "no_video": d / "no_video.m4a",
        "too_short": d / "too_short.mp4",
        "corrupt": d / "corrupt.mp4",
        "truncated": d / "truncated.mp4",
    }
    files["directory"].mkdir()
    run_ffmpeg(ffmpeg_exe, "-i", src, "-an", "-c:v", "copy", str(files["no_audio"]))
    run_ffmpeg(ffmpeg_exe, "-i", src, "-vn", "-c:a", "copy", str(files["no_video"]))
    run_ffmpeg(ffmpeg_exe, "-i", src, "-t", "0.2", "-c:v", "libx264", "-c:a", "aac", str(files["too_short"]))
    files["corrupt"].write_bytes(junk_bytes(50_000))
    data = open(src, "rb").read()
    files["truncated"].write_bytes(data[: len(data) // 2])  # moov index at the end: cut off
    return files


EXPECTED_PROBLEM = {
    "missing": "no such file",
    "directory": "is a directory",
    "no_audio": "has no audio stream",
    "no_video": "has no video stream",
    "too_short": "too short",
    "corrupt": "not a readable media file",
    "truncated": "not a readable media file",
}


@pytest.mark.parametrize("kind", list(EXPECTED_PROBLEM))
def test_bad_input_gets_one_line_naming_file_and_problem(runner_model, bad_inputs, kind):
    path = bad_inputs[kind]
    result = check("--face-cropped", "--model", runner_model, path)
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if str(path) in l]
    assert len(lines) == 1 and EXPECTED_PROBLEM[kind] in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_good_files_are_still_measured_beside_bad_ones(runner_model, bad_inputs, vr5_short, tmp_path):
    good = vr5_short
    report = tmp_path / "mixed.json"
    result = check("--face-cropped", "--model", runner_model, "--json", report,
                   bad_inputs["corrupt"], good, bad_inputs["no_audio"], bad_inputs["missing"])
    assert result.exit_code == 2
    entries = json.loads(report.read_text())
    assert [e.get("error_type") for e in entries] == ["UnreadableMedia", None, "NoAudioStream", "MediaNotFound"]
    assert entries[1]["offset_frames"] == 5
    assert "3 of 4 file(s) could not be measured" in result.stderr
    assert f"{good}: audio 200 ms early" in result.stdout


def test_json_report_is_never_half_written(runner_model, vr5_short, tmp_path):
    report = tmp_path / "r.json"
    report.write_text("previous report")
    result = check("--face-cropped", "--model", runner_model, "--json", report, vr5_short)
    assert result.exit_code == 0
    assert json.loads(report.read_text())[0]["offset_frames"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert report.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a private temp file


def test_non_224_face_crops_are_resized(runner_model, ffmpeg_exe, vr5_short, tmp_path):
    big = tmp_path / "vr5_448.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(vr5_short), "-vf", "scale=448:448:flags=lanczos",
               "-c:v", "libx264", "-crf", "16", "-c:a", "copy", str(big))
    result = check("--face-cropped", "--model", runner_model, "--json", "-", big)
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["offset_frames"] == 5


@pytest.mark.parametrize("flags", [["--reference-decode"], ["--face-cropped", "--annotate", "out.mp4"]])
def test_options_that_need_the_other_mode_say_so(runner_model, flags):
    result = check("--model", runner_model, *flags, reference_input("vr5_adv5"))
    assert result.exit_code == 2 and "--face-cropped" in result.stderr


@pytest.fixture
def empty_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("OTIO_LIPSYNC_MODEL_DIR", raising=False)
    return tmp_path / "cache" / "otio-lipsync" / "models"


def test_named_model_that_is_missing_says_how_to_get_it(empty_model_cache):
    result = check("--face-cropped", "--model", "syncnet_v2", reference_input("vr5_adv5"))
    assert result.exit_code == 2
    assert "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model" in result.stderr
    assert str(empty_model_cache / "syncnet_v2.model") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_model_file_is_one_line(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"garbage")
    result = check("--face-cropped", "--model", bad, reference_input("vr5_adv5"))
    assert result.exit_code == 2 and str(bad) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_lists_known_and_installed(empty_model_cache, stand_in_path):
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    assert "syncnet_v2" in result.output and "not installed" in result.output
    empty_model_cache.mkdir(parents=True)
    os.symlink(stand_in_path, empty_model_cache / "house_test.model")
    rows = json.loads(CliRunner().invoke(main, ["models", "--json"]).output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["house_test"]["installed"] and not by_name["syncnet_v2"]["installed"]


def test_download_from_a_local_server_then_check_by_name(empty_model_cache, stand_in_path, vr5_short):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(REFERENCE))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{stand_in_path.name}"
        result = CliRunner().invoke(main, ["models", "download", "syncnet_v2", "--url", url])
        assert result.exit_code == 0, result.output
        assert (empty_model_cache / "syncnet_v2.model").read_bytes() == stand_in_path.read_bytes()
        bad = CliRunner().invoke(main, ["models", "download", "other", "--url", url + ".missing"])
        assert bad.exit_code == 2 and "404" in bad.stderr
        assert sorted(p.name for p in empty_model_cache.iterdir()) == ["syncnet_v2.model"]
    finally:
        server.shutdown()
    result = check("--face-cropped", "--model", "syncnet_v2", "--json", "-", vr5_short)
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["model"]["name"] == "syncnet_v2"


def test_channel_picks_one_channel_of_a_multichannel_stream(runner_model, ffmpeg_exe, tmp_path):
    """Left: the clip's dialogue (audio 120 ms late); right: silence. The default mono mix and channel 0
    find the dialogue; channel 1 has nothing to sync to; a channel that does not exist is an error."""
    stereo = tmp_path / "dialogue_left.mp4"  # 4 s: 95 windows, enough for the offset (test_containers)
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_aoc_delay3")), "-t", "4", "-c:v", "copy",
               "-af", "pan=stereo|c0=c0|c1=0*c0", "-c:a", "aac", str(stereo))
    results = {}
    for channel in (None, 0, 1):
        extra = [] if channel is None else ["--channel", str(channel)]
        result = check("--face-cropped", "--model", runner_model, "--json", "-", *extra, stereo)
        assert result.exit_code == 0, result.output
        results[channel] = json.loads(result.stdout)[0]
    assert results[None]["offset_frames"] == results[0]["offset_frames"] == -3
    assert results[0]["confidence"] > 10 > 1 > results[1]["confidence"]
    missing = check("--face-cropped", "--model", runner_model, "--channel", "5", stereo)
    assert missing.exit_code == 2 and "has no audio channel 5" in missing.stderr


def test_the_cli_detects_on_the_pipelines_default_cadence():
    from otio_lipsync.cli import DETECT_EVERY
    from otio_lipsync.footage import FootageOptions

    assert DETECT_EVERY == FootageOptions().detect_every

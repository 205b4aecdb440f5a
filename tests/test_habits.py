"""First contact as a user has it: quiet output, inputs checked first, folders, refusing to overwrite,
and the examples of `--help` run as printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import clip, run_ffmpeg

RAW = "synced_mead_m030_01.mp4"  # raw footage: 854x480, one face, 3.7 s


def lipsync(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "otio_lipsync", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def short_crop(tmp_path_factory, ffmpeg_exe):
    """A face crop shorter than the 9-frame median filter (where scipy.signal.medfilt used to warn)."""
    out = tmp_path_factory.mktemp("short") / "short.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_lrs2_demo00006_01.mp4")), "-t", "0.45", str(out))
    return out


# --- quiet -------------------------------------------------------------------------------------------------

def test_check_quiet_json_leaves_stderr_empty_on_raw_footage(tmp_path):
    """No TFLite 'Created TensorFlow Lite XNNPACK delegate' line, no warnings: stderr is empty; the
    --log file has the command and that line."""
    log = tmp_path / "run.log"
    proc = lipsync("--log", log, "check", "-q", "--json", "-", clip(RAW))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    (entry,) = json.loads(proc.stdout)
    assert entry["tracks"]
    text = log.read_text()
    assert f"check -q --json - {clip(RAW)}" in text and "XNNPACK" in text


# the command as `lipsync` runs it, with a library warning raised in the middle of the analysis (the median
# filter of the framewise confidence, whose scipy version warned on short clips)
WARNING_LIBRARY = """import sys, warnings
import otio_lipsync.sync as sync
smooth = sync.median_filter
def warning_median_filter(*args):
    warnings.warn("kernel_size exceeds volume extent: the volume will be zero-padded.", UserWarning)
    return smooth(*args)
sync.median_filter = warning_median_filter
from otio_lipsync.cli import main
sys.argv[0] = "lipsync"
main()
"""


def test_third_party_warnings_only_with_verbose(short_crop, stand_in_path):
    # the stand-in (syncnet_v2's arithmetic) measures a clip this short; the house model's +-1 s search refuses it
    def run(*args):
        return subprocess.run([sys.executable, "-c", WARNING_LIBRARY, *map(str, args)], capture_output=True, text=True)

    quiet = run("check", "--face-cropped", "--model", stand_in_path, "-q", "--json", "-", short_crop)
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run("-v", "check", "--face-cropped", "--model", stand_in_path, "-q", "--json", "-", short_crop)
    assert loud.returncode == 0 and "kernel_size exceeds volume extent" in loud.stderr
    assert json.loads(loud.stdout) == json.loads(quiet.stdout)


def test_log_file_that_cannot_be_written_is_one_line(tmp_path):
    proc = lipsync("--log", tmp_path / "no" / "such" / "dir.log", "models")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--log" in proc.stderr


def test_batch_workers_are_quiet(tmp_path, ffmpeg_exe):
    media = tmp_path / "media"
    media.mkdir()
    run_ffmpeg(ffmpeg_exe, "-i", str(clip(RAW)), "-t", "3", str(media / "part.mp4"))
    proc = lipsync("batch", media, "-o", tmp_path / "qc", "--workers", "1", "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert [line.split(":")[0] for line in proc.stderr.splitlines()] == ["lipsync batch"], proc.stderr


# --- inputs checked before anything loads ------------------------------------------------------------------

def test_missing_input_is_reported_before_any_model_loads(tmp_path):
    report, log = tmp_path / "report.json", tmp_path / "run.log"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "otio_lipsync", "--log", log, "check",
                           "--json", report, tmp_path / "typo.mp4"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "ai_edge_litert" not in imported  # a typo costs no seconds
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert said == [f"{tmp_path / 'typo.mp4'}: no such file", "lipsync: 1 of 1 file(s) could not be measured"]
    assert json.loads(report.read_text())[0]["error_type"] == "MediaNotFound"
    assert f"{tmp_path / 'typo.mp4'}: no such file" in log.read_text()


# --- folders -----------------------------------------------------------------------------------------------

def test_check_takes_a_folder_recursively_as_batch_finds_files(tmp_path, ffmpeg_exe, stand_in_path):
    from otio_lipsync.batch import discover

    root = tmp_path / "footage"
    (root / "day2" / ".cache").mkdir(parents=True)
    short = ["-t", "1", "-c", "copy"]
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_lrs2_demo00001_01.mp4")), *short, str(root / "b.mp4"))
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_lrs2_demo00004_01.mp4")), *short, str(root / "day2" / "a.mov"))
    (root / "notes.txt").write_text("not media")
    (root / ".hidden.mp4").write_bytes(b"")
    proc = lipsync("check", "--face-cropped", "--model", stand_in_path, "-q", "--json", "-", root, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    found = [e["file"] for e in json.loads(proc.stdout)]
    assert found == [str(root / "b.mp4"), str(root / "day2" / "a.mov")]
    assert [os.path.abspath(f) for f in found] == [i.path for i in discover([str(root)])]


def test_check_on_a_folder_without_media_is_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = lipsync("check", empty)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0].startswith(f"{empty}: is a directory without media files")


# --- lipsync fix: an existing OUT is refused without -f ------------------------------------------------------

def test_fix_refuses_an_existing_output_unless_forced(tmp_path):
    from click.testing import CliRunner

    from otio_lipsync.cli import main

    from .conftest import reference_input

    src, out = reference_input("vr2_sync"), tmp_path / "fixed.mp4"
    out.write_bytes(b"an earlier render")
    args = ["fix", str(src), "-o", str(out), "--delay-ms", "40", "--no-verify"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2
    assert refused.stderr == f"lipsync: {out}: exists; refusing to overwrite it without -f/--force\n"
    assert out.read_bytes() == b"an earlier render"
    dry = CliRunner().invoke(main, [*args, "-n", "-f"])
    assert dry.exit_code == 0 and "-itsoffset" in dry.stdout
    assert out.read_bytes() == b"an earlier render"
    forced = CliRunner().invoke(main, [*args, "-f"])
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != b"an earlier render" and out.stat().st_size > 10_000


# --- the examples of --help, run as printed ---------------------------------------------------------------

def _examples(help_text: str) -> list[list[str]]:
    import shlex

    lines, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "Examples:":
            inside = True
        elif inside and line.strip().startswith("lipsync "):
            lines.append(shlex.split(line.split("|")[0], comments=True))
        elif inside:
            inside = False
    return lines


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory, ffmpeg_exe):
    """The files the examples name: interview.mp4 raw footage (in sync), footage/ a folder of it, crop.mp4
    a face crop; 2 s each."""
    d = tmp_path_factory.mktemp("examples")
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_vr_man_map_01.mp4")), "-t", "3", str(d / "interview.mp4"))
    (d / "footage").mkdir()
    (d / "footage" / "take1.mp4").write_bytes((d / "interview.mp4").read_bytes())
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_lrs2_demo00001_01.mp4")), "-t", "3", str(d / "crop.mp4"))
    return d


@pytest.mark.parametrize("command", [[], ["check"]], ids=["lipsync", "lipsync check"])
def test_help_examples_start_with_raw_footage_and_each_one_runs(example_dir, monkeypatch, command):
    from click.testing import CliRunner

    from otio_lipsync.cli import main

    monkeypatch.chdir(example_dir)
    examples = _examples(CliRunner().invoke(main, [*command, "--help"]).output)
    assert len(examples) >= 4
    assert "--face-cropped" not in examples[0] + examples[1]  # copied onto raw footage it would mislead
    for example in examples:
        for made in ("fixed.mp4", "report.json"):
            (example_dir / made).unlink(missing_ok=True)
        result = CliRunner().invoke(main, example[1:])
        assert result.exit_code == 0, (example, result.output)

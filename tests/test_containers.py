"""Containers and codecs of post-production: the same clip as mov/ProRes, mp4/H.265, MXF (MPEG-2 + PCM,
OP1a), mkv and avi (MJPEG + PCM). `check` must measure each as the mp4 source, and `fix` must either write a
corrected file with the video bit-exact or refuse with one clear line.

The clip is the reference's `hdtf_aoc_delay3` (audio 120 ms late), which the stand-in weights know, so its
offsets are meaningful here; made with the ffmpeg `fix` uses (imageio-ffmpeg's unless $FFMPEG_PATH).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main
from otio_lipsync.ffmpeg_filter.fix import video_hashes

from .conftest import reference_input, run_ffmpeg

SECONDS = "2.4"  # 55 windows: the stand-in finds -3 (confidence ~14) from 15; the matrix is 16 analyses
VARIANTS = {  # name -> ffmpeg output options
    "prores.mov": ["-c:v", "prores_ks", "-profile:v", "0", "-c:a", "pcm_s16le"],
    "h265.mp4": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1",
                 "-c:a", "aac"],
    "mpeg2.mxf": ["-c:v", "mpeg2video", "-q:v", "2", "-c:a", "pcm_s16le", "-ar", "48000", "-f", "mxf"],  # OP1a
    "h264.mkv": ["-c", "copy"],
    "mjpeg.avi": ["-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le"],
}
REFUSED = {("mpeg2.mxf", "copy"): "MXF cannot record a start offset for copied audio"}


def run(command, *args):
    return CliRunner().invoke(main, [command, *map(str, args)], catch_exceptions=False)


def encoders(ffmpeg_exe) -> str:
    return subprocess.run([ffmpeg_exe, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, ffmpeg_exe):
    d = tmp_path_factory.mktemp("containers")
    source = d / "source.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_aoc_delay3")), "-t", SECONDS, "-c", "copy", str(source))
    available = encoders(ffmpeg_exe)
    files, missing = {}, {}
    for name, options in VARIANTS.items():
        codec = options[options.index("-c:v") + 1] if "-c:v" in options else None
        if codec and f" {codec} " not in available:
            missing[name] = f"this ffmpeg build ({ffmpeg_exe}) has no {codec} encoder"
            continue
        files[name] = d / name
        run_ffmpeg(ffmpeg_exe, "-i", str(source), *options, str(files[name]))
    return source, files, missing


def variant(matrix, name):
    _, files, missing = matrix
    if name in missing:
        pytest.skip(missing[name])
    return files[name]


def test_check_measures_every_container_as_the_mp4_source(stand_in_path, matrix):
    source, files, missing = matrix
    names = list(files)
    result = run("check", "--face-cropped", "--model", stand_in_path, "--json", "-", source, *files.values())
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)
    expected = reports[0]["offset_frames"]
    assert expected == -3  # the source: audio 120 ms late
    for name, report in zip(names, reports[1:]):
        assert abs(report["offset_frames"] - expected) <= 1, (name, report["offset_frames"])
        assert report["confidence"] > 5, name
    if missing:
        pytest.skip("; ".join(missing.values()))


@pytest.mark.parametrize("method", ["copy", "reencode"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_fix_writes_a_bit_exact_video_or_refuses_clearly(stand_in_path, matrix, tmp_path, name, method):
    src = variant(matrix, name)
    out = tmp_path / f"fixed_{name}"
    result = run("fix", src, "-o", out, "--method", method, "--delay-ms", "120", "--no-verify")
    if (name, method) in REFUSED:
        assert result.exit_code == 2
        lines = [line for line in result.stderr.splitlines() if str(src) in line]
        assert len(lines) == 1 and REFUSED[name, method] in lines[0], result.stderr
        assert "--method reencode" in lines[0]
        assert not out.exists() and list(tmp_path.iterdir()) == []
        return
    assert result.exit_code == 0, result.output
    assert video_hashes(str(out)) == video_hashes(str(src))
    # the shift really is in the file: the stand-in knows this clip and now finds it in sync
    check = run("check", "--face-cropped", "--model", stand_in_path, "--json", "-", out)
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)[0]["offset_frames"] == 0, check.stdout


def test_reencode_keeps_pcm_audio_pcm(matrix, tmp_path, ffmpeg_exe):
    """MXF, MOV and AVI masters carry PCM; a corrected copy must not turn it into AAC (MXF cannot hold AAC)."""
    from otio_lipsync import media

    for name in ("mpeg2.mxf", "prores.mov", "mjpeg.avi"):
        src = variant(matrix, name)
        out = tmp_path / f"fixed_{name}"
        result = run("fix", src, "-o", out, "--method", "reencode", "--delay-ms", "-40", "--no-verify")
        assert result.exit_code == 0, result.output
        assert media.probe(str(out)).audio_codec == media.probe(str(src)).audio_codec == "pcm_s16le"

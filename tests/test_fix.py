"""`lipsync fix`: corrected copies with the real ffmpeg, the video bit-exact, nothing half-written.

Shifted copies are made with adelay/atrim (not -itsoffset). The stand-in weights know the reference
fixtures, so residuals are asserted on those; on other footage they wait for the house model.
"""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import main
from otio_lipsync.ffmpeg_filter.fix import video_hashes

from .conftest import junk_bytes, reference_input, run_ffmpeg


def fix(*args):
    return CliRunner().invoke(main, ["fix", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def late_120(tmp_path_factory, ffmpeg_exe):
    """3 s of vr2_sync, audio 120 ms late: every auto fix measures it twice (the delay, then the residual)."""
    path = tmp_path_factory.mktemp("fix") / "vr2_late_120ms.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr2_sync")), "-t", "3", "-c:v", "copy",
               "-af", "adelay=120:all=1,atrim=end=3", "-c:a", "aac", str(path))
    return path


@pytest.mark.parametrize("method", ["copy", "reencode"])
def test_auto_fix_leaves_no_residual_and_the_video_untouched(stand_in_path, late_120, tmp_path, method):
    out = tmp_path / f"fixed_{method}.mp4"
    result = fix(late_120, "-o", out, "--method", method, "--face-cropped", "--model", stand_in_path)
    assert result.exit_code == 0, result.output
    assert "audio 120 ms late" in result.stderr
    assert f"{out}: residual +0 ms (+0 frames)" in result.stdout
    assert video_hashes(str(out)) == video_hashes(str(late_120))
    # durations equal within one AAC frame (1024 samples)
    assert abs(media.probe(str(out)).duration_s - media.probe(str(late_120)).duration_s) <= 1024 / 16000


def test_audio_that_leads_is_moved_later(stand_in_path, tmp_path):
    src = reference_input("vr5_adv5")  # audio advanced 200 ms with atrim
    out = tmp_path / "vr5_fixed.mp4"
    result = fix(src, "-o", out, "--method", "reencode", "--face-cropped", "--model", stand_in_path)
    assert result.exit_code == 0, result.output
    assert "audio moved 200 ms later" in result.stdout and "residual +0 ms" in result.stdout
    assert video_hashes(str(out)) == video_hashes(str(src))


def test_dry_run_prints_the_command_and_writes_nothing(late_120, tmp_path):
    out = tmp_path / "never.mp4"
    result = fix(late_120, "-o", out, "--delay-ms", "120", "--dry-run")
    assert result.exit_code == 0
    cmd = shlex.split(result.stdout.strip())
    assert "-itsoffset" in cmd and cmd[cmd.index("-itsoffset") + 1] == "-0.120000" and cmd[-1] == str(out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("delay_ms", [-200, 200])
def test_copy_keeps_the_duration_when_the_audio_moves_later(tmp_path, delay_ms):
    """Copy used to leave audio moved later running past the end (OUT longer by the shift); it is cut at
    IN's duration, within one AAC frame. Moved earlier (video longer than the audio here) nothing changes."""
    src = reference_input("vr2_sync")
    out = tmp_path / "moved.mp4"
    assert fix(src, "-o", out, "--delay-ms", delay_ms, "--method", "copy", "--no-verify").exit_code == 0
    before, after = media.probe(str(src)), media.probe(str(out))
    assert abs(after.duration_s - before.duration_s) <= 1024 / before.audio_rate, (before, after)
    assert video_hashes(str(out)) == video_hashes(str(src))


def test_subtitles_and_metadata_are_kept(ffmpeg_exe, tmp_path):
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:02,000\nhello\n")
    src = tmp_path / "with_subs.mkv"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr2_sync")), "-i", str(srt), "-map", "0", "-map", "1",
               "-c", "copy", "-metadata", "title=Reel 3", str(src))
    for method in ("copy", "reencode"):
        out = tmp_path / f"out_{method}.mkv"
        assert fix(src, "-o", out, "--delay-ms", "80", "--method", method, "--no-verify").exit_code == 0
        import av

        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]
            assert c.metadata.get("title") == "Reel 3"
        assert video_hashes(str(out)) == video_hashes(str(src))


@pytest.mark.parametrize("case", ["same_file", "unwritable", "no_audio", "corrupt", "ffmpeg_missing"])
def test_bad_fixes_are_refused_cleanly(ffmpeg_exe, late_120, tmp_path, monkeypatch, case):
    src, out = late_120, tmp_path / "out.mp4"
    if case == "same_file":
        src = tmp_path / "in.mp4"
        src.write_bytes(late_120.read_bytes())
        out = src
    elif case == "unwritable":
        out = tmp_path / "missing_dir" / "out.mp4"
    elif case == "no_audio":
        src = tmp_path / "silent.mp4"
        run_ffmpeg(ffmpeg_exe, "-i", str(late_120), "-an", "-c:v", "copy", str(src))
    elif case == "corrupt":
        src = tmp_path / "corrupt.mp4"
        src.write_bytes(junk_bytes(20000))
    elif case == "ffmpeg_missing":
        monkeypatch.setenv("FFMPEG_PATH", str(tmp_path / "no-ffmpeg-here"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    result = fix(src, "-o", out, "--delay-ms", "120", "--no-verify")
    assert result.exit_code == 2
    expected = {"same_file": "refusing to overwrite", "unwritable": "cannot write into",
                "no_audio": "has no audio stream", "corrupt": "not a readable media file",
                "ffmpeg_missing": "cannot run ffmpeg"}[case]
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before  # the input untouched, nothing half-written left behind


def test_fix_as_a_filter_in_a_pipe(stand_in_path, ffmpeg_exe, late_120, tmp_path):
    """ffmpeg ... -f matroska - | lipsync fix - -o - > fixed.mkv: stdout carries only the video file."""
    import subprocess
    import sys

    feed = subprocess.Popen([ffmpeg_exe, "-nostdin", "-v", "error", "-i", str(late_120), "-c", "copy", "-f",
                             "matroska", "-"], stdout=subprocess.PIPE)
    out = tmp_path / "piped.mkv"
    with open(out, "wb") as sink:
        proc = subprocess.run([sys.executable, "-m", "otio_lipsync", "fix", "-", "-o", "-", "--face-cropped",
                               "--model", str(stand_in_path)], stdin=feed.stdout, stdout=sink,
                              stderr=subprocess.PIPE, text=True)
    feed.wait()
    assert proc.returncode == 0, proc.stderr
    assert "-: residual +0 ms (+0 frames)" in proc.stderr
    assert media.probe(str(out)).container == "matroska,webm"
    assert video_hashes(str(out)) == video_hashes(str(late_120))


def test_channel_measures_the_dialogue_channel_and_shifts_the_whole_stream(stand_in_path, ffmpeg_exe, tmp_path):
    """Left: the clip's dialogue, 120 ms late; right: a 440 Hz tone that hides it in the mono mix.
    --channel 0 measures the dialogue alone; the fix shifts both channels; the residual is on channel 0."""
    src = tmp_path / "dialogue_left_tone_right.mp4"
    # 4 s: 95 windows, enough for the stand-in's offset; fix measures it twice (auto, then the residual)
    run_ffmpeg(ffmpeg_exe, "-t", "4", "-i", str(reference_input("hdtf_aoc_delay3")), "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=16000:duration=4", "-filter_complex",
               "[0:a]aresample=16000[d];[1:a]volume=4[t];[d][t]join=inputs=2:channel_layout=stereo[a]",
               "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "aac", str(src))
    out = tmp_path / "fixed.mp4"
    result = fix(src, "-o", out, "--channel", "0", "--method", "reencode", "--face-cropped", "--model", stand_in_path)
    assert result.exit_code == 0, result.output
    assert "audio 120 ms late" in result.stderr
    assert "audio moved 120 ms earlier" in result.stdout and f"{out}: residual +0 ms" in result.stdout
    assert media.probe(str(out)).audio_channels == 2
    assert video_hashes(str(out)) == video_hashes(str(src))
    missing = fix(src, "-o", tmp_path / "never.mp4", "--channel", "5", "--face-cropped", "--model", stand_in_path)
    assert missing.exit_code == 2 and "has no audio channel 5" in missing.stderr
    assert not (tmp_path / "never.mp4").exists()

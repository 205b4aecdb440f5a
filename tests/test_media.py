"""Media stage on real files: exact frames, 25-fps resampling by presentation time, start times."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from otio_lipsync import media
from otio_lipsync.analysis import analyse_file
from otio_lipsync.errors import UnreadableMedia

from .conftest import GOLDEN_NAMES, clip, reference_input, run_ffmpeg


def ffmpeg_frames(exe, path, width, height, vf=None):
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path)]
    if vf:
        cmd += ["-vf", vf]
    out = subprocess.run(cmd + ["-f", "rawvideo", "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_frames_identical_to_ffmpeg_rawvideo_bgr24(ffmpeg_exe, name):
    path = reference_input(name)
    frames, _ = media.read_all(str(path))
    np.testing.assert_array_equal(frames, ffmpeg_frames(ffmpeg_exe, path, 224, 224))


def _assert_same_as_fps_filter(ffmpeg_exe, path):
    info = media.probe(str(path))
    out = {}
    ours, _ = media.read_all(str(path), info_out=out)
    # a frame the resampling drops is never converted (from 50 fps, every 2nd): only the frames shown are
    assert out["stats"]["frames_converted"] <= out["stats"]["frames_25fps"] == len(ours)
    # ffmpeg's fps filter on the video's own timeline (setpts: origin at the first frame, as ours)
    theirs = ffmpeg_frames(ffmpeg_exe, path, info.width, info.height, vf="setpts=PTS-STARTPTS,fps=25")
    assert abs(len(ours) - len(theirs)) <= 1  # the last frame's end is rounded differently
    n = min(len(ours), len(theirs))
    assert n >= 25
    mismatched = [i for i in range(n) if not np.array_equal(ours[i], theirs[i])]
    assert mismatched == []


@pytest.mark.parametrize("name", [
    "synced_vexpress_aoc_01.mp4",  # 29.97
    "synced_vr_woman_blue_01.mp4",  # 30
    "synced_vr_man_suit_01.mp4",  # variable rate, ~22 fps average, video starts 33 ms late
    "generated_sadtalker_video_01.mp4",  # 50
    "synced_mead_m030_01.mp4",  # 30, 854x480
])
def test_resampling_to_25fps_matches_ffmpeg_fps_filter(ffmpeg_exe, name):
    _assert_same_as_fps_filter(ffmpeg_exe, clip(name))


@pytest.mark.parametrize("rate", ["24000/1001", "24", "60000/1001"])
def test_resampling_of_film_and_high_rates(ffmpeg_exe, tmp_path, rate):
    src = tmp_path / "rate.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr2_sync")), "-vf", f"fps={rate}", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "copy", str(src))
    assert media.probe(str(src)).fps == pytest.approx(eval(rate), rel=1e-3)
    _assert_same_as_fps_filter(ffmpeg_exe, src)


def test_audio_is_16k_mono_from_44k1_stereo(golden):
    info = media.probe(str(reference_input("vr4_30fps")))
    assert (info.audio_rate, info.audio_channels) == (44100, 2)
    _, audio = media.read_all(str(reference_input("vr4_30fps")))
    g = golden("vr4_30fps")
    assert audio.dtype == np.int16 and len(audio) == len(g["audio"])
    assert np.abs(audio.astype(int) - g["audio"]).max() <= 1  # swresample's downmix, as `ffmpeg -ac 1`


def test_probe_reports_stream_start_times():
    info = media.probe(str(clip("multi_face_recognition_hamilton_01.mp4")))
    assert info.video_start_s == pytest.approx(0.852, abs=0.002)
    assert info.audio_start_s == pytest.approx(0.008, abs=0.002)
    vfr = media.probe(str(clip("synced_vr_man_suit_01.mp4")))
    assert vfr.variable_frame_rate and vfr.video_start_s == pytest.approx(0.033, abs=0.001)


@pytest.fixture(scope="module")
def kh_4s(ffmpeg_exe, tmp_path_factory):
    """The first 4 s of hdtf_kh_sync (in sync, 95 windows): the start-time tests need an offset, not length."""
    path = tmp_path_factory.mktemp("media") / "hdtf_kh_sync_4s.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_kh_sync")), "-t", "4", "-c", "copy", str(path))
    return path


def test_video_starting_after_audio_is_measured_as_it_plays(engine, ffmpeg_exe, tmp_path, kh_4s):
    """Video timestamps start 0.84 s after the audio, whose first 0.84 s is silence: a player shows
    them in sync. Ignoring start times would make the audio look 840 ms late."""
    src = kh_4s
    late = tmp_path / "video_late.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-itsoffset", "0.84", "-i", str(src), "-map", "1:v", "-map", "0:a",
               "-c:v", "copy", "-af", "adelay=840:all=1", "-c:a", "aac", str(late))
    info = media.probe(str(late))
    assert info.video_start_s == pytest.approx(0.84, abs=0.01) and info.audio_start_s == pytest.approx(0.0, abs=0.03)
    analysis, _ = analyse_file(str(late), engine)
    baseline, _ = analyse_file(str(src), engine)
    assert analysis.offset_frames == baseline.offset_frames == 0
    assert analysis.confidence > 10


def test_audio_starting_after_video_is_measured_as_it_plays(engine, ffmpeg_exe, tmp_path, kh_4s):
    src = kh_4s
    late = tmp_path / "audio_late.mp4"
    # atrim keeps the timestamps: the first kept sample is stamped 0.2 s, where it belongs
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-c:v", "copy", "-af", "atrim=start=0.2", "-c:a", "aac", str(late))
    info = media.probe(str(late))
    # the AAC encoder stamps its 1024-sample frame grid: the stream starts at 0.136 s, real audio from there
    assert info.video_start_s == 0 and info.audio_start_s > 0.1
    analysis, _ = analyse_file(str(late), engine)
    assert analysis.offset_frames == 0 and analysis.confidence > 10


def test_truncated_file_with_index_up_front_is_reported(ffmpeg_exe, tmp_path):
    fast = tmp_path / "faststart.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_kh_sync")), "-c", "copy", "-movflags", "+faststart",
               str(fast))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    with pytest.raises(UnreadableMedia, match="truncated"):
        media.read_all(str(cut))


def test_memory_holds_only_what_later_distances_need(engine, golden):
    """The stream keeps embeddings for about one batch plus the +-vshift search, not the whole clip."""
    g = golden("hdtf_kh_sync")
    frames, _ = media.read_all(str(reference_input("hdtf_kh_sync")))
    stream = engine.stream()
    held = []
    for start in range(0, len(frames), 10):
        stream.feed_audio(g["audio"][start * 640:(start + 10) * 640])
        stream.feed_video(frames[start:start + 10])
        held.append(sum(map(len, stream._lip)) + sum(map(len, stream._aud)))
    limit = 2 * (4 * engine.batch_size + 2 * engine.vshift + 10)
    assert max(held) <= limit < 2 * len(frames)
    assert stream.finish().offset_frames == 0


def _decoded_pictures(path) -> list:
    return [image for kind, chunk in media.decode(str(path), pictures=True) if kind == "video" for image in chunk]


def test_previews_left_to_the_consumer_are_the_decoders_own(ffmpeg_exe, tmp_path):
    """When the decoding thread leaves a frame's preview to the consumer (defer_preview), the consumer makes the
    same pixels from the Picture; frames the decoder scaled (max_pixels) keep their previews from the source."""
    src = tmp_path / "clip.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_hdtf_katie_hill_01.mp4")), "-t", "1", "-vf", "scale=640:360",
               "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(src))

    def decoded(**kwargs):
        previews, pictures = [], []
        for kind, chunk in media.decode(str(src), pictures=True, preview=320, **kwargs):
            (previews if kind == "preview" else pictures if kind == "video" else []).extend(chunk)
        return previews, pictures

    own, _ = decoded()
    left, pictures = decoded(defer_preview=lambda: True)
    assert len(own) == len(left) == len(pictures) >= 25 and all(p is None for p in left)
    for preview, picture in zip(own, pictures):
        np.testing.assert_array_equal(picture.preview(320), preview)
    scaled, _ = decoded(defer_preview=lambda: True, max_pixels=320 * 180)
    assert all(p is not None for p in scaled)  # a scaled Picture no longer holds the source frame


@pytest.mark.parametrize("tags", [[], ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]],
                         ids=["untagged", "bt709"])
def test_pictures_hold_their_frames_and_crop_like_the_bgr_frames(ffmpeg_exe, tmp_path, tags):
    """The raw-footage path keeps frames in their YUV planes and converts only the crops: the same frames as
    the BGR path, held safely to the end of the decode, and crops within about a level of cropping BGR."""
    from otio_lipsync.faces.tracks import PAD_VALUE, crop_face

    src = tmp_path / "clip.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_hdtf_katie_hill_01.mp4")), "-t", "2", "-c:v", "libx264",
               "-preset", "ultrafast", *tags, "-c:a", "copy", str(src))
    frames, _ = media.read_all(str(src))
    pictures = _decoded_pictures(src)
    assert len(pictures) == len(frames) and all(isinstance(p, media.Picture) for p in pictures)
    for picture, frame in zip(pictures, frames):  # none overwritten by later frames while held
        assert picture.shape == frame.shape
        np.testing.assert_array_equal(picture.bgr(), frame)
    rng = np.random.default_rng(0)
    diffs = []
    for picture, frame in zip(pictures[::5], frames[::5]):
        cx, cy, s = rng.uniform(150, 360), rng.uniform(120, 300), rng.uniform(40, 110)
        diffs.append(crop_face(picture, cx, cy, s).astype(int) - crop_face(frame, cx, cy, s))
    diffs = np.stack(diffs)
    bias = np.abs(diffs.mean(axis=(0, 1, 2)))  # per channel: the colour matrix is the one swscale used
    assert np.abs(diffs).mean() < 1.0 and np.percentile(np.abs(diffs), 99) <= 4 and bias.max() < 0.5, bias
    corner = crop_face(pictures[0], 5.0, 5.0, 60.0)  # off the frame: the reference's grey, exactly
    assert corner.shape == (224, 224, 3) and (corner[:20, :20] == PAD_VALUE).all()


@pytest.mark.parametrize("pix_fmt", ["yuvj420p", "yuv444p"])
def test_frames_pictures_cannot_hold_come_as_bgr(ffmpeg_exe, tmp_path, pix_fmt):
    """Full range and other layouts take swscale's conversion, as before: the same frames either way."""
    src = tmp_path / f"{pix_fmt}.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_kh_sync")), "-t", "1", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", pix_fmt, "-c:a", "copy", str(src))
    frames, _ = media.read_all(str(src))
    images = _decoded_pictures(src)
    assert all(isinstance(image, np.ndarray) for image in images)
    np.testing.assert_array_equal(np.stack(images), frames)


def test_frames_over_max_pixels_are_held_scaled_in_their_planes_and_the_previews_stay_the_sources(ffmpeg_exe,
                                                                                                     tmp_path):
    """The raw-footage path bounds the frames it holds (4K and up, footage.TRACK_PIXELS): the decoding thread
    scales them in their YUV planes, colour tags kept, within about a level of scaling them to BGR. The detector's
    previews are still made from the source frames: bounding what is held must not move a detection."""
    src = tmp_path / "bt709.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_hdtf_katie_hill_01.mp4")), "-t", "1", "-c:v", "libx264",
               "-preset", "ultrafast", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
               "-c:a", "copy", str(src))
    info = media.probe(str(src))
    max_pixels = info.width * info.height // 4

    def decoded(**kwargs):
        out, previews, images = {}, [], []
        for kind, chunk in media.decode(str(src), pictures=True, preview=320, info_out=out, **kwargs):
            (previews if kind == "preview" else images if kind == "video" else []).extend(chunk)
        return out, previews, images

    out, previews, pictures = decoded(max_pixels=max_pixels)
    _, source_previews, _ = decoded()
    scaled_bgr, _ = media.read_all(str(src), size=pictures[0].shape[1::-1])
    assert abs(out["scale"] - 0.5) < 0.01 and all(isinstance(p, media.Picture) for p in pictures)
    assert pictures[0].shape[0] * pictures[0].shape[1] <= max_pixels and pictures[0].matrix is media._BT709
    np.testing.assert_array_equal(np.stack(previews), np.stack(source_previews))
    # measured: mean 1.27, blue and red ~1.3 levels low (swscale's 8-bit chroma planes round down), p99 6
    diffs = np.stack([p.bgr().astype(int) - f for p, f in zip(pictures, scaled_bgr)])
    bias = np.abs(diffs.mean(axis=(0, 1, 2)))
    assert np.abs(diffs).mean() < 1.5 and bias.max() < 2.0 and np.percentile(np.abs(diffs), 99) <= 8, bias

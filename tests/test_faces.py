"""Faces stage on real footage: detection offline, tracks, cuts, crops, the raw-footage pipeline.

The stand-in weights know only the reference fixtures, so nothing here asserts *who* speaks: until a
model that knows lips ships (the lipsync-train issue), speaker tests check geometry and mechanics.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import main
from otio_lipsync.faces.detectors import BlazeFaceDetector, Detection, make_detector
from otio_lipsync.faces.tracks import EMIT_BATCH, MEDIAN_FRAMES, PAD_VALUE, FaceTracker, TrackOptions, crop_face
from otio_lipsync.footage import FootageScan

from .conftest import CLIPS, clip, run_ffmpeg


@pytest.fixture(scope="module")
def detector():
    return make_detector("blazeface")


def scan(path, detector, **kwargs):
    s = FootageScan(str(path), detector=detector, **kwargs)
    for _ in s:
        pass
    return s


def synced_single_speaker_clips():
    catalog = CLIPS / "catalog.tsv"
    if not catalog.exists():
        return []
    with open(catalog) as f:
        return [row["file"] for row in csv.DictReader(f, delimiter="\t") if row["group"] == "synced"]


def test_blazeface_ships_offline_and_finds_a_face(detector):
    assert isinstance(detector, BlazeFaceDetector) and detector.model_path.is_file()
    from otio_lipsync import media

    frames, _ = media.read_all(str(clip("synced_mead_m030_01.mp4")))
    found = detector.detect(np.ascontiguousarray(frames[10][:, :, ::-1]))
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    assert 250 < (x0 + x1) / 2 < 600 and 100 < (y0 + y1) / 2 < 400 and 120 < x1 - x0 < 350
    assert found[0].keypoints.shape == (6, 2)


@pytest.mark.parametrize("name", synced_single_speaker_clips() or ["catalog.tsv missing"])
def test_single_speaker_clip_has_one_main_track(detector, name):
    s = scan(clip(name), detector)
    tracks = s.kept_tracks()
    assert tracks, f"{name}: no track"
    main_track = max(tracks, key=lambda t: t.last - t.first)
    coverage = (main_track.last - main_track.first + 1) / s.num_frames
    assert coverage >= 0.9, f"{name}: main track covers {coverage:.0%} of {s.num_frames} frames"


def test_split_screen_interview_has_a_track_per_face(detector):
    s = scan(clip("multi_visualvoice_interview_01.mp4"), detector)
    tracks = s.kept_tracks()
    centres = sorted({round(float(np.median([(b[0] + b[2]) / 2 for b in t.boxes])) / 100) for t in tracks})
    assert len(tracks) >= 2 and len(centres) >= 2  # two faces at different places


def test_hstack_composite_gives_two_tracks_side_by_side(detector, ffmpeg_exe, tmp_path):
    """Geometry and mechanics only (see module docstring): one track per half, both all along."""
    out = tmp_path / "two.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_mead_m030_01.mp4")), "-i", str(clip("synced_hdtf_aoc_01.mp4")),
               "-filter_complex", "[0:v]scale=480:480,fps=25,setsar=1[a];[1:v]scale=480:480,fps=25,setsar=1[b];"
               "[a][b]hstack,trim=duration=3.5[v]", "-map", "[v]", "-map", "0:a", "-t", "3.5", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", str(out))
    s = scan(out, detector)
    tracks = sorted(s.kept_tracks(), key=lambda t: t.boxes[0][0])
    assert len(tracks) == 2
    left, right = ([float(np.median([(b[0] + b[2]) / 2 for b in t.boxes])) for t in tracks])
    assert left < 480 < right
    for t in tracks:
        assert (t.last - t.first + 1) / s.num_frames >= 0.9


def test_a_cut_ends_every_track(detector, ffmpeg_exe, tmp_path):
    out = tmp_path / "cut.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_hdtf_aoc_01.mp4")), "-i", str(clip("synced_dfrf_cnn_anchor_01.mp4")),
               "-filter_complex", "[0:v]trim=duration=3,setpts=PTS-STARTPTS,scale=512:512[a];"
               "[1:v]trim=duration=3,setpts=PTS-STARTPTS,scale=512:512[b];"
               "[0:a]atrim=duration=3,asetpts=PTS-STARTPTS[x];[1:a]atrim=duration=3,asetpts=PTS-STARTPTS[y];"
               "[a][x][b][y]concat=n=2:v=1:a=1[v][au]", "-map", "[v]", "-map", "[au]", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", str(out))
    s = scan(out, detector)
    assert s.shots.cuts == [75]
    tracks = s.kept_tracks()
    assert len(tracks) >= 2
    assert all(t.last < 75 or t.first >= 75 for t in tracks)
    assert any(t.last >= 70 and t.last < 75 for t in tracks)
    # the detector runs every 2nd frame, and on a likely cut: the new shot is tracked from its first frame (75, odd)
    assert any(t.first == 75 for t in tracks), [(t.first, t.last) for t in tracks]


def test_a_small_net_runs_on_one_thread_beside_the_decoder_and_threads_are_put_back(detector, stand_in_path):
    """The house model's short ops lost more to a second torch thread's hand-offs than they gained, while the
    decoder needs the other core; SyncNet keeps every thread (silero_vad's import had set one for the whole
    process), and the caller's count is there again afterwards."""
    import torch

    from otio_lipsync.pipeline import make_engine, measure

    before = torch.get_num_threads()
    path = str(clip("synced_mead_m030_01.mp4"))

    def threads_seen(engine) -> set[int]:
        seen, forward = set(), engine.fast.forward_lip_runs  # the lip network of both kinds of model
        engine.fast.forward_lip_runs = lambda *a, **k: (seen.add(torch.get_num_threads()), forward(*a, **k))[1]
        measure(path, engine, detector=detector, duration_s=3.0)
        assert torch.get_num_threads() == before
        return seen

    assert threads_seen(make_engine(None)) == {1}
    assert threads_seen(make_engine(str(stand_in_path))) == {before}


def test_shot_detector_cuts_on_a_peak_not_on_sustained_motion():
    """A cut is one sharp change among calm frames (AdaptiveDetector's rule); a frame-filling face
    turning fast changes every frame by as much as a cut and must not end its track (the
    synced_vox2ss_id00100_02 clip did: its track was split at a head turn)."""
    from otio_lipsync.faces.shots import ShotDetector

    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 255, (90, 160, 3), dtype=np.uint8) for _ in range(2))
    static = ShotDetector()
    decided = [d for i in range(40) for d in static.push(i, a if i < 20 else b)] + static.finish()
    assert [i for i, cut in decided] == list(range(40)) and static.cuts == [20]
    assert [i for i, cut in decided if cut] == [20]
    moving = ShotDetector()
    for i in range(40):  # every frame as different from the last as a cut is
        moving.push(i, rng.integers(0, 255, (90, 160, 3), dtype=np.uint8))
    moving.finish()
    assert min(moving.scores) >= moving.threshold and moving.cuts == []


def test_wide_shot_small_faces_are_found_on_tiles(detector):
    """1080p debate wide shot: the whole-frame pass finds no usable face; tiles give both podium speakers a
    track (the moderator has his back to the camera)."""
    from otio_lipsync.footage import FootageOptions

    path = clip("multi_avobjects_trump_biden_debate_01.mp4")
    assert not scan(path, detector, options=FootageOptions(tiles="off"), duration_s=4.0).kept_tracks()
    s = scan(path, detector, options=FootageOptions(tiles="auto"), duration_s=4.0)
    centres = [float(np.median([(b[0] + b[2]) / 2 for b in t.boxes])) for t in s.kept_tracks()]
    assert any(c < 400 for c in centres) and any(c > 1500 for c in centres), centres
    assert 0 < s.tiled_frames < s.num_frames  # tiles only where they are needed


def test_crop_geometry_is_the_reference_one():
    """Pad with grey 110, crop [cy-s, cy+s(1+2cs)) x [cx-s(1+cs), cx+s(1+cs)), resize to 224."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    cx, cy, s, cs = 300.0, 150.0, 60.0, 0.4
    bsi = int(s * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = cy + bsi, cx + bsi
    face = padded[int(my - s):int(my + s * (1 + 2 * cs)), int(mx - s * (1 + cs)):int(mx + s * (1 + cs))]
    expected = torch.nn.functional.interpolate(torch.from_numpy(face).permute(2, 0, 1)[None].float(),
                                               size=(224, 224), mode="bilinear", align_corners=False)
    expected = expected[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(crop_face(frame, cx, cy, s, cs), expected)
    # a face at the corner: the part outside the frame is the reference's grey
    corner = crop_face(frame, 5.0, 5.0, 60.0, cs)
    assert (corner[:20, :20] == PAD_VALUE).all() and corner.shape == (224, 224, 3)


def test_crops_leave_as_soon_as_their_geometry_is_final_and_equal_the_whole_tracks():
    """A crop's box is median-smoothed over its neighbours' (interpolated) detections: it is final once the track
    has a detection MEDIAN_FRAMES // 2 frames later. Crops go out then, so the tracker holds ~10 full frames
    while a face is found, not its whole look-ahead (~36: memory, and frames that went cold before their crop),
    and every crop equals the one the finished track's geometry gives, missed detections included."""
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (180, 320, 3), dtype=np.uint8) for _ in range(140)]
    detected = [i for i in range(0, 100, 2) if not 40 <= i < 56]  # every 2nd frame, 16 missed, then gone
    tracker = FaceTracker(TrackOptions(min_track_frames=10))
    events, held = [], {}
    for i, frame in enumerate(frames):
        x = 80 + 0.7 * i + 4 * np.sin(i / 3)  # a face that moves
        found = [Detection(np.array([x, 40.0, x + 60, 110.0]), 0.9)] if i in detected else None
        events += tracker.push(i, frame, found)
        held[i] = len(tracker._frames)
    events += tracker.finish()
    (track,) = tracker.finished
    frame_ids, params = track.geometry(track.first, track.last)
    assert [e.frame for e in events] == list(frame_ids) == list(range(0, 99))  # each frame once, in order
    for event, (cx, cy, s) in zip(events, params):
        np.testing.assert_array_equal(event.crop, crop_face(frames[event.frame], cx, cy, s))
    steady = max(held[i] for i in range(20, 40))
    assert steady <= MEDIAN_FRAMES // 2 + EMIT_BATCH + 2, steady
    assert max(held.values()) <= TrackOptions().held_frames  # missed detections still keep the look-ahead


def _katie_hill_scanned(detector, monkeypatch, **footage_settings):
    """3 s of katie_hill through FootageScan with footage's module settings set -> (scan, its crops, its tracks)."""
    import otio_lipsync.footage as footage

    for name, value in footage_settings.items():
        monkeypatch.setattr(footage, name, value)
    s = FootageScan(str(clip("synced_hdtf_katie_hill_01.mp4")), detector=detector, duration_s=3)
    crops = [(e.frame, e.crop) for kind, data in s if kind == "crops" for e in data]
    return s, crops, [(t.frames, np.stack(t.boxes)) for t in s.kept_tracks()]


def _assert_same_crops_and_tracks(one, other):
    (_, crops1, tracks1), (_, crops2, tracks2) = one, other
    assert len(crops1) == len(crops2) >= 50 and tracks1
    for (f1, c1), (f2, c2) in zip(crops1, crops2):
        assert f1 == f2
        np.testing.assert_array_equal(c1, c2)
    for (frames1, boxes1), (frames2, boxes2) in zip(tracks1, tracks2, strict=True):
        assert frames1 == frames2
        np.testing.assert_array_equal(boxes1, boxes2)


def test_previews_the_decoder_leaves_to_the_analysis_give_the_same_tracks(detector, monkeypatch):
    """Whether the decoding thread or the analysis thread makes a frame's preview (footage.PREVIEW_BACKLOG: it
    depends on timing) changes nothing: all left to the analysis, and none, give the same tracks and crops."""
    _assert_same_crops_and_tracks(_katie_hill_scanned(detector, monkeypatch, PREVIEW_BACKLOG=10**9),
                                  _katie_hill_scanned(detector, monkeypatch, PREVIEW_BACKLOG=-1))


def test_faces_the_decoding_thread_finds_ahead_give_the_same_tracks(detector, monkeypatch):
    """Where decoding is light the decoding thread also runs the detector (its twin) on the frames due a detection
    (footage.DETECT_LAG: it depends on timing): forced on for every such frame, and off, the tracks and crops
    are the same, and the analysis detects only what the decoder did not."""
    own = _katie_hill_scanned(detector, monkeypatch, PREVIEW_BACKLOG=10**9, DETECT_LAG=10**9)
    # the decoding thread detects on previews it makes itself: all of them here
    ahead = _katie_hill_scanned(detector, monkeypatch, PREVIEW_BACKLOG=-1, DETECT_LAG=-1)
    assert own[0].detected_ahead == 0 and ahead[0].detected_ahead == (ahead[0].num_frames + 1) // 2  # every 2nd
    _assert_same_crops_and_tracks(own, ahead)


@pytest.fixture(scope="module")
def katie_hill_checked(stand_in_path, tmp_path_factory):
    """One raw-footage `check --json --annotate` of katie_hill (8 s, one face): the report and the review
    video each test asserts on come from the same run, as a user gets both."""
    src = clip("synced_hdtf_katie_hill_01.mp4")
    before = src.stat().st_mtime_ns
    folder = tmp_path_factory.mktemp("katie_hill")
    report, review = folder / "r.json", folder / "review.mp4"
    result = CliRunner().invoke(main, ["check", "--model", str(stand_in_path), "--json", str(report),
                                       "--annotate", str(review), str(src)])
    assert result.exit_code == 0, result.output
    assert src.stat().st_mtime_ns == before
    return src, folder, report, review, result


def test_raw_footage_check_reports_shots_and_tracks(katie_hill_checked):
    _, _, report, _, result = katie_hill_checked
    (r,) = json.loads(report.read_text())
    assert r["shots"] == [{"start_s": 0.0, "end_s": 8.0}]
    (track,) = r["tracks"]
    assert set(track) >= {"id", "start_s", "end_s", "box", "offset_frames", "audio_delay_ms", "confidence", "speaking"}
    assert track["end_s"] - track["start_s"] >= 7.5
    assert len(track["framewise_confidence"]) == track["num_windows"] == round(25 * (track["end_s"] - track["start_s"])) - 5
    x0, y0, x1, y1 = track["box"]
    assert 0 <= x0 < x1 <= 512 and 0 <= y0 < y1 <= 512
    assert r["offset_frames"] in range(-15, 16) and r["audio_delay_ms"] == -40 * r["offset_frames"]
    assert len(r["framewise_confidence"]) == 195
    assert "1 face track(s)" in result.output


def test_no_face_is_said_plainly(stand_in_path, ffmpeg_exe, tmp_path):
    blank = tmp_path / "blank.mp4"
    run_ffmpeg(ffmpeg_exe, "-f", "lavfi", "-i", "color=c=0x3060a0:s=640x360:d=3:r=25", "-f", "lavfi", "-i",
               "sine=f=440:d=3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(blank))
    result = CliRunner().invoke(main, ["check", "--model", str(stand_in_path), str(blank)])
    assert result.exit_code == 2
    assert f"{blank}: no face found" in result.stderr


def test_review_video_has_every_frame_and_the_audio(katie_hill_checked):
    from otio_lipsync import media

    src, folder, _, review, _ = katie_hill_checked
    info = media.probe(str(review))
    assert info.has_audio and (info.width, info.height) == (512, 512) and info.fps == 25
    frames, audio = media.read_all(str(review))
    assert len(frames) == 200 and abs(len(audio) - 8 * 16000) < 1600
    source_frames, _ = media.read_all(str(src))
    assert frames[100, 5:15, 300:500].mean() < 40 < source_frames[100, 5:15, 300:500].mean()  # the banner
    assert sorted(p.name for p in folder.iterdir()) == ["r.json", "review.mp4"]  # no temp files left


def test_review_video_never_overwrites_its_input(stand_in_path, ffmpeg_exe, tmp_path):
    src = tmp_path / "in.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_hdtf_katie_hill_01.mp4")), "-t", "3", "-c", "copy", str(src))
    data = src.read_bytes()
    result = CliRunner().invoke(main, ["check", "--model", str(stand_in_path), "--annotate", str(src), str(src)])
    assert result.exit_code == 2 and "refusing to write the review video over its input" in result.stderr
    assert src.read_bytes() == data


def test_face_alignment_backend_says_where_its_weights_go(tmp_path, monkeypatch, stand_in_path):
    from otio_lipsync.faces.detectors import S3FD_FILE, S3FD_URL, DetectorUnavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / S3FD_FILE
    with pytest.raises(DetectorUnavailable) as info:
        make_detector("face_alignment")
    assert S3FD_URL in str(info.value) and str(expected) in str(info.value)
    result = CliRunner().invoke(main, ["check", "--model", str(stand_in_path), "--detector", "face_alignment",
                                       str(clip("synced_mead_m030_01.mp4"))])
    assert result.exit_code == 2 and str(expected) in result.stderr


def test_face_alignment_backend_loads_weights_placed_in_the_cache(tmp_path, monkeypatch):
    """Random S3FD weights in the cache folder: the backend loads them (no download) and runs."""
    sfd = pytest.importorskip("face_alignment.detection.sfd.net_s3fd",
                              reason="face_alignment not installed: pip install 'otio-lipsync[face-alignment]'")
    from otio_lipsync import media
    from otio_lipsync.faces.detectors import S3FD_FILE, Detection, FaceAlignmentDetector

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = tmp_path / "torch" / "hub" / "checkpoints" / S3FD_FILE
    weights.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(sfd.s3fd().state_dict(), weights)
    detector = make_detector("face_alignment", min_score=0.0)
    assert isinstance(detector, FaceAlignmentDetector) and detector.weights == weights
    frames, _ = media.read_all(str(clip("synced_mead_m030_01.mp4")))
    found = detector.detect(np.ascontiguousarray(frames[0][:, :, ::-1]))
    assert isinstance(found, list) and all(isinstance(d, Detection) and np.isfinite(d.box).all() for d in found)


@pytest.mark.parametrize("kind, vf, extra", [
    ("interlaced PAL SD", "scale=720:576,setsar=16/15,fps=50,tinterlace=interleave_top,fieldorder=tff",
     ["-flags", "+ildct+ilme", "-x264opts", "tff=1"]),
    ("vertical 9:16", "crop=270:480:292:0,scale=540:960", []),
    ("4:3 letterboxed", "scale=640:360,pad=640:480:0:60", []),
])
def test_formats_editors_meet(detector, ffmpeg_exe, tmp_path, kind, vf, extra):
    out = tmp_path / "format.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_mead_m030_01.mp4")), "-vf", vf, "-c:v", "libx264", "-preset",
               "ultrafast", *extra, "-c:a", "copy", str(out))
    s = scan(out, detector)
    tracks = s.kept_tracks()
    assert tracks, kind
    assert max(t.last - t.first + 1 for t in tracks) / s.num_frames >= 0.9, kind


def test_rotated_face_does_not_crash(stand_in_path, ffmpeg_exe, tmp_path):
    """A face lying on its side: found or skipped, but always a clean answer."""
    out = tmp_path / "rotated.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_mead_m030_01.mp4")), "-vf", "transpose=1", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "copy", str(out))
    result = CliRunner().invoke(main, ["check", "--model", str(stand_in_path), "--json", "-", str(out)])
    assert result.exit_code in (0, 2) and "Traceback" not in result.output
    entry = json.loads(result.stdout)[0]
    assert ("tracks" in entry) or entry["error_type"] == "NoFace"


def test_huge_frames_are_tracked_within_a_byte_budget_and_reported_in_source_pixels(detector, ffmpeg_exe, tmp_path):
    """Frames wait for the tracker's look-ahead: an 8K-class frame held ~32 times was 7.6 GB. Above
    TRACK_PIXELS they are kept scaled down, and boxes still come out in source pixels."""
    from otio_lipsync.footage import FRAME_BUFFER_BYTES, TRACK_PIXELS

    src = clip("synced_mead_m030_01.mp4")  # 854x480
    big = tmp_path / "big.mp4"
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-t", "2", "-vf", "scale=4270:2400", "-c:v", "libx264", "-preset",
               "ultrafast", "-c:a", "aac", str(big))
    small, huge = scan(src, detector, duration_s=2.0), FootageScan(str(big), detector=detector)
    held = 0
    for _ in huge:
        held = max(held, sum(f.nbytes for _, f in huge.tracker._frames))
    assert huge.track_scale < 1 and held <= FRAME_BUFFER_BYTES
    assert all(f.shape[0] * f.shape[1] <= TRACK_PIXELS for _, f in huge.tracker._frames)
    # scaled by the decoding thread in their YUV planes (half the bytes of BGR), decoded on every core: the analysis
    # works on the scaled frames while decoding grows with the source
    assert huge.tracker._frames and all(isinstance(f, media.Picture) for _, f in huge.tracker._frames)
    assert huge.decode_stats["decoder_threads"] > 1
    (a,), (b,) = small.kept_tracks(), huge.kept_tracks()
    box_small, box_big = np.array(a.median_box()) * a.to_source * 5, np.array(b.median_box()) * b.to_source
    assert np.abs(box_big - box_small).max() < 0.05 * (box_small[2] - box_small[0]), (box_small, box_big)

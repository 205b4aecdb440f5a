"""The OTIO adapter `lipsync` and `lipsync otio`, on real OTIO files built here over real media (GRID clips
from ../shared, shifted copies made with ffmpeg), real decoding, the stand-in model for the mechanics."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from click.testing import CliRunner

from otio_lipsync import media
from otio_lipsync.cli import main
from otio_lipsync.model.weights import sha256_of
from otio_lipsync.otio_adapter.core import LipsyncAdapterError, annotate_file
from otio_lipsync.timeline import COLOURS, KEY, slip_amount, verdict

from .conftest import SHARED, STAND_IN, clip, lip_model_path, need, run_ffmpeg

R, T = otio.opentime.RationalTime, otio.opentime.TimeRange
GRID = SHARED / "data" / "grid_s1" / "video"
RATES = {"23.976": 24000 / 1001, "24": 24.0, "25": 25.0, "29.97": 30000 / 1001, "30": 30.0}
SHIFT_MS = 120  # the audio of late.mp4 comes 120 ms after the picture
NAME_RE = re.compile(r"^lipsync (in sync|[+-]\d+ms (late|early)|low conf \d+\.\d \(.*\)) ?(conf \d+\.\d)?$")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, ffmpeg_exe):
    """sync.mp4: a GRID clip as it is; late.mp4: the same with its audio 120 ms late (adelay, trimmed back to
    3 s); broken.mp4: not a media file."""
    src = need(GRID / "bbaf2n.mp4")
    d = tmp_path_factory.mktemp("media")
    os.symlink(src, d / "sync.mp4")
    run_ffmpeg(ffmpeg_exe, "-i", str(src), "-af", f"adelay={SHIFT_MS}:all=1,atrim=0:3", "-c:v", "copy",
               "-c:a", "aac", str(d / "late.mp4"))
    (d / "broken.mp4").write_text("not a video\n")
    return d


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def model_options(cache_dir, **extra):
    return {"model": str(need(STAND_IN)), "cache_dir": cache_dir, "min_confidence": 0, "quiet": True, **extra}


def frames(seconds: float, rate: float) -> R:
    return R(round(seconds * rate), rate)


def add_pair(video, audio, name, url, start_s, dur_s, rate, media_s=3.0, audio_url=None):
    """One clip of the same media on the video and the audio track, same source range."""
    for track, target in ((video, url), (audio, audio_url or url)):
        ref = otio.schema.ExternalReference(target_url=target, available_range=T(R(0, rate), frames(media_s, rate)))
        track.append(otio.schema.Clip(name=name, media_reference=ref,
                                      source_range=T(frames(start_s, rate), frames(dur_s, rate))))


def edit(folder: Path, rate: float, media_dir: Path, name="edit.otio") -> Path:
    """Two tracks: late.mp4 by relative path from 0.5 s, a gap, sync.mp4 by file URL from 0.8 s."""
    tl = otio.schema.Timeline(name=f"edit {rate:.3f}", global_start_time=R(0, rate))
    v, a = otio.schema.Track(name="V1", kind="Video"), otio.schema.Track(name="A1", kind="Audio")
    tl.tracks.extend([v, a])
    rel = os.path.relpath(media_dir / "late.mp4", folder)
    add_pair(v, a, "late", rel, 0.5, 2.0, rate)
    for track in (v, a):
        track.append(otio.schema.Gap(source_range=T(R(0, rate), frames(1.0, rate))))
    add_pair(v, a, "sync", (media_dir / "sync.mp4").as_uri(), 0.8, 2.0, rate)
    path = folder / name
    otio.adapters.write_to_file(tl, str(path))
    return path


def lipsync_markers(item):
    return [m for m in item.markers if KEY in m.metadata]


def verdict_marker(item):
    found = [m for m in lipsync_markers(item) if m.metadata[KEY].get("status") not in ("speaker", "slipped")]
    assert len(found) == 1, [m.name for m in item.markers]
    return found[0]


def clips_of(timeline, kind):
    return [c for c in timeline.find_clips() if c.parent().kind == kind]


# --- media range decode -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,start,dur", [("grid", 1.2, 1.0), ("synced_vexpress_aoc_01.mp4", 2.0, 1.5)])
def test_range_decode_is_the_same_as_slicing_the_whole_decode(name, start, dur):
    path = str(need(GRID / "bbaf2n.mp4") if name == "grid" else clip(name))
    whole_v, whole_a = media.read_all(path)
    part_v, part_a = media.read_all(path, start_s=start, duration_s=dur)
    first = round(start * 25)
    assert len(part_v) == round(dur * 25 + 0.01) or len(part_v) == int(np.ceil(dur * 25))
    np.testing.assert_array_equal(part_v, whole_v[first:first + len(part_v)])  # 29.97 source included
    s0 = round(start * 16000)
    assert len(part_a) == round(dur * 16000)
    assert np.abs(part_a.astype(int) - whole_a[s0:s0 + len(part_a)]).max() <= 1


# --- markers and range maths --------------------------------------------------------------------------------

@pytest.mark.parametrize("rate_name", list(RATES))
def test_markers_land_on_the_right_clips_at_their_source_times(tmp_path, media_dir, cache_dir, rate_name):
    rate = RATES[rate_name]
    path = edit(tmp_path, rate, media_dir)
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", **model_options(cache_dir))
    video, audio = clips_of(tl, "Video"), clips_of(tl, "Audio")
    assert [c.name for c in video] == ["late", "sync"]
    sha = sha256_of(STAND_IN)  # the model file's own hash
    for c, media_start in zip(video, (0.5, 0.8)):
        m = verdict_marker(c)
        assert m.marked_range.start_time.strictly_equal(c.source_range.start_time)  # the clip's source time
        assert m.marked_range.duration.strictly_equal(c.source_range.duration)
        assert m.marked_range.start_time.rate == rate
        meta = m.metadata[KEY]
        assert meta["status"] == "analysed"
        assert NAME_RE.match(m.name), m.name
        assert m.color == COLOURS[meta["verdict"]]
        assert meta["verdict"] == verdict(meta["audio_delay_ms"], meta["confidence"], 0)
        assert meta["model"]["sha256"] == sha and meta["tool"]["name"] == "otio-lipsync"
        # the decoded range: the used source range (in media seconds, whatever the timeline's rate) + 0.5 s handles
        start = round(media_start * rate) / rate
        decode_start = max(0.0, start - 0.5)  # the handle stops at the media's first frame
        assert meta["analysed_range_s"]["start"] == pytest.approx(decode_start, abs=1e-6)
        assert meta["analysed_range_s"]["duration"] == pytest.approx(
            round(2.0 * rate) / rate + (start - decode_start) + 0.5, abs=1e-6)
        lo, hi = c.source_range.start_time, c.source_range.end_time_exclusive()
        for s in [m for m in lipsync_markers(c) if m.metadata[KEY]["status"] == "speaker"]:
            assert s.name.startswith("lipsync speaker ") and s.color == COLOURS["speaker"]
            assert lo <= s.marked_range.start_time and s.marked_range.end_time_exclusive() <= hi
    for c in audio:
        assert not lipsync_markers(c)  # annotate only: audio clips get a marker when slipped


def test_media_with_a_timecode_start_is_decoded_from_its_own_first_frame(tmp_path, media_dir):
    rate = 24.0
    hour = R(86400, rate)  # the media's available range starts at 01:00:00:00
    tl = otio.schema.Timeline()
    v = otio.schema.Track(kind="Video")
    tl.tracks.append(v)
    ref = otio.schema.ExternalReference(str(media_dir / "sync.mp4"), available_range=T(hour, R(72, rate)))
    v.append(otio.schema.Clip(name="tc", media_reference=ref, source_range=T(hour + R(36, rate), R(24, rate))))
    path = tmp_path / "tc.otio"
    otio.adapters.write_to_file(tl, str(path))
    out, _ = annotate_file(str(path), delay_ms=0, quiet=True, cache_dir="none")
    m = verdict_marker(clips_of(out, "Video")[0])
    assert m.marked_range.start_time.strictly_equal(hour + R(36, rate))
    assert m.metadata[KEY]["analysed_range_s"]["start"] == pytest.approx(1.5 - 0.5)
    assert m.metadata[KEY]["analysed_range_s"]["duration"] == pytest.approx(1.0 + 1.0)


def test_speaker_markers_follow_the_track_segments_in_source_time(tmp_path, media_dir, cache_dir):
    rate = 24.0
    path = edit(tmp_path, rate, media_dir)
    tl, _ = annotate_file(str(path), **model_options(cache_dir))
    c = clips_of(tl, "Video")[1]
    meta = verdict_marker(c).metadata[KEY]
    decode_start = meta["analysed_range_s"]["start"]
    expected = []
    for track in meta["tracks"]:
        for a, b in track["speaking"]:
            lo = max(decode_start + a, c.source_range.start_time.to_seconds())
            hi = min(decode_start + b, c.source_range.end_time_exclusive().to_seconds())
            if hi > lo:
                expected.append((track["id"], round(lo * rate)))
    got = [(m.metadata[KEY]["track_id"], m.marked_range.start_time.value)
           for m in lipsync_markers(c) if m.metadata[KEY]["status"] == "speaker"]
    assert got == expected


def test_face_cropped_option_takes_the_crop_path(tmp_path, media_dir, cache_dir):
    path = edit(tmp_path, 25.0, media_dir)
    tl, report = annotate_file(str(path), face_cropped="true", **model_options(cache_dir))
    assert report.analysed == 2
    for c in clips_of(tl, "Video"):
        meta = verdict_marker(c).metadata[KEY]
        assert meta["face_cropped"] is True and meta["basis"] is None and len(meta["tracks"]) == 0
        assert [m for m in lipsync_markers(c) if m.metadata[KEY]["status"] == "speaker"] == []


# --- slip ---------------------------------------------------------------------------------------------------

def test_slip_amount_direction_and_existing_offset():
    # sound 120 ms late, clips aligned: the audio reads 120 ms later in its media (plays earlier)
    assert slip_amount(120, 1.0, 10.0, 1.0, 10.0) == pytest.approx(0.120)
    assert slip_amount(-80, 1.0, 10.0, 1.0, 10.0) == pytest.approx(-0.080)
    # the editor already slipped the audio 40 ms: only the rest is moved
    assert slip_amount(120, 1.0, 10.0, 1.04, 10.0) == pytest.approx(0.080)
    # a J-cut (audio starts 1 s earlier on the timeline, 1 s earlier in the media): still aligned
    assert slip_amount(120, 1.0, 10.0, 0.0, 9.0) == pytest.approx(0.120)


@pytest.mark.parametrize("rate_name,delay,expected_frames", [("25", 120, 3), ("24", 120, 3), ("29.97", -80, -2),
                                                              ("24", 20, 0)])
def test_slip_with_a_given_delay_moves_the_audio_start_and_unslip_restores_it(tmp_path, media_dir, rate_name,
                                                                              delay, expected_frames):
    rate = RATES[rate_name]
    path = edit(tmp_path, rate, media_dir)
    before = otio.adapters.read_from_file(str(path))
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", slip=True, delay_ms=delay, quiet=True,
                                      cache_dir="none")
    for old, new in zip(clips_of(before, "Audio"), clips_of(tl, "Audio")):
        moved = new.source_range.start_time.value - old.source_range.start_time.value
        assert moved == expected_frames  # positive delay (sound late): the source start moves later
        assert new.source_range.duration.strictly_equal(old.source_range.duration)
        if expected_frames:
            assert new.metadata[KEY]["slip"]["original_start_time"]["value"] == old.source_range.start_time.value
            assert [m.name for m in lipsync_markers(new)] == [
                f"lipsync slipped {expected_frames:+d} fr ({expected_frames / rate * 1000:+.0f}ms)"]
    for old, new in zip(clips_of(before, "Video"), clips_of(tl, "Video")):
        assert new.source_range.strictly_equal(old.source_range) if hasattr(new.source_range, "strictly_equal") \
            else new.source_range == old.source_range  # picture never moves
    slipped = tmp_path / "slipped.otio"
    otio.adapters.write_to_file(tl, str(slipped))
    again = otio.adapters.read_from_file(str(slipped), adapter_name="lipsync", slip=True, delay_ms=delay, quiet=True,
                                         cache_dir="none")
    for first, second in zip(clips_of(tl, "Audio"), clips_of(again, "Audio")):
        assert second.source_range.start_time.strictly_equal(first.source_range.start_time)  # idempotent
    back = otio.adapters.read_from_file(str(slipped), adapter_name="lipsync", unslip=True, quiet=True)
    for old, restored in zip(clips_of(before, "Audio"), clips_of(back, "Audio")):
        assert restored.source_range.start_time.strictly_equal(old.source_range.start_time)
        assert KEY not in restored.metadata and not lipsync_markers(restored)


def test_slip_never_leaves_the_media(tmp_path, media_dir):
    rate = 25.0
    tl = otio.schema.Timeline()
    v, a = otio.schema.Track(kind="Video"), otio.schema.Track(kind="Audio")
    tl.tracks.extend([v, a])
    add_pair(v, a, "end", str(media_dir / "sync.mp4"), 1.0, 2.0, rate)  # uses the media up to its last frame
    path = tmp_path / "edge.otio"
    otio.adapters.write_to_file(tl, str(path))
    out, report = annotate_file(str(path), slip=True, delay_ms=200, quiet=True, cache_dir="none")
    audio = clips_of(out, "Audio")[0]
    assert audio.source_range.start_time.value == 25  # not moved
    assert report.slipped == 0 and any("available range" in w for w in report.warnings)
    slip = verdict_marker(clips_of(out, "Video")[0]).metadata[KEY]["slip"]
    assert slip["status"] == "not slipped" and "available range" in slip["audio"][0]["reason"]
    # without an available_range on the reference, the media's own duration is the limit
    audio_ref = clips_of(tl, "Audio")[0].media_reference
    audio_ref.available_range = None
    clips_of(tl, "Video")[0].media_reference.available_range = None
    otio.adapters.write_to_file(tl, str(path))
    out, report = annotate_file(str(path), slip=True, delay_ms=200, quiet=True, cache_dir="none")
    assert clips_of(out, "Audio")[0].source_range.start_time.value == 25 and report.slipped == 0


def test_picture_and_sound_in_one_clip_is_annotated_only(tmp_path, media_dir):
    tl = otio.schema.Timeline()
    v = otio.schema.Track(kind="Video")
    tl.tracks.append(v)
    v.append(otio.schema.Clip(name="av", media_reference=otio.schema.ExternalReference(str(media_dir / "late.mp4")),
                              source_range=T(R(10, 25), R(50, 25))))
    path = tmp_path / "av.otio"
    otio.adapters.write_to_file(tl, str(path))
    out, report = annotate_file(str(path), slip=True, delay_ms=120, quiet=True, cache_dir="none")
    c = clips_of(out, "Video")[0]
    slip = verdict_marker(c).metadata[KEY]["slip"]
    assert slip["status"] == "annotated only" and "no separate audio clip" in slip["reason"]
    assert c.source_range.start_time.value == 10 and report.slipped == 0


def test_slip_with_the_stand_in_measurement_moves_by_what_was_measured(tmp_path, media_dir, cache_dir):
    rate = 25.0
    path = edit(tmp_path, rate, media_dir)
    before = otio.adapters.read_from_file(str(path))
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", slip=True, **model_options(cache_dir))
    for v, old, new in zip(clips_of(tl, "Video"), clips_of(before, "Audio"), clips_of(tl, "Audio")):
        meta = verdict_marker(v).metadata[KEY]
        expected = round(meta["audio_delay_ms"] / 1000 * rate)
        assert new.source_range.start_time.value - old.source_range.start_time.value == expected
        assert list(meta["slip"]["paired_audio_clips"]) == [new.name]


def test_slip_threshold_keeps_low_confidence_clips_in_place(tmp_path, media_dir, cache_dir):
    path = edit(tmp_path, 25.0, media_dir)
    before = otio.adapters.read_from_file(str(path))
    tl, report = annotate_file(str(path), slip=True, **model_options(cache_dir, slip_min_confidence=1e6))
    assert report.slipped == 0
    for old, new in zip(clips_of(before, "Audio"), clips_of(tl, "Audio")):
        assert new.source_range.start_time.strictly_equal(old.source_range.start_time)
    for v in clips_of(tl, "Video"):
        assert "below the slip threshold" in verdict_marker(v).metadata[KEY]["slip"]["reason"]


@pytest.mark.parametrize("rate_name", list(RATES))
def test_slip_corrects_an_applied_shift_within_one_frame_with_a_lip_model(tmp_path, media_dir, rate_name):
    model = lip_model_path()
    rate = RATES[rate_name]
    path = edit(tmp_path, rate, media_dir)
    before = otio.adapters.read_from_file(str(path))
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", slip=True, model=str(model),
                                      cache_dir=str(tmp_path / "cache"), quiet=True)
    late_old, sync_old = clips_of(before, "Audio")
    late_new, sync_new = clips_of(tl, "Audio")
    moved_s = (late_new.source_range.start_time - late_old.source_range.start_time).to_seconds()
    assert abs(moved_s - SHIFT_MS / 1000) <= 1 / rate  # the applied 120 ms, corrected within one frame
    assert abs((sync_new.source_range.start_time - sync_old.source_range.start_time).to_seconds()) <= 1 / rate
    back = tmp_path / "slipped.otio"
    otio.adapters.write_to_file(tl, str(back))
    restored = otio.adapters.read_from_file(str(back), adapter_name="lipsync", unslip=True, quiet=True)
    assert clips_of(restored, "Audio")[0].source_range.start_time.strictly_equal(late_old.source_range.start_time)


# --- odd timelines ------------------------------------------------------------------------------------------

def test_missing_media_gap_transition_nested_stack_empty_track(tmp_path, media_dir, cache_dir):
    rate = 25.0
    tl = otio.schema.Timeline(name="odd")
    v = otio.schema.Track(name="V1", kind="Video")
    tl.tracks.extend([v, otio.schema.Track(name="empty", kind="Video"), otio.schema.Track(name="A-empty",
                                                                                         kind="Audio")])

    def ref(url):
        return otio.schema.ExternalReference(target_url=url)

    v.append(otio.schema.Clip(name="missing", media_reference=ref("nowhere/lost.mp4"),
                              source_range=T(R(0, rate), R(25, rate))))
    v.append(otio.schema.Gap(source_range=T(R(0, rate), R(10, rate))))
    v.append(otio.schema.Clip(name="sync", media_reference=ref(str(media_dir / "sync.mp4")),
                              source_range=T(frames(0.8, rate), frames(2.0, rate))))
    v.append(otio.schema.Transition(in_offset=R(5, rate), out_offset=R(5, rate)))
    v.append(otio.schema.Clip(name="broken", media_reference=ref(str(media_dir / "broken.mp4")),
                              source_range=T(R(0, rate), R(25, rate))))
    v.append(otio.schema.Clip(name="seq", media_reference=otio.schema.ImageSequenceReference(
        target_url_base=str(tmp_path), name_prefix="f.", name_suffix=".exr", rate=rate),
        source_range=T(R(0, rate), R(25, rate))))
    v.append(otio.schema.Clip(name="offline", source_range=T(R(0, rate), R(25, rate))))  # MissingReference
    nested = otio.schema.Stack(name="nested")
    inner = otio.schema.Track(name="inner", kind="Video")
    inner.append(otio.schema.Clip(name="late-nested", media_reference=ref(str(media_dir / "late.mp4")),
                                  source_range=T(frames(0.5, rate), frames(2.0, rate))))
    nested.append(inner)
    v.append(nested)
    path = tmp_path / "odd.otio"
    otio.adapters.write_to_file(tl, str(path))
    out, report = annotate_file(str(path), **model_options(cache_dir))
    by_name = {c.name: c for c in out.find_clips()}
    assert set(by_name) == {"missing", "sync", "broken", "seq", "offline", "late-nested"}
    m = verdict_marker(by_name["missing"])
    assert m.name == "lipsync not analysed: media missing" and m.color == COLOURS["not_analysed"]
    assert "lost.mp4" in m.metadata[KEY]["reason"]
    assert verdict_marker(by_name["broken"]).metadata[KEY]["error_type"] == "UnreadableMedia"
    assert "image sequence" in verdict_marker(by_name["seq"]).metadata[KEY]["reason"]
    assert verdict_marker(by_name["offline"]).metadata[KEY]["reason"] == "no media reference"
    for name in ("sync", "late-nested"):
        assert verdict_marker(by_name[name]).metadata[KEY]["status"] == "analysed"
    assert report.analysed == 2
    joined = "\n".join(report.warnings)
    assert "lost.mp4" in joined and "broken.mp4" in joined and "exr" not in joined  # a sequence is a note
    assert report.skipped == {"media missing": 1, "not a readable media file": 1, "image sequence": 1,
                              "no media reference": 1}


def test_relative_paths_resolve_against_media_root_then_the_timeline_folder(tmp_path, media_dir):
    tl = otio.schema.Timeline()
    v = otio.schema.Track(kind="Video")
    tl.tracks.append(v)
    v.append(otio.schema.Clip(name="rel", media_reference=otio.schema.ExternalReference("late.mp4"),
                              source_range=T(R(0, 25), R(25, 25))))
    path = tmp_path / "rel.otio"
    otio.adapters.write_to_file(tl, str(path))
    _, report = annotate_file(str(path), delay_ms=0, quiet=True, cache_dir="none")
    assert report.clips[0].status == "not_analysed" and str(tmp_path / "late.mp4") in report.clips[0].reason
    _, report = annotate_file(str(path), delay_ms=0, quiet=True, cache_dir="none", media_root=str(media_dir))
    assert report.clips[0].media == str(media_dir / "late.mp4")


# --- cache --------------------------------------------------------------------------------------------------

def test_cache_reuses_analyses_ignores_corrupt_entries_and_analyses_only_new_material(tmp_path, media_dir):
    cache = tmp_path / "cache"
    path = edit(tmp_path, 25.0, media_dir)
    _, first = annotate_file(str(path), **model_options(str(cache)))
    assert first.analysed == 2 and first.from_cache == 0
    _, second = annotate_file(str(path), **model_options(str(cache)))
    assert second.from_cache == 2
    entries = sorted(cache.rglob("*.json"))
    assert len(entries) == 2
    entries[0].write_text('{"schema": "otio-lipsync/cache/1", "key": "trunc')  # a torn write
    _, third = annotate_file(str(path), **model_options(str(cache)))
    assert third.from_cache == 1
    json.loads(entries[0].read_text())  # rebuilt
    # a re-cut: one clip trimmed differently -> only that one is analysed
    tl = otio.adapters.read_from_file(str(path))
    c = clips_of(tl, "Video")[0]
    c.source_range = T(c.source_range.start_time + R(5, 25), c.source_range.duration)
    recut = tmp_path / "recut.otio"
    otio.adapters.write_to_file(tl, str(recut))
    _, fourth = annotate_file(str(recut), **model_options(str(cache)))
    assert fourth.analysed == 2 and fourth.from_cache == 1


# --- round trips --------------------------------------------------------------------------------------------

def test_round_trips_otio_json_edl_and_fcp_xml(tmp_path, media_dir, cache_dir):
    path = edit(tmp_path, 25.0, media_dir)
    tl = otio.adapters.read_from_file(str(path), adapter_name="lipsync", slip=True, **model_options(cache_dir))
    names = [verdict_marker(c).name for c in clips_of(tl, "Video")]
    # otio_json keeps everything: names, colours, ranges, metadata
    otio.adapters.write_to_file(tl, str(tmp_path / "out.otio"))
    back = otio.adapters.read_from_file(str(tmp_path / "out.otio"))
    for a, b in zip(tl.find_clips(), back.find_clips()):
        assert [m.name for m in a.markers] == [m.name for m in b.markers]
        assert [m.color for m in a.markers] == [m.color for m in b.markers]
        assert [otio.core.serialize_json_to_string(m) for m in a.markers] == [
            otio.core.serialize_json_to_string(m) for m in b.markers]  # metadata included
        assert a.source_range.start_time.strictly_equal(b.source_range.start_time)
    # EDL (otio-cmx3600-adapter): one video track; marker names (upper-cased) and colours survive as LOC lines
    otio.adapters.write_to_file(tl, str(tmp_path / "out.edl"), adapter_name="cmx_3600")
    edl = otio.adapters.read_from_file(str(tmp_path / "out.edl"), rate=25)
    edl_clips = list(edl.find_clips())
    assert [m.name for c in edl_clips for m in c.markers if m.name.startswith("LIPSYNC ")][::1] and all(
        any(m.name == n.upper() for m in c.markers) for c, n in zip(edl_clips, names))
    first = next(m for m in edl_clips[0].markers if m.name == names[0].upper())
    assert first.color == verdict_marker(clips_of(tl, "Video")[0]).color
    assert all(KEY not in m.metadata for c in edl_clips for m in c.markers)  # metadata cannot survive an EDL
    assert all(c.parent().kind == "Video" for c in edl_clips)  # the writer keeps the video track: slips are lost
    # an EDL is also read by the adapter (source_rate=25 goes to cmx_3600 as rate=25): same media, same numbers
    again = otio.adapters.read_from_file(str(tmp_path / "out.edl"), adapter_name="lipsync", source_rate="25",
                                         **model_options(cache_dir))
    assert [verdict_marker(c).name for c in again.find_clips()] == names
    result = CliRunner().invoke(main, ["otio", str(tmp_path / "out.edl"), "--source-arg", "rate=25", "-o",
                                       str(tmp_path / "from_edl.otio"), "-q", *sum(([f"--{k.replace('_', '-')}",
                                       str(v)] for k, v in model_options(cache_dir).items() if k != "quiet"), [])])
    assert result.exit_code == 0, result.output
    from_edl = otio.adapters.read_from_file(str(tmp_path / "from_edl.otio"))
    assert [verdict_marker(c).name for c in from_edl.find_clips()] == names
    # FCP 7 XML (otio-fcp-adapter): marker names survive, on both tracks; our metadata does not
    otio.adapters.write_to_file(tl, str(tmp_path / "out.xml"), adapter_name="fcp_xml")
    xml = otio.adapters.read_from_file(str(tmp_path / "out.xml"), adapter_name="fcp_xml")
    xml_video = [c for c in xml.find_clips() if c.parent().kind == "Video"]
    for c, n in zip(xml_video, names):
        assert n in [m.name for m in c.markers]
        assert all(KEY not in m.metadata for m in c.markers)
    xml_audio = [c for c in xml.find_clips() if c.parent().kind == "Audio"]
    for old, new in zip(clips_of(tl, "Audio"), xml_audio):
        assert new.source_range.start_time.value == old.source_range.start_time.value  # the slip survives


# --- errors, plugin, command lines --------------------------------------------------------------------------

def test_corrupt_timeline_and_unknown_suffix_are_one_clear_error(tmp_path):
    bad = tmp_path / "corrupt.otio"
    bad.write_text('{"OTIO_SCHEMA": "Timeline.1", "tracks": ')
    odd = tmp_path / "edit.xyz"
    odd.write_text("?")
    for f, words in ((bad, "not a readable otio_json timeline"), (odd, "no OTIO adapter reads '.xyz' files"),
                     (tmp_path / "none.otio", "no such file")):
        with pytest.raises(LipsyncAdapterError) as info:
            otio.adapters.read_from_file(str(f), adapter_name="lipsync", delay_ms=0)
        assert str(info.value).startswith(f"{f}: ") and words in str(info.value) and "\n" not in str(info.value)
        result = CliRunner().invoke(main, ["otio", str(f), "-o", str(tmp_path / "o.otio"), "--delay-ms", "0"])
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [f"lipsync: {info.value}"]
    with pytest.raises(LipsyncAdapterError, match="unknown option"):
        otio.adapters.read_from_file(str(bad), adapter_name="lipsync", slipp=True)


def test_plugin_is_registered_with_a_docstring_that_teaches_its_options():
    assert "lipsync" in otio.adapters.available_adapter_names()
    adapter = otio.adapters.from_name("lipsync")
    doc = adapter.module().__doc__
    for option in ("slip=true", "unslip=true", "media_root", "cache_dir", "min_confidence", "source_adapter",
                   "delay_ms", "otioconvert -i edit.otio -I lipsync -a slip=true -o out.otio"):
        assert option in doc
    out = subprocess.run(["otiopluginfo", "-p", "adapters", "-l", "lipsync"], capture_output=True, text=True)
    assert "lipsync" in out.stdout and "slip_min_confidence" in out.stdout, out.stderr


def test_otioconvert_command_line(tmp_path, media_dir):
    path = edit(tmp_path, 24.0, media_dir)
    out = tmp_path / "out.otio"
    proc = subprocess.run(["otioconvert", "-i", str(path), "-I", "lipsync", "-a", "slip=true", "-a", "delay_ms=120",
                           "-a", "cache_dir=none", "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    tl = otio.adapters.read_from_file(str(out))
    assert [c.source_range.start_time.value for c in clips_of(tl, "Audio")] == [15, 22]  # 12+3, 19+3 frames
    assert "audio clips slipped" in proc.stderr


def test_lipsync_otio_cli_writes_the_timeline_and_a_json_report(tmp_path, media_dir, cache_dir):
    path = edit(tmp_path, 25.0, media_dir)
    original = path.read_bytes()
    out, report = tmp_path / "checked.otio", tmp_path / "report.json"
    result = CliRunner().invoke(main, ["otio", str(path), "-o", str(out), "--slip", "--json", str(report),
                                       "--model", str(STAND_IN), "--cache-dir", cache_dir, "--min-confidence", "0"])
    assert result.exit_code == 0, result.output
    assert path.read_bytes() == original  # the input is never touched
    data = json.loads(report.read_text())
    assert data["summary"]["clips_analysed"] == 2 and [c["clip"] for c in data["clips"]] == ["late", "sync"]
    assert "[1/2] Video clip 'late'" in result.output and "clips analysed" in result.output
    assert lipsync_markers(clips_of(otio.adapters.read_from_file(str(out)), "Video")[0])
    same = CliRunner().invoke(main, ["otio", str(path), "-o", str(path), "--delay-ms", "0"])
    assert same.exit_code == 2 and "overwrite the input" in same.output


def test_rerun_on_a_slipped_timeline_reports_the_corrected_state(tmp_path, media_dir):
    """The media stays 200 ms off, but the first run's slip corrects it in the edit: the re-run says so and
    no longer counts the clips out of tolerance (it said `already in sync` beside `out of tolerance`)."""
    path = edit(tmp_path, 25.0, media_dir)
    first, report = annotate_file(str(path), slip=True, delay_ms=200, quiet=True, cache_dir="none")
    assert report.slipped == 2 and report.out_of_tolerance == 2
    slipped = tmp_path / "slipped.otio"
    otio.adapters.write_to_file(first, str(slipped))
    again, report2 = annotate_file(str(slipped), slip=True, delay_ms=200, quiet=True, cache_dir="none")
    assert report2.slipped == 0 and report2.out_of_tolerance == 0 and report2.corrected_in_edit == 2
    assert report2.to_dict()["summary"]["corrected_in_edit"] == 2
    for v in clips_of(again, "Video"):
        assert verdict_marker(v).metadata[KEY]["slip"]["status"] == "already in sync in the edit"

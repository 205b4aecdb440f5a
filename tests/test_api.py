"""The Python API as a library user calls it (this file doubles as its usage documentation): one model loaded
once for the module, short clips from ../shared, errors as exceptions (never an exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import otio_lipsync as lipsync

from .conftest import reference_input

CLIP = "vr5_adv5"  # 4.9 s, a 224x224 face crop whose audio leads by 5 frames


@pytest.fixture(scope="module")
def model():
    return lipsync.load_model()  # the house model, shipped in the package: load once, pass to every call


@pytest.fixture(scope="module")
def clip_path() -> str:
    return str(reference_input(CLIP))


@pytest.fixture(scope="module")
def face_crop(model, clip_path):
    return lipsync.check(clip_path, model=model, face_cropped=True)


def test_the_package_names_its_api_and_stays_cheap_to_import():
    for name in ("load_model", "check", "fix", "score", "annotate_timeline", "Analysis", "FixResult", "FileScore",
                 "LipsyncError", "NoFace", "ModelNotFound", "DetectorUnavailable", "FfmpegFailed", "BatchError"):
        assert name in dir(lipsync) and getattr(lipsync, name) is not None
    proc = subprocess.run([sys.executable, "-c", "import otio_lipsync, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"  # names load when first used


def test_check_is_the_cli_json_entry(face_crop, clip_path):
    """`Analysis.to_dict()` is exactly the object `lipsync check --json` writes for the file."""
    from click.testing import CliRunner

    from otio_lipsync.cli import main

    assert isinstance(face_crop, lipsync.Analysis)
    assert face_crop.file == clip_path and face_crop.tracks is None
    assert face_crop.audio_delay_ms == -40 * face_crop.offset_frames
    result = CliRunner().invoke(main, ["check", "-q", "--face-cropped", "--json", "-", clip_path])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [json.loads(json.dumps(face_crop.to_dict()))]
    qc = lipsync.qc_verdict(face_crop, "ebu-r37")
    assert set(qc) >= {"pass", "reasons"}


def test_check_raw_footage_finds_the_face(model, clip_path):
    analysis = lipsync.check(clip_path, model=model)  # default: raw footage, faces detected and tracked
    assert analysis.tracks and analysis.basis in ("speaking", "all-tracks")
    assert analysis.summary().startswith(f"{clip_path}: ")


def test_errors_are_exceptions_of_one_tree(model, tmp_path):
    with pytest.raises(lipsync.MediaNotFound) as info:
        lipsync.check(tmp_path / "missing.mp4", model=model)
    assert isinstance(info.value, lipsync.LipsyncError) and info.value.file.endswith("missing.mp4")
    with pytest.raises(lipsync.ModelNotFound):
        lipsync.load_model("no_such_model")
    with pytest.raises(lipsync.BadWeights):
        lipsync.load_model(tmp_path / "missing.model")
    with pytest.raises(lipsync.OptionError, match="must be 0 to"):
        lipsync.make_engine(model, vshift=999)
    with pytest.raises(lipsync.DetectorUnavailable):
        lipsync.make_detector("no_such_detector")
    not_media = tmp_path / "notes.mp4"
    not_media.write_text("not a video")
    with pytest.raises(lipsync.UnreadableMedia):
        lipsync.check(not_media, model=model, face_cropped=True)


def test_fix_writes_a_copy_and_measures_it(model, clip_path, face_crop, tmp_path):
    target = tmp_path / "fixed.mp4"
    done = lipsync.fix(clip_path, target, delay_ms=face_crop.audio_delay_ms, model=model, face_cropped=True)
    assert isinstance(done, lipsync.FixResult) and done.written and target.is_file()
    assert done.delay_ms == face_crop.audio_delay_ms and done.before is None
    assert abs(done.after.audio_delay_ms) <= 40  # in sync within a frame
    with pytest.raises(lipsync.OutputError, match="exists"):
        lipsync.fix(clip_path, target, delay_ms=40, model=model, face_cropped=True)
    plan = lipsync.fix(clip_path, target, delay_ms=40, overwrite=True, dry_run=True)  # no model needed
    assert not plan.written and "ffmpeg" in os.path.basename(plan.command[0])


def test_score_gives_lse_per_file(model, clip_path):
    s = lipsync.score(clip_path, model=model, face_cropped=True)  # LSE-D / LSE-C (default model: syncnet_v2)
    assert isinstance(s, lipsync.FileScore) and s.metric == "lse"
    assert set(s.values) == {"lse_d", "lse_c"} and s.values["lse_c"] >= 0
    assert s.to_dict()["num_tracks"] == 1
    with pytest.raises(lipsync.OptionError, match="needs --model"):
        lipsync.score(clip_path, metric="icsyncnet", face_cropped=True)
    with pytest.raises(lipsync.NoSyncProbability):
        lipsync.score(clip_path, metric="icsyncnet", model=model, face_cropped=True)


def test_annotate_timeline_marks_each_clip(model, clip_path):
    import opentimelineio as otio

    rate = 25
    used = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(100, rate))
    clip = otio.schema.Clip(name="take 1", media_reference=otio.schema.ExternalReference(target_url=clip_path),
                            source_range=used)
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    track.append(clip)
    timeline = otio.schema.Timeline(name="edit")
    timeline.tracks.append(track)
    annotated, report = lipsync.annotate_timeline(timeline, model=model, face_cropped=True, cache_dir="none",
                                                  handle_s=0)
    assert annotated is timeline and report.analysed == 1 and not report.warnings
    (marker,) = [m for m in clip.markers if "lipsync" in m.metadata]
    assert marker.name.startswith("lipsync ") and marker.metadata["lipsync"]["status"] == "analysed"
    with pytest.raises(lipsync.LipsyncError):  # a bad timeline file: one line, an OTIOError too
        lipsync.annotate_timeline("/no/such/edit.otio")

"""`lipsync score --metric lse` against the golden outputs in ../shared/reference.

LSE-D and LSE-C are syncnet_python's `minval` and `conf`, so the expected numbers follow from the golden
distance matrices: min and median - min of their mean over windows. `raw_dists` (frames decoded directly)
are the reference for the normal path, the plain `dists` (JPEG round trip) for --reference-decode.
"""

from __future__ import annotations

import csv
import filecmp
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from otio_lipsync.cli import main
from otio_lipsync.metrics import LSE, FileScore, TrackSummary, expand_inputs, score_tracks, summarise
from otio_lipsync.sync import offset_from_dists

from .conftest import (
    CLIPS, GOLDEN_NAMES, STAND_IN, clip, junk_bytes, reference_input, run_ffmpeg, system_ffmpeg_version,
)

DIST_RTOL = 2e-5  # the reference README's tolerance for a faithful float32 reimplementation
DIRECT_RTOL = 2e-3  # PyAV's bundled FFmpeg >= 7 decodes AAC 1 LSB off FFmpeg 5.1 (see test_parity)


def lse_from_golden(g, prefix: str) -> tuple[float, float, float]:
    """(LSE-D, LSE-C, scale) derived from a golden distance matrix; scale = its largest distance."""
    dists = g[prefix + "dists"]
    mean = dists.astype(np.float64).mean(0)
    return float(mean.min()), float(np.median(mean) - mean.min()), float(np.abs(dists).max())


# the CLI's plumbing (JSON, table, means) on the two shortest golden clips, one offset and one in sync; every
# golden clip's numbers through the same engine are test_parity's (direct and --reference-decode)
SCORED = ["vr5_adv5", "vr2_sync"]


def score(*args):
    return CliRunner().invoke(main, ["score", *map(str, args)], catch_exceptions=False)


@pytest.mark.parametrize("prefix", ["raw_", ""])
@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_lse_of_golden_distances_is_the_references_minval_and_conf(golden, name, prefix):
    """The metric reduces the mean distance curve (not per-window minima): it gives the golden minval/conf."""
    g = golden(name)
    offset, minval, conf, *_ = offset_from_dists(g[prefix + "dists"], int(g["vshift"]))
    values, tracks = score_tracks(LSE, [TrackSummary(minval, conf, offset, int(g["num_windows"]))])
    scale = float(np.abs(g[prefix + "dists"]).max())
    assert values["lse_d"] == pytest.approx(float(g[prefix + "minval"]), abs=DIST_RTOL * scale)
    assert values["lse_c"] == pytest.approx(float(g[prefix + "conf"]), abs=2 * DIST_RTOL * scale)
    d, c, _ = lse_from_golden(g, prefix)
    assert values["lse_d"] == pytest.approx(d, abs=DIST_RTOL * scale)
    assert values["lse_c"] == pytest.approx(c, abs=2 * DIST_RTOL * scale)
    assert tracks[0]["offset_frames"] == int(g[prefix + "offset"])


def test_score_direct_decode_equals_raw_golden(stand_in_path, golden):
    inputs = [reference_input(n) for n in SCORED]
    result = score("--face-cropped", "--model", stand_in_path, "--json", "-", *inputs)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # pure JSON on stdout; the table went to stderr
    assert "mean over files" in result.stderr
    assert report["metric"] == "lse" and report["decode"] == "direct"
    assert report["model"]["sha256"] == "46801fe84223d640d58d90774c7f2d9ea59fa4b4172db5aefd2c7c9afd9f4ec7"
    expected = []
    assert len(report["files"]) == len(SCORED)
    for name, entry in zip(SCORED, report["files"]):
        d, c, scale = lse_from_golden(golden(name), "raw_")
        expected.append((d, c))
        assert entry["file"] == str(reference_input(name))
        assert entry["lse_d"] == pytest.approx(d, rel=DIRECT_RTOL)
        assert entry["lse_c"] == pytest.approx(c, abs=DIRECT_RTOL * scale)
        assert entry["offset_frames"] == int(golden(name)["raw_offset"])
        assert entry["num_windows"] == int(golden(name)["num_windows"]) and entry["num_tracks"] == 1
    summary = report["summary"]
    assert summary["files"] == summary["tracks"] == len(SCORED) and summary["failed"] == 0
    assert summary["mean_over_files"]["lse_d"] == pytest.approx(np.mean([d for d, _ in expected]), rel=DIRECT_RTOL)
    assert summary["mean_over_files"]["lse_c"] == pytest.approx(np.mean([c for _, c in expected]), abs=0.05)
    assert summary["mean_over_tracks"] == summary["mean_over_files"]


def test_score_reference_decode_equals_jpeg_golden(stand_in_path, golden, tmp_path):
    """The numbers to compare with published LSE tables: the scripts' JPEG round trip, same ffmpeg."""
    version = system_ffmpeg_version()
    if not version or not version.startswith("5.1"):
        pytest.skip(f"needs Debian 12's ffmpeg 5.1 on PATH (the golden run's build), found {version}")
    folder = tmp_path / "inputs"  # a folder of links: the clips stay in ../shared
    folder.mkdir()
    for name in SCORED:
        (folder / f"{name}.mp4").symlink_to(reference_input(name))
    (folder / "notes.txt").write_text("not a video")
    out = tmp_path / "ref.json"
    result = score("--face-cropped", "--reference-decode", "--model", stand_in_path, "--json", out, folder)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["decode"] == "reference"
    by_name = {os.path.splitext(os.path.basename(e["file"]))[0]: e for e in report["files"]}
    assert sorted(by_name) == sorted(SCORED)  # the folder, found by suffix
    ds, cs = [], []
    for name in SCORED:
        g = golden(name)
        d, c, scale = lse_from_golden(g, "")
        entry = by_name[name]
        assert entry["lse_d"] == pytest.approx(float(g["minval"]), abs=DIST_RTOL * scale)
        assert entry["lse_c"] == pytest.approx(float(g["conf"]), abs=2 * DIST_RTOL * scale)
        assert entry["lse_d"] == pytest.approx(d, abs=DIST_RTOL * scale)
        assert entry["lse_c"] == pytest.approx(c, abs=2 * DIST_RTOL * scale)
        assert entry["decode"] == "reference"
        ds.append(float(g["minval"]))
        cs.append(float(g["conf"]))
    # calculate_scores_LRS.py's "Average Minimum Distance" and "Average Confidence"
    assert report["summary"]["mean_over_files"]["lse_d"] == pytest.approx(np.mean(ds), abs=1e-3)
    assert report["summary"]["mean_over_files"]["lse_c"] == pytest.approx(np.mean(cs), abs=1e-3)
    # printed to 3 decimals: compared as numbers, a rounding edge (24.3705) may print either way
    (mean_line,) = [line for line in result.stdout.splitlines() if line.startswith("mean over files")]
    printed_d, printed_c = map(float, mean_line.split()[3:5])
    assert printed_d == pytest.approx(np.mean(ds), abs=1.5e-3) and printed_c == pytest.approx(np.mean(cs), abs=1.5e-3)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, ffmpeg_exe):
    """a/vr5_adv5.mp4 (good), a/b/broken.mov (random bytes), notes.txt and a hidden file (not videos)."""
    root = tmp_path_factory.mktemp("folder")
    (root / "a" / "b").mkdir(parents=True)
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("vr5_adv5")), "-c", "copy", str(root / "a" / "vr5_adv5.mp4"))
    (root / "a" / "b" / "broken.mov").write_bytes(junk_bytes(30_000))
    (root / "notes.txt").write_text("not a video")
    (root / ".partial.mp4").write_bytes(b"")
    return root


def test_folder_with_a_bad_file_keeps_going_and_exits_2(stand_in_path, mixed_folder, tmp_path):
    assert expand_inputs([str(mixed_folder)]) == [str(mixed_folder / "a" / "b" / "broken.mov"),
                                                 str(mixed_folder / "a" / "vr5_adv5.mp4")]
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    result = score("--face-cropped", "--model", stand_in_path, "--json", out_json, "--csv", out_csv, mixed_folder)
    assert result.exit_code == 2
    bad = str(mixed_folder / "a" / "b" / "broken.mov")
    lines = [line for line in result.stderr.splitlines() if bad in line]
    assert len(lines) == 1 and "not a readable media file" in lines[0], result.stderr
    assert "1 of 2 file(s) could not be scored" in result.stderr
    assert "Traceback" not in result.output
    assert "vr5_adv5.mp4" in result.stdout and "mean over files" in result.stdout
    report = json.loads(out_json.read_text())
    assert [e.get("error_type") for e in report["files"]] == ["UnreadableMedia", None]
    good = report["files"][1]
    assert good["offset_frames"] == 5
    assert report["summary"]["files"] == 1 and report["summary"]["failed"] == 1
    assert report["summary"]["mean_over_files"]["lse_d"] == good["lse_d"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["file"] for r in rows] == [bad, good["file"]]
    assert rows[0]["error"].startswith("not a readable media file") and rows[0]["lse_d"] == ""
    assert float(rows[1]["lse_d"]) == good["lse_d"] and float(rows[1]["lse_c"]) == good["lse_c"]
    assert rows[1]["offset_frames"] == "5" and rows[1]["decode"] == "direct" and rows[1]["track"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.json"]  # atomic: no temp files left


def test_an_empty_folder_or_bad_option_is_one_line(stand_in_path, tmp_path):
    result = score("--face-cropped", "--model", stand_in_path, tmp_path)
    assert result.exit_code == 2 and "no video files found" in result.stderr
    result = score("--reference-decode", "--model", stand_in_path, reference_input("vr2_sync"))
    assert result.exit_code == 2 and "use it with --face-cropped" in result.stderr
    result = score("--metric", "nope", reference_input("vr2_sync"))
    assert result.exit_code == 2 and "nope" in result.output


def test_averages_over_files_and_over_tracks():
    """A raw-footage file's value is the mean of its tracks; all_scores.txt's mean weights every track."""
    one = [TrackSummary(10.0, 8.0, 0, 100)]
    two = [TrackSummary(6.0, 2.0, 0, 50), TrackSummary(8.0, 4.0, 1, 60, 0.0, 2.4)]
    scores = []
    for name, tracks in (("a.mp4", one), ("b.mp4", two)):
        values, entries = score_tracks(LSE, tracks)
        scores.append(FileScore(name, "lse", values, entries, "direct", face_cropped=False))
    assert scores[1].values == {"lse_d": 7.0, "lse_c": 3.0}
    assert scores[1].tracks[1] == {"id": 1, "lse_d": 8.0, "lse_c": 4.0, "offset_frames": 1, "num_windows": 60,
                                   "start_s": 0.0, "end_s": 2.4}
    s = summarise(LSE, scores, failed=1)
    assert s["mean_over_files"] == {"lse_d": 8.5, "lse_c": 5.5}
    assert s["mean_over_tracks"] == {"lse_d": 8.0, "lse_c": pytest.approx(14 / 3)}
    assert (s["files"], s["tracks"], s["failed"]) == (2, 3, 1)
    assert scores[1].to_dict()["offset_frames"] is None and len(scores[1].to_dict()["tracks"]) == 2
    with pytest.raises(ValueError):
        score_tracks(LSE, [])


def test_raw_footage_scores_every_face_track(stand_in_path, ffmpeg_exe, tmp_path):
    """Without --face-cropped: faces stage, one LSE per track (the stand-in's numbers mean nothing here)."""
    src = tmp_path / "ted_lieu_4s.mp4"  # 4 s of raw footage: the tracks and their rows, not a long analysis
    run_ffmpeg(ffmpeg_exe, "-i", str(clip("synced_edtalk_ted_lieu_01.mp4")), "-t", "4", "-c", "copy", str(src))
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    result = score("--model", stand_in_path, "--json", out_json, "--csv", out_csv, src)
    assert result.exit_code == 0, result.output
    entry = json.loads(out_json.read_text())["files"][0]
    assert entry["face_cropped"] is False and entry["num_tracks"] == len(entry["tracks"]) >= 1
    assert entry["lse_d"] == pytest.approx(np.mean([t["lse_d"] for t in entry["tracks"]]))
    assert entry["lse_c"] == pytest.approx(np.mean([t["lse_c"] for t in entry["tracks"]]))
    assert all(t["end_s"] > t["start_s"] for t in entry["tracks"])
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["track"] for r in rows] == ["", *[str(t["id"]) for t in entry["tracks"]]]
    assert "track 0" in result.stdout


HOUSE_GROUPS = {
    "synced": ["synced_edtalk_ted_lieu_01.mp4", "synced_hdtf_katie_hill_01.mp4", "synced_mimictalk_german_anchor_01.mp4"],
    "mismatched": ["mismatched_02.mp4", "mismatched_03.mp4", "mismatched_01.mp4"],  # the same speakers, other audio
    "generated": ["generated_edtalk_01.mp4", "generated_dreamtalk_01.mp4", "generated_sadtalker_01.mp4"],
}


def house_model_path():
    """The default model's file, or a skip saying why it cannot judge lip sync."""
    from otio_lipsync.model import DEFAULT_MODEL, ModelNotFound, registry

    try:
        path = registry.resolve(None)
    except ModelNotFound as exc:
        pytest.skip(f"needs the house model: the default model {DEFAULT_MODEL!r} is not installed ({exc})")
    if STAND_IN.exists() and filecmp.cmp(path, STAND_IN, shallow=False):
        pytest.skip(f"the default model {path} is the stand-in {STAND_IN.name}, which knows nothing of lips")
    return path


@pytest.fixture(scope="module")
def house_group_means(tmp_path_factory):
    """group -> the house model's mean LSE over its clips, each group scored once (synced serves both tests)."""
    if not CLIPS.exists():
        pytest.skip(f"needs {CLIPS} (the project's ../shared data)")
    model = house_model_path()
    folder, means = tmp_path_factory.mktemp("house_groups"), {}

    def mean_of(name):
        if name not in means:
            out = folder / f"{name}.json"
            result = score("--model", model, "--json", out, *[clip(f) for f in HOUSE_GROUPS[name]])
            assert result.exit_code == 0, result.output
            means[name] = json.loads(out.read_text())["summary"]["mean_over_files"]
        return means[name]

    return mean_of


@pytest.mark.parametrize("group", ["mismatched", "generated"])
def test_generated_and_mismatched_clips_score_worse_than_synced(group, house_group_means):
    """With a model that knows lips, real synced speech has the best LSE: lower LSE-D, higher LSE-C."""
    means = {name: house_group_means(name) for name in ("synced", group)}
    assert means[group]["lse_c"] < means["synced"]["lse_c"], means
    assert means[group]["lse_d"] > means["synced"]["lse_d"], means


def test_icsyncnet_probabilities_offset_and_offscreen_ratio_from_distances():
    """Distances made from chosen cosines give back P = sigmoid(cos * T + bias) exactly; the offset is the
    shift of highest mean probability and the offscreen ratio counts the windows below 0.5 there."""
    import numpy as np
    import torch
    from otio_lipsync.model.compact import CompactSyncNet
    from otio_lipsync.model.weights import LoadedModel, NoSyncProbability
    from otio_lipsync.metrics import ICSYNCNET, passes_filter

    net = CompactSyncNet(audio_feature="logmel26", audio_columns=40, normalize=True).eval()
    with torch.no_grad():
        net.distance_scale.fill_(3.0)
        net.log_temperature.fill_(float(np.log(10.0)))
        net.logit_bias.fill_(-5.0)
    model = LoadedModel("ic", "compact", net, "ic.model", "0" * 64, {}, {"objective": "icsyncnet"})
    cos = np.full((10, 31), -0.2)
    cos[:, 15 - 3] = 0.9  # offset +3: in sync there for 8 of the 10 windows
    cos[8:, 15 - 3] = 0.3  # P = sigmoid(-2) < 0.5: two windows "off screen"
    dists = 3.0 * np.sqrt(2.0 - 2.0 * cos)
    p = model.sync_probability(dists)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(cos * 10.0 - 5.0))), rtol=1e-9)
    values, entries = score_tracks(ICSYNCNET, [TrackSummary(0.0, 0.0, 3, 10, dists=dists)], model)
    expected = (8 / (1 + np.exp(-4.0)) + 2 / (1 + np.exp(2.0))) / 10
    assert values["probability_at_offset"] == pytest.approx(expected)
    assert values["offscreen_ratio"] == pytest.approx(0.2) and entries[0]["ic_offset_frames"] == 3
    assert passes_filter(values, 0.7, 0.2) and not passes_filter(values, 0.9, 0.2)
    assert not passes_filter(values, 0.7, 0.1)
    distance_only = LoadedModel("house", "compact", CompactSyncNet().eval(), "h.model", "0" * 64, {},
                                {"objective": "multiway"})
    with pytest.raises(NoSyncProbability, match="objective multiway"):
        distance_only.sync_probability(dists)

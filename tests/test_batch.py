"""`lipsync batch` on real clips: results and errors per item, resume after a killed driver, Ray retries after a
killed worker, byte-identical results from the local pool and from Ray."""

from __future__ import annotations

import csv
import json
import re
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from otio_lipsync.outputs import TEMP_PREFIX

from .conftest import REPO, SHARED, clip, junk_bytes, need, run_ffmpeg

GRID = SHARED / "data" / "grid_s1" / "video"
LONG_CLIP = SHARED / "data" / "clips" / "synced_dfrf_cnn_anchor_01.mp4"  # 10 s, a face-centred 512x512 crop


def grid_clips(n: int) -> list[Path]:
    need(GRID)
    clips = sorted(GRID.glob("*.mp4"))[:n]
    assert len(clips) == n
    return clips


def broken_files(folder: Path, ffmpeg_exe: str) -> dict[str, str]:
    """name -> expected error_type; made here, never in the repo."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "junk.mp4").write_bytes(junk_bytes(20000))
    src = grid_clips(1)[0].read_bytes()
    (folder / "truncated.mp4").write_bytes(src[: len(src) // 3])
    run_ffmpeg(ffmpeg_exe, "-i", str(grid_clips(1)[0]), "-an", "-c:v", "copy", str(folder / "no_audio.mp4"))
    return {"junk.mp4": "UnreadableMedia", "truncated.mp4": "UnreadableMedia", "no_audio.mp4": "NoAudioStream"}


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "otio_lipsync", "batch", *map(str, args)], check=False,
                          capture_output=True,
                          text=True, cwd=REPO, env=env, **kwargs)


def read_results(results_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (results_dir / "results.jsonl").read_text().splitlines()]


def no_temp_files(results_dir: Path) -> None:
    left = [p for p in results_dir.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert not left, left


def item_files(results_dir: Path) -> list[Path]:
    """The per-item result files, not a temp file a kill -9 left mid-write (pathlib's "*" matches dotfiles too;
    batch reads items/<key>.json only, and the next run sweeps the temp file)."""
    return [p for p in (results_dir / "items").glob("*.json") if not p.name.startswith(TEMP_PREFIX)]


# a folder's worth of clips: two workers each get several, one clip's --exclude and three broken files beside
FOLDER_CLIPS = 8
# killed after 5 results: with 2 workers a few more finish while it dies; 14 leaves some for the resume
KILLED_CLIPS = 14


def test_batch_real_clips_and_broken_files(tmp_path, ffmpeg_exe):
    clips = grid_clips(FOLDER_CLIPS)
    media = tmp_path / "media"
    (media / "grid").mkdir(parents=True)
    for c in clips:  # a folder of links, searched recursively; the clips themselves stay in ../shared
        (media / "grid" / c.name).symlink_to(c)
    (media / "grid" / "notes.txt").write_text("not media")
    (media / "grid" / "skip_me.mp4").symlink_to(clips[0])
    broken = broken_files(media / "broken", ffmpeg_exe)
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "results"
    proc = cli(media, missing, "-o", out, "--face-cropped", "--workers", "2", "--exclude", "skip_*",
               "--no-progress")
    assert proc.returncode == 2, proc.stderr
    results = read_results(out)
    assert len(results) == len(clips) + len(broken) + 1
    assert len({r["key"] for r in results}) == len(results)
    by_name = {Path(r["file"]).name: r for r in results}
    assert "skip_me.mp4" not in by_name and "notes.txt" not in by_name
    for c in clips:
        r = by_name[c.name]
        assert r["status"] == "ok", r
        assert r["analysis"]["num_windows"] > 0 and r["analysis"]["model"]["sha256"]
        assert (out / "items" / f"{r['key']}.json").is_file()
    for name, error_type in {**broken, "missing.mp4": "MediaNotFound"}.items():
        r = by_name[name]
        assert r["status"] == "error" and r["error_type"] == error_type, r
        assert r["error"].startswith(str(missing if name == "missing.mp4" else media / "broken" / name))
        assert r["error"] in proc.stderr  # one line naming the file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == len(results) and summary["failed"] == len(broken) + 1
    assert summary["measured"] == len(clips)
    assert sorted(f["file"] for f in summary["failures"]) == sorted(
        [str(media / "broken" / n) for n in broken] + [str(missing)])
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == len(results) + 1 and all(",failed," in row for row in rows[1:len(broken) + 2])
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == len(clips)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", report)  # base64 may spell anything
    assert "http" not in text.replace("http-equiv", "")
    assert "failed: <b>4</b>" in report
    no_temp_files(out)

    # the same command again computes nothing and writes the same bytes
    before = (out / "results.jsonl").read_bytes()
    runs = (out / "runs.jsonl").read_text().count("\n")
    again = cli(media, missing, "-o", out, "--face-cropped", "--workers", "2", "--exclude", "skip_*",
                "--no-progress")
    assert again.returncode == 2
    assert f"{len(results)} of {len(results)} item(s) already have a result" in again.stderr
    assert (out / "results.jsonl").read_bytes() == before
    assert (out / "runs.jsonl").read_text().count("\n") == runs
    # an option that changes results makes new keys; --standard gives verdicts and exit 1 without failures
    good = cli(*clips[:3], "-o", out, "--face-cropped", "--workers", "1", "--standard", "bt1359", "--no-progress")
    verdicts = read_results(out)
    assert len(verdicts) == 3 and all("qc" in r for r in verdicts)
    failing = sum(not r["qc"]["pass"] for r in verdicts)
    assert good.returncode == (1 if failing else 0), good.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["out_of_tolerance"] + summary["no_sync"] == failing  # no_sync: its own failure class


def test_manifest_and_timeline_items(tmp_path):
    import opentimelineio as otio

    clips = grid_clips(3)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,face_cropped,standard\n" + "".join(f"{c},true,ebu-r37\n" for c in clips[:2]))
    timeline = otio.schema.Timeline(name="edit")
    track = otio.schema.Track(kind=otio.schema.TrackKind.Video)
    rate = 25
    track.append(otio.schema.Clip(name="shot", media_reference=otio.schema.ExternalReference(
        target_url=str(clips[2]), available_range=otio.opentime.TimeRange(
            otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(75, rate))),
        source_range=otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate), otio.opentime.RationalTime(75, rate))))
    timeline.tracks.append(track)
    edit = tmp_path / "edit.otio"
    otio.adapters.write_to_file(timeline, str(edit))
    edit_bytes = edit.read_bytes()
    out = tmp_path / "results"
    proc = cli(manifest, edit, "-o", out, "--face-cropped", "--workers", "2", "--no-progress")
    assert proc.returncode in (0, 1), proc.stderr
    results = read_results(out)
    assert len(results) == 3
    media = [r for r in results if r["kind"] == "media"]
    assert all(r["options"]["standard"] == "ebu-r37" and "qc" in r for r in media)
    (tl,) = [r for r in results if r["kind"] == "timeline"]
    assert tl["status"] == "ok" and tl["timeline_report"]["summary"]["clips_analysed"] == 1
    annotated = otio.adapters.read_from_file(str(out / tl["timeline"]))
    assert any("lipsync" in m.metadata for c in annotated.find_clips() for m in c.markers)
    assert edit.read_bytes() == edit_bytes  # never overwrite inputs
    bad = tmp_path / "bad.csv"
    bad.write_text("path,colour\nx.mp4,red\n")
    proc = cli(bad, "-o", out)
    assert proc.returncode == 2 and "unknown option(s) colour" in proc.stderr and str(bad) in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_driver_resumes_without_duplicates_or_losses(tmp_path, sig):
    clips = grid_clips(KILLED_CLIPS)
    out = tmp_path / "results"
    args = [*clips, "-o", out, "--face-cropped", "--workers", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT as a terminal delivers it: a test run started in the background (nohup ... &) has it ignored,
    # and an ignored SIGINT is inherited, so the driver would never see the Ctrl-C this test sends
    proc = subprocess.Popen([sys.executable, "-m", "otio_lipsync", "batch", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(item_files(out)) < 5:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.killpg(proc.pid, sig)  # the driver and its pool, as a Ctrl-C or a kill -9 of the job would
    proc.wait(60)
    proc.stderr.close()
    kept = {p.stem for p in item_files(out)}
    assert 5 <= len(kept) < len(clips)
    for p in item_files(out):
        json.loads(p.read_text())  # every file there is complete
    runs_before = (out / "runs.jsonl").read_text().splitlines()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    assert f"{len(kept)} of {len(clips)} item(s) already have a result" in again.stderr
    results = read_results(out)
    assert sorted(Path(r["file"]).name for r in results) == sorted(c.name for c in clips)
    assert len({r["key"] for r in results}) == len(clips) and all(r["status"] == "ok" for r in results)
    assert {p.stem for p in item_files(out)} == {r["key"] for r in results}
    redone = [json.loads(line)["key"] for line in (out / "runs.jsonl").read_text().splitlines()[len(runs_before):]]
    assert not set(redone) & kept and len(redone) == len(set(redone)) == len(clips) - len(kept)  # nothing computed twice
    no_temp_files(out)


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="needs ray (pip install 'otio-lipsync[ray]')")
    pid_dir = tmp_path_factory.mktemp("pids")
    os.environ["LIPSYNC_BATCH_PID_DIR"] = str(pid_dir)  # the workers inherit it
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray, pid_dir
    ray.shutdown()
    os.environ.pop("LIPSYNC_BATCH_PID_DIR", None)


def test_ray_worker_killed_is_retried_and_matches_local_pool(tmp_path, local_ray, ffmpeg_exe):
    from otio_lipsync.batch import run_batch

    _, pid_dir = local_ray
    long_clip = need(LONG_CLIP)
    inputs = [str(p) for p in [long_clip, *grid_clips(4)]]
    broken = broken_files(tmp_path / "broken", ffmpeg_exe)
    inputs += [str(tmp_path / "broken" / name) for name in broken]
    options = {"face_cropped": True}
    on_ray = tmp_path / "ray"
    killed = {}

    def kill_long_clip_worker():
        deadline = time.time() + 120
        while time.time() < deadline:
            for pid_file in pid_dir.glob("*.pid"):
                item = json.loads((on_ray / "items" / f"{pid_file.stem}.json").read_text()) \
                    if (on_ray / "items" / f"{pid_file.stem}.json").exists() else None
                text = pid_file.read_text()
                if item is None and text and pid_file.stem == keys.get(str(long_clip)):
                    killed["pid"] = int(text)
                    os.kill(killed["pid"], signal.SIGKILL)  # mid-task: the long clip takes seconds
                    return
            time.sleep(0.02)

    from otio_lipsync.batch import assign_keys, discover

    items = discover(inputs, options=options)
    assign_keys(items)
    keys = {i.path: i.key for i in items}
    killer = threading.Thread(target=kill_long_clip_worker)
    killer.start()
    summary = run_batch(inputs, str(on_ray), options=options, ray=True, workers=2, progress=False,
                        log=lambda message: None)
    killer.join()
    assert killed, "the long clip's worker was never seen running"
    assert summary["items"] == len(inputs) and summary["failed"] == len(broken)
    long_result = json.loads((on_ray / "items" / f"{keys[str(long_clip)]}.json").read_text())
    assert long_result["status"] == "ok"
    runs = [json.loads(line) for line in (on_ray / "runs.jsonl").read_text().splitlines()]
    (long_run,) = [r for r in runs if r["key"] == keys[str(long_clip)]]
    assert long_run["pid"] != killed["pid"]  # the retry ran in a new worker

    # the same inputs on the local pool: the same bytes, item by item and in results.jsonl
    local = tmp_path / "local"
    run_batch(inputs, str(local), options=options, workers=2, progress=False, log=lambda message: None)
    assert sorted(p.name for p in (local / "items").iterdir()) == sorted(p.name for p in (on_ray / "items").iterdir())
    for p in (local / "items").iterdir():
        assert p.read_bytes() == (on_ray / "items" / p.name).read_bytes(), p.name
    assert (local / "results.jsonl").read_bytes() == (on_ray / "results.jsonl").read_bytes()
    no_temp_files(on_ray)


# --- --score: `lipsync score`'s metrics from the batch's own measurement ------------------------------------

def scored_by_lipsync_score(metric: str, model, clips, *extra) -> dict:
    """`lipsync score --json -` on CLIPS: the numbers batch --score must give, bit for bit. Through the Click
    entry point in this process (test_hostile runs `lipsync score` as a subprocess; batch here still does),
    --threads 1 as batch's worker, this process's thread count restored after."""
    import torch
    from click.testing import CliRunner

    from otio_lipsync.cli import main

    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(main, ["score", "--metric", metric, "--face-cropped", "--model", str(model),
                                           "--threads", "1", "--json", "-", *map(str, extra), *map(str, clips)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def keys_for(clips, options: dict) -> list[str]:
    from otio_lipsync.batch import assign_keys, discover

    items = discover([str(c) for c in clips], options=options)
    assign_keys(items)
    return [i.key for i in items]


def test_batch_score_lse_equals_lipsync_score_and_resumes(tmp_path, stand_in_path):
    clips = grid_clips(2)  # bit-for-bit agreement is per file: two show the per-file rows and the mean
    expected = scored_by_lipsync_score("lse", stand_in_path, clips)
    by_file = {e["file"]: e for e in expected["files"]}
    out = tmp_path / "results"
    args = [*clips, "-o", out, "--face-cropped", "--model", stand_in_path, "--score", "lse", "--workers", "1",
            "--threads", "1", "--no-progress"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    results = read_results(out)
    assert len(results) == len(clips)
    for r in results:
        e = by_file[r["file"]]
        assert r["options"]["score"] == "lse" and r["score"]["metric"] == "lse"
        assert r["score"]["values"] == {"lse_d": e["lse_d"], "lse_c": e["lse_c"]}  # exactly, not approximately
        (track,) = r["score"]["tracks"]
        assert (track["lse_d"], track["lse_c"], track["offset_frames"], track["num_windows"]) == (
            e["lse_d"], e["lse_c"], e["offset_frames"], e["num_windows"])
        assert track["offset_frames"] == r["analysis"]["offset_frames"]  # the check's own measurement
    rows = {row["file"]: row for row in csv.DictReader((out / "summary.csv").open())}
    for f, e in by_file.items():
        assert float(rows[f]["lse_d"]) == e["lse_d"] and float(rows[f]["lse_c"]) == e["lse_c"]
    summary = json.loads((out / "summary.json").read_text())["scores"]["lse"]
    assert summary["mean_over_files"] == expected["summary"]["mean_over_files"]
    assert (summary["files"], summary["tracks"], summary["failed"]) == (len(clips), len(clips), 0)
    report = (out / "report.html").read_text()
    mean_d = expected["summary"]["mean_over_files"]["lse_d"]
    assert "<th>LSE-D</th>" in report and f"LSE-D {mean_d:.3f}" in report
    assert f"LSE-D {mean_d:.3f}" in proc.stderr  # the means, as `lipsync score` prints them

    # the same command again computes nothing
    before, runs = (out / "results.jsonl").read_bytes(), (out / "runs.jsonl").read_text()
    again = cli(*args)
    assert again.returncode == 0 and f"{len(clips)} of {len(clips)} item(s) already have a result" in again.stderr, \
        again.stderr
    assert (out / "results.jsonl").read_bytes() == before and (out / "runs.jsonl").read_text() == runs
    # the metric is part of the key: another --score, or none, is another item
    options = {"face_cropped": True, "model": str(stand_in_path)}
    keys = {s: keys_for(clips, {**options, "score": s}) for s in (None, "lse", "icsyncnet")}
    assert sorted(keys["lse"]) == sorted(r["key"] for r in results)
    assert len({k for ks in keys.values() for k in ks}) == 3 * len(clips)
    # results stored before --score existed (no "score" option at all) keep their keys
    from otio_lipsync.batch import Item, assign_keys, discover

    legacy = [Item(i.path, i.kind, {k: v for k, v in i.options.items() if k != "score"})
              for i in discover([str(c) for c in clips], options=options)]
    assign_keys(legacy)
    assert [i.key for i in legacy] == keys[None]


def test_batch_score_icsyncnet_refused_up_front_with_a_distance_only_model(tmp_path, stand_in_path):
    clips = grid_clips(2)
    out = tmp_path / "results"
    proc = cli(*clips, "-o", out, "--face-cropped", "--score", "icsyncnet", "--no-progress")  # the house model
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # one line, not one failure per item
    assert "--score icsyncnet" in line and "gives distances only" in line and "--objective icsyncnet" in line
    assert not (out / "items").exists() and not (out / "runs.jsonl").exists()  # before any item ran
    manifest = tmp_path / "list.csv"  # a per-item score with a per-item model is checked the same way
    manifest.write_text(f"path,score,model\n{clips[0]},icsyncnet,{stand_in_path}\n{clips[1]},lse,\n")
    proc = cli(manifest, "-o", out, "--face-cropped", "--no-progress")
    assert proc.returncode == 2 and "gives distances only" in proc.stderr and "syncnet_v2_seed0" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (out / "items").exists()
    manifest.write_text(f"path,score\n{clips[0]},lsd\n")
    proc = cli(manifest, "-o", out, "--no-progress")
    assert proc.returncode == 2 and f"{manifest}: row 1: unknown score 'lsd'" in proc.stderr
    proc = cli(*clips, "-o", out, "--score", "lse", "--filter", tmp_path / "keep.txt", "--no-progress")
    assert proc.returncode == 2 and "--filter" in proc.stderr and "--score icsyncnet" in proc.stderr


@pytest.fixture(scope="module")
def icsyncnet_model(tmp_path_factory) -> Path:
    """A model file with IC-SyncNet probabilities, through the real exporter: untrained (seeded) weights, so its
    numbers mean nothing, but batch and `lipsync score` must agree on them exactly. (test_train.py trains
    one, which takes a dataset build and a fit: too slow to repeat here.)"""
    import torch
    from otio_lipsync.model.compact import CompactSyncNet
    from otio_lipsync.train.export import export

    torch.manual_seed(0)
    net = CompactSyncNet(audio_feature="logmel26", audio_columns=40, normalize=True).eval()
    with torch.no_grad():
        net.log_temperature.fill_(2.0)  # probabilities spread around 0.5 rather than all ~0 or ~1
        net.logit_bias.fill_(-6.0)
    target = tmp_path_factory.mktemp("ic") / "ic.model"
    export(net, {"options": {"objective": "icsyncnet"}, "step": 0}, str(target), "ic-test", scale=3.0)
    return target


def test_batch_score_icsyncnet_equals_lipsync_score_and_filters(tmp_path, icsyncnet_model):
    from otio_lipsync.metrics import passes_filter

    clips = grid_clips(3)
    expected = scored_by_lipsync_score("icsyncnet", icsyncnet_model, clips)
    by_file = {e["file"]: e for e in expected["files"]}
    probabilities = sorted(e["probability_at_offset"] for e in expected["files"])
    assert len(set(probabilities)) == 3, probabilities
    bounds = {"min_probability": probabilities[1], "max_offscreen": 1.0}  # the median: the rule keeps 2 of 3
    keep = tmp_path / "keep.txt"
    out = tmp_path / "results"
    proc = cli(*clips, "-o", out, "--face-cropped", "--model", icsyncnet_model, "--score", "icsyncnet",
               "--filter", keep, "--min-probability", repr(bounds["min_probability"]), "--max-offscreen", "1",
               "--workers", "1", "--threads", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for r in read_results(out):
        e = by_file[r["file"]]
        assert r["score"]["values"] == {"probability_at_offset": e["probability_at_offset"],
                                        "offscreen_ratio": e["offscreen_ratio"]}
        (track,) = r["score"]["tracks"]  # a face crop is one track: its values are the file's
        assert {k: track[k] for k in r["score"]["values"]} == r["score"]["values"] and "ic_offset_frames" in track
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"]["icsyncnet"]["mean_over_files"] == expected["summary"]["mean_over_files"]
    header = (out / "summary.csv").read_text().splitlines()[0].split(",")
    assert "probability_at_offset" in header and "offscreen_ratio" in header and "lse_d" not in header
    kept = [f for f in sorted(by_file) if passes_filter(by_file[f], **bounds)]
    assert len(kept) == 2 and keep.read_text().splitlines() == kept
    assert summary["filter"]["kept"] == 2 and "2 file(s) pass" in proc.stderr


def test_the_device_is_not_part_of_an_items_key(tmp_path):
    """A batch measured on the CPU and re-run with --device cuda on a GPU machine skips what is done: the
    device changes where the network runs, not the result."""
    from otio_lipsync.batch import assign_keys, discover

    source = str(clip("synced_mead_m030_01.mp4"))
    keys = {}
    for device in ("cpu", "cuda"):
        items = discover([source], options={"device": device})
        assign_keys(items)
        keys[device] = items[0].key
    assert keys["cpu"] == keys["cuda"]
    items = discover([source], options={"precision": "int8"})
    assign_keys(items)
    assert items[0].key != keys["cpu"]  # a precision does change results

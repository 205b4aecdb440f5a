"""Hostile input and faults: files that want to run code, damaged files, odd file types, killed runs.
Each case: one line naming the file (or option), a non-zero exit, nothing executed, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from otio_lipsync.train.cli import main as train_cli

from otio_lipsync.cli import main as lipsync

from .conftest import reference_input, run_ffmpeg

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ["otio_lipsync", "model", "train", "ffmpeg_filter"]


def test_every_torch_load_in_the_tree_is_weights_only():
    """A torch.load that may unpickle objects runs code from whoever wrote the file."""
    offenders = []
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(r"torch\.load\(", text):
                depth, end = 0, match.end() - 1
                for end in range(match.end() - 1, len(text)):  # the whole call, nested parentheses included
                    depth += {"(": 1, ")": -1}.get(text[end], 0)
                    if depth == 0:
                        break
                call = text[match.start():end + 1]
                if not re.search(r"weights_only\s*=\s*True", call):
                    line = text.count("\n", 0, match.start()) + 1
                    offenders.append(f"{path.relative_to(REPO)}:{line}: {call}")
    assert not offenders, "torch.load without weights_only=True:\n" + "\n".join(offenders)


def _evil_file(path: Path, marker: Path, checkpoint_like: bool = True) -> Path:
    """A real torch file whose unpickling would call os.mkdir(marker)."""

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    payload = {"model": {"w": Payload()}, "model_config": {}, "options": {"arch": "compact"}, "step": 1}
    torch.save(payload if checkpoint_like else {"netcnnaud.0.weight": Payload()}, path)
    return path


def _one_error_line(result, path) -> str:
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0], result.output
    return lines[0]


@pytest.mark.parametrize("case", ["eval", "export", "fit --resume", "check --model"])
def test_a_crafted_pickle_never_runs(tmp_path, case):
    marker = tmp_path / "code-ran"
    run = tmp_path / "run"
    run.mkdir()
    evil = _evil_file(run / "checkpoint.pt", marker)
    if case == "eval":
        result = CliRunner().invoke(train_cli, ["eval", str(evil), str(tmp_path / "data")])
    elif case == "export":
        result = CliRunner().invoke(train_cli, ["export", str(evil), "-o", str(tmp_path / "x.model")])
        assert not (tmp_path / "x.model").exists()
    elif case == "fit --resume":
        result = CliRunner().invoke(train_cli, ["fit", str(tmp_path / "data"), "-o", str(run), "--resume"])
    else:
        media = tmp_path / "a.mp4"
        media.write_bytes(b"never read")
        result = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--model", str(evil), str(media)])
    line = _one_error_line(result, evil)
    assert "run code" in line
    assert not marker.exists(), "the file's code ran"


@pytest.mark.parametrize("content", [None, b"", b"PK\x03\x04 truncated", "wrong-shape", "not-a-checkpoint"])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_train_commands_name_a_missing_empty_or_damaged_file(tmp_path, content, command):
    path = tmp_path / "bad.pt"
    if content == "wrong-shape":
        from otio_lipsync.model.compact import CompactSyncNet

        state = CompactSyncNet().state_dict()
        key = next(iter(state))
        state[key] = torch.zeros(3, 3)
        torch.save({"model": state, "model_config": {}, "options": {"arch": "compact"}, "step": 1}, path)
    elif content == "not-a-checkpoint":
        torch.save({"weights": torch.zeros(2)}, path)
    elif content is not None:
        path.write_bytes(content)
    args = ["eval", str(path), str(tmp_path)] if command == "eval" else ["export", str(path), "-o",
                                                                         str(tmp_path / "x.model")]
    _one_error_line(CliRunner().invoke(train_cli, args), path)
    assert not (tmp_path / "x.model").exists()


def test_fit_resume_refuses_a_damaged_checkpoint_rather_than_restarting(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04" + b"\0" * 100)  # a write cut short
    (run / ".lipsync-abc123.pt").write_bytes(b"half a checkpoint")  # the temp file of a killed write
    result = CliRunner().invoke(train_cli, ["fit", str(tmp_path / "data"), "-o", str(run), "--resume"])
    _one_error_line(result, run / "checkpoint.pt")
    assert (run / "checkpoint.pt").read_bytes().startswith(b"PK"), "the damaged checkpoint is left for the user"
    assert not (run / ".lipsync-abc123.pt").exists(), "the killed write's temp file is swept"


def test_one_channel_of_a_7_1_aac_stream_is_measured_and_fixed(stand_in_path, ffmpeg_exe, tmp_path):
    """PyAV crashed (SIGSEGV, exit 139) reading one channel of 7.1 AAC. Dialogue (120 ms late) on the
    centre channel, silence elsewhere; run as a user does, in a process of its own, so a crash shows."""
    src = tmp_path / "dialogue_centre_7.1.mp4"
    # 2.4 s: 55 windows, the stand-in still finds -3; the test is about decoding the channel, three times
    run_ffmpeg(ffmpeg_exe, "-i", str(reference_input("hdtf_aoc_delay3")), "-t", "2.4", "-c:v", "copy", "-af",
               "pan=7.1|c0=0*c0|c1=0*c0|c2=c0|c3=0*c0|c4=0*c0|c5=0*c0|c6=0*c0|c7=0*c0", "-c:a", "aac", str(src))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "otio_lipsync"]
    check = subprocess.run([*cmd, "check", "--face-cropped", "--model", str(stand_in_path), "--channel", "2",
                            "--json", "-", str(src)], capture_output=True, text=True, env=env)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)[0]["offset_frames"] == -3
    out = tmp_path / "fixed.mp4"
    fixed = subprocess.run([*cmd, "fix", str(src), "-o", str(out), "--channel", "2", "--face-cropped", "--model",
                            str(stand_in_path)], capture_output=True, text=True, env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert f"{out}: residual +0 ms" in fixed.stdout
    assert not list(tmp_path.glob("lipsync-fix-*")), "fix leaves no work folder behind"


def _lipsync(*args, timeout=300) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, with a deadline: a hang fails the test instead of stalling CI."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "otio_lipsync", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _grid_clip() -> Path:
    from .test_batch import grid_clips

    return grid_clips(1)[0]


@pytest.mark.parametrize("command", ["check", "score", "batch"])
def test_a_fifo_is_refused_in_one_line_and_the_other_files_are_measured(tmp_path, stand_in_path, command):
    """A FIFO with no writer blocked the whole run forever (check FILE, score DIR, batch DIR)."""
    folder = tmp_path / "media"
    folder.mkdir()
    good = folder / "a_good.mp4"
    good.symlink_to(_grid_clip())
    fifo = folder / "b_stuck.mp4"
    os.mkfifo(fifo)
    model = ["--model", str(stand_in_path)]
    if command == "check":
        proc = _lipsync("check", "--face-cropped", *model, "--json", "-", good, fifo)
        measured = [r for r in json.loads(proc.stdout) if "error" not in r]
    elif command == "score":
        proc = _lipsync("score", "--face-cropped", *model, "--json", "-", folder)
        measured = [f for f in json.loads(proc.stdout)["files"] if "error" not in f]
    else:
        out = tmp_path / "results"
        proc = _lipsync("batch", folder, "-o", out, "--face-cropped", *model, "--workers", "1", "--no-progress")
        measured = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        measured = [r for r in measured if r["status"] == "ok"]
    assert proc.returncode == 2, proc.stderr
    assert [Path(r["file"]).name for r in measured] == ["a_good.mp4"]
    lines = [line for line in proc.stderr.splitlines() if str(fifo) in line and "not a regular file" in line]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unreadable_file_is_one_line_and_the_others_are_measured(tmp_path, stand_in_path):
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(_grid_clip().read_bytes())
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as root (or with CAP_DAC_OVERRIDE): a mode-000 file is still readable here")
    proc = _lipsync("check", "--face-cropped", "--model", stand_in_path, "--json", "-", _grid_clip(), locked)
    assert proc.returncode == 2, proc.stderr
    results = json.loads(proc.stdout)
    assert "error" not in results[0] and "permission denied" in results[1]["error"]
    assert f"{locked}: permission denied" in proc.stderr


@pytest.mark.parametrize("content", ["utf-16", "binary"])
def test_a_manifest_that_is_not_utf8_text_is_one_line(tmp_path, content):
    manifest = tmp_path / "reels.csv"
    if content == "utf-16":
        manifest.write_text("path,face_cropped\nx.mp4,true\n", encoding="utf-16")
    else:
        manifest.write_bytes(bytes(range(256)) * 4)
    proc = _lipsync("batch", manifest, "-o", tmp_path / "out", "--no-progress")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(manifest) in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_a_corrupt_item_file_is_recomputed_with_a_warning(tmp_path, stand_in_path):
    out = tmp_path / "results"
    args = [_grid_clip(), "-o", out, "--face-cropped", "--model", stand_in_path, "--workers", "1", "--no-progress"]
    assert _lipsync("batch", *args).returncode == 0
    item = next((out / "items").glob("*.json"))
    whole = item.read_text()
    from otio_lipsync.batch import has_result

    messages = []
    for damage in (whole[: len(whole) // 2], "", "{}", "\xff\xfe"):  # the rule, without a batch per case
        item.write_text(damage, encoding="latin-1")
        assert not has_result(str(out), item.stem, messages.append)
    assert len(messages) == 4 and all(str(item) in m and "recomputing" in m for m in messages)
    item.write_text("")  # and the whole run: the batch recomputes it
    proc = _lipsync("batch", *args)
    assert proc.returncode == 0, proc.stderr
    assert f"{item}:" in proc.stderr and "recomputing" in proc.stderr
    assert json.loads(item.read_text())["status"] == "ok"


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, ffmpeg_exe) -> Path:
    """2 s of test pattern and tone: enough for fix, no face needed with --no-verify."""
    path = tmp_path_factory.mktemp("media") / "small.mp4"
    run_ffmpeg(ffmpeg_exe, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=16000:duration=2", "-c:v", "libx264", "-c:a", "aac", "-shortest",
               str(path))
    return path


def _refused(result, *words) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--json", "{tmp}"], ["{tmp}", "is a directory"]),
    (["--json", "{tmp}/no/such/x.json"], ["x.json", "no such folder"]),
    (["--batch-size", "0"], ["--batch-size 0"]),
    (["--vshift", "-1"], ["--vshift -1"]),
    (["--vshift", "100000"], ["--vshift 100000", "250"]),
    (["--threads", "0"], ["--threads 0"]),
])
def test_check_options_that_cannot_work_are_refused_up_front(tmp_path, small_clip, args, words):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(lipsync, ["check", "--face-cropped", *args, str(small_clip)])
    _refused(result, *[w.replace("{tmp}", str(tmp_path)) for w in words])


@pytest.mark.parametrize("delay", ["nan", "inf", "-inf", "1e9", "-1e9", "2000"])
def test_fix_refuses_a_delay_that_is_not_finite_or_longer_than_the_media(tmp_path, small_clip, delay, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(lipsync, ["fix", str(small_clip), "-o", str(out), "--delay-ms", delay, "--no-verify"])
    _refused(result, str(small_clip), "--delay-ms")
    assert not out.exists() and not list(tmp_path.glob("lipsync-fix-*")) and not list(tmp_path.glob(".lipsync-*"))


def test_fix_within_the_duration_still_works_and_a_folder_as_output_is_refused(tmp_path, small_clip):
    ok = CliRunner().invoke(lipsync, ["fix", str(small_clip), "-o", str(tmp_path / "ok.mp4"), "--delay-ms", "1900",
                                      "--no-verify"])
    assert ok.exit_code == 0, ok.output
    _refused(CliRunner().invoke(lipsync, ["fix", str(small_clip), "-o", str(tmp_path), "--delay-ms", "40",
                                          "--no-verify"]), str(tmp_path), "is a directory")


@pytest.mark.parametrize("delay", ["nan", "inf"])
def test_otio_refuses_a_delay_that_is_not_finite(tmp_path, delay):
    result = CliRunner().invoke(lipsync, ["otio", str(tmp_path / "edit.otio"), "-o", str(tmp_path / "out.otio"),
                                          "--delay-ms", delay])
    _refused(result, "delay_ms", "finite")


def test_a_model_with_nan_weights_is_refused_not_measured(tmp_path, stand_in, small_clip):
    state = stand_in.net.state_dict()
    state["netfcaud.3.weight"] = torch.full_like(state["netfcaud.3.weight"], float("nan"))
    path = tmp_path / "diverged.model"
    torch.save(state, path)
    result = CliRunner().invoke(lipsync, ["check", "--face-cropped", "--model", str(path), str(small_clip)])
    _refused(result, str(path), "NaN")


def _running(pid: int) -> bool:
    """True while pid runs (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_fix_takes_its_ffmpeg_with_it_and_leaves_nothing_behind(tmp_path, small_clip, sig):
    """kill -TERM: ffmpeg stopped, temp output and work folder removed at once. kill -9: ffmpeg dies with
    its parent (Linux parent-death signal); the next fix sweeps the dead run's temp files."""
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    work = tmp_path / "tmp"
    work.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    pid_file = tmp_path / "ffmpeg.pid"
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")  # an ffmpeg that takes its time
    slow.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(work)}
    fix = [sys.executable, "-m", "otio_lipsync", "fix", str(small_clip), "--delay-ms", "40", "--no-verify",
           "--method", "reencode"]
    proc = subprocess.Popen([*fix, "-o", str(out_dir / "a.mp4"), "--ffmpeg", str(slow)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()
        time.sleep(0.05)
    ffmpeg_pid = int(pid_file.read_text())
    assert list(work.glob("lipsync-fix-*")) and list(out_dir.glob(".lipsync-*"))  # the run is under way
    proc.send_signal(sig)
    proc.wait(30)
    proc.stderr.close()
    deadline = time.time() + 10
    while _running(ffmpeg_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _running(ffmpeg_pid), "ffmpeg outlived lipsync"
    assert not (out_dir / "a.mp4").exists()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
    else:  # the next fix (any output in that folder) sweeps what the killed one left
        again = subprocess.run([*fix, "-o", str(out_dir / "b.mp4")], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
    assert not list(work.glob("lipsync-fix-*")), "work folder left behind"
    assert not list(out_dir.glob(".lipsync-*")), "temp output left behind"


def test_workers_are_capped_and_a_results_folder_takes_a_lock(tmp_path, stand_in_path):
    from otio_lipsync.batch import lock_results

    out = tmp_path / "results"
    args = [_grid_clip(), "-o", out, "--face-cropped", "--model", stand_in_path, "--no-progress"]
    proc = _lipsync("batch", *args, "--workers", "1000")
    assert proc.returncode == 0, proc.stderr
    assert "--workers 1000 capped at" in proc.stderr
    held = lock_results(str(out))  # a batch that is still running on the folder
    try:
        second = _lipsync("batch", *args, "--force")
    finally:
        held.close()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "another lipsync batch" in lines[0], second.stderr
    lock_results(str(out)).close()  # released again: the next batch may take it


def test_kill_9_of_the_batch_driver_takes_its_workers_with_it(tmp_path, stand_in_path):
    from .test_batch import grid_clips

    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIPSYNC_BATCH_PID_DIR": str(pids)}
    proc = subprocess.Popen([sys.executable, "-m", "otio_lipsync", "batch", *map(str, grid_clips(6)), "-o", str(out),
                             "--face-cropped", "--model", str(stand_in_path), "--workers", "2", "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(pids.glob("*.pid"))) < 1:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # the pid file is written before its content
    workers = {int(p.read_text()) for p in pids.glob("*.pid") if p.read_text().strip()}
    assert workers
    proc.kill()
    proc.wait(30)
    deadline = time.time() + 15
    while any(_running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_running(w) for w in workers), "pool workers outlived the killed driver"


@pytest.mark.parametrize("column, value, words", [
    ("standard", "not-a-standard", "unknown standard"),
    ("channel", "abc", "channel must be"),
    ("face_cropped", "maybe", "face_cropped must be"),
    ("fix_method", "sideways", "fix_method must be"),
])
def test_manifest_values_are_checked_before_any_item_runs(tmp_path, column, value, words):
    manifest = tmp_path / "reels.csv"
    manifest.write_text(f"path,{column}\na.mp4,{value}\n")
    proc = _lipsync("batch", manifest, "-o", tmp_path / "out", "--no-progress")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(manifest) in lines[0] and "row 1" in lines[0] and words in lines[0], proc.stderr


def test_a_manifest_channel_of_1_is_channel_1_not_true(tmp_path):
    from otio_lipsync.batch import read_manifest

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,channel,audio_stream\na.mp4,1,0\n")
    (_, options), = read_manifest(str(manifest))
    assert options["channel"] == 1 and type(options["channel"]) is int and type(options["audio_stream"]) is int


def test_a_download_that_drips_is_dropped_at_its_deadline(tmp_path, monkeypatch):
    """A server sending a byte now and then never trips a per-read timeout: the whole download has one."""
    import socket
    import threading

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.1)

    threading.Thread(target=drip, daemon=True).start()
    try:
        started = time.monotonic()
        result = CliRunner().invoke(lipsync, ["models", "download", "slow", "--url",
                                              f"http://127.0.0.1:{server.getsockname()[1]}/slow.model",
                                              "--deadline", "1"])
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    assert result.exit_code == 2 and elapsed < 10, result.output
    assert "deadline" in result.output and "slow" in result.output
    assert not list((tmp_path / "cache").rglob("*.part")) and not list((tmp_path / "cache").rglob("*.model"))


def test_a_killed_batch_writes_temp_files_the_next_batch_sweeps(tmp_path):
    from otio_lipsync.outputs import sweep_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    (tmp_path / f".lipsync-{pid}-abc.json").write_text("{")
    (tmp_path / f".lipsync-{os.getpid()}-live.json").write_text("{")  # a live process's: kept
    (tmp_path / ".lipsync-notapid.json").write_text("{")  # not ours to judge: kept
    removed = sweep_stale(str(tmp_path))
    assert [Path(p).name for p in removed] == [f".lipsync-{pid}-abc.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".lipsync-{os.getpid()}-live.json",
                                                                 ".lipsync-notapid.json"])

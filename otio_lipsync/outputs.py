"""Writing outputs atomically: a temp file beside the target, renamed into place only when complete,
so a crash or a failed command never leaves a half-written file (and never touches an existing one)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

from .errors import OutputError


TEMP_PREFIX = ".lipsync-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory: str, prefix: str = TEMP_PREFIX) -> list[str]:
    """Remove `<prefix><pid>-*` files and folders in `directory` that are ours and whose process no longer
    runs: what a kill -9 leaves (temp outputs, work folders). Returns the removed paths."""
    import shutil

    removed = []
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name[len(prefix):].split("-", 1)[0]
        try:
            if not pid.isdigit() or _alive(int(pid)) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            continue
    return removed


def check_target(target: str) -> None:
    """OutputError unless `target` can become a file: the commands call this before any work, so a bad -o
    or --json is refused up front instead of after the measurement (whose result would be lost)."""
    if target == "-":
        return
    if os.path.isdir(target):
        raise OutputError(target, "is a directory: name the file to write")
    directory = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(directory):
        raise OutputError(target, f"cannot write into {directory}: no such folder")
    if not os.access(directory, os.W_OK):
        raise OutputError(target, f"cannot write into {directory}: permission denied")


@contextlib.contextmanager
def atomic_output(target: str, suffix: str | None = None):
    """Yield a temp path in the target's folder; on success it becomes `target` with the usual
    permissions (0666 minus the umask, not mkstemp's 0600); on failure it is removed."""
    check_target(target)
    directory = os.path.dirname(os.path.abspath(target))
    suffix = suffix if suffix is not None else (os.path.splitext(target)[1] or ".tmp")
    # the pid in the name lets a later run tell a killed run's leftovers from a live one's (sweep_stale)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str, payload) -> None:
    """`-` is stdout; a file is written to a temp file beside it and renamed into place. OutputError (one
    line naming the file) when it cannot be written."""
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with atomic_output(path, ".json") as tmp, open(tmp, "w") as f:
            f.write(text)
    except OSError as exc:
        raise OutputError(path, f"cannot write it ({exc.strerror or exc})") from None

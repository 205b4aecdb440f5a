"""Writing outputs atomically: a temp file beside the target, renamed into place only when complete,
so a crash or a failed command never leaves a half-written file (and never touches an existing one)."""

from __future__ import annotations

import contextlib
import os
import tempfile

from .errors import OutputError


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
    fd, tmp = tempfile.mkstemp(prefix=".lipsync-", suffix=suffix, dir=directory)
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

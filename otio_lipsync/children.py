"""Processes that end with lipsync: ffmpeg children and batch pool workers die with their parent (even
after a kill -9 of it), and a SIGTERM runs the same clean-up as an error (temp files removed)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a child (subprocess preexec_fn, pool initializer): Linux sends it SIGKILL when its parent ends.
    A no-op elsewhere. parent_pid closes the race where the parent died before the request was made."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit(143): `finally` blocks and context managers run (temp files and work
    folders removed, a running ffmpeg killed by subprocess.run) as they do for an error."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)

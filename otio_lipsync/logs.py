"""Quiet by default. Third-party warnings, log records and the lines native runtimes write straight to
file descriptor 2 (TFLite's "Created TensorFlow Lite XNNPACK delegate") reach stderr only with `-v`;
`--log FILE` receives them whatever -v says, with lipsync's own lines. Worker processes (batch) inherit
the choice through the environment, so they are as quiet as the command that started them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

VERBOSE_ENV = "OTIO_LIPSYNC_VERBOSE"
LOG_ENV = "OTIO_LIPSYNC_LOG"
FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"

logger = logging.getLogger("otio_lipsync")
echo_logger = logging.getLogger("otio_lipsync.echo")  # copies of the lines lipsync prints: --log file only
_handlers: list[logging.Handler] = []


def verbose() -> bool:
    return bool(os.environ.get(VERBOSE_ENV))


def log_file() -> str | None:
    return os.environ.get(LOG_ENV) or None


def configure(verbose: bool = False, log_path: str | None = None) -> None:
    """Set this process up (the CLI, once per command) and the environment its workers inherit."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    if log_path:
        os.environ[LOG_ENV] = os.path.abspath(log_path)
    else:
        os.environ.pop(LOG_ENV, None)
    configure_from_env()


def configure_from_env() -> None:
    """What configure() chose, applied in this process (a batch worker calls this)."""
    root = logging.getLogger()
    for handler in _handlers:
        root.removeHandler(handler)
        handler.close()
    _handlers.clear()
    if verbose():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        handler.addFilter(lambda record: not record.name.startswith(echo_logger.name))  # already printed
        _handlers.append(handler)
    if log_file():
        handler = logging.FileHandler(log_file(), encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        _handlers.append(handler)
    if not _handlers:
        _handlers.append(logging.NullHandler())  # keeps logging's last-resort printer off stderr
    for handler in _handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(verbose() or bool(log_file()))
    warnings.simplefilter("default" if verbose() or log_file() else "ignore")


@contextlib.contextmanager
def native_stderr():
    """Around calls into native code that logs to fd 2: those lines go to the --log file, or nowhere
    unless -v. (Environment variables such as TF_CPP_MIN_LOG_LEVEL do not reach LiteRT's logger.)"""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no fd 2 to redirect (a daemon): nothing to silence
        yield
        return
    try:
        with open(log_file() or os.devnull, "a") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)

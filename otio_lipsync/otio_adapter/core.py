"""The work behind the `lipsync` adapter (`lipsync.py`, which OTIO loads by file path as its own module, so
its classes live here, in a normally imported module) and `lipsync otio`: options, reading, annotating."""


from __future__ import annotations

import math
import os

import opentimelineio as otio

from ..errors import MessageError

BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


class LipsyncAdapterError(otio.exceptions.OTIOError, MessageError):
    """One line: the file and the problem. An OTIOError (as OTIO's own adapters' errors) and a LipsyncError."""


def _bool(name, value):
    if isinstance(value, bool):
        return value
    try:
        return BOOL[str(value).strip().lower()]
    except KeyError:
        raise LipsyncAdapterError(f"option {name}={value!r}: expected true or false") from None


def _float(name, value):
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LipsyncAdapterError(f"option {name}={value!r}: expected a number") from None
    if not math.isfinite(number):  # nan or inf would reach ffmpeg and the markers
        raise LipsyncAdapterError(f"option {name}={value!r}: expected a finite number")
    return number


def _number(value):
    """A reader argument from the command line: a number when it looks like one."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def parse_options(raw: dict):
    """Adapter arguments (strings from otioconvert, or Python values) -> (timeline.Options, report path,
    arguments for the source adapter: every `source_X=...` except source_adapter, as X=...)."""
    from .timeline import Options

    raw = dict(raw)
    report = raw.pop("report", None)
    reader_args = {k[len("source_"):]: _number(raw.pop(k)) for k in list(raw)
                   if k.startswith("source_") and k != "source_adapter"}
    known = set(Options.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise LipsyncAdapterError(f"unknown option(s) {', '.join(unknown)} (known: "
                                  f"source_adapter, source_<reader argument>, report, {', '.join(sorted(known))})")
    opts = Options()
    for key, value in raw.items():
        if key in ("slip", "unslip", "face_cropped", "quiet"):
            setattr(opts, key, _bool(key, value))
        elif key in ("min_confidence", "handle_s"):
            setattr(opts, key, _float(key, value))
        elif key in ("slip_min_confidence", "delay_ms"):
            setattr(opts, key, _float(key, value))
        else:
            setattr(opts, key, None if value is None else str(value))
    if opts.slip and opts.unslip:
        raise LipsyncAdapterError("slip and unslip together: choose one")
    return opts, report, reader_args


def read_source(filepath: str, source_adapter: str | None = None, reader_args: dict | None = None):
    """The timeline another adapter reads from filepath; one clear line on any failure."""
    if not os.path.isfile(filepath):
        raise LipsyncAdapterError(f"{filepath}: no such file")
    try:
        name = source_adapter or otio.adapters.from_filepath(filepath).name
    except otio.exceptions.NoKnownAdapterForExtensionError:
        suffix = os.path.splitext(filepath)[1] or "(none)"
        raise LipsyncAdapterError(f"{filepath}: no OTIO adapter reads {suffix!r} files (pass source_adapter=NAME; "
                                  f"`otiopluginfo` lists them)") from None
    if name == "lipsync":
        raise LipsyncAdapterError(f"{filepath}: source_adapter cannot be lipsync itself")
    try:
        result = otio.adapters.read_from_file(filepath, adapter_name=name, **(reader_args or {}))
    except otio.exceptions.NotSupportedError as exc:
        raise LipsyncAdapterError(f"{filepath}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input: one line, the file and why
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LipsyncAdapterError(f"{filepath}: not a readable {name} timeline ({reason[:200]})") from None
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline))
        if len(timelines) != 1:
            raise LipsyncAdapterError(f"{filepath}: holds {len(timelines)} timelines; lipsync reads exactly one")
        result = timelines[0]
    if not isinstance(result, otio.schema.Timeline):
        raise LipsyncAdapterError(f"{filepath}: holds a {type(result).__name__}, not a timeline")
    return result


def annotate_file(filepath: str, source_adapter: str | None = None, engine=None, log=None, **options):
    """-> (annotated timeline, Report). The work behind read_from_file and `lipsync otio`."""
    from ..errors import BadWeights, DetectorUnavailable, LipsyncError, ModelNotFound
    from ..outputs import write_json_atomic
    from .timeline import process_timeline

    opts, report_path, reader_args = parse_options(options)
    timeline = read_source(filepath, source_adapter, reader_args)
    try:
        report = process_timeline(timeline, filepath, opts, engine=engine, log=log)
    except (ModelNotFound, BadWeights, DetectorUnavailable) as exc:
        raise LipsyncAdapterError(str(exc)) from None
    if report_path:
        try:
            write_json_atomic(report_path, report.to_dict())
        except LipsyncError as exc:
            raise LipsyncAdapterError(str(exc)) from None
    if not opts.quiet:
        import sys

        print(f"lipsync: {filepath}:\n{report.table()}", file=sys.stderr)
    return timeline, report

"""lipsync: measure lip sync under every clip of a timeline and return it annotated (otio-lipsync).

Reads any timeline another OTIO adapter reads (.otio, .edl, .xml, ...), analyses the used source range of
each clip's media (plus a handle) with SyncNet, and adds markers in the clip's source time:
  - one per clip, named with the essentials, e.g. `lipsync +120ms late conf 7.4`, coloured by verdict:
    GREEN in sync within EBU R37 (sound leads <= 40 ms, lags <= 60 ms), YELLOW detectable (outside R37,
    within ITU-R BT.1359 acceptability: leads <= 90 ms, lags <= 185 ms), RED beyond BT.1359,
    BLUE no face / confidence below min_confidence, MAGENTA not analysed (missing media, image sequence);
    the full numbers, model name + sha256 and tool version are in marker.metadata["lipsync"];
  - CYAN, one per active-speaker segment (`lipsync speaker 0 conf 6.1`);
  - PINK on an audio clip that was slipped.
Sign: audio_delay_ms > 0 means the sound comes after the picture (late).

Usage:
  otioconvert -i edit.otio -I lipsync -a slip=true -o out.otio
  otio.adapters.read_from_file("edit.otio", adapter_name="lipsync", slip=True)

Options (otioconvert passes `-a key=value` as strings; true/false, numbers and paths are parsed):
  source_adapter=NAME     adapter that reads the file (default: chosen by its suffix)
  slip=true               shift each paired audio clip's source start by the measured delay (in its rate),
                          when confidence >= slip_min_confidence and the media has room; the original start
                          is kept in clip.metadata["lipsync"]["slip"]
  unslip=true             restore every start lipsync slipped (no analysis)
  media_root=DIR          relative target_urls are looked up here first, then beside the timeline file
  cache_dir=DIR           analysis cache (default ~/.cache/otio-lipsync/analyses; `none`: no cache)
  model=NAME|PATH         model (default: the default model, see `lipsync models`)
  min_confidence=3.0      below it a measurement is `low conf` (BLUE) and never slipped
  slip_min_confidence=N   threshold for slipping (default: min_confidence)
  face_cropped=true       the media is already a face crop (default: raw footage, faces detected and tracked)
  handle_s=0.5            seconds decoded before and after each clip's used range
  delay_ms=N              do not measure: take N ms (positive: sound late) for every clip, e.g. to slip by hand
  report=PATH             also write a JSON report (per clip, summary)
  quiet=true              no progress lines on stderr (warnings are still printed)
"""

from __future__ import annotations

import os

import opentimelineio as otio

BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


class LipsyncAdapterError(otio.exceptions.OTIOError):
    """One line: the file and the problem."""


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
        return float(value)
    except (TypeError, ValueError):
        raise LipsyncAdapterError(f"option {name}={value!r}: expected a number") from None


def parse_options(raw: dict):
    """Adapter arguments (strings from otioconvert, or Python values) -> timeline.Options, report path."""
    from otio_lipsync.timeline import Options

    raw = dict(raw)
    report = raw.pop("report", None)
    known = set(Options.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise LipsyncAdapterError(f"unknown option(s) {', '.join(unknown)} (known: "
                                  f"source_adapter, report, {', '.join(sorted(known))})")
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
    return opts, report


def read_source(filepath: str, source_adapter: str | None = None):
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
        result = otio.adapters.read_from_file(filepath, adapter_name=name)
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
    from otio_lipsync.errors import LipsyncError
    from otio_lipsync.model import BadWeights, ModelNotFound
    from otio_lipsync.timeline import process_timeline

    opts, report_path = parse_options(options)
    timeline = read_source(filepath, source_adapter)
    try:
        report = process_timeline(timeline, filepath, opts, engine=engine, log=log)
    except (ModelNotFound, BadWeights) as exc:
        raise LipsyncAdapterError(str(exc)) from None
    if report_path:
        from otio_lipsync.cli import write_json_atomic

        try:
            write_json_atomic(report_path, report.to_dict())
        except LipsyncError as exc:
            raise LipsyncAdapterError(str(exc)) from None
    if not opts.quiet:
        import sys

        print(f"lipsync: {filepath}:\n{report.table()}", file=sys.stderr)
    return timeline, report


def read_from_file(filepath, source_adapter=None, **options):
    """Read filepath with source_adapter (default: by suffix), analyse every clip, return the annotated
    timeline. Options: see the module docstring."""
    timeline, _ = annotate_file(filepath, source_adapter, **options)
    return timeline

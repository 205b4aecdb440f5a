"""The Python API: what `import otio_lipsync` gives to call.

    import otio_lipsync as lipsync

    model = lipsync.load_model()                      # the house model (or "syncnet_v2", or a file)
    result = lipsync.check("interview.mp4", model=model)
    print(result.audio_delay_ms, result.confidence, result.verdict)
    result.to_dict()                                  # exactly one entry of `lipsync check --json`
    lipsync.fix("interview.mp4", "fixed.mp4", model=model)   # measure, then write a copy in sync
    lipsync.score("generated.mp4", face_cropped=True, model="syncnet_v2").values   # LSE-D / LSE-C
    timeline, report = lipsync.annotate_timeline("edit.otio", slip=True)

Every function raises a `LipsyncError` subclass (errors.py) on bad input, a bad model or option, and never
exits or prints unless asked to. The `lipsync` CLI is a thin layer over these functions; `lipsync batch`,
the OTIO adapter and the CLI share their engine construction and pipeline dispatch (pipeline.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import MediaNotFound, NoSync, OptionError, OutputError
from .pipeline import DEFAULT_DETECTOR, ModelLike, load_model, make_detector, make_engine, measure

if TYPE_CHECKING:
    from .analysis import Analysis
    from .faces.detectors import FaceDetector
    from .footage import FootageOptions
    from .metrics import FileScore
    from .otio_adapter.timeline import Report

__all__ = ["DEFAULT_DETECTOR", "FixResult", "annotate_timeline", "check", "fix", "load_model", "make_detector",
           "make_engine", "measure", "qc_verdict", "score", "score_file"]


def check(path: str | os.PathLike, *, model: ModelLike = None, face_cropped: bool = False,
          options: FootageOptions | None = None, detector: FaceDetector | None = None, audio_stream: int = 0,
          channel: int | None = None, max_offset_ms: float | None = None, precision: str = "float32",
          reference_decode: bool = False, ffmpeg: str | None = None,
          progress: bool | Callable[[int, int], None] = False, device: str = "cpu") -> Analysis:
    """Measure the audio/video offset of one media file -> Analysis (`audio_delay_ms`: positive when the sound
    is late; `offset_frames`: syncnet_python's sign; `confidence`, `verdict`, `sync_probability`, `drift`,
    and for raw footage the face `tracks` and `shots`). `Analysis.to_dict()` is the object `lipsync check
    --json` writes for the file (without `--standard`; `qc_verdict` gives that entry's "qc").

    model: a name or path, a LoadedModel (`load_model()`, load it once for many files) or a SyncEngine;
    None: the default model. face_cropped: the frames are already a face crop (otherwise faces are found,
    tracked and the speaking ones combined). options: the raw-footage settings (footage.FootageOptions).
    max_offset_ms: the search range (default +-1 s; syncnet_v2: +-600 ms). reference_decode: decode as
    syncnet_python does (face crops only). device: "cpu", "cuda" or "auto" (where the network runs).
    Raises a LipsyncError subclass (MediaNotFound, NoAudioStream, TooShort, NoFace, ModelNotFound, ...)."""
    path = os.fspath(path)
    if reference_decode and not face_cropped:
        raise OptionError("--reference-decode reproduces syncnet_python's face-crop input path: use it with "
                          "--face-cropped", "reference_decode")
    if path != "-" and not os.path.exists(path):
        raise MediaNotFound(path, "no such file")
    engine = make_engine(model, max_offset_ms=max_offset_ms, precision=precision, device=device)
    analysis, _ = measure(path, engine, face_cropped, options, detector, audio_stream,
                          reference_decode=reference_decode, ffmpeg=ffmpeg, channel=channel, progress=progress)
    return analysis


def qc_verdict(analysis: Analysis, standard: str) -> dict:
    """The QC verdict of a measurement against a timing standard (`ebu-r37`, `bt1359`, `atsc-is191`, see
    `ffmpeg_filter.qc.STANDARDS`): the "qc" object `lipsync check --standard` adds to the file's entry,
    {"standard", "pass", "reasons", ...}."""
    from .ffmpeg_filter import qc

    if standard not in qc.STANDARDS:
        raise OptionError(f"unknown standard {standard!r} (known: {', '.join(qc.STANDARDS)})", "standard")
    return qc.verdict(qc.STANDARDS[standard], analysis.audio_delay_ms, analysis.drift, analysis.verdict)


@dataclass
class FixResult:
    """What `fix` did: the delay it removed (ms, positive: the sound was late), the ffmpeg command, and the
    measurements before (delay_ms="auto") and after (verify) the correction."""

    source: str
    target: str
    delay_ms: float
    method: str
    command: list[str]  # the ffmpeg command without its output (run_fix appends a temp file beside target)
    written: bool  # False for a dry run
    before: Analysis | None = None
    after: Analysis | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "target": self.target, "delay_ms": self.delay_ms, "method": self.method,
                "command": self.command, "written": self.written,
                "before": self.before.to_dict() if self.before else None,
                "after": self.after.to_dict() if self.after else None}


def fix(src: str | os.PathLike, dst: str | os.PathLike, *, delay_ms: float | str = "auto", method: str = "copy",
        model: ModelLike = None, face_cropped: bool = False, precision: str = "float32", audio_stream: int = 0,
        channel: int | None = None, ffmpeg: str | None = None, verify: bool = True, overwrite: bool = False,
        dry_run: bool = False, detector: FaceDetector | None = None, device: str | None = "cpu",
        on_measured: Callable[[Analysis], None] | None = None,
        on_written: Callable[[float], None] | None = None) -> FixResult:
    """Write a copy of `src` to `dst` with its audio shifted into sync; the video is copied bit-exact.

    delay_ms: the audio delay to remove as `check` reports it (positive: the sound is late, so it is moved
    earlier), or "auto" to measure `src` first (NoSync when the audio does not match the faces: nothing to
    correct). method: "copy" (timestamps only) or "reencode". verify: measure `dst` afterwards
    (`FixResult.after`). overwrite: replace an existing `dst` (never `src` itself). dry_run: plan only.
    device: where the network measures ("cpu", "cuda", "auto"), as in `check`.
    on_measured / on_written: called with the measurement of `src` and with the delay removed, as they happen
    (the CLI prints them). Raises a LipsyncError subclass (OutputError, CannotFix, FfmpegFailed, ...)."""
    from .ffmpeg_filter.fix import plan_fix, run_fix

    source, target = os.fspath(src), os.fspath(dst)
    if not os.path.exists(source):
        raise MediaNotFound(source, "no such file")
    if os.path.exists(target) and not overwrite and not os.path.samefile(source, target):  # that: plan_fix says
        raise OutputError(target, "exists; refusing to overwrite it without -f/--force")
    shift: float | None = None
    if delay_ms != "auto":
        try:
            shift = float(delay_ms)
        except (TypeError, ValueError):
            raise OptionError(f"--delay-ms must be auto or a number of milliseconds, not {delay_ms!r}",
                              "--delay-ms") from None
    engine = None
    if delay_ms == "auto" or (verify and not dry_run):
        engine = make_engine(model, precision=precision, device=device)
        if not face_cropped and detector is None:
            detector = make_detector()
    result = FixResult(source, target, 0.0, method, [], False)
    if shift is None:
        result.before, _ = measure(source, engine, face_cropped, None, detector, audio_stream, channel=channel)
        if on_measured:
            on_measured(result.before)
        if result.before.verdict == "no_sync":  # an offset that is not there must not be "corrected"
            raise NoSync(source, f"not corrected: no sync found (p={result.before.sync_probability:.2f}), the "
                         "audio does not match the faces; give --delay-ms N to shift it anyway")
        shift = result.before.audio_delay_ms
    plan = plan_fix(source, target, shift, method, audio_stream=audio_stream, ffmpeg=ffmpeg)
    result.delay_ms, result.command = shift, plan.command
    if dry_run:
        return result
    run_fix(plan)
    result.written = True
    if on_written:
        on_written(shift)
    if verify:
        # the copy has only the shifted stream, with the source's channel layout
        result.after, _ = measure(target, engine, face_cropped, None, detector, 0, channel=channel)
    return result


def score_file(path: str, engine, metric, face_cropped: bool = True, footage_options: FootageOptions | None = None,
               detector: FaceDetector | None = None, reference_decode: bool = False, ffmpeg: str | None = None,
               audio_stream: int = 0, channel: int | None = None, progress=None) -> FileScore:
    """One file, an engine and a score.Metric -> score.FileScore (what `lipsync score` computes per file);
    raises a LipsyncError subclass on bad input (NoFace when raw footage has no usable face track)."""
    from .metrics import file_score

    if reference_decode and not face_cropped:
        raise OptionError("--reference-decode reproduces syncnet_python's face-crop input path: use it with "
                          "--face-cropped", "reference_decode")
    results: list = []
    analysis, _ = measure(path, engine, face_cropped, footage_options, detector, audio_stream,
                          reference_decode=reference_decode, ffmpeg=ffmpeg, channel=channel,
                          progress=progress or False, results_out=results)
    return file_score(path, metric, analysis, results, face_cropped, engine.model)


def score(path: str | os.PathLike, *, metric: str = "lse", model: ModelLike = None, face_cropped: bool = False,
          options: FootageOptions | None = None, detector: FaceDetector | None = None,
          reference_decode: bool = False, ffmpeg: str | None = None, audio_stream: int = 0,
          channel: int | None = None, vshift: int | None = None) -> FileScore:
    """Lip-sync quality scores of one file -> score.FileScore (`values`: the file's numbers, the mean over
    its face tracks; `tracks`: one entry per face track; `to_dict()`: its entry in `lipsync score --json`).

    metric "lse": LSE-D (lower is better) and LSE-C (higher is better) as Wav2Lip's evaluation scripts
    compute them (default model syncnet_v2, searched over +-15 frames; reference_decode=True reproduces
    their decode, face crops only); "icsyncnet": probability at offset and offscreen ratio, with a model
    trained with `lipsync-train fit --objective icsyncnet`. Raises OptionError for a metric without a model,
    NoSyncProbability for a model the metric cannot use, and the usual LipsyncErrors on bad input."""
    from .model import LoadedModel
    from .metrics import SCORE_VSHIFT, check_model, get_metric
    from .sync import SyncEngine

    try:
        chosen = get_metric(metric)
    except ValueError as exc:
        raise OptionError(str(exc), "metric") from None
    if model is None and not chosen.default_model:
        raise OptionError(f"--metric {chosen.name} needs --model: a model exported from `lipsync-train fit "
                          f"--objective icsyncnet` (the packaged house model gives distances only)", "model")
    if isinstance(model, SyncEngine):
        model = model.model
    engine = make_engine(model if isinstance(model, LoadedModel) else (model or chosen.default_model),
                         vshift=SCORE_VSHIFT if vshift is None else vshift)
    check_model(chosen, engine.model)
    path = os.fspath(path)
    if path != "-" and not os.path.exists(path):
        raise MediaNotFound(path, "no such file")
    return score_file(path, engine, chosen, face_cropped, options, detector, reference_decode=reference_decode,
                      ffmpeg=ffmpeg, audio_stream=audio_stream, channel=channel)


def annotate_timeline(timeline_or_path: Any, *, slip: bool = False, unslip: bool = False, model: ModelLike = None,
                      face_cropped: bool = False, min_confidence: float = 3.0,
                      slip_min_confidence: float | None = None, media_root: str | None = None,
                      cache_dir: str | None = None, handle_s: float = 0.5, delay_ms: float | None = None,
                      source_adapter: str | None = None, quiet: bool = True,
                      log: Callable[[str], None] | None = None, **source_args) -> tuple[Any, Report]:
    """Measure lip sync under every clip of a timeline and add markers (and with slip=True, slip each paired
    audio clip's source start by the measured delay) -> (the annotated timeline, timeline.Report).

    timeline_or_path: an `opentimelineio.schema.Timeline` (annotated in place; relative media paths are
    looked up under media_root) or a file any OTIO adapter reads (source_adapter: by suffix; source_args:
    that adapter's arguments, e.g. rate=25 for an EDL). The markers are what `lipsync otio` writes (README:
    the OTIO adapter). quiet: no per-clip progress lines (warnings still go to `log`, default stderr).
    Raises LipsyncAdapterError (a LipsyncError and an OTIOError) for a bad timeline, model or option."""
    from .otio_adapter.core import LipsyncAdapterError, annotate_file, parse_options
    from .sync import SyncEngine

    engine = None
    if isinstance(model, SyncEngine) or (model is not None and not isinstance(model, (str, os.PathLike))):
        engine = make_engine(model)  # a LoadedModel or an engine: used as it is
        model = None
    options = {"slip": slip, "unslip": unslip, "model": None if model is None else os.fspath(model),
               "face_cropped": face_cropped, "min_confidence": min_confidence,
               "slip_min_confidence": slip_min_confidence, "media_root": media_root, "cache_dir": cache_dir,
               "handle_s": handle_s, "delay_ms": delay_ms, "quiet": quiet}
    if isinstance(timeline_or_path, (str, os.PathLike)):
        return annotate_file(os.fspath(timeline_or_path), source_adapter, engine=engine, log=log, **options,
                             **{f"source_{k}": v for k, v in source_args.items()})
    import opentimelineio as otio

    from .otio_adapter.timeline import process_timeline

    if not isinstance(timeline_or_path, otio.schema.Timeline):
        raise LipsyncAdapterError(f"expected a timeline or a path to one, not {type(timeline_or_path).__name__}")
    if source_adapter or source_args:
        raise LipsyncAdapterError("source_adapter and reader arguments apply to a timeline file, not a Timeline")
    opts, _, _ = parse_options(options)
    return timeline_or_path, process_timeline(timeline_or_path, None, opts, engine=engine, log=log)

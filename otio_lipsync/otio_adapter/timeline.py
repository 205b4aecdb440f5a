"""OpenTimelineIO timelines: analyse the media under every clip, annotate the clips with markers, slip the
paired audio clips into sync (and back), with an on-disk cache of analyses.

The adapter (`otio_adapter/lipsync.py`) and `lipsync otio` are thin front ends over `process_timeline`.

Times: a clip's `source_range` is in the clip's own source time (its rate, e.g. 23.976); the media file is
decoded in seconds from its first video frame. `media_seconds = source_seconds - available_range.start`
(0 when the reference has no available_range), so clips whose media carries a timecode start (an EDL's
01:00:00:00) and media whose frame rate differs from the timeline's land on the right frames.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import opentimelineio as otio

from .. import RESULT_REVISION, __version__
from ..analysis import Analysis
from ..errors import BadWeights, DetectorUnavailable, LipsyncError, ModelNotFound
from ..ffmpeg_filter.qc import STANDARDS

RationalTime = otio.opentime.RationalTime
TimeRange = otio.opentime.TimeRange
Color = otio.schema.MarkerColor
KEY = "lipsync"  # metadata namespace on markers and clips
CACHE_SCHEMA = "otio-lipsync/cache/1"

# marker colours by verdict; limits from EBU R37 and ITU-R BT.1359-1 (see ffmpeg_filter/qc.py)
R37, BT1359 = STANDARDS["ebu-r37"], STANDARDS["bt1359"]
COLOURS = {
    "in_sync": Color.GREEN,  # within EBU R37: sound leads <= 40 ms, lags <= 60 ms
    "detectable": Color.YELLOW,  # outside R37, within BT.1359 acceptability (lead <= 90 ms, lag <= 185 ms)
    "unacceptable": Color.RED,  # beyond BT.1359 acceptability
    "low_confidence": Color.BLUE,  # no face, or confidence below min_confidence: the number is not trusted
    "no_sync": Color.PURPLE,  # the audio does not match the faces (verdict.py): no offset exists to act on
    "not_analysed": Color.MAGENTA,  # media missing/unreadable, image sequence, no reference
    "speaker": Color.CYAN,  # one marker per active-speaker segment
    "slipped": Color.PINK,  # on an audio clip lipsync slipped
}


@dataclass
class Options:
    slip: bool = False
    unslip: bool = False
    media_root: str | None = None
    cache_dir: str | None = None  # None: default_cache_dir(); "" or "none": no cache
    model: str | None = None
    min_confidence: float = 3.0
    slip_min_confidence: float | None = None  # default: min_confidence
    face_cropped: bool = False
    handle_s: float = 0.5
    delay_ms: float | None = None  # given delay for every clip instead of measuring (no model is run)
    quiet: bool = False


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "otio-lipsync", "analyses")


# --- verdicts and marker names ----------------------------------------------------------------

def verdict(delay_ms: float, confidence: float, min_confidence: float, sync_verdict: str | None = None) -> str:
    """The marker's verdict; sync_verdict is the Analysis' (a `no_sync` outranks any offset)."""
    if sync_verdict == "no_sync":
        return "no_sync"
    if confidence < min_confidence:
        return "low_confidence"
    if -R37.lead_ms <= delay_ms <= R37.lag_ms:
        return "in_sync"
    if -BT1359.lead_ms <= delay_ms <= BT1359.lag_ms:
        return "detectable"
    return "unacceptable"


def offset_words(delay_ms: float) -> str:
    if round(delay_ms) == 0:
        return "in sync"
    return f"{delay_ms:+.0f}ms {'late' if delay_ms > 0 else 'early'}"


def marker_name(delay_ms: float, confidence: float | None, verdict_key: str, given: bool = False) -> str:
    """The essentials in the name, because EDL and FCP XML exports keep names and colours only."""
    if given:
        return f"lipsync {offset_words(delay_ms)} (given)"
    if verdict_key == "no_sync":
        return "lipsync no sync"
    if verdict_key == "low_confidence":
        return f"lipsync low conf {confidence:.1f} ({offset_words(delay_ms)})"
    return f"lipsync {offset_words(delay_ms)} conf {confidence:.1f}"


# --- media resolution ---------------------------------------------------------------------------

def url_to_path(url: str) -> str | None:
    """file URL, absolute or relative path -> a path (None for other URL schemes)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        path = urllib.request.url2pathname(parsed.path)
        return f"//{parsed.netloc}{path}" if parsed.netloc not in ("", "localhost") else path
    if parsed.scheme and len(parsed.scheme) > 1:  # http:, s3:, ... (a one-letter scheme is a Windows drive)
        return None
    return url


def resolve_media(ref, timeline_dir: str | None, media_root: str | None) -> tuple[str | None, str | None]:
    """-> (path, None) or (None, why not)."""
    if ref is None or isinstance(ref, otio.schema.MissingReference):
        return None, "no media reference"
    if isinstance(ref, otio.schema.ImageSequenceReference):
        return None, "image sequence: skipped (lipsync needs picture and sound in one file)"
    if not isinstance(ref, otio.schema.ExternalReference):
        return None, f"{type(ref).__name__}: not a media file"
    url = ref.target_url or ""
    path = url_to_path(url)
    if not url or path is None:
        return None, f"not a local file: {url!r}"
    if os.path.isabs(path):
        candidates = [path]
    else:
        candidates = [os.path.join(d, path) for d in (media_root, timeline_dir) if d]
        candidates = candidates or [os.path.abspath(path)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate), None
    return None, f"media missing: {candidates[0]} (no such file)"


# --- the cache -----------------------------------------------------------------------------------

class AnalysisCache:
    """Analyses on disk, keyed by media identity (real path, size, mtime), analysed range, model and
    analysis options. A corrupt or foreign entry is ignored (and rebuilt by the caller)."""

    def __init__(self, directory: str | None, log=None):
        self.directory = directory
        self.log = log or (lambda message: None)

    def key(self, path: str, start_s: float, duration_s: float, model_sha: str | None, options: dict) -> str:
        st = os.stat(path)
        ident = {"schema": CACHE_SCHEMA, "tool": __version__, "revision": RESULT_REVISION,
                 "path": os.path.realpath(path), "size": st.st_size,
                 "mtime_ns": st.st_mtime_ns, "start_ms": round(start_s * 1000, 3),
                 "duration_ms": round(duration_s * 1000, 3), "model": model_sha, "options": options}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    def _file(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], f"{key}.json")

    def get(self, key: str) -> Analysis | None:
        if not self.directory:
            return None
        target = self._file(key)
        if not os.path.exists(target):
            return None
        try:
            with open(target) as f:
                entry = json.load(f)
            if entry.get("schema") != CACHE_SCHEMA or entry.get("key") != key:
                raise ValueError("not an entry for this key")
            return Analysis(**entry["analysis"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.log(f"lipsync: cache entry {target} is corrupt ({type(exc).__name__}): analysing again")
            return None

    def put(self, key: str, analysis: Analysis) -> None:
        if not self.directory:
            return
        from ..outputs import atomic_output

        target = self._file(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with atomic_output(target, ".json") as tmp, open(tmp, "w") as f:
                json.dump({"schema": CACHE_SCHEMA, "key": key, "analysis": analysis.to_dict()}, f)
        except (OSError, LipsyncError) as exc:
            self.log(f"lipsync: cannot write the cache entry {target} ({exc})")


# --- the analyser: engine, detector and cache, created when first needed -------------------------------

class Analyser:
    def __init__(self, options: Options, engine=None, log=None):
        self.options = options
        self._engine = engine
        self.log = log or (lambda message: None)
        directory = options.cache_dir if options.cache_dir is not None else default_cache_dir()
        self.cache = AnalysisCache(None if directory in ("", "none") else directory, self.log)
        self.memo: dict[str, Analysis] = {}
        self.analysed = self.cached = 0

    @property
    def engine(self):
        if self._engine is None:
            from ..pipeline import make_engine

            self._engine = make_engine(self.options.model)
        return self._engine

    def analyse(self, path: str, start_s: float, duration_s: float) -> Analysis:
        from ..footage import FootageOptions

        face_cropped = self.options.face_cropped
        engine = self.engine
        tag = {"face_cropped": face_cropped, "vshift": engine.vshift, "precision": engine.precision}
        if not face_cropped:
            tag["footage"] = repr(FootageOptions())
        key = self.cache.key(path, start_s, duration_s, engine.model.describe().get("sha256"), tag)
        if key in self.memo:
            return self.memo[key]
        found = self.cache.get(key)
        if found is not None:
            self.cached += 1
            self.memo[key] = found
            return found
        from ..pipeline import measure

        result, _ = measure(path, engine, face_cropped, start_s=start_s, duration_s=duration_s)
        self.analysed += 1
        self.cache.put(key, result)
        self.memo[key] = result
        return result


# --- timeline geometry ------------------------------------------------------------------------------

def track_kind(clip) -> str | None:
    parent = clip.parent()
    return parent.kind if isinstance(parent, otio.schema.Track) else None


def source_range(clip) -> TimeRange:
    return clip.source_range if clip.source_range is not None else clip.available_range()


def available_start_s(clip) -> float:
    ref = clip.media_reference
    avail = getattr(ref, "available_range", None)
    return avail.start_time.to_seconds() if avail is not None else 0.0


def timeline_range(clip, timeline) -> TimeRange | None:
    """The clip's range in the timeline's top-level stack (nested stacks included)."""
    try:
        return clip.transformed_time_range(clip.trimmed_range(), timeline.tracks)
    except Exception:  # noqa: BLE001 - a clip OTIO cannot place: no pairing for it
        return None


def media_key(clip, path: str | None) -> set[str]:
    keys = set()
    if path:
        keys |= {os.path.realpath(path), "stem:" + os.path.splitext(os.path.basename(path))[0]}
    ref = clip.media_reference
    url = getattr(ref, "target_url", None)
    if url:
        keys.add("stem:" + os.path.splitext(os.path.basename(urllib.parse.urlparse(url).path))[0])
    if clip.name:
        keys |= {"name:" + clip.name, "stem:" + os.path.splitext(clip.name)[0]}
    return keys


def rt_dict(t: RationalTime) -> dict:
    return {"value": t.value, "rate": t.rate}


def clip_label(clip, kind) -> str:
    return f"{kind or 'clip'} clip {clip.name or '(unnamed)'!r}"


# --- the processing -------------------------------------------------------------------------------

@dataclass
class ClipReport:
    clip: str
    track_kind: str | None
    media: str | None
    status: str  # analysed, not_analysed, slipped, not_slipped, unslipped
    reason: str | None = None
    verdict: str | None = None
    audio_delay_ms: float | None = None
    confidence: float | None = None
    marker: str | None = None
    slip: dict | None = None


@dataclass
class Report:
    timeline: str
    clips: list[ClipReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    analysed: int = 0  # clips measured
    from_cache: int = 0  # analyses read from the cache
    out_of_tolerance: int = 0  # outside EBU R37
    no_sync: int = 0  # the audio does not match the faces: nothing to correct (never slipped)
    corrected_in_edit: int = 0  # media out of tolerance, but an earlier slip already corrects it in the edit
    slipped: int = 0
    unslipped: int = 0
    skipped: dict = field(default_factory=dict)  # reason -> count

    def skip(self, reason: str) -> None:
        short = reason.split(":")[0]
        self.skipped[short] = self.skipped.get(short, 0) + 1

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"timeline": self.timeline, "tool": {"name": "otio-lipsync", "version": __version__},
                "summary": {"clips_analysed": self.analysed, "from_cache": self.from_cache,
                            "out_of_tolerance": self.out_of_tolerance, "no_sync": self.no_sync,
                            "corrected_in_edit": self.corrected_in_edit,
                            "slipped": self.slipped,
                            "unslipped": self.unslipped, "skipped": self.skipped},
                "clips": [asdict(c) for c in self.clips], "warnings": self.warnings}

    def table(self) -> str:
        rows = [("clips analysed", self.analysed), ("  of them from the cache", self.from_cache),
                ("out of tolerance (EBU R37)", self.out_of_tolerance), ("no sync found", self.no_sync),
                ("already corrected in the edit", self.corrected_in_edit),
                ("audio clips slipped", self.slipped)]
        if self.unslipped:
            rows.append(("audio clips unslipped", self.unslipped))
        rows += [(f"skipped: {why}", n) for why, n in sorted(self.skipped.items())]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"  {name:<{width}}  {n:>5}" for name, n in rows)


MEANING = {colour: verdict.replace("_", " ") for verdict, colour in COLOURS.items()}


def _marker(name: str, colour: str, marked: TimeRange, meta: dict) -> otio.schema.Marker:
    marker = otio.schema.Marker(name=name, marked_range=marked, color=colour)
    marker.metadata[KEY] = meta
    # FCP 7 XML has no marker colour (read back, every marker is RED): otio-fcp-adapter writes this
    # namespace as the marker's <comment>, which FCP and Premiere show, so the verdict colour survives as text
    marker.metadata["fcp_xml"] = {"comment": f"lipsync {colour}: {MEANING[colour]}"}
    return marker


def _clean(value):
    """Plain JSON types for OTIO metadata (no numpy scalars, no NaN)."""
    return json.loads(json.dumps(value, default=float, allow_nan=True).replace("NaN", "null"))


def _remove_our_markers(clip) -> None:
    keep = [m for m in clip.markers if KEY not in m.metadata]
    del clip.markers[:]
    clip.markers.extend(keep)


def process_timeline(timeline, timeline_path: str | None, options: Options, engine=None, log=None) -> Report:
    """Annotate (and with options.slip, slip) `timeline` in place; -> the Report."""
    log = log or (lambda message: print(message, file=sys.stderr))
    say = (lambda message: None) if options.quiet else log
    name = timeline_path or timeline.name or "timeline"
    report = Report(timeline=name)

    def warn(message: str) -> None:
        report.warnings.append(message)
        log(f"lipsync: warning: {name}: {message}")

    if options.unslip:
        _unslip(timeline, report, say)
        return report
    timeline_dir = os.path.dirname(os.path.abspath(timeline_path)) if timeline_path else None
    analyser = Analyser(options, engine, log)
    clips = list(timeline.find_clips())
    video = [c for c in clips if track_kind(c) != otio.schema.TrackKind.Audio]
    audio = [c for c in clips if track_kind(c) == otio.schema.TrackKind.Audio]
    measured = []  # (video clip, path, delay_ms, confidence or None, given, marker)
    for number, clip in enumerate(video, 1):
        label = clip_label(clip, track_kind(clip))
        prefix = f"lipsync: [{number}/{len(video)}] {label}"
        _remove_our_markers(clip)
        path, why = resolve_media(clip.media_reference, timeline_dir, options.media_root)
        src = source_range(clip) if why is None else None
        if why is None and src is None:
            why = "no source range and no available range"
        if why is not None:
            report.skip(why)
            report.clips.append(ClipReport(clip.name, track_kind(clip), path, "not_analysed", why))
            if not why.startswith("image sequence"):
                warn(f"{label}: {why}")
            else:
                say(f"{prefix}: {why}")
            try:
                marked = source_range(clip)
            except Exception:  # noqa: BLE001 - no source range and no media to take one from
                marked = None
            marked = marked or TimeRange(RationalTime(0, 24), RationalTime(0, 24))
            clip.markers.append(_marker(f"lipsync not analysed: {why.split(':')[0]}", COLOURS["not_analysed"],
                                        marked, {"status": "not_analysed", "reason": why,
                                                 "tool": {"name": "otio-lipsync", "version": __version__}}))
            continue
        media_start = src.start_time.to_seconds() - available_start_s(clip)
        decode_start = max(0.0, media_start - options.handle_s)
        decode_duration = src.duration.to_seconds() + (media_start - decode_start) + options.handle_s
        meta = {"media": path, "source_range": {"start_time": rt_dict(src.start_time),
                                                "duration": rt_dict(src.duration)},
                "analysed_range_s": {"start": round(decode_start, 6), "duration": round(decode_duration, 6)},
                "tool": {"name": "otio-lipsync", "version": __version__}}
        if options.delay_ms is not None:
            delay, conf, key = float(options.delay_ms), None, "given"
            meta.update({"status": "given", "audio_delay_ms": delay})
            verdict_key = verdict(delay, float("inf"), 0)
            clip_marker = _marker(marker_name(delay, None, key, given=True), COLOURS[verdict_key], src, meta)
            speakers = []
        else:
            try:
                result = analyser.analyse(path, decode_start, decode_duration)
            except (ModelNotFound, BadWeights, DetectorUnavailable):
                raise  # not this clip's fault: the whole run stops (annotate_file says it in one line)
            except LipsyncError as exc:
                problem = exc.problem
                status = "no_face" if type(exc).__name__ == "NoFace" else "not_analysed"
                colour = COLOURS["low_confidence"] if status == "no_face" else COLOURS["not_analysed"]
                short = "no face" if status == "no_face" else problem.split("(")[0].strip()
                report.skip(short)
                report.clips.append(ClipReport(clip.name, track_kind(clip), path, status, problem))
                (say if status == "no_face" else warn)(f"{label}: {path}: {problem}")
                meta.update({"status": status, "reason": problem, "error_type": type(exc).__name__})
                clip.markers.append(_marker(f"lipsync {short}", colour, src, meta))
                continue
            delay, conf = result.audio_delay_ms, result.confidence
            verdict_key = verdict(delay, conf, options.min_confidence, result.verdict)
            meta.update({"status": "analysed", "verdict": verdict_key, "sync_verdict": result.verdict,
                         "sync_probability": result.sync_probability, "audio_delay_ms": delay,
                         "offset_frames": result.offset_frames, "confidence": conf,
                         "min_distance": result.min_distance, "num_windows": result.num_windows,
                         "basis": result.basis, "drift": _clean(result.drift),
                         "fps_source": result.fps_source, "face_cropped": options.face_cropped,
                         "model": {k: result.model.get(k) for k in ("name", "architecture", "sha256")},
                         "tracks": _clean([{k: t[k] for k in ("id", "start_s", "end_s", "box", "audio_delay_ms",
                                                              "confidence", "speaking")}
                                           for t in result.tracks or []])})
            clip_marker = _marker(marker_name(delay, conf, verdict_key), COLOURS[verdict_key], src, meta)
            speakers = _speaker_markers(result, src, decode_start, available_start_s(clip))
        clip.markers.append(clip_marker)
        clip.markers.extend(speakers)
        report.analysed += 1
        report.out_of_tolerance += verdict_key in ("detectable", "unacceptable")
        report.no_sync += verdict_key == "no_sync"
        entry = ClipReport(clip.name, track_kind(clip), path, "analysed", None, verdict_key, delay, conf,
                           clip_marker.name)
        report.clips.append(entry)
        say(f"{prefix}: {clip_marker.name}" + (f", {len(speakers)} speaker segment(s)" if speakers else ""))
        measured.append((clip, path, delay, conf, options.delay_ms is not None, clip_marker, entry))
    report.from_cache = analyser.cached
    if options.slip:
        _slip_all(timeline, measured, audio, timeline_dir, options, report, say, warn)
    return report


def _speaker_markers(result: Analysis, src: TimeRange, decode_start: float, avail_start: float) -> list:
    rate = src.start_time.rate
    lo, hi = src.start_time.to_seconds(), src.end_time_exclusive().to_seconds()
    markers = []
    for track in result.tracks or []:
        for a, b in track.get("speaking") or []:
            start = max(lo, decode_start + a + avail_start)
            end = min(hi, decode_start + b + avail_start)
            if end <= start:
                continue  # speech only in the handle
            t0 = RationalTime.from_seconds(start, rate).round()
            t1 = RationalTime.from_seconds(end, rate).round()
            marked = TimeRange(t0, RationalTime(max(0, t1.value - t0.value), rate))
            markers.append(_marker(f"lipsync speaker {track['id']} conf {track['confidence']:.1f}",
                                   COLOURS["speaker"], marked,
                                   {"status": "speaker", "track_id": track["id"], "confidence": track["confidence"],
                                    "audio_delay_ms": track["audio_delay_ms"],
                                    "segment_s": [round(decode_start + a, 3), round(decode_start + b, 3)]}))
    return markers


# --- slip -----------------------------------------------------------------------------------------------

def slip_amount(delay_ms: float, video_src_s: float, video_tl_s: float, audio_src_s: float,
                audio_tl_s: float) -> float:
    """Seconds to add to the audio clip's source start.

    The file's sound is `delay_ms` late: the sound of picture time t is at media time t + d. The edit
    already offsets the audio by e = (audio source - audio timeline) - (video source - video timeline).
    Sync needs e = d, so the audio clip's start moves by d - e: later in source time, which makes the
    sound play earlier on the timeline (and the other way round for early sound)."""
    existing = (audio_src_s - audio_tl_s) - (video_src_s - video_tl_s)
    return delay_ms / 1000.0 - existing


def slip_clip(clip, shift_s: float, media_duration_s: float | None = None) -> tuple[bool, dict]:
    """Move the audio clip's source start by shift_s (whole frames of its rate), inside the media's
    available range; record the original start. -> (slipped, details)."""
    src = source_range(clip)
    rate = src.start_time.rate
    frames = round(shift_s * rate)
    new_start = RationalTime(src.start_time.value + frames, rate)
    details = {"shift_frames": frames, "shift_ms": round(frames / rate * 1000, 3), "rate": rate,
               "requested_shift_ms": round(shift_s * 1000, 3)}
    ref = clip.media_reference
    avail = getattr(ref, "available_range", None)
    if avail is None and media_duration_s:
        avail = TimeRange(RationalTime(0, rate), RationalTime.from_seconds(media_duration_s, rate))
    if avail is not None:
        end = new_start + src.duration
        if new_start < avail.start_time or end > avail.end_time_exclusive():
            details["reason"] = (f"slip by {frames:+d} frames would leave the media's available range "
                                 f"({avail.start_time.to_seconds():.3f}-{avail.end_time_exclusive().to_seconds():.3f}"
                                 f" s; needs {new_start.to_seconds():.3f}-{end.to_seconds():.3f} s): not slipped")
            return False, details
    if frames == 0:
        details["reason"] = "already in sync (shift rounds to 0 frames)"
        return False, details
    meta = dict(clip.metadata.get(KEY, {}))
    previous = meta.get("slip")
    original = (dict(previous["original_start_time"]) if previous and "original_start_time" in previous
                else rt_dict(src.start_time))
    clip.source_range = TimeRange(new_start, src.duration)
    meta["slip"] = {"original_start_time": original, **details,
                    "tool": {"name": "otio-lipsync", "version": __version__}}
    clip.metadata[KEY] = meta
    return True, details


def _slip_all(timeline, measured, audio, timeline_dir, options, report, say, warn) -> None:
    threshold = options.slip_min_confidence if options.slip_min_confidence is not None else options.min_confidence
    audio_info = []
    for a in audio:
        path, _ = resolve_media(a.media_reference, timeline_dir, options.media_root)
        audio_info.append((a, media_key(a, path), timeline_range(a, timeline)))
    for clip, path, delay, conf, given, marker, entry in measured:
        keys = media_key(clip, path)
        v_tl = timeline_range(clip, timeline)
        pairs = [(a, a_tl) for a, a_keys, a_tl in audio_info
                 if keys & a_keys and v_tl is not None and a_tl is not None and v_tl.intersects(a_tl)]
        slip = {"paired_audio_clips": [a.name for a, _ in pairs]}
        if not pairs:
            slip["status"] = "annotated only"
            slip["reason"] = ("picture and sound in one clip with no separate audio clip on an audio track: "
                              "nothing to slip (correct the media with `lipsync fix`)")
        elif not given and entry.verdict == "no_sync":
            slip["status"] = "not slipped"
            slip["reason"] = "no sync found: the audio does not match the faces, there is no offset to correct"
        elif not given and conf < threshold:
            slip["status"] = "not slipped"
            slip["reason"] = f"confidence {conf:.1f} below the slip threshold {threshold:.1f}"
        else:
            slip["status"] = "slipped"
            slip["audio"] = []
            v_src = source_range(clip).start_time.to_seconds() - available_start_s(clip)
            for a, a_tl in pairs:
                a_src_range = source_range(a)
                a_src = a_src_range.start_time.to_seconds() - available_start_s(a)
                shift = slip_amount(delay, v_src, v_tl.start_time.to_seconds(), a_src, a_tl.start_time.to_seconds())
                done, details = slip_clip(a, shift, _media_duration(path))
                details.update({"clip": a.name, "slipped": done, "delay_ms": delay, "from_clip": clip.name})
                slip["audio"].append(details)
                if done:
                    report.slipped += 1
                    _remove_our_markers(a)
                    a.markers.append(_marker(f"lipsync slipped {details['shift_frames']:+d} fr "
                                             f"({details['shift_ms']:+.0f}ms)", COLOURS["slipped"],
                                             source_range(a), {"status": "slipped", **details}))
                    say(f"lipsync: audio clip {a.name!r}: slipped {details['shift_frames']:+d} frames "
                        f"({details['shift_ms']:+.0f} ms) to match video clip {clip.name!r}")
                elif "leave the media" in details.get("reason", ""):
                    warn(f"audio clip {a.name!r}: {details['reason']}")
                    report.skip("slip beyond the media")
            if not any(d["slipped"] for d in slip["audio"]):
                slip["status"] = "not slipped"
                if all(d.get("shift_frames") == 0 for d in slip["audio"]):
                    # the edit already carries the correction (an earlier slip): the clip plays in sync,
                    # so it is not out of tolerance in this timeline, whatever its media's own offset
                    slip["status"] = "already in sync in the edit"
                    if entry.verdict in ("detectable", "unacceptable"):
                        report.out_of_tolerance -= 1
                        report.corrected_in_edit += 1
                    entry.status = "in_sync_in_edit"
        marker.metadata[KEY]["slip"] = _clean(slip)
        entry.slip = _clean(slip)
        if slip["status"] != "slipped" and pairs:
            say(f"lipsync: video clip {clip.name!r}: {slip.get('reason') or slip['audio'][0].get('reason')}")


def _media_duration(path: str | None) -> float | None:
    if not path:
        return None
    from ..media import probe

    try:
        return probe(path).duration_s
    except LipsyncError:
        return None


def _unslip(timeline, report: Report, say) -> None:
    for clip in timeline.find_clips():
        meta = clip.metadata.get(KEY)
        slip = meta.get("slip") if meta else None
        if not slip:
            continue
        original = {"value": float(slip["original_start_time"]["value"]),
                    "rate": float(slip["original_start_time"]["rate"])}
        src = source_range(clip)
        clip.source_range = TimeRange(RationalTime(original["value"], original["rate"]), src.duration)
        meta = dict(meta)
        del meta["slip"]
        if meta:
            clip.metadata[KEY] = meta
        else:
            del clip.metadata[KEY]
        keep = [m for m in clip.markers if m.metadata.get(KEY, {}).get("status") != "slipped"]
        del clip.markers[:]
        clip.markers.extend(keep)
        report.unslipped += 1
        report.clips.append(ClipReport(clip.name, track_kind(clip), None, "unslipped",
                                       slip={"restored_start_time": original}))
        say(f"lipsync: audio clip {clip.name!r}: source start restored to {original['value']} @ {original['rate']}")


__all__ = ["COLOURS", "AnalysisCache", "Options", "Report", "process_timeline", "resolve_media", "slip_amount",
           "slip_clip", "verdict"]

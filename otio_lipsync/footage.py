"""Raw footage, one decode pass: frames -> shots + face detection -> tracks -> 224x224 crops -> one
SyncNet stream per track (with the audio under that track) -> speaking segments -> file offset.

Memory stays flat in file length: the tracker holds at most a fixed look-ahead of frames, each track's
sync stream keeps only distances, and audio is dropped once no open track needs it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from . import media
from .analysis import Analysis
from .drift import sliding_offsets
from .errors import NoFace, TooShort
from .faces.detectors import TILE_PX, FaceDetector, detect_tiles, make_detector
from .faces.shots import ShotDetector
from .faces.tracks import CropEvent, FaceTracker, Track, TrackOptions
from .speakers import (UNCALIBRATED, SpeakerOptions, SpeakingModel, attribute, combine, offset_margin, runs, segments,
                       vote_windows, window_weights)
from .speech import SpeechActivity, speech_frames, window_speech
from .sync import (SAMPLES_PER_FRAME, SyncEngine, SyncResult, SyncStream, audio_delay_ms, inside_clip, torch_threads,
                   usable_vshift)
from .verdict import calibration_for, judge

FPS = media.ANALYSIS_FPS
PREVIEW_PX = 320  # longer side of the frames shots and the detector see (BlazeFace's input is 192)
# the one decoding thread is the pipeline's slower side: when at most this many chunks (~2 frames) wait for the
# analysis, the decoder leaves the frame's preview to the analysis thread, which gets the frame soon, still hot,
# and has time to spare (22 s of 1080p25, 6 alternating rounds: wall median 2.05 -> 1.92 s; 2 or 8 even; deferring
# only while the analysis waits gained a third as much). The same pixels: the same swscale call on the same frame
PREVIEW_BACKLOG = 4
# the other way round, where decoding is light (720p and smaller: the analysis is the slower side and the decoding
# thread waits on a full queue): while the analysis is more than this many frames behind, the decoding thread also
# runs the detector, its twin, on the frames due a detection (22 s of 720p: 1.85 -> 1.45 s, 360p: 1.72 -> 1.16 s).
# Frames, not chunks: small frames go out 25 to a chunk. At 1080p25, where decoding is the slower side, the analysis
# falls this far behind only now and then (0-2 of 557 frames), and catches up on its own. Same model and preview:
# the same faces
DETECT_LAG = 12


@dataclass
class FootageOptions:
    # run the detector on every n-th frame (and on the first frame after a likely cut); tracking interpolates
    # between. 3 saves ~10% at 1080p but moved the house model's offsets on held-out people (tests/test_house.py:
    # vr4_woman_blue, 3 of 6 applied shifts a frame off): its training crops were made every 2nd frame
    detect_every: int = 2
    detector: str = "blazeface"
    tracks: TrackOptions = field(default_factory=TrackOptions)
    speakers: SpeakerOptions = field(default_factory=SpeakerOptions)
    shot_threshold: float = 27.0
    # small faces (wide shots): "auto" probes frames >= TILES_MIN_PX on tiles every PROBE_FRAMES and, while
    # the tiles find faces the whole-frame pass misses, detects on tiles every TILE_EVERY frames;
    # "always" tiles every detection frame; "off" never
    tiles: str = "auto"


# frames wait for their crops at full resolution, up to the tracker's look-ahead (~32) while a face is missed:
# their bytes are bounded, not their count.
# A frame above TRACK_PIXELS is tracked and cropped scaled down (its 224x224 crops lose nothing a face that
# large needs): the decoding thread scales it right after decoding, in its YUV planes (media.decode max_pixels;
# in the analysis thread, from a cold frame, it was 12 ms of a 4K frame's ~16). Boxes are reported in source
# pixels all the same. 1080p and 1440p are untouched.
FRAME_BUFFER_BYTES = 512 * 2**20
SHOT_WAIT_FRAMES = 4  # frames decoded, not yet tracked: a shot decision waits ShotDetector.window (2), and a margin
# ~4.4 MP: the tracker's frames plus those awaiting a shot decision
TRACK_PIXELS = FRAME_BUFFER_BYTES // (3 * (TrackOptions().held_frames + SHOT_WAIT_FRAMES))

TILE_MODES = ("auto", "always", "off")
TILES_MIN_PX = 960  # longer side: smaller frames lose nothing to the 320 px whole-frame pass
PROBE_FRAMES = 50  # look for missed small faces every 2 s ...
TILE_EVERY = 4  # ... and, while there are some, detect them on every 4th frame (tracking fills in)
CLOSE_UP = 0.2  # a face this tall (of the frame height) makes a frame a close-up: no small-face search
SMALL_FACE_HOLD = 100  # frames small-face detection stays on after tiles last found a missed face


class _Audio:
    """16 kHz samples from `base` on; trimmed as tracks stop needing them."""

    def __init__(self):
        self.base = 0
        self.chunks: list[np.ndarray] = []
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.end += len(samples)

    def slice(self, start: int, stop: int) -> np.ndarray:
        stop = min(stop, self.end)
        if stop <= start:
            return np.zeros(0, np.int16)
        data = np.concatenate(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks = [data]
        return data[start - self.base:stop - self.base]

    def trim(self, keep_from: int) -> None:
        if keep_from <= self.base or not self.chunks:
            return
        data = np.concatenate(self.chunks)
        drop = min(keep_from - self.base, len(data))
        self.chunks = [data[drop:]]
        self.base += drop


@dataclass
class _TrackSync:
    track: Track
    stream: SyncStream
    audio_fed: int  # next sample index to feed
    last_frame: int = -1


class FootageScan:
    """The faces half of the pipeline as one decode pass: iterate to get ("audio", samples) and
    ("crops", [CropEvent]) in stream order; afterwards `tracker`, `shots` and `num_frames` hold the
    tracks and cuts. `progress(done, total)` is called after each decoded chunk."""

    def __init__(self, path: str, options: FootageOptions | None = None, detector: FaceDetector | None = None,
                 audio_stream: int = 0, progress: Callable[[int, int], None] | None = None,
                 channel: int | None = None, start_s: float | None = None, duration_s: float | None = None):
        self.path = path
        self.channel = channel
        self.start_s, self.duration_s = start_s, duration_s
        self.options = options or FootageOptions()
        self.detector = detector or make_detector(self.options.detector)
        self.tracker = FaceTracker(self.options.tracks)
        self.shots = ShotDetector(threshold=self.options.shot_threshold)
        self.audio_stream = audio_stream
        self.progress = progress
        self.info: media.MediaInfo | None = None
        self.num_frames = 0  # frames decoded
        self._small_until = -1  # small-face (tiled) detection runs up to this frame
        self._small_boxes: list[np.ndarray] = []  # where tiles last found faces the whole frame missed
        self.tiled_frames = 0  # frames detected on tiles (cost, reported by the benchmark)
        self.detected_ahead = 0  # frames whose faces the decoding thread found (DETECT_LAG)
        self.tracked_frames = 0  # frames handed to the tracker (a few behind: see _track)
        self.track_scale = 1.0  # < 1: frames above TRACK_PIXELS are tracked scaled down by this
        self.decode_stats: dict | None = None  # media.decode's counts, once the scan is done

    def __iter__(self):
        out: dict = {}
        previews = found_ahead = None
        # frames decoded but not yet tracked: a frame's shot decision needs a few frames after it
        waiting: deque[tuple[int, np.ndarray, list | None]] = deque()
        backlog = media.Backlog()
        for kind, data in media.prefetched(self.decoded(out, backlog), backlog=backlog):  # decoding runs ahead
            self.info = out.get("info")
            if kind == "audio":
                yield "audio", data
                continue
            if kind == "preview":  # small RGB copies of the next video chunk, for shots and detection
                previews, found_ahead = data, None
                continue
            if kind == "detected":  # the next video chunk's faces, found by the decoding thread (DETECT_LAG)
                found_ahead = data
                continue
            self._track_at(out.get("scale", 1.0))
            for i, (frame, small) in enumerate(zip(data, previews)):
                if small is None:  # left to this thread by the decoder (PREVIEW_BACKLOG)
                    small = frame.preview(PREVIEW_PX)
                index = self.num_frames
                decided = self.shots.push(index, small)
                detections = None
                if self._due(index) or self.shots.may_cut_at(index):  # a new shot's faces from its first frame
                    detections = found_ahead[i] if found_ahead is not None else None
                    if detections is None:
                        detections = self.detector.detect(small)
                    else:
                        self.detected_ahead += 1
                    scale = np.array([frame.shape[1] / small.shape[1], frame.shape[0] / small.shape[0]])
                    for d in detections:  # preview pixels -> source pixels
                        d.box = d.box * np.tile(scale, 2)
                        d.keypoints = d.keypoints * scale
                    detections = self._small_faces(index, frame, detections)
                waiting.append((index, frame, detections))
                self.num_frames += 1
                events = self._track(waiting, decided)
                if events:
                    yield "crops", events
            if self.progress:
                duration = self.duration_s or (self.info.duration_s if self.info else None)
                self.progress(self.num_frames, int(round(duration * FPS)) if duration else self.num_frames)
        self.decode_stats = out.get("stats")
        yield "crops", self._track(waiting, self.shots.finish()) + self.tracker.finish()

    def decoded(self, info_out: dict, backlog: media.Backlog | None = None):
        """The media.decode chunks this scan reads (the benchmark times them alone): frames stay in their YUV
        planes (media.Picture) where they can, so the tracker converts only its crops; huge frames come scaled.
        backlog: the prefetch queue's, read by the decoder to leave previews to this thread (PREVIEW_BACKLOG); with
        it the chunks come from a decoding thread of their own, which also detects faces while the analysis lags
        (DETECT_LAG)."""
        defer = None if backlog is None else (lambda: backlog.chunks <= PREVIEW_BACKLOG)
        chunks = media.decode(self.path, audio_stream=self.audio_stream, info_out=info_out, preview=PREVIEW_PX,
                              channel=self.channel, start_s=self.start_s, duration_s=self.duration_s, pictures=True,
                              threads=decoder_threads_for, max_pixels=TRACK_PIXELS, defer_preview=defer)
        twin = getattr(self.detector, "twin", None)
        if backlog is None or twin is None:
            return chunks
        return self._detected_ahead(chunks, twin)

    def _detected_ahead(self, chunks, twin: Callable[[], FaceDetector]):
        """`chunks`, and after a preview chunk ("detected", [detections or None per frame]) for its frames due a
        detection (every `detect_every`-th), found here while the analysis is more than DETECT_LAG frames behind.
        Runs in the decoding thread (media.prefetched iterates it there), with the detector's twin: one
        runtime is not for two threads at once. Frames the analysis detects on a likely cut stay its own."""
        index, detector = 0, None
        for kind, data in chunks:
            yield kind, data
            if kind == "video":
                index += len(data)
            elif kind == "preview" and index - self.num_frames > DETECT_LAG:  # num_frames: the analysis's count
                found = [None] * len(data)
                for i, small in enumerate(data):
                    if self._due(index + i) and small is not None:
                        detector = detector or twin()
                        found[i] = detector.detect(small)
                if any(f is not None for f in found):
                    yield "detected", found

    def _due(self, index: int) -> bool:
        """Whether frame `index` is due a detection by the cadence (FootageOptions.detect_every)."""
        return index % self.options.detect_every == 0

    def _track_at(self, scale: float) -> None:
        """Frames above TRACK_PIXELS come from the decoder scaled by `scale` (< 1): sizes the tracker judges are
        in tracked pixels, boxes are reported in source pixels (see FRAME_BUFFER_BYTES)."""
        if scale < 1.0 and self.track_scale == 1.0:
            self.track_scale = scale
            opts = self.tracker.options
            self.tracker.options = replace(opts, min_face_px=opts.min_face_px * scale)

    def _small_faces(self, index: int, frame: np.ndarray, found: list) -> list:
        """Add faces the whole-frame pass is too coarse for (see FootageOptions.tiles)."""
        mode = self.options.tiles
        if mode == "off" or (mode == "auto" and max(frame.shape[:2]) < TILES_MIN_PX):
            return found
        if mode == "auto" and any(f.box[3] - f.box[1] >= CLOSE_UP * frame.shape[0] for f in found):
            return found  # a close-up: tiny faces behind it are background, not speakers (and tiles cost ~8 detections)
        active = index <= self._small_until
        due = (mode == "always" or (active and index % TILE_EVERY == 0) or index % PROBE_FRAMES == 0
               or (not found and index % (PROBE_FRAMES // 5) == 0))
        if not due:
            return found
        self.tiled_frames += 1
        # between probes, only the tiles where small faces were last found (a whole tiled pass is ~8 detections)
        probe = mode == "always" or index % PROBE_FRAMES == 0 or not active
        image = frame.bgr() if isinstance(frame, media.Picture) else frame
        tiles = detect_tiles(self.detector, image, bgr=True, near=None if probe else self._small_boxes)

        def missed(d) -> bool:  # small, and not a part of a face the whole frame already has
            return d.size < 0.3 * TILE_PX and not any(_holds(f.box, d.box) for f in found)

        extra = [d for d in tiles if missed(d)]
        if extra:
            self._small_until = index + SMALL_FACE_HOLD
            kept = [] if probe else [b for b in self._small_boxes  # faces still followed but not seen this time
                                     if not any(_holds(d.box, b) for d in extra)]
            self._small_boxes = [d.box for d in extra] + kept
        return found + extra

    def _track(self, waiting, decided: list[tuple[int, bool]]) -> list[CropEvent]:
        """Hand the frames whose shot decision is final to the tracker, in order."""
        events: list[CropEvent] = []
        for index, new_shot in decided:
            frame_index, frame, detections = waiting.popleft()
            assert frame_index == index
            events.extend(self.tracker.push(index, frame, detections, new_shot))
            self.tracked_frames = index + 1
        return events

    def kept_tracks(self) -> list[Track]:
        shot_len = {i: b - a for i, (a, b) in enumerate(self.shots.shots(self.num_frames))}
        kept = [t for t in self.tracker.finished if self.tracker.keeps(t, shot_len.get(t.shot, self.num_frames))]
        for t in kept:
            t.to_source = 1.0 / self.track_scale
        return kept


def decoder_threads_for(info: media.MediaInfo) -> int | None:
    """The decoder threads the faces stage gives a file (None: FFmpeg's default). Up to TRACK_PIXELS the analysis
    keeps a core and the decoder gets the rest: on two cores one thread, ~4% less CPU than FFmpeg's default and
    faster than two (22 s of 1080p25, median 1.79 against 1.92 s: frame threads cost CPU the analysis needs). The
    one decoding thread is then the slower side by a little (the analysis waits ~0.15 s of ~1.8 s for frames).
    Above TRACK_PIXELS the analysis works on scaled frames while decoding grows with the source: FFmpeg's default,
    every core (4K, 12 s: 4.8 s with one decoder thread, 4.0 s with FFmpeg's)."""
    if (info.width or 0) * (info.height or 0) > TRACK_PIXELS:
        return None
    return media.decoder_threads_beside(busy_cores=1)  # this thread holds one core


def _holds(box: np.ndarray, other: np.ndarray) -> bool:
    """Whether `box` holds the centre of `other`."""
    cx, cy = (other[0] + other[2]) / 2, (other[1] + other[3]) / 2
    return bool(box[0] <= cx <= box[2] and box[1] <= cy <= box[3])


def analyse_footage(path: str, engine: SyncEngine, options: FootageOptions | None = None,
                    detector: FaceDetector | None = None, audio_stream: int = 0,
                    progress: Callable[[int, int], None] | None = None,
                    channel: int | None = None, start_s: float | None = None,
                    duration_s: float | None = None,
                    results_out: list[SyncResult] | None = None) -> tuple[Analysis, list[Track]]:
    """-> (the Analysis, the kept tracks in its `tracks` order, for drawing them). start_s / duration_s:
    only that range of the file (see media.decode); every time in the result is then from start_s.
    results_out, if given, receives each kept track's SyncResult in the same order (for scores that
    need the per-window distances, which the Analysis does not carry)."""
    scan = FootageScan(path, options, detector, audio_stream, progress, channel, start_s, duration_s)
    lookahead = scan.options.tracks.lookahead
    audio = _Audio()
    speech = SpeechActivity()  # streams beside the tracks: memory stays flat
    syncs: dict[int, _TrackSync] = {}
    ended: list[_TrackSync] = []
    results: dict[int, SyncResult] = {}

    def feed_audio(ts: _TrackSync, upto_sample: int) -> None:
        chunk = audio.slice(ts.audio_fed, upto_sample)
        if len(chunk):
            ts.stream.feed_audio(chunk)
            ts.audio_fed += len(chunk)

    def on_crops(events: list[CropEvent]) -> None:
        by_track: dict[int, list[CropEvent]] = {}  # each track's crops in one call: consecutive frames
        for ev in events:
            by_track.setdefault(ev.track.id, []).append(ev)
        for tid, evs in by_track.items():
            ts = syncs.get(tid)
            if ts is None:
                ts = syncs[tid] = _TrackSync(evs[0].track, engine.stream(f"{path}#track{tid}"),
                                             audio_fed=evs[0].frame * SAMPLES_PER_FRAME)
            ts.stream.feed_video(np.stack([ev.crop for ev in evs]), embed=not engine.batch_tracks)
            ts.last_frame = evs[-1].frame
            feed_audio(ts, (ts.last_frame + 1) * SAMPLES_PER_FRAME)
        if engine.batch_tracks:  # on a GPU: all open tracks' windows in one batch
            engine.embed_together([ts.stream for ts in syncs.values()])
        for tid, ts in list(syncs.items()):
            if ts.track.ended and ts.last_frame >= ts.track.last:
                ended.append(syncs.pop(tid))

    def settle(final: bool) -> None:
        """Finish ended tracks whose audio has arrived (all of them at the end of the file)."""
        for ts in list(ended):
            need = (ts.track.last + 1) * SAMPLES_PER_FRAME
            if final or audio.end >= need:
                feed_audio(ts, need)
                ended.remove(ts)
                try:
                    results[ts.track.id] = ts.stream.finish()
                except TooShort:
                    pass  # fewer than 6 frames: not a track worth reporting
        for ts in syncs.values():
            feed_audio(ts, (ts.last_frame + 1) * SAMPLES_PER_FRAME)
        keep_from = min([ts.audio_fed for ts in [*syncs.values(), *ended]] +
                        [max(0, scan.tracked_frames - lookahead - 1) * SAMPLES_PER_FRAME])
        audio.trim(keep_from)

    with torch_threads(engine.threads or engine.footage_threads):
        for kind, data in scan:
            if kind == "audio":
                audio.append(data)
                speech.feed(data)
            else:
                on_crops(data)
            settle(final=False)
        settle(final=True)
    kept = sorted(((t, results[t.id]) for t in scan.kept_tracks() if t.id in results), key=lambda tr: tr[0].first)
    if results_out is not None:
        results_out.extend(r for _, r in kept)
    return _analysis(path, scan, kept, engine, speech.frame_probability()), [t for t, _ in kept]


def _analysis(path: str, scan: FootageScan, kept: list[tuple[Track, SyncResult]], engine: SyncEngine,
              speech_probability: np.ndarray) -> Analysis:
    num_frames, info, options = scan.num_frames, scan.info, scan.options
    shot_list = scan.shots.shots(num_frames)
    if not kept:
        raise NoFace(path, f"no face found: no usable face track in {num_frames} frames")
    vshift = usable_vshift([r.num_windows for _, r in kept], engine.vshift, engine.edges, path)  # short: narrower
    kept = [(t, r.narrowed(vshift)) for t, r in kept]
    speech = speech_frames(speech_probability, options.speakers.speech_threshold)
    masks = [vote_windows(r.framewise_confidence, window_speech(speech, track.first, r.num_windows, 0))
             for track, r in kept]
    combined = combine([r.dists for _, r in kept], [r.framewise_confidence for _, r in kept], masks, vshift,
                       engine.edges)
    calibration = calibration_for(engine.model, vshift)
    drift = _drift(kept, masks, combined.basis, vshift, engine.edges, calibration)
    verdict, probability = judge(combined.offset_frames, combined.evidence, calibration)
    # each face alone: its own offset's verdict (no_sync: the sound is not this face's)
    owns = [combine([r.dists], [r.framewise_confidence], [mask], vshift, engine.edges)
            for (_, r), mask in zip(kept, masks)]
    judged = [judge(r.offset_frames, own.evidence if own else None, calibration) for (_, r), own in zip(kept, owns)]
    if probability is not None and len(kept) > 1:
        # two people taking turns mix one face's true dip with the other's noise: when one face's own
        # offset is likelier than the mixture's and disagrees with it, that face carries the file
        best = max(range(len(kept)), key=lambda t: -1.0 if judged[t][1] is None else judged[t][1])
        if owns[best] and (judged[best][1] or 0) > probability \
                and abs(owns[best].offset_frames - combined.offset_frames) > 1:
            combined = replace(owns[best], basis="best-track")
            verdict, probability = judge(combined.offset_frames, combined.evidence, calibration)
    speaking_model = SpeakingModel.from_dict(calibration.speaking if calibration else None) or UNCALIBRATED
    speaking_p, speaking = attribute(
        [offset_margin(r.dists, combined.offset_frames, vshift,
                       inside_clip(r.num_windows, vshift) if engine.edges == "valid" else None,
                       speaking_model.reach_frames) for _, r in kept],
        [track.first for track, _ in kept],
        [window_speech(speech, track.first, r.num_windows, combined.offset_frames) for track, r in kept],
        [v != "no_sync" for v, _ in judged], speaking_model, options.speakers)
    framewise = [None] * max(0, num_frames - 5)
    tracks = []
    for number, ((track, r), (track_verdict, track_probability)) in enumerate(zip(kept, judged)):
        for i, value in enumerate(r.framewise_confidence):
            f = track.first + i
            if f < len(framewise) and (framewise[f] is None or value > framewise[f]):
                framewise[f] = round(float(value), 6)
        tracks.append({
            "id": number,
            "start_s": round(track.first / FPS, 3),
            "end_s": round((track.last + 1) / FPS, 3),
            "box": [round(v * track.to_source, 1) for v in track.median_box()],  # source pixels
            "offset_frames": r.offset_frames,
            "audio_delay_ms": audio_delay_ms(r.offset_frames),
            "confidence": round(r.confidence, 6),
            "min_distance": round(r.min_distance, 6),
            "num_windows": r.num_windows,
            # this face's own verdict: does the audio belong to it (no_sync: not this face's sound)
            "verdict": track_verdict,
            "sync_probability": track_probability,
            # a track whose offset differs from the file's by more than a frame is reported as such
            "agrees_with_file": abs(r.offset_frames - combined.offset_frames) <= 1,
            "framewise_confidence": [round(float(v), 6) for v in r.framewise_confidence],  # from start_s on
            "speaking": segments(speaking[number], track.first),
            # per window from start_s on: how likely this face is the one speaking (null: no calibration)
            "speaking_probability": ([round(float(v), 3) for v in speaking_p[number]]
                                     if calibration and calibration.speaking else None),
        })
    model = engine.model.describe() if engine.model else {"name": "unnamed", "sha256": None}
    return Analysis(
        file=path, offset_frames=combined.offset_frames, audio_delay_ms=audio_delay_ms(combined.offset_frames),
        confidence=round(combined.confidence, 6), min_distance=round(combined.min_distance, 6),
        framewise_confidence=framewise, fps_source=info.fps if info else None,
        duration_s=info.duration_s if info else None, model=model, num_windows=combined.windows,
        vshift=vshift, decode="direct", precision=engine.precision,
        verdict=verdict, sync_probability=probability, evidence=combined.evidence,
        media={k: v for k, v in (info.to_dict() if info else {}).items() if k != "path"},
        shots=[{"start_s": round(a / FPS, 3), "end_s": round(b / FPS, 3)} for a, b in shot_list],
        tracks=tracks, basis=combined.basis, drift=drift,
        speech=[[round(a / FPS, 3), round(b / FPS, 3)] for a, b in runs(speech)],
    )


def _drift(kept, masks, basis: str, vshift: int, edges: str, calibration=None) -> dict:
    """Offsets over time from the same windows the file's offset used (speaking ones, if any)."""
    rows, starts, weights, inside = [], [], [], []
    for (track, r), mask in zip(kept, masks):
        use = mask if basis == "speaking" else np.ones_like(mask, bool)
        rows.append(r.dists)
        starts.append(track.first + np.arange(r.num_windows))
        weights.append(np.where(use, window_weights(r.framewise_confidence), 0.0))
        if edges == "valid":
            inside.append(inside_clip(r.num_windows, vshift))
    return sliding_offsets(np.concatenate(rows), np.concatenate(starts), np.concatenate(weights), vshift,
                           inside=np.concatenate(inside) if inside else None, calibration=calibration).to_dict()

"""The `Analysis` result (one object, one JSON schema for every front end) and `analyse_file`,
which runs media -> sync on footage that is already a face crop. Raw footage goes through the face
stage first: `footage.analyse_footage`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from . import __version__, media
from .drift import sliding_offsets
from .model.syncnet import CROP_SIZE
from .speakers import track_evidence
from .sync import SyncEngine, SyncResult, audio_delay_ms, inside_clip
from .verdict import Calibration, calibration_for, judge

SCHEMA = "otio-lipsync/analysis/1"


@dataclass
class Analysis:
    file: str
    offset_frames: int  # as syncnet_python prints "AV offset": negative = audio lags
    audio_delay_ms: float  # positive = the sound lags the picture (-offset_frames * 40 at 25 fps)
    confidence: float
    min_distance: float
    framewise_confidence: list[float]  # value i: the 5-frame window starting at 25-fps frame i
    fps_source: float | None
    duration_s: float | None
    model: dict
    num_windows: int
    vshift: int
    decode: str  # "direct" (frames decoded straight to BGR) or "reference" (syncnet_python's JPEG path)
    precision: str
    verdict: str | None = None  # in_sync | offset | no_sync (verdict.py); no_face is an error entry
    sync_probability: float | None = None  # P(offset within one frame of the truth); None: model not calibrated
    evidence: dict | None = None  # what the verdict rests on (verdict.FEATURES)
    media: dict = field(default_factory=dict)
    shots: list[dict] | None = None  # raw footage only: [{start_s, end_s}]
    tracks: list[dict] | None = None  # raw footage only: one entry per face track
    basis: str | None = None  # raw footage: "speaking" (confident windows of all faces), "all-tracks" or "best-track"
    drift: dict | None = None  # offsets over time, ms/minute, verdict (see drift.py)
    speech: list | None = None  # raw footage: [[start_s, end_s], ...] where the sound holds speech (speech.py)
    tool: dict = field(default_factory=lambda: {"name": "otio-lipsync", "version": __version__})
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    def offset_words(self) -> str:
        """`in sync`, `audio 120 ms late` or `audio 200 ms early`."""
        if self.offset_frames == 0:
            return "in sync"
        return f"audio {abs(self.audio_delay_ms):.0f} ms {'late' if self.audio_delay_ms > 0 else 'early'}"

    def summary(self) -> str:
        """One human line, e.g. `a.mp4: audio 120 ms late (-3 frames at 25 fps), confidence 7.41, p=0.93`,
        or `a.mp4: no sync found: the audio does not match the faces (p=0.03)`."""
        if self.verdict == "no_sync":
            return (f"{self.file}: no sync found: the audio does not match the "
                    f"{'faces' if self.tracks is not None else 'picture'} (p={self.sync_probability:.2f}; "
                    f"best guess {self.audio_delay_ms:+.0f} ms, not to be acted on)")
        frames = f"{self.offset_frames:+d} frames" if self.offset_frames else "0 frames"
        line = f"{self.file}: {self.offset_words()} ({frames} at 25 fps), confidence {self.confidence:.2f}"
        if self.sync_probability is not None:
            line += f", p={self.sync_probability:.2f}"
        if self.tracks is not None:
            speaking = sum(1 for t in self.tracks if t["speaking"])
            line += f", {len(self.tracks)} face track(s), {speaking} speaking"
        return line


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else None


def analysis_from_sync(path: str, result: SyncResult, info: media.MediaInfo | None, model: dict,
                       decode: str, precision: str = "float32", calibration: Calibration | None = None) -> Analysis:
    n = result.num_windows
    ev = track_evidence(result.dists, result.framewise_confidence, result.vshift, result.edges)
    verdict, probability = judge(result.offset_frames, ev.evidence if ev else None, calibration)
    inside = inside_clip(n, result.vshift) if result.edges == "valid" else None
    drift = sliding_offsets(result.dists, np.arange(n), np.ones(n), result.vshift, inside=inside,
                            calibration=calibration).to_dict()
    return Analysis(
        file=path,
        offset_frames=result.offset_frames,
        audio_delay_ms=audio_delay_ms(result.offset_frames),
        confidence=round(result.confidence, 6),
        min_distance=round(result.min_distance, 6),
        framewise_confidence=[round(float(v), 6) for v in result.framewise_confidence],
        fps_source=_finite(info.fps) if info and info.fps else None,
        duration_s=info.duration_s if info else None,
        model=model,
        num_windows=result.num_windows,
        vshift=result.vshift,
        decode=decode,
        precision=precision,
        verdict=verdict,
        sync_probability=probability,
        evidence=ev.evidence if ev else None,
        drift=drift,
        media={k: v for k, v in (info.to_dict() if info else {}).items() if k != "path"},
    )


def analyse_file(path: str, engine: SyncEngine, reference_decode: bool = False,
                 ffmpeg: str | None = None, audio_stream: int = 0,
                 channel: int | None = None, start_s: float | None = None,
                 duration_s: float | None = None) -> tuple[Analysis, SyncResult]:
    """Face-cropped analysis of one file (frames not 224x224 are resized); raises a LipsyncError
    subclass on bad input. start_s / duration_s: only that range of the file (see media.decode)."""
    model = engine.model.describe() if engine.model else {"name": "unnamed", "sha256": None}
    out: dict = {}
    if reference_decode:
        if start_s is not None or duration_s is not None:
            raise ValueError("reference_decode reads whole files: no start_s / duration_s")
        chunks = media.reference_decode(path, ffmpeg, size=(CROP_SIZE, CROP_SIZE), info_out=out)
    else:
        chunks = media.decode(path, size=(CROP_SIZE, CROP_SIZE), audio_stream=audio_stream, info_out=out,
                              channel=channel, start_s=start_s, duration_s=duration_s)
    result = engine.analyse(media.prefetched(chunks), source=path)  # decoding runs ahead on the other core
    decode = "reference" if reference_decode else "direct"
    return analysis_from_sync(path, result, out.get("info"), model, decode, engine.precision,
                              calibration_for(engine.model, result.vshift)), result


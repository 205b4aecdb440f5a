"""otio-lipsync: lip-sync analysis and correction for post-production, built on SyncNet.

    import otio_lipsync as lipsync

    model = lipsync.load_model()                      # once; pass it to every call
    result = lipsync.check("interview.mp4", model=model)
    result.audio_delay_ms, result.confidence, result.verdict
    lipsync.fix("interview.mp4", "fixed.mp4", model=model)

The API (`load_model`, `check`, `fix`, `score`, `annotate_timeline`, the result and error types) is
documented in `otio_lipsync.api` and the README's "Python API" section. Names are loaded when first used,
so `import otio_lipsync` stays cheap (no torch until a model is needed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
# bumped whenever the same input, model and options give other numbers, so that stored results (the OTIO
# cache, batch items) are computed again rather than mixed with new ones. 2: edges="valid" (sync.py);
# 3: verdict, sync_probability and evidence (verdict.py), adaptive shot cuts, small-face tiles, drift
# evidence; compact models search +-1 s by default (sync.default_vshift)
RESULT_REVISION = 3

# public name -> the module that defines it
_API = {
    "load_model": "api", "check": "api", "fix": "api", "score": "api", "annotate_timeline": "api",
    "qc_verdict": "api", "make_engine": "api", "make_detector": "api", "FixResult": "api",
    "Analysis": "analysis", "FileScore": "metrics", "FootageOptions": "footage", "Report": "otio_adapter.timeline",
    "LipsyncError": "errors", "MediaNotFound": "errors", "UnreadableMedia": "errors", "NoVideoStream": "errors",
    "NoAudioStream": "errors", "TooShort": "errors", "NoFace": "errors", "NoSync": "errors", "OutputError": "errors",
    "OptionError": "errors", "ModelNotFound": "errors", "BadWeights": "errors", "NoSyncProbability": "errors",
    "DetectorUnavailable": "errors", "FfmpegFailed": "errors", "CannotFix": "errors", "BatchError": "errors",
}

__all__ = ["RESULT_REVISION", "__version__", *_API]

if TYPE_CHECKING:
    from .analysis import Analysis
    from .api import FixResult, annotate_timeline, check, fix, load_model, make_detector, make_engine, qc_verdict, score
    from .errors import (
        BadWeights,
        BatchError,
        CannotFix,
        DetectorUnavailable,
        FfmpegFailed,
        LipsyncError,
        MediaNotFound,
        ModelNotFound,
        NoAudioStream,
        NoFace,
        NoSync,
        NoSyncProbability,
        NoVideoStream,
        OptionError,
        OutputError,
        TooShort,
        UnreadableMedia,
    )
    from .footage import FootageOptions
    from .metrics import FileScore
    from .otio_adapter.timeline import Report


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

"""The one place for the decisions every front end shares: how a model becomes a `SyncEngine`
(`make_engine`), how a face detector is set up (`make_detector`, `shared_detector`), and which pipeline a
file goes through (`measure`: face-cropped footage -> `analysis.analyse_file`, raw footage ->
`footage.analyse_footage`).

It sits between the stages (media, faces, sync, speakers, analysis, footage) and the front ends: the public
API (`api.py`), `lipsync batch`, the OTIO adapter (`timeline.py`) and the CLI call it; nothing below it
imports it. Everything here raises `errors.LipsyncError` subclasses and never exits. Heavy modules (torch,
the detector runtimes) are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from .errors import OptionError

if TYPE_CHECKING:
    from .analysis import Analysis
    from .faces.detectors import FaceDetector
    from .footage import FootageOptions
    from .model import LoadedModel
    from .sync import SyncEngine

ModelLike = Union[None, str, "os.PathLike[str]", "LoadedModel", "SyncEngine"]

DEFAULT_DETECTOR = "blazeface"


def load_model(name_or_path: str | os.PathLike | None = None) -> LoadedModel:
    """The model a name (`house`, `syncnet_v2`, see `lipsync models`) or a model file names; None: the default
    (house, shipped in the package). Raises ModelNotFound or BadWeights (LipsyncError subclasses)."""
    from .model import load

    return load(None if name_or_path is None else str(name_or_path))


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None) -> str:
    """"auto" (or None): CUDA when torch sees a GPU, else the CPU; "cuda" without one: OptionError."""
    if device not in (None, *DEVICES) and not str(device).startswith("cuda:"):
        raise OptionError(f"--device {device}: must be one of {', '.join(DEVICES)} (or cuda:N)", "--device")
    if device == "cpu":  # no torch import for the default (the batch driver checks this before forking workers)
        return device
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {device}: torch {torch.__version__} sees no CUDA GPU here "
                          "(use --device cpu, or install a CUDA build of torch on a GPU machine)", "--device")
    return device


def make_engine(model: ModelLike = None, *, vshift: int | None = None, max_offset_ms: float | None = None,
                batch_size: int | None = None, threads: int | None = None,
                precision: str = "float32", device: str | None = "cpu") -> SyncEngine:
    """A SyncEngine for `model` (a name or path, a LoadedModel, or an engine, returned as it is when no other
    option is given). Options left None take the engine's defaults (the search range: +-1 s, or
    syncnet_python's +-15 frames for syncnet_v2, see sync.default_vshift). Limits are checked before the model
    loads (memory grows with the range and the batch): OptionError, e.g. `--vshift 300: must be 0 to 250
    frames (+-10 s at 25 fps)`; a bad model: ModelNotFound / BadWeights. device: "cpu" (default), "cuda"
    (OptionError without a GPU) or "auto" (CUDA when present): the networks run there, all else on the CPU."""
    from .sync import MAX_BATCH, MAX_VSHIFT, SyncEngine, UnsupportedPrecision, search_vshift

    device = resolve_device(device)
    if isinstance(model, SyncEngine):
        if (vshift, max_offset_ms, batch_size, threads) == (None, None, None, None) and precision == model.precision \
                and device == model.device.type:
            return model
        model = model.model
    try:
        vshift = search_vshift(vshift, max_offset_ms)
    except ValueError as exc:
        raise OptionError(str(exc), "--max-offset-ms") from None
    if vshift is not None and not 0 <= vshift <= MAX_VSHIFT:
        raise OptionError(f"--vshift {vshift}: must be 0 to {MAX_VSHIFT} frames (+-{MAX_VSHIFT / 25:g} s at 25 fps)",
                          "--vshift")
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH:
        raise OptionError(f"--batch-size {batch_size}: must be 1 to {MAX_BATCH} windows", "--batch-size")
    if threads is not None and threads < 1:
        raise OptionError(f"--threads {threads}: must be at least 1", "--threads")
    if threads:
        import torch

        torch.set_num_threads(threads)
    from .model import LoadedModel

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    sizes = {k: v for k, v in (("vshift", vshift), ("batch_size", batch_size)) if v is not None}
    try:
        engine = SyncEngine(loaded, precision=precision, device=device, **sizes)
    except UnsupportedPrecision as exc:
        raise OptionError(str(exc), "--precision") from None
    engine.threads = threads
    return engine


def make_detector(name: str = DEFAULT_DETECTOR, **options) -> FaceDetector:
    """A new face detector of the registry (`faces.detectors.DETECTORS`); DetectorUnavailable (one line
    saying what to install where) when its runtime or files are missing or the name is unknown."""
    from .faces.detectors import make_detector as build

    return build(name, **options)


_detectors: dict[str, FaceDetector] = {}


def shared_detector(name: str = DEFAULT_DETECTOR) -> FaceDetector:
    """The process's one detector of that name, made when first asked for (a batch worker, the OTIO
    adapter's clips and repeated API calls reuse it: the runtime loads once)."""
    if name not in _detectors:
        _detectors[name] = make_detector(name)
    return _detectors[name]


def measure(path: str, engine: SyncEngine, face_cropped: bool = False, footage_options: FootageOptions | None = None,
            detector: FaceDetector | None = None, audio_stream: int = 0, *, reference_decode: bool = False,
            ffmpeg: str | None = None, channel: int | None = None, start_s: float | None = None,
            duration_s: float | None = None, progress: bool | Callable[[int, int], None] = False,
            results_out: list | None = None) -> tuple[Analysis, list | None]:
    """One file through the right pipeline -> (Analysis, the kept face tracks, or None for a face crop).

    face_cropped: the frames are already a face crop (resized to 224x224) -> media -> sync; otherwise raw
    footage: shots, face detection (`detector`, default the shared one of footage_options.detector), tracks,
    per-track sync, active speakers. start_s / duration_s: only that range of the file. progress (raw
    footage): True draws a frame bar on stderr (on a terminal), a callable receives (done, total).
    results_out, if given, receives the SyncResults (the file's one, or one per kept face track), for scores.
    Raises a LipsyncError subclass on bad input."""
    if face_cropped:
        from .analysis import analyse_file

        analysis, result = analyse_file(path, engine, reference_decode=reference_decode, ffmpeg=ffmpeg,
                                        audio_stream=audio_stream, channel=channel, start_s=start_s,
                                        duration_s=duration_s)
        if results_out is not None:
            results_out.append(result)
        return analysis, None
    from .footage import FootageOptions, analyse_footage

    if detector is None:
        detector = shared_detector((footage_options or FootageOptions()).detector)
    kwargs = {"detector": detector, "audio_stream": audio_stream, "channel": channel, "start_s": start_s,
              "duration_s": duration_s, "results_out": results_out}
    if progress is True:
        from tqdm import tqdm

        with tqdm(desc=os.path.basename(path), unit="frame", file=sys.stderr, leave=False, disable=None) as bar:
            def advance(done, total):
                bar.total = total
                bar.update(done - bar.n)

            return analyse_footage(path, engine, footage_options, progress=advance, **kwargs)
    return analyse_footage(path, engine, footage_options, progress=progress or None, **kwargs)

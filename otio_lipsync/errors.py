"""Every error otio-lipsync raises on bad input, a bad model or option, or a failed tool: one tree under
`LipsyncError`. Each carries the file (or the option, model, detector) it is about, and str() is one line.

    LipsyncError                      file: problem
    +-- MediaNotFound, UnreadableMedia, NoVideoStream, NoAudioStream, TooShort, NoFace   (bad input)
    +-- NoSync                        the audio does not match the faces: no offset to act on
    +-- OutputError                   an output that cannot be written
    +-- OptionError                   a bad option value (`--vshift 99: must be 0 to 50 frames ...`)
    +-- ModelNotFound, BadWeights, NoSyncProbability     models
    +-- DetectorUnavailable           a face detector whose runtime or files are missing
    +-- FfmpegFailed, CannotFix       writing a corrected copy
    +-- BatchError                    a bad `lipsync batch` argument or manifest

The modules that raise them import them from here and keep their old names importable (e.g.
`otio_lipsync.model.ModelNotFound`, `otio_lipsync.faces.detectors.DetectorUnavailable`,
`otio_lipsync.ffmpeg_filter.fix.FfmpegFailed`, `otio_lipsync.batch.BatchError`: the same classes). This module
imports nothing, so every layer may use it. Front ends turn any of them into one line and an exit code
(the CLI: 2).
"""

from __future__ import annotations


class LipsyncError(Exception):
    """Base: `file: problem`."""

    def __init__(self, file, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


class MessageError(LipsyncError):
    """A LipsyncError whose one line is a whole message (not `file: problem`): str() is the message;
    `file` is what it is about when known ("" otherwise) and `problem` the message itself."""

    def __init__(self, message: str, file: str = ""):
        self.file = str(file)
        self.problem = message
        Exception.__init__(self, message)


class MediaNotFound(LipsyncError):
    pass


class UnreadableMedia(LipsyncError):
    """Not a media file, corrupt or truncated container, a directory, a decoder failure."""


class NoVideoStream(LipsyncError):
    pass


class NoAudioStream(LipsyncError):
    pass


class TooShort(LipsyncError):
    pass


class NoFace(LipsyncError):
    pass


class OutputError(LipsyncError):
    """An output that cannot be written (or would overwrite an input)."""


class NoSync(LipsyncError):
    """The audio does not match the faces (verdict `no_sync`): there is no offset to act on."""


class OptionError(MessageError):
    """An option value that cannot be used, e.g. `--vshift 99: must be 0 to 50 frames (+-2 s at 25 fps)`."""


class FfmpegFailed(LipsyncError):
    """The ffmpeg binary could not run or failed; `problem` ends with its last stderr line."""


class CannotFix(LipsyncError):
    """The container cannot carry the correction with the chosen method."""


class BatchError(LipsyncError):
    """A bad `lipsync batch` input argument or manifest (one line naming the file)."""


class ModelNotFound(MessageError):
    """A model name that is not installed (or a download that cannot be found); str() says how to get it."""

    def __init__(self, name: str, message: str):
        self.name = name
        super().__init__(message, file=name)


class BadWeights(LipsyncError):
    """A model file that cannot be used; str() is one line naming the file."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        super().__init__(path, problem)


class NoSyncProbability(MessageError):
    """The model gives distances only: no calibrated probability that a pair is in sync."""


class DetectorUnavailable(MessageError):
    """A face detector backend whose runtime or model files are missing; the message says what to install where."""


def error_entry(path: str, exc: LipsyncError, *, no_face_verdict: bool = False) -> dict:
    """The JSON object of a file that could not be measured or scored (`lipsync check --json`, `lipsync score
    --json`): {"file", "error": the problem, "error_type": the class name}; with no_face_verdict (check's
    entries) a NoFace also gets "verdict": "no_face"."""
    entry = {"file": path, "error": exc.problem, "error_type": type(exc).__name__}
    if no_face_verdict and isinstance(exc, NoFace):
        entry["verdict"] = "no_face"
    return entry

"""One exception type per kind of bad input; each carries the file, and str() is one line."""

from __future__ import annotations


class LipsyncError(Exception):
    """Base: `file: problem`."""

    def __init__(self, file, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


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

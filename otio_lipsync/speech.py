"""Speech activity: is anyone speaking in this stretch of sound at all?

Silero VAD (MIT), whose model ships inside the `silero-vad` wheel (no download), reads the 16 kHz track in
512-sample chunks (32 ms) as the audio streams past, so memory stays flat in file length. Its per-chunk
probability becomes a per-frame one (25 fps: 640 samples), then a per-frame decision with silero's own
defaults: speech above 0.5, a gap shorter than `min_silence_s` inside speech closed. Nobody is marked
speaking in silence (speakers.py), whatever the lips do.
"""

from __future__ import annotations

import functools

import numpy as np

from .errors import LipsyncError

RATE = 16000
CHUNK = 512  # silero's window at 16 kHz
SAMPLES_PER_FRAME = 640  # 25 fps


class SpeechModelUnavailable(LipsyncError):
    """The silero-vad package is not installed."""

    def __init__(self):
        super().__init__("<speech activity>", "speech activity needs the silero-vad package: pip install silero-vad "
                         "(its model ships inside the wheel; nothing is downloaded)")


@functools.lru_cache(maxsize=1)
def _model():
    import warnings

    from .sync import torch_threads

    try:
        # silero_vad sets torch to one thread for the whole process when imported: SyncNet then ran on one core
        with torch_threads(None):
            from silero_vad import load_silero_vad
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise SpeechModelUnavailable() from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice: the wheel ships TorchScript
        return load_silero_vad()


class SpeechActivity:
    """Streaming speech probability: feed int16 16 kHz samples in any chunking, then `frames()`."""

    def __init__(self):
        import torch

        self._torch = torch
        self._model = _model()
        self._model.reset_states()
        self._pending = np.zeros(0, np.float32)
        self._probs: list[float] = []
        self.samples = 0

    def feed(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self.samples += len(samples)
        x = np.asarray(samples, dtype=np.float32)
        if samples.dtype == np.int16:
            x = x / 32768.0
        self._pending = np.concatenate([self._pending, x])
        whole = len(self._pending) // CHUNK * CHUNK
        if whole:
            chunks = self._torch.from_numpy(self._pending[:whole].reshape(-1, CHUNK).copy())
            with self._torch.no_grad():
                for chunk in chunks:
                    self._probs.append(float(self._model(chunk, RATE)))
            self._pending = self._pending[whole:]

    def frame_probability(self) -> np.ndarray:
        """Speech probability per 25 fps frame of the audio fed (the chunk under each frame's centre)."""
        n = self.samples // SAMPLES_PER_FRAME
        if not self._probs or n == 0:
            return np.zeros(n)
        probs = np.asarray(self._probs)
        centre = (np.arange(n) * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME // 2) // CHUNK
        return probs[np.minimum(centre, len(probs) - 1)]


def speech_frames(probability: np.ndarray, threshold: float = 0.5, min_silence_s: float = 0.25,
                  fps: float = 25.0) -> np.ndarray:
    """Per-frame speech decision: above `threshold`, pauses shorter than `min_silence_s` closed."""
    from .speakers import close_gaps

    return close_gaps(np.asarray(probability) > threshold, max(1, int(round(min_silence_s * fps))))


def window_speech(frames: np.ndarray, first_frame: int, num_windows: int, offset_frames: int) -> np.ndarray:
    """Per sync window of a track (window i: video frames first+i .. first+i+4), whether its audio at the
    file's offset (frames first+i+offset ..) holds speech; audio outside the file is silence."""
    idx = first_frame + offset_frames + np.arange(num_windows)[:, None] + np.arange(5)[None, :]
    inside = (idx >= 0) & (idx < len(frames))
    return (np.where(inside, frames[np.clip(idx, 0, max(len(frames) - 1, 0))], False)).any(axis=1) \
        if len(frames) else np.zeros(num_windows, bool)

"""Audio features that define SyncNet's audio input.

`mfcc` reproduces python_speech_features 0.6 `mfcc(signal, 16000)` with its defaults, the feature the
syncnet_v2 weights were trained on: 25 ms rectangular frames every 10 ms, pre-emphasis 0.97 over the
whole signal, |rfft(512)|^2 / 512, 26 mel filters over 0-8000 Hz, log, DCT-II (ortho), 13 coefficients,
lifter 22, c0 replaced by the log frame energy. Samples are int16 *values* (not scaled to +-1).

`MfccStream` computes the same columns incrementally, so hours of audio never sit in memory; it emits
only complete frames (the reference's zero-padded last frame is never used by a SyncNet window).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
FRAME_LEN = 400  # 25 ms
FRAME_STEP = 160  # 10 ms: 4 MFCC columns per 25-fps video frame
NFFT = 512
NUM_FILTERS = 26
NUM_CEPS = 13
CEP_LIFTER = 22
PREEMPH = 0.97
_EPS = np.finfo(float).eps


def _hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _filterbank(nfilt=NUM_FILTERS, nfft=NFFT, samplerate=SAMPLE_RATE, lowfreq=0, highfreq=SAMPLE_RATE / 2):
    melpoints = np.linspace(_hz2mel(lowfreq), _hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(melpoints) / samplerate)
    fbank = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fbank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fbank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fbank


_FBANK_T = _filterbank().T
_LIFT = 1 + (CEP_LIFTER / 2.0) * np.sin(np.pi * np.arange(NUM_CEPS) / CEP_LIFTER)


def _dct_basis(n: int, rows: int) -> np.ndarray:
    k, m = np.arange(rows)[:, None], np.arange(n)[None, :]
    basis = np.cos(np.pi * k * (2 * m + 1) / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis


_DCT_T = _dct_basis(NUM_FILTERS, NUM_CEPS).T


def dct_ortho(x: np.ndarray) -> np.ndarray:
    """scipy.fftpack.dct(x, type=2, axis=1, norm="ortho")[:, :NUM_CEPS] for (n, NUM_FILTERS) float64, equal to
    ~1e-13 (tested against it and python_speech_features' golden MFCCs), without importing scipy (~0.2 s of
    every process). Rows past the first are taken of x minus its mean (their basis sums to zero), so a
    constant frame (silence at the floor) gives exact zeros, as in the golden MFCCs."""
    mean = x.mean(axis=1, keepdims=True)
    out = (x - mean) @ _DCT_T
    out[:, 0] = mean[:, 0] * math.sqrt(x.shape[1])
    return out


def _log_fbank(pspec: np.ndarray) -> np.ndarray:
    feat = np.dot(pspec, _FBANK_T)
    return np.log(np.where(feat == 0, _EPS, feat))


def _frames_to_logmel(frames: np.ndarray) -> np.ndarray:
    """(n, 400) pre-emphasised frames -> (n, 26) log mel filterbank energies (MFCC before the DCT)."""
    return _log_fbank(np.square(np.absolute(np.fft.rfft(frames, NFFT))) / NFFT)


def _frames_to_mfcc(frames: np.ndarray) -> np.ndarray:
    """(n, 400) pre-emphasised frames (float64) -> (n, 13)."""
    pspec = np.square(np.absolute(np.fft.rfft(frames, NFFT))) / NFFT
    energy = np.sum(pspec, 1)
    energy = np.where(energy == 0, _EPS, energy)
    feat = dct_ortho(_log_fbank(pspec))
    feat = feat * _LIFT
    feat[:, 0] = np.log(energy)
    return feat


def _preemphasis(signal: np.ndarray, previous: float | None) -> np.ndarray:
    signal = np.asarray(signal, dtype=np.float64)
    if previous is None:
        return np.append(signal[0], signal[1:] - PREEMPH * signal[:-1])
    return signal - PREEMPH * np.concatenate(([previous], signal[:-1]))


def num_mfcc_frames(num_samples: int) -> int:
    """Frame count of python_speech_features: 1 + ceil((N - 400) / 160), at least 1."""
    if num_samples <= FRAME_LEN:
        return 1
    return 1 + int(math.ceil((num_samples - FRAME_LEN) / FRAME_STEP))


def mfcc(signal: np.ndarray) -> np.ndarray:
    """Whole-signal MFCC, (13, T), including the zero-padded last frame, as the reference builds it."""
    signal = np.asarray(signal)
    n = num_mfcc_frames(len(signal))
    emphasised = _preemphasis(signal, None)
    padded = np.concatenate((emphasised, np.zeros((n - 1) * FRAME_STEP + FRAME_LEN - len(signal))))
    idx = np.arange(FRAME_LEN)[None, :] + FRAME_STEP * np.arange(n)[:, None]
    return _frames_to_mfcc(padded[idx]).T


# feature name (as model input specs write it) -> (rows, frames -> (n, rows) function)
FEATURES = {"mfcc13": (NUM_CEPS, _frames_to_mfcc), "logmel26": (NUM_FILTERS, _frames_to_logmel)}


class MfccStream:
    """Feed int16 samples in any chunk sizes; get back the (13, k) columns that became complete.
    feature="logmel26" gives the 26 log mel energies of the same frames instead (IC-SyncNet's input)."""

    def __init__(self, feature: str = "mfcc13"):
        if feature not in FEATURES:
            raise ValueError(f"unknown audio feature {feature!r} (known: {', '.join(FEATURES)})")
        self.rows, self._to_columns = FEATURES[feature]
        self._previous: float | None = None
        self._pending = np.zeros(0, dtype=np.float64)  # pre-emphasised, not yet fully consumed
        self.columns_emitted = 0

    def feed(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples)
        if len(samples) == 0:
            return np.zeros((self.rows, 0))
        emphasised = _preemphasis(samples, self._previous)
        self._previous = float(samples[-1])
        buf = np.concatenate((self._pending, emphasised))
        n = 0 if len(buf) < FRAME_LEN else 1 + (len(buf) - FRAME_LEN) // FRAME_STEP
        if n == 0:
            self._pending = buf
            return np.zeros((self.rows, 0))
        idx = np.arange(FRAME_LEN)[None, :] + FRAME_STEP * np.arange(n)[:, None]
        out = self._to_columns(buf[idx]).T
        self._pending = buf[n * FRAME_STEP:]
        self.columns_emitted += n
        return out

"""Shared fixtures. Test media comes from ../shared (never copied here) or is made with ffmpeg."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OTIO_LIPSYNC_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
CLIPS = SHARED / "data" / "clips"
GOLDEN_NAMES = ["grid_s1_sync", "hdtf_aoc_delay3", "hdtf_kh_sync", "vr2_sync", "vr4_30fps", "vr5_adv5"]
STAND_IN = REFERENCE / "syncnet_v2_seed0.model"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared data); set OTIO_LIPSYNC_SHARED to its folder")
    return path


@pytest.fixture(scope="session")
def stand_in_path() -> Path:
    return need(STAND_IN)


@pytest.fixture(scope="session")
def stand_in(stand_in_path):
    from otio_lipsync.model import load_model

    return load_model(stand_in_path)


@pytest.fixture(scope="session")
def engine(stand_in):
    from otio_lipsync.sync import SyncEngine

    return SyncEngine(stand_in)


@pytest.fixture(scope="session")
def golden():
    need(REFERENCE / "golden")
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = dict(np.load(REFERENCE / "golden" / f"{name}.npz"))
        return cache[name]

    return load


def reference_input(name: str) -> Path:
    return need(REFERENCE / "inputs" / f"{name}.mp4")


def clip(name: str) -> Path:
    return need(CLIPS / name)


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    from otio_lipsync.media import find_ffmpeg

    return find_ffmpeg()


def run_ffmpeg(exe: str, *args: str) -> None:
    proc = subprocess.run([exe, "-nostdin", "-v", "error", "-y", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def system_ffmpeg_version() -> str | None:
    exe = shutil.which("ffmpeg")
    if not exe:
        return None
    out = subprocess.run([exe, "-version"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else None


def lip_model_path() -> Path:
    """The default model when it knows lips (the house model, or syncnet_v2 once installed); skips when the
    default is missing or is the stand-in weights, which produce numbers but not correct offsets."""
    from otio_lipsync.model import ModelNotFound, registry
    from otio_lipsync.model.weights import sha256_of

    try:
        path = registry.resolve(None)
    except ModelNotFound as exc:
        pytest.skip(f"needs a model that knows lips: {exc}")
    if not path.is_file():
        pytest.skip(f"needs a model that knows lips: {path} is missing")
    if STAND_IN.exists() and sha256_of(path) == sha256_of(STAND_IN):
        pytest.skip("needs a model that knows lips: the default model is the stand-in test weights")
    return path


def junk_bytes(n: int, seed: int = 20261201) -> bytes:
    """Bytes no demuxer accepts, the same every run: some random strings probe as a headerless audio
    stream (ADTS / MP3 sync words), which made os.urandom "corrupt" files flaky."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()

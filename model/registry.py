"""Known models by name, where they are looked for, and how to get the ones that are missing.

A `--model` value is a path to a model file, or a name. Names are looked up, in order, in
`$OTIO_LIPSYNC_MODEL_DIR` (if set), the user cache `$XDG_CACHE_HOME/otio-lipsync/models`
(default `~/.cache/otio-lipsync/models`), and the models shipped inside the package, as `NAME.model`
or `NAME.pt`. Nothing is ever downloaded implicitly: `lipsync models download NAME` does it on request.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFound
from .weights import BadWeights, LoadedModel, load_model

PACKAGED_DIR = Path(__file__).with_name("weights")
SUFFIXES = (".model", ".pt")


@dataclass(frozen=True)
class KnownModel:
    name: str
    description: str
    url: str | None = None  # public download location, if the model is published
    sha256: str | None = None


KNOWN_MODELS = {
    m.name: m
    for m in [
        KnownModel(
            "syncnet_v2",
            "original SyncNet (Chung & Zisserman 2016), the public weights of joonson/syncnet_python",
            url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        ),
        KnownModel(
            "house",
            "otio-lipsync house model: CompactSyncNet trained by lipsync-train on GRID s1 and 34 synced people "
            "of ../shared/data; ships inside the package (see README, House model)",
        ),
    ]
}

# the house model ships in the package, so `lipsync check` works offline with no download
DEFAULT_MODEL = "house"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "otio-lipsync" / "models"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("OTIO_LIPSYNC_MODEL_DIR"):
        dirs.append(Path(os.environ["OTIO_LIPSYNC_MODEL_DIR"]))
    dirs += [cache_dir(), PACKAGED_DIR]
    return dirs


def find_model_file(name: str) -> Path | None:
    for d in search_dirs():
        for suffix in SUFFIXES:
            candidate = d / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith(SUFFIXES) or os.path.exists(value)


def how_to_get(name: str) -> str:
    target = cache_dir() / f"{name}.model"
    known = KNOWN_MODELS.get(name)
    if known and known.url:
        return (f"model {name!r} is not installed: download {known.url} and place it at {target} "
                f"(or run `lipsync models download {name}`, or pass --model PATH)")
    if known:
        return f"model {name!r} is not installed: place its file at {target} or pass --model PATH"
    names = ", ".join(sorted(set(KNOWN_MODELS) | set(available_names())))
    return f"unknown model {name!r} (known: {names}); pass --model PATH for a model file"


def available_names() -> list[str]:
    names = set()
    for d in search_dirs():
        if d.is_dir():
            names |= {p.stem for p in d.iterdir() if p.suffix in SUFFIXES and p.is_file()}
    return sorted(names)


def resolve(value: str | None) -> Path:
    """A `--model` value (name or path) -> an existing file, or ModelNotFound saying how to get it."""
    value = value or DEFAULT_MODEL
    if looks_like_path(value):
        return Path(value)  # load_model reports a missing or bad file with its path
    found = find_model_file(value)
    if found is None:
        raise ModelNotFound(value, how_to_get(value))
    return found


def load(value: str | None) -> LoadedModel:
    return load_model(resolve(value))


def listing() -> list[dict]:
    """One row per known or installed model: name, where it is (or how to get it), description."""
    rows = []
    for name in sorted(set(KNOWN_MODELS) | set(available_names())):
        path = find_model_file(name)
        known = KNOWN_MODELS.get(name)
        rows.append({
            "name": name,
            "installed": path is not None,
            "path": str(path) if path else None,
            "default": name == DEFAULT_MODEL,
            "description": known.description if known else "",
            "how_to_get": None if path else how_to_get(name),
        })
    return rows


DOWNLOAD_DEADLINE_S = 900.0  # the whole download; syncnet_v2 is 52 MB


def download(name: str, url: str | None = None, timeout: float = 60.0, progress=None,
             deadline_s: float = DOWNLOAD_DEADLINE_S) -> Path:
    """Fetch a known model into the cache, atomically; the file must load before it is kept. `timeout`
    bounds each wait for data, `deadline_s` the whole download (a server that drips bytes is dropped:
    TimeoutError, an OSError)."""
    known = KNOWN_MODELS.get(name)
    url = url or (known.url if known else None)
    if not url:
        raise ModelNotFound(name, f"no download location known for {name!r}; pass --url")
    target = cache_dir() / f"{name}.model"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    end = time.monotonic() + deadline_s
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            while block := resp.read1(1 << 20):  # whatever arrived: the deadline is checked between reads
                out.write(block)
                if progress:
                    progress(len(block), total)
                if time.monotonic() > end:
                    raise TimeoutError(f"not complete after {deadline_s:g} s (deadline)")
        loaded = load_model(tmp)
        if known and known.sha256 and loaded.sha256 != known.sha256:
            raise BadWeights(url, f"sha256 {loaded.sha256} does not match the published {known.sha256}")
        shutil.move(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target

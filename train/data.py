"""`lipsync-train prepare`: footage -> face tracks -> compact training shards.

A dataset is a folder:
- `shard_NNNN.npz`: `mouths` uint8 (frames, 48, 80), the grey lower faces the compact network sees
  (`model.compact.mouth_frames` of the engine's 224x224 crops), and `audio` int16, 16 kHz mono, 640
  samples per frame, aligned with the frames. Both concatenated over the shard's tracks.
- `index.json`: the tracks of each shard (person, source file, first frame, frame count, offsets into
  the shard arrays), the sources done and the sources that failed with their reason.

Audio is kept as samples, not features, so one dataset serves every objective (MFCC or log mel).
Preparing is resumable: sources already in the index are skipped, shards are written atomically.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import LipsyncError
from ..faces.detectors import make_detector
from ..footage import FootageOptions, FootageScan
from ..media import VIDEO_SUFFIXES
from ..model.compact import mouth_frames
from ..outputs import atomic_output

SAMPLES_PER_FRAME = 640
INDEX = "index.json"
# ~3.3 kB per frame compressed (mouths + audio): ~50 MB a shard, so each fits the GPU machine's 64 MiB per
# upload and a dataset travels in parts; still a few large files, not thousands
SHARD_FRAMES = 15_000


@dataclass
class Source:
    path: str
    person: str


def _catalog_rows(folder: Path) -> dict[str, dict]:
    """file name -> row of a catalog.tsv / index.tsv in the folder or its parent, if any."""
    for base in (folder, folder.parent):
        for name in ("catalog.tsv", "index.tsv"):
            p = base / name
            if p.is_file():
                with open(p, newline="") as f:
                    rows = list(csv.DictReader(f, delimiter="\t"))
                return {Path(r.get("file", "")).name: r for r in rows if r.get("file")}
    return {}


def find_sources(inputs: Iterable[str], person: str | None = None, groups: set[str] | None = None) -> list[Source]:
    """Folders (recursive), video files and .txt lists of paths -> sources with a person label: `person`
    if given, else the catalog's `speaker_hint`/`person` column, else the file's folder name. Catalog rows
    whose `group` is not in `groups` are left out (default: only `synced`, so generated talking heads and
    mismatched clips never become positives)."""
    groups = groups if groups is not None else {"synced"}
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            paths += [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            paths.append(p)
    out, catalogs = [], {}
    for p in paths:
        rows = catalogs.setdefault(p.parent, _catalog_rows(p.parent))
        row = rows.get(p.name, {})
        if row.get("group") and groups and row["group"] not in groups:
            continue
        label = person or row.get("speaker_hint") or row.get("person") or p.parent.name
        out.append(Source(str(p), label))
    return out


def load_index(dataset: Path) -> dict:
    p = Path(dataset) / INDEX
    if not p.exists():
        return {"format": "otio-lipsync-dataset/1", "shards": [], "done": [], "failed": {}}
    return json.loads(p.read_text())


def _write_index(dataset: Path, index: dict) -> None:
    with atomic_output(str(Path(dataset) / INDEX)) as tmp:
        Path(tmp).write_text(json.dumps(index, indent=1))


def tracks_of(source: Source, options: FootageOptions, detector) -> list[dict]:
    """One file -> [{person, source, first_frame, mouths, audio}] for each kept face track."""
    scan = FootageScan(source.path, options, detector)
    mouths: dict[int, list[tuple[int, np.ndarray]]] = {}
    audio = []
    for kind, data in scan:
        if kind == "audio":
            audio.append(data)
            continue
        if not data:
            continue
        by_track: dict[int, list] = {}
        for ev in data:
            by_track.setdefault(ev.track.id, []).append(ev)
        for tid, evs in by_track.items():
            m = mouth_frames(torch.from_numpy(np.stack([e.crop for e in evs]))).numpy()
            mouths.setdefault(tid, []).extend(zip([e.frame for e in evs], m))
    samples = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    out = []
    for track in scan.kept_tracks():
        frames = sorted(mouths.get(track.id, []), key=lambda fm: fm[0])
        if len(frames) < 10:
            continue
        first = frames[0][0]
        n = min(len(frames), len(samples) // SAMPLES_PER_FRAME - first)
        if n < 10:
            continue
        out.append({"person": source.person, "source": source.path, "first_frame": int(first),
                    "mouths": np.stack([m for _, m in frames[:n]]),
                    "audio": samples[first * SAMPLES_PER_FRAME:(first + n) * SAMPLES_PER_FRAME]})
    return out


def prepare(inputs: list[str], dataset: str | os.PathLike, person: str | None = None,
            groups: set[str] | None = None, options: FootageOptions | None = None,
            report: Callable[[str], None] = print, progress=None) -> dict:
    """Append the tracks of `inputs` to `dataset` (created if needed); returns the index."""
    dataset = Path(dataset)
    dataset.mkdir(parents=True, exist_ok=True)
    index = load_index(dataset)
    seen = set(index["done"]) | set(index["failed"])
    found = find_sources(inputs, person, groups)
    sources = [s for s in found if str(Path(s.path).resolve()) not in seen]
    if len(found) > len(sources):
        report(f"{len(found) - len(sources)} sources already in {dataset} (done or failed before): skipped")
    options = options or FootageOptions()
    detector = make_detector(options.detector)
    pending: list[dict] = []
    pending_sources: list[str] = []

    def flush():
        if pending:
            k = len(index["shards"])
            name = f"shard_{k:04d}.npz"
            mouths = np.concatenate([t["mouths"] for t in pending])
            audio = np.concatenate([t["audio"] for t in pending])
            with atomic_output(str(dataset / name)) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, mouths=mouths, audio=audio)
            entries, at = [], 0
            for t in pending:
                n = len(t["mouths"])
                entries.append({"person": t["person"], "source": t["source"], "first_frame": t["first_frame"],
                                "frames": n, "offset": at})
                at += n
            index["shards"].append({"file": name, "frames": int(at), "tracks": entries})
        index["done"] += pending_sources
        _write_index(dataset, index)
        pending.clear()
        pending_sources.clear()

    iterator = progress(sources) if progress else sources
    for source in iterator:
        key = str(Path(source.path).resolve())
        try:
            tracks = tracks_of(source, options, detector)
        except LipsyncError as exc:
            report(str(exc))
            index["failed"][key] = str(exc)
            _write_index(dataset, index)
            continue
        if not tracks:
            report(f"{source.path}: no face track long enough to train on; skipped")
            index["failed"][key] = "no usable face track"
            _write_index(dataset, index)
            continue
        pending.extend(tracks)
        pending_sources.append(key)
        if sum(len(t["mouths"]) for t in pending) >= SHARD_FRAMES:
            flush()
    flush()
    return index


@dataclass
class Track:
    person: str
    source: str
    mouths: torch.Tensor  # uint8 (T, 48, 80)
    audio: np.ndarray  # int16 (T * 640,)


def load_tracks(dataset: str | os.PathLike) -> list[Track]:
    """Every track of a dataset, decompressed into memory once (training never touches the disk)."""
    dataset = Path(dataset)
    index = load_index(dataset)
    if not index["shards"]:
        raise LipsyncError(str(dataset), f"no prepared shards in {dataset} (run `lipsync-train prepare` first)")
    out = []
    for shard in index["shards"]:
        with np.load(dataset / shard["file"]) as z:
            mouths, audio = z["mouths"], z["audio"]
        for t in shard["tracks"]:
            a, n = t["offset"], t["frames"]
            out.append(Track(t["person"], t["source"], torch.from_numpy(mouths[a:a + n].copy()),
                             audio[a * SAMPLES_PER_FRAME:(a + n) * SAMPLES_PER_FRAME].copy()))
    return out

"""`lipsync-train prepare`: footage -> face tracks -> compact training shards.

A dataset is a folder:
- `shard_NNNN.npz`: `mouths` uint8 (frames, 48, 80), the grey lower faces the compact network sees
  (`model.compact.mouth_frames` of the engine's 224x224 crops), and `audio` int16, 16 kHz mono, 640
  samples per frame, aligned with the frames. Both concatenated over the shard's tracks.
- with `--faces` (for `--arch syncnet`), also `faces` uint8 and `face_offsets` int64 (frames + 1): every
  224x224 BGR crop itself, JPEG-encoded (quality 90, ~10 kB a frame; the raw crops would be 150 kB) and
  decoded per training segment;
- `index.json`: the tracks of each shard (person, source file, first frame, frame count, offsets into
  the shard arrays), the sources done and the sources that failed with their reason.

Audio is kept as samples, not features, so one dataset serves every objective (MFCC or log mel).
Preparing is resumable: sources already in the index are skipped, shards are written atomically.
"""

from __future__ import annotations

import csv
import io
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
from ..model.syncnet import CROP_SIZE
from ..outputs import atomic_output

SAMPLES_PER_FRAME = 640
INDEX = "index.json"
# ~3.3 kB per frame compressed (mouths + audio): ~50 MB a shard, so each fits the GPU machine's 64 MiB per
# upload and a dataset travels in parts; still a few large files, not thousands
SHARD_FRAMES = 15_000


FACE_JPEG_QUALITY = 90


class FaceJpegs:
    """A track's 224x224 BGR face crops as JPEG bytes in one buffer; `decode(a, b)` -> uint8 (b-a, 224, 224, 3).

    JPEG holds the crops at ~10 kB a frame, so the original architecture's full-face input fits in memory for
    a whole dataset; a training segment decodes its ~36 frames (a few ms against seconds of network)."""

    def __init__(self, buffer: np.ndarray, offsets: np.ndarray):
        self.buffer, self.offsets = buffer, offsets  # offsets: frames + 1 byte positions into buffer

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def encode(cls, crops: np.ndarray) -> FaceJpegs:
        from PIL import Image

        parts = []
        for crop in crops:
            f = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(crop[..., ::-1])).save(f, "JPEG", quality=FACE_JPEG_QUALITY)
            parts.append(np.frombuffer(f.getvalue(), np.uint8))
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        return cls(np.concatenate(parts) if parts else np.zeros(0, np.uint8), offsets)

    @classmethod
    def concat(cls, items: list[FaceJpegs]) -> FaceJpegs:
        offsets, at = [np.zeros(1, np.int64)], 0
        for x in items:
            offsets.append(x.offsets[1:] + at)
            at += int(x.offsets[-1])
        return cls(np.concatenate([x.buffer for x in items]), np.concatenate(offsets))

    def slice(self, a: int, b: int) -> FaceJpegs:
        lo, hi = int(self.offsets[a]), int(self.offsets[b])
        return FaceJpegs(self.buffer[lo:hi].copy(), self.offsets[a:b + 1] - lo)

    def decode(self, a: int, b: int) -> np.ndarray:
        from PIL import Image

        out = np.empty((b - a, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        for k, i in enumerate(range(a, b)):
            raw = self.buffer[self.offsets[i]:self.offsets[i + 1]].tobytes()
            out[k] = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))[..., ::-1]
        return out


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


def tracks_of(source: Source, options: FootageOptions, detector, faces: bool = False) -> list[dict]:
    """One file -> [{person, source, first_frame, mouths, audio}] for each kept face track (plus `faces`,
    the JPEG crops, when asked)."""
    scan = FootageScan(source.path, options, detector)
    mouths: dict[int, list[tuple[int, np.ndarray]]] = {}
    jpegs: dict[int, dict[int, FaceJpegs]] = {}
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
            if faces:  # one frame each, so frames can be put in order and cut like the mouths
                jpegs.setdefault(tid, {}).update({e.frame: FaceJpegs.encode(e.crop[None]) for e in evs})
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
        item = {"person": source.person, "source": source.path, "first_frame": int(first),
                "mouths": np.stack([m for _, m in frames[:n]]),
                "audio": samples[first * SAMPLES_PER_FRAME:(first + n) * SAMPLES_PER_FRAME]}
        if faces:
            item["faces"] = FaceJpegs.concat([jpegs[track.id][f] for f, _ in frames[:n]])
        out.append(item)
    return out


def prepare(inputs: list[str], dataset: str | os.PathLike, person: str | None = None,
            groups: set[str] | None = None, options: FootageOptions | None = None,
            report: Callable[[str], None] = print, progress=None, faces: bool = False) -> dict:
    """Append the tracks of `inputs` to `dataset` (created if needed); returns the index. `faces`: also
    store the JPEG face crops the original architecture trains on (a dataset has them for all tracks or none)."""
    dataset = Path(dataset)
    index = load_index(dataset)
    if index["shards"] and bool(index.get("faces")) != faces:
        raise LipsyncError(str(dataset), f"this dataset was prepared {'with' if index.get('faces') else 'without'} "
                           f"--faces; add to it the same way, or prepare into a new folder")
    index["faces"] = faces
    dataset.mkdir(parents=True, exist_ok=True)
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
            arrays = {"mouths": mouths, "audio": audio}
            if faces:
                jpegs = FaceJpegs.concat([t["faces"] for t in pending])
                arrays.update(faces=jpegs.buffer, face_offsets=jpegs.offsets)
            with atomic_output(str(dataset / name)) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
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
            tracks = tracks_of(source, options, detector, faces)
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
    faces: FaceJpegs | None = None  # the 224x224 crops, in datasets prepared with --faces
    lips: torch.Tensor | None = None  # float32 (T, 94) lip geometry (model/lips.py), datasets with lips_NNNN.npz
    lip_score: np.ndarray | None = None  # (T,) the face mesh's face score per frame


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
            faces = FaceJpegs(z["faces"], z["face_offsets"]) if "faces" in z.files else None
        lips = score = None
        lips_file = dataset / shard["file"].replace("shard_", "lips_")
        if lips_file.exists():  # `lipsync-train landmarks`: face-mesh points per frame
            from ..model.lips import lip_features

            with np.load(lips_file) as z:
                lips, score = lip_features(z["points"]), z["score"].astype(np.float32)
        for t in shard["tracks"]:
            a, n = t["offset"], t["frames"]
            out.append(Track(t["person"], t["source"], torch.from_numpy(mouths[a:a + n].copy()),
                             audio[a * SAMPLES_PER_FRAME:(a + n) * SAMPLES_PER_FRAME].copy(),
                             faces.slice(a, a + n) if faces is not None else None,
                             lips[a:a + n].clone() if lips is not None else None,
                             score[a:a + n].copy() if score is not None else None))
    return out

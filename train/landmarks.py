"""`lipsync-train landmarks`: add face-mesh landmarks to a prepared dataset, for `fit --arch lips`.

The shards keep only the grey 48x80 lower faces, too little of the face for the mesh, so each source is
scanned again with the same detector and tracker options as `prepare` (decode, detection every
`detect_every` frames, tracking, the same 224x224 crops); every crop of a kept track goes through the
face mesh (faces/mesh.py). Tracks are matched to the dataset's by source and first frame, and the
re-derived crops are checked against the stored mouths (`mouth_frames` of the crop must equal the shard's
mouths: same crops, same frames), so landmarks line up frame for frame with the mouths and the audio.

Output: a new dataset folder whose `index.json` and `shard_NNNN.npz` link to the source dataset's and
whose `lips_NNNN.npz` holds, per shard frame, `points` float16 (frames, 468, 3) in crop pixels and
`score` float16 (frames,), the mesh's face score. `load_tracks` reads them into `Track.lips`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..faces.detectors import make_detector
from ..faces.mesh import FaceMesh
from ..footage import FootageOptions, FootageScan
from ..model.compact import mouth_frames
from ..outputs import atomic_output
from .data import INDEX, load_index


def source_landmarks(path: str, options: FootageOptions, detector, mesh: FaceMesh) -> dict[int, dict]:
    """first frame -> {frames, points, score, mouths} for each kept track of one file."""
    scan = FootageScan(path, options, detector)
    per: dict[int, list] = {}
    for kind, data in scan:
        if kind != "crops" or not data:
            continue
        by_track: dict[int, list] = {}
        for ev in data:
            by_track.setdefault(ev.track.id, []).append(ev)
        for tid, evs in by_track.items():
            crops = np.stack([e.crop for e in evs])
            pts, score = mesh(crops)
            m = mouth_frames(torch.from_numpy(crops)).numpy()
            per.setdefault(tid, []).extend(zip([e.frame for e in evs], pts, score, m))
    out = {}
    for track in scan.kept_tracks():
        rows = sorted(per.get(track.id, []), key=lambda r: r[0])
        if not rows:
            continue
        out[int(rows[0][0])] = {"frames": np.array([r[0] for r in rows]), "points": np.stack([r[1] for r in rows]),
                                "score": np.array([r[2] for r in rows]), "mouths": np.stack([r[3] for r in rows])}
    return out


def add_landmarks(dataset: str | os.PathLike, out: str | os.PathLike, options: FootageOptions,
                  base: str | os.PathLike = ".", report: Callable[[str], None] = print, threads: int = 1) -> dict:
    """Write `out` (see the module docstring); returns a summary with timings and the alignment check.
    `base`: the folder relative source paths in the index are relative to (where prepare ran)."""
    dataset, out = Path(dataset), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = load_index(dataset)
    detector = make_detector(options.detector)
    mesh = FaceMesh(threads=threads)
    summary = {"dataset": str(dataset), "detect_every": options.detect_every, "tracks": 0, "frames": 0,
               "mismatched_tracks": [], "missing_tracks": [], "seconds": 0.0, "cpu_seconds": 0.0}
    t0, c0 = time.perf_counter(), time.process_time()
    for k, shard in enumerate(index["shards"]):
        with np.load(dataset / shard["file"]) as z:
            mouths = z["mouths"]
        points = np.zeros((shard["frames"], 468, 3), np.float16)
        score = np.zeros(shard["frames"], np.float16)
        by_source: dict[str, list[dict]] = {}
        for t in shard["tracks"]:
            by_source.setdefault(t["source"], []).append(t)
        for n_src, (src, entries) in enumerate(by_source.items()):
            path = src if os.path.isabs(src) else os.path.join(base, src)
            found = source_landmarks(path, options, detector, mesh)
            for t in entries:
                a, n = t["offset"], t["frames"]
                got = found.get(t["first_frame"])
                if got is None or len(got["frames"]) < n:
                    summary["missing_tracks"].append(f"{src}@{t['first_frame']}")
                    continue
                diff = np.abs(got["mouths"][:n].astype(np.int16) - mouths[a:a + n]).mean()
                if diff > 0.5:
                    summary["mismatched_tracks"].append(f"{src}@{t['first_frame']}: mean |mouth diff| {diff:.2f}")
                points[a:a + n] = got["points"][:n]
                score[a:a + n] = got["score"][:n]
                summary["tracks"] += 1
                summary["frames"] += n
            if n_src % 20 == 0:
                report(f"{shard['file']}: {n_src + 1}/{len(by_source)} sources, {time.perf_counter() - t0:.0f} s")
        name = shard["file"].replace("shard_", "lips_")
        with atomic_output(str(out / name)) as tmp, open(tmp, "wb") as f:
            np.savez(f, points=points, score=score)
        link = out / shard["file"]
        if not link.exists():
            link.symlink_to((dataset / shard["file"]).resolve())
    with atomic_output(str(out / INDEX)) as tmp:
        Path(tmp).write_text(json.dumps({**index, "lips": True, "lips_of": str(dataset.resolve())}, indent=1))
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["cpu_seconds"] = round(time.process_time() - c0, 1)
    (out / "landmarks_summary.json").write_text(json.dumps(summary, indent=1))
    return summary

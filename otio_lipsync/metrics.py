"""`lipsync score`'s metrics: lip-sync quality of talking-head videos, per file and averaged (the API's
`score()` and `lipsync score` measure a file and score it here; this module measures nothing).

Metrics live in a registry (`METRICS`): a metric turns the per-face-track sync results of one file into
numbers, and says how to average them over files.

LSE (Prajwal et al., *A Lip Sync Expert Is All You Need*, 2020), exactly as Wav2Lip's
`evaluation/scores_LSE/` computes it on top of syncnet_python's `evaluate`:
- per face track: LSE-D = `minval`, the minimum over the +-15 frame shifts of the mean (over windows)
  distance curve; LSE-C = `conf` = median - minimum of that same curve;
- face-cropped files (`calculate_scores_LRS.py`): the file is one track; the reported numbers are the
  plain means over files of minval and of conf;
- raw footage (`calculate_scores_real_videos.sh`): every face track of every file is one line
  "minval conf" of all_scores.txt, so its mean weights every track alike (`mean_over_tracks`); a file's
  own value is the mean of its tracks, and `mean_over_files` averages those.

IC-SyncNet (Park et al., *Interpretable Convolutional SyncNet*, 2024), with a model trained with the
balanced BCE (`lipsync-train fit --objective icsyncnet`), whose outputs are probabilities that a lip window
and an audio window are in sync: for each face track, P[window, shift] over the +-15 frame search;
- offset: the shift whose mean probability over the track's windows is highest;
- probability at offset: that mean probability (how surely the track is in sync at its offset);
- offscreen ratio: the fraction of windows whose probability at that offset is below 0.5 (speech that
  does not come from this mouth: a voice-over, an off-screen speaker, silence the model cannot place);
- the paper's rule for cleaning datasets (`passes_filter`): probability at offset >= 0.9 and offscreen
  ratio <= 0.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .inputs import expand_inputs  # noqa: F401 - `lipsync score`'s discovery (inputs.py), importable here

# Wav2Lip's evaluation scripts (LSE-D / LSE-C) search +-15 frames: scores are defined over that range,
# whatever the engine's default search (`lipsync score` and `batch --score` both use it)
SCORE_VSHIFT = 15

SCHEMA = "otio-lipsync/score/1"


class TrackSync(Protocol):
    """What a metric reads of one face track's sync result: a `sync.SyncResult`, or anything with
    the same reductions (the raw-footage pipeline's per-track entries)."""

    min_distance: float
    confidence: float
    offset_frames: int
    num_windows: int
    dists: object  # (num_windows, 2 * vshift + 1) distances, for metrics that need them


@dataclass(frozen=True)
class TrackSummary:
    """A face track's reductions and times, when they come from the raw-footage pipeline's track entries."""

    min_distance: float
    confidence: float
    offset_frames: int
    num_windows: int
    start_s: float | None = None
    end_s: float | None = None
    dists: object = None


@dataclass(frozen=True)
class Column:
    key: str  # JSON / CSV name
    label: str  # table heading
    better: str  # "lower" or "higher"


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    columns: tuple[Column, ...]
    per_track: Callable[[TrackSync, object], dict]  # (one track, the LoadedModel) -> {column.key: value}
    default_model: str | None = None  # None: none; the user must name one with --model
    needs_probability: bool = False  # the model must give IC-SyncNet probabilities


def lse_of_track(result: TrackSync, model=None) -> dict:
    """LSE-D and LSE-C of one face track: syncnet_python's `minval` and `conf`."""
    return {"lse_d": float(result.min_distance), "lse_c": float(result.confidence)}


LSE = Metric(
    name="lse",
    description="LSE-D (min of the mean SyncNet distance over +-15 frames, lower is better) and LSE-C "
                "(median - min of that curve, higher is better), as Wav2Lip's evaluation scripts",
    columns=(Column("lse_d", "LSE-D", "lower"), Column("lse_c", "LSE-C", "higher")),
    per_track=lse_of_track,
    default_model="syncnet_v2",
)

OFFSCREEN_BELOW = 0.5  # a window whose probability at the track's offset is below this is "off screen"
FILTER_MIN_PROBABILITY = 0.9  # the paper's dataset-cleaning rule
FILTER_MAX_OFFSCREEN = 0.2


def icsyncnet_of_track(result: TrackSync, model) -> dict:
    """Probability at offset and offscreen ratio of one face track (see the module docstring)."""
    import numpy as np

    p = np.asarray(model.sync_probability(result.dists))
    vshift = (p.shape[1] - 1) // 2
    best = int(np.argmax(p.mean(0)))  # first index on ties, as the distance search
    at_offset = p[:, best]
    return {"probability_at_offset": float(at_offset.mean()),
            "offscreen_ratio": float((at_offset < OFFSCREEN_BELOW).mean()),
            "ic_offset_frames": vshift - best}


ICSYNCNET = Metric(
    name="icsyncnet",
    description="IC-SyncNet's probability at offset (higher is better) and offscreen ratio (lower is better); "
                "needs a model trained with --objective icsyncnet",
    columns=(Column("probability_at_offset", "P@offset", "higher"), Column("offscreen_ratio", "offscreen", "lower")),
    per_track=icsyncnet_of_track,
    needs_probability=True,
)

METRICS: dict[str, Metric] = {m.name: m for m in (LSE, ICSYNCNET)}


def passes_filter(values: dict, min_probability: float = FILTER_MIN_PROBABILITY,
                  max_offscreen: float = FILTER_MAX_OFFSCREEN) -> bool:
    """IC-SyncNet's dataset rule on a file's (or track's) icsyncnet values."""
    return values["probability_at_offset"] >= min_probability and values["offscreen_ratio"] <= max_offscreen


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass
class FileScore:
    file: str
    metric: str
    values: dict  # column key -> the file's value (mean over its tracks)
    tracks: list[dict]  # one entry per face track: column values, offset_frames, num_windows (+ times)
    decode: str
    face_cropped: bool
    model: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"file": self.file, "metric": self.metric, **self.values,
               "offset_frames": self.tracks[0]["offset_frames"] if len(self.tracks) == 1 else None,
               "num_windows": sum(t["num_windows"] for t in self.tracks),
               "num_tracks": len(self.tracks), "decode": self.decode, "face_cropped": self.face_cropped}
        if not self.face_cropped:
            out["tracks"] = self.tracks
        return out


def score_tracks(metric: Metric, tracks: Sequence[TrackSync], model=None) -> tuple[dict, list[dict]]:
    """Pure: one file's face tracks -> (the file's values = mean over tracks, per-track entries); model:
    the LoadedModel, for metrics that need its probabilities."""
    if not tracks:
        raise ValueError("a file needs at least one face track to be scored")
    entries = []
    for number, t in enumerate(tracks):
        entry = {"id": number, **metric.per_track(t, model), "offset_frames": int(t.offset_frames),
                 "num_windows": int(t.num_windows)}
        for key in ("start_s", "end_s"):
            if getattr(t, key, None) is not None:
                entry[key] = getattr(t, key)
        entries.append(entry)
    values = {c.key: _mean([e[c.key] for e in entries]) for c in metric.columns}
    return values, entries


def summarise(metric: Metric, scores: Sequence[FileScore], failed: int = 0) -> dict:
    """Averages as the evaluation scripts report them: over files (calculate_scores_LRS.py) and over
    all face tracks of all files (the mean of calculate_scores_real_videos.sh's all_scores.txt)."""
    tracks = [t for s in scores for t in s.tracks]
    return {
        "metric": metric.name,
        "files": len(scores),
        "tracks": len(tracks),
        "failed": failed,
        "mean_over_files": {c.key: _mean([s.values[c.key] for s in scores]) for c in metric.columns},
        "mean_over_tracks": {c.key: _mean([t[c.key] for t in tracks]) for c in metric.columns},
    }


def file_score(path: str, metric: Metric, analysis, results: Sequence, face_cropped: bool, model) -> FileScore:
    """Pure: one file's Analysis and SyncResults (one for a face crop; one per kept face track, in
    `analysis.tracks` order, for raw footage) -> FileScore. `lipsync score` and `lipsync batch --score` both
    score through here (`api.score_file` measures a file and calls it), from the results their measurement
    already has."""
    if face_cropped:
        tracks: list[TrackSync] = list(results)
    else:
        tracks = [TrackSummary(t["min_distance"], t["confidence"], t["offset_frames"], t["num_windows"],
                               t["start_s"], t["end_s"], r.dists) for t, r in zip(analysis.tracks, results)]
    values, entries = score_tracks(metric, tracks, model)
    return FileScore(file=path, metric=metric.name, values=values, tracks=entries, decode=analysis.decode,
                     face_cropped=face_cropped, model=analysis.model)


def check_model(metric: Metric, model) -> None:
    """Refuse a model the metric cannot use before any file is decoded: raises NoSyncProbability (one line
    naming the model) when the metric needs IC-SyncNet probabilities and the model gives distances only."""
    if metric.needs_probability:
        model.sync_probability([[0.0]])


def _fmt(value, width: int = 8, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def table(metric: Metric, scores: Sequence[FileScore], summary: dict) -> str:
    """A plain-text table: one row per file (and per track of raw footage), then the means."""
    names = [s.file for s in scores] + ["mean over files", "mean over tracks"]
    width = max([len(n) for n in names] + [4])
    head = f"{'file':<{width}} " + " ".join(f"{c.label:>8}" for c in metric.columns) + f" {'offset':>6} {'windows':>7}"
    lines = [head, "-" * len(head)]
    for s in scores:
        offset = s.tracks[0]["offset_frames"] if len(s.tracks) == 1 else None
        lines.append(f"{s.file:<{width}} " + " ".join(_fmt(s.values[c.key]) for c in metric.columns)
                     + f" {'' if offset is None else f'{offset:+d}':>6} {sum(t['num_windows'] for t in s.tracks):>7}")
        if not s.face_cropped:
            for t in s.tracks:
                label = f"  track {t['id']} {t.get('start_s', 0):.1f}-{t.get('end_s', 0):.1f} s"
                lines.append(f"{label:<{width}} " + " ".join(_fmt(t[c.key]) for c in metric.columns)
                             + f" {t['offset_frames']:+6d} {t['num_windows']:>7}")
    lines.append("-" * len(head))
    lines.append(f"{'mean over files':<{width}} "
                 + " ".join(_fmt(summary['mean_over_files'][c.key]) for c in metric.columns)
                 + f"   ({summary['files']} file(s))")
    if summary["tracks"] != summary["files"]:
        lines.append(f"{'mean over tracks':<{width}} "
                     + " ".join(_fmt(summary['mean_over_tracks'][c.key]) for c in metric.columns)
                     + f"   ({summary['tracks']} track(s))")
    return "\n".join(lines)


def summary_line(metric: Metric, summary: dict) -> str:
    """One line of a summarise() result: the means over files and, if they differ, over face tracks
    (`lipsync batch` prints it and puts it atop report.html; `table` is the long form)."""
    def values(means):
        return ", ".join(f"{c.label} {'-' if means[c.key] is None else f'{means[c.key]:.3f}'}" for c in metric.columns)

    line = f"{metric.name}: mean over {summary['files']} file(s): {values(summary['mean_over_files'])}"
    if summary["tracks"] != summary["files"]:
        line += f"; over {summary['tracks']} face track(s): {values(summary['mean_over_tracks'])}"
    if summary["failed"]:
        line += f"; {summary['failed']} not scored (failed)"
    return line


def csv_rows(metric: Metric, entries: Sequence[dict]) -> tuple[list[str], list[list]]:
    """(header, rows) for --csv: one row per file (track empty) and, for raw footage, one per track;
    a file that could not be scored has its error and empty values."""
    keys = [c.key for c in metric.columns]
    header = ["file", "track", *keys, "offset_frames", "num_windows", "decode", "error"]
    rows = []
    for e in entries:
        if "error" in e:
            rows.append([e["file"], "", *[""] * len(keys), "", "", "", e["error"]])
            continue
        rows.append([e["file"], "", *[_csv_num(e[k]) for k in keys],
                     "" if e["offset_frames"] is None else e["offset_frames"], e["num_windows"], e["decode"], ""])
        for t in e.get("tracks", []):
            rows.append([e["file"], t["id"], *[_csv_num(t[k]) for k in keys], t["offset_frames"], t["num_windows"],
                         e["decode"], ""])
    return header, rows


def _csv_num(value) -> str:
    return "" if value is None else repr(float(value))

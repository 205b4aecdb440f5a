"""Verdicts: can the reported offset be trusted at all?

SyncNet's confidence (median minus minimum of the mean distance curve) grows with any dip in the curve,
and on a clip whose audio belongs to someone else the curve still has a minimum somewhere: mismatched
clips read `+320 ms, confidence 14`. So the offset comes with a probability that it is the true one,
from the *evidence* behind it, measured the same way wherever an offset is reported (file, track):

- `confidence`: median - min of the curve the offset came from;
- `peak_z`: that dip in units of the curve's own spread away from the dip (a robust z-score: a real
  offset is a dip far below the curve's noise, a mismatch's minimum is the deepest of its noise);
- `part_agreement`: the windows cut into consecutive 2 s parts (at least 2), the share of parts whose own
  curve has its minimum within one frame of the reported offset (a real offset holds all along; noise
  moves); `part_excess`: how many more parts agree than chance would make agree (3 of 2*vshift+1 lags),
  which grows with the length of a real clip and stays near 0 for audio that is not the face's;
- `window_agreement`: the (weighted) share of single windows whose own minimum is within one frame;
- `log_windows`: how much evidence there is.

A logistic regression over these (Platt scaling), fitted by `lipsync-train calibrate` on people the model
never trained on (synced clips, applied shifts, and mismatched pairs made from them: video of one person
with audio of another), turns them into `sync_probability`: how likely the reported offset is within one
frame of the truth. Below the calibration's `no_sync_below` the verdict is `no_sync`: nothing should act on
the offset. The calibration lives beside the model (`<model>.calibration.json`, keyed by the model's
sha256 and fitted at its default search width): a model without one, or a search wider than the one it
was fitted at, gets `sync_probability: null` and never `no_sync`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .sync import mean_curve

# what the probability uses; `confidence` and `part_agreement` are reported beside them but added nothing
# on the calibration set (README: Verdicts)
FEATURES = ("peak_z", "part_excess", "window_agreement", "log_windows")
VERDICTS = ("in_sync", "offset", "no_sync", "no_face")
CALIBRATION_SCHEMA = "otio-lipsync/calibration/1"
PART_WINDOWS = 50  # 2 s parts: each long enough for an offset of its own


def evidence(rows: np.ndarray, weights: np.ndarray | None, inside: np.ndarray | None, vshift: int) -> dict:
    """The evidence features (see the module doc) of the offset that `mean_curve(rows, weights, inside)`
    gives: the one place they are computed, for the pipeline and for calibration alike."""
    rows = np.asarray(rows, dtype=np.float64)
    n = len(rows)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    curve = mean_curve(rows, w, inside).astype(np.float64)
    best = int(np.argmin(curve))
    median = float(np.median(curve))
    away = np.abs(np.arange(len(curve)) - best) > 2
    rest = curve[away] if away.any() else curve
    mad = float(np.median(np.abs(rest - np.median(rest)))) * 1.4826
    confidence = median - float(curve[best])

    agree = []
    for chunk in np.array_split(np.arange(n), max(2, min(n, n // PART_WINDOWS))):
        if len(chunk):
            part = mean_curve(rows[chunk], w[chunk], None if inside is None else inside[chunk])
            agree.append(abs(int(np.argmin(part)) - best) <= 1)
    chance = 3.0 / len(curve)

    masked = rows if inside is None else np.where(inside, rows, np.inf)
    own = np.argmin(masked, axis=1)
    near = np.abs(own - best) <= 1
    window_agreement = float((w * near).sum() / max(w.sum(), 1e-12))
    return {
        "confidence": round(confidence, 6),
        "peak_z": round(confidence / max(mad, 1e-6), 6),
        "part_agreement": round(float(np.mean(agree)), 6),
        "part_excess": round(float(np.sum(agree) - chance * len(agree)), 6),
        "window_agreement": round(window_agreement, 6),
        "log_windows": round(float(np.log(max(n, 1))), 6),
    }


@dataclass
class Calibration:
    """Platt scaling of the evidence features for one model (see the module doc)."""

    model_sha256: str
    vshift: int
    mean: list[float]  # feature standardisation
    scale: list[float]
    coef: list[float]
    intercept: float
    no_sync_below: float
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    fitted_on: dict = field(default_factory=dict)  # persons, counts, command
    reliability: list[dict] = field(default_factory=list)  # predicted vs observed, by person-held-out folds
    schema: str = CALIBRATION_SCHEMA
    speaking: dict = field(default_factory=dict)  # speakers.SpeakingModel, fitted beside it (train/calibrate.py)

    def probability(self, ev: dict) -> float:
        x = (np.array([ev[f] for f in self.features]) - np.array(self.mean)) / np.array(self.scale)
        with np.errstate(over="ignore"):  # a far-out clip: exp overflows to inf and the probability is 0, as it should
            return float(1.0 / (1.0 + np.exp(-(x @ np.array(self.coef) + self.intercept))))

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        from .outputs import atomic_output

        with atomic_output(str(path), ".json") as tmp, open(tmp, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        data = json.loads(Path(path).read_text())
        if data.get("schema") != CALIBRATION_SCHEMA:
            raise ValueError(f"{path}: not an otio-lipsync calibration file (schema {data.get('schema')!r})")
        return cls(**data)


def calibration_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".calibration.json")


def calibration_for(model, vshift: int) -> Calibration | None:
    """The calibration beside a LoadedModel's file, if it was fitted for these exact weights and a search at
    least as wide as `vshift` (a wider search finds deeper chance dips, so its evidence would read too
    strong; a short clip's narrowed search is within it); None otherwise."""
    path = getattr(model, "path", None)
    if not path:
        return None
    return _load_matching(str(calibration_path(path)), model.describe().get("sha256"), vshift)


@functools.lru_cache(maxsize=8)
def _load_matching(cal_path: str, sha256: str | None, vshift: int) -> Calibration | None:
    if not Path(cal_path).is_file():
        return None
    try:
        cal = Calibration.load(cal_path)
    except (ValueError, TypeError, json.JSONDecodeError):
        return None
    return cal if cal.model_sha256 == sha256 and vshift <= cal.vshift else None


def judge(offset_frames: int, ev: dict | None, calibration: Calibration | None) -> tuple[str, float | None]:
    """-> (verdict, sync_probability) for an offset and its evidence."""
    if ev is None:
        return "no_face", None
    p = calibration.probability(ev) if calibration else None
    if p is not None and p < calibration.no_sync_below:
        return "no_sync", round(p, 4)
    return ("in_sync" if offset_frames == 0 else "offset"), (None if p is None else round(p, 4))

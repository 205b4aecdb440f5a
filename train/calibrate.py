"""`lipsync-train calibrate`: fit the sync probability and the `no_sync` threshold of a model (verdict.py).

1. Each synced clip of the calibration persons goes through the raw-footage pipeline once; the main face
   track's lip and audio embeddings are kept (cached per file and model, so re-fitting is seconds).
2. Examples are made from embeddings exactly as the engine pairs them: each clip as it is and with its
   audio moved by a few frames (positive when the offset found is within one frame of the truth: the
   applied shift plus the clip's own offset when that is at most OWN_OFFSET_MAX frames, else negative),
   and every clip's video with other persons' audio (mismatched: always negative).
3. Each example's offset and evidence come from `speakers.track_evidence`, the code the pipeline runs;
   a logistic regression over the evidence features (verdict.FEATURES) gives the probability. The
   reliability table comes from person-held-out folds (each person's examples predicted by a fit
   without them), so it says how the probability behaves on people the calibration never saw.
4. `no_sync_below` is the highest threshold that keeps `keep_synced` (default 97.5%) of the correctly
   measured synced examples above it in those held-out predictions.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..footage import FootageOptions, analyse_footage
from ..speakers import SpeakingModel, offset_margin, track_evidence
from ..speech import window_speech
from ..sync import SyncEngine, SyncStream, inside_clip
from ..verdict import FEATURES, Calibration

SHIFTS = (0, -2, 2, -5, 5, -10, 10, -20, 20)  # frames of applied audio delay (kept within the search)
SEGMENT_WINDOWS = 125  # long clips also give a 5 s segment: short material is where evidence is thin
MISMATCH_PER_CLIP = 8
OWN_OFFSET_MAX = 3  # frames: a clip's own offset up to 120 ms is taken as its truth


@dataclass
class ClipEmbeddings:
    file: str
    person: str
    lip: np.ndarray  # (n, D): window i starts at the track's frame first + i
    aud: np.ndarray  # (n, D): the audio window paired with lip window i in the file as it is
    speech: np.ndarray | None = None  # (n,) bool: audio window i holds speech (speech.py); None: not known


class _KeepingStream(SyncStream):
    """A SyncStream that keeps every embedding it computes (calibration needs to re-pair them)."""

    def _add_lip(self, emb):
        super()._add_lip(emb)
        self.all_lip = getattr(self, "all_lip", []) + [emb.cpu()]

    def _add_aud(self, emb):
        super()._add_aud(emb)
        self.all_aud = getattr(self, "all_aud", []) + [emb.cpu()]


class _KeepingEngine(SyncEngine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.streams: dict[str, _KeepingStream] = {}

    def stream(self, source="<input>", keep_first=20):
        s = self.streams[source] = _KeepingStream(self, source, keep_first)
        return s


def _cache_key(path: str, model_sha: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{model_sha}".encode()).hexdigest()[:24]


def clip_embeddings(path: str, person: str, model, cache_dir: Path, options: FootageOptions,
                    detector) -> ClipEmbeddings:
    """The main face track's embeddings of one clip (raises LipsyncError subclasses on bad input)."""
    cache = cache_dir / f"{_cache_key(path, model.sha256)}.npz"
    if cache.is_file():
        data = np.load(cache)
        if "speech" in data:  # caches made before speech activity are recomputed
            return ClipEmbeddings(path, person, data["lip"], data["aud"], data["speech"])
    engine = _KeepingEngine(model)
    results = []
    analysis, tracks = analyse_footage(path, engine, options, detector=detector, results_out=results)
    main = max(range(len(tracks)), key=lambda i: results[i].num_windows)
    stream = engine.streams[f"{path}#track{tracks[main].id}"]
    n = results[main].num_windows
    lip = torch.cat(stream.all_lip)[:n].numpy()
    aud = torch.cat(stream.all_aud)[:n].numpy()
    # the stored embeddings re-paired here must give the engine's own distances
    check = pair_distances(lip, aud, results[main].vshift)
    if not np.allclose(check, results[main].dists, atol=1e-3):
        raise RuntimeError(f"{path}: re-paired distances differ from the engine's")
    frames = np.zeros(analysis_frames(analysis), bool)  # the pipeline's speech decision, per frame
    for a, b in analysis.speech or []:
        frames[int(round(a * 25)):int(round(b * 25))] = True
    speech = window_speech(frames, tracks[main].first, n, 0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, lip=lip, aud=aud, speech=speech)
    return ClipEmbeddings(path, person, lip, aud, speech)


def analysis_frames(analysis) -> int:
    ends = [b for _, b in analysis.speech or []] + [t["end_s"] for t in analysis.tracks or []]
    return int(round(max(ends, default=0) * 25)) + 1


def pair_distances(lip: np.ndarray, aud: np.ndarray, vshift: int) -> np.ndarray:
    """dists[i, k] = ||lip_i - aud_(i+k-vshift) + 1e-6||, audio outside the clip a zero vector: the
    engine's arithmetic (sync.SyncStream._emit_rows)."""
    n = min(len(lip), len(aud))
    lip_t, aud_t = torch.from_numpy(lip[:n]), torch.from_numpy(aud[:n])
    idx = torch.arange(n)[:, None] + torch.arange(-vshift, vshift + 1)[None, :]
    valid = (idx >= 0) & (idx < n)
    gathered = aud_t[idx.clamp(0, n - 1)] * valid[..., None]
    return torch.nn.functional.pairwise_distance(lip_t[:, None, :], gathered).numpy()


def _example(lip, aud, vshift, edges, true_offset: int | None, speech=None) -> dict | None:
    from ..errors import TooShort
    from ..sync import offset_from_dists, usable_vshift

    n = min(len(lip), len(aud))
    try:  # a short example searches what the pipeline would search for it
        vshift = usable_vshift([n], vshift, edges)
    except TooShort:
        return None
    if n < 2 * 5 or (true_offset is not None and abs(true_offset) > vshift - 2):
        return None
    dists = pair_distances(lip, aud, vshift)
    fconf = offset_from_dists(dists, vshift, edges)[5]
    combined = track_evidence(dists, fconf, vshift, edges, None if speech is None else speech[:len(dists)])
    label = true_offset is not None and abs(combined.offset_frames - true_offset) <= 1
    return {"evidence": combined.evidence, "offset": combined.offset_frames, "true_offset": true_offset,
            "label": int(label), "windows": len(dists)}


def examples(clips: list[ClipEmbeddings], vshift: int, edges: str, seed: int = 0) -> list[dict]:
    """Positives (own audio, applied shifts) and negatives (other persons' audio), see the module doc."""
    rng = np.random.default_rng(seed)
    out = []
    for ci, c in enumerate(clips):
        speech = c.speech if c.speech is not None else np.ones(len(c.aud), bool)
        pieces = [(c.lip, c.aud, speech)]
        if len(c.lip) > 2 * SEGMENT_WINDOWS:
            mid = (len(c.lip) - SEGMENT_WINDOWS) // 2
            cut = slice(mid, mid + SEGMENT_WINDOWS)
            pieces.append((c.lip[cut], c.aud[cut], speech[cut]))
        # the clip's own offset, when it is small, is its truth (sources claim sync within a few frames;
        # models trained apart agree on such offsets: README, House model); a larger reading is the model's
        # error and the claimed 0 stays the truth
        whole = _example(c.lip, c.aud, vshift, edges, true_offset=0, speech=speech)
        own = whole["offset"] if whole and abs(whole["offset"]) <= OWN_OFFSET_MAX else 0
        for lip, aud, sp in pieces:  # sp: speech per audio window, moving with the audio
            n = len(lip)
            for s in SHIFTS:
                if abs(s) > vshift - 3 or n - abs(s) < 10:
                    continue
                # audio delayed by s frames: video window i + s pairs with audio window i (offset -s)
                shifted = (lip[s:], aud[:n - s], sp[:n - s]) if s >= 0 else (lip[:n + s], aud[-s:], sp[-s:])
                ex = _example(*shifted[:2], vshift, edges, true_offset=own - s, speech=shifted[2])
                if ex:
                    out.append({**ex, "person": c.person, "file": c.file, "kind": "synced" if s == 0 else "shifted"})
            others = [o for o in clips if o.person != c.person]
            for oi in rng.choice(len(others), size=min(MISMATCH_PER_CLIP, len(others)), replace=False):
                o = others[oi]
                start = int(rng.integers(0, max(1, len(o.aud) - n + 1)))
                o_speech = o.speech if o.speech is not None else np.ones(len(o.aud), bool)
                ex = _example(lip, o.aud[start:start + n], vshift, edges, true_offset=None,
                              speech=o_speech[start:start + n])
                if ex:
                    out.append({**ex, "person": c.person, "file": c.file, "kind": "mismatched"})
    return out


def _fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = 1e-2, iters: int = 100):
    """Weighted L2-regularised logistic regression by Newton's method -> (coef, intercept)."""
    X = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(X.shape[1])
    reg = np.eye(X.shape[1]) * l2
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        grad = X.T @ (weights * (p - y)) + reg @ beta
        hess = (X * (weights * p * (1 - p))[:, None]).T @ X + reg
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def _fit(exs: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    x = np.array([[e["evidence"][f] for f in FEATURES] for e in exs])
    y = np.array([e["label"] for e in exs], dtype=float)
    mean, scale = x.mean(0), x.std(0) + 1e-9
    # every example weighs the same: the probability then means what the reliability table measures, on
    # this mix of examples (stated in fitted_on["examples"])
    coef, intercept = _fit_logistic((x - mean) / scale, y, np.ones(len(y)))
    return mean, scale, coef, intercept


def _predict(mean, scale, coef, intercept, exs):
    x = np.array([[e["evidence"][f] for f in FEATURES] for e in exs])
    return 1.0 / (1.0 + np.exp(-(((x - mean) / scale) @ coef + intercept)))


def fit_calibration(exs: list[dict], model_sha256: str, vshift: int, keep_synced: float = 0.975,
                    command: str = "") -> tuple[Calibration, np.ndarray]:
    """-> (the calibration fitted on all examples, person-held-out predictions for every example)."""
    persons = sorted({e["person"] for e in exs})
    held_out = np.zeros(len(exs))
    for person in persons:
        train = [e for e in exs if e["person"] != person]
        idx = [i for i, e in enumerate(exs) if e["person"] == person]
        held_out[idx] = _predict(*_fit(train), [exs[i] for i in idx])
    mean, scale, coef, intercept = _fit(exs)
    labels = np.array([e["label"] for e in exs])
    good_synced = np.array([e["kind"] != "mismatched" and e["label"] == 1 for e in exs])
    threshold = float(np.quantile(held_out[good_synced], 1.0 - keep_synced)) if good_synced.any() else 0.5
    bins = np.linspace(0, 1, 11)
    reliability = []
    for a, b in zip(bins[:-1], bins[1:]):
        chosen = (held_out >= a) & ((held_out < b) | (b == 1.0))
        if chosen.any():
            reliability.append({"predicted": f"{a:.1f}-{b:.1f}", "examples": int(chosen.sum()),
                                "mean_predicted": round(float(held_out[chosen].mean()), 3),
                                "observed": round(float(labels[chosen].mean()), 3)})
    kinds = {k: sum(e["kind"] == k for e in exs) for k in ("synced", "shifted", "mismatched")}
    mism = np.array([e["kind"] == "mismatched" for e in exs])
    fitted_on = {
        "persons": persons, "examples": kinds,
        "clips": len({e["file"] for e in exs}),
        "held_out": {
            "synced_or_shifted_kept": round(float((held_out[good_synced] >= threshold).mean()), 4),
            "mismatched_refused": round(float((held_out[mism] < threshold).mean()), 4) if mism.any() else None,
        },
        "command": command,
    }
    cal = Calibration(model_sha256=model_sha256, vshift=vshift, mean=[round(float(v), 6) for v in mean],
                      scale=[round(float(v), 6) for v in scale], coef=[round(float(v), 6) for v in coef],
                      intercept=round(intercept, 6), no_sync_below=round(threshold, 4), fitted_on=fitted_on,
                      reliability=reliability)
    return cal, held_out


def calibrate(sources, model, vshift: int, cache_dir: Path, report: Callable[[str], None] = print,
              progress=lambda it: it, command: str = "") -> Calibration:
    """sources: [(path, person)] of synced clips of people the model never trained on."""
    from ..errors import LipsyncError
    from ..faces.detectors import make_detector

    options = FootageOptions()
    detector = make_detector(options.detector)
    clips = []
    for path, person in progress(sources):
        try:
            clips.append(clip_embeddings(path, person, model, cache_dir, options, detector))
        except LipsyncError as exc:
            report(f"{exc} (left out)")
    engine_edges = SyncEngine(model).edges
    exs = examples(clips, vshift, engine_edges)
    cal, _ = fit_calibration(exs, model.sha256, vshift, command=command)
    cal.speaking = fit_speaking(clips, vshift, engine_edges)
    return cal


# --- speaking probability (speakers.attribute) -------------------------------------------------------------
SWITCH_WINDOWS = 75  # composites switch the soundtrack between the two faces every 3 s
SKIP_AROUND_SWITCH = 12  # windows (~0.5 s) either side of a switch are neither fitted nor scored
PARTNERS = 4  # each clip is paired with this many clips of other persons
SIGMAS = (4.0, 8.0, 12.0, 18.0, 25.0)  # smoothing candidates (frames) ...
REACHES = (0, 1, 2, 3)  # ... and offset_margin reaches: the pair with the best accuracy on the composites wins


def _margins(lip, aud, vshift, edges) -> dict[int, np.ndarray]:
    dists = pair_distances(lip, aud, vshift)
    inside = inside_clip(len(dists), vshift) if edges == "valid" else None
    return {reach: offset_margin(dists, 0, vshift, inside, reach) for reach in REACHES}


def speaking_examples(clips: list[ClipEmbeddings], vshift: int, edges: str, seed: int = 0) -> dict:
    """Raw margins for the two kinds of example, made from embeddings as the engine pairs them:
    - "among": two faces in view (two clips of different persons, cut to the shorter), the soundtrack
      switching from one's own audio to the other's every 3 s; each face is speaking while its audio plays;
    - "alone": one face with its own audio (speaking) or another person's (not speaking)."""
    rng = np.random.default_rng(seed)
    among, alone = [], []
    for ai, a in enumerate(clips):
        others = [bi for bi, b in enumerate(clips) if b.person != a.person]
        for bi in rng.permutation(others)[:PARTNERS]:
            b = clips[bi]
            n = min(len(a.lip), len(b.lip), len(a.aud), len(b.aud))
            if n < 2 * SWITCH_WINDOWS:
                continue
            plays_a = ((np.arange(n) + int(rng.integers(SWITCH_WINDOWS))) // SWITCH_WINDOWS) % 2 == 0
            aud = np.where(plays_a[:, None], a.aud[:n], b.aud[:n])
            switch = np.flatnonzero(np.diff(plays_a.astype(int)))
            scored = np.ones(n, bool)
            for w in switch:
                scored[max(0, w - SKIP_AROUND_SWITCH):w + SKIP_AROUND_SWITCH + 1] = False
            among.append({"persons": (a.person, b.person), "margins": (_margins(a.lip[:n], aud, vshift, edges),
                                                                       _margins(b.lip[:n], aud, vshift, edges)),
                          "labels": (plays_a, ~plays_a), "scored": scored})
        other = clips[int(rng.choice(others))] if others else None
        alone.append({"person": a.person, "margin": _margins(a.lip, a.aud, vshift, edges), "label": True})
        if other is not None:
            n = min(len(a.lip), len(other.aud))
            alone.append({"person": a.person, "margin": _margins(a.lip[:n], other.aud[:n], vshift, edges),
                          "label": False})
    return {"among": among, "alone": alone}


def _speaking_rows(raw: dict, sigma: float, reach: int, exclude: str | None = None):
    """Feature rows ([z], label) for "alone" and ([z, centred z - the other's], label) for "among" (see
    speakers.SpeakingModel), leaving out one person."""
    smooth = SpeakingModel(sigma, [0, 0], [0, 0, 0]).smooth
    alone_x, alone_y, among_x, among_y = [], [], [], []
    for e in raw["alone"]:
        if e["person"] != exclude:
            z, _ = smooth(e["margin"][reach])
            alone_x.append(z[:, None])
            alone_y.append(np.full(len(z), float(e["label"])))
    for e in raw["among"]:
        if exclude in e["persons"]:
            continue
        z = [smooth(m[reach]) for m in e["margins"]]  # (smoothed, centred) per face
        for t in (0, 1):
            among_x.append(np.stack([z[t][0], z[t][1] - z[1 - t][1]], 1)[e["scored"]])
            among_y.append(e["labels"][t][e["scored"]].astype(float))
    cat = lambda xs, d: np.concatenate(xs) if xs else np.zeros((0, d) if d else 0)  # noqa: E731
    return cat(alone_x, 1), cat(alone_y, 0), cat(among_x, 2), cat(among_y, 0)


def fit_speaking(clips: list[ClipEmbeddings], vshift: int, edges: str) -> dict:
    """The speaking model (speakers.SpeakingModel as a dict) with its person-held-out accuracy: on the
    composites, the share of scored windows where the face that is speaking is the likelier of the two
    (speakers.attribute's rule), and per-window reliability."""
    raw = speaking_examples(clips, vshift, edges)
    persons = sorted({c.person for c in clips})
    results = {}
    for sigma in SIGMAS:  # the rule (the likelier face speaks) has nothing fitted but these two
        for reach in REACHES:
            _, _, x, y = _speaking_rows({"alone": [], "among": raw["among"]}, sigma, reach)
            results[(sigma, reach)] = float(((x[:, 1] >= 0) == (y > 0.5)).mean()) if len(y) else 0.0
    sigma, reach = max(results, key=results.get)
    ax, ay, mx, my = _speaking_rows(raw, sigma, reach)
    alone_coef, alone_b = _fit_logistic(ax, ay, np.ones(len(ay)))
    among_coef, among_b = _fit_logistic(mx, my, np.ones(len(my)))
    # reliability of the "among" probability, person-held-out
    held, labels = [], []
    for person in persons:
        _, _, tx, ty = _speaking_rows(raw, sigma, reach, exclude=person)
        if not len(ty):
            continue
        c, b = _fit_logistic(tx, ty, np.ones(len(ty)))
        _, _, vx, vy = _speaking_rows({"alone": [], "among": [e for e in raw["among"] if person in e["persons"]]},
                                      sigma, reach)
        held.append(1 / (1 + np.exp(-(vx @ c + b))))
        labels.append(vy)
    held, labels = (np.concatenate(held), np.concatenate(labels)) if held else (np.zeros(0), np.zeros(0))
    reliability = []
    for a, b in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:]):
        chosen = (held >= a) & ((held < b) | (b == 1.0))
        if chosen.any():
            reliability.append({"predicted": f"{a:.1f}-{b:.1f}", "windows": int(chosen.sum()),
                                "observed": round(float(labels[chosen].mean()), 3)})
    return {
        "sigma_frames": sigma,
        "reach_frames": reach,
        "alone": [round(float(alone_coef[0]), 6), round(alone_b, 6)],
        "among": [round(float(among_coef[0]), 6), round(float(among_coef[1]), 6), round(among_b, 6)],
        "fitted_on": {"composites": len(raw["among"]), "alone_examples": len(raw["alone"]),
                      "switch_s": SWITCH_WINDOWS / 25, "skip_around_switch_s": SKIP_AROUND_SWITCH / 25},
        # the rule's accuracy on the composites for each (sigma, reach): the chosen pair is the best of these
        "accuracy_by_sigma_reach": {f"{k[0]:g},{k[1]}": round(v, 4) for k, v in results.items()},
        "accuracy": round(results[(sigma, reach)], 4),
        "reliability": reliability,
    }

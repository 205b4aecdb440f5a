"""`lipsync batch`, discovery: the inputs (files, folders, timelines, CSV/JSONL manifests) -> `Item`s with
their effective options, and each item's identity `key` (sha256 of its absolute path, size + mtime_ns or
content hash, the model's sha256, RESULT_REVISION and the canonical options JSON)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field

from .. import RESULT_REVISION
from ..errors import BatchError
from ..inputs import kind_of, walk_folder

MANIFEST_SUFFIXES = {".csv", ".jsonl"}
# options a manifest row may set for its item (the rest are batch-wide)
ITEM_OPTIONS = {"face_cropped", "model", "standard", "audio_stream", "channel", "fix", "fix_method", "slip",
                "min_confidence", "media_root", "score"}
# options that change a result: they go into the identity key
DEFAULTS = {"face_cropped": False, "model": None, "standard": None, "audio_stream": 0, "channel": None,
            "fix": False, "fix_method": "copy", "slip": False, "min_confidence": 3.0, "media_root": None,
            "vshift": None, "precision": "float32", "score": None}
# options that enter the key only when set: a batch that does not use them keys its items as if they did
# not exist (so adding such an option never changes keys by itself; RESULT_REVISION is what renews them)
KEYED_WHEN_SET = {"score"}
# options that change where an item runs, not its result: never in the key (a re-run on a GPU skips what the
# CPU measured)
NOT_KEYED = {"device"}


def timeline_suffixes() -> set[str]:
    import opentimelineio as otio

    return {"." + s for s in otio.adapters.suffixes_with_defined_adapters(read=True)} - MANIFEST_SUFFIXES


@dataclass
class Item:
    path: str  # absolute
    kind: str  # "media" or "timeline"
    options: dict = field(default_factory=dict)  # effective options (DEFAULTS + batch-wide + manifest row)
    key: str = ""
    identity: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "options": self.options, "key": self.key,
                "identity": self.identity}


# --- discovery ------------------------------------------------------------------------------------------

def read_manifest(path: str) -> list[tuple[str, dict]]:
    """CSV (header with `path` + option columns) or JSONL ({"path": ..., option: value}) -> [(path, options)].
    Relative paths are relative to the manifest's folder; empty CSV cells mean "the batch-wide value"."""
    base = os.path.dirname(os.path.abspath(path))
    rows: list[dict] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            if path.lower().endswith(".jsonl"):
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise BatchError(path, f"line {n}: not JSON ({exc.msg})") from None
                        if not isinstance(row, dict):
                            raise BatchError(path, f"line {n}: expected an object with a \"path\"")
                        rows.append(row)
            else:
                rows = [{k: _csv_value(v) for k, v in r.items() if k and v not in (None, "")}
                        for r in csv.DictReader(f)]
    except OSError as exc:
        raise BatchError(path, f"cannot read the manifest ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise BatchError(path, "not UTF-8 text (a manifest is a UTF-8 CSV or JSONL file)") from None
    except csv.Error as exc:  # NUL bytes and the like: a binary file
        raise BatchError(path, f"not a CSV manifest ({exc})") from None
    out = []
    for n, row in enumerate(rows, 1):
        if "path" not in row:
            raise BatchError(path, f"row {n}: no \"path\"")
        unknown = set(row) - ITEM_OPTIONS - {"path"}
        if unknown:
            raise BatchError(path, f"row {n}: unknown option(s) {', '.join(sorted(unknown))} "
                                   f"(known: {', '.join(sorted(ITEM_OPTIONS))})")
        options = {k: v for k, v in row.items() if k != "path"}
        for key in ("audio_stream", "channel"):  # a CSV cell "1" or "0" reads as a boolean
            if isinstance(options.get(key), bool):
                options[key] = int(options[key])
        problem = _bad_value(options)
        if problem:  # here, once, rather than as a worker error per item
            raise BatchError(path, f"row {n}: {problem}")
        if "score" in options:
            options["score"] = None if options["score"] in (None, "none") else str(options["score"])
            if options["score"] is not None and options["score"] not in _metrics():
                raise BatchError(path, f"row {n}: unknown score {options['score']!r} "
                                       f"(known: {', '.join(_metrics())})")
        out.append((os.path.join(base, os.path.expanduser(str(row["path"]))), options))
    return out


def _bad_value(options: dict) -> str | None:
    """What is wrong with a manifest row's option values, or None."""
    from ..ffmpeg_filter.qc import STANDARDS

    for key in ("face_cropped", "fix", "slip"):
        if key in options and options[key] not in (True, False):
            return f"{key} must be true or false, not {options[key]!r}"
    for key in ("audio_stream", "channel"):
        value = options.get(key)
        if value is not None and not (isinstance(value, int) and value >= 0):
            return f"{key} must be a whole number from 0, not {value!r}"
    if options.get("standard") is not None and options["standard"] not in STANDARDS:
        return f"unknown standard {options['standard']!r} (known: {', '.join(STANDARDS)})"
    if "fix_method" in options and options["fix_method"] not in ("copy", "reencode"):
        return f"fix_method must be copy or reencode, not {options['fix_method']!r}"
    value = options.get("min_confidence")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"min_confidence must be a number, not {value!r}"
    return None


def _metrics() -> list[str]:
    from ..metrics import METRICS

    return list(METRICS)


def _csv_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    try:
        return int(text) if low.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text.strip()


def discover(inputs, include=(), exclude=(), options: dict | None = None) -> list[Item]:
    """The items of INPUTS, in a stable order, each media file or timeline once. A path that does not exist
    becomes an item too (it fails with its reason and the batch goes on)."""
    timelines = timeline_suffixes()
    base_options = {**DEFAULTS, **(options or {})}
    found: list[Item] = []

    def add(path: str, overrides: dict | None = None, kind: str | None = None):
        eff = {**base_options, **(overrides or {})}
        kind = kind or kind_of(path, timelines) or "media"
        if kind == "timeline":
            eff["score"] = None  # scores are per media file: --score must not redo timelines
        found.append(Item(os.path.abspath(path), kind, eff))

    for given in inputs:
        if os.path.isdir(given):
            for full, _ in walk_folder(given, include, exclude, timelines):
                add(full)
        elif os.path.splitext(given)[1].lower() in MANIFEST_SUFFIXES and os.path.isfile(given):
            for path, overrides in read_manifest(given):
                add(path, overrides)
        else:
            add(given)
    seen, unique = set(), []
    for item in found:
        marker = (item.path, json.dumps(item.options, sort_keys=True))
        if marker not in seen:
            seen.add(marker)
            unique.append(item)
    return unique


# --- identity -------------------------------------------------------------------------------------------

_models: dict = {}


def _model(name: str | None):
    """The LoadedModel a --model value names (cached in the driver); raises BatchError for a bad model."""
    if name not in _models:
        from ..model import BadWeights, ModelNotFound
        from ..pipeline import load_model

        try:
            _models[name] = load_model(name)
        except (ModelNotFound, BadWeights) as exc:
            raise BatchError(name or "house", str(exc)) from None
    return _models[name]


def model_sha(name: str | None) -> str:
    """sha256 of the model a --model value names; raises BatchError for a bad model."""
    return _model(name).describe()["sha256"]


def check_scores(items: list[Item]) -> None:
    """Refuse, once and before any item runs, a score an item's model cannot give (icsyncnet with a model
    that gives distances only): one line, not one failure per item."""
    from ..model import NoSyncProbability
    from ..metrics import check_model, get_metric

    for name, score in sorted({(i.options.get("model"), i.options["score"]) for i in items
                               if i.kind == "media" and i.options.get("score")}, key=str):
        try:
            check_model(get_metric(score), _model(name))
        except (NoSyncProbability, ValueError) as exc:
            raise BatchError(f"--score {score}", str(exc)) from None


def assign_keys(items: list[Item], identity: str = "stat") -> None:
    """Set each item's identity and key. identity "stat": size + mtime_ns; "sha256": the content hash."""
    from ..model.weights import sha256_of

    for item in items:
        try:
            st = os.stat(item.path)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block the hash; the item fails with its reason
                ident = {"not_a_file": True}
            else:
                ident = {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if identity == "stat" else \
                    {"size": st.st_size, "sha256": sha256_of(item.path)}
        except OSError:
            ident = {"missing": True}
        item.identity = ident
        keyed = {k: v for k, v in item.options.items()
                 if (v is not None or k not in KEYED_WHEN_SET) and k not in NOT_KEYED}
        blob = json.dumps({"path": item.path, "kind": item.kind, "input": ident, "revision": RESULT_REVISION,
                           "model": model_sha(item.options.get("model")), "options": keyed},
                          sort_keys=True, separators=(",", ":"))
        item.key = hashlib.sha256(blob.encode()).hexdigest()[:24]

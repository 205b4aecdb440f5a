"""`lipsync batch`: QC over many media files and timelines, locally (a process pool) or on Ray.

Shape: `discover()` turns the inputs (files, folders, timelines, CSV/JSONL manifests) into `Item`s, each with
an identity `key` (sha256 of its absolute path, size + mtime_ns or content hash, the model's sha256 and the
canonical options JSON). `run_item()` is the worker: it measures one item with the same code as `lipsync check`
(`pipeline.measure`) or `lipsync otio` (`otio_adapter.core.annotate_file`) and returns a plain dict. The driver
writes `items/<key>.json` atomically as each result arrives, so a result exists iff its file exists: a killed
batch resumes by skipping the keys that have a file, and nothing is computed twice. At the end
`results.jsonl`, `summary.csv` and `report.html` are rebuilt from the per-item files.

Per-item files and results.jsonl are deterministic (same bytes from the pool and from Ray): run details
(seconds, pid, host, time) go to `runs.jsonl`, an append-only log that nothing reads back for resuming.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import stat
import sys
import time
from dataclasses import dataclass, field

from . import RESULT_REVISION
from .errors import BatchError, LipsyncError
from .inputs import kind_of, walk_folder

ITEM_SCHEMA = "otio-lipsync/batch-item/1"
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
    from .ffmpeg_filter.qc import STANDARDS

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
    from .metrics import METRICS

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
        from .model import BadWeights, ModelNotFound
        from .pipeline import load_model

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
    from .model import NoSyncProbability
    from .metrics import check_model, get_metric

    for name, score in sorted({(i.options.get("model"), i.options["score"]) for i in items
                               if i.kind == "media" and i.options.get("score")}, key=str):
        try:
            check_model(get_metric(score), _model(name))
        except (NoSyncProbability, ValueError) as exc:
            raise BatchError(f"--score {score}", str(exc)) from None


def assign_keys(items: list[Item], identity: str = "stat") -> None:
    """Set each item's identity and key. identity "stat": size + mtime_ns; "sha256": the content hash."""
    from .model.weights import sha256_of

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
        keyed = {k: v for k, v in item.options.items() if v is not None or k not in KEYED_WHEN_SET}
        blob = json.dumps({"path": item.path, "kind": item.kind, "input": ident, "revision": RESULT_REVISION,
                           "model": model_sha(item.options.get("model")), "options": keyed},
                          sort_keys=True, separators=(",", ":"))
        item.key = hashlib.sha256(blob.encode()).hexdigest()[:24]


# --- the worker -----------------------------------------------------------------------------------------

_engines: dict = {}


def init_worker(threads: int, parent_pid: int | None = None) -> None:
    """Process initializer: torch threads per worker so workers do not fight over cores; as quiet (or
    verbose) as the command that started them; the worker dies with the driver (a kill -9 of the driver
    leaves no worker computing for nobody)."""
    import torch

    from .children import die_with_parent
    from .logs import configure_from_env

    configure_from_env()
    if parent_pid is not None:
        die_with_parent(parent_pid)

    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))


def _engine(options: dict):
    vshift = options["vshift"]
    if vshift is None and options.get("score"):  # the same numbers as `lipsync score`
        from .metrics import SCORE_VSHIFT

        vshift = SCORE_VSHIFT
    key = (options.get("model"), vshift, options["precision"])
    if key not in _engines:
        from .pipeline import make_engine

        _engines[key] = make_engine(options.get("model"), vshift=vshift, precision=options["precision"])
    return _engines[key]


def run_item(item: dict, results_dir: str) -> dict:
    """Measure one item -> (deterministic result dict, run details). Bad input is a result with an error,
    never an exception; anything else (a bug, a dead worker) is the caller's to retry or record."""
    started = time.perf_counter()
    hook = os.environ.get("LIPSYNC_BATCH_PID_DIR")  # tests: where each task leaves its worker's pid
    if hook:
        with open(os.path.join(hook, f"{item['key']}.pid"), "w") as f:
            f.write(str(os.getpid()))
    result = {"schema": ITEM_SCHEMA, "key": item["key"], "file": item["path"], "kind": item["kind"],
              "input": item["identity"], "options": item["options"]}
    try:
        if item["kind"] == "timeline":
            result.update(_run_timeline(item, results_dir))
        else:
            result.update(_run_media(item, results_dir))
        result["status"] = "ok"
    except LipsyncError as exc:
        result.update(status="error", error=str(exc), error_type=type(exc).__name__)
    run = {"key": item["key"], "file": item["path"], "seconds": round(time.perf_counter() - started, 3),
           "pid": os.getpid(), "host": socket.gethostname()}
    return {"result": result, "run": run}


def _run_media(item: dict, results_dir: str) -> dict:
    from .errors import DetectorUnavailable
    from .ffmpeg_filter import qc
    from .pipeline import measure, shared_detector

    opts = item["options"]
    engine = _engine(opts)
    footage_options = detector = None
    if not opts["face_cropped"]:
        from .footage import FootageOptions

        footage_options = FootageOptions()
        try:
            detector = shared_detector(footage_options.detector)
        except DetectorUnavailable as exc:  # the item's error names its file
            raise LipsyncError(item["path"], str(exc)) from None
    results: list | None = [] if opts.get("score") else None
    analysis, _ = measure(item["path"], engine, opts["face_cropped"], footage_options, detector,
                          opts["audio_stream"], channel=opts["channel"], results_out=results)
    out = {"analysis": analysis.to_dict()}
    if opts.get("score"):  # from the SyncResults the measurement above computed: no second decode or pass
        from .metrics import file_score, get_metric

        s = file_score(item["path"], get_metric(opts["score"]), analysis, results, opts["face_cropped"], engine.model)
        out["score"] = {"metric": s.metric, "values": s.values, "tracks": s.tracks}
    standard = qc.STANDARDS[opts["standard"]] if opts["standard"] else None
    if standard:
        out["qc"] = qc.verdict(standard, analysis.audio_delay_ms, analysis.drift, analysis.verdict)
    if opts["fix"] and analysis.verdict == "no_sync":  # the audio does not match the faces: nothing to correct
        out["not_fixed"] = "no sync found: the audio does not match the faces"
    elif opts["fix"] and analysis.audio_delay_ms:
        from .ffmpeg_filter.fix import plan_fix, run_fix

        stem, suffix = os.path.splitext(os.path.basename(item["path"]))
        rel = os.path.join("fixed", f"{stem}-{item['key'][:8]}{suffix}")
        os.makedirs(os.path.join(results_dir, "fixed"), exist_ok=True)
        run_fix(plan_fix(item["path"], os.path.join(results_dir, rel), analysis.audio_delay_ms, opts["fix_method"],
                         audio_stream=opts["audio_stream"]))
        out["fixed"] = {"path": rel, "audio_moved_ms": analysis.audio_delay_ms, "method": opts["fix_method"]}
    return out


def _run_timeline(item: dict, results_dir: str) -> dict:
    import opentimelineio as otio

    from .otio_adapter.core import LipsyncAdapterError, annotate_file

    opts = item["options"]
    engine = _engine(opts)
    try:
        timeline, report = annotate_file(
            item["path"], engine=engine, log=lambda message: None, quiet=True, cache_dir="none",
            face_cropped=opts["face_cropped"], slip=opts["slip"], min_confidence=opts["min_confidence"],
            media_root=opts["media_root"], model=opts["model"])
    except LipsyncAdapterError as exc:
        raise LipsyncError(item["path"], str(exc).split(": ", 1)[-1]) from None
    # the annotated timeline goes back to the driver as text: the driver writes every result file
    return {"timeline_report": report.to_dict(), "timeline_text": otio.adapters.write_to_string(timeline, "otio_json")}


# --- the driver -----------------------------------------------------------------------------------------

def item_path(results_dir: str, key: str) -> str:
    return os.path.join(results_dir, "items", f"{key}.json")


def has_result(results_dir: str, key: str, log) -> bool:
    """Whether items/<key>.json holds a whole result; a truncated, empty or foreign one (a killed write by
    other means, a hand edit) is reported and recomputed."""
    path = item_path(results_dir, key)
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        if isinstance(result, dict) and result.get("key") == key and result.get("status") in ("ok", "error"):
            return True
        problem = "not a result for this item"
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        problem = f"unreadable ({exc.strerror if isinstance(exc, OSError) else 'not JSON'})"
    log(f"lipsync batch: {path}: {problem}: recomputing it")
    return False


def _dump(payload) -> str:
    return json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"


def store(results_dir: str, payload: dict) -> dict:
    """Write one item's result (and its annotated timeline) atomically, from the driver."""
    from .outputs import atomic_output

    result = dict(payload["result"])
    text = result.pop("timeline_text", None)
    if text is not None:
        stem = os.path.splitext(os.path.basename(result["file"]))[0]
        rel = os.path.join("timelines", f"{stem}-{result['key'][:8]}.otio")
        os.makedirs(os.path.join(results_dir, "timelines"), exist_ok=True)
        with atomic_output(os.path.join(results_dir, rel), ".otio") as tmp, open(tmp, "w") as f:
            f.write(text)
        result["timeline"] = rel
    with atomic_output(item_path(results_dir, result["key"]), ".json") as tmp, open(tmp, "w") as f:
        f.write(_dump(result))
    run = payload.get("run")
    if run:
        run = {**run, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with open(os.path.join(results_dir, "runs.jsonl"), "a") as f:  # a log, never read back for resuming
            f.write(json.dumps(run, sort_keys=True) + "\n")
    return result


def crash_result(item: dict, reason: str) -> dict:
    """A task that died every retry: recorded like a bad input, so the batch goes on."""
    return {"result": {"schema": ITEM_SCHEMA, "key": item["key"], "file": item["path"], "kind": item["kind"],
                       "input": item["identity"], "options": item["options"], "status": "error",
                       "error": f"{item['path']}: worker failed ({reason})", "error_type": "WorkerFailed"}}


MAX_WORKERS_PER_CORE = 2
LOCK_FILE = ".batch.lock"


def lock_results(results_dir: str):
    """An exclusive lock on RESULTS_DIR (an open file; closing it releases the lock): a second batch on the
    same folder is refused in one line instead of computing every item twice."""
    import fcntl

    f = open(os.path.join(results_dir, LOCK_FILE), "a+")  # noqa: SIM115 - held for the whole batch
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise BatchError(results_dir, f"another lipsync batch ({holder}) is writing to this results folder; "
                                      f"wait for it or choose another -o") from None
    except OSError:  # a filesystem without locks (some network mounts): run unlocked, as before
        return f
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    return f


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_local(todo: list[dict], results_dir: str, workers: int, done, threads: int | None = None) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    threads = threads or max(1, default_workers() // workers)
    pending = list(todo)
    attempts: dict = {}
    while pending:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker,
                                 initargs=(threads, os.getpid())) as pool:
            futures = {pool.submit(run_item, item, results_dir): item for item in pending}
            pending = []
            broken = False
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    item = futures.pop(fut)
                    try:
                        done(fut.result())
                    except BrokenProcessPool as exc:
                        broken = True
                        attempts[item["key"]] = attempts.get(item["key"], 0) + 1
                        if attempts[item["key"]] > 3:
                            done(crash_result(item, str(exc) or "worker process died"))
                        else:
                            pending.append(item)
                    except Exception as exc:  # noqa: BLE001 - a bug on one item must not stop the batch
                        done(crash_result(item, f"{type(exc).__name__}: {exc}"))
                if broken:  # a dead worker breaks the pool: resubmit what has not finished in a new one
                    for fut, item in futures.items():
                        if fut.done() and not fut.exception():
                            done(fut.result())
                        else:
                            pending.append(item)
                    futures = {}


def run_ray(todo: list[dict], results_dir: str, workers: int, address: str | None, done,
            threads: int | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise BatchError("--ray", "needs Ray: pip install 'otio-lipsync[ray]'") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    if not threads:
        threads = max(1, int(ray.cluster_resources().get("CPU", workers)) // max(1, workers)) if not address else 1

    @ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)
    def task(item, results_dir):
        import torch

        if torch.get_num_threads() != threads:
            init_worker(threads)
        return run_item(item, results_dir)

    refs = {task.remote(item, results_dir): item for item in todo}
    while refs:
        finished, _ = ray.wait(list(refs), num_returns=1)
        for ref in finished:
            item = refs.pop(ref)
            try:
                done(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - retries exhausted: record it, go on
                done(crash_result(item, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))


# --- summary, results.jsonl, report -----------------------------------------------------------------------

def classify(result: dict) -> str:
    if result.get("status") != "ok":
        return "failed"
    if (result.get("analysis") or {}).get("verdict") == "no_sync":
        return "no_sync"
    if "qc" in result:
        return "pass" if result["qc"]["pass"] else "out_of_tolerance"
    report = result.get("timeline_report")
    if report and (report["summary"]["out_of_tolerance"]):
        return "out_of_tolerance"
    if report and report.get("warnings"):
        return "warning"
    return "measured"


ORDER = {"failed": 0, "no_sync": 1, "out_of_tolerance": 2, "warning": 3, "measured": 4, "pass": 5}


@dataclass(frozen=True)
class ScoreFilter:
    """--filter: where to write the files that pass IC-SyncNet's rule (metrics.passes_filter), and its bounds."""
    path: str
    min_probability: float = 0.9
    max_offscreen: float = 0.2


def score_metrics(results: list[dict]) -> list:
    """The metrics the items were scored with (asked for, even if every such item failed), in registry order."""
    from .metrics import METRICS

    asked = {(r.get("options") or {}).get("score") for r in results if r["kind"] == "media"}
    return [m for name, m in METRICS.items() if name in asked]


def score_summaries(results: list[dict], metrics: list) -> dict:
    """metric name -> metrics.summarise over the items scored with it: the averages `lipsync score` prints."""
    from .metrics import FileScore, summarise

    out = {}
    for metric in metrics:
        asked = [r for r in results if r["kind"] == "media" and r["options"].get("score") == metric.name]
        scores = [FileScore(r["file"], metric.name, r["score"]["values"], r["score"]["tracks"],
                            r["analysis"]["decode"], r["options"]["face_cropped"]) for r in asked if "score" in r]
        out[metric.name] = summarise(metric, scores, failed=len(asked) - len(scores))
    return out


def write_filter(results: list[dict], score_filter: ScoreFilter) -> list[str]:
    """The icsyncnet-scored files that pass, one per line, sorted (as `lipsync score --filter`)."""
    from .outputs import atomic_output
    from .metrics import passes_filter

    kept = sorted({r["file"] for r in results if (r.get("score") or {}).get("metric") == "icsyncnet"
                   and passes_filter(r["score"]["values"], score_filter.min_probability, score_filter.max_offscreen)})
    with atomic_output(score_filter.path, ".txt") as tmp, open(tmp, "w") as f:
        f.writelines(f"{k}\n" for k in kept)
    return kept


def finish(results_dir: str, items: list[Item], standard: str | None, plots: int = 100,
           score_filter: ScoreFilter | None = None) -> dict:
    """Rebuild results.jsonl, summary.csv, summary.json and report.html from the per-item files of ITEMS
    (and the --filter list)."""
    from .outputs import atomic_output

    results = []
    for item in items:
        with open(item_path(results_dir, item.key)) as f:
            results.append(json.load(f))
    results.sort(key=lambda r: (r["file"], r["key"]))
    with atomic_output(os.path.join(results_dir, "results.jsonl"), ".jsonl") as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(r, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n" for r in results)
    counts = {k: 0 for k in ORDER}
    for r in results:
        counts[classify(r)] += 1
    rows = sorted(results, key=lambda r: (ORDER[classify(r)], r["file"], r["key"]))
    metrics = score_metrics(results)
    # one column per metric value (the file's value: the mean over its face tracks), only when scored
    score_keys = [c.key for m in metrics for c in m.columns]
    with atomic_output(os.path.join(results_dir, "summary.csv"), ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "kind", "status", "audio_delay_ms", "offset_frames", "confidence", "drift_ms_per_min",
                    "drift_verdict", "qc_reasons", *score_keys, "error_type", "error", "key", "result"])
        for r in rows:
            a = r.get("analysis") or {}
            drift = a.get("drift") or {}
            values = (r.get("score") or {}).get("values", {})
            w.writerow([r["file"], r["kind"], classify(r), a.get("audio_delay_ms", ""), a.get("offset_frames", ""),
                        a.get("confidence", ""), drift.get("ms_per_minute", "") if drift.get("ms_per_minute")
                        is not None else "", drift.get("verdict", ""), "; ".join((r.get("qc") or {}).get("reasons", [])),
                        *[repr(values[k]) if values.get(k) is not None else "" for k in score_keys],
                        r.get("error_type", ""), r.get("error", ""), r["key"], f"items/{r['key']}.json"])
    # `measured` counts every item that got a measurement, whatever its verdict (pass, out of tolerance,
    # warning are subsets of it); the other keys are disjoint
    counts = {**counts, "measured": len(results) - counts["failed"]}
    summary = {"items": len(results), **counts,
               "out_of_tolerance_files": [r["file"] for r in rows if classify(r) == "out_of_tolerance"],
               "failures": [{"file": r["file"], "error_type": r["error_type"], "error": r["error"]}
                            for r in rows if classify(r) == "failed"]}
    if metrics:
        summary["scores"] = score_summaries(results, metrics)
    if score_filter:
        kept = write_filter(results, score_filter)
        summary["filter"] = {"path": score_filter.path, "min_probability": score_filter.min_probability,
                             "max_offscreen": score_filter.max_offscreen, "kept": len(kept)}
    with atomic_output(os.path.join(results_dir, "summary.json"), ".json") as tmp, open(tmp, "w") as f:
        f.write(_dump(summary))
    write_report(results_dir, rows, counts, standard, plots, summary.get("scores"))
    return summary


def _plot_png(results_dir: str, result: dict, standard: str | None) -> str | None:
    """plots/<key>.png for a measured media item (made once; a resumed batch reuses it)."""
    if not result.get("analysis"):
        return None
    rel = os.path.join("plots", f"{result['key']}.png")
    target = os.path.join(results_dir, rel)
    if not os.path.exists(target):
        from types import SimpleNamespace

        from .ffmpeg_filter import qc
        from .ffmpeg_filter.plot import plot_analysis

        os.makedirs(os.path.dirname(target), exist_ok=True)
        plot_analysis(SimpleNamespace(**result["analysis"]), target, qc.STANDARDS[standard] if standard else None)
    return rel


def note_of(result: dict) -> str:
    """The notes cell of a measured media item, in words: the QC reasons, else what the drift says."""
    from .drift import Drift

    reasons = (result.get("qc") or {}).get("reasons", [])
    if reasons:
        return "; ".join(reasons)
    analysis = result.get("analysis") or {}
    if analysis.get("verdict") == "no_sync":
        return f"no sync found: the audio does not match the faces (p={analysis['sync_probability']:.2f})"
    drift = (result.get("analysis") or {}).get("drift")
    return Drift(**drift).describe() if drift else ""


def write_report(results_dir: str, rows: list[dict], counts: dict, standard: str | None, plots: int,
                 scores: dict | None = None) -> None:
    """report.html: counts (and score averages) at the top, one row per item (failures and out-of-tolerance
    first) with its score values, the offset / confidence plot of the first `plots` measured rows inline
    (base64 PNG), later ones linked."""
    import base64
    import html

    from . import __version__
    from .outputs import atomic_output
    from .metrics import get_metric, summary_line

    metrics = [get_metric(name) for name in scores or {}]
    columns = [c for m in metrics for c in m.columns]

    esc = html.escape
    files = [r["file"] for r in rows]
    root = os.path.commonpath(files) if files else ""
    if len(files) == 1 or (root in files):  # one file (or a file that is the root): its folder
        root = os.path.dirname(root)

    def shown(path: str) -> str:
        return os.path.relpath(path, root) if root else path

    colour = {"failed": "#f4c7c3", "no_sync": "#e1d5f0", "out_of_tolerance": "#fce8b2", "warning": "#fce8b2", "measured": "#ffffff",
              "pass": "#d9ead3"}
    body = []
    inline = 0
    for r in rows:
        status = classify(r)
        a = r.get("analysis") or {}
        cells = [esc(shown(r["file"])), esc(status)]
        if r.get("status") != "ok":
            error = r.get("error", "")
            cells += ["", "", "", esc(error[len(r["file"]) + 2:] if error.startswith(f"{r['file']}: ") else error)]
        elif r["kind"] == "timeline":
            s = r["timeline_report"]["summary"]
            cells += ["", "", "", esc(f"{s['clips_analysed']} clip(s) analysed, {s['out_of_tolerance']} out of "
                                  f"tolerance (EBU R37); annotated: {r.get('timeline', '')}")]
        else:
            p = a.get("sync_probability")
            cells += [f"{a['audio_delay_ms']:+.0f}", f"{a['confidence']:.2f}", "" if p is None else f"{p:.2f}",
                      esc(note_of(r))]
        values = (r.get("score") or {}).get("values", {})
        cells += [f"{values[c.key]:.3f}" if values.get(c.key) is not None else "" for c in columns]
        picture = ""
        rel = _plot_png(results_dir, r, standard)
        if rel and inline < plots:
            with open(os.path.join(results_dir, rel), "rb") as f:
                data = base64.b64encode(f.read()).decode()
            # one line per row: the plot opens on click
            picture = (f'<details><summary>plot</summary><img loading="lazy" width="500" '
                       f'src="data:image/png;base64,{data}"></details>')
            inline += 1
        elif rel:
            picture = f'<a href="{esc(rel)}">plot</a>'
        body.append(f'<tr style="background:{colour[status]}">' + "".join(f"<td>{c}</td>" for c in cells)
                    + f"<td>{picture}</td></tr>")
    head = " &middot; ".join(f"{esc(k.replace('_', ' '))}: <b>{v}</b>" for k, v in counts.items()
                             if v and k != "measured")
    averages = "".join(f"<p>{esc(summary_line(m, scores[m.name]))}</p>" for m in metrics)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lipsync batch report</title>
<style>body{{font-family:sans-serif;margin:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 4px;vertical-align:top;font-size:13px;white-space:nowrap}}
details[open] summary{{margin-bottom:4px}}</style></head><body>
<h1>lipsync batch report</h1>
<p>{len(rows)} item(s), {counts.get("measured", 0)} measured: {head}</p>
<p>Paths below are relative to <code>{esc(root)}</code>.</p>
{averages}<p>standard: {esc(standard or "none")}; otio-lipsync {esc(__version__)}. Audio delay: positive = the sound is
late. Failures and out-of-tolerance items first.</p>
<table><tr><th>file</th><th>status</th><th>audio delay (ms)</th><th>confidence</th><th title="sync_probability: how likely the offset is the true one (README: Verdicts)">p(sync)</th><th>notes</th>
{"".join(f"<th>{esc(c.label)}</th>" for c in columns)}<th>offset / confidence over time</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
    with atomic_output(os.path.join(results_dir, "report.html"), ".html") as tmp, open(tmp, "w") as f:
        f.write(page)


def run_batch(inputs, results_dir: str, *, options: dict, include=(), exclude=(), identity="stat",
              force=False, workers=None, threads=None, ray=False, ray_address=None, plots=100, progress=True,
              log=None, score_filter: ScoreFilter | None = None) -> dict:
    """The whole batch -> summary dict (see finish)."""
    from tqdm import tqdm

    log = log or (lambda message: print(message, file=sys.stderr))
    items = discover(inputs, include, exclude, options)
    if not items:
        raise BatchError(" ".join(inputs) or "INPUTS", "no media files or timelines found")
    if score_filter and not any(i.kind == "media" and i.options["score"] == "icsyncnet" for i in items):
        raise BatchError("--filter", "IC-SyncNet's rule needs --score icsyncnet (or manifest rows with that score)")
    check_scores(items)
    assign_keys(items, identity)
    os.makedirs(os.path.join(results_dir, "items"), exist_ok=True)
    lock = lock_results(results_dir)  # held until this process ends (released by the kernel, even on kill -9)
    from .outputs import sweep_stale

    for folder in ("", "items", "fixed", "timelines"):  # temp files of a batch killed while writing
        sweep_stale(os.path.join(results_dir, folder))
    todo = [i.to_dict() for i in items if force or not has_result(results_dir, i.key, log)]
    if len(todo) < len(items):
        log(f"lipsync batch: {len(items) - len(todo)} of {len(items)} item(s) already have a result (--force redoes)")
    workers = workers or default_workers()
    if not (ray or ray_address) and workers > MAX_WORKERS_PER_CORE * default_workers():
        log(f"lipsync batch: --workers {workers} capped at {MAX_WORKERS_PER_CORE * default_workers()} "
            f"({MAX_WORKERS_PER_CORE} per CPU core: each worker holds a model and a decode buffer)")
        workers = MAX_WORKERS_PER_CORE * default_workers()
    bar = tqdm(total=len(todo), desc="lipsync batch", unit="item", file=sys.stderr, disable=not progress or None,
               smoothing=0.1)

    def done(payload):
        result = store(results_dir, payload)
        if result["status"] != "ok":
            bar.write(f"lipsync batch: {result['error']}", file=sys.stderr)
        bar.update(1)

    try:
        if todo and (ray or ray_address):
            run_ray(todo, results_dir, workers, ray_address, done, threads)
        elif todo:
            run_local(todo, results_dir, min(workers, len(todo)), done, threads)
    finally:
        bar.close()
    try:
        return finish(results_dir, items, options.get("standard"), plots, score_filter)
    finally:
        lock.close()

"""`lipsync batch`, running: the worker (`run_item` measures one item with `pipeline.measure` or the OTIO
adapter and returns a plain dict), the local process pool and Ray drivers, and `run_batch`, the whole batch
(discover -> keys -> skip what has a result -> run -> report)."""

from __future__ import annotations

import os
import socket
import sys
import time

from ..errors import BatchError, LipsyncError
from .discover import assign_keys, check_scores, discover
from .report import ScoreFilter, finish
from .results import ITEM_SCHEMA, crash_result, has_result, store

# --- the worker -----------------------------------------------------------------------------------------

_engines: dict = {}


def init_worker(threads: int, parent_pid: int | None = None) -> None:
    """Process initializer: torch threads per worker so workers do not fight over cores; as quiet (or
    verbose) as the command that started them; the worker dies with the driver (a kill -9 of the driver
    leaves no worker computing for nobody)."""
    import torch

    from ..allocator import keep_freed_memory
    from ..children import die_with_parent
    from ..logs import configure_from_env

    configure_from_env()
    keep_freed_memory()
    if parent_pid is not None:
        die_with_parent(parent_pid)

    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))


def _engine(options: dict):
    vshift = options["vshift"]
    if vshift is None and options.get("score"):  # the same numbers as `lipsync score`
        from ..metrics import SCORE_VSHIFT

        vshift = SCORE_VSHIFT
    key = (options.get("model"), vshift, options["precision"], options.get("device", "cpu"))
    if key not in _engines:
        from ..pipeline import make_engine

        _engines[key] = make_engine(options.get("model"), vshift=vshift, precision=options["precision"],
                                    device=options.get("device", "cpu"))
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
    from ..errors import DetectorUnavailable
    from ..ffmpeg_filter import qc
    from ..pipeline import measure, shared_detector

    opts = item["options"]
    engine = _engine(opts)
    footage_options = detector = None
    if not opts["face_cropped"]:
        from ..footage import FootageOptions

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
        from ..metrics import file_score, get_metric

        s = file_score(item["path"], get_metric(opts["score"]), analysis, results, opts["face_cropped"], engine.model)
        out["score"] = {"metric": s.metric, "values": s.values, "tracks": s.tracks}
    standard = qc.STANDARDS[opts["standard"]] if opts["standard"] else None
    if standard:
        out["qc"] = qc.verdict(standard, analysis.audio_delay_ms, analysis.drift, analysis.verdict)
    if opts["fix"] and analysis.verdict == "no_sync":  # the audio does not match the faces: nothing to correct
        out["not_fixed"] = "no sync found: the audio does not match the faces"
    elif opts["fix"] and analysis.audio_delay_ms:
        from ..ffmpeg_filter.fix import plan_fix, run_fix

        stem, suffix = os.path.splitext(os.path.basename(item["path"]))
        rel = os.path.join("fixed", f"{stem}-{item['key'][:8]}{suffix}")
        os.makedirs(os.path.join(results_dir, "fixed"), exist_ok=True)
        run_fix(plan_fix(item["path"], os.path.join(results_dir, rel), analysis.audio_delay_ms, opts["fix_method"],
                         audio_stream=opts["audio_stream"]))
        out["fixed"] = {"path": rel, "audio_moved_ms": analysis.audio_delay_ms, "method": opts["fix_method"]}
    return out


def _run_timeline(item: dict, results_dir: str) -> dict:
    import opentimelineio as otio

    from ..otio_adapter.core import LipsyncAdapterError, annotate_file

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
    from ..media import usable_cores

    return usable_cores()


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

        from ..allocator import keep_freed_memory

        # Ray's workers run no initializer of ours: each task sets up its process (init_worker keeps freed memory)
        if torch.get_num_threads() != threads:
            init_worker(threads)
        else:
            keep_freed_memory()
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
    from ..outputs import sweep_stale

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

"""`lipsync batch`: QC over many media files and timelines, locally (a process pool) or on Ray.

Split by what it does: `discover.py` (inputs -> items, identity keys), `run.py` (the worker, the pool and Ray
drivers, `run_batch`), `results.py` (the per-item files), `report.py` (summary, CSV, HTML report). The names
below are importable from `otio_lipsync.batch` as before the split.

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

from ..errors import BatchError
from ..inputs import walk_folder
from .discover import (
    DEFAULTS,
    ITEM_OPTIONS,
    KEYED_WHEN_SET,
    MANIFEST_SUFFIXES,
    Item,
    assign_keys,
    check_scores,
    discover,
    model_sha,
    read_manifest,
    timeline_suffixes,
)
from .report import (
    ORDER,
    ScoreFilter,
    classify,
    finish,
    note_of,
    score_metrics,
    score_summaries,
    write_filter,
    write_report,
)
from .results import ITEM_SCHEMA, crash_result, has_result, item_path, store
from .run import (
    LOCK_FILE,
    MAX_WORKERS_PER_CORE,
    default_workers,
    init_worker,
    lock_results,
    run_batch,
    run_item,
    run_local,
    run_ray,
)
__all__ = [
    "DEFAULTS", "ITEM_OPTIONS", "ITEM_SCHEMA", "KEYED_WHEN_SET", "LOCK_FILE", "MANIFEST_SUFFIXES",
    "MAX_WORKERS_PER_CORE", "ORDER", "BatchError", "Item", "ScoreFilter", "assign_keys", "check_scores", "classify",
    "crash_result", "default_workers", "discover", "finish", "has_result", "init_worker", "item_path",
    "lock_results", "model_sha", "note_of", "read_manifest", "run_batch", "run_item", "run_local", "run_ray",
    "score_metrics", "score_summaries", "store", "timeline_suffixes", "walk_folder", "write_filter", "write_report",
]

"""`lipsync batch`, the per-item result files: `items/<key>.json` written atomically by the driver (a result
exists iff its file exists, which is how a killed batch resumes), the annotated timelines beside them, the
`runs.jsonl` log, and the record of a task that died every retry."""

from __future__ import annotations

import json
import os
import time

ITEM_SCHEMA = "otio-lipsync/batch-item/1"


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
    from ..outputs import atomic_output

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

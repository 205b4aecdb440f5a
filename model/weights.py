"""Loading and checking model files, with `torch.load(..., weights_only=True)` only.

Two file formats are read:
- a plain SyncNet state dict, as the public `syncnet_v2.model` (legacy pickle of an OrderedDict, no
  `num_batches_tracked` keys): architecture `syncnet`, name = file stem;
- an otio-lipsync model file: a dict with `format` == MODEL_FORMAT, `name`, `architecture`,
  `input` (the input spec) and `state_dict`, plus free metadata (training summary, validation accuracy).

Anything else (wrong keys or shapes, not a torch file, a pickle that wants to run code) raises
`BadWeights` whose message names the file and what is wrong, in one line.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import BadWeights, NoSyncProbability  # the class lives in errors.py; importable here too
from .compact import CompactSyncNet
from .lips import LipsSyncNet
from .syncnet import SyncNet

MODEL_FORMAT = "otio-lipsync-model/1"

ARCHITECTURES = {"syncnet": SyncNet, "compact": CompactSyncNet, "lips": LipsSyncNet}

SYNCNET_INPUT_SPEC = {
    "video": {"fps": 25, "frames": 5, "size": 224, "channels": "BGR", "range": "0-255"},
    "audio": {"sample_rate": 16000, "feature": "mfcc13", "columns": 20, "hop_ms": 10},
}


@dataclass
class LoadedModel:
    name: str
    architecture: str
    net: torch.nn.Module
    path: str
    sha256: str
    input_spec: dict
    metadata: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "architecture": self.architecture, "sha256": self.sha256, "path": self.path}

    def sync_probability(self, dists):
        """IC-SyncNet's P(in sync) for each distance the engine computed (any array shape).

        Only a model trained with the balanced-BCE objective (`--objective icsyncnet`) has calibrated
        probabilities; its embeddings are unit length times `distance_scale`, so each distance gives back
        the cosine similarity exactly: cos = 1 - (d / scale)^2 / 2, and P = sigmoid(cos * T + bias).
        Raises NoSyncProbability (one line naming the model) for any other model."""
        objective = self.metadata.get("objective")
        if self.architecture != "compact" or objective != "icsyncnet" or not self.net.normalize:
            raise NoSyncProbability(
                f"model {self.name} ({self.path}) gives distances only (architecture {self.architecture}, "
                f"objective {objective or 'unknown'}): IC-SyncNet probabilities need a model trained with "
                f"`lipsync-train fit --objective icsyncnet`")
        net = self.net
        with torch.no_grad():
            scale, temperature, bias = float(net.distance_scale), float(net.log_temperature.exp()), float(net.logit_bias)
        d = torch.as_tensor(dists, dtype=torch.float64)
        cos = 1.0 - (d / scale) ** 2 / 2.0
        return torch.sigmoid(cos * temperature + bias).numpy()


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old pickle protocols make torch warn; the error path says enough
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            msg = _first_line(exc)
            if "Weights only load failed" in msg:
                raise BadWeights(path, "not a plain weights file: it holds objects that would run code "
                                 "when unpickled, and otio-lipsync only loads with weights_only=True") from None
            raise BadWeights(path, f"not a PyTorch weights file ({msg})") from None
        except Exception as exc:  # torch raises KeyError/RuntimeError/EOFError on junk and truncation
            raise BadWeights(path, f"not a readable PyTorch weights file ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from None


def read_torch_file(path: str | os.PathLike):
    """The one way any model or checkpoint file is read (lipsync, lipsync-train eval/export/fit --resume):
    `weights_only=True`, so a file can only hold tensors and plain data, never code; a missing, empty,
    truncated or hostile file is a BadWeights naming it."""
    path = Path(path)
    if not path.exists():
        raise BadWeights(path, "file does not exist")
    if path.is_dir():
        raise BadWeights(path, "is a directory, not a model or checkpoint file")
    if not path.is_file():
        raise BadWeights(path, "not a regular file (a FIFO or device would block)")
    if path.stat().st_size == 0:
        raise BadWeights(path, "is empty (0 bytes)")
    try:
        return _read(path)
    except OSError as exc:
        raise BadWeights(path, f"cannot read it ({exc.strerror or exc})") from None


def check_state_dict(path, state: dict, net: torch.nn.Module) -> None:
    """Exact key set and shapes, or one line saying the first thing that differs."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadWeights(path, "not a state dict of tensors")
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise BadWeights(path, f"keys do not match a {type(net).__name__} state dict: " + ", ".join(parts))
    for k, shape in expected.items():
        if tuple(state[k].shape) != tuple(shape):
            raise BadWeights(path, f"tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(shape)}")
        if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all()):
            # NaN or inf weights give NaN distances: `confidence nan` that looks like a measurement
            raise BadWeights(path, f"tensor {k} holds NaN or infinite values (a diverged or damaged model)")


def load_model(path: str | os.PathLike) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise BadWeights(path, "model file does not exist")
    if path.is_dir():
        raise BadWeights(path, "is a directory, not a model file")
    obj = read_torch_file(path)
    if isinstance(obj, dict) and obj.get("format") == MODEL_FORMAT:
        arch = obj.get("architecture")
        if arch not in ARCHITECTURES:
            raise BadWeights(path, f"unknown architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
        state = obj.get("state_dict")
        name = str(obj.get("name") or path.stem)
        spec = obj.get("input") or SYNCNET_INPUT_SPEC
        config = obj.get("config") or {}
        metadata = {k: v for k, v in obj.items() if k not in ("state_dict", "format")}
    elif isinstance(obj, dict) and "state_dict" not in obj and "format" not in obj:
        arch, state, name, spec, metadata, config = "syncnet", obj, path.stem, SYNCNET_INPUT_SPEC, {}, {}
    else:
        raise BadWeights(path, "not a SyncNet state dict nor an otio-lipsync model file")
    try:
        net = ARCHITECTURES[arch](**config)
    except (TypeError, ValueError, KeyError) as exc:
        raise BadWeights(path, f"bad {arch} config {config!r} ({_first_line(exc)})") from None
    check_state_dict(path, state, net)
    net.load_state_dict(state, strict=False)  # strict key check done above, without num_batches_tracked
    net.eval()
    return LoadedModel(name=name, architecture=arch, net=net, path=str(path), sha256=sha256_of(path),
                       input_spec=spec, metadata=metadata)

"""otio_lipsync.model: the networks, their input features and model files (knows nothing of media)."""

from .audio import MfccStream, mfcc
from .registry import DEFAULT_MODEL, KNOWN_MODELS, ModelNotFound, load, resolve
from .syncnet import FastSyncNet, SyncNet
from .weights import BadWeights, LoadedModel, NoSyncProbability, load_model

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "BadWeights",
    "FastSyncNet",
    "LoadedModel",
    "MfccStream",
    "ModelNotFound",
    "NoSyncProbability",
    "SyncNet",
    "load",
    "load_model",
    "mfcc",
    "resolve",
]

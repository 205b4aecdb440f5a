"""Face detectors behind one small interface.

A detector takes an RGB uint8 image (any size; `bgr=True`: BGR, flipped after any downscaling, which is
cheaper than flipping a full frame) and returns `Detection`s in that image's pixels.
Backends register in `DETECTORS`; `make_detector(name, **options)` builds one. Adding a third
backend means one class with `name` and `detect`, and one line in `DETECTORS`. A backend may also offer
`twin()`, a copy for a second thread: the raw-footage scan then lets its decoding thread detect too where
decoding is light (footage.DETECT_LAG); without it the analysis thread detects on every frame itself.

- `blazeface` (default): MediaPipe's BlazeFace full-range model, run with ai-edge-litert (LiteRT). The
  .tflite file ships inside this package (faces/models, Apache-2.0, see NOTICE); nothing is downloaded
  at run time.
- `face_alignment` (optional extra): S3FD, what syncnet_python's pipeline uses; its weights must be
  placed in torch's hub cache by hand on an offline machine (the error says which file where).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import DetectorUnavailable  # the class lives in errors.py; importable here too


@dataclass
class Detection:
    box: np.ndarray  # (x0, y0, x1, y1) float pixels
    score: float
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (K, 2) pixels

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray, bgr: bool = False) -> list[Detection]:
        """bgr: the image is BGR (turned to RGB by the detector, after any downscaling)."""
        ...


# --- BlazeFace -------------------------------------------------------------------------------------

BLAZEFACE_FILE = "face_detection_full_range.tflite"
BLAZEFACE_INPUT = 192
BLAZEFACE_STRIDE = 4  # one 48x48 anchor grid, one anchor per cell (mediapipe full-range options)
RAW_SCORE_LIMIT = 80.0  # mediapipe clips at 100; 80 keeps float32 sigmoid finite


PACKAGED_BLAZEFACE = Path(__file__).resolve().parent / "models" / BLAZEFACE_FILE


def find_blazeface_model() -> Path:
    """$OTIO_LIPSYNC_BLAZEFACE if set, else the model file packaged beside this module."""
    explicit = os.environ.get("OTIO_LIPSYNC_BLAZEFACE")
    if explicit:
        if not Path(explicit).is_file():
            raise DetectorUnavailable(f"$OTIO_LIPSYNC_BLAZEFACE points at {explicit}, which is not a file")
        return Path(explicit)
    if not PACKAGED_BLAZEFACE.is_file():
        raise DetectorUnavailable(f"the BlazeFace model {PACKAGED_BLAZEFACE} is missing: reinstall otio-lipsync, "
                                  f"or set OTIO_LIPSYNC_BLAZEFACE to a copy of {BLAZEFACE_FILE}")
    return PACKAGED_BLAZEFACE


def _anchors() -> np.ndarray:
    n = BLAZEFACE_INPUT // BLAZEFACE_STRIDE
    centres = (np.arange(n, dtype=np.float32) + 0.5) / n
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], 1)  # row-major over y, then x: the model's output order


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float):
    """MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged by score."""
    order = np.argsort(-scores)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    remaining = np.ones(len(boxes), bool)
    kept = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        x0 = np.maximum(boxes[i, 0], boxes[:, 0])
        y0 = np.maximum(boxes[i, 1], boxes[:, 1])
        x1 = np.minimum(boxes[i, 2], boxes[:, 2])
        y1 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        group = remaining & (iou > iou_threshold)
        w = scores[group][:, None]
        kept.append(((boxes[group] * w).sum(0) / w.sum(),
                     float(scores[i]),
                     (keypoints[group] * w[:, :, None]).sum(0) / w.sum()))
        remaining &= ~group
    return kept


class BlazeFaceDetector:
    name = "blazeface"

    def __init__(self, model_path: str | os.PathLike | None = None, min_score: float = 0.5,
                 nms_threshold: float = 0.3, threads: int = 1, margin: float = 0.15):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise DetectorUnavailable("ai-edge-litert is not installed: pip install ai-edge-litert") from None
        self.model_path = Path(model_path) if model_path else find_blazeface_model()
        from ..logs import native_stderr

        with native_stderr():  # LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2
            self.interpreter = Interpreter(model_path=str(self.model_path), num_threads=threads)
            self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self.box_index, self.score_index = outputs[0]["index"], outputs[1]["index"]  # (1,N,16), (1,N,1)
        self.anchors = _anchors()
        self.min_score = min_score
        self.nms_threshold = nms_threshold
        # a border around the image: faces that fill a face-centred frame (LRS2, VoxCeleb crops) score
        # ~0.4-0.6 without one and ~0.7-0.9 with it, since the model never saw faces cut by the edge
        self.margin = margin
        self.threads = threads
        self._twin: BlazeFaceDetector | None = None

    def twin(self) -> BlazeFaceDetector:
        """A second detector like this one, made once and kept, for a second thread (an interpreter is not for
        two threads at once): the same model and options, so the same detections on the same image."""
        if self._twin is None:
            self._twin = BlazeFaceDetector(self.model_path, min_score=self.min_score, nms_threshold=self.nms_threshold,
                                           threads=self.threads, margin=self.margin)
        return self._twin

    def _letterbox(self, rgb: np.ndarray, bgr: bool = False):
        """Fit the longer side (plus the margin) to 192 keeping the aspect ratio, pad the rest
        (mediapipe's letterbox). bgr: channels are flipped on the small image (resizing is per channel)."""
        from PIL import Image

        h, w = rgb.shape[:2]
        scale = BLAZEFACE_INPUT / (max(h, w) * (1 + 2 * self.margin))
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        small = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
        if bgr:
            small = small[:, :, ::-1]
        canvas = np.zeros((BLAZEFACE_INPUT, BLAZEFACE_INPUT, 3), np.float32)
        ox, oy = (BLAZEFACE_INPUT - nw) // 2, (BLAZEFACE_INPUT - nh) // 2
        canvas[oy:oy + nh, ox:ox + nw] = small.astype(np.float32) / 127.5 - 1.0
        return canvas, scale, ox, oy

    def detect(self, rgb: np.ndarray, bgr: bool = False) -> list[Detection]:
        tensor, scale, ox, oy = self._letterbox(rgb, bgr)
        self.interpreter.set_tensor(self.input_index, tensor[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.box_index)[0]
        logits = self.interpreter.get_tensor(self.score_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores > self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep] / BLAZEFACE_INPUT, scores[keep], self.anchors[keep]
        cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
        boxes = np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2, cx + raw[:, 2] / 2, cy + raw[:, 3] / 2], 1)
        keypoints = raw[:, 4:].reshape(len(raw), -1, 2) + anchors[:, None, :]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        found = []
        for box, score, kps in weighted_nms(boxes[valid], scores[valid], keypoints[valid], self.nms_threshold):
            # normalised letterbox coordinates -> source pixels
            px = (box * BLAZEFACE_INPUT - np.array([ox, oy, ox, oy])) / scale
            pk = (kps * BLAZEFACE_INPUT - np.array([ox, oy])) / scale
            found.append(Detection(box=px, score=score, keypoints=pk))
        return found


# --- face_alignment (S3FD) ------------------------------------------------------------------------

S3FD_FILE = "s3fd-619a316812.pth"
S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/" + S3FD_FILE


def s3fd_weights_path() -> Path:
    """Where face_alignment's downloader would put S3FD: torch's hub cache ($TORCH_HOME/hub/checkpoints)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / S3FD_FILE


class FaceAlignmentDetector:
    """S3FD, the detector of syncnet_python's pipeline, from the optional `face-alignment` package.

    face_alignment downloads its weights on first use, which fails offline; here they are always
    loaded from the cache path (weights_only), and a missing file is an error saying where to put it.
    """

    name = "face_alignment"

    def __init__(self, weights: str | os.PathLike | None = None, min_score: float = 0.9, scale: float = 0.25):
        path = Path(weights) if weights else s3fd_weights_path()
        if not path.is_file():
            raise DetectorUnavailable(f"face_alignment's S3FD weights are missing: download {S3FD_URL} and place "
                                      f"it at {path} (or use the default detector, blazeface)")
        try:
            from face_alignment.detection.sfd.sfd_detector import SFDDetector
        except ImportError as exc:
            raise DetectorUnavailable(f"face_alignment is not installed ({exc}): pip install "
                                      "'otio-lipsync[face-alignment]'") from None
        self.weights = path
        self._detector = SFDDetector(device="cpu", path_to_detector=str(path), filter_threshold=min_score)
        self.scale = scale  # the reference detects on a 0.25x frame (its --facedet_scale)

    def detect(self, rgb: np.ndarray, bgr: bool = False) -> list[Detection]:
        from PIL import Image

        if bgr:
            rgb = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = rgb.shape[:2]
        small = rgb
        if self.scale != 1.0:
            small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * self.scale)),
                                                            max(1, round(h * self.scale))), Image.BILINEAR))
        found = []
        for row in self._detector.detect_from_image(small.copy()):
            box = np.asarray(row[:4], dtype=np.float64) / self.scale
            found.append(Detection(box=box, score=float(row[4])))
        return found


DETECTORS = {BlazeFaceDetector.name: BlazeFaceDetector, FaceAlignmentDetector.name: FaceAlignmentDetector}


# --- small faces: detection on tiles ------------------------------------------------------------

TILE_PX = 720  # a 1080p frame in 3x2 overlapping tiles: a 40 px face becomes ~8 px of BlazeFace's 192 input
TILE_OVERLAP = 0.2


def tile_origins(length: int, tile: int, overlap: float = TILE_OVERLAP) -> list[int]:
    if length <= tile:
        return [0]
    count = int(np.ceil((length - tile) / (tile * (1 - overlap)))) + 1
    return [int(v) for v in np.linspace(0, length - tile, count)]


def detect_tiles(detector: FaceDetector, image: np.ndarray, tile: int = TILE_PX, bgr: bool = False,
                 near: list[np.ndarray] | None = None) -> list[Detection]:
    """Faces too small for a whole-frame pass: the detector on overlapping tiles of the full-resolution
    frame, boxes back in frame pixels, duplicates across tile overlaps merged (weighted NMS).
    bgr: the image is BGR (the detector turns each tile to RGB after downscaling it). near: only the tiles
    holding one of these boxes' centres (following faces already found costs one tile, not all)."""
    found = []
    h, w = image.shape[:2]
    centres = None if near is None else [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in near]
    for y in tile_origins(h, tile):
        for x in tile_origins(w, tile):
            if centres is not None and not any(x <= cx < x + tile and y <= cy < y + tile for cx, cy in centres):
                continue
            for d in detector.detect(np.ascontiguousarray(image[y:y + tile, x:x + tile]), bgr=bgr):
                found.append(Detection(box=d.box + np.array([x, y, x, y]), score=d.score,
                                       keypoints=d.keypoints + np.array([x, y])))
    return merge_detections(found)


def merge_detections(found: list[Detection], iou_threshold: float = 0.3) -> list[Detection]:
    if len(found) < 2:
        return found
    boxes = np.stack([d.box for d in found])
    scores = np.array([d.score for d in found])
    kps = [d.keypoints for d in found]
    if len({k.shape for k in kps}) != 1:  # keypoint sets differ (mixed detectors): keep boxes only
        kps = [np.zeros((0, 2)) for _ in found]
    merged = weighted_nms(boxes, scores, np.stack(kps), iou_threshold)
    return [Detection(box=b, score=s, keypoints=k) for b, s, k in merged]


def make_detector(name: str = "blazeface", **options) -> FaceDetector:
    if name not in DETECTORS:
        raise DetectorUnavailable(f"unknown face detector {name!r} (known: {', '.join(DETECTORS)})")
    return DETECTORS[name](**options)

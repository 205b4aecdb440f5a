"""Hard-cut detection on the frames the pipeline already decodes (no second decode).

The content measure of PySceneDetect's ContentDetector: the mean absolute difference of hue,
saturation and value between consecutive (downscaled) frames; a cut where it reaches `threshold`
(27 by default, as PySceneDetect) and the previous cut is at least `min_shot_frames` away.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

THUMB_WIDTH = 96


class ShotDetector:
    def __init__(self, threshold: float = 27.0, min_shot_frames: int = 15):
        self.threshold = threshold
        self.min_shot_frames = min_shot_frames
        self._previous: np.ndarray | None = None
        self._last_cut = 0
        self.cuts: list[int] = []  # frame indices where a new shot starts (never 0)
        self.scores: list[float] = []

    @staticmethod
    def _hsv_thumbnail(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
        hsv = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR).convert("HSV"), dtype=np.int16)
        hsv[..., 0] = hsv[..., 0] * 180 // 256  # PIL's hue is 0-255, OpenCV's (PySceneDetect's scale) 0-179
        return hsv

    def push(self, index: int, rgb: np.ndarray) -> bool:
        """Feed frame `index` (consecutive); True when a new shot starts at it."""
        hsv = self._hsv_thumbnail(rgb)
        cut = False
        if self._previous is not None:
            score = float(np.abs(hsv - self._previous).mean())
            self.scores.append(score)
            if score >= self.threshold and index - self._last_cut >= self.min_shot_frames:
                self.cuts.append(index)
                self._last_cut = index
                cut = True
        self._previous = hsv
        return cut

    def shots(self, num_frames: int) -> list[tuple[int, int]]:
        """[(first_frame, end_frame_exclusive), ...] covering all frames."""
        bounds = [0, *self.cuts, num_frames]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

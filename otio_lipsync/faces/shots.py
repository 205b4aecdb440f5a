"""Hard-cut detection on the frames the pipeline already decodes (no second decode).

The content measure of PySceneDetect's ContentDetector: the mean absolute difference of hue,
saturation and value between consecutive (downscaled) frames. A frame starts a new shot when
that score reaches `threshold` (27, as ContentDetector) *and*, as PySceneDetect's AdaptiveDetector,
it is at least `adaptive_ratio` times the mean score of the `window` frames on either side, and
the previous cut is at least `min_shot_frames` away. The ratio test is what keeps fast motion in a
frame-filling face (a head turn scores 25-32 frame after frame) from reading as a cut: a real cut
is one sharp peak among calm neighbours.

A frame's decision needs `window` frames after it, so `push` hands back decisions `window` frames
late and `finish` hands back the rest.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from PIL import Image

THUMB_WIDTH = 96


class ShotDetector:
    def __init__(self, threshold: float = 27.0, min_shot_frames: int = 15, adaptive_ratio: float = 3.0,
                 window: int = 2):
        self.threshold = threshold
        self.min_shot_frames = min_shot_frames
        self.adaptive_ratio = adaptive_ratio
        self.window = window
        self._previous: np.ndarray | None = None
        self._last_cut = 0
        self._pending: deque[int] = deque()  # frames pushed whose decision waits for later scores
        self.cuts: list[int] = []  # frame indices where a new shot starts (never 0)
        self.scores: list[float] = []  # scores[i - 1] compares frame i with frame i - 1

    @staticmethod
    def _hsv_thumbnail(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
        # reducing_gap: a box reduction by a whole factor first, then bilinear (half the time; within ~1 level)
        thumb = Image.fromarray(rgb).resize(size, Image.BILINEAR, reducing_gap=1.0)
        hsv = np.asarray(thumb.convert("HSV"), dtype=np.int16)
        hsv[..., 0] = hsv[..., 0] * 180 // 256  # PIL's hue is 0-255, OpenCV's (PySceneDetect's scale) 0-179
        return hsv

    def push(self, index: int, rgb: np.ndarray) -> list[tuple[int, bool]]:
        """Feed frame `index` (consecutive from 0) -> [(frame, starts a new shot)] for the frames whose
        decision is now final, in order."""
        hsv = self._hsv_thumbnail(rgb)
        if self._previous is not None:
            self.scores.append(float(np.abs(hsv - self._previous).mean()))
        self._previous = hsv
        self._pending.append(index)
        decided = []
        while self._pending and self._pending[0] + self.window <= index:
            decided.append(self._decide(self._pending.popleft()))
        return decided

    def may_cut_at(self, index: int) -> bool:
        """Whether frame `index` (the last pushed) differs from the one before enough to start a shot: known at
        once, where the decision (`push`) waits for the frames after it."""
        return 0 < index == len(self.scores) and self.scores[-1] >= self.threshold

    def finish(self) -> list[tuple[int, bool]]:
        """Decisions for the frames still waiting (end of the stream)."""
        decided = [self._decide(i) for i in self._pending]
        self._pending.clear()
        return decided

    def _decide(self, index: int) -> tuple[int, bool]:
        if index == 0:
            return index, False
        score = self.scores[index - 1]
        lo, hi = max(0, index - 1 - self.window), min(len(self.scores), index + self.window)
        neighbours = [s for j, s in enumerate(self.scores[lo:hi], lo) if j != index - 1]
        calm = float(np.mean(neighbours)) if neighbours else 0.0
        cut = (score >= self.threshold and score >= self.adaptive_ratio * calm
               and index - self._last_cut >= self.min_shot_frames)
        if cut:
            self.cuts.append(index)
            self._last_cut = index
        return index, cut

    def shots(self, num_frames: int) -> list[tuple[int, int]]:
        """[(first_frame, end_frame_exclusive), ...] covering all frames."""
        bounds = [0, *self.cuts, num_frames]
        return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

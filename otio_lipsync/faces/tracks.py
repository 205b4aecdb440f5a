"""Face tracks and crops, streamed with a fixed look-ahead.

Linking follows syncnet_python's `track_shot`: a detection joins a track when its IoU with the
track's last box exceeds `iou_threshold` (0.5) and at most `max_missed` (25) frames were missed;
boxes between detections are linearly interpolated, then box centre and size are median-filtered
over 13 frames (edges replicated, where the reference zero-pads). Tracks end at shot cuts.

Crop geometry is the reference `crop_video`, which the syncnet_v2 weights were trained on: with
s = half the larger box side and crop_scale cs = 0.4, the crop spans rows [cy - s, cy + s(1 + 2cs))
and columns [cx - s(1 + cs), cx + s(1 + cs)) (a square of side 2.8 s, shifted down to the mouth),
the frame padded with grey 110 where the crop leaves it, resized bilinearly to 224x224.

A frame's crop is final once its track has a detection MEDIAN_FRAMES // 2 frames later (the median's reach);
it goes out then. While detections are missed that can take up to `lookahead` frames, so at most that many
full frames are held, however long the file, and ~10 while a face is found.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..filters import median_filter
from ..media import Picture, padded_window
from .detectors import Detection

CROP_SIZE = 224
PAD_VALUE = 110
MEDIAN_FRAMES = 13
# final crops go out once this many are ready (or the track ends): one geometry pass per run of frames,
# not per frame (it was ~1 ms a frame); the crops are the same, frames wait this much longer
EMIT_BATCH = 4


@dataclass
class TrackOptions:
    iou_threshold: float = 0.5
    max_missed: int = 25  # frames without a detection before a track ends (reference num_failed_det)
    min_track_frames: int = 100  # the reference's min_track; shorter shots need half their length
    min_face_px: float = 40.0  # the reference uses 100 px, which drops faces in SD and small crops
    crop_scale: float = 0.4

    @property
    def lookahead(self) -> int:
        return self.max_missed + MEDIAN_FRAMES // 2 + 1

    @property
    def held_frames(self) -> int:
        """The most frames the tracker holds: the look-ahead plus a batch of final crops not yet emitted."""
        return self.lookahead + EMIT_BATCH


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def crop_face(frame, cx: float, cy: float, s: float, crop_scale: float = 0.4) -> np.ndarray:
    """The reference crop around centre (cx, cy) with half-size s, as 224x224x3 uint8 BGR. `frame`: a BGR image,
    or a media.Picture (its YUV planes: only the crop is converted)."""
    pad = int(s * (1 + 2 * crop_scale))
    my, mx = cy + pad, cx + pad  # coordinates in the padded frame, as the reference
    top, bottom = int(my - s), int(my + s * (1 + 2 * crop_scale))
    left, right = int(mx - s * (1 + crop_scale)), int(mx + s * (1 + crop_scale))
    if isinstance(frame, Picture):
        return frame.resized_window(top - pad, bottom - pad, left - pad, right - pad, CROP_SIZE, PAD_VALUE)
    out = padded_window(frame, top - pad, bottom - pad, left - pad, right - pad, PAD_VALUE)
    # bilinear without antialiasing, half-pixel centres: what cv2.resize(INTER_LINEAR) computes. Channels-last
    # in and out (the arrays' own layout): the crop comes back contiguous, with no copy to make it so
    t = torch.from_numpy(out)[None].float().permute(0, 3, 1, 2)
    t = torch.nn.functional.interpolate(t, size=(CROP_SIZE, CROP_SIZE), mode="bilinear", align_corners=False)
    return t.permute(0, 2, 3, 1)[0].round_().clamp_(0, 255).to(torch.uint8).numpy()


@dataclass
class Track:
    id: int
    shot: int
    frames: list[int] = field(default_factory=list)  # frames with a detection
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    emitted_upto: int = -1  # last frame whose crop was emitted
    ended: bool = False
    to_source: float = 1.0  # tracked pixels -> source pixels (FootageScan tracks huge frames scaled down)

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]

    def geometry(self, start: int, upto: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame (cx, cy, s) for frames start..upto: interpolated between detections, then
        median-smoothed. Only the detections around that span are used, so the cost per frame
        stays constant on hour-long tracks."""
        half = MEDIAN_FRAMES // 2
        upto = min(upto, self.last)
        if upto < start:
            return np.zeros(0, int), np.zeros((0, 3))
        lo, hi = max(self.first, start - half), min(self.last, upto + half)
        det = np.asarray(self.frames)
        i0 = max(0, int(np.searchsorted(det, lo, "right")) - 1)
        i1 = min(len(det), int(np.searchsorted(det, hi, "left")) + 1)
        boxes = np.stack(self.boxes[i0:i1])
        grid = np.arange(lo, hi + 1)
        columns = ((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                   np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2)
        params = np.stack([median_filter(np.interp(grid, det[i0:i1], v), MEDIAN_FRAMES, edges="nearest")
                           for v in columns], 1)
        keep = (grid >= start) & (grid <= upto)
        return grid[keep], params[keep]

    def median_box(self) -> list[float]:
        return [float(v) for v in np.median(np.stack(self.boxes), axis=0)]


@dataclass
class CropEvent:
    track: Track
    frame: int
    crop: np.ndarray


class FaceTracker:
    """push(frame index, BGR frame (or media.Picture), detections or None, new_shot) -> crops that became final."""

    def __init__(self, options: TrackOptions | None = None):
        self.options = options or TrackOptions()
        self.active: list[Track] = []
        self.finished: list[Track] = []
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self._next_id = 0
        self._shot = 0
        self._current = -1

    def _frame(self, index: int) -> np.ndarray:
        base = self._frames[0][0]
        return self._frames[index - base][1]

    def _end(self, track: Track, out: list[CropEvent]) -> None:
        out.extend(self._emit(track, track.last))
        track.ended = True
        self.active.remove(track)
        self.finished.append(track)

    def _emit(self, track: Track, upto: int) -> list[CropEvent]:
        if upto <= track.emitted_upto:
            return []
        start = max(track.first, track.emitted_upto + 1)
        frames, params = track.geometry(start, upto)
        events = [CropEvent(track, int(f), crop_face(self._frame(f), cx, cy, s, self.options.crop_scale))
                  for f, (cx, cy, s) in zip(frames, params)]
        track.emitted_upto = max(track.emitted_upto, min(upto, track.last))
        return events

    def push(self, index: int, frame_bgr: np.ndarray, detections: list[Detection] | None,
             new_shot: bool = False) -> list[CropEvent]:
        opts = self.options
        out: list[CropEvent] = []
        self._current = index
        if new_shot:  # tracks never cross a cut
            for track in list(self.active):
                self._end(track, out)
            self._shot += 1
        self._frames.append((index, frame_bgr))
        if detections is not None:
            candidates = sorted(
                ((iou(d.box, t.boxes[-1]), ti, di) for ti, t in enumerate(self.active)
                 for di, d in enumerate(detections) if index - t.last <= opts.max_missed),
                reverse=True)
            used_t, used_d = set(), set()
            for score, ti, di in candidates:
                if score <= opts.iou_threshold or ti in used_t or di in used_d:
                    continue
                track, det = self.active[ti], detections[di]
                track.frames.append(index)
                track.boxes.append(det.box)
                track.scores.append(det.score)
                used_t.add(ti)
                used_d.add(di)
            for di, det in enumerate(detections):
                if di not in used_d:
                    self.active.append(Track(self._next_id, self._shot, [index], [det.box], [det.score]))
                    self._next_id += 1
        for track in list(self.active):
            if index - track.last > opts.max_missed:
                self._end(track, out)
            else:
                # a frame's geometry is final once the track has a detection MEDIAN_FRAMES // 2 after it (later
                # detections only extend the track): its crop goes out then, and the frame is let go ~25 frames
                # sooner than the whole look-ahead, which is only needed while detections are missed
                final = track.last - MEDIAN_FRAMES // 2
                if final - track.emitted_upto >= EMIT_BATCH:
                    out.extend(self._emit(track, final))
        oldest_needed = min([t.emitted_upto + 1 for t in self.active] + [index])
        while self._frames and self._frames[0][0] < oldest_needed:
            self._frames.popleft()
        return out

    def finish(self) -> list[CropEvent]:
        out: list[CropEvent] = []
        for track in list(self.active):
            self._end(track, out)
        return out

    def keeps(self, track: Track, shot_frames: int) -> bool:
        """Long enough (the reference's min_track, or half of a shorter shot) and big enough."""
        opts = self.options
        length = track.last - track.first + 1
        needed = max(6, min(opts.min_track_frames, shot_frames // 2))
        sizes = [max(b[2] - b[0], b[3] - b[1]) for b in track.boxes]
        return length >= needed and float(np.mean(sizes)) >= opts.min_face_px

"""Review video: the analysed footage at 25 fps with every face track's box, id, speaking state and
offset drawn on it, and the file's verdict in a banner; the source audio is muxed back in.

A second decode pass (only when asked for): speaking states are known once the whole file is analysed.
Written atomically (temp file beside the target, then rename), never over the input.
"""

from __future__ import annotations

import os
import tempfile

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import media
from .analysis import Analysis
from .errors import LipsyncError, OutputError
from .faces.tracks import Track
from .outputs import atomic_output

SPEAKING = (40, 220, 90)
SILENT = (170, 170, 170)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _speaking_at(segments: list[list[float]], t: float) -> bool:
    return any(a <= t < b for a, b in segments)


def _verdict(analysis: Analysis) -> str:
    return (f"{analysis.offset_words()}  ({analysis.offset_frames:+d} frames, "
            f"confidence {analysis.confidence:.1f}, {analysis.basis})")


def write_review_video(source: str, analysis: Analysis, tracks: list[Track], target: str,
                       crop_scale: float = 0.4, ffmpeg: str | None = None) -> str:
    if os.path.abspath(target) == os.path.abspath(source):
        raise OutputError(target, "refusing to write the review video over its input")
    directory = os.path.dirname(os.path.abspath(target)) or "."
    os.makedirs(directory, exist_ok=True)
    # per-frame crop boxes of every track, from the same smoothed geometry the crops used
    boxes: dict[int, list[tuple[int, list[float]]]] = {}
    for number, track in enumerate(tracks):
        frames, params = track.geometry(track.first, track.last)
        for f, (cx, cy, s) in zip(frames, params * track.to_source):  # drawn on source frames
            box = [cx - s * (1 + crop_scale), cy - s, cx + s * (1 + crop_scale), cy + s * (1 + 2 * crop_scale)]
            boxes.setdefault(int(f), []).append((number, box))
    fd, silent_video = tempfile.mkstemp(prefix=".lipsync-review-", suffix=".mp4", dir=directory)
    os.close(fd)
    try:
        _render(source, analysis, boxes, silent_video)
        exe = media.find_ffmpeg(ffmpeg)
        start = (analysis.media or {}).get("video_start_s") or 0.0
        with atomic_output(target, ".mp4") as muxed:
            cmd = [exe, "-nostdin", "-v", "error", "-y", "-i", silent_video, "-ss", f"{start:.6f}", "-i", source,
                   "-map", "0:v", "-map", "1:a:0?", "-c:v", "copy", "-c:a", "aac", "-shortest", muxed]
            try:
                media.run_ffmpeg(cmd, source)
            except LipsyncError as exc:  # FfmpegFailed: the review video is the output that failed
                raise OutputError(target, f"ffmpeg could not mux the review video ({exc.reason})") from None
    finally:
        os.unlink(silent_video)
    return target


def _render(source: str, analysis: Analysis, boxes, out_path: str) -> None:
    track_info = analysis.tracks or []
    index = 0
    with av.open(out_path, "w") as out:
        stream = None
        for kind, chunk in media.decode(source):
            if kind != "video":
                continue
            for frame in chunk:
                h, w = frame.shape[:2]
                if stream is None:
                    stream = out.add_stream("libx264", rate=media.ANALYSIS_FPS)
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "20", "preset": "veryfast"}
                    scale = max(1.0, h / 360)
                    font, small = _font(int(16 * scale)), _font(int(12 * scale))
                image = Image.fromarray(np.ascontiguousarray(frame[: h - h % 2, : w - w % 2, ::-1]))
                draw = ImageDraw.Draw(image)
                t = index / media.ANALYSIS_FPS
                for number, box in boxes.get(index, []):
                    info = track_info[number] if number < len(track_info) else {}
                    speaking = _speaking_at(info.get("speaking", []), t)
                    colour = SPEAKING if speaking else SILENT
                    draw.rectangle(box, outline=colour, width=max(2, int(2 * scale)))
                    label = (f"#{number} {'SPEAKING' if speaking else 'silent'}  "
                             f"{info.get('audio_delay_ms', 0):+.0f} ms  conf {info.get('confidence', 0):.1f}")
                    draw.text((box[0], max(0, box[1] - 18 * scale)), label, fill=colour, font=small)
                draw.rectangle([0, 0, image.width, int(24 * scale)], fill=(0, 0, 0))
                draw.text((6, 3 * scale), f"{t:6.2f}s  {_verdict(analysis)}", fill=(255, 255, 255), font=font)
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                    out.mux(packet)
                index += 1
        if stream is not None:
            for packet in stream.encode(None):
                out.mux(packet)

"""Media stage: decode once, in one streaming pass, into what the sync stage consumes.

- video: BGR uint8 frames, resampled to 25 fps by presentation time (ffmpeg `fps` filter semantics:
  output frame k shows the last source frame whose timestamp rounds to slot <= k), so 23.976, 29.97,
  50, 59.94 and variable-rate sources all land on the 25-fps grid SyncNet was trained on;
- audio: int16 mono 16 kHz (swresample's downmix and resampler, as `ffmpeg -ac 1 -ar 16000`);
- time origin: the first video frame. Audio that starts earlier is dropped, audio that starts later is
  preceded by silence, so a file is measured as a player presents it (stream start times honoured);
- streamed: `decode` yields small chunks in demux order; nothing holds the whole file.

`reference_decode` reproduces syncnet_python's own input path instead (ffmpeg CLI -> JPEG files ->
libjpeg decode, ffmpeg CLI -> WAV), for users who need its exact numbers.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import wave
from collections import deque
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Callable, Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import LipsyncError, MediaNotFound, NoAudioStream, NoVideoStream, UnreadableMedia

ANALYSIS_FPS = 25
SAMPLE_RATE = 16000
VIDEO_CHUNK_FRAMES = 25
# swscale in the calling thread: its own slice threads (the default) spent ~1.8x the CPU for the same pixels
# (1080p -> 512x288: 1.62 ms against 0.89 ms a frame), and the decoder and the analysis already keep both cores busy
SWS_THREADS = 1
AUDIO_CHUNK_SAMPLES = SAMPLE_RATE

# file suffixes taken for video when a folder is searched (score, batch, lipsync-train prepare)
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".mxf", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts",
                  ".m2ts", ".flv", ".wmv", ".3gp", ".ogv", ".dv")


@dataclass
class MediaInfo:
    path: str
    container: str
    duration_s: float | None
    has_video: bool
    has_audio: bool
    fps: float | None  # average source frame rate
    variable_frame_rate: bool
    width: int | None
    height: int | None
    video_codec: str | None
    video_start_s: float | None
    audio_codec: str | None
    audio_rate: int | None
    audio_channels: int | None
    audio_start_s: float | None
    audio_streams: int

    def to_dict(self) -> dict:
        return asdict(self)


def _check_path(path: str) -> None:
    if path == "-":
        return
    if not os.path.exists(path):
        raise MediaNotFound(path, "no such file")
    if os.path.isdir(path):
        raise UnreadableMedia(path, "is a directory, not a media file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        # a FIFO without a writer (or a device) would block forever; a stream goes through `-` (stdin)
        raise UnreadableMedia(path, "not a regular file (a FIFO, socket or device): pipe a stream into `-` instead")
    if not os.access(path, os.R_OK):
        raise UnreadableMedia(path, "permission denied")


def open_container(path: str):
    _check_path(path)
    try:
        return av.open(sys.stdin.buffer if path == "-" else path, mode="r")
    except av.error.FFmpegError as exc:
        raise UnreadableMedia(path, f"not a readable media file ({_av_reason(exc)})") from None


def _av_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def _start_s(stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _video_info(stream) -> dict:
    avg = stream.average_rate
    guessed = stream.guessed_rate or stream.base_rate
    vfr = bool(avg and guessed and abs(float(avg) - float(guessed)) > 0.01 * float(guessed))
    return {
        "fps": float(avg) if avg else (float(guessed) if guessed else None),
        "variable_frame_rate": vfr,
        "width": stream.codec_context.width,
        "height": stream.codec_context.height,
        "video_codec": stream.codec_context.name,
        "video_start_s": _start_s(stream),
    }


def probe(path: str, audio_stream: int = 0) -> MediaInfo:
    with open_container(path) as container:
        return _probe_open(path, container, audio_stream)


def _probe_open(path, container, audio_stream: int) -> MediaInfo:
    video = container.streams.video[0] if container.streams.video else None
    audios = list(container.streams.audio)
    audio = audios[audio_stream] if audio_stream < len(audios) else None
    duration = container.duration / av.time_base if container.duration else None
    info = {"fps": None, "variable_frame_rate": False, "width": None, "height": None,
            "video_codec": None, "video_start_s": None}
    if video is not None:
        info.update(_video_info(video))
    return MediaInfo(
        path=path, container=container.format.name, duration_s=duration,
        has_video=video is not None, has_audio=audio is not None, **info,
        audio_codec=audio.codec_context.name if audio else None,
        audio_rate=audio.codec_context.sample_rate if audio else None,
        audio_channels=audio.codec_context.channels if audio else None,
        audio_start_s=_start_s(audio) if audio else None,
        audio_streams=len(audios),
    )


# YUV -> BGR for the matrices swscale picks from a frame's own tags (PyAV passes them on): BT.709 where tagged,
# BT.601 for the rest; limited range. Rows b, g, r; columns y - 16, u - 128, v - 128
_BT601 = np.array([[1.164383, 2.017232, 0.0], [1.164383, -0.391762, -0.812968], [1.164383, 0.0, 1.596027]],
                  np.float32)
_BT709 = np.array([[1.164383, 2.112402, 0.0], [1.164383, -0.213249, -0.532909], [1.164383, 0.0, 1.792741]],
                  np.float32)
# swscale's own conversion (the BGR path's) comes out low: ~floor(x - 0.75), i.e. round(x - SWSCALE_LOW) (fitted on
# decoded frames: 72% of values equal, mean bias within 0.25 of a level); crops from the planes do the same
SWSCALE_LOW = 1.25
_COLORSPACE_BT709 = 1
_COLORSPACES_BT601 = (2, 5, 6)  # unspecified, BT.470BG, SMPTE 170M (FFmpeg's AVColorSpace values)
_RANGE_FULL = 2
_SWSCALE = threading.local()


def _thread_reformatter(purpose: str) -> VideoReformatter:
    """This thread's swscale context for `purpose`, kept (Picture's conversions): a new one per call cost more than
    the work, and one context is not for two threads at once."""
    reformatter = getattr(_SWSCALE, purpose, None)
    if reformatter is None:
        reformatter = VideoReformatter()
        setattr(_SWSCALE, purpose, reformatter)
    return reformatter


class Picture:
    """One decoded 8-bit 4:2:0 frame kept in its YUV planes, standing in for its BGR image where only parts of
    it are needed: the full-frame BGR conversion (1080p: ~0.6 ms and 6 MB a frame, the decoding thread's
    biggest cost after H.264 itself) is skipped, and `resized_window` converts a 224x224 crop instead.

    `shape` is the BGR image's; `bgr()` makes the whole image when something needs it (tiled detection)."""

    __slots__ = ("frame", "planes", "shape", "nbytes", "matrix")

    def __init__(self, frame):
        self.frame = frame  # owns the planes' memory
        self.planes = [np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, :p.width] for p in frame.planes]
        self.shape = (frame.height, frame.width, 3)
        self.nbytes = sum(p.nbytes for p in self.planes)
        self.matrix = _BT709 if frame.colorspace == _COLORSPACE_BT709 else _BT601

    @staticmethod
    def takes(frame) -> bool:
        """Whether `frame` can be kept as a Picture: 8-bit 4:2:0, limited range, a BT.601 or BT.709 matrix.
        Anything else (full range, 4:2:2, 10-bit, RGB, BT.2020) is converted by swscale as before."""
        return (frame.format.name == "yuv420p" and frame.color_range != _RANGE_FULL
                and (frame.colorspace == _COLORSPACE_BT709 or frame.colorspace in _COLORSPACES_BT601))

    def bgr(self) -> np.ndarray:
        """The whole BGR image (swscale, as the BGR path)."""
        return _thread_reformatter("bgr").reformat(self.frame, format="bgr24", threads=SWS_THREADS).to_ndarray()

    def preview(self, longer: int) -> np.ndarray:
        """The detector preview `decode(preview=longer)` makes of this frame, made here (the consumer's thread): the
        same swscale call on the same decoded frame, so the same pixels. Only for unscaled Pictures."""
        return preview_image(_thread_reformatter("preview"), self.frame,
                             preview_size(self.frame.width, self.frame.height, longer))

    def resized_window(self, top: int, bottom: int, left: int, right: int, size: int, fill: int) -> np.ndarray:
        """Rows [top, bottom) and columns [left, right) of the BGR image (grey `fill` where they leave the frame),
        resized bilinearly (half-pixel centres, no antialiasing) to size x size -> uint8 (size, size, 3) BGR.
        The planes are resized first and converted after (an affine map commutes with interpolation): the
        result is within ~1 level of converting the whole frame and cropping it (chroma edges differ more)."""
        import torch

        luma, cb, cr = self.planes
        fill_y = 16.0 + (fill + SWSCALE_LOW) / self.matrix[0, 0]  # converts to grey `fill` exactly; chroma 128
        y = _resize_planes([padded_window(luma, top, bottom, left, right, fill_y)], size)
        top2, bottom2, left2, right2 = top // 2, (bottom + 1) // 2, left // 2, (right + 1) // 2
        uv = _resize_planes([padded_window(cb, top2, bottom2, left2, right2, 128),
                             padded_window(cr, top2, bottom2, left2, right2, 128)], size)
        luma_part = (y[0] - 16.0) * float(self.matrix[0, 0]) - SWSCALE_LOW
        u, v = uv[0] - 128.0, uv[1] - 128.0
        bgr = torch.empty(size, size, 3)  # written channel by channel: the crop comes out contiguous, as the BGR path's
        for channel, (_, from_u, from_v) in enumerate(self.matrix.tolist()):
            out = bgr[..., channel]
            torch.add(luma_part, u, alpha=from_u, out=out) if from_u else out.copy_(luma_part)
            if from_v:
                out.add_(v, alpha=from_v)
        return bgr.round_().clamp_(0, 255).to(torch.uint8).numpy()


def preview_size(width: int, height: int, longer: int) -> tuple[int, int]:
    """The size of a preview whose longer side is `longer`, aspect kept."""
    ratio = longer / max(width, height)
    return max(2, round(width * ratio)), max(2, round(height * ratio))


def preview_image(reformatter: VideoReformatter, frame, size: tuple[int, int]) -> np.ndarray:
    """`frame` scaled to `size` for shots and the detector: uint8 (h, w, 3) RGB (swscale's fast bilinear: cheap)."""
    return reformatter.reformat(frame, width=size[0], height=size[1], format="rgb24", interpolation="FAST_BILINEAR",
                                threads=SWS_THREADS).to_ndarray()


def padded_window(image: np.ndarray, top: int, bottom: int, left: int, right: int, fill: float) -> np.ndarray:
    """image[top:bottom, left:right] (a plane, or H x W x C), `fill` where that leaves the image: a view when it
    does not, else a float32 copy (the crops resize in float32 anyway)."""
    h, w = image.shape[:2]
    if top >= 0 and left >= 0 and bottom <= h and right <= w and bottom > top and right > left:
        return image[top:bottom, left:right]
    out = np.full((max(1, bottom - top), max(1, right - left), *image.shape[2:]), fill, np.float32)
    y0, y1, x0, x1 = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def _resize_planes(planes: list[np.ndarray], size: int):
    """Same-shape planes -> float32 tensor (n, size, size), bilinear without antialiasing (cv2's INTER_LINEAR)."""
    import torch

    stacked = torch.from_numpy(planes[0] if len(planes) == 1 else np.stack(planes))
    if stacked.dim() == 2:
        stacked = stacked[None]
    return torch.nn.functional.interpolate(stacked[None].float(), size=(size, size), mode="bilinear",
                                           align_corners=False)[0]


class _Decoded:
    """A decoded frame, and its image once converted (media.decode converts on first use: a frame the fps
    resampling drops, every 2nd one of 50 or 60 fps sources, is never converted)."""

    __slots__ = ("frame", "image")

    def __init__(self, frame):
        self.frame, self.image = frame, None


class _FpsResampler:
    """Presentation-time resampling to a constant rate, as ffmpeg's fps filter (round=near)."""

    def __init__(self, fps: int):
        self.fps = fps
        self.next_slot = 0
        self.held = None  # last frame seen, shown until a later frame claims a slot
        self.held_end_s = Fraction(0)

    def slot_of(self, t: Fraction) -> int:
        """Nearest output slot, halves away from zero, in exact arithmetic (as av_rescale_q_rnd)."""
        scaled = t * self.fps
        return int(math.floor(scaled + Fraction(1, 2))) if scaled >= 0 else -int(math.floor(-scaled + Fraction(1, 2)))

    def shows(self, t: Fraction, duration: Fraction) -> bool:
        """Whether a frame at t will fill a slot if the next frame follows it after `duration`: a guess made before
        pushing it (its slots are known only once the next frame arrives), so that frames a higher source rate drops
        need not be converted, while the frames kept are converted hot from the decoder."""
        return self.slot_of(t + duration) > max(self.next_slot, self.slot_of(t))

    def push(self, image, t: Fraction, duration: Fraction) -> list:
        """Hold `image` (any object) shown from t on -> the held images that fill the slots before t's."""
        slot = self.slot_of(t)
        out = []
        if self.held is not None:
            while self.next_slot < slot:
                out.append(self.held)
                self.next_slot += 1
        elif slot > 0:  # video starts after the origin: nothing to show before it
            self.next_slot = slot
        self.held = image
        self.held_end_s = t + duration
        return out

    def flush(self) -> list[np.ndarray]:
        out = []
        if self.held is None:
            return out
        end_slot = max(self.slot_of(self.held_end_s), self.next_slot + 1)
        while self.next_slot < end_slot:
            out.append(self.held)
            self.next_slot += 1
        return out


def decode(path: str, fps: int = ANALYSIS_FPS, sample_rate: int = SAMPLE_RATE,
           size: tuple[int, int] | None = None, audio_stream: int = 0,
           info_out: dict | None = None, preview: int | None = None,
           channel: int | None = None, start_s: float | None = None,
           duration_s: float | None = None, pictures: bool = False,
           threads: int | Callable[[MediaInfo], int | None] | None = None,
           max_pixels: int | None = None,
           defer_preview: Callable[[], bool] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ("video", uint8 (n, H, W, 3) BGR) and ("audio", int16 (m,)) chunks in one demux pass.

    size=(w, h) scales frames during the colour conversion. channel=N analyses that channel of the audio
    stream alone (default: the mono downmix of all channels). preview=N also yields, right before each
    video chunk, ("preview", uint8 (n, h, w, 3) RGB) of the same frames with the longer side N px,
    scaled by swscale (cheap), for detectors that never need full resolution. info_out, if given,
    receives the MediaInfo under "info" before the first chunk and decoding counts under "stats".
    pictures=True: video chunks are lists, and frames that `Picture.takes` come as Pictures (their YUV planes,
    scaled there when size or max_pixels asks, for consumers that crop small regions) instead of BGR arrays.
    threads: the video decoder's threads (None: FFmpeg's choice, a frame thread per core and one more; the pixels
    are the same), or a function of the file's MediaInfo giving them.
    max_pixels: frames larger than this come scaled down to fit (swscale AREA, aspect kept, right after decoding
    while the frame is in cache; as scaled Pictures where they can be); info_out["scale"] says by how much.
    defer_preview: asked before each unscaled Picture's preview; when it says True the preview chunk is a list with
    None for that frame, whose consumer makes it with `Picture.preview(preview)` (the same pixels).

    start_s / duration_s decode only that range of the file (seconds from its first video frame, the
    time origin as above): the demuxer seeks to a keyframe before start_s, and the output starts with the
    frame shown at start_s (audio from the same instant) and stops after duration_s. None: the whole file.
    """
    container = open_container(path)
    try:
        info = _probe_open(path, container, audio_stream)
        if not info.has_video:
            raise NoVideoStream(path, "has no video stream")
        if not info.has_audio:
            raise NoAudioStream(path, "has no audio stream" if info.audio_streams == 0 else
                                f"has no audio stream {audio_stream} (it has {info.audio_streams})")
        if channel is not None and not 0 <= channel < (info.audio_channels or 0):
            raise NoAudioStream(path, f"has no audio channel {channel} (audio stream {audio_stream} has "
                                f"{info.audio_channels} channel(s), numbered from 0)")
        if info_out is not None:
            info_out["info"] = info
        yield from _decode_open(path, container, info, fps, sample_rate, size, audio_stream, info_out, preview,
                                channel, start_s, duration_s, pictures, threads, max_pixels, defer_preview)
    finally:
        container.close()


_SAMPLE_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32,
                  "dbl": np.float64}


def _one_channel(frame, channel: int):
    """A mono AudioFrame holding one channel of `frame` (planar or interleaved), same time and rate."""
    if frame.format.is_planar:
        # the channel's plane read directly: PyAV's to_ndarray segfaults on 7.1 AAC frames (fltp, 8 channels)
        dtype = _SAMPLE_DTYPES[frame.format.name.rstrip("p")]
        samples = np.frombuffer(frame.planes[channel], dtype=dtype)[:frame.samples]
    else:
        samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, channel]
    mono = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples)[None, :], format=frame.format.name, layout="mono")
    mono.sample_rate, mono.pts, mono.time_base = frame.sample_rate, frame.pts, frame.time_base
    return mono


SEEK_MARGIN_S = 1.0  # seek this far before a range's start, so the audio packets around it are read too


def _decode_open(path, container, info, fps, sample_rate, size, audio_stream, info_out, preview, channel,
                 start_s=None, duration_s=None, pictures=False, threads=None, max_pixels=None, defer_preview=None):
    vstream = container.streams.video[0]
    astream = container.streams.audio[audio_stream]
    vstream.thread_type = "AUTO"
    if callable(threads):
        threads = threads(info)
    if threads:
        vstream.codec_context.thread_count = threads
    origin = (Fraction(vstream.start_time) * vstream.time_base
              if vstream.start_time is not None and vstream.time_base else None)
    ranged = start_s is not None or duration_s is not None
    if start_s:
        # the range's origin: start_s after the first video frame; frames before it only feed the resampler
        origin = (origin or Fraction(0)) + Fraction(start_s).limit_denominator(1_000_000)
        seek_to = float(origin) - SEEK_MARGIN_S
        if seek_to > 0:
            try:
                container.seek(int(seek_to / vstream.time_base), stream=vstream, backward=True, any_frame=False)
            except av.error.FFmpegError:
                pass  # not seekable: decode from the start, the result is the same
    end_s = Fraction(duration_s).limit_denominator(1_000_000) if duration_s is not None else None
    audio_wanted = round(float(end_s) * sample_rate) if end_s is not None else None
    audio_total = 0
    video_done = False
    rate = vstream.average_rate or vstream.guessed_rate
    default_frame_s = Fraction(1) / Fraction(rate) if rate else Fraction(1, fps)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    fps_resampler = _FpsResampler(fps)
    video_buf: list[_Decoded] = []
    audio_buf: list[np.ndarray] = []
    audio_len = 0
    audio_skip = None  # samples to drop (>0) or silence to insert (<0) at the start
    last_t = None
    bad_packets = 0
    bounded = size is None and max_pixels and info.width and info.height and info.width * info.height > max_pixels
    if bounded:
        scale = float(np.sqrt(max_pixels / (info.width * info.height)))
        size = (max(2, int(info.width * scale)) // 2 * 2, max(2, int(info.height * scale)) // 2 * 2)  # 4:2:0: even
    if info_out is not None:
        info_out["scale"] = size[0] / info.width if bounded else 1.0
    if size is not None and (info.width, info.height) == tuple(size):
        size = None  # already the wanted size: plain conversion, bit-identical to ffmpeg's bgr24
    interpolation = None
    if size is not None:
        interpolation = "AREA" if size[0] * size[1] < (info.width or 0) * (info.height or 0) else "BICUBIC"

    if preview and info.width and info.height:
        small_size = preview_size(info.width, info.height, preview)

    # one reformatter per output keeps its swscale context across frames: a new context per frame cost more
    # than the conversion itself (1080p: 2.8 -> 1.2 ms for BGR, 3.5 -> 0.8 ms for the preview; same pixels)
    full_format, small_format = VideoReformatter(), VideoReformatter()

    def to_image(frame):
        if pictures and Picture.takes(frame):
            kept = frame
            if size is not None:  # scaled in its YUV planes, its colour tags kept (the preview is made from `frame`)
                kept = full_format.reformat(frame, width=size[0], height=size[1], format="yuv420p",
                                            interpolation=interpolation, threads=SWS_THREADS)
                kept.colorspace, kept.color_range = frame.colorspace, frame.color_range
            image = Picture(kept)
        elif size is None:
            image = full_format.reformat(frame, format="bgr24", threads=SWS_THREADS).to_ndarray()
        else:
            image = full_format.reformat(frame, width=size[0], height=size[1], format="bgr24",
                                         interpolation=interpolation, threads=SWS_THREADS).to_ndarray()
        if not preview:
            return image
        if defer_preview is not None and isinstance(image, Picture) and image.frame is frame and defer_preview():
            return image, None  # the consumer makes it (Picture.preview), soon, while the frame is hot
        return image, preview_image(small_format, frame, small_size)

    # big frames go out one at a time, as views: stacking 1080p frames would copy 6 MB each
    chunk_frames = VIDEO_CHUNK_FRAMES if (info.width or 0) * (info.height or 0) <= 512 * 512 else 1

    conversions = 0

    def converted(item: _Decoded):
        nonlocal conversions
        if item.image is None:
            item.image, item.frame = to_image(item.frame), None
            conversions += 1
        return item.image

    def video_chunks(items):
        images = [converted(item) for item in items]
        if preview:
            smalls = [small for _, small in images]
            yield "preview", smalls if any(small is None for small in smalls) else _stack(smalls)
            images = [image for image, _ in images]
        yield "video", images if pictures else _stack(images)

    def audio_out(samples: np.ndarray):
        nonlocal audio_skip, audio_len, audio_total
        if audio_skip > 0:
            drop = min(audio_skip, len(samples))
            samples = samples[drop:]
            audio_skip -= drop
        if audio_wanted is not None:
            samples = samples[:max(0, audio_wanted - audio_total)]
        audio_buf.append(samples)
        audio_len += len(samples)
        audio_total += len(samples)

    try:
        for packet in container.demux(vstream, astream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                bad_packets += 1  # a damaged packet: ffmpeg conceals and goes on, so do we
                continue
            for frame in frames:
                if packet.stream is vstream:
                    # exact rational times: slot rounding must not depend on float error
                    t = (frame.pts * frame.time_base if frame.pts is not None and frame.time_base
                         else (last_t + default_frame_s if last_t is not None else Fraction(0)))
                    if origin is None:
                        origin = t
                    if last_t is not None and t <= last_t:
                        continue  # out-of-order/duplicate timestamp: keep presentation order
                    if end_s is not None and t - origin >= end_s:
                        video_done = True  # past the range: later frames are not shown in it
                        continue
                    duration = (frame.duration * frame.time_base
                                if getattr(frame, "duration", None) and frame.time_base else default_frame_s)
                    item = _Decoded(frame)
                    if fps_resampler.shows(t - origin, duration):
                        converted(item)  # now, hot from the decoder; one likely dropped waits, converted if shown
                    video_buf.extend(fps_resampler.push(item, t - origin, duration))
                    last_t = t
                    if len(video_buf) >= chunk_frames:
                        yield from video_chunks(video_buf)
                        video_buf = []
                else:
                    if audio_skip is None:
                        start = frame.time if frame.time is not None else (info.audio_start_s or 0.0)
                        ref = float(origin) if origin is not None else 0.0
                        audio_skip = int(round((start - ref) * -sample_rate))
                        if audio_skip < 0:
                            audio_buf.append(np.zeros(-audio_skip, dtype=np.int16))
                            audio_len += -audio_skip
                            audio_skip = 0
                    for out in resampler.resample(frame if channel is None else _one_channel(frame, channel)):
                        audio_out(out.to_ndarray().reshape(-1))
                    if audio_len >= AUDIO_CHUNK_SAMPLES:
                        yield "audio", np.concatenate(audio_buf)
                        audio_buf, audio_len = [], 0
            if video_done and audio_wanted is not None and audio_total >= audio_wanted:
                break  # the range is complete
        if audio_skip is not None and (audio_wanted is None or audio_total < audio_wanted):
            for out in resampler.resample(None):
                audio_out(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as exc:
        raise UnreadableMedia(path, f"decoding failed ({_av_reason(exc)})") from None
    declared = (Fraction(vstream.duration) * vstream.time_base
                if vstream.duration and vstream.time_base else None)
    decoded = fps_resampler.held_end_s if last_t is not None else Fraction(0)
    if declared and not ranged and decoded < declared * Fraction(9, 10) - Fraction(1, 5):
        # an index that promises more than the data holds: a cut-off download or copy
        raise UnreadableMedia(path, f"truncated: video data ends at {float(decoded):.2f} s of the "
                              f"{float(declared):.2f} s the container declares")
    video_buf.extend(fps_resampler.flush())
    for start in range(0, len(video_buf), chunk_frames):
        yield from video_chunks(video_buf[start:start + chunk_frames])
    if audio_buf:
        yield "audio", np.concatenate(audio_buf)
    if info_out is not None:
        info_out["stats"] = {"frames_25fps": fps_resampler.next_slot, "frames_converted": conversions,
                             "bad_packets": bad_packets,
                             "decoder_threads": vstream.codec_context.thread_count}


def _nbytes(chunk) -> int:
    return chunk.nbytes if hasattr(chunk, "nbytes") else sum(getattr(image, "nbytes", 0) for image in chunk)


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return images[0][None] if len(images) == 1 else np.stack(images)


# the decoding thread (and the frame threads FFmpeg starts from it) runs this much nicer than the consumer: the
# consumer is the slower side, and at equal priority the decoder's four threads took turns from it on two cores
# (1080p25 raw footage, alternating rounds: 22 s file 2.33-2.56 s against 2.12-2.37 s wall, 66.8 s file
# 7.46-8.45 s against 7.00-7.20 s; the README's speed section). Measured with FFmpeg's default threads; with the
# one decoder thread of decoder_threads_beside it still keeps the analysis first on a machine with other load
DECODE_NICE = 10


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one: taskset, containers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def decoder_threads_beside(busy_cores: int = 1) -> int:
    """Frame threads for a video decoder whose consumer keeps `busy_cores` cores busy on its own (`prefetched`):
    the cores left. FFmpeg's default (a thread per core and one more) had four decoding threads take turns with
    the consumer on two cores: one thread there cut the raw-footage pipeline's CPU by ~4% and its wall time by
    2-5% at 1080p25, and was even at 720p (the README's speed section; 4K: footage.decoder_threads_for)."""
    return max(1, usable_cores() - busy_cores)


def _lower_this_threads_priority(steps: int) -> None:
    """Linux: the calling thread's nice value up by `steps` (threads it starts inherit it). Elsewhere, or where
    it is refused, nothing: priority is an optimisation, never a condition."""
    if not sys.platform.startswith("linux") or not steps:
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))
    except OSError:
        pass


# decoded chunks waiting for the consumer: ~20 1080p pictures (10 as BGR), 25 chunks of crops
PREFETCH_BYTES = 64 * 2**20


class Backlog:
    """How many chunks `prefetched` holds for its consumer, read by the decoding thread (`decode(defer_preview=)`)."""

    __slots__ = ("chunks",)

    def __init__(self):
        self.chunks = 0


def prefetched(chunks: Iterator[tuple[str, np.ndarray]], max_bytes: int = PREFETCH_BYTES,
               backlog: Backlog | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """`chunks` (a `decode` generator) run ahead in a background thread: decoding and colour conversion
    (PyAV releases the GIL for both) overlap with the consumer's detection and model on the other core.
    At most `max_bytes` of chunks wait (at least one, however large); errors are raised in the consumer,
    and closing this generator early stops and closes the decoder."""
    lock = threading.Condition()
    waiting: deque = deque()
    state = {"bytes": 0, "stop": False}
    done = object()

    def produce():
        _lower_this_threads_priority(DECODE_NICE)  # before the decoder opens: its frame threads inherit it
        try:
            for item in chunks:
                size = _nbytes(item[1])
                with lock:
                    lock.wait_for(lambda: state["stop"] or not waiting or state["bytes"] + size <= max_bytes)
                    if state["stop"]:
                        break
                    waiting.append(item)
                    state["bytes"] += size
                    if backlog is not None:
                        backlog.chunks = len(waiting)
                    lock.notify_all()
        except BaseException as exc:  # handed to the consumer, raised there
            with lock:
                waiting.append(exc)
                lock.notify_all()
            return
        finally:
            chunks.close()
        with lock:
            waiting.append(done)
            lock.notify_all()

    thread = threading.Thread(target=produce, name="lipsync-decode", daemon=True)
    thread.start()
    try:
        while True:
            with lock:
                lock.wait_for(lambda: bool(waiting))
                item = waiting.popleft()
                if backlog is not None:
                    backlog.chunks = len(waiting)
                if isinstance(item, tuple):
                    state["bytes"] -= _nbytes(item[1])
                lock.notify_all()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        with lock:
            state["stop"] = True
            lock.notify_all()
        thread.join()


def read_all(path: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Whole-file convenience for tests and short clips: (frames (T, H, W, 3), audio (N,))."""
    video, audio = [], []
    for kind, chunk in decode(path, **kwargs):
        (video if kind == "video" else audio).append(chunk)
    frames = np.concatenate(video) if video else np.zeros((0, 0, 0, 3), np.uint8)
    samples = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    return frames, samples


# --- the reference's own input path -----------------------------------------------------------

def find_ffmpeg(explicit: str | None = None, prefer_system: bool = False) -> str:
    """--ffmpeg PATH, else $FFMPEG_PATH, else (prefer_system) `ffmpeg` on PATH, else imageio-ffmpeg's."""
    for candidate in (explicit, os.environ.get("FFMPEG_PATH")):
        if candidate:
            return candidate
    system = shutil.which("ffmpeg")
    if prefer_system and system:
        return system
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        if system:
            return system
        raise RuntimeError("no ffmpeg binary found: install imageio-ffmpeg, put ffmpeg on PATH "
                           "or set FFMPEG_PATH") from None


def run_ffmpeg(cmd: list[str], file: str, *, die_with_parent: bool = False) -> subprocess.CompletedProcess:
    """The one way lipsync runs the ffmpeg binary: `cmd` (cmd[0] from `find_ffmpeg`) with stdout and stderr
    captured (text). FfmpegFailed(file, ...) when it cannot start ("cannot run ffmpeg (...)") or exits non-zero
    ("ffmpeg failed: <its last stderr line>"); that line is the exception's `reason`, for callers that say it
    in their own words. die_with_parent: ffmpeg is killed when this process dies (a long write)."""
    import functools

    from .errors import FfmpegFailed

    preexec = None
    if die_with_parent:
        from .children import die_with_parent as arm

        preexec = functools.partial(arm, os.getpid())
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec)
    except OSError as exc:
        error = FfmpegFailed(file, f"cannot run ffmpeg ({exc})")
        error.reason = str(exc)
        raise error from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        error = FfmpegFailed(file, f"ffmpeg failed: {reason}")
        error.reason = reason
        raise error
    return proc


def reference_decode(path: str, ffmpeg: str | None = None, size: tuple[int, int] | None = None,
                     info_out: dict | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """syncnet_python's inputs: `ffmpeg -f image2 %06d.jpg` frames read back by libjpeg, and
    `ffmpeg -async 1 -ac 1 -vn -acodec pcm_s16le -ar 16000` audio. No frame-rate conversion (as the
    reference); exact JPEG bytes depend on the ffmpeg build (the golden numbers used Debian 12's 5.1).
    size=(w, h) resizes frames of another size (the reference itself would fail on them); info_out
    receives the MediaInfo under "info", as with `decode`."""
    from PIL import Image

    info = probe(path)
    if not info.has_video:
        raise NoVideoStream(path, "has no video stream")
    if not info.has_audio:
        raise NoAudioStream(path, "has no audio stream")
    if info_out is not None:
        info_out["info"] = info
    exe = find_ffmpeg(ffmpeg, prefer_system=True)
    with tempfile.TemporaryDirectory(prefix="lipsync-ref-") as tmp:
        for cmd in ([exe, "-nostdin", "-v", "error", "-y", "-i", path, "-threads", "1", "-f", "image2",
                     os.path.join(tmp, "%06d.jpg")],
                    [exe, "-nostdin", "-v", "error", "-y", "-i", path, "-async", "1", "-ac", "1", "-vn",
                     "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE), os.path.join(tmp, "audio.wav")]):
            try:
                run_ffmpeg(cmd, path)
            except LipsyncError as exc:  # FfmpegFailed: said as what it means here
                raise UnreadableMedia(path, f"ffmpeg could not extract streams ({exc.reason})") from None
        files = sorted(glob.glob(os.path.join(tmp, "*.jpg")))
        if not files:
            raise NoVideoStream(path, "has no video stream")
        for start in range(0, len(files), VIDEO_CHUNK_FRAMES):
            batch = []
            for f in files[start:start + VIDEO_CHUNK_FRAMES]:
                image = Image.open(f).convert("RGB")
                if size is not None and image.size != tuple(size):
                    image = image.resize(tuple(size), Image.BILINEAR)
                batch.append(np.asarray(image)[:, :, ::-1])
            yield "video", np.ascontiguousarray(np.stack(batch))
        with wave.open(os.path.join(tmp, "audio.wav"), "rb") as wav:
            while chunk := wav.readframes(AUDIO_CHUNK_SAMPLES):
                yield "audio", np.frombuffer(chunk, dtype="<i2").astype(np.int16)


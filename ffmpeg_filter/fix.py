"""Write a corrected copy of a media file: the video stream(s) copied bit-exact, the audio shifted.

`delay_ms` is the audio delay to remove, as `lipsync check` reports it in `audio_delay_ms`: positive
means the sound comes after the picture, so the audio is moved that much earlier (negative: later).

- method "copy": no re-encoding; the audio input is read with a timestamp offset (`-itsoffset`), so
  only its timestamps change and the container records where it starts (players honour it). Audio moved
  later is cut at SOURCE's duration (`-t`, whole packets); audio moved earlier ends that much sooner
  (stream copy cannot pad it), so OUT is then as long as the longer of its video and shifted audio;
- method "reencode": the audio is re-encoded with `atrim` (earlier) or `adelay` (later), padded
  (`apad`) and trimmed so it keeps the video's duration.
Everything else (subtitles, data streams, chapters, metadata) is mapped through. The output is
written to a temp file beside OUT and renamed, never over its input.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import CannotFix, FfmpegFailed, NoAudioStream, NoVideoStream, OutputError
from ..media import find_ffmpeg, probe, run_ffmpeg
from ..outputs import atomic_output, sweep_stale

METHODS = ("copy", "reencode")
# containers whose ffmpeg muxer silently drops the start offset of copied audio (tested: the output
# plays exactly as the input), so `copy` cannot shift it; reencode can
COPY_CANNOT_SHIFT = {".mxf": "MXF"}


@dataclass
class FixPlan:
    source: str
    target: str
    delay_ms: float
    method: str
    command: list[str]  # with the temp output path in place of target


def _audio_filter(shift_s: float, duration_s: float | None) -> str:
    """Move audio earlier (shift > 0) or later (shift < 0) and keep the video's length."""
    parts = []
    if shift_s > 0:
        parts += [f"atrim=start={shift_s:.6f}", "asetpts=PTS-STARTPTS"]
    elif shift_s < 0:
        parts += [f"adelay={-shift_s * 1000:.3f}:all=1"]
    parts.append("apad")
    if duration_s:
        parts.append(f"atrim=end={duration_s:.6f}")
    return ",".join(parts)


def plan_fix(source: str, target: str, delay_ms: float, method: str = "copy", audio_stream: int = 0,
             ffmpeg: str | None = None, audio_codec: str | None = None) -> FixPlan:
    """audio_codec for reencode: default the source's own codec when it is PCM (lossless, and what MXF
    and broadcast files carry), else AAC."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    if not math.isfinite(delay_ms):
        raise CannotFix(source, f"--delay-ms {delay_ms}: must be a finite number of milliseconds")
    container = COPY_CANNOT_SHIFT.get(os.path.splitext(target)[1].lower())
    if method == "copy" and container and delay_ms:
        raise CannotFix(source, f"{container} cannot record a start offset for copied audio (ffmpeg's muxer drops "
                        f"it, the output would be unchanged): use --method reencode")
    if os.path.exists(target) and os.path.exists(source) and os.path.samefile(source, target):
        raise OutputError(target, "is the input: refusing to overwrite it (choose another -o)")
    info = probe(source, audio_stream)
    if not info.has_video:
        raise NoVideoStream(source, "has no video stream")
    if not info.has_audio:
        raise NoAudioStream(source, "has no audio stream")
    if info.duration_s and abs(delay_ms) >= info.duration_s * 1000:
        # the whole sound would leave the picture: an output with no audio (or none decodable), never a fix
        raise CannotFix(source, f"--delay-ms {delay_ms:g}: the shift is longer than the media "
                        f"({info.duration_s * 1000:.0f} ms)")
    if audio_codec is None:
        audio_codec = info.audio_codec if (info.audio_codec or "").startswith("pcm_") else "aac"
    exe = find_ffmpeg(ffmpeg)
    shift_s = delay_ms / 1000.0
    cmd = [exe, "-nostdin", "-v", "error", "-y", "-i", source]
    if method == "copy":
        cmd += ["-itsoffset", f"{-shift_s:.6f}", "-i", source,
                "-map", "0:v", "-map", f"1:a:{audio_stream}", "-map", "0:s?", "-map", "0:d?",
                "-c", "copy"]
        if shift_s < 0 and info.duration_s:
            # audio moved later runs past SOURCE's end by the shift: cut it there (whole packets, so
            # within one audio frame); moved earlier, its end cannot be padded without re-encoding
            cmd += ["-t", f"{info.duration_s:.6f}"]
    else:
        cmd += ["-map", "0:v", "-map", f"0:a:{audio_stream}", "-map", "0:s?", "-map", "0:d?",
                "-c", "copy", "-filter:a", _audio_filter(shift_s, info.duration_s), "-c:a", audio_codec]
    cmd += ["-map_metadata", "0", "-map_chapters", "0"]
    return FixPlan(source, target, delay_ms, method, cmd)


def run_fix(plan: FixPlan) -> str:
    """Run the plan into a temp file beside the target and rename it into place."""
    sweep_stale(os.path.dirname(os.path.abspath(plan.target)))  # a killed fix's partial output
    with atomic_output(plan.target) as tmp:
        run_ffmpeg(plan.command + [tmp], plan.source, die_with_parent=True)
    return plan.target


def video_hashes(path: str, ffmpeg: str | None = None) -> list[str]:
    """md5 of every video stream's packet data (what `-c copy` must leave untouched)."""
    try:
        proc = run_ffmpeg([find_ffmpeg(ffmpeg), "-nostdin", "-v", "error", "-i", path, "-map", "0:v", "-c", "copy",
                           "-f", "streamhash", "-hash", "md5", "-"], path)
    except FfmpegFailed as exc:
        raise FfmpegFailed(path, f"ffmpeg streamhash failed: {exc.reason}") from None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

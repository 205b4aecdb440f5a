"""lipsync: measure lip sync under every clip of a timeline; return it annotated.

Reads any timeline another OTIO adapter reads (.otio, .edl, .xml, ...),
analyses the used source range of each clip's media (plus a handle) with
SyncNet (otio-lipsync), and adds markers in the clip's source time:
- one per clip, its name the essentials: `lipsync +120ms late conf 7.4`;
  colour by verdict:
    GREEN    in sync, within EBU R37 (sound leads <= 40 ms, lags <= 60 ms)
    YELLOW   detectable: outside R37, within ITU-R BT.1359 acceptability
             (leads <= 90 ms, lags <= 185 ms)
    RED      beyond BT.1359 acceptability
    BLUE     no face, or confidence below min_confidence
    MAGENTA  not analysed (media missing/unreadable, image sequence)
  the full numbers, model name + sha256, tool version:
  marker.metadata["lipsync"];
- CYAN: one per active-speaker segment (`lipsync speaker 0 conf 6.1`);
- PINK: on an audio clip that was slipped.
Sign: audio_delay_ms > 0 means the sound comes after the picture (late).

Usage:
  otioconvert -i edit.otio -I lipsync -a slip=true -o out.otio
  otio.adapters.read_from_file("edit.otio", adapter_name="lipsync",
                               slip=True)

Options (`-a key=value`; true/false, numbers and paths are parsed):
  source_adapter=NAME  adapter that reads the file (default: by suffix)
  source_X=V           argument X=V for that adapter, e.g. source_rate=25
                       for an EDL (cmx_3600's rate)
  slip=true            move each paired audio clip's source start by the
                       measured delay (whole frames of its rate) when
                       confidence >= slip_min_confidence and the media has
                       room; the original start is kept in
                       clip.metadata["lipsync"]["slip"]
  unslip=true          restore every start lipsync slipped (no analysis)
  media_root=DIR       relative target_urls: looked up here first, then
                       beside the timeline file
  cache_dir=DIR        analysis cache (default
                       ~/.cache/otio-lipsync/analyses; none: no cache)
  model=NAME|PATH      model (default: see `lipsync models`)
  min_confidence=3.0   below it: `low conf` (BLUE), never slipped
  slip_min_confidence=N  confidence needed to slip (default:
                       min_confidence)
  face_cropped=true    the media is a face crop (default: raw footage,
                       faces detected and tracked)
  handle_s=0.5         seconds decoded before and after each used range
  delay_ms=N           do not measure: N ms (positive: sound late) for
                       every clip, e.g. to slip by a known amount
  report=PATH          also write a JSON report (per clip, summary)
  quiet=true           no progress lines on stderr (warnings still are)
"""

from __future__ import annotations

from otio_lipsync.otio_adapter.core import LipsyncAdapterError, annotate_file

__all__ = ["LipsyncAdapterError", "read_from_file"]


def read_from_file(filepath, source_adapter=None, **options):
    """Read filepath with source_adapter (default: by suffix), analyse every clip, return the annotated
    timeline. Options: see the module docstring."""
    timeline, _ = annotate_file(filepath, source_adapter, **options)
    return timeline

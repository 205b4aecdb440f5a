"""Moved: the OTIO stage (markers, slip, the analysis cache) is `otio_lipsync.otio_adapter.timeline`. This
name stays importable for existing code: it is the same module object."""

import sys

from .otio_adapter import timeline as _timeline

sys.modules[__name__] = _timeline

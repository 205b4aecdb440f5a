"""The memory allocator of lipsync's own processes (the `lipsync` command, batch workers): freed memory is kept
for reuse instead of being handed back to the kernel.

glibc serves a large allocation with its own mmap and unmaps it at free (above a threshold that starts at 128 KiB),
and gives the top of its heaps back once more than a threshold is free. Raw footage allocates and frees
frame-sized buffers all the time: decoded pictures, 4K frames scaled for the tracker, float copies of crop
windows. Each came back as fresh pages, a page fault per 4 KiB, which is costly in a VM: on the 2-core VM of the
README, a 12 s 4K file took 155-211k faults and 1.1-1.9 s of kernel time (wall 5.4-6.1 s; 4.2-4.3 s kept), and a
22 s 1080p25 file 20-61k faults and 0.13-0.35 s (2.22-2.54 s; 2.18-2.25 s kept). On raw footage peak memory is the
same: the kept pages are the ones the next frame takes. Elsewhere they can cost some: face crops through
SyncNet-format weights (`--face-cropped`, a 10 min file, VM B, 2026-12-05) peaked at 795-839 MiB kept against
757-769 MiB, for 164-166 s against 195-196 s of wall.

A library call changes no process-wide setting: your own process opts in with `keep_freed_memory()`.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest on 64-bit: anything smaller comes from the reused heap
TRIM_THRESHOLD = 256 * 2**20  # free memory kept at the top of a heap before any is given back


def keep_freed_memory() -> bool:
    """glibc (Linux): allocations under MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD of freed heap
    stays mapped for the next allocation. -> whether the settings took (False elsewhere: nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))

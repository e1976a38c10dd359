"""Keep freed memory in the process for the next run instead of handing it back to the OS.

A stage output of a few megabytes is allocated afresh on every run. glibc's malloc returns such
blocks to the kernel when they are freed (``mmap`` above its threshold, heap trimming below), so
the next run touches brand-new pages: measured on the four-stage 512x512 stack, about 11,000
page faults per run, which cost more than the convolutions themselves. Raising the two
thresholds lets malloc reuse the freed blocks; nothing else changes (the numbers computed are
the same). Blocks above 32 MB (glibc's largest mmap threshold), such as the stages of a 12 MP
export, are still mapped and unmapped as before, so peak memory is unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's maximum: larger blocks still go straight back to the OS
TRIM_THRESHOLD = 512 << 20  # free memory at the heap's top kept before trimming


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says (once per process). Returns whether
    it applied: False off Linux or with another C library (musl has no ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))

"""Compiled kernels of the CPU renderer's pixel pass (numba).

``render_cpu`` makes a stage's uint8 pictures with torch and numpy in seven passes over
memory; for float32 data these kernels make the same bytes in one pass after the levels,
writing each channel's picture and its tile of the mosaic together. The arithmetic is the
documented formula step by step in float32, with no fused multiply-add and no reordering
(numba without fastmath), so the results are bit-identical; the tests compare the two.

Importing this module compiles the kernels (about a second the first time, then loaded
from numba's on-disk cache); ``render_cpu`` does that in a background thread and uses the
torch path until it is done, or for good where numba is missing or fails.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# error_model="numpy": no Python zero-division check inside the loops, which would stop
# them being vectorised (span is never 0 here: render_cpu makes it 1 first).
_OPTIONS = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")


@njit(
    "void(float32[:, ::1], float32[::1], float32[::1], int64, int64, int64, uint8[::1],"
    " uint8[:, :, ::1], uint8[:, ::1])",
    **_OPTIONS,
)
def quantize_hwc(a, lo, span, c, cols, pad, row_u8, chw, mosaic):
    """Channels-last data ``a`` (H, W*c) -> ``chw`` (c, H, W) and its tiles in ``mosaic``
    (``cols`` tiles a row, ``pad`` between them). ``lo`` and ``span`` are the channels'
    levels repeated W times; ``row_u8`` is a (W*c,) scratch row."""
    h, w = chw.shape[1], chw.shape[2]
    s255 = np.float32(255.0)
    half = np.float32(0.5)
    for y in range(h):
        row = a[y]
        for j in range(row.shape[0]):
            row_u8[j] = np.uint8(((row[j] - lo[j]) / span[j]) * s255 + half)
        for k in range(c):
            out = chw[k, y]
            for x in range(w):
                out[x] = row_u8[x * c + k]
            tile = mosaic[(k // cols) * (h + pad) + y, (k % cols) * (w + pad):]
            for x in range(w):
                tile[x] = out[x]


@njit("void(float32[:, ::1], float32[::1], float32[::1], uint8[:, ::1])", **_OPTIONS)
def quantize_chw(a, lo, span, out):
    """Contiguous data ``a`` (c, H*W) -> ``out`` (c, H*W)."""
    s255 = np.float32(255.0)
    half = np.float32(0.5)
    for k in range(a.shape[0]):
        row, o = a[k], out[k]
        lo_k, span_k = lo[k], span[k]
        for j in range(row.shape[0]):
            o[j] = np.uint8(((row[j] - lo_k) / span_k) * s255 + half)

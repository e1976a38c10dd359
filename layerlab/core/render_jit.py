"""Compiled kernels of the CPU renderer's pixel pass (numba).

``render_cpu`` makes a stage's uint8 pictures with torch and numpy in seven passes over
memory; for float32 data these kernels write the mosaic the view shows in one pass after the
levels (the channels' own pictures are cut from it when first asked for). The arithmetic is
the documented formula step by step in float32, with no fused multiply-add and no
reordering (numba without fastmath), so the results are bit-identical; the tests compare
the two.

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


@njit(inline="always", **_OPTIONS)
def _transpose8(w0, w1, w2, w3, w4, w5, w6, w7):
    """The 8 x 8 byte matrix whose rows are the little-endian words w0..w7, transposed:
    byte i of word j out is byte j of word i in. Three rounds of swapping the off-diagonal
    halves of 2 x 2 blocks (4-byte, 2-byte, then 1-byte blocks)."""
    m32 = np.uint64(0x00000000FFFFFFFF)
    m16 = np.uint64(0x0000FFFF0000FFFF)
    m8 = np.uint64(0x00FF00FF00FF00FF)
    s32, s16, s8 = np.uint64(32), np.uint64(16), np.uint64(8)
    a0, a4 = (w0 & m32) | (w4 << s32), (w0 >> s32) | (w4 & ~m32)
    a1, a5 = (w1 & m32) | (w5 << s32), (w1 >> s32) | (w5 & ~m32)
    a2, a6 = (w2 & m32) | (w6 << s32), (w2 >> s32) | (w6 & ~m32)
    a3, a7 = (w3 & m32) | (w7 << s32), (w3 >> s32) | (w7 & ~m32)
    b0, b2 = (a0 & m16) | ((a2 & m16) << s16), ((a0 >> s16) & m16) | (a2 & ~m16)
    b1, b3 = (a1 & m16) | ((a3 & m16) << s16), ((a1 >> s16) & m16) | (a3 & ~m16)
    b4, b6 = (a4 & m16) | ((a6 & m16) << s16), ((a4 >> s16) & m16) | (a6 & ~m16)
    b5, b7 = (a5 & m16) | ((a7 & m16) << s16), ((a5 >> s16) & m16) | (a7 & ~m16)
    return ((b0 & m8) | ((b1 & m8) << s8), ((b0 >> s8) & m8) | (b1 & ~m8),
            (b2 & m8) | ((b3 & m8) << s8), ((b2 >> s8) & m8) | (b3 & ~m8),
            (b4 & m8) | ((b5 & m8) << s8), ((b4 >> s8) & m8) | (b5 & ~m8),
            (b6 & m8) | ((b7 & m8) << s8), ((b6 >> s8) & m8) | (b7 & ~m8))


@njit(
    "void(float32[:, ::1], float32[::1], float32[::1], int64[::1], int64[::1], uint8[:, ::1])",
    **_OPTIONS,
)
def quantize_hwc(a, lo, span, top, left, mosaic):
    """Channels-last data ``a`` (H, W * c), c = len(lo), -> each channel's tile of
    ``mosaic``, whose top-left corners are (``top``, ``left``) (render.grid_layout); the
    gutters are left as they are.

    A row is quantised in memory order (vectorised), then split into its channels: 8 pixels
    x 8 channels at a time as one 8 x 8 byte transpose of 64-bit words where c is a multiple
    of 8, a byte at a time otherwise; then each channel's row is copied to its tile."""
    c = lo.shape[0]
    h, w = a.shape[0], a.shape[1] // c
    s255 = np.float32(255.0)
    half = np.float32(0.5)
    lo_t = np.empty(w * c, np.float32)
    span_t = np.empty(w * c, np.float32)
    for j in range(w * c):
        lo_t[j] = lo[j % c]
        span_t[j] = span[j % c]
    groups = c // 8 if c % 8 == 0 else 0  # 8-channel groups the word transpose handles
    blocks = w // 8 if groups else 0  # 8-pixel blocks of a row it handles
    padded = -(-w // 8) * 8  # a channel's row in `planar`, whole words
    row_u8 = np.empty(w * c, np.uint8)
    planar = np.empty(c * padded, np.uint8)
    row_words = row_u8.view(np.uint64) if groups else row_u8[:0].view(np.uint64)
    planar_words = planar.view(np.uint64)
    words = padded // 8
    for y in range(h):
        row = a[y]
        for j in range(w * c):
            row_u8[j] = np.uint8(((row[j] - lo_t[j]) / span_t[j]) * s255 + half)
        for q in range(groups):
            k = q * 8
            for xb in range(blocks):
                i = xb * 8 * groups + q  # word of pixel 8 xb, channels 8q..8q+7
                t0, t1, t2, t3, t4, t5, t6, t7 = _transpose8(
                    row_words[i], row_words[i + groups], row_words[i + 2 * groups],
                    row_words[i + 3 * groups], row_words[i + 4 * groups],
                    row_words[i + 5 * groups], row_words[i + 6 * groups],
                    row_words[i + 7 * groups])
                planar_words[k * words + xb] = t0
                planar_words[(k + 1) * words + xb] = t1
                planar_words[(k + 2) * words + xb] = t2
                planar_words[(k + 3) * words + xb] = t3
                planar_words[(k + 4) * words + xb] = t4
                planar_words[(k + 5) * words + xb] = t5
                planar_words[(k + 6) * words + xb] = t6
                planar_words[(k + 7) * words + xb] = t7
        for x in range(blocks * 8, w):
            for k in range(c):
                planar[k * padded + x] = row_u8[x * c + k]
        for k in range(c):
            # Slices, so that every index is a loop counter (no wraparound check per byte)
            tile = mosaic[top[k] + y, left[k] : left[k] + w]
            src = planar[k * padded : k * padded + w]
            for x in range(w):
                tile[x] = src[x]


@njit(
    "void(float32[:, :, ::1], float32[::1], float32[::1], int64[::1], int64[::1],"
    " uint8[:, ::1])",
    **_OPTIONS,
)
def quantize_chw(a, lo, span, top, left, mosaic):
    """Contiguous data ``a`` (c, H, W) -> each channel's tile of ``mosaic``, as above."""
    c, h, w = a.shape
    s255 = np.float32(255.0)
    half = np.float32(0.5)
    for k in range(c):
        lo_k, span_k = lo[k], span[k]
        for y in range(h):
            row = a[k, y]
            tile = mosaic[top[k] + y, left[k] : left[k] + w]
            for x in range(w):
                tile[x] = np.uint8(((row[x] - lo_k) / span_k) * s255 + half)

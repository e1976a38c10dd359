"""Compiled kernels of the CPU renderer's pixel pass (numba).

``render_cpu`` makes a stage's uint8 pictures with torch and numpy in seven passes over
memory; for float32 data these kernels find each channel's min and max of channels-last data
in one pass and write the mosaic the view shows in one more (the channels' own pictures are
cut from it when first asked for). The arithmetic is
the documented formula step by step in float32, with no fused multiply-add and no
reordering (numba without fastmath), so the results are bit-identical; the tests compare
the two.

Each kernel works on a range of rows, so that several threads can share one stage. The
launchers (``minmax_team``, ``mosaic``) start the ``team_*`` C callbacks through
``GOMP_parallel`` of the OpenMP runtime torch runs on (``render_cpu`` finds its address), so
torch's own threads, idle and still spinning after its last op, take the work; every
thread claims chunks of rows with an atomic counter until none are left, so the bytes do
not depend on how the rows were shared. Without that runtime they run on the calling
thread.

Importing this module compiles the kernels (about ten seconds the first time on a slow
two-core machine, then loaded from numba's on-disk cache in well under one); ``render_cpu``
does that in a background thread and uses the torch path until it is done, or for good
where numba is missing or fails.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.extending import intrinsic

# error_model="numpy": no Python zero-division check inside the loops, which would stop
# them being vectorised (span is never 0 here: render_cpu makes it 1 first).
_OPTIONS = dict(nogil=True, cache=True, boundscheck=False, error_model="numpy")

# A team call's frame: int64 words, the first four the team's own, then the kernel's
# arguments (addresses of contiguous arrays and their sizes), as the launchers below pack
# them and the team_* callbacks unpack them.
NEXT_ROW, NEXT_SLOT, ROWS, CHUNK = 0, 1, 2, 3
ARGS = 4


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


@njit("void(float32[:, ::1], int64, int64, float32[::1], float32[::1], float32[::1])",
      **_OPTIONS)
def minmax_hwc(a, y0, y1, mn, mx, bad):
    """Fold rows ``y0``..``y1`` of ``a`` (H, W * c) into the running minimum ``mn`` and
    maximum ``mx`` of each column (NaN never wins a comparison, so it is skipped), and
    ``bad``, which turns NaN in a column that held a NaN or an infinity (v - v is NaN just
    there). Four rows at a time, so the running values are read and written a quarter as
    often; all of it vectorises."""
    n = a.shape[1]
    y = y0
    while y + 4 <= y1:
        r0, r1, r2, r3 = a[y], a[y + 1], a[y + 2], a[y + 3]
        for j in range(n):
            v0, v1, v2, v3 = r0[j], r1[j], r2[j], r3[j]
            lo01 = v0 if v0 < v1 else v1
            lo23 = v2 if v2 < v3 else v3
            hi01 = v0 if v0 > v1 else v1
            hi23 = v2 if v2 > v3 else v3
            lo = lo01 if lo01 < lo23 else lo23
            hi = hi01 if hi01 > hi23 else hi23
            m, big = mn[j], mx[j]
            mn[j] = lo if lo < m else m
            mx[j] = hi if hi > big else big
            bad[j] = bad[j] + (((v0 - v0) + (v1 - v1)) + ((v2 - v2) + (v3 - v3)))
        y += 4
    for yy in range(y, y1):
        r0 = a[yy]
        for j in range(n):
            v0 = r0[j]
            m, big = mn[j], mx[j]
            mn[j] = v0 if v0 < m else m
            mx[j] = v0 if v0 > big else big
            bad[j] = bad[j] + (v0 - v0)


@njit(inline="always", **_OPTIONS)
def _gutters(mosaic, top, left, k, h, w, y, value):
    """Fill the gutters beside row ``y`` of tile ``k`` with ``value``: right of it up to the
    next tile or the mosaic's edge (the first tile of a row of tiles starts at the left
    edge); and after its last row, the gutter rows below its row of tiles if it is the last
    of them. Tiles are in row-major order (render.grid_layout), so each gutter byte is
    written once, by the thread that writes the tile row beside or above it."""
    c = top.shape[0]
    row = top[k] + y
    last = k == c - 1 or top[k + 1] != top[k]
    mosaic[row, left[k] + w : mosaic.shape[1] if last else left[k + 1]] = value
    if last and y == h - 1:
        mosaic[top[k] + h : mosaic.shape[0] if k == c - 1 else top[k + 1], :] = value


@njit(
    "void(float32[:, ::1], float32[::1], float32[::1], int64[::1], int64[::1], uint8[:, ::1],"
    " uint8, int64, int64)",
    **_OPTIONS,
)
def quantize_hwc(a, lo, span, top, left, mosaic, pad_value, y0, y1):
    """Rows ``y0``..``y1`` of channels-last data ``a`` (H, W * c), c = len(lo), -> each
    channel's tile of ``mosaic``, whose top-left corners are (``top``, ``left``)
    (render.grid_layout), and the gutters beside (and below) those rows, ``pad_value``.

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
    for y in range(y0, y1):
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
            _gutters(mosaic, top, left, k, h, w, y, pad_value)


@njit(
    "void(float32[:, ::1], int64, float32[::1], float32[::1], int64[::1], int64[::1],"
    " uint8[:, ::1], uint8, int64, int64)",
    **_OPTIONS,
)
def quantize_chw(a, h, lo, span, top, left, mosaic, pad_value, r0, r1):
    """Rows ``r0``..``r1`` of contiguous data ``a`` (c * H, W), H = ``h`` (row r is row
    r % H of channel r // H), -> each channel's tile of ``mosaic``, as above."""
    w = a.shape[1]
    s255 = np.float32(255.0)
    half = np.float32(0.5)
    for r in range(r0, r1):
        k, y = r // h, r % h
        lo_k, span_k = lo[k], span[k]
        row = a[r]
        tile = mosaic[top[k] + y, left[k] : left[k] + w]
        for x in range(w):
            tile[x] = np.uint8(((row[x] - lo_k) / span_k) * s255 + half)
        _gutters(mosaic, top, left, k, h, w, y, pad_value)


@njit(inline="always", **_OPTIONS)
def _start_slot(own):
    """A thread's (3, W * c) running values before its first row: min +inf, max -inf, bad 0."""
    own[0, :] = np.inf
    own[1, :] = -np.inf
    own[2, :] = 0.0


@njit("Tuple((float32[::1], float32[::1], boolean))(float32[:, :, ::1], int64)", **_OPTIONS)
def fold_minmax(acc, c):
    """The (c,) min and max of team_minmax_hwc's slots ``acc`` (slots, 3, W * c), and
    whether every value was finite."""
    n = acc.shape[2]
    lo = np.full(c, np.inf, np.float32)
    hi = np.full(c, -np.inf, np.float32)
    finite = True
    for s in range(acc.shape[0]):
        for j in range(n):
            k = j % c
            v, u = acc[s, 0, j], acc[s, 1, j]
            lo[k] = v if v < lo[k] else lo[k]
            hi[k] = u if u > hi[k] else hi[k]
            finite = finite and acc[s, 2, j] == 0
    # -0.0 and 0.0 compare equal, so which one a zero extreme is depends on the order the
    # threads took the rows in; + 0.0 makes it 0.0 either way
    for k in range(c):
        lo[k] += np.float32(0.0)
        hi[k] += np.float32(0.0)
    return lo, hi, finite


@njit("Tuple((float64[:, ::1], float32[::1], boolean))(float32[::1], float32[::1])",
      **_OPTIONS)
def level_spans(lo, hi):
    """render_cpu.level_spans as a loop (numba compiles its array form slowly); the tests
    hold the two equal."""
    c = lo.shape[0]
    levels = np.empty((c, 2), np.float64)
    span = np.empty(c, np.float32)
    finite = True
    for k in range(c):
        s = hi[k] - lo[k]
        finite = finite and np.isfinite(s)
        span[k] = np.float32(1.0) if s == 0 else s
        levels[k, 0], levels[k, 1] = lo[k], hi[k]
    return levels, span, finite


# ---- team entry points: C callbacks, one call per thread of an OpenMP team


@intrinsic
def _address(typingctx, value):
    """An int64 address as a pointer (the frame holds arrays by address)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))
    return types.voidptr(types.int64), codegen


@intrinsic
def _fetch_add(typingctx, words, index, step):
    """Atomically add ``step`` to ``words[index]``; the value before."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        word = builder.gep(array.data, [args[1]])
        return builder.atomic_rmw("add", word, args[2], "seq_cst")
    return types.int64(words, types.intp, types.int64), codegen


@njit(inline="always", **_OPTIONS)
def _claim(frame):
    """The next chunk of rows (start, stop) for this thread; start >= stop once none left."""
    rows, chunk = frame[ROWS], frame[CHUNK]
    start = _fetch_add(frame, NEXT_ROW, chunk)
    return start, min(start + chunk, rows)


_TEAM = dict(nopython=True, **_OPTIONS)


@cfunc(types.void(types.voidptr), **_TEAM)
def team_minmax_hwc(frame_address):
    """minmax_hwc over all rows. Frame arguments: a, H, W * c, then ``acc`` (slots, 3, W * c)
    float32 and its number of slots: each thread takes the next slot and leaves its running
    min, max and bad there."""
    frame = carray(frame_address, ARGS + 5, np.int64)
    h, n = frame[ARGS + 1], frame[ARGS + 2]
    a = carray(_address(frame[ARGS]), (h, n), np.float32)
    acc = carray(_address(frame[ARGS + 3]), (frame[ARGS + 4], 3, n), np.float32)
    own = acc[_fetch_add(frame, NEXT_SLOT, 1)]
    _start_slot(own)
    start, stop = _claim(frame)
    while start < stop:
        minmax_hwc(a, start, stop, own[0], own[1], own[2])
        start, stop = _claim(frame)


@cfunc(types.void(types.voidptr), **_TEAM)
def team_quantize(frame_address):
    """quantize_hwc (layout 0) or quantize_chw (layout 1) over all rows of ``a``. Frame
    arguments: layout, a and its two sizes, the tile height, c, then lo, span, top and left
    (c values each), the mosaic, its two sizes and the pad value."""
    frame = carray(frame_address, ARGS + 14, np.int64)
    layout, h, c = frame[ARGS], frame[ARGS + 4], frame[ARGS + 5]
    a = carray(_address(frame[ARGS + 1]), (frame[ARGS + 2], frame[ARGS + 3]), np.float32)
    lo = carray(_address(frame[ARGS + 6]), (c,), np.float32)
    span = carray(_address(frame[ARGS + 7]), (c,), np.float32)
    top = carray(_address(frame[ARGS + 8]), (c,), np.int64)
    left = carray(_address(frame[ARGS + 9]), (c,), np.int64)
    mosaic = carray(_address(frame[ARGS + 10]), (frame[ARGS + 11], frame[ARGS + 12]),
                    np.uint8)
    pad_value = np.uint8(frame[ARGS + 13])
    start, stop = _claim(frame)
    while start < stop:
        if layout == 0:
            quantize_hwc(a, lo, span, top, left, mosaic, pad_value, start, stop)
        else:
            quantize_chw(a, h, lo, span, top, left, mosaic, pad_value, start, stop)
        start, stop = _claim(frame)


# ---- launchers: pack a frame and start the team (called from Python, the GIL released)


@intrinsic
def _parallel(typingctx, parallel, entry, frame, threads):
    """Call GOMP_parallel(entry, frame's data, threads, 0), the function at address
    ``parallel``: ``entry`` on ``threads`` threads of the calling thread's OpenMP team. The
    frame itself is the argument, so numba keeps it alive until the team is done (taking
    its address first would let numba free it before the call)."""
    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn_type = ir.FunctionType(ir.VoidType(), [ptr, ptr, i32, i32])
        callee = builder.inttoptr(args[0], fn_type.as_pointer())
        data = context.make_array(signature.args[2])(context, builder, args[2]).data
        builder.call(callee, [builder.inttoptr(args[1], ptr), builder.bitcast(data, ptr),
                              builder.trunc(args[3], i32), ir.Constant(i32, 0)])
        return context.get_dummy_value()
    return types.void(types.int64, types.int64, frame, types.int64), codegen


@njit(**_OPTIONS)
def _frame(rows, threads, size):
    """A frame of ``size`` words with the team's own four filled in: a few chunks of rows a
    thread, so that a thread that starts late still takes a share."""
    frame = np.zeros(size, np.int64)
    frame[ROWS] = rows
    frame[CHUNK] = max(1, -(-rows // (4 * threads)))
    return frame


@njit("Tuple((float32[::1], float32[::1], boolean))(int64, int64, float32[:, ::1], int64,"
      " int64)", **_OPTIONS)
def minmax_team(parallel, entry, a, c, threads):
    """Each channel's (min, max) of channels-last ``a`` (H, W * c) and whether every value
    is finite, by ``entry`` (team_minmax_hwc's address) on ``threads`` threads through
    ``parallel`` (GOMP_parallel's address); on the calling thread alone for 1."""
    h, n = a.shape
    acc = np.empty((threads, 3, n), np.float32)
    if threads == 1:
        _start_slot(acc[0])
        minmax_hwc(a, 0, h, acc[0, 0], acc[0, 1], acc[0, 2])
        return fold_minmax(acc, c)
    frame = _frame(h, threads, ARGS + 5)
    frame[ARGS], frame[ARGS + 1], frame[ARGS + 2] = a.ctypes.data, h, n
    frame[ARGS + 3], frame[ARGS + 4] = acc.ctypes.data, threads
    _parallel(parallel, entry, frame, threads)
    return fold_minmax(acc[: frame[NEXT_SLOT]], c)  # a slot per thread that came


@njit("void(int64, int64, int64, float32[:, ::1], int64, float32[::1], float32[::1],"
      " int64[::1], int64[::1], uint8[:, ::1], int64, int64)", **_OPTIONS)
def mosaic(parallel, entry, layout, a, h, lo, span, top, left, out, pad_value, threads):
    """The mosaic ``out`` of ``a``: channels-last (H, W * c) for layout 0, contiguous
    (c * H, W) for layout 1, H = ``h``; by ``entry`` (team_quantize's address) on
    ``threads`` threads as minmax_team does."""
    rows = a.shape[0]
    if threads == 1:
        if layout == 0:
            quantize_hwc(a, lo, span, top, left, out, np.uint8(pad_value), 0, rows)
        else:
            quantize_chw(a, h, lo, span, top, left, out, np.uint8(pad_value), 0, rows)
        return
    frame = _frame(rows, threads, ARGS + 14)
    frame[ARGS], frame[ARGS + 1] = layout, a.ctypes.data
    frame[ARGS + 2], frame[ARGS + 3], frame[ARGS + 4] = a.shape[0], a.shape[1], h
    frame[ARGS + 5] = lo.shape[0]
    frame[ARGS + 6], frame[ARGS + 7] = lo.ctypes.data, span.ctypes.data
    frame[ARGS + 8], frame[ARGS + 9] = top.ctypes.data, left.ctypes.data
    frame[ARGS + 10], frame[ARGS + 11], frame[ARGS + 12] = (out.ctypes.data, out.shape[0],
                                                           out.shape[1])
    frame[ARGS + 13] = pad_value
    _parallel(parallel, entry, frame, threads)

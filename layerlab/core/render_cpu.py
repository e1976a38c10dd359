"""The renderer's number work: the display levels of each normalisation, and the fast CPU
path of ``render.render_stage`` (pixels, then histograms and statistics) with its reused
scratch buffers. Once ``compile_kernels`` has compiled them, float32 pixels come from the
kernels in ``render_jit`` instead, byte for byte the same. ``render`` is the public face;
nothing here draws.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
import torch

from .tensor_stats import (
    bin_edges,
    bin_tolerance,
    finite_minmax,
    histogram_rows,
    stage_stats,
)

NORMALIZE_MODES = ("channel", "stage", "fixed", "symmetric")


def check_mode(mode: str) -> None:
    if mode not in NORMALIZE_MODES:
        raise ValueError(
            f"unknown normalisation {mode!r}; choose one of {', '.join(NORMALIZE_MODES)}"
        )


def levels_t(
    x: torch.Tensor, mode: str, ch_lo=None, ch_hi=None
) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[0]
    check_mode(mode)
    if mode == "fixed":
        return x.new_zeros(c), x.new_ones(c)
    if ch_lo is None:
        ch_lo, ch_hi, _ = finite_minmax(x.reshape(c, -1))
    if mode == "channel":
        return ch_lo, ch_hi
    if mode == "stage":
        return ch_lo.min().expand(c), ch_hi.max().expand(c)
    m = torch.maximum(ch_lo.abs().max(), ch_hi.abs().max())
    m = torch.where(m > 0, m, 1.0)
    return (-m).expand(c), m.expand(c)


# ---- the CPU path
#
# The data is handled as one contiguous 2-D matrix in memory order, so nothing is transposed
# in float: either "rows" (contiguous (C, H, W): channel c is row c) or "cols" (channels_last:
# memory is (H, W, C), viewed as (H*W/g, g*C) so rows are long; column j is channel j % C).
# Float arithmetic runs in torch, casts and comparisons in numpy (both far faster there on
# CPU), and the arithmetic is the same step by step as in _render_any, so are the results.
# Large temporaries are per-thread scratch buffers reused between calls: fresh multi-megabyte
# allocations cost a page fault per 4 KiB page every time.

_COLS_MIN_WIDTH = 64  # narrower channels_last matrices reduce slowly: copy to rows instead
_SCRATCH = threading.local()
_SCRATCH_LIMIT = 16 << 20  # bytes; larger temporaries are allocated and freed each time


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor that this thread reuses; never part of a result."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _SCRATCH_LIMIT:
        return torch.empty(shape, dtype=dtype)
    bufs = _SCRATCH.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.numel() < nbytes:
        buf = bufs[name] = torch.empty(max(nbytes, 64), dtype=torch.uint8)
    return buf[:nbytes].view(dtype).view(shape)


class Matrix:
    def __init__(self, x: torch.Tensor):
        c, h, w = x.shape
        n = h * w
        self.c, self.n = c, n
        hwc = x.permute(1, 2, 0)
        self.rows, self.g = True, 1
        if x.is_contiguous():
            self.t = x.reshape(c, n)
        elif hwc.is_contiguous() and c >= 2:
            g = 1
            while g * c < 256 and n % (2 * g) == 0:
                g *= 2
            if g * c >= _COLS_MIN_WIDTH:
                self.rows, self.g = False, g
                self.t = hwc.reshape(n // g, g * c)
        if self.rows and not x.is_contiguous():
            self.t = _scratch("copy", (c, h, w), x.dtype).copy_(x).view(c, n)
        self.a = self.t.numpy()

    def per_channel(self, v: torch.Tensor) -> torch.Tensor:
        """(C,) values broadcast against the matrix."""
        return v[:, None] if self.rows else v.repeat(self.g)

    def per_channel_np(self, v: np.ndarray) -> torch.Tensor:
        """(C,) numpy values broadcast against the matrix, as a tensor."""
        return torch.from_numpy(np.ascontiguousarray(v[:, None] if self.rows
                                                     else np.tile(v, self.g)))

    def reduce(self, m: torch.Tensor, op: str, **kw) -> torch.Tensor:
        """Per-channel amin/amax/sum of a matrix laid out like this one."""
        if self.rows:
            return getattr(m, op)(dim=1, **kw)
        return getattr(getattr(m, op)(dim=0, **kw).reshape(self.g, self.c), op)(dim=0)

    def u8_chw(self, y: np.ndarray) -> np.ndarray:
        """Values in [0, 256) laid out like the matrix -> new (C, n) uint8, truncated."""
        if self.rows:
            return y.astype(np.uint8)
        u8 = _scratch("u8", y.shape, torch.uint8).numpy()
        np.copyto(u8, y, casting="unsafe")
        return np.ascontiguousarray(u8.reshape(self.n, self.c).T)


def pixels_cpu(x: torch.Tensor, mode: str, grid: tuple) -> tuple | None:
    """render_stage's levels and uint8 pictures for finite float data on the CPU, with what
    stats_cpu goes on from: (matrix or None, channel min, channel max, levels, channels,
    mosaic); None where _render_any must. ``grid`` = (shape, tile tops, tile lefts, pad
    value) of the mosaic. The compiled kernels make only the mosaic (channels
    None: they are cut from it when asked for); the torch path only the channels (mosaic
    None, for make_grid)."""
    c, h, w = x.shape
    if x.numel() == 0:
        return None
    compiled = _jit is not None and x.dtype == torch.float32 and mode != "fixed"
    hwc = _channels_last_rows(x) if compiled else None
    mat = None
    if hwc is not None:  # the kernels reduce channels-last data where it lies
        found = _minmax_compiled(hwc, c)
        if found is None:
            return None  # NaN or inf
        lo_a, hi_a = found
        ch_lo, ch_hi = torch.from_numpy(lo_a), torch.from_numpy(hi_a)
    else:
        mat = Matrix(x)
        ch_lo, ch_hi = mat.reduce(mat.t, "amin"), mat.reduce(mat.t, "amax")
        # The per-channel numbers are a handful: numpy does them without torch's per-call
        # cost, in the same float arithmetic.
        lo_a, hi_a = ch_lo.numpy(), ch_hi.numpy()
        if not (np.isfinite(lo_a).all() and np.isfinite(hi_a).all()):
            return None  # NaN and inf propagate through amin/amax
    if mode != "channel":
        lo, hi = levels_t(x, mode, ch_lo, ch_hi)
        lo_a, hi_a = np.ascontiguousarray(lo.numpy()), np.ascontiguousarray(hi.numpy())
    if mode == "fixed":
        lv = level_spans(lo_a, hi_a)[0]
        work = _scratch("work", tuple(mat.t.shape), mat.t.dtype)
        torch.clamp(mat.t, 0.0, 1.0, out=work).mul_(255)
    else:
        if compiled:
            lv, span, finite = _jit.level_spans(lo_a, hi_a)
        else:
            with np.errstate(over="ignore"):  # an overflow is caught just below
                lv, span, finite = level_spans(lo_a, hi_a)
        if not finite:
            return None  # needs float64
        if compiled:
            assert hwc is not None or mat.rows  # _channels_last_rows takes what Matrix would not
            data = hwc if hwc is not None else mat.a.reshape(c, h, w)
            return mat, ch_lo, ch_hi, lv, None, _quantize_compiled(data, lo_a, span, grid)
        work = _scratch("work", tuple(mat.t.shape), mat.t.dtype)
        # x >= lo, so the result lies in [0.5, 255.5): the cast truncates, i.e. floors.
        torch.sub(mat.t, mat.per_channel_np(lo_a), out=work).div_(mat.per_channel_np(span))
        work.mul_(255).add_(0.5)
    u8 = mat.u8_chw(work.numpy()).reshape(c, h, w)
    return mat, ch_lo, ch_hi, lv, u8, None


def level_spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(levels (C, 2) float64, the spans the pixels divide by, whether every span is
    finite) of finite levels: a span of 0 (a constant channel) counts as 1, so it maps to 0.
    (render_jit.level_spans is the same in a loop.)"""
    span = hi - lo
    finite = bool(np.isfinite(span).all())
    span = np.where(span == 0, np.ones_like(span), span)
    levels = np.empty((lo.shape[0], 2), np.float64)
    levels[:, 0] = lo
    levels[:, 1] = hi
    return levels, span, finite


# ---- the compiled kernels (render_jit), once a background thread has compiled them

_jit = None  # the render_jit module once it compiled
_jit_thread: threading.Thread | None = None
_jit_lock = threading.Lock()


def compile_kernels(wait: bool = False) -> bool:
    """Start compiling the pixel kernels in a background thread (once per process); True
    once pixels_cpu uses them. Until then, and for good where numba fails, it uses torch."""
    global _jit_thread
    with _jit_lock:
        if _jit_thread is None and os.environ.get("LAYERLAB_COMPILED", "1") == "0":
            return False  # the person asked for the torch path only
        if _jit_thread is None:
            _jit_thread = threading.Thread(target=_load_jit, name="layerlab-compile",
                                           daemon=True)
            _jit_thread.start()
    if wait:
        _jit_thread.join()
    return _jit is not None


def finish_compiling(timeout: float) -> None:
    """Wait up to ``timeout`` s for a compile under way (before the process exits: a thread
    stopped inside LLVM at interpreter exit can crash it)."""
    thread = _jit_thread
    if thread is not None:
        thread.join(timeout)


def _kernels_cached() -> bool:
    """Whether numba's cache seems to hold the kernels (index files where numba keeps them:
    next to the module, or under NUMBA_CACHE_DIR)."""
    pattern = "render_jit.mosaic-*.nbi"
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        return bool(glob.glob(os.path.join(cache_dir, "**", pattern), recursive=True))
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    return bool(glob.glob(os.path.join(here, pattern)))


def _compile_in_child() -> None:
    """Compile the kernels into numba's cache in a child process: compiling holds Python's
    lock for up to 0.2 s at a time, about 2 s in all over 10 s the first time, which would
    stall the window; loading them from the cache afterwards stalls it once (about 0.1 s)."""
    if getattr(sys, "frozen", False):
        return  # no Python to start: compile here
    try:
        subprocess.run([sys.executable, "-c", "import layerlab.core.render_jit"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError):
        pass  # compiled (or refused) by the import that follows


def _load_jit() -> None:
    global _jit
    if not _kernels_cached():
        _compile_in_child()
    try:
        from . import render_jit
    except Exception as exc:  # numba missing or unable to compile here: torch does it all
        print(f"layerlab: compiled pixel kernels unavailable ({type(exc).__name__}: {exc});"
              " using torch", file=sys.stderr)
        return
    global _omp_parallel
    _omp_parallel = _find_omp_parallel()
    _jit = render_jit


# ---- torch's OpenMP thread team, lent to the kernels
#
# After each parallel op torch's idle OpenMP threads spin for a while, waiting for the next
# one; a thread of our own would have to take its turn on a core with them. Started through
# the same runtime, the kernels run on those very threads.

_omp_parallel = 0  # the address of GOMP_parallel(fn, data, threads, flags) in torch's runtime
_TEAM_MIN_VALUES = 1 << 16  # smaller stages are done at once on the calling thread


def _find_omp_parallel() -> int:
    """The address of GOMP_parallel in the OpenMP runtime torch runs on (GNU libgomp; LLVM's
    and Intel's runtimes provide the same entry point), or 0 where there is none to borrow."""
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    try:
        names = [n for n in sorted(os.listdir(lib_dir))
                 if n.startswith(("libgomp", "libomp", "libiomp"))]
    except OSError:
        names = []
    for name in [*names, None]:  # torch's own copy first, then whatever is loaded
        try:
            lib = ctypes.CDLL(os.path.join(lib_dir, name) if name else None)
            fn = lib.GOMP_parallel
        except (OSError, AttributeError, TypeError):
            continue
        return ctypes.cast(fn, ctypes.c_void_p).value or 0
    return 0


def _team_threads(values: int, rows: int) -> int:
    """How many threads a kernel over ``values`` values in ``rows`` rows is shared by:
    torch's CPU threads (the window sets them), one where the work is small."""
    if not _omp_parallel or values < _TEAM_MIN_VALUES:
        return 1
    return max(1, min(torch.get_num_threads(), rows))


def _channels_last_rows(x: torch.Tensor) -> np.ndarray | None:
    """Channels-last (C, H, W) data as its (H, W * C) float32 matrix in memory order."""
    c, h, w = x.shape
    if c < 2 or x.is_contiguous():
        return None
    hwc = x.numpy().transpose(1, 2, 0)
    return hwc.reshape(h, w * c) if hwc.flags.c_contiguous else None


def _minmax_compiled(a: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Each channel's (min, max) of channels-last data ``a`` (H, W * c) by the kernels;
    None where a value is NaN or infinite."""
    lo, hi, finite = _jit.minmax_team(_omp_parallel, _jit.team_minmax_hwc.address, a, c,
                                      _team_threads(a.size, a.shape[0]))
    return (lo, hi) if finite else None


def _quantize_compiled(a: np.ndarray, lo: np.ndarray, span: np.ndarray,
                       grid: tuple) -> np.ndarray:
    """The mosaic of ``a`` (channels-last (H, W * c), or contiguous (c, H, W)) by the
    kernels: each channel at its tile, the gutters the pad value."""
    shape, top, left, pad_value = grid
    mosaic = np.empty(shape, np.uint8)  # every byte is written: tiles and gutters
    if a.ndim == 2:
        layout, h = 0, a.shape[0]
    else:
        layout, h = 1, a.shape[1]
        a = a.reshape(-1, a.shape[2])
    _jit.mosaic(_omp_parallel, _jit.team_quantize.address, layout, a, h, lo, span, top, left,
                mosaic, pad_value, _team_threads(a.size, a.shape[0]))
    return mosaic


class StatsCancelled(Exception):
    """``stats_cpu``'s ``cancel`` said stop: the numbers are no longer wanted."""


def stats_cpu(x: torch.Tensor, mat: Matrix, ch_lo: torch.Tensor, ch_hi: torch.Tensor,
               bins: int, cancel: Callable[[], bool] | None = None) -> tuple:
    """render_stage's histograms and statistics after pixels_cpu: (edges, counts, stage
    stats row, channel stats rows). ``cancel`` is asked between the passes over the data;
    when it says True, StatsCancelled is raised (a newer edit does not wait for old numbers).
    """
    def checkpoint() -> None:
        if cancel is not None and cancel():
            raise StatsCancelled

    c = mat.c
    t, a = mat.t, mat.a
    work = _scratch("work", tuple(t.shape), t.dtype)

    # histograms with the stage's edges
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    lo_v, hi_v = float(ch_lo.min()), float(ch_hi.max())
    edges = bin_edges(lo_v, hi_v, bins, None, dtype)
    counts = _hist_cpu(mat, work, edges, checkpoint)
    if counts is None:
        counts = histogram_rows(mat.t if mat.rows else x.reshape(c, -1), edges, all_in=True)
        counts = counts.numpy()

    checkpoint()
    # statistics
    n = mat.n
    zeros_at = _scratch("bool", a.shape, torch.bool).numpy()
    np.equal(a, 0, out=zeros_at)
    if mat.rows:
        zeros = torch.tensor([np.count_nonzero(r) for r in zeros_at], dtype=torch.int64)
    else:
        # Column sums of the 0/1 bytes, 255 rows at a time so uint8 sums cannot overflow.
        ones = zeros_at.view(np.uint8)
        col = np.zeros(ones.shape[1], np.int64)
        for r in range(0, ones.shape[0], 255):
            col += np.add.reduce(ones[r : r + 255], axis=0, dtype=np.uint8)
        zeros = torch.from_numpy(col.reshape(mat.g, c).sum(axis=0))
    mean = mat.reduce(t, "sum").div_(n)
    checkpoint()
    if n > 1:
        torch.sub(t, mat.per_channel(mean), out=work).square_()
        checkpoint()
        std = mat.reduce(work, "sum").div_(n - 1).sqrt_()
    else:
        std = torch.zeros_like(mean)
    checkpoint()
    none = torch.zeros(c, dtype=torch.int64)
    parts = (ch_lo, ch_hi, mean, std, zeros, none, none)
    ch_rows = torch.stack([p.to(torch.float64) for p in parts])
    st = stage_stats(x, ch_lo, ch_hi, True, zeros=zeros.sum(), between=checkpoint)
    return edges, counts.astype(np.int64, copy=False), st.numpy(), ch_rows.numpy()


def _hist_cpu(mat: Matrix, work: torch.Tensor, edges: np.ndarray,
              checkpoint: Callable[[], None]) -> np.ndarray | None:
    """(C, bins) counts of finite data inside [edges[0], edges[-1]] (as histogram_rows)."""
    bins = len(edges) - 1
    if edges.dtype != mat.a.dtype:
        return None
    first, scale, tol = bin_tolerance(edges)
    if not scale < float(np.finfo(edges.dtype).max) / 2:
        return None  # a range of subnormal width: the scale itself overflows the data's type
    if tol >= 0.1:
        return None
    wa = work.numpy()
    # t = (x - first) * scale lies within tol of the position between the real edges. Values
    # within tol of the outer edges certainly lie in the end bins: clamped clear of them, only
    # values within tol of an inner edge k have frac(t + tol) < 2 tol (and k = trunc(t + tol));
    # every other value lies in bin trunc(t + tol). The near ones get an exact search.
    torch.sub(mat.t, first, out=work).mul_(scale)
    checkpoint()
    work.clamp_(tol, bins - 0.5 - tol).add_(tol)
    checkpoint()
    idx_t = _scratch("idx", tuple(work.shape), torch.int32)
    idx = idx_t.numpy()
    np.copyto(idx, wa, casting="unsafe")
    checkpoint()
    near = np.less(
        work.frac_().numpy(), 2 * tol, out=_scratch("bool", wa.shape, torch.bool).numpy()
    )
    checkpoint()
    # Count into a block of bins+1 slots per channel. channels_last data interleaves the
    # channels, and a few lanes of columns per channel keep consecutive values off the same
    # counter (bincount is bound by that dependency); rows just add their channel's offset.
    slots = bins + 1
    lanes = 1
    if mat.rows:
        if mat.c > 1:
            idx_t.add_(torch.arange(0, mat.c * slots, slots, dtype=torch.int32)[:, None])
    else:
        while lanes < 4 and mat.g % (2 * lanes) == 0:
            lanes *= 2
        idx_t.add_(torch.arange(mat.a.shape[1], dtype=torch.int32) % (mat.c * lanes) * slots)
    total = mat.c * lanes
    counts = torch.bincount(idx_t.view(-1), minlength=total * slots).numpy()
    checkpoint()
    pos = np.flatnonzero(near)
    if len(pos):
        xs = mat.a.reshape(-1)[pos]
        exact = np.searchsorted(edges, xs, side="right") - 1
        np.clip(exact, 0, bins - 1, out=exact)
        guess = idx.reshape(-1)[pos]  # slot * (bins + 1) + bin
        counts = counts - np.bincount(guess, minlength=total * slots)
        counts += np.bincount(guess - guess % slots + exact, minlength=total * slots)
    return counts.reshape(lanes, mat.c, slots).sum(axis=0)[:, :bins]

"""Receptive-field geometry: which input pixels one layer's output pixels were computed from.

Pure arithmetic on the layer arguments (no torch run). Each op's spec names one of the window
functions here (``OpSpec.receptive``); :mod:`layerlab.core.receptive` chains them over a
pipeline. A :class:`Window` is an inclusive pixel range; it may reach outside the image (into
the padding), which the window shows as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def pair(v: Any) -> tuple[int, int]:
    return (v[0], v[1]) if isinstance(v, list | tuple) else (v, v)


def pad4(v: Any) -> tuple[int, int, int, int]:
    return tuple(v) if isinstance(v, list | tuple) else (v, v, v, v)  # type: ignore[return-value]


@dataclass(frozen=True)
class Window:
    """Inclusive pixel ranges ``y0..y1`` x ``x0..x1``; may extend outside the image."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    def clipped(self, h: int, w: int) -> Window | None:
        """The part inside an ``h`` x ``w`` image, or None when it lies wholly outside."""
        y0, y1 = max(self.y0, 0), min(self.y1, h - 1)
        x0, x1 = max(self.x0, 0), min(self.x1, w - 1)
        if y0 > y1 or x0 > x1:
            return None
        return Window(y0, y1, x0, x1)

    def text(self) -> str:
        return f"x {self.x0}..{self.x1}, y {self.y0}..{self.y1} ({self.width} x {self.height})"


Hw = tuple[int, int]


# --- per-op window functions: (args, in_hw, out_hw, output window) -> input window -----------

def pointwise(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """Output pixel (c, y, x) reads only input pixel (y, x), possibly of every channel."""
    return win


def sliding(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """Convolution and pooling: kernel_size, stride (None: the kernel size), padding,
    dilation."""
    k = pair(args["kernel_size"])
    s = pair(args["stride"]) if args.get("stride") is not None else k
    d = pair(args.get("dilation", 1))
    padding = args.get("padding", 0)
    if padding == "valid":
        p = (0, 0)
    elif padding == "same":  # torch puts total // 2 before, the rest after
        p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d, strict=True))
    else:
        p = pair(padding)
    ys = (win.y0 * s[0] - p[0], win.y1 * s[0] - p[0] + d[0] * (k[0] - 1))
    xs = (win.x0 * s[1] - p[1], win.x1 * s[1] - p[1] + d[1] * (k[1] - 1))
    return Window(ys[0], ys[1], xs[0], xs[1])


def _adaptive_1d(a: int, b: int, n_in: int, n_out: int) -> tuple[int, int]:
    # ATen: start = floor(i * in / out), end = ceil((i + 1) * in / out) (exclusive)
    return (a * n_in) // n_out, -((-(b + 1) * n_in) // n_out) - 1


def adaptive(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    ys = _adaptive_1d(win.y0, win.y1, in_hw[0], out_hw[0])
    xs = _adaptive_1d(win.x0, win.x1, in_hw[1], out_hw[1])
    return Window(ys[0], ys[1], xs[0], xs[1])


def shifted(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """Zero/constant padding: the output is the input moved by the left/top padding (the
    border reads nothing: the window lies outside the image there)."""
    left, _right, top, _bottom = pad4(args["padding"])
    return Window(win.y0 - top, win.y1 - top, win.x0 - left, win.x1 - left)


def _folded_1d(a: int, b: int, n: int, fold) -> tuple[int, int]:
    """Bounds of ``fold(i)`` for i in a..b, where ``fold`` (mirror or clamp into 0..n-1) is
    monotone between the breakpoints 0 and n-1: the extremes are at the ends or there."""
    points = [a, b] + [c for c in (0, n - 1) if a <= c <= b]
    values = [fold(i) for i in points]
    return min(values), max(values)


def _mirror(n: int):
    return lambda i: -i if i < 0 else 2 * (n - 1) - i if i > n - 1 else i


def _clamp(n: int):
    return lambda i: min(max(i, 0), n - 1)


def reflected(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """ReflectionPad2d: border pixels mirror the input (edge not repeated)."""
    left, _right, top, _bottom = pad4(args["padding"])
    ys = _folded_1d(win.y0 - top, win.y1 - top, in_hw[0], _mirror(in_hw[0]))
    xs = _folded_1d(win.x0 - left, win.x1 - left, in_hw[1], _mirror(in_hw[1]))
    return Window(ys[0], ys[1], xs[0], xs[1])


def replicated(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """ReplicationPad2d: border pixels repeat the nearest edge pixel."""
    left, _right, top, _bottom = pad4(args["padding"])
    ys = _folded_1d(win.y0 - top, win.y1 - top, in_hw[0], _clamp(in_hw[0]))
    xs = _folded_1d(win.x0 - left, win.x1 - left, in_hw[1], _clamp(in_hw[1]))
    return Window(ys[0], ys[1], xs[0], xs[1])


def _upsample_1d(a: int, b: int, n_in: int, n_out: int, args: dict) -> tuple[int, int]:
    mode = args.get("mode", "nearest")
    factor = args.get("scale_factor") if args.get("size") is None else None
    align = bool(args.get("align_corners"))
    if align and mode in ("bilinear", "bicubic"):
        sc = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
        sc = 1.0 / factor if factor else n_in / n_out

    def clamp(i: int) -> int:
        return min(max(i, 0), n_in - 1)

    if mode == "nearest":
        return clamp(math.floor(a * sc)), clamp(math.floor(b * sc))
    if mode == "nearest-exact":
        return clamp(math.floor((a + 0.5) * sc)), clamp(math.floor((b + 0.5) * sc))

    def src(i: int) -> float:
        if align:
            return i * sc
        v = (i + 0.5) * sc - 0.5
        return max(v, 0.0) if mode == "bilinear" else v

    lo, hi = math.floor(src(a)), math.floor(src(b))
    if mode == "bilinear":
        return clamp(lo), clamp(hi + 1)
    return clamp(lo - 1), clamp(hi + 2)  # bicubic: four taps


def resampled(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """Upsample: the source pixels each output pixel interpolates from."""
    ys = _upsample_1d(win.y0, win.y1, in_hw[0], out_hw[0], args)
    xs = _upsample_1d(win.x0, win.x1, in_hw[1], out_hw[1], args)
    return Window(ys[0], ys[1], xs[0], xs[1])


# --- markers for ops without a local window --------------------------------------------------

GLOBAL = "global"  # every output value depends on the whole input (statistics, dense layers)
RESHAPE = "reshape"  # values move one to one into a vector (Flatten): no pixel window after it


# --- windows of the layers real CNNs use -------------------------------------------------------

def _transposed_1d(a: int, b: int, k: int, s: int, p: int, d: int) -> tuple[int, int]:
    # output o = i*s - p + d*j (j = 0..k-1): the inputs i with some tap on a..b
    lo = -((-(a + p - d * (k - 1))) // s)  # ceil
    hi = (b + p) // s
    return lo, hi


def transposed(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """ConvTranspose2d: every input pixel spreads its kernel over the output; an output pixel
    reads the inputs whose spread covers it (none, between taps of a large stride)."""
    k, s, p, d = (pair(args[n]) for n in ("kernel_size", "stride", "padding", "dilation"))
    ys = _transposed_1d(win.y0, win.y1, k[0], s[0], p[0], d[0])
    xs = _transposed_1d(win.x0, win.x1, k[1], s[1], p[1], d[1])
    if ys[0] > ys[1] or xs[0] > xs[1]:  # reads no pixel: an empty window outside the image
        return Window(-1, -1, -1, -1)
    return Window(ys[0], ys[1], xs[0], xs[1])


def pixel_shuffled(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """PixelShuffle: output pixel (y, x) comes from input pixel (y // r, x // r)."""
    r = args["upscale_factor"]
    return Window(win.y0 // r, win.y1 // r, win.x0 // r, win.x1 // r)


def pixel_unshuffled(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """PixelUnshuffle: output pixel (y, x) gathers the r x r input block at (y*r, x*r)."""
    r = args["downscale_factor"]
    return Window(win.y0 * r, win.y1 * r + r - 1, win.x0 * r, win.x1 * r + r - 1)


def softmaxed(args: dict, in_hw: Hw, out_hw: Hw, win: Window) -> Window:
    """Softmax/LogSoftmax on a C x H x W stage: over the channels a pixel reads only itself;
    over H (dim 2) its whole column, over W (dim 3) its whole row."""
    d = args["dim"] % 4
    if d == 2:
        return Window(0, in_hw[0] - 1, win.x0, win.x1)
    if d == 3:
        return Window(win.y0, win.y1, 0, in_hw[1] - 1)
    return win

"""Receptive fields: which input pixels an output pixel was computed from.

Pure geometry from the layer arguments (kernel_size, stride, padding, dilation, ...), no torch
run. A :class:`Window` is an inclusive pixel range in some stage's coordinates; it may reach
outside that stage's image (into the padding), which is shown as such. Windows compose: the
window of an output pixel in the input image is found by mapping it back layer by layer.

Ops whose output pixel depends on the whole image (instance/group/layer normalisation,
Flatten, Linear) have no local window: the functions return ``None`` for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .pipeline import Pipeline, StageShape
from .specs import pad4, pair

__all__ = ["GLOBAL_OPS", "LOCAL_IDENTITY_OPS", "Window", "is_local", "layer_window",
           "receptive_field"]

# Output pixel (c, y, x) depends only on input pixels at (y, x) (possibly all channels).
LOCAL_IDENTITY_OPS = frozenset({
    "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "Hardtanh",
    "Softmax2d", "BatchNorm2d", "LocalResponseNorm", "Dropout", "Dropout2d",
})
# Output pixels depend on statistics of the whole image (or it is a vector stage).
GLOBAL_OPS = frozenset({"InstanceNorm2d", "GroupNorm", "LayerNorm", "Flatten", "Linear"})


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


def _window_1d(a: int, b: int, k: int, s: int, p: int, d: int) -> tuple[int, int]:
    return a * s - p, b * s - p + d * (k - 1)


def _adaptive_1d(a: int, b: int, n_in: int, n_out: int) -> tuple[int, int]:
    # ATen: start = floor(i * in / out), end = ceil((i + 1) * in / out) (exclusive)
    return (a * n_in) // n_out, -((-(b + 1) * n_in) // n_out) - 1


def _upsample_1d(a: int, b: int, n_in: int, n_out: int, args: dict) -> tuple[int, int]:
    mode = args.get("mode", "nearest")
    factor = args.get("scale_factor") if args.get("size") is None else None
    align = bool(args.get("align_corners"))

    def scale() -> float:
        if align and mode in ("bilinear", "bicubic"):
            return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return 1.0 / factor if factor else n_in / n_out

    sc = scale()

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


def layer_window(layer_type: str, args: dict[str, Any], in_hw: tuple[int, int],
                 out_hw: tuple[int, int], window: Window) -> Window | None:
    """Map a window of a layer's output back to the layer's input coordinates.

    ``None`` when the op is not local (its outputs depend on the whole input).
    """
    if layer_type in LOCAL_IDENTITY_OPS:
        return window
    if layer_type in GLOBAL_OPS:
        return None
    (h, w), (oh, ow) = in_hw, out_hw
    y, x = (window.y0, window.y1), (window.x0, window.x1)
    if layer_type in ("Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d"):
        k = pair(args["kernel_size"])
        if layer_type == "Conv2d":
            s = pair(args["stride"])
        else:
            s = pair(args["stride"]) if args.get("stride") is not None else k
        d = pair(args.get("dilation", 1))
        padding = args.get("padding", 0)
        if padding == "valid":
            p = (0, 0)
        elif padding == "same":
            p = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d, strict=True))
        else:
            p = pair(padding)
        ys = _window_1d(*y, k[0], s[0], p[0], d[0])
        xs = _window_1d(*x, k[1], s[1], p[1], d[1])
        return Window(ys[0], ys[1], xs[0], xs[1])
    if layer_type in ("AdaptiveAvgPool2d", "AdaptiveMaxPool2d"):
        ys = _adaptive_1d(*y, h, oh)
        xs = _adaptive_1d(*x, w, ow)
        return Window(ys[0], ys[1], xs[0], xs[1])
    if layer_type in ("ZeroPad2d", "ConstantPad2d", "ReflectionPad2d", "ReplicationPad2d"):
        left, _right, top, _bottom = pad4(args["padding"])
        return Window(y[0] - top, y[1] - top, x[0] - left, x[1] - left)
    if layer_type == "Upsample":
        ys = _upsample_1d(*y, h, oh, args)
        xs = _upsample_1d(*x, w, ow, args)
        return Window(ys[0], ys[1], xs[0], xs[1])
    return None


def receptive_field(pipeline: Pipeline, image_hw: tuple[int, int], stage: int, y: int, x: int,
                    *, to_stage: int = 0,
                    shapes: list[StageShape] | None = None) -> Window | None:
    """Window of stage ``to_stage``'s pixels that output pixel (y, x) of ``stage`` came from.

    Stages count as in the engine: 0 is the (resized) input, ``k`` the k-th enabled layer.
    ``image_hw`` is the loaded image's (H, W) (before the pipeline's own resize). Returns
    ``None`` when a layer on the way is not local or a stage is not spatial. Windows of
    intermediate stages are clipped to those stages' images (padding depends on nothing), the
    result is not: a box reaching into ``to_stage``'s padding shows as such. ``shapes`` may
    pass ``pipeline.infer_shapes(image_hw)`` when it is already known (hover, every move).
    """
    if not 0 <= to_stage <= stage:
        raise ValueError(f"to_stage {to_stage} must be between 0 and {stage}")
    if shapes is None:
        shapes = pipeline.infer_shapes(image_hw)
    if stage >= len(shapes):
        raise ValueError(f"stage {stage} does not exist ({len(shapes)} stages)")
    layers = [layer for _, layer in pipeline.enabled_layers()]
    window = Window(y, y, x, x)
    for st in range(stage, to_stage, -1):
        info = shapes[st]
        if len(info.shape) != 3 or len(info.in_shape) != 3:
            return None
        if st < stage:
            # Pixels outside an intermediate stage are padding (they depend on nothing):
            # clip, so a dropped last row/column (floor in the size formula) is not counted.
            inside = window.clipped(*info.shape[1:])
            window = inside or window
        layer = layers[st - 1]
        window = layer_window(layer.type, dict(layer.args), tuple(info.in_shape[1:]),
                              tuple(info.shape[1:]), window)
        if window is None:
            return None
    return window


def is_local(pipeline: Pipeline, stage: int) -> bool:
    """Whether every layer up to ``stage`` maps output pixels to a local input window."""
    layers = [layer for _, layer in pipeline.enabled_layers()][:stage]
    return all(layer.type not in GLOBAL_OPS for layer in layers)

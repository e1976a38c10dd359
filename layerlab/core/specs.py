"""One declarative spec per supported op.

The GUI forms, the JSON validation, shape inference and module construction are all driven by
these specs. A type name becomes a module only through ``OPS`` (the allow-list).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Shape = tuple[int, ...]  # a stage's shape without the batch dimension: (C, H, W) or (N,)


class SpecError(ValueError):
    """An argument or shape problem in one layer; ``field`` names the offending argument."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# --- parameter kinds -------------------------------------------------------------------------
# int        one integer
# float      one number
# bool       true/false
# choice     one of ``choices`` (strings)
# pair       an int or [int, int] (kernel_size, stride, dilation)
# opt_pair   like pair, or null (pool stride: null means "= kernel_size")
# padding    pair, or "same"/"valid" when ``choices`` allows them (Conv2d)
# pad4       an int or [left, right, top, bottom] (padding layers)
# opt_int    an int or null
# opt_float  a number or null
# opt_bool   true/false or null
# ints       a list of ints (LayerNorm's normalized_shape)
KINDS = ("int", "float", "bool", "choice", "pair", "opt_pair", "padding", "pad4", "opt_int",
         "opt_float", "opt_bool", "ints")


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    # Filled from the incoming shape when a layer is added (e.g. in_channels = C).
    from_input: str | None = None
    # When omitted while this other argument is given (not null), the value is null instead
    # of the default (Upsample: a size without a scale_factor, as torch reads it).
    null_if_given: str | None = None

    def check(self, value: Any) -> Any:
        """Return the value in canonical JSON form (lists, not tuples) or raise SpecError."""
        k = self.kind
        if k.startswith("opt_") and value is None:
            return None
        if k in ("int", "opt_int"):
            return self._number(value, integer=True)
        if k in ("float", "opt_float"):
            return self._number(value, integer=False)
        if k in ("bool", "opt_bool"):
            if not isinstance(value, bool):
                raise SpecError(f"{self.name} must be true or false, not {value!r}", self.name)
            return value
        if k == "choice":
            if value not in self.choices:
                opts = ", ".join(repr(c) for c in self.choices)
                raise SpecError(f"{self.name} must be one of {opts}, not {value!r}", self.name)
            return value
        if k == "padding" and isinstance(value, str):
            if value not in self.choices:
                raise SpecError(f"{self.name} must be a number, a pair, or one of "
                                f"{', '.join(repr(c) for c in self.choices)}; got {value!r}",
                                self.name)
            return value
        if k in ("pair", "opt_pair", "padding"):
            return self._tuple(value, 2, "an integer or a pair [height, width]")
        if k == "pad4":
            return self._tuple(value, 4, "an integer or [left, right, top, bottom]")
        if k == "ints":
            if not isinstance(value, list | tuple) or not value:
                raise SpecError(f"{self.name} must be a non-empty list of integers", self.name)
            return [self._number(v, integer=True) for v in value]
        raise AssertionError(f"unknown kind {k}")

    def _number(self, value: Any, *, integer: bool) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            what = "an integer" if integer else "a number"
            raise SpecError(f"{self.name} must be {what}, not {value!r}", self.name)
        if integer:
            if isinstance(value, float):
                if not value.is_integer():
                    raise SpecError(f"{self.name} must be an integer, not {value!r}", self.name)
                value = int(value)
        else:
            try:
                value = float(value)
            except OverflowError:  # an integer beyond any float: out of every range
                raise SpecError(f"{self.name} must be a number from {_fmt(self.minimum)} to "
                                f"{_fmt(self.maximum)}, not an integer of "
                                f"{len(str(abs(value)))} digits", self.name) from None
            if not math.isfinite(value):
                raise SpecError(f"{self.name} must be a finite number, not {value!r}", self.name)
        if self.minimum is not None and value < self.minimum:
            raise SpecError(f"{self.name} must be at least {_fmt(self.minimum)}, not "
                            f"{_shown(value)}", self.name)
        if self.maximum is not None and value > self.maximum:
            raise SpecError(f"{self.name} must be at most {_fmt(self.maximum)}, not "
                            f"{_shown(value)}", self.name)
        return value

    def _tuple(self, value: Any, n: int, what: str) -> int | list[int]:
        if isinstance(value, list | tuple):
            if len(value) != n:
                raise SpecError(f"{self.name} must be {what}, not {list(value)!r}", self.name)
            return [self._number(v, integer=True) for v in value]
        return self._number(value, integer=True)


def _shown(value: int | float) -> str:
    """A number for a message: very long integers by their digit count."""
    text = str(value)
    if isinstance(value, int) and len(text) > 24:
        return f"an integer of {len(text.lstrip('-'))} digits"
    return text


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def pair(v: Any) -> tuple[int, int]:
    return (v[0], v[1]) if isinstance(v, list | tuple) else (v, v)


def pad4(v: Any) -> tuple[int, int, int, int]:
    return tuple(v) if isinstance(v, list | tuple) else (v, v, v, v)  # type: ignore[return-value]


@dataclass(frozen=True)
class ShapeInfo:
    """Output shape plus the formula with the user's numbers, for display."""

    shape: Shape
    formula: str = ""


@dataclass(frozen=True)
class OpSpec:
    type: str
    category: str
    help: str
    params: tuple[Param, ...]
    infer: Callable[[Shape, dict], ShapeInfo]
    # Extra constraints between arguments (raise SpecError).
    check: Callable[[dict], None] | None = None
    spatial: bool = True  # needs a (C, H, W) input
    # Dropout: identity in eval mode, shown as such.
    eval_identity: bool = False
    learnable: tuple[str, ...] = field(default=())

    @property
    def module_class(self) -> type[nn.Module]:
        return getattr(nn, self.type)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self, in_shape: Shape | None = None) -> dict:
        """Default arguments; those marked ``from_input`` follow the incoming shape."""
        args = {p.name: p.default for p in self.params}
        if in_shape is not None:
            for p in self.params:
                if p.from_input == "channels" and len(in_shape) == 3:
                    args[p.name] = in_shape[0]
                elif p.from_input == "features" and in_shape:
                    args[p.name] = in_shape[-1]
                elif p.from_input == "chw" and len(in_shape) == 3:
                    args[p.name] = list(in_shape)
        return args

    def normalize_args(self, args: Mapping[str, Any]) -> dict:
        """Validate and complete ``args``: unknown names, types, ranges, cross-constraints."""
        if not isinstance(args, Mapping):
            raise SpecError("args must be an object of argument names and values", "args")
        known = {p.name for p in self.params}
        for name in args:
            if name not in known:
                hint = ", ".join(sorted(known)) or "none"
                raise SpecError(f"unknown argument {name!r} for {self.type} "
                                f"(accepted: {hint})", name)
        out = {}
        for p in self.params:
            if p.name in args:
                out[p.name] = p.check(args[p.name])
            elif p.null_if_given is not None and args.get(p.null_if_given) is not None:
                out[p.name] = None
            elif p.default is _REQUIRED:
                raise SpecError(f"{p.name} is required for {self.type}", p.name)
            else:
                out[p.name] = p.default
        if self.check is not None:
            self.check(out)
        return out

    def infer_shape(self, in_shape: Shape, args: dict) -> ShapeInfo:
        if self.spatial and len(in_shape) != 3:
            raise SpecError(f"{self.type} needs a C x H x W input (it comes after a "
                            f"Flatten/Linear)", None)
        info = self.infer(in_shape, args)
        for d in info.shape:
            if d <= 0:
                raise SpecError(f"output would be {_shape_text(info.shape)}: "
                                "the input is too small", None)
        return info

    def build(self, args: dict) -> nn.Module:
        """Construct the torch module (default-initialised, eval mode)."""
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
        return self.module_class(**kwargs).eval()

    def parameter_shapes(self, args: dict) -> dict[str, tuple[int, ...]]:
        """Shapes of the module's parameters and buffers, without allocating them."""
        try:
            with torch.device("meta"):
                module = self.build(args)
        except (RuntimeError, OverflowError, ValueError) as e:  # sizes torch cannot represent
            raise SpecError(f"{self.type} cannot be built with these arguments: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            "args") from None
        return {k: tuple(v.shape) for k, v in module.state_dict().items()
                if v.is_floating_point()}


_REQUIRED = object()


def _channels(n: int) -> str:
    return "1 channel" if n == 1 else f"{n} channels"


def _shape_text(shape: Shape) -> str:
    return " x ".join(str(d) for d in shape) if shape else "a scalar"


# --- shape formulas --------------------------------------------------------------------------

def _conv_dim(n: int, k: int, s: int, p: int, d: int, axis: str) -> tuple[int, str]:
    span = d * (k - 1) + 1
    if n + 2 * p < span:
        raise SpecError(f"kernel {k} with dilation {d} spans {span} pixels, larger than the "
                        f"input's {axis} {n} after padding ({n + 2 * p})", "kernel_size")
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    text = (f"{axis}_out = floor(({n} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {out}")
    return out, text


def _pool_dim(n: int, k: int, s: int, p: int, d: int, ceil: bool, axis: str) -> tuple[int, str]:
    # Mirrors ATen's pooling_output_shape: floor division (div_rtn), and with ceil_mode the
    # last window is kept when it starts inside the image or the left padding, even if the
    # kernel overhangs the far edge; it is dropped when it would start in the right padding.
    num = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    out = num // s + 1
    dropped = ceil and (out - 1) * s >= n + p
    if dropped:
        out -= 1
    if out < 1:
        raise SpecError(f"kernel {k}" + (f" with dilation {d}" if d != 1 else "") +
                        f" is larger than the input's {axis} {n} after padding ({n + 2 * p})",
                        "kernel_size")
    fn = "ceil" if ceil else "floor"
    text = f"{axis}_out = {fn}(({n} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {out}"
    if dropped:
        text += " (last window dropped: it would start in the padding)"
    return out, text


def _infer_conv(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    if c != a["in_channels"]:
        raise SpecError(f"in_channels is {a['in_channels']} but the input has "
                        f"{_channels(c)}", "in_channels")
    k, s, d = pair(a["kernel_size"]), pair(a["stride"]), pair(a["dilation"])
    _check_padding_mode(h, w, k, d, a)
    if a["padding"] == "same":
        hw = []
        texts = []
        for n, kk, dd, axis in ((h, k[0], d[0], "H"), (w, k[1], d[1], "W")):
            hw.append(n)
            texts.append(f"{axis}_out = {axis} = {n} (padding 'same': {dd}*({kk}-1) = "
                         f"{dd * (kk - 1)} pixels of padding in total)")
        return ShapeInfo((a["out_channels"], hw[0], hw[1]), "\n".join(texts))
    p = (0, 0) if a["padding"] == "valid" else pair(a["padding"])
    oh, th = _conv_dim(h, k[0], s[0], p[0], d[0], "H")
    ow, tw = _conv_dim(w, k[1], s[1], p[1], d[1], "W")
    return ShapeInfo((a["out_channels"], oh, ow), th + "\n" + tw)


def _check_padding_mode(h: int, w: int, k: tuple[int, int], d: tuple[int, int],
                        a: dict) -> None:
    """Reflect/circular padding is done by F.pad, which limits it by the input size."""
    mode = a["padding_mode"]
    if mode not in ("reflect", "circular"):
        return
    if a["padding"] == "same":
        # torch splits d*(k-1) as total//2 before, the rest after
        totals = (d[0] * (k[0] - 1), d[1] * (k[1] - 1))
        sides = ((totals[0] - totals[0] // 2, h), (totals[1] - totals[1] // 2, w))
        what = "padding 'same' needs"
    else:
        p = (0, 0) if a["padding"] == "valid" else pair(a["padding"])
        sides = ((p[0], h), (p[1], w))
        what = "padding"
    for pad, n in sides:
        if mode == "reflect" and pad >= n:
            raise SpecError(f"{what} {pad} with padding_mode 'reflect' must be smaller than "
                            f"the input size {h} x {w}", "padding")
        if mode == "circular" and pad > n:
            raise SpecError(f"{what} {pad} with padding_mode 'circular' cannot exceed the "
                            f"input size {h} x {w}", "padding")


def _check_conv(a: dict) -> None:
    g = a["groups"]
    if a["in_channels"] % g:
        raise SpecError(f"in_channels ({a['in_channels']}) must be divisible by groups ({g})",
                        "groups")
    if a["out_channels"] % g:
        raise SpecError(f"out_channels ({a['out_channels']}) must be divisible by groups ({g})",
                        "groups")
    if a["padding"] == "same" and pair(a["stride"]) != (1, 1):
        raise SpecError("padding 'same' needs stride 1", "padding")


def _pool_common(shape: Shape, a: dict, *, dilation: bool, avg: bool) -> ShapeInfo:
    c, h, w = shape
    k = pair(a["kernel_size"])
    s = pair(a["stride"]) if a.get("stride") is not None else k
    p = pair(a.get("padding", 0))
    d = pair(a["dilation"]) if dilation else (1, 1)
    oh, th = _pool_dim(h, k[0], s[0], p[0], d[0], a.get("ceil_mode", False), "H")
    ow, tw = _pool_dim(w, k[1], s[1], p[1], d[1], a.get("ceil_mode", False), "W")
    return ShapeInfo((c, oh, ow), th + "\n" + tw)


def _check_pool_padding(a: dict) -> None:
    k, p = pair(a["kernel_size"]), pair(a.get("padding", 0))
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise SpecError(f"padding {a['padding']} must be at most half the kernel size "
                        f"{a['kernel_size']}", "padding")


def _infer_adaptive(shape: Shape, a: dict) -> ShapeInfo:
    oh, ow = pair(a["output_size"])
    return ShapeInfo((shape[0], oh, ow), f"output size fixed at {oh} x {ow} "
                     f"(windows adapt to the {shape[1]} x {shape[2]} input)")


def _infer_pad(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    left, right, top, bottom = pad4(a["padding"])
    oh, ow = h + top + bottom, w + left + right
    return ShapeInfo((c, oh, ow), f"H_out = {h} + {top} + {bottom} = {oh}\n"
                     f"W_out = {w} + {left} + {right} = {ow}")


def _infer_reflection_pad(shape: Shape, a: dict) -> ShapeInfo:
    _, h, w = shape
    left, right, top, bottom = pad4(a["padding"])
    if max(left, right) >= w or max(top, bottom) >= h:
        raise SpecError(f"reflection padding {list(pad4(a['padding']))} must be smaller than "
                        f"the input size {h} x {w} on each side", "padding")
    return _infer_pad(shape, a)


def _same(shape: Shape, a: dict) -> ShapeInfo:
    return ShapeInfo(tuple(shape), "shape unchanged")


def _needs_channels(field_name: str) -> Callable[[Shape, dict], ShapeInfo]:
    def infer(shape: Shape, a: dict) -> ShapeInfo:
        if shape[0] != a[field_name]:
            raise SpecError(f"{field_name} is {a[field_name]} but the input has "
                            f"{_channels(shape[0])}", field_name)
        return ShapeInfo(tuple(shape), "shape unchanged")
    return infer


def _infer_batchnorm(shape: Shape, a: dict) -> ShapeInfo:
    info = _needs_channels("num_features")(shape, a)
    if not a["track_running_stats"] and shape[1] * shape[2] == 1:
        raise SpecError("without running statistics BatchNorm2d normalises by this image's "
                        "statistics and needs more than one value per channel",
                        "track_running_stats")
    return info


def _infer_instancenorm(shape: Shape, a: dict) -> ShapeInfo:
    info = _needs_channels("num_features")(shape, a)
    if not a["track_running_stats"] and shape[1] * shape[2] == 1:
        raise SpecError("InstanceNorm2d normalises each channel by its own statistics and needs "
                        "more than one pixel", "track_running_stats")
    return info


def _infer_groupnorm(shape: Shape, a: dict) -> ShapeInfo:
    info = _needs_channels("num_channels")(shape, a)
    if shape[0] // a["num_groups"] * shape[1] * shape[2] == 1:
        raise SpecError("each group has a single value (one channel per group on a 1 x 1 "
                        "input), so it cannot be normalised", "num_groups")
    return info


def _check_groupnorm(a: dict) -> None:
    if a["num_channels"] % a["num_groups"]:
        raise SpecError(f"num_channels ({a['num_channels']}) must be divisible by num_groups "
                        f"({a['num_groups']})", "num_groups")


def _infer_layernorm(shape: Shape, a: dict) -> ShapeInfo:
    ns = tuple(a["normalized_shape"])
    if len(ns) > len(shape) or tuple(shape[len(shape) - len(ns):]) != ns:
        raise SpecError(f"normalized_shape {list(ns)} must match the last dimensions of the "
                        f"input", "normalized_shape")
    return ShapeInfo(tuple(shape), "shape unchanged")


LAYERNORM_MAX_VALUES = 1 << 32


def _check_layernorm(a: dict) -> None:
    # Each dimension is range-checked on its own; their product sizes the weight and bias.
    n = math.prod(a["normalized_shape"])
    if n > LAYERNORM_MAX_VALUES:
        raise SpecError(f"normalized_shape {a['normalized_shape']} covers {n:,} values, more "
                        f"than the {LAYERNORM_MAX_VALUES:,} a LayerNorm may normalise over",
                        "normalized_shape")


def _check_hardtanh(a: dict) -> None:
    if a["max_val"] <= a["min_val"]:
        raise SpecError(f"max_val ({a['max_val']}) must be greater than min_val "
                        f"({a['min_val']})", "max_val")


def _check_upsample(a: dict) -> None:
    if (a["size"] is None) == (a["scale_factor"] is None):
        raise SpecError("give exactly one of size and scale_factor", "scale_factor")
    if a["align_corners"] is not None and a["mode"] not in ("bilinear", "bicubic"):
        raise SpecError("align_corners only applies to the bilinear and bicubic modes",
                        "align_corners")


def _infer_upsample(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    if a["size"] is not None:
        oh, ow = pair(a["size"])
        return ShapeInfo((c, oh, ow), f"output size fixed at {oh} x {ow}")
    f = a["scale_factor"]
    oh, ow = math.floor(h * f), math.floor(w * f)
    return ShapeInfo((c, oh, ow), f"H_out = floor({h} * {f}) = {oh}\n"
                     f"W_out = floor({w} * {f}) = {ow}")


def _infer_flatten(shape: Shape, a: dict) -> ShapeInfo:
    full = (1, *shape)
    nd = len(full)
    start, end = a["start_dim"], a["end_dim"]
    s = start if start >= 0 else start + nd
    e = end if end >= 0 else end + nd
    if not (0 <= s < nd and 0 <= e < nd):
        raise SpecError(f"start_dim {start} / end_dim {end} out of range for a "
                        f"{nd}-dimensional batch", "start_dim")
    if s > e:
        raise SpecError(f"start_dim ({start}) must not come after end_dim ({end})", "start_dim")
    if s == 0:
        raise SpecError("start_dim 0 would merge the batch dimension; use 1", "start_dim")
    merged = math.prod(full[s:e + 1])
    out = full[:s] + (merged,) + full[e + 1:]
    factors = " * ".join(str(d) for d in full[s:e + 1])
    return ShapeInfo(tuple(out[1:]), f"{factors} = {merged}")


def _infer_linear(shape: Shape, a: dict) -> ShapeInfo:
    if shape[-1] != a["in_features"]:
        raise SpecError(f"in_features is {a['in_features']} but the input's last dimension is "
                        f"{shape[-1]}", "in_features")
    out = (*shape[:-1], a["out_features"])
    return ShapeInfo(tuple(out), f"y = x A^T + b: {a['in_features']} -> {a['out_features']}")


def _infer_softmax2d(shape: Shape, a: dict) -> ShapeInfo:
    return ShapeInfo(tuple(shape), "softmax over the channels at every pixel; shape unchanged")


# --- the specs -------------------------------------------------------------------------------

def P(name, kind, default, help, minimum=None, maximum=None, choices=(), from_input=None,
      null_if_given=None):
    return Param(name, kind, default, help, minimum, maximum, tuple(choices), from_input,
                 null_if_given)


_K = P("kernel_size", "pair", 2, "Window size: one number or [height, width].", 1, 256)
_POOL_STRIDE = P("stride", "opt_pair", None, "Step between windows; empty means the kernel "
                 "size.", 1, 256)
_POOL_PAD = P("padding", "pair", 0, "Implicit padding on every side (at most half the "
              "kernel).", 0, 128)
_CEIL = P("ceil_mode", "bool", False, "Round the output size up instead of down, keeping a "
          "partial window at the edge.")
_EPS = P("eps", "float", 1e-5, "Added to the variance for numerical stability.", 1e-12, 1.0)
_MOM = P("momentum", "float", 0.1, "Running-stat momentum (training only; no effect here).",
         0.0, 1.0)
_AFFINE = P("affine", "bool", True, "Learnable per-channel scale (weight) and shift (bias).")
_PAD4 = P("padding", "pad4", 1, "Pixels to add: one number or [left, right, top, bottom].",
          0, 1024)

_ops: list[OpSpec] = [
    OpSpec("Conv2d", "convolution",
           "2-D convolution: each output channel sums kernels slid over all input channels.",
           (P("in_channels", "int", 1, "Channels of the input (1 gray, 3 RGB).", 1, 4096,
              from_input="channels"),
            P("out_channels", "int", 1, "Number of kernels, i.e. output feature maps.", 1,
              100000),
            P("kernel_size", "pair", 3, "Kernel size: one number or [height, width].", 1, 64),
            P("stride", "pair", 1, "Step of the kernel in pixels.", 1, 64),
            P("padding", "padding", 0, "Padding on each side: a number, a pair, 'same' or "
              "'valid'.", 0, 256, choices=("same", "valid")),
            P("dilation", "pair", 1, "Spacing between kernel taps (atrous convolution).", 1, 64),
            P("groups", "int", 1, "Split channels into groups (groups = in_channels is "
              "depthwise).", 1, 4096),
            P("bias", "bool", True, "Add a learnable bias per output channel."),
            P("padding_mode", "choice", "zeros", "How the padding is filled.",
              choices=("zeros", "reflect", "replicate", "circular"))),
           _infer_conv, _check_conv, learnable=("weight", "bias")),
    OpSpec("MaxPool2d", "pooling", "Maximum over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD,
            P("dilation", "pair", 1, "Spacing between window taps.", 1, 64), _CEIL),
           lambda s, a: _pool_common(s, a, dilation=True, avg=False), _check_pool_padding),
    OpSpec("AvgPool2d", "pooling", "Average over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD, _CEIL,
            P("count_include_pad", "bool", True, "Count padded zeros in the average."),
            P("divisor_override", "opt_int", None, "Divide by this instead of the window "
              "size.", 1, 65536)),
           lambda s, a: _pool_common(s, a, dilation=False, avg=True), _check_pool_padding),
    OpSpec("AdaptiveAvgPool2d", "pooling", "Average pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), _infer_adaptive),
    OpSpec("AdaptiveMaxPool2d", "pooling", "Max pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), _infer_adaptive),
    OpSpec("LPPool2d", "pooling", "Power-average pooling: (sum x^p)^(1/p) over each window.",
           (P("norm_type", "float", 2.0, "The power p (1 = sum pooling, large = max).", 0.1,
              100.0), _K, _POOL_STRIDE, _CEIL),
           lambda s, a: _pool_common(s, a, dilation=False, avg=True)),
    OpSpec("ZeroPad2d", "padding", "Pad with zeros.", (_PAD4,), _infer_pad),
    OpSpec("ReflectionPad2d", "padding", "Pad by mirroring the border (edge not repeated).",
           (_PAD4,), _infer_reflection_pad),
    OpSpec("ReplicationPad2d", "padding", "Pad by repeating the edge pixels.", (_PAD4,),
           _infer_pad),
    OpSpec("ConstantPad2d", "padding", "Pad with a constant value.",
           (_PAD4, P("value", "float", 0.0, "The fill value.", -1e6, 1e6)), _infer_pad),
    OpSpec("ReLU", "activation", "max(0, x).", (), _same, spatial=False),
    OpSpec("LeakyReLU", "activation", "x if x > 0 else slope * x.",
           (P("negative_slope", "float", 0.01, "Slope for negative inputs.", -10.0, 10.0),),
           _same, spatial=False),
    OpSpec("ELU", "activation", "x if x > 0 else alpha * (exp(x) - 1).",
           (P("alpha", "float", 1.0, "Saturation value for negative inputs.", 0.0, 100.0),),
           _same, spatial=False),
    OpSpec("GELU", "activation", "x * Phi(x), the Gaussian error linear unit.",
           (P("approximate", "choice", "none", "Exact erf form or the tanh approximation.",
              choices=("none", "tanh")),), _same, spatial=False),
    OpSpec("SiLU", "activation", "x * sigmoid(x) (swish).", (), _same, spatial=False),
    OpSpec("Sigmoid", "activation", "1 / (1 + exp(-x)), squashes to (0, 1).", (), _same,
           spatial=False),
    OpSpec("Tanh", "activation", "tanh(x), squashes to (-1, 1).", (), _same, spatial=False),
    OpSpec("Softplus", "activation", "log(1 + exp(beta x)) / beta, a smooth ReLU.",
           (P("beta", "float", 1.0, "Sharpness.", 0.01, 100.0),
            P("threshold", "float", 20.0, "Above beta*x > threshold the layer is linear.", 0.0,
              1000.0)), _same, spatial=False),
    OpSpec("Hardtanh", "activation", "Clamp to [min_val, max_val].",
           (P("min_val", "float", -1.0, "Lower clamp.", -1e6, 1e6),
            P("max_val", "float", 1.0, "Upper clamp.", -1e6, 1e6)), _same, _check_hardtanh,
           spatial=False),
    OpSpec("Softmax2d", "activation", "Softmax over the channels at each pixel.", (),
           _infer_softmax2d),
    OpSpec("BatchNorm2d", "normalization",
           "Per-channel (x - running_mean) / sqrt(running_var + eps) * weight + bias "
           "(evaluation mode: running statistics).",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM, _AFFINE,
            P("track_running_stats", "bool", True, "Use running statistics (mean 0, var 1 "
              "unless given); off: normalise by this image's statistics.")),
           _infer_batchnorm,
           learnable=("weight", "bias", "running_mean", "running_var")),
    OpSpec("InstanceNorm2d", "normalization",
           "Normalise each channel of the image by its own mean and variance.",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM,
            P("affine", "bool", False, "Learnable per-channel scale and shift."),
            P("track_running_stats", "bool", False, "Use running statistics instead.")),
           _infer_instancenorm,
           learnable=("weight", "bias", "running_mean", "running_var")),
    OpSpec("GroupNorm", "normalization", "Normalise over groups of channels.",
           (P("num_groups", "int", 1, "Number of channel groups.", 1, 100000),
            P("num_channels", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _AFFINE),
           _infer_groupnorm, _check_groupnorm, learnable=("weight", "bias")),
    OpSpec("LayerNorm", "normalization", "Normalise over the last dimensions.",
           (P("normalized_shape", "ints", [1], "The trailing dimensions to normalise over, "
              "e.g. [C, H, W].", 1, 1 << 24, from_input="chw"), _EPS,
            P("elementwise_affine", "bool", True, "Learnable elementwise scale and shift."),
            P("bias", "bool", True, "Learnable shift (with elementwise_affine).")),
           _infer_layernorm, _check_layernorm, spatial=False, learnable=("weight", "bias")),
    OpSpec("LocalResponseNorm", "normalization",
           "Divide each value by a power of the summed squares of neighbouring channels.",
           (P("size", "int", 5, "Neighbouring channels used.", 1, 4096),
            P("alpha", "float", 1e-4, "Multiplicative factor.", 0.0, 100.0),
            P("beta", "float", 0.75, "Exponent.", 0.0, 100.0),
            P("k", "float", 1.0, "Additive factor.", 0.0, 100.0)), _same),
    OpSpec("Dropout", "other", "Random zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), _same, spatial=False, eval_identity=True),
    OpSpec("Dropout2d", "other", "Random channel zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), _same, eval_identity=True),
    OpSpec("Upsample", "other", "Resize by a factor or to a size.",
           (P("size", "opt_pair", None, "Output size [height, width]; or use scale_factor.",
              1, 16384),
            P("scale_factor", "opt_float", 2.0, "Resize factor.", 0.01, 64.0,
              null_if_given="size"),
            P("mode", "choice", "nearest", "Interpolation.",
              choices=("nearest", "nearest-exact", "bilinear", "bicubic")),
            P("align_corners", "opt_bool", None, "Align corner pixels (bilinear/bicubic).")),
           _infer_upsample, _check_upsample),
    OpSpec("Flatten", "other", "Merge dimensions into one vector (C x H x W -> C*H*W).",
           (P("start_dim", "int", 1, "First dimension merged (1 = channels).", -4, 3),
            P("end_dim", "int", -1, "Last dimension merged (-1 = the last).", -4, 3)),
           _infer_flatten, spatial=False),
    OpSpec("Linear", "other", "Fully connected: y = x A^T + b on the last dimension.",
           (P("in_features", "int", 1, "Size of the input's last dimension.", 1, 1 << 24,
              from_input="features"),
            P("out_features", "int", 10, "Output size.", 1, 1 << 20),
            P("bias", "bool", True, "Add a learnable bias.")),
           _infer_linear, spatial=False, learnable=("weight", "bias")),
]

OPS: dict[str, OpSpec] = {op.type: op for op in _ops}

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("convolution", "Convolution"), ("pooling", "Pooling"), ("padding", "Padding"),
    ("activation", "Activation"), ("normalization", "Normalisation"), ("other", "Other"))


def ops_in(category: str) -> list[OpSpec]:
    return [op for op in _ops if op.category == category]


def get_op(type_name: Any) -> OpSpec:
    """The allow-list lookup: the only way a type name becomes a module class."""
    if not isinstance(type_name, str) or type_name not in OPS:
        names = ", ".join(OPS)
        raise SpecError(f"unknown layer type {type_name!r} (supported: {names})", "type")
    return OPS[type_name]

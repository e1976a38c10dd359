"""Output-shape formulas of the supported ops, with the user's numbers for display.

Each op's spec (:mod:`layerlab.core.specs`) names its formula here; a formula raises
:class:`SpecError` naming the argument at fault when the input does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .windows import pad4, pair

Shape = tuple[int, ...]  # a stage's shape without the batch dimension: (C, H, W) or (N,)


class SpecError(ValueError):
    """An argument or shape problem in one layer; ``field`` names the offending argument."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ShapeInfo:
    """Output shape plus the formula with the user's numbers, for display."""

    shape: Shape
    formula: str = ""


def shape_text(shape: Shape | None, sep: str = " x ") -> str:
    """``3 x 32 x 32``; "a scalar" for (); "—" when unknown (None). The window passes " × "."""
    if shape is None:
        return "—"
    return sep.join(str(int(d)) for d in shape) if len(shape) else "a scalar"


def _channels(n: int) -> str:
    return "1 channel" if n == 1 else f"{n} channels"


# --- formulas ---------------------------------------------------------------------------------

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


def infer_conv(shape: Shape, a: dict) -> ShapeInfo:
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


def check_conv(a: dict) -> None:
    g = a["groups"]
    if a["in_channels"] % g:
        raise SpecError(f"in_channels ({a['in_channels']}) must be divisible by groups ({g})",
                        "groups")
    if a["out_channels"] % g:
        raise SpecError(f"out_channels ({a['out_channels']}) must be divisible by groups ({g})",
                        "groups")
    if a["padding"] == "same" and pair(a["stride"]) != (1, 1):
        raise SpecError("padding 'same' needs stride 1", "padding")


def pool_common(shape: Shape, a: dict, *, dilation: bool, avg: bool) -> ShapeInfo:
    c, h, w = shape
    k = pair(a["kernel_size"])
    s = pair(a["stride"]) if a.get("stride") is not None else k
    p = pair(a.get("padding", 0))
    d = pair(a["dilation"]) if dilation else (1, 1)
    oh, th = _pool_dim(h, k[0], s[0], p[0], d[0], a.get("ceil_mode", False), "H")
    ow, tw = _pool_dim(w, k[1], s[1], p[1], d[1], a.get("ceil_mode", False), "W")
    return ShapeInfo((c, oh, ow), th + "\n" + tw)


def check_pool_padding(a: dict) -> None:
    k, p = pair(a["kernel_size"]), pair(a.get("padding", 0))
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise SpecError(f"padding {a['padding']} must be at most half the kernel size "
                        f"{a['kernel_size']}", "padding")


def infer_adaptive(shape: Shape, a: dict) -> ShapeInfo:
    oh, ow = pair(a["output_size"])
    return ShapeInfo((shape[0], oh, ow), f"output size fixed at {oh} x {ow} "
                     f"(windows adapt to the {shape[1]} x {shape[2]} input)")


def infer_pad(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    left, right, top, bottom = pad4(a["padding"])
    oh, ow = h + top + bottom, w + left + right
    return ShapeInfo((c, oh, ow), f"H_out = {h} + {top} + {bottom} = {oh}\n"
                     f"W_out = {w} + {left} + {right} = {ow}")


def infer_reflection_pad(shape: Shape, a: dict) -> ShapeInfo:
    _, h, w = shape
    left, right, top, bottom = pad4(a["padding"])
    if max(left, right) >= w or max(top, bottom) >= h:
        raise SpecError(f"reflection padding {list(pad4(a['padding']))} must be smaller than "
                        f"the input size {h} x {w} on each side", "padding")
    return infer_pad(shape, a)


def same(shape: Shape, a: dict) -> ShapeInfo:
    return ShapeInfo(tuple(shape), "shape unchanged")


def needs_channels(field_name: str) -> Callable[[Shape, dict], ShapeInfo]:
    def infer(shape: Shape, a: dict) -> ShapeInfo:
        if shape[0] != a[field_name]:
            raise SpecError(f"{field_name} is {a[field_name]} but the input has "
                            f"{_channels(shape[0])}", field_name)
        return ShapeInfo(tuple(shape), "shape unchanged")
    return infer


def infer_batchnorm(shape: Shape, a: dict) -> ShapeInfo:
    info = needs_channels("num_features")(shape, a)
    if not a["track_running_stats"] and shape[1] * shape[2] == 1:
        raise SpecError("without running statistics BatchNorm2d normalises by this image's "
                        "statistics and needs more than one value per channel",
                        "track_running_stats")
    return info


def infer_instancenorm(shape: Shape, a: dict) -> ShapeInfo:
    info = needs_channels("num_features")(shape, a)
    if not a["track_running_stats"] and shape[1] * shape[2] == 1:
        raise SpecError("InstanceNorm2d normalises each channel by its own statistics and needs "
                        "more than one pixel", "track_running_stats")
    return info


def infer_groupnorm(shape: Shape, a: dict) -> ShapeInfo:
    info = needs_channels("num_channels")(shape, a)
    if shape[0] // a["num_groups"] * shape[1] * shape[2] == 1:
        raise SpecError("each group has a single value (one channel per group on a 1 x 1 "
                        "input), so it cannot be normalised", "num_groups")
    return info


def check_groupnorm(a: dict) -> None:
    if a["num_channels"] % a["num_groups"]:
        raise SpecError(f"num_channels ({a['num_channels']}) must be divisible by num_groups "
                        f"({a['num_groups']})", "num_groups")


def infer_layernorm(shape: Shape, a: dict) -> ShapeInfo:
    ns = tuple(a["normalized_shape"])
    if len(ns) > len(shape) or tuple(shape[len(shape) - len(ns):]) != ns:
        raise SpecError(f"normalized_shape {list(ns)} must match the last dimensions of the "
                        f"input", "normalized_shape")
    return ShapeInfo(tuple(shape), "shape unchanged")


LAYERNORM_MAX_VALUES = 1 << 32


def check_layernorm(a: dict) -> None:
    # Each dimension is range-checked on its own; their product sizes the weight and bias.
    n = math.prod(a["normalized_shape"])
    if n > LAYERNORM_MAX_VALUES:
        raise SpecError(f"normalized_shape {a['normalized_shape']} covers {n:,} values, more "
                        f"than the {LAYERNORM_MAX_VALUES:,} a LayerNorm may normalise over",
                        "normalized_shape")


def check_hardtanh(a: dict) -> None:
    if a["max_val"] <= a["min_val"]:
        raise SpecError(f"max_val ({a['max_val']}) must be greater than min_val "
                        f"({a['min_val']})", "max_val")


def check_upsample(a: dict) -> None:
    if (a["size"] is None) == (a["scale_factor"] is None):
        raise SpecError("give exactly one of size and scale_factor", "scale_factor")
    if a["align_corners"] is not None and a["mode"] not in ("bilinear", "bicubic"):
        raise SpecError("align_corners only applies to the bilinear and bicubic modes",
                        "align_corners")


def infer_upsample(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    if a["size"] is not None:
        oh, ow = pair(a["size"])
        return ShapeInfo((c, oh, ow), f"output size fixed at {oh} x {ow}")
    f = a["scale_factor"]
    oh, ow = math.floor(h * f), math.floor(w * f)
    return ShapeInfo((c, oh, ow), f"H_out = floor({h} * {f}) = {oh}\n"
                     f"W_out = floor({w} * {f}) = {ow}")


def infer_flatten(shape: Shape, a: dict) -> ShapeInfo:
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


def infer_linear(shape: Shape, a: dict) -> ShapeInfo:
    if shape[-1] != a["in_features"]:
        raise SpecError(f"in_features is {a['in_features']} but the input's last dimension is "
                        f"{shape[-1]}", "in_features")
    out = (*shape[:-1], a["out_features"])
    return ShapeInfo(tuple(out), f"y = x A^T + b: {a['in_features']} -> {a['out_features']}")


def infer_softmax2d(shape: Shape, a: dict) -> ShapeInfo:
    return ShapeInfo(tuple(shape), "softmax over the channels at every pixel; shape unchanged")


# --- the layers real CNNs use ------------------------------------------------------------------

def _transposed_dim(n: int, k: int, s: int, p: int, op: int, d: int, axis: str
                    ) -> tuple[int, str]:
    out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    text = (f"{axis}_out = ({n} - 1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {out}")
    if out < 1:
        raise SpecError(f"output would be {out} pixels high/wide: padding {p} removes more "
                        f"than the transposed convolution adds ({text})", "padding")
    return out, text


def infer_conv_transpose(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    if c != a["in_channels"]:
        raise SpecError(f"in_channels is {a['in_channels']} but the input has "
                        f"{_channels(c)}", "in_channels")
    k, s, p = pair(a["kernel_size"]), pair(a["stride"]), pair(a["padding"])
    op, d = pair(a["output_padding"]), pair(a["dilation"])
    oh, th = _transposed_dim(h, k[0], s[0], p[0], op[0], d[0], "H")
    ow, tw = _transposed_dim(w, k[1], s[1], p[1], op[1], d[1], "W")
    return ShapeInfo((a["out_channels"], oh, ow), th + "\n" + tw)


def check_conv_transpose(a: dict) -> None:
    g = a["groups"]
    for name in ("in_channels", "out_channels"):
        if a[name] % g:
            raise SpecError(f"{name} ({a[name]}) must be divisible by groups ({g})", "groups")
    s, d, op = pair(a["stride"]), pair(a["dilation"]), pair(a["output_padding"])
    for o, ss, dd in zip(op, s, d, strict=True):
        if o >= ss and o >= dd:
            raise SpecError(f"output_padding {a['output_padding']} must be smaller than the "
                            f"stride {a['stride']} or the dilation {a['dilation']}",
                            "output_padding")


def infer_pixel_shuffle(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    r = a["upscale_factor"]
    if c % (r * r):
        raise SpecError(f"the input's {_channels(c)} must be divisible by upscale_factor^2 = "
                        f"{r * r}", "upscale_factor")
    out = (c // (r * r), h * r, w * r)
    return ShapeInfo(out, f"C_out = {c} / {r}^2 = {out[0]}; H_out = {h} * {r} = {out[1]}; "
                     f"W_out = {w} * {r} = {out[2]}")


def infer_pixel_unshuffle(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    r = a["downscale_factor"]
    if h % r or w % r:
        raise SpecError(f"the input's size {h} x {w} must be divisible by downscale_factor "
                        f"{r}", "downscale_factor")
    out = (c * r * r, h // r, w // r)
    return ShapeInfo(out, f"C_out = {c} * {r}^2 = {out[0]}; H_out = {h} / {r} = {out[1]}; "
                     f"W_out = {w} / {r} = {out[2]}")


def infer_channel_shuffle(shape: Shape, a: dict) -> ShapeInfo:
    g = a["groups"]
    if shape[0] % g:
        raise SpecError(f"the input's {_channels(shape[0])} must be divisible by groups ({g})",
                        "groups")
    return ShapeInfo(tuple(shape), f"{g} groups of {shape[0] // g} channels interleaved; "
                     "shape unchanged")


def infer_unfold(shape: Shape, a: dict) -> ShapeInfo:
    c, h, w = shape
    k, s, p, d = (pair(a[n]) for n in ("kernel_size", "stride", "padding", "dilation"))
    oh, th = _conv_dim(h, k[0], s[0], p[0], d[0], "H")
    ow, tw = _conv_dim(w, k[1], s[1], p[1], d[1], "W")
    rows = c * k[0] * k[1]
    return ShapeInfo((rows, oh * ow), f"{th}\n{tw}\nrows = C*kh*kw = {c}*{k[0]}*{k[1]} = "
                     f"{rows}; columns L = {oh}*{ow} = {oh * ow} (one per window)")


def _resolved_dim(shape: Shape, dim: int) -> int:
    nd = len(shape) + 1  # with the batch
    if not -nd <= dim < nd:
        raise SpecError(f"dim {dim} is out of range for a {nd}-dimensional batch "
                        f"(from {-nd} to {nd - 1})", "dim")
    return dim % nd


def infer_softmax(shape: Shape, a: dict) -> ShapeInfo:
    d = _resolved_dim(shape, a["dim"])
    where = ({1: "the channels at every pixel", 2: "each column", 3: "each row"}
             if len(shape) == 3 else {}).get(d, f"dimension {d}")
    if d == 0:
        raise SpecError("dim 0 is the batch, which holds a single image: the result would "
                        "be constant; use 1 for the channels", "dim")
    return ShapeInfo(tuple(shape), f"normalised over {where}; shape unchanged")


def infer_prelu(shape: Shape, a: dict) -> ShapeInfo:
    n = a["num_parameters"]
    if n != 1 and n != shape[0]:
        raise SpecError(f"num_parameters is {n}: it must be 1 (one slope) or the input's "
                        f"{_channels(shape[0])} (one slope per channel)", "num_parameters")
    return ShapeInfo(tuple(shape), "shape unchanged")


# --- the shapes of a layer's tensors (its floating-point state_dict, in torch's order) -------
# Known without building the module, so that the window needs no torch before its first paint;
# tests/test_tensor_shapes.py checks each against torch's own modules.
TensorShapes = dict[str, Shape]


def tensors_conv(a: dict) -> TensorShapes:
    kh, kw = pair(a["kernel_size"])
    out = {"weight": (a["out_channels"], a["in_channels"] // a["groups"], kh, kw)}
    return out | ({"bias": (a["out_channels"],)} if a["bias"] else {})


def tensors_conv_transpose(a: dict) -> TensorShapes:
    kh, kw = pair(a["kernel_size"])
    out = {"weight": (a["in_channels"], a["out_channels"] // a["groups"], kh, kw)}
    return out | ({"bias": (a["out_channels"],)} if a["bias"] else {})


def tensors_linear(a: dict) -> TensorShapes:
    out = {"weight": (a["out_features"], a["in_features"])}
    return out | ({"bias": (a["out_features"],)} if a["bias"] else {})


def tensors_prelu(a: dict) -> TensorShapes:
    return {"weight": (a["num_parameters"],)}


def tensors_norm(a: dict) -> TensorShapes:
    """BatchNorm2d and InstanceNorm2d: affine scale and shift, then the running statistics."""
    c = (a["num_features"],)
    out = {"weight": c, "bias": c} if a["affine"] else {}
    return out | ({"running_mean": c, "running_var": c} if a["track_running_stats"] else {})


def tensors_groupnorm(a: dict) -> TensorShapes:
    c = (a["num_channels"],)
    return {"weight": c, "bias": c} if a["affine"] else {}


def tensors_layernorm(a: dict) -> TensorShapes:
    ns = a["normalized_shape"]
    shape = tuple(ns) if isinstance(ns, list | tuple) else (ns,)
    if not a["elementwise_affine"]:
        return {}
    return {"weight": shape} | ({"bias": shape} if a["bias"] else {})

"""Explain one output value of a stage: how it was computed, with the exact numbers.

``explain(layer, params, stage_input, channel, y, x)`` recomputes the value from the stage's
input in float64 with numpy (the input patch, the kernel slice, the products, the per-channel
sums, the bias; a pool's window and winner; an activation's f(x); a norm's mean and variance)
and also runs the layer's torch module on the same input, so the explanation carries the
float32 value torch computed beside the float64 sum that explains it.

How each op is broken down is one table here (``EXPLAINERS``, keyed by op type); an op that is
not in it is "not explained yet". No Qt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .pipeline import LayerSpec
from .windows import pair

__all__ = ["ACTIVATIONS", "EXPLAINERS", "Explanation", "explain", "layer_output"]


@dataclass
class Explanation:
    """How one output value was computed.

    ``arrays`` holds what a view shows as grids: for a conv ``patch`` (input channels x kh x
    kw, the padded input under the kernel), ``kernel`` (the same shape), ``products`` and
    ``padded`` (True where the patch element is padding); for a pool ``window`` and ``valid``;
    for Linear ``inputs``, ``weights``, ``products``. ``terms`` are the named numbers that add
    (or lead) to ``total``; ``details`` other named numbers (mean, variance, eps, ...).
    ``total`` is the float64 recomputation, ``value`` the float32 value torch computed.
    """

    kind: str  # conv, linear, pool, activation, norm, none
    layer_type: str
    channel: int
    y: int
    x: int
    formula: str
    total: float
    value: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    terms: list[tuple[str, float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    input_channels: tuple[int, ...] = ()  # the stage-input channels the value reads
    rows: tuple[int, ...] = ()  # input rows of the patch (may lie in the padding)
    cols: tuple[int, ...] = ()
    curve: tuple[np.ndarray, np.ndarray] | None = None  # an activation's f, sampled

    @property
    def explained(self) -> bool:
        return self.kind != "none"

    @property
    def error(self) -> float:
        return abs(self.total - self.value)


# --- running the layer with torch ------------------------------------------------------------

def _module(layer: LayerSpec, params: Mapping[str, np.ndarray]) -> torch.nn.Module:
    module = layer.op.build(dict(layer.args))
    state = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in params.items()}
    if state:
        module.load_state_dict(state, strict=False)
    return module.eval()


def layer_output(layer: LayerSpec, params: Mapping[str, np.ndarray],
                 stage_input: np.ndarray) -> np.ndarray:
    """The layer's output for ``stage_input`` (no batch dimension), float32, as torch computes
    it on the CPU."""
    module = _module(layer, params)
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(stage_input, np.float32))[None])
    return out[0].numpy()


def _at(arr: np.ndarray, channel: int, y: int, x: int) -> float:
    """arr's value at (channel, y, x); for a 1-D array ``x`` is the index."""
    if arr.ndim == 1:
        index: tuple[int, ...] = (x,)
    elif arr.ndim == 2:
        index = (y, x)
    else:
        index = (channel, y, x)
    for i, n in zip(index, arr.shape, strict=True):
        if not 0 <= i < n:
            raise IndexError(f"position (ch {channel}, y {y}, x {x}) is outside the "
                             f"output {' x '.join(map(str, arr.shape))}")
    return float(arr[index])


def _f(v: float) -> str:
    return f"{v:.6g}"


# --- convolution and Linear ------------------------------------------------------------------

# How each padding mode reads a row/column index outside 0..n-1 (None: a zero), as F.pad
# fills: reflect mirrors without repeating the edge, replicate repeats it, circular wraps.
_PAD_INDEX: dict[str, Callable[[int, int], int | None]] = {
    "zeros": lambda i, n: i if 0 <= i < n else None,
    "reflect": lambda i, n: -i if i < 0 else 2 * (n - 1) - i if i >= n else i,
    "replicate": lambda i, n: min(max(i, 0), n - 1),
    "circular": lambda i, n: i % n,
}


def _conv_padding(args: Mapping[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, bottom), (left, right) as torch pads for this Conv2d."""
    k, d = pair(args["kernel_size"]), pair(args["dilation"])
    if args["padding"] == "valid":
        return (0, 0), (0, 0)
    if args["padding"] == "same":
        out = []
        for kk, dd in zip(k, d, strict=True):
            total = dd * (kk - 1)
            out.append((total // 2, total - total // 2))
        return out[0], out[1]
    p = pair(args["padding"])
    return (p[0], p[0]), (p[1], p[1])


def _weighted_sum(patch, kernel, params, args, channel, chans):
    """A conv's products, total (float64), per-input-channel terms (+ the bias) and bias."""
    products = patch * kernel
    sums = products.sum(axis=(1, 2))
    bias = float(params["bias"][channel]) if args["bias"] and "bias" in params else None
    total = float(sums.sum()) + (bias or 0.0)
    terms = [(f"ch {c}", float(v)) for c, v in zip(chans, sums, strict=True)]
    if bias is not None:
        terms.append(("bias", bias))
    return products, total, terms, bias


def _conv(layer, params, inp, channel, y, x, value) -> Explanation:
    a = layer.args
    k, s, d = pair(a["kernel_size"]), pair(a["stride"]), pair(a["dilation"])
    (pt, pb), (pl, pr) = _conv_padding(a)
    groups, out_ch = a["groups"], a["out_channels"]
    cin_g = a["in_channels"] // groups
    g = channel // (out_ch // groups)
    chans = tuple(range(g * cin_g, (g + 1) * cin_g))
    mode = a["padding_mode"]
    h, w = inp.shape[1:]
    in_rows = tuple(y * s[0] + i * d[0] - pt for i in range(k[0]))
    in_cols = tuple(x * s[1] + j * d[1] - pl for j in range(k[1]))
    src_r = [_PAD_INDEX[mode](r, h) for r in in_rows]
    src_c = [_PAD_INDEX[mode](c, w) for c in in_cols]
    zero_r, zero_c = np.array([r is None for r in src_r]), np.array([c is None for c in src_c])
    patch = inp[np.ix_(chans, [r or 0 for r in src_r], [c or 0 for c in src_c])]
    patch = patch.astype(np.float64)
    patch[:, zero_r[:, None] | zero_c[None, :]] = 0.0
    outside = (np.array([not 0 <= r < h for r in in_rows])[:, None]
               | np.array([not 0 <= c < w for c in in_cols])[None, :])
    kernel = params["weight"][channel].astype(np.float64)
    products, total, terms, bias = _weighted_sum(patch, kernel, params, a, channel, chans)
    formula = (f"out[{channel}, {y}, {x}] = sum over input channels {chans[0]}..{chans[-1]} "
               f"of sum(patch * kernel)" + (" + bias" if bias is not None else "")
               + f" = {_f(total)}")
    details = {"stride": s, "dilation": d, "padding (top, bottom, left, right)":
               (pt, pb, pl, pr), "padding_mode": mode, "groups": groups, "group": g}
    return Explanation("conv", layer.type, channel, y, x, formula, total, value,
                       {"patch": patch, "kernel": kernel, "products": products,
                        "padded": np.broadcast_to(outside, patch.shape).copy()},
                       terms, details, chans, in_rows, in_cols)


def _conv_transpose(layer, params, inp, channel, y, x, value) -> Explanation:
    """ConvTranspose2d scatters every input pixel times the kernel into the output; gathered
    at one output pixel, tap (ky, kx) reads input row (y + p - ky*d) / s when that is a whole
    row inside the input. Taps that read no input pixel are shown as padding."""
    a = layer.args
    k, s, d = pair(a["kernel_size"]), pair(a["stride"]), pair(a["dilation"])
    p = pair(a["padding"])
    groups, out_ch = a["groups"], a["out_channels"]
    cin_g, cout_g = a["in_channels"] // groups, out_ch // groups
    g, o_local = channel // cout_g, channel % cout_g
    chans = tuple(range(g * cin_g, (g + 1) * cin_g))
    h, w = inp.shape[1:]

    def sources(pos: int, axis: int, size: int) -> list[tuple[int, bool]]:
        out = []
        for t in range(k[axis]):
            num = pos + p[axis] - t * d[axis]
            src, rest = divmod(num, s[axis])
            out.append((src, rest == 0 and 0 <= src < size))
        return out

    rows, cols = sources(y, 0, h), sources(x, 1, w)
    valid = np.array([r[1] for r in rows])[:, None] & np.array([c[1] for c in cols])[None, :]
    clip_r = [min(max(r[0], 0), h - 1) for r in rows]
    clip_c = [min(max(c[0], 0), w - 1) for c in cols]
    patch = inp[np.ix_(chans, clip_r, clip_c)].astype(np.float64)
    patch[:, ~valid] = 0.0
    kernel = params["weight"][list(chans), o_local].astype(np.float64)  # (in_g, kh, kw)
    products, total, terms, bias = _weighted_sum(patch, kernel, params, a, channel, chans)
    formula = (f"out[{channel}, {y}, {x}] = sum over input channels {chans[0]}..{chans[-1]} "
               f"and taps (ky, kx) with y + p - ky*d = s*iy of x[iy, ix] * "
               f"weight[in, {o_local}, ky, kx]" + (" + bias" if bias is not None else "")
               + f" = {_f(total)}")
    details = {"stride": s, "dilation": d, "padding": p,
               "output_padding": pair(a["output_padding"]), "groups": groups, "group": g,
               "taps reading an input pixel": int(valid.sum())}
    return Explanation("conv", layer.type, channel, y, x, formula, total, value,
                       {"patch": patch, "kernel": kernel, "products": products,
                        "padded": np.broadcast_to(~valid, patch.shape).copy()},
                       terms, details, chans, tuple(r[0] for r in rows),
                       tuple(c[0] for c in cols))


def _linear(layer, params, inp, channel, y, x, value) -> Explanation:
    if inp.ndim == 1:
        row = inp
    elif inp.ndim == 2:
        row = inp[y]
    else:
        row = inp[channel, y]
    row = row.astype(np.float64)
    w = params["weight"][x].astype(np.float64)
    products = row * w
    bias = float(params["bias"][x]) if layer.args["bias"] and "bias" in params else None
    total = float(products.sum()) + (bias or 0.0)
    terms = [("sum of products", float(products.sum()))]
    if bias is not None:
        terms.append(("bias", bias))
    formula = (f"out[{x}] = sum_i x[i] * W[{x}, i]" + (" + b" if bias is not None else "")
               + f" over {row.size} inputs = {_f(total)}")
    return Explanation("linear", layer.type, channel, y, x, formula, total, value,
                       {"inputs": row, "weights": w, "products": products}, terms,
                       {"in_features": row.size})


# --- pooling ---------------------------------------------------------------------------------

def _window_1d(o: int, k: int, s: int, p: int, d: int) -> list[int]:
    return [o * s - p + i * d for i in range(k)]


def _pool_window(inp, channel, rows, cols):
    h, w = inp.shape[1:]
    valid = (np.array([0 <= r < h for r in rows])[:, None]
             & np.array([0 <= c < w for c in cols])[None, :])
    win = np.zeros((len(rows), len(cols)), np.float64)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            if valid[i, j]:
                win[i, j] = inp[channel, r, c]
    return win, valid


def _pool_geometry(args):
    k = pair(args["kernel_size"])
    s = pair(args["stride"]) if args.get("stride") is not None else k
    p = pair(args.get("padding", 0))
    d = pair(args.get("dilation", 1))
    return k, s, p, d


def _max_of(layer, inp, channel, y, x, value, rows, cols, extra) -> Explanation:
    win, valid = _pool_window(inp, channel, rows, cols)
    masked = np.where(valid, win, -np.inf)
    i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)  # the first maximum
    total = float(masked[i, j])
    w = inp.shape[2]
    formula = (f"out[{channel}, {y}, {x}] = max of the window = x[{channel}, {rows[i]}, "
               f"{cols[j]}] = {_f(total)}")
    return Explanation("pool", layer.type, channel, y, x, formula, total, value,
                       {"window": win, "valid": valid}, [("max", total)],
                       {**extra, "winner": (int(rows[i]), int(cols[j])),
                        "winner_flat": int(rows[i] * w + cols[j])},
                       (channel,), tuple(rows), tuple(cols))


def _max_pool(layer, params, inp, channel, y, x, value) -> Explanation:
    k, s, p, d = _pool_geometry(layer.args)
    rows, cols = _window_1d(y, k[0], s[0], p[0], d[0]), _window_1d(x, k[1], s[1], p[1], d[1])
    return _max_of(layer, inp, channel, y, x, value, rows, cols,
                   {"kernel": k, "stride": s, "padding": p, "dilation": d})


def _adaptive_range(o: int, n_in: int, n_out: int) -> list[int]:
    start = (o * n_in) // n_out
    end = -((-(o + 1) * n_in) // n_out)
    return list(range(start, end))


def _adaptive_rows_cols(layer, inp, y, x):
    size = layer.args["output_size"]
    oh, ow = pair(size)
    h, w = inp.shape[1:]
    oh, ow = oh or h, ow or w
    return _adaptive_range(y, h, oh), _adaptive_range(x, w, ow)


def _adaptive_max(layer, params, inp, channel, y, x, value) -> Explanation:
    rows, cols = _adaptive_rows_cols(layer, inp, y, x)
    return _max_of(layer, inp, channel, y, x, value, rows, cols, {})


def _avg_pool(layer, params, inp, channel, y, x, value) -> Explanation:
    a = layer.args
    k, s, p, _d = _pool_geometry(a)
    h, w = inp.shape[1:]
    rows, cols = _window_1d(y, k[0], s[0], p[0], 1), _window_1d(x, k[1], s[1], p[1], 1)
    win, valid = _pool_window(inp, channel, rows, cols)
    # torch: the window counted with padding stops at the padded border (ceil_mode may
    # reach past it); without padding only the pixels inside the image count.
    with_pad = ((min(rows[0] + k[0], h + p[0]) - rows[0])
                * (min(cols[0] + k[1], w + p[1]) - cols[0]))
    inside = int(valid.sum())
    if a.get("divisor_override"):
        divisor, why = a["divisor_override"], "divisor_override"
    elif a["count_include_pad"]:
        divisor, why = with_pad, "window size with padding (count_include_pad)"
    else:
        divisor, why = inside, "pixels inside the image (count_include_pad off)"
    total_sum = float(win[valid].sum())
    total = total_sum / divisor
    formula = (f"out[{channel}, {y}, {x}] = sum / {divisor} = {_f(total_sum)} / {divisor} = "
               f"{_f(total)}")
    return Explanation("pool", layer.type, channel, y, x, formula, total, value,
                       {"window": win, "valid": valid},
                       [("sum", total_sum), ("divisor", float(divisor))],
                       {"divisor": divisor, "divisor is": why, "kernel": k, "stride": s,
                        "padding": p}, (channel,), tuple(rows), tuple(cols))


def _adaptive_avg(layer, params, inp, channel, y, x, value) -> Explanation:
    rows, cols = _adaptive_rows_cols(layer, inp, y, x)
    win, valid = _pool_window(inp, channel, rows, cols)
    total_sum, n = float(win.sum()), win.size
    total = total_sum / n
    formula = f"out[{channel}, {y}, {x}] = mean of {n} values = {_f(total_sum)} / {n}"
    return Explanation("pool", layer.type, channel, y, x, formula, total, value,
                       {"window": win, "valid": valid}, [("sum", total_sum),
                                                         ("divisor", float(n))],
                       {"divisor": n}, (channel,), tuple(rows), tuple(cols))


def _lp_pool(layer, params, inp, channel, y, x, value) -> Explanation:
    a = layer.args
    k, s, _p, _d = _pool_geometry({**a, "padding": 0})
    p = float(a["norm_type"])
    h, w = inp.shape[1:]
    rows, cols = _window_1d(y, k[0], s[0], 0, 1), _window_1d(x, k[1], s[1], 0, 1)
    win, valid = _pool_window(inp, channel, rows, cols)
    powers = np.where(valid, np.power(win, p), 0.0)
    power_sum = float(powers.sum())
    # torch: avg_pool of x^p times kh*kw; a window cut by ceil_mode is scaled up to full size
    count = (min(rows[0] + k[0], h) - rows[0]) * (min(cols[0] + k[1], w) - cols[0])
    scaled = power_sum / count * (k[0] * k[1])
    total = scaled ** (1.0 / p) if scaled >= 0 else float("nan")
    formula = (f"out[{channel}, {y}, {x}] = (sum x^{_f(p)})^(1/{_f(p)}) = "
               f"{_f(scaled)}^(1/{_f(p)}) = {_f(total)}")
    return Explanation("pool", layer.type, channel, y, x, formula, total, value,
                       {"window": win, "valid": valid, "powers": powers},
                       [("power sum", scaled)], {"p": p}, (channel,), tuple(rows),
                       tuple(cols))


# --- activations -----------------------------------------------------------------------------

def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _gelu(v: float, a: Mapping) -> float:
    if a["approximate"] == "tanh":
        return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _softplus(v: float, a: Mapping) -> float:
    b = a["beta"]
    return v if b * v > a["threshold"] else math.log1p(math.exp(b * v)) / b


# type -> (formula text from args, f in float64)
ACTIVATIONS: dict[str, tuple[Callable[[Mapping], str], Callable[[float, Mapping], float]]] = {
    "ReLU": (lambda a: "max(0, x)", lambda v, a: max(0.0, v)),
    "LeakyReLU": (lambda a: f"x if x > 0 else {a['negative_slope']} * x",
                  lambda v, a: v if v > 0 else a["negative_slope"] * v),
    "ELU": (lambda a: f"x if x > 0 else {a['alpha']} * (exp(x) - 1)",
            lambda v, a: v if v > 0 else a["alpha"] * math.expm1(v)),
    "GELU": (lambda a: ("0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"
                        if a["approximate"] == "tanh" else "0.5 x (1 + erf(x / sqrt(2)))"),
             _gelu),
    "SiLU": (lambda a: "x * sigmoid(x)", lambda v, a: v * _sigmoid(v)),
    "Sigmoid": (lambda a: "1 / (1 + exp(-x))", lambda v, a: _sigmoid(v)),
    "Tanh": (lambda a: "tanh(x)", lambda v, a: math.tanh(v)),
    "Softplus": (lambda a: f"log(1 + exp({a['beta']} x)) / {a['beta']} "
                           f"(x if {a['beta']} x > {a['threshold']})", _softplus),
    "Hardtanh": (lambda a: f"clamp(x, {a['min_val']}, {a['max_val']})",
                 lambda v, a: min(max(v, a["min_val"]), a["max_val"])),
}


def _activation(layer, params, inp, channel, y, x, value) -> Explanation:
    text, fn = ACTIVATIONS[layer.type]
    a = layer.args
    xv = _at(inp, channel, y, x)
    total = float(fn(xv, a))
    span = max(3.0, 1.5 * abs(xv))
    xs = np.linspace(-span, span, 201, dtype=np.float32)
    module = _module(layer, params)
    with torch.no_grad():
        ys = module(torch.from_numpy(xs)[None])[0].numpy()
    formula = f"f(x) = {text(a)};  x = {_f(xv)}  ->  f(x) = {_f(total)}"
    return Explanation("activation", layer.type, channel, y, x, formula, total, value,
                       {}, [("x", xv), ("f(x)", total)], {"x": xv}, (channel,),
                       curve=(xs, ys))


def _softmax2d(layer, params, inp, channel, y, x, value) -> Explanation:
    col = inp[:, y, x].astype(np.float64)
    e = np.exp(col - col.max())
    total = float(e[channel] / e.sum())
    formula = (f"out[{channel}] = exp(x[{channel}]) / sum_c exp(x[c]) over {col.size} "
               f"channels at (x {x}, y {y}) = {_f(total)}")
    return Explanation("activation", layer.type, channel, y, x, formula, total, value,
                       {"inputs": col, "softmax": e / e.sum()},
                       [("x", float(col[channel])), ("f(x)", total)],
                       {"x": float(col[channel])}, tuple(range(col.size)))


# --- normalisation ---------------------------------------------------------------------------

def _normalized(layer, inp, channel, y, x, value, mean, var, eps, gamma, beta, over, n,
                extra=None) -> Explanation:
    xv = _at(inp, channel, y, x)
    std = math.sqrt(var + eps)
    total = (xv - mean) / std
    if gamma is not None:
        total *= gamma
    if beta is not None:
        total += beta
    formula = ("y = (x - mean) / sqrt(var + eps)" + (" * gamma" if gamma is not None else "")
               + (" + beta" if beta is not None else "")
               + f" = ({_f(xv)} - {_f(mean)}) / sqrt({_f(var)} + {eps:g}) = {_f(total)}")
    details = {"x": xv, "mean": mean, "variance": var, "eps": eps, "gamma": gamma,
               "beta": beta, "statistics over": over, "count": n, **(extra or {})}
    terms = [("x", xv), ("mean", mean), ("variance", var), ("eps", eps)]
    terms += [(k, v) for k, v in (("gamma", gamma), ("beta", beta)) if v is not None]
    return Explanation("norm", layer.type, channel, y, x, formula, total, value, {}, terms,
                       details, (channel,))


def _stats(values: np.ndarray) -> tuple[float, float, int]:
    v = values.astype(np.float64)
    mean = float(v.mean())
    return mean, float(((v - mean) ** 2).mean()), v.size  # biased, as torch normalises


def _affine(params, key: str, index, enabled: bool) -> float | None:
    return float(params[key][index]) if enabled and key in params else None


def _channel_norm(layer, params, inp, channel, y, x, value) -> Explanation:
    """BatchNorm2d / InstanceNorm2d: per channel, running statistics or this image's."""
    a = layer.args
    affine = a["affine"]
    if a["track_running_stats"]:
        mean, var = float(params["running_mean"][channel]), float(params["running_var"][channel])
        over, n = "running statistics (evaluation mode)", 0
    else:
        mean, var, n = _stats(inp[channel])
        over = f"channel {channel} of this image (H x W, biased variance)"
    return _normalized(layer, inp, channel, y, x, value, mean, var, a["eps"],
                       _affine(params, "weight", channel, affine),
                       _affine(params, "bias", channel, affine), over, n)


def _group_norm(layer, params, inp, channel, y, x, value) -> Explanation:
    a = layer.args
    per = a["num_channels"] // a["num_groups"]
    g = channel // per
    mean, var, n = _stats(inp[g * per:(g + 1) * per])
    over = f"group {g}: channels {g * per}..{(g + 1) * per - 1} x H x W (biased variance)"
    return _normalized(layer, inp, channel, y, x, value, mean, var, a["eps"],
                       _affine(params, "weight", channel, a["affine"]),
                       _affine(params, "bias", channel, a["affine"]), over, n,
                       {"group": g})


def _layer_norm(layer, params, inp, channel, y, x, value) -> Explanation:
    a = layer.args
    dims = len(a["normalized_shape"])
    index = (x,) if inp.ndim == 1 else (y, x) if inp.ndim == 2 else (channel, y, x)
    lead, trail = index[:inp.ndim - dims], index[inp.ndim - dims:]
    mean, var, n = _stats(inp[lead])
    over = f"the last {dims} dimension(s) {list(inp.shape[inp.ndim - dims:])} (biased variance)"
    aff = a["elementwise_affine"]
    return _normalized(layer, inp, channel, y, x, value, mean, var, a["eps"],
                       _affine(params, "weight", trail, aff),
                       _affine(params, "bias", trail, aff and a["bias"]), over, n)


# --- the table -------------------------------------------------------------------------------

Explainer = Callable[..., Explanation]

EXPLAINERS: dict[str, Explainer] = {
    "Conv2d": _conv,
    "ConvTranspose2d": _conv_transpose,
    "Linear": _linear,
    "MaxPool2d": _max_pool,
    "AdaptiveMaxPool2d": _adaptive_max,
    "AvgPool2d": _avg_pool,
    "AdaptiveAvgPool2d": _adaptive_avg,
    "LPPool2d": _lp_pool,
    **dict.fromkeys(ACTIVATIONS, _activation),
    "Softmax2d": _softmax2d,
    "BatchNorm2d": _channel_norm,
    "InstanceNorm2d": _channel_norm,
    "GroupNorm": _group_norm,
    "LayerNorm": _layer_norm,
}


def explain(layer: LayerSpec, params: Mapping[str, np.ndarray], stage_input: np.ndarray,
            channel: int, y: int, x: int, *, output: np.ndarray | None = None) -> Explanation:
    """How output value (channel, y, x) of ``layer`` on ``stage_input`` was computed.

    ``stage_input`` is the stage's input (float32, C x H x W, or a vector), ``params`` the
    layer's tensors (``edits.materialize``). ``output`` is the layer's torch output for that
    input when the caller already has it (see ``layer_output``); otherwise torch runs here.
    For a 1-D output ``x`` is the index. Raises IndexError outside the output.
    """
    stage_input = np.asarray(stage_input, dtype=np.float32)
    if output is None:
        output = layer_output(layer, params, stage_input)
    value = _at(output, channel, y, x)
    explainer = EXPLAINERS.get(layer.type)
    if explainer is None:
        return Explanation("none", layer.type, channel, y, x,
                           f"{layer.type} values are not explained yet; the value torch "
                           f"computed is {_f(value)}.", value, value)
    return explainer(layer, params, stage_input, channel, y, x, value)

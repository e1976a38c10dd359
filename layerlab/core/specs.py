"""One declarative spec per supported op: the only place a per-op rule lives.

Each ``OpSpec`` gives the op's parameters (types, ranges, defaults, help, how the form shows
them), its shape formula (from :mod:`.shapes`), its receptive-field window (from
:mod:`.windows`), how its tensors start (``InitRule``), which argument follows the input's
channels (``ChannelRule``) and its editable kernel. The forms, the JSON validation, the
analysis, the engine and the code export read these hooks instead of checking type names.
A type name becomes a module only through ``OPS`` (the allow-list).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import shapes as sh
from . import windows as win
from .shapes import Shape, ShapeInfo, SpecError, shape_text
from .windows import GLOBAL, RESHAPE, Window, pad4, pair

__all__ = ["CATEGORIES", "GLOBAL", "KINDS", "OPS", "RESHAPE", "WIDGETS", "ChannelRule",
           "InitRule", "OpSpec", "Param", "Shape", "ShapeInfo", "SpecError", "get_op",
           "ops_in", "pad4", "pair", "shape_text"]

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

# The form's editor per kind: a table, so the form needs no per-kind or per-name branches.
# Optional kinds use their value's editor plus a null switch (``Param.nullable``).
WIDGETS: dict[str, str] = {
    "int": "int", "float": "float", "bool": "check", "choice": "choice", "pair": "pair",
    "opt_pair": "pair", "padding": "padding", "pad4": "pad4", "opt_int": "int",
    "opt_float": "float", "opt_bool": "tristate", "ints": "ints",
}


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
    # How the form shows null for the optional kinds, and which argument's value null stands
    # for (pool stride: "auto", i.e. the kernel size).
    none_label: str = "none"
    none_follows: str | None = None

    @property
    def widget(self) -> str:
        """The editor kind the form builds for this parameter (see ``WIDGETS``)."""
        return WIDGETS[self.kind]

    @property
    def nullable(self) -> bool:
        """Whether the editor needs a "null" switch (``none_label``) beside the value."""
        return self.kind in ("opt_pair", "opt_int", "opt_float")

    def none_text(self, args: Mapping[str, Any]) -> str:
        """What null means for this layer, e.g. "auto (= 3)" for a pool stride."""
        if self.none_follows is not None and args.get(self.none_follows) is not None:
            return f"{self.none_label} (= {_value_text(args[self.none_follows])})"
        return self.none_label

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


def _value_text(v: Any) -> str:
    return " x ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


# --- the per-op hooks besides shapes --------------------------------------------------------

@dataclass(frozen=True)
class InitRule:
    """How a layer's tensors start when the file gives no numbers.

    ``seeded`` tensors get the layer's init scheme (a seeded generator, see
    ``kernels.SCHEMES``); ``zeros``/``ones`` are torch's deterministic constants (biases, norm
    layers' scale and running statistics). Together they are every floating-point tensor of
    the module's state (checked by the tests against torch).
    """

    seeded: tuple[str, ...] = ()
    zeros: tuple[str, ...] = ()
    ones: tuple[str, ...] = ()

    @property
    def tensors(self) -> tuple[str, ...]:
        return self.seeded + self.zeros + self.ones


NO_TENSORS = InitRule()
_SEEDED = InitRule(seeded=("weight",), zeros=("bias",))
_NORM = InitRule(zeros=("bias", "running_mean"), ones=("weight", "running_var"))
_AFFINE_ONLY = InitRule(zeros=("bias",), ones=("weight",))


@dataclass(frozen=True)
class ChannelRule:
    """Which argument must equal the input's channel count, so it can follow the input.

    ``weight_axis`` is the axis of ``weight`` over input channels when the kernels can be
    re-mixed for a new channel count (a conv's kernels summed for gray, split for RGB);
    ``applies(args)`` says when following is meaningful (not for grouped convs).
    """

    arg: str
    weight_axis: int | None = None
    applies: Callable[[dict], bool] = field(default=lambda args: True)


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
    # The hooks every op states explicitly (keyword-only, no defaults):
    # receptive: a window function from ``windows`` (output window -> input window), or
    #   ``GLOBAL`` / ``RESHAPE`` when an output value has no local window in the input.
    receptive: Callable[[dict, tuple[int, int], tuple[int, int], Window], Window] | str = \
        field(kw_only=True)
    init: InitRule = field(kw_only=True)
    channels: ChannelRule | None = field(kw_only=True)  # None: no argument follows channels
    kernel: str | None = field(kw_only=True)  # the parameter the kernel editor edits

    @property
    def learnable(self) -> tuple[str, ...]:
        """The module's floating-point state (parameters and buffers), by name."""
        return self.init.tensors

    @property
    def local(self) -> bool:
        """Whether output pixels map back to a window of input pixels."""
        return callable(self.receptive)

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
                raise SpecError(f"output would be {shape_text(info.shape)}: "
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


# --- the specs -------------------------------------------------------------------------------

def P(name, kind, default, help, minimum=None, maximum=None, choices=(), from_input=None,
      null_if_given=None, none_label="none", none_follows=None):
    return Param(name, kind, default, help, minimum, maximum, tuple(choices), from_input,
                 null_if_given, none_label, none_follows)


_K = P("kernel_size", "pair", 2, "Window size: one number or [height, width].", 1, 256)
_POOL_STRIDE = P("stride", "opt_pair", None, "Step between windows; auto means the kernel "
                 "size.", 1, 256, none_label="auto", none_follows="kernel_size")
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
           sh.infer_conv, sh.check_conv,
           receptive=win.sliding, init=_SEEDED, kernel="weight",
           channels=ChannelRule("in_channels", weight_axis=1,
                                applies=lambda a: a["groups"] == 1)),
    OpSpec("MaxPool2d", "pooling", "Maximum over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD,
            P("dilation", "pair", 1, "Spacing between window taps.", 1, 64), _CEIL),
           lambda s, a: sh.pool_common(s, a, dilation=True, avg=False), sh.check_pool_padding,
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AvgPool2d", "pooling", "Average over each window.",
           (_K, _POOL_STRIDE, _POOL_PAD, _CEIL,
            P("count_include_pad", "bool", True, "Count padded zeros in the average."),
            P("divisor_override", "opt_int", None, "Divide by this instead of the window "
              "size.", 1, 65536)),
           lambda s, a: sh.pool_common(s, a, dilation=False, avg=True), sh.check_pool_padding,
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AdaptiveAvgPool2d", "pooling", "Average pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), sh.infer_adaptive,
           receptive=win.adaptive, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("AdaptiveMaxPool2d", "pooling", "Max pooling to a fixed output size.",
           (P("output_size", "pair", 1, "Output size: one number or [height, width].", 1,
              4096),), sh.infer_adaptive,
           receptive=win.adaptive, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("LPPool2d", "pooling", "Power-average pooling: (sum x^p)^(1/p) over each window.",
           (P("norm_type", "float", 2.0, "The power p (1 = sum pooling, large = max).", 0.1,
              100.0), _K, _POOL_STRIDE, _CEIL),
           lambda s, a: sh.pool_common(s, a, dilation=False, avg=True),
           receptive=win.sliding, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ZeroPad2d", "padding", "Pad with zeros.", (_PAD4,), sh.infer_pad,
           receptive=win.shifted, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReflectionPad2d", "padding", "Pad by mirroring the border (edge not repeated).",
           (_PAD4,), sh.infer_reflection_pad,
           receptive=win.reflected, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReplicationPad2d", "padding", "Pad by repeating the edge pixels.", (_PAD4,),
           sh.infer_pad,
           receptive=win.replicated, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ConstantPad2d", "padding", "Pad with a constant value.",
           (_PAD4, P("value", "float", 0.0, "The fill value.", -1e6, 1e6)), sh.infer_pad,
           receptive=win.shifted, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ReLU", "activation", "max(0, x).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("LeakyReLU", "activation", "x if x > 0 else slope * x.",
           (P("negative_slope", "float", 0.01, "Slope for negative inputs.", -10.0, 10.0),),
           sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("ELU", "activation", "x if x > 0 else alpha * (exp(x) - 1).",
           (P("alpha", "float", 1.0, "Saturation value for negative inputs.", 0.0, 100.0),),
           sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("GELU", "activation", "x * Phi(x), the Gaussian error linear unit.",
           (P("approximate", "choice", "none", "Exact erf form or the tanh approximation.",
              choices=("none", "tanh")),), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("SiLU", "activation", "x * sigmoid(x) (swish).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Sigmoid", "activation", "1 / (1 + exp(-x)), squashes to (0, 1).", (), sh.same,
           spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Tanh", "activation", "tanh(x), squashes to (-1, 1).", (), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Softplus", "activation", "log(1 + exp(beta x)) / beta, a smooth ReLU.",
           (P("beta", "float", 1.0, "Sharpness.", 0.01, 100.0),
            P("threshold", "float", 20.0, "Above beta*x > threshold the layer is linear.", 0.0,
              1000.0)), sh.same, spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Hardtanh", "activation", "Clamp to [min_val, max_val].",
           (P("min_val", "float", -1.0, "Lower clamp.", -1e6, 1e6),
            P("max_val", "float", 1.0, "Upper clamp.", -1e6, 1e6)), sh.same, sh.check_hardtanh,
           spatial=False,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Softmax2d", "activation", "Softmax over the channels at each pixel.", (),
           sh.infer_softmax2d,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("BatchNorm2d", "normalization",
           "Per-channel (x - running_mean) / sqrt(running_var + eps) * weight + bias "
           "(evaluation mode: running statistics).",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM, _AFFINE,
            P("track_running_stats", "bool", True, "Use running statistics (mean 0, var 1 "
              "unless given); off: normalise by this image's statistics.")),
           sh.infer_batchnorm,
           receptive=win.pointwise, init=_NORM, channels=ChannelRule("num_features"),
           kernel=None),
    OpSpec("InstanceNorm2d", "normalization",
           "Normalise each channel of the image by its own mean and variance.",
           (P("num_features", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _MOM,
            P("affine", "bool", False, "Learnable per-channel scale and shift."),
            P("track_running_stats", "bool", False, "Use running statistics instead.")),
           sh.infer_instancenorm,
           receptive=GLOBAL, init=_NORM, channels=ChannelRule("num_features"),
           kernel=None),
    OpSpec("GroupNorm", "normalization", "Normalise over groups of channels.",
           (P("num_groups", "int", 1, "Number of channel groups.", 1, 100000),
            P("num_channels", "int", 1, "Channels of the input.", 1, 100000,
              from_input="channels"), _EPS, _AFFINE),
           sh.infer_groupnorm, sh.check_groupnorm,
           receptive=GLOBAL, init=_AFFINE_ONLY, channels=ChannelRule("num_channels"),
           kernel=None),
    OpSpec("LayerNorm", "normalization", "Normalise over the last dimensions.",
           (P("normalized_shape", "ints", [1], "The trailing dimensions to normalise over, "
              "e.g. [C, H, W].", 1, 1 << 24, from_input="chw"), _EPS,
            P("elementwise_affine", "bool", True, "Learnable elementwise scale and shift."),
            P("bias", "bool", True, "Learnable shift (with elementwise_affine).")),
           sh.infer_layernorm, sh.check_layernorm, spatial=False,
           receptive=GLOBAL, init=_AFFINE_ONLY, channels=None, kernel=None),
    OpSpec("LocalResponseNorm", "normalization",
           "Divide each value by a power of the summed squares of neighbouring channels.",
           (P("size", "int", 5, "Neighbouring channels used.", 1, 4096),
            P("alpha", "float", 1e-4, "Multiplicative factor.", 0.0, 100.0),
            P("beta", "float", 0.75, "Exponent.", 0.0, 100.0),
            P("k", "float", 1.0, "Additive factor.", 0.0, 100.0)), sh.same,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Dropout", "other", "Random zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), sh.same, spatial=False, eval_identity=True,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Dropout2d", "other", "Random channel zeroing during training; identity here "
           "(evaluation mode).", (P("p", "float", 0.5, "Drop probability (training only).",
                                    0.0, 1.0),), sh.same, eval_identity=True,
           receptive=win.pointwise, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Upsample", "other", "Resize by a factor or to a size.",
           (P("size", "opt_pair", None, "Output size [height, width]; or use scale_factor.",
              1, 16384),
            P("scale_factor", "opt_float", 2.0, "Resize factor.", 0.01, 64.0,
              null_if_given="size"),
            P("mode", "choice", "nearest", "Interpolation.",
              choices=("nearest", "nearest-exact", "bilinear", "bicubic")),
            P("align_corners", "opt_bool", None, "Align corner pixels (bilinear/bicubic).")),
           sh.infer_upsample, sh.check_upsample,
           receptive=win.resampled, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Flatten", "other", "Merge dimensions into one vector (C x H x W -> C*H*W).",
           (P("start_dim", "int", 1, "First dimension merged (1 = channels).", -4, 3),
            P("end_dim", "int", -1, "Last dimension merged (-1 = the last).", -4, 3)),
           sh.infer_flatten, spatial=False,
           receptive=RESHAPE, init=NO_TENSORS, channels=None, kernel=None),
    OpSpec("Linear", "other", "Fully connected: y = x A^T + b on the last dimension.",
           (P("in_features", "int", 1, "Size of the input's last dimension.", 1, 1 << 24,
              from_input="features"),
            P("out_features", "int", 10, "Output size.", 1, 1 << 20),
            P("bias", "bool", True, "Add a learnable bias.")),
           sh.infer_linear, spatial=False,
           receptive=GLOBAL, init=_SEEDED, channels=None, kernel=None),
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

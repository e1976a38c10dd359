"""The op-spec data types: ``Param`` (one argument and how the form shows it), ``InitRule``,
``ChannelRule`` and ``OpSpec`` (every per-op hook). The table of ops built from them is in
:mod:`.ops_table`; :mod:`.specs` is the public face of both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .shapes import Shape, ShapeInfo, SpecError, shape_text
from .windows import Window

if TYPE_CHECKING:
    from torch import nn

_REQUIRED = object()  # a Param default meaning "must be given"

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
    layers' scale and running statistics), ``fills`` constants given by an argument. Together
    they are every floating-point tensor of the module's state (checked by the tests against torch).
    """

    seeded: tuple[str, ...] = ()
    zeros: tuple[str, ...] = ()
    ones: tuple[str, ...] = ()
    # (tensor, argument): filled with the argument's value, as torch does (PReLU's ``init``)
    fills: tuple[tuple[str, str], ...] = ()

    @property
    def tensors(self) -> tuple[str, ...]:
        return self.seeded + self.zeros + self.ones + tuple(t for t, _ in self.fills)

    def fill_value(self, name: str, args: Mapping[str, Any]) -> float | None:
        """The constant ``name`` starts at (from the layer's arguments), or None."""
        for tensor, arg in self.fills:
            if tensor == name:
                return float(args[arg])
        return None


NO_TENSORS = InitRule()
SEEDED = InitRule(seeded=("weight",), zeros=("bias",))
NORM = InitRule(zeros=("bias", "running_mean"), ones=("weight", "running_var"))
AFFINE_ONLY = InitRule(zeros=("bias",), ones=("weight",))


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
    # (output-channel axis, input-channel axis) of that parameter: Conv2d stores
    # (out, in/groups, kh, kw), ConvTranspose2d (in, out/groups, kh, kw).
    kernel_axes: tuple[int, int] = field(default=(0, 1), kw_only=True)
    # args -> the shapes of the learnable tensors (``shapes.tensors_*``), known without torch;
    # None: asked of a module built on torch's meta device.
    tensors: Callable[[dict], dict[str, tuple[int, ...]]] | None = field(default=None,
                                                                         kw_only=True)

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
        from torch import nn  # only when a module is built: the window starts without torch

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
        """Shapes of the module's floating-point parameters and buffers, without allocating
        them (and without torch where the op states them)."""
        if not self.learnable:
            return {}
        if self.tensors is not None:
            return self.tensors(args)
        import torch

        try:
            with torch.device("meta"):
                module = self.build(args)
        except (RuntimeError, OverflowError, ValueError) as e:  # sizes torch cannot represent
            raise SpecError(f"{self.type} cannot be built with these arguments: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            "args") from None
        return {k: tuple(v.shape) for k, v in module.state_dict().items()
                if v.is_floating_point()}





def P(name, kind, default, help, minimum=None, maximum=None, choices=(), from_input=None,
      null_if_given=None, none_label="none", none_follows=None):
    return Param(name, kind, default, help, minimum, maximum, tuple(choices), from_input,
                 null_if_given, none_label, none_follows)

"""One pass over a pipeline for an image size, without running anything.

:func:`analyze` gives per-layer status (ok, error with its field, disabled, not reached),
stage shapes with their formulas, parameter counts and the memory a run needs; the engine,
the export, ``layerlab info`` and the window all read it. :func:`check_memory` refuses a
stack over a budget, naming the estimate and the largest item.

Memory is counted in float32 (4 bytes per value), the engine's only dtype:
- ``kept``: what a run that caches every stage for display holds at its end: all stage
  outputs (the input included) plus every layer's tensors (parameters and buffers);
- ``peak``: the most a one-pass run (an export, no cache) holds at once: the input image (its
  caller keeps it), the input and output of the stage being computed, and the tensors of the
  modules built so far (the engine keeps them). torch's own scratch space is not counted.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from .pipeline import LayerSpec, Pipeline, PipelineError, StageShape, format_bytes
from .specs import Shape, SpecError, shape_text

__all__ = ["Analysis", "LayerStatus", "Memory", "MemoryItem", "OverBudget", "Validation",
           "analyze", "check_memory", "check_params", "in_shape_at", "parameter_shapes",
           "shape_text", "validate"]

OK, ERROR, DISABLED, NOT_REACHED = "ok", "error", "disabled", "not reached"
BYTES = 4  # float32


@dataclass(frozen=True)
class LayerStatus:
    """One layer of ``pipeline.layers`` (enabled or not) for one input size."""

    index: int  # position in pipeline.layers
    name: str  # display name (the user's name, else the type in lower case)
    type: str
    state: str  # OK, ERROR, DISABLED or NOT_REACHED (an earlier layer is broken)
    stage: int | None = None  # stage number (0 is the input) when the layer runs
    stage_name: str = ""  # unique among the stages (engine and export use it)
    in_shape: Shape | None = None
    shape: Shape | None = None
    formula: str = ""
    error: str | None = None  # the problem; a shape problem ends with "(input C x H x W)"
    field: str | None = None  # the argument at fault, when one is
    parameter_count: int = 0  # elements of the module's parameters (weight, bias)
    tensor_bytes: int = 0  # all its floating-point tensors, buffers included
    user_name: str = ""

    @property
    def ok(self) -> bool:
        return self.state == OK

    def exception(self, source: str | None = None) -> PipelineError:
        """The problem as the located error a pipeline file reports."""
        return PipelineError(self.error or "", index=self.index, name=self.user_name or None,
                             field=self.field, source=source)


@dataclass(frozen=True)
class MemoryItem:
    what: str  # e.g. "layer 0 (wide, 100000 x 512 x 512)" or "layer 3 (fc) weight 10 x 20"
    bytes: int


@dataclass(frozen=True)
class Memory:
    outputs: int  # every stage output, the input included
    tensors: int  # every layer's parameters and buffers
    peak: int  # the most a one-pass run holds at once (see the module docstring)
    peak_stage: int  # the stage being computed at that moment
    largest: MemoryItem | None  # the biggest single output or tensor

    @property
    def kept(self) -> int:
        """What a run that keeps every stage holds at its end."""
        return self.outputs + self.tensors


@dataclass(frozen=True)
class Analysis:
    image_hw: tuple[int, int] | None
    input_shape: Shape | None  # None when neither an image nor the input spec gives a size
    layers: tuple[LayerStatus, ...]  # one per pipeline layer
    memory: Memory
    # The "normalize" stage (stage 1, index -1) when the input has transforms.Normalize.
    normalize: LayerStatus | None = None

    @property
    def first_error(self) -> LayerStatus | None:
        return next((s for s in self.layers if s.state == ERROR), None)

    @property
    def ok(self) -> bool:
        return self.first_error is None

    @property
    def error(self) -> str | None:
        """The first problem that stops the pipeline, located ("layer 2 (bad): ...")."""
        bad = self.first_error
        return None if bad is None else f"layer {bad.index} ({bad.name}): {bad.error}"

    @property
    def stages(self) -> list[LayerStatus]:
        """The input (index -1) and each layer that runs, in order, up to the first error."""
        first = LayerStatus(-1, "input", "Input", OK, 0, "input", self.input_shape,
                            self.input_shape)
        pre = [first] + ([self.normalize] if self.normalize is not None else [])
        return pre + [s for s in self.layers if s.stage is not None]

    def stage_shapes(self) -> list[StageShape]:
        """``stages`` as ``StageShape`` records; raises the first error, located."""
        bad = self.first_error
        if bad is not None:
            raise bad.exception()
        return [StageShape(s.index, s.stage_name, s.type, s.in_shape, s.shape, s.formula,
                           s.parameter_count) for s in self.stages]


class OverBudget(PipelineError):
    """The stack needs more memory than allowed; the message names estimate and culprit."""

    def __init__(self, message: str, need: int):
        super().__init__(message)
        self.need = need


# --- parameter shapes ------------------------------------------------------------------------

_SHAPES: OrderedDict[str, dict[str, tuple[int, ...]]] = OrderedDict()


def parameter_shapes(layer: LayerSpec, args: dict | None = None) -> dict[str, tuple[int, ...]]:
    """``OpSpec.parameter_shapes`` (floating-point state by name), remembered per structure:
    it builds a meta module, and the window asks on every edit."""
    key = layer.structure_key
    hit = _SHAPES.get(key)
    if hit is None:
        args = layer.op.normalize_args(layer.args) if args is None else args
        hit = _SHAPES[key] = layer.op.parameter_shapes(args)
        while len(_SHAPES) > 256:
            _SHAPES.popitem(last=False)
    return hit


def check_params(layer: LayerSpec, args: dict) -> None:
    """Explicit params must exist with these arguments and have their shapes (SpecError)."""
    if not layer.params:
        return
    shapes = parameter_shapes(layer, args)
    for pname, arr in layer.params.items():
        if pname not in shapes:
            raise SpecError(f"explicit params.{pname} does not exist with these arguments",
                            None)
        if tuple(arr.shape) != shapes[pname]:
            raise SpecError(f"params.{pname} has shape {list(arr.shape)}, expected "
                            f"{list(shapes[pname])}", None)


# --- the pass --------------------------------------------------------------------------------

def same_analysis(a: Pipeline, b: Pipeline) -> bool:
    """Whether :func:`analyze` gives ``a`` and ``b`` the same analysis (for the same image
    size): it reads the input, each layer's type, args, name, enabled and its explicit
    params' names and shapes, never their values. A typed kernel cell changes only those."""
    if a is b:
        return True
    if a.input != b.input or len(a.layers) != len(b.layers):
        return False
    return all(x is y or (x.structure_key == y.structure_key and x.name == y.name
                          and x.enabled == y.enabled and x.params.keys() == y.params.keys()
                          and all(x.params[k].shape == y.params[k].shape for k in x.params))
               for x, y in zip(a.layers, b.layers, strict=True))


def analyze(pipeline: Pipeline, image_hw: tuple[int, int] | None, *,
            sep: str = " x ") -> Analysis:
    """Status, shapes, formulas, counts and memory of every layer for an image of
    ``image_hw`` (H, W) before the pipeline's own resize; None when no image is loaded
    (shapes are then unknown unless the input's resize or center_crop fixes them). ``sep`` joins the shape in
    messages (the window writes " × ")."""
    shape: Shape | None = (pipeline.input_shape(image_hw)
                           if image_hw or pipeline.input.fixed_hw else None)
    input_shape = shape
    stage = pipeline.stage_offset
    all_names = pipeline.stage_names()
    names = iter(all_names[1 + stage:])
    norm = None
    if stage:
        norm = LayerStatus(-1, all_names[1], "Normalize", OK, 1, all_names[1], shape, shape,
                           pipeline.input.normalize.text())
    statuses: list[LayerStatus] = []
    broken = False
    for i, layer in enumerate(pipeline.layers):
        base = LayerStatus(i, layer.display_name(i), layer.type, OK, user_name=layer.name)
        if layer.enabled:
            base = replace(base, stage_name=next(names))
        try:
            args = layer.op.normalize_args(layer.args)
            check_params(layer, args)
        except SpecError as e:
            state = (DISABLED if not layer.enabled else NOT_REACHED if broken else ERROR)
            statuses.append(replace(base, state=state, error=str(e), field=e.field,
                                    in_shape=shape if layer.enabled else None))
            broken = broken or layer.enabled
            shape = None if layer.enabled else shape
            continue
        shapes = parameter_shapes(layer, args)
        counts = dict(parameter_count=sum(math.prod(s) for k, s in shapes.items()
                                          if k in ("weight", "bias")),
                      tensor_bytes=BYTES * sum(math.prod(s) for s in shapes.values()))
        if not layer.enabled:
            statuses.append(replace(base, state=DISABLED, **counts))
            continue
        if shape is None:
            statuses.append(replace(base, state=NOT_REACHED, **counts))
            continue
        try:
            info = layer.op.infer_shape(shape, args)
        except SpecError as e:
            statuses.append(replace(base, state=ERROR, in_shape=shape, field=e.field,
                                    error=f"{e} (input {shape_text(shape, sep)})", **counts))
            broken, shape = True, None
            continue
        stage += 1
        statuses.append(replace(base, stage=stage, in_shape=shape, shape=info.shape,
                                formula=info.formula, **counts))
        shape = info.shape
    return Analysis(image_hw, input_shape, tuple(statuses),
                    _memory(pipeline, input_shape, statuses), norm)


def _memory(pipeline: Pipeline, input_shape: Shape | None,
            statuses: list[LayerStatus]) -> Memory:
    if input_shape is None:
        return Memory(0, 0, 0, 0, None)
    running = [s for s in statuses if s.stage is not None]
    offset = pipeline.stage_offset  # the normalised input: a second input-sized stage
    outputs = ([BYTES * math.prod(input_shape)] * (1 + offset) +
               [BYTES * math.prod(s.shape) for s in running])
    items = [MemoryItem(f"the input image ({shape_text(input_shape)})", outputs[0])]
    items += [MemoryItem(f"layer {s.index} ({s.stage_name}, {shape_text(s.shape)})",
                         BYTES * math.prod(s.shape)) for s in running]
    peak, peak_stage, built = sum(outputs[:1 + offset]), offset, 0
    for k, s in enumerate(running, start=1 + offset):
        built += s.tensor_bytes
        alive = outputs[0] + (outputs[k - 1] if k > 1 else 0) + outputs[k] + built
        if alive > peak:
            peak, peak_stage = alive, k
        layer = pipeline.layers[s.index]
        for pname, pshape in parameter_shapes(layer).items():
            items.append(MemoryItem(f"layer {s.index} ({s.stage_name}) {pname} "
                                    f"{shape_text(pshape)}", BYTES * math.prod(pshape)))
    return Memory(sum(outputs), built, peak, peak_stage, max(items, key=lambda m: m.bytes))


def check_memory(analysis: Analysis, budget: int, *, cached: bool = True) -> None:
    """Raise :class:`OverBudget` when a run would need more than ``budget`` bytes.

    ``cached``: the run keeps every stage (the window); else it is one pass (an export).
    """
    mem = analysis.memory
    need = mem.kept if cached else mem.peak
    if need <= budget:
        return
    hw = analysis.input_shape[1:] if analysis.input_shape else ()
    what = ("for its stage outputs and weights" if cached
            else f"at once (while computing stage {mem.peak_stage})")
    has_layers = any(s.stage is not None for s in analysis.layers)
    largest = (f"the largest is {mem.largest.what}, {format_bytes(mem.largest.bytes)}"
               if has_layers and mem.largest else "the input image alone is too large")
    raise OverBudget(f"this stack needs about {format_bytes(need)} {what} at "
                     f"{shape_text(hw)}, more than the memory budget of "
                     f"{format_bytes(budget)}; {largest}", need)


# --- what the window asks --------------------------------------------------------------------

@dataclass(frozen=True)
class Validation:
    """The window's view of an analysis (kept for the window until it reads Analysis)."""

    layers: tuple[LayerStatus, ...]
    input_shape: Shape | None
    error: str | None = None  # the first problem that stops the pipeline from running
    error_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def validate(pipeline: Pipeline, image_hw: tuple[int, int] | None) -> Validation:
    """Per-layer shapes and the first error, by formula (no torch run), in the window's
    words (shapes written with ×)."""
    a = analyze(pipeline, image_hw, sep=" × ")
    bad = a.first_error
    return Validation(a.layers, a.input_shape, a.error, bad.index if bad else None)


def in_shape_at(pipeline: Pipeline, index: int, image_hw: tuple[int, int] | None
                ) -> Shape | None:
    """The shape entering position ``index`` (what a layer inserted there receives); None
    when unknown (no image, or a broken layer before it)."""
    prefix = analyze(replace(pipeline, layers=pipeline.layers[:max(index, 0)]), image_hw)
    if not prefix.ok:
        return None
    return prefix.stages[-1].shape


def nonfinite_warnings(pipeline: Pipeline) -> list[str]:
    """Warnings for NaN/inf weights: accepted, but the user should see them."""
    warnings = []
    for i, layer in enumerate(pipeline.layers):
        for pname, arr in layer.params.items():
            bad = int((~np.isfinite(arr)).sum())
            if bad:
                warnings.append(f"layer {i} ({layer.display_name(i)}): params.{pname} has "
                                f"{bad} NaN/inf value(s); outputs will contain NaN/inf")
    return warnings

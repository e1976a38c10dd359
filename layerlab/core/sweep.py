"""Sweep one parameter over a list of values and collect a stage's output for each value
(``layerlab sweep``, the window's "Animate parameter"). Writing the frames as GIF, APNG or a
PNG folder is :mod:`layerlab.core.sweep_output`.

What can be swept (a :class:`Target`):

- a constructor argument of one layer (``kernel_size``, ``stride``, ``dilation``,
  ``negative_slope``, ...): each value is validated by the op's spec, and explicit params are
  re-fitted to the new arguments exactly as the window does it (:func:`edits.fit_params`: a
  3x3 kernel stays centred in a 5x5 one);
- one value of a layer's tensor, ``weight[0,0,1,1]`` or ``bias[0]`` (a kernel cell);
- the strength of a layer's whole tensor, ``weight*``: its current values (a preset, say)
  times each value;
- the input size, ``input.resize``: ``N`` (the shorter side, as ``transforms.Resize(N)``) or
  ``HxW``.

Every value is checked (its type, its range, the shapes it leads to) before anything runs,
so a bad value is one :class:`SweepError` naming it and nothing is computed or written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from . import render
from .analysis import OverBudget, analyze, check_memory
from .edits import fit_params, materialize
from .engine import Engine, RunError
from .pipeline import DEFAULT_MEMORY_BUDGET, Pipeline
from .specs import SpecError

__all__ = ["INPUT_SIZE", "MAX_FRAMES", "SweepCancelled", "SweepError", "SweepFrame", "Target",
           "check_variants", "find_layer", "layer_stage", "parse_target", "parse_values",
           "resolve_stage", "run_sweep", "shared_levels", "value_text", "variant"]

INPUT_SIZE = "input.resize"
INPUT_SIZE_ALIASES = ("input.resize", "input_size", "input.size", "size")
MAX_FRAMES = 256
_CELL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[([0-9,\s]+)\]$")
_SCALE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\*$")

ProgressFn = Callable[[int, int, str], None]


class SweepError(ValueError):
    """A sweep that cannot be done; the message is one line, for the user."""


@dataclass(frozen=True)
class Target:
    """What a sweep varies: ``kind`` is ``"arg"``, ``"cell"``, ``"scale"`` or ``"input"``."""

    kind: str
    name: str  # the argument or tensor name, or INPUT_SIZE
    layer: int | None = None  # position in pipeline.layers (None for the input size)
    cell: tuple[int, ...] = ()  # the tensor index of a cell

    @property
    def label(self) -> str:
        """How frames name the parameter: ``stride``, ``weight[0,0,1,1]``, ``input size``."""
        if self.kind == "cell":
            return f"{self.name}[{','.join(map(str, self.cell))}]"
        if self.kind == "scale":
            return f"{self.name} scale"
        return "input size" if self.kind == "input" else self.name


def find_layer(pipeline: Pipeline, text: str) -> int:
    """The position of the layer ``text`` names: its index in the stack (as ``layerlab
    info`` lists it) or its name."""
    n = len(pipeline.layers)
    if re.fullmatch(r"-?\d+", text.strip()):
        i = int(text)
        if not 0 <= i < n:
            raise SweepError(f"--layer {i} is out of range: the stack has {n} layer(s), "
                             f"0 to {n - 1}")
        return i
    names = [layer.display_name(i) for i, layer in enumerate(pipeline.layers)]
    hits = [i for i, name in enumerate(names) if name == text]
    if len(hits) != 1:
        why = "no layer is" if not hits else f"{len(hits)} layers are"
        raise SweepError(f"{why} named {text!r}; give its index or one of: "
                         f"{', '.join(names) or 'none'}")
    return hits[0]


def parse_target(pipeline: Pipeline, layer: str | int | None, param: str) -> Target:
    """The target of ``--layer`` and ``--param`` (see the module docstring)."""
    param = param.strip()
    if param in INPUT_SIZE_ALIASES:
        return Target("input", INPUT_SIZE)
    if layer is None:
        raise SweepError(f"--layer is needed to sweep {param!r} (only the input size, "
                         f"{INPUT_SIZE}, belongs to no layer)")
    i = layer if isinstance(layer, int) else find_layer(pipeline, str(layer))
    spec = pipeline.layers[i]
    where = f"layer {i} ({spec.display_name(i)}, {spec.type})"
    if not spec.enabled:
        raise SweepError(f"{where} is disabled; enable it to sweep one of its parameters")
    m = _SCALE.match(param)
    if m:
        tensors = materialize(spec)
        if m.group(1) not in tensors:
            raise SweepError(f"{where} has no tensor {m.group(1)!r} (it has: "
                             f"{', '.join(tensors) or 'none'})")
        return Target("scale", m.group(1), i)
    m = _CELL.match(param)
    if m:
        tensors = materialize(spec)
        pname = m.group(1)
        if pname not in tensors:
            raise SweepError(f"{where} has no tensor {pname!r} (it has: "
                             f"{', '.join(tensors) or 'none'})")
        cell = tuple(int(v) for v in m.group(2).split(",") if v.strip())
        shape = tensors[pname].shape
        if len(cell) != len(shape) or any(not 0 <= c < s for c, s in zip(cell, shape,
                                                                          strict=False)):
            dims = " x ".join(map(str, shape))
            raise SweepError(f"{param} is not a cell of {where}'s {pname}, which is {dims} "
                             f"(give {len(shape)} indices, each below its size)")
        return Target("cell", pname, i, cell)
    try:
        spec.op.param(param)
    except KeyError:
        accepted = [p.name for p in spec.op.params] + [f"{t}[...]" for t in spec.op.learnable] \
            + [f"{t}*" for t in spec.op.learnable]
        raise SweepError(f"{where} has no parameter {param!r} (accepted: "
                         f"{', '.join(accepted) or 'none'}, or {INPUT_SIZE})") from None
    return Target("arg", param, i)


# --- values ----------------------------------------------------------------------------------

def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise SweepError(f"{what}: {text!r} is not a number") from None
    if not np.isfinite(v):
        raise SweepError(f"{what}: {text!r} is not a finite number")
    return v


def _expand(item: str, integer: bool, what: str) -> list[str]:
    """``A..B`` (whole numbers from A to B) and ``A..B:N`` (N evenly spaced numbers)."""
    m = re.fullmatch(r"\s*(-?[\d.eE+]+?)\s*\.\.\s*(-?[\d.eE+]+?)\s*(?::\s*(\d+))?\s*", item)
    if not m:
        return [item]
    a, b = _number(m.group(1), what), _number(m.group(2), what)
    if m.group(3) is not None:
        n = int(m.group(3))
        if not 2 <= n <= MAX_FRAMES:
            raise SweepError(f"{what}: {item!r} asks for {n} values; give 2 to {MAX_FRAMES}")
        values = np.linspace(a, b, n)
        return [str(int(round(v))) if integer else repr(float(v)) for v in values]
    if not (a.is_integer() and b.is_integer()) or b < a:
        raise SweepError(f"{what}: {item!r} must be A..B with whole numbers A <= B, or "
                         f"A..B:N for N evenly spaced values")
    if b - a + 1 > MAX_FRAMES:
        raise SweepError(f"{what}: {item!r} gives {int(b - a + 1)} values, more than the "
                         f"{MAX_FRAMES} frames a sweep may have")
    return [str(v) for v in range(int(a), int(b) + 1)]


def _parse_one(text: str, kind: str, what: str) -> Any:
    t = text.strip()
    low = t.lower()
    if kind.startswith("opt_") and low in ("none", "null", "auto"):
        return None
    if kind in ("int", "opt_int"):
        v = _number(t, what)
        if not v.is_integer():
            raise SweepError(f"{what}: {t!r} is not a whole number")
        return int(v)
    if kind in ("float", "opt_float"):
        return _number(t, what)
    if kind in ("bool", "opt_bool"):
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise SweepError(f"{what}: {t!r} is not true or false")
        return low in ("true", "1", "yes")
    if kind == "choice" or (kind == "padding" and low in ("same", "valid")):
        return t if kind == "choice" else low
    parts = [p for p in re.split(r"\s*x\s*", low) if p]
    if kind in ("pair", "opt_pair", "padding", "pad4", "ints"):
        nums = []
        for p in parts or [t]:
            v = _number(p, what)
            if not v.is_integer():
                raise SweepError(f"{what}: {t!r} is not a whole number (or HxW)")
            nums.append(int(v))
        return nums[0] if len(nums) == 1 and kind != "ints" else nums
    raise SweepError(f"{what}: values of this kind ({kind}) cannot be swept")


def parse_values(pipeline: Pipeline, target: Target, text: str) -> list[Any]:
    """The values of ``--values V1,V2,...`` for ``target``, each checked by
    :func:`variant` (so a bad one is reported before anything runs)."""
    what = f"--values for {target.label}"
    if target.kind == "arg":
        kind = pipeline.layers[target.layer].op.param(target.name).kind
    elif target.kind in ("cell", "scale"):
        kind = "float"
    else:
        kind = "size"
    items = [s for s in (p.strip() for p in str(text).split(",")) if s]
    if not items:
        raise SweepError(f"{what}: give at least one value, e.g. --values 1,2,3")
    expanded = [v for item in items
                for v in _expand(item, kind in ("int", "opt_int", "pair", "opt_pair",
                                                "padding", "size"), what)]
    if len(expanded) > MAX_FRAMES:
        raise SweepError(f"{what}: {len(expanded)} values, more than the {MAX_FRAMES} frames "
                         f"a sweep may have")
    if kind == "size":
        values = [_parse_size(v, what) for v in expanded]
    else:
        values = [_parse_one(v, kind, what) for v in expanded]
    seen: set[str] = set()
    for v in values:
        text = value_text(v)
        if text in seen:  # two frames alike: GIF and APNG writers would merge them into one
            raise SweepError(f"{what}: {text} appears twice; give each value once")
        seen.add(text)
        variant(pipeline, target, v)  # raises for a value the layer refuses
    return values


def _parse_size(text: str, what: str) -> int | tuple[int, int]:
    parts = [p for p in re.split(r"\s*x\s*", text.strip().lower()) if p]
    nums = []
    for p in parts:
        v = _number(p, what)
        if not v.is_integer() or not 1 <= v <= 16384:
            raise SweepError(f"{what}: {text!r} must be N (the shorter side) or HxW, with "
                             f"sizes from 1 to 16384")
        nums.append(int(v))
    if len(nums) == 1:
        return nums[0]
    if len(nums) == 2:
        return (nums[0], nums[1])
    raise SweepError(f"{what}: {text!r} must be N (the shorter side) or HxW")


def value_text(value: Any) -> str:
    """A value as a frame's label shows it: ``3``, ``3x5``, ``0.25``, ``none``."""
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def variant(pipeline: Pipeline, target: Target, value: Any) -> Pipeline:
    """The pipeline with ``target`` set to ``value``; :class:`SweepError` when the layer's
    spec refuses the value (the shapes are checked later, for the image's size)."""
    what = f"{target.label} = {value_text(value)}"
    if target.kind == "input":
        inp = replace(pipeline.input, resize=value)
        return replace(pipeline, input=inp)
    layer = pipeline.layers[target.layer]
    if target.kind == "cell":
        arr = np.array(materialize(layer)[target.name], dtype=np.float32, copy=True)
        arr[target.cell] = np.float32(value)
        return pipeline.replace_layer(target.layer, layer.with_param(target.name, arr))
    if target.kind == "scale":
        arr = materialize(layer)[target.name] * np.float32(value)
        return pipeline.replace_layer(target.layer, layer.with_param(target.name, arr))
    try:
        args = layer.op.normalize_args({**layer.args, target.name: value})
    except SpecError as e:
        raise SweepError(f"{what} is refused by layer {target.layer} "
                         f"({layer.display_name(target.layer)}): {e}") from None
    fitted, _ = fit_params(replace(layer, args=args))
    return pipeline.replace_layer(target.layer, fitted)


# --- stages ----------------------------------------------------------------------------------

def layer_stage(pipeline: Pipeline, layer: int) -> int:
    """The stage number of an enabled layer's output (stage 0 is the input)."""
    for pos, (i, _) in enumerate(pipeline.enabled_layers()):
        if i == layer:
            return pos + 1 + pipeline.stage_offset
    raise SweepError(f"layer {layer} is disabled; it has no stage")


def resolve_stage(pipeline: Pipeline, target: Target, text: str | None) -> int:
    """The stage ``--stage`` names (a number, a stage name, ``input`` or ``last``); by
    default the swept layer's output, or the last stage when sweeping the input size."""
    names = pipeline.stage_names()
    last = len(names) - 1
    if text is None or not str(text).strip():
        return last if target.layer is None else layer_stage(pipeline, target.layer)
    t = str(text).strip()
    if t == "last":
        return last
    if re.fullmatch(r"\d+", t):
        k = int(t)
        if k > last:
            raise SweepError(f"--stage {k} is out of range: the stack has stages 0 to {last}")
        return k
    hits = [k for k, n in enumerate(names) if n == t]
    if len(hits) != 1:
        raise SweepError(f"--stage {t!r} names no single stage; give a number 0 to {last}, "
                         f"'last' or one of: {', '.join(names)}")
    return hits[0]


# --- running ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepFrame:
    """One value's result: the chosen stage as torch computed it (on the CPU)."""

    value: Any
    label: str  # "stride = 2"
    output: torch.Tensor  # (1, C, H, W), (1, A, B) or (1, N), float32


def check_variants(pipeline: Pipeline, target: Target, values: list[Any],
                   image_hw: tuple[int, int], stage: int) -> list[Pipeline]:
    """Every value's pipeline, after checking it chains up to ``stage`` for an image of
    ``image_hw`` and that the kept frames fit the memory budget."""
    out, total = [], 0
    for v in values:
        p = variant(pipeline, target, v)
        analysis = analyze(p, image_hw)
        stages = analysis.stages
        if stage >= len(stages) or not analysis.ok:
            bad = analysis.first_error
            why = analysis.error if bad is not None else "the stage is not reached"
            raise SweepError(f"at {target.label} = {value_text(v)}: {why}")
        try:
            check_memory(analysis, DEFAULT_MEMORY_BUDGET, cached=True)
        except OverBudget as e:
            raise SweepError(f"at {target.label} = {value_text(v)}: {e}") from None
        total += 4 * int(np.prod(stages[stage].shape))
        if total > DEFAULT_MEMORY_BUDGET:
            raise SweepError(f"the {len(values)} frames of stage {stage} need more than "
                             f"{DEFAULT_MEMORY_BUDGET >> 30} GB; use a smaller image or "
                             f"fewer values")
        out.append(p)
    return out


def run_sweep(pipeline: Pipeline, image: torch.Tensor, target: Target, values: list[Any],
              stage: int, *, engine: Engine | None = None,
              progress: ProgressFn | None = None,
              cancel: Callable[[], bool] | None = None) -> list[SweepFrame]:
    """Run the pipeline once per value and keep ``stage``'s output of each run.

    ``image`` is the (1, C, H, W) input tensor. The engine keeps the stages before the
    swept layer between values, so only the swept layer onwards is recomputed. Raises
    :class:`SweepError` for a value that does not chain or a failing stage, and
    :class:`SweepCancelled` when ``cancel()`` turns true between values.
    """
    hw = (int(image.shape[-2]), int(image.shape[-1]))
    variants = check_variants(pipeline, target, values, hw, stage)
    if engine is None:
        engine = Engine("cpu", channels_last=False, memory_budget=1 << 62)
    frames = []
    for k, (v, p) in enumerate(zip(values, variants, strict=True)):
        if cancel is not None and cancel():
            raise SweepCancelled("sweep cancelled")
        label = f"{target.label} = {value_text(v)}"
        try:
            output = _stage_output(engine, p, image, stage)
        except RunError as e:
            raise SweepError(f"at {label}: {e}") from None
        frames.append(SweepFrame(v, label, output))
        if progress is not None:
            progress(k + 1, len(values), label)
    return frames


class SweepCancelled(SweepError):
    """The sweep was cancelled; nothing was written."""


def _stage_output(engine: Engine, pipeline: Pipeline, image: torch.Tensor,
                  stage: int) -> torch.Tensor:
    gen = engine.run(pipeline, image, cache=True)
    try:
        for result in gen:
            if not result.ok:
                raise SweepError(result.error)
            if result.index == stage:
                return result.output.detach().to("cpu", torch.float32).contiguous().clone()
    finally:
        gen.close()
    raise SweepError(f"stage {stage} was not reached")


def shared_levels(frames: list[SweepFrame], mode: str) -> np.ndarray:
    """One set of (lo, hi) levels for every frame: per channel the lowest lo and highest hi
    any frame has in ``mode`` (so one value maps to one grey in all frames); when the frames
    have different channel counts, one range for all channels."""
    per = [render.levels(f.output, mode) for f in frames]
    if len({lv.shape for lv in per}) == 1:
        stack = np.stack(per)
        return np.stack([stack[..., 0].min(axis=0), stack[..., 1].max(axis=0)], axis=1)
    lo = min(lv[:, 0].min() for lv in per)
    hi = max(lv[:, 1].max() for lv in per)
    return np.array([[lo, hi]])


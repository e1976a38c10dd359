"""Fit a stack's weights so that one stage's output matches a target: watch a filter learn.

The target is another stack's output on the same image (for example this stack with its conv
set to the Sobel-x preset, :func:`preset_pipeline`) or an image file resized to the stage's
shape (:func:`target_from_image`). :func:`fit` is a generator that runs one optimiser step
per ``next()`` (so a job runner can stop it between any two steps), yields a
:class:`FitProgress` every ``report_every`` steps (``None`` on the steps between) and returns
a :class:`FitResult` whose pipeline holds the fitted tensors as exact ``params``.

The loss is the mean squared error between the stage's output and the target; the layers
before the first fitted one run once (their output does not change), the rest every step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .edits import initial_state
from .engine import Engine, resolve_device
from .imageio import ImageLoadError, LoadedImage, load_image, to_tensor
from .kernels import DEFAULT_INIT, fit_kernel, preset
from .pipeline import LayerSpec, Pipeline, PipelineError

__all__ = ["OPTIMIZERS", "FitError", "FitProgress", "FitResult", "Target", "fit",
           "fittable_layers", "layer_module", "layer_of_stage", "make_target",
           "preset_pipeline", "run_to_end", "stage_output", "target_from_image",
           "with_weights"]

OPTIMIZERS = ("adam", "sgd", "lbfgs")
Weights = dict[int, dict[str, np.ndarray]]  # layer index -> parameter name -> tensor


class FitError(ValueError):
    """A fit (or a visualisation) that cannot start: the message says what to change."""


@dataclass(frozen=True)
class FitProgress:
    step: int  # optimiser steps done (1 after the first)
    loss: float  # the loss before this step's update (what the step minimised)
    weights: Weights  # the fitted layers' tensors after this step (float32 copies)


@dataclass
class FitResult:
    pipeline: Pipeline  # the stack with the fitted tensors as params
    weights: Weights
    losses: list[float] = field(default_factory=list)  # one per step

    @property
    def steps(self) -> int:
        return len(self.losses)


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join(str(int(n)) for n in shape)


def layer_of_stage(pipeline: Pipeline, stage: int) -> int:
    """The index in ``pipeline.layers`` of the layer that makes ``stage``."""
    enabled = pipeline.enabled_layers()
    k = stage - 1 - pipeline.stage_offset
    if not 0 <= k < len(enabled):
        last = len(enabled) + pipeline.stage_offset
        raise FitError(f"stage {stage} is not a layer's output (the stack's layers are "
                       f"stages {1 + pipeline.stage_offset} to {last})")
    return enabled[k][0]


def fittable_layers(pipeline: Pipeline, stage: int) -> list[int]:
    """Every enabled layer with parameters up to and including the one that makes ``stage``."""
    last = layer_of_stage(pipeline, stage)
    return [i for i, layer in pipeline.enabled_layers() if i <= last and layer.op.learnable]


def preset_pipeline(pipeline: Pipeline, layer: int, name: str) -> Pipeline:
    """``pipeline`` with every kernel slice of conv ``layer`` set to preset ``name`` (centred
    in the layer's kernel size) and its bias, if any, zero: the stack a fit can aim at."""
    spec = pipeline.layers[layer]
    if spec.op.kernel is None or "weight" not in initial_state(spec):
        raise FitError(f"layer {layer} ({spec.display_name(layer)}) is a {spec.type}: a "
                       f"kernel preset needs a convolution")
    state = initial_state(spec)
    weight = state["weight"]
    kernel = fit_kernel(preset(name), tuple(weight.shape[-2:]))
    spec = spec.with_param("weight", kernel.expand_as(weight).numpy())
    if "bias" in state:
        spec = spec.with_param("bias", np.zeros(tuple(state["bias"].shape), np.float32))
    return pipeline.replace_layer(layer, spec)


def _input(pipeline: Pipeline, image) -> torch.Tensor:
    if isinstance(image, LoadedImage):
        image = image.image
    if isinstance(image, torch.Tensor):
        return image if image.dim() == 4 else image.unsqueeze(0)
    return to_tensor(image, pipeline.input.mode)


@torch.no_grad()
def stage_output(pipeline: Pipeline, image, stage: int, device: str = "cpu") -> torch.Tensor:
    """``stage``'s output (1, C, H, W) of ``pipeline`` on ``image`` (a PIL image in the
    stack's input mode, a LoadedImage or a (1, C, H, W) tensor), on the CPU."""
    # The layers after the stage need not run.
    last_stage = len(pipeline.enabled_layers()) + pipeline.stage_offset
    if stage <= pipeline.stage_offset:
        pipeline = replace(pipeline, layers=())
    elif stage <= last_stage:
        pipeline = replace(pipeline,
                           layers=pipeline.layers[:layer_of_stage(pipeline, stage) + 1])
    results = Engine(device).run_all(pipeline, _input(pipeline, image), cache=False)
    if not 0 <= stage < len(results):
        raise FitError(f"the target stack has stages 0 to {len(results) - 1}, not {stage}")
    r = results[stage]
    if r.error:
        raise FitError(f"the target stack fails at stage {stage}: {r.error}")
    # a plain copy: the engine's tensors are inference tensors, which autograd refuses
    return r.output.detach().to("cpu", torch.float32).clone(memory_format=torch.contiguous_format)


def target_from_image(image, shape: Sequence[int]) -> torch.Tensor:
    """An image (a PIL image or LoadedImage) as a target for a stage of ``shape`` (C, H, W):
    gray for 1 channel, RGB for 3, in [0, 1] as ToTensor gives them, resized (antialiased
    bilinear) to H x W."""
    if isinstance(image, LoadedImage):
        image = image.image
    if len(shape) != 3:
        raise FitError(f"an image target needs a stage of channels x height x width, not "
                       f"{_shape_text(shape)}")
    c, h, w = (int(n) for n in shape)
    if c not in (1, 3):
        raise FitError(f"an image target has 1 (gray) or 3 (RGB) channels; the stage has {c}")
    return to_tensor(image, "gray" if c == 1 else "rgb", resize=(h, w))


@dataclass(frozen=True)
class Target:
    """What a fit aims at: ``kind`` "preset" (this stack with the fitted conv's kernels set
    to preset ``value``), "pipeline" (the stack in file ``value``, same stage number) or
    "image" (the image file ``value``, resized to the stage)."""

    kind: str
    value: str

    def describe(self) -> str:
        if self.kind == "preset":
            return f"the {self.value} kernel"
        return Path(self.value).name


def make_target(spec: Target, pipeline: Pipeline, image, stage: int, layer: int,
                device: str = "cpu") -> torch.Tensor:
    """The (1, C, H, W) tensor ``spec`` names for ``stage`` of ``pipeline`` on ``image``
    (``layer``: the conv whose kernels a preset replaces). Files that cannot be read, or a
    stack that does not run on the image, are a FitError with the reason."""
    if spec.kind == "preset":
        return stage_output(preset_pipeline(pipeline, layer, spec.value), image, stage,
                            device)
    if spec.kind == "pipeline":
        try:
            other = Pipeline.load(spec.value)
        except PipelineError as e:
            raise FitError(f"the target stack cannot be used: {e}") from None
        if other.input.mode != pipeline.input.mode:
            raise FitError(f"the target stack takes {other.input.mode} input but this one "
                           f"takes {pipeline.input.mode}")
        return stage_output(other, image, stage, device)
    if spec.kind == "image":
        try:
            loaded = load_image(spec.value)
        except ImageLoadError as e:
            raise FitError(str(e)) from None
        shape = stage_output(pipeline, image, stage, device).shape[1:]
        return target_from_image(loaded, shape)
    raise FitError(f"a target is a preset, a pipeline file or an image, not {spec.kind!r}")


def with_weights(pipeline: Pipeline, weights: Weights) -> Pipeline:
    """``pipeline`` with ``weights`` as exact params of their layers (shapes checked)."""
    for i, tensors in weights.items():
        spec = pipeline.layers[i]
        current = initial_state(spec)
        for pname, arr in tensors.items():
            if pname not in current or tuple(current[pname].shape) != tuple(arr.shape):
                raise FitError(f"layer {i} ({spec.display_name(i)}) has no {pname} of shape "
                               f"{_shape_text(arr.shape)}")
            spec = spec.with_param(pname, arr)
        pipeline = pipeline.replace_layer(i, spec)
    return pipeline


def layer_module(layer: LayerSpec, trainable: bool) -> nn.Module:
    """The layer's module with its exact tensors, built on the meta device so that torch's
    own random init never runs (it would draw from the process-wide generator)."""
    if not layer.op.learnable:
        return layer.op.build(dict(layer.args)).eval()
    with torch.device("meta"):
        module = layer.op.build(dict(layer.args))
    module.load_state_dict(initial_state(layer), strict=False, assign=True)
    for name, buf in list(module.named_buffers()):
        if buf.is_meta:  # integer counters (num_batches_tracked)
            module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
    for p in module.parameters():
        p.requires_grad_(trainable)
    return module.eval()


def _seeded_start(layer: LayerSpec, seed: int) -> LayerSpec:
    """The layer re-initialised from ``seed`` (kaiming normal weights, as a new layer gets)."""
    return replace(layer, params={}, init={**DEFAULT_INIT, "seed": int(seed)})


def _make_optimizer(name: str, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    # One L-BFGS iteration per step (with a line search): the fit is usually a linear least
    # squares problem, which L-BFGS solves in a few dozen steps.
    # max_eval bounds the line search too: its default (5/4 of max_iter = 1) leaves the
    # search no evaluation, and it then stalls at the first step it cannot accept.
    # Tolerances far below the defaults: the fit stops at float precision, not at a loss
    # that merely looks small.
    return torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=25, history_size=100,
                             line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                             tolerance_change=1e-15)


def fit(pipeline: Pipeline, image, target: torch.Tensor, stage: int, *,
        layers: Sequence[int] | None = None, optimizer: str = "adam", lr: float = 0.05,
        steps: int = 200, report_every: int = 5, seed: int | None = None,
        device: str = "cpu", dtype: torch.dtype = torch.float32
        ) -> Iterator[FitProgress | None]:
    """Fit ``layers`` (indices into ``pipeline.layers``; default: the layer making ``stage``)
    so that ``stage``'s output on ``image`` matches ``target`` ((C, H, W) or (1, C, H, W)).

    The fitted layers start from their current tensors, or with ``seed`` from a fresh
    seeded init (kaiming normal). Everything is checked and prepared before this returns
    (FitError); the generator then does one optimiser step per ``next()``, yields a
    FitProgress after step ``report_every``, ``2 * report_every``, ... and after the last
    step, ``None`` otherwise, and returns the FitResult.

    ``dtype`` float64 computes the fit in double precision (slower; the tensors are rounded
    to float32 at each report).
    """
    if optimizer not in OPTIMIZERS:
        raise FitError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}")
    if not (isinstance(lr, int | float) and lr > 0 and np.isfinite(lr)):
        raise FitError(f"the learning rate must be a positive number, not {lr!r}")
    if steps < 1 or report_every < 1:
        raise FitError("steps and report_every must be at least 1")
    last = layer_of_stage(pipeline, stage)
    layers = sorted(set(layers)) if layers is not None else [last]
    enabled = dict(pipeline.enabled_layers())
    for i in layers:
        if i not in enabled or i > last:
            raise FitError(f"layer {i} is not an enabled layer up to stage {stage}")
        if not enabled[i].op.learnable:
            raise FitError(f"layer {i} ({enabled[i].display_name(i)}) is a "
                           f"{enabled[i].type}, which has no weights to fit")
    base = pipeline  # the result keeps the layers' own init fields; params override them
    if seed is not None:
        for i in layers:
            pipeline = pipeline.replace_layer(i, _seeded_start(pipeline.layers[i], seed))
    dev = resolve_device(device)
    chain = [(i, layer) for i, layer in pipeline.enabled_layers() if i <= last]
    # The fixed front of the stack runs once, through the engine (exactly the shown stage).
    front = sum(1 for i, _ in chain if i < layers[0]) + pipeline.stage_offset
    x = stage_output(pipeline, image, front, device).to(dev, dtype)
    target = torch.as_tensor(target).to(dev, dtype)
    if target.dim() == 3:
        target = target.unsqueeze(0)
    modules = [(i, layer_module(layer, i in layers).to(dev, dtype)) for i, layer in chain
               if i >= layers[0]]
    model = nn.Sequential(*(m for _, m in modules))
    with torch.no_grad():
        shape = tuple(model(x).shape)
    if tuple(target.shape) != shape:
        raise FitError(f"the target is {_shape_text(target.shape[1:])} but stage {stage} is "
                       f"{_shape_text(shape[1:])}: the target must have the stage's shape")
    fitted = [(i, m) for i, m in modules if i in layers]
    params = [p for _, m in fitted for p in m.parameters()]
    if not params:
        raise FitError("the chosen layers have no parameters to fit")
    return _steps(base, model, fitted, x, target,
                  _make_optimizer(optimizer, params, lr), steps, report_every)


def _steps(pipeline, model, fitted, x, target, opt, steps, report_every
           ) -> Iterator[FitProgress | None]:
    losses: list[float] = []

    def weights() -> Weights:
        return {i: {n: p.detach().to("cpu", torch.float32).numpy().copy()
                    for n, p in m.named_parameters()} for i, m in fitted}

    # The optimiser minimises the loss relative to the starting loss: the same learning
    # rate works for dark and bright photos, and L-BFGS's curvature pairs stay well above
    # float32 noise as the loss shrinks by many orders of magnitude.
    with torch.no_grad():
        scale = 1.0 / max(float(F.mse_loss(model(x), target)), 1e-30)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), target) * scale
        loss.backward()
        return loss

    lbfgs = isinstance(opt, torch.optim.LBFGS)
    for step in range(1, steps + 1):
        if lbfgs:
            loss = opt.step(closure)
        else:
            loss = closure()
            opt.step()
        losses.append(float(loss.detach()) / scale)
        if not np.isfinite(losses[-1]):
            raise FitError(f"the loss became {losses[-1]} at step {step}: lower the "
                           f"learning rate")
        yield FitProgress(step, losses[-1], weights()) \
            if step % report_every == 0 or step == steps else None
    final = weights()
    return FitResult(with_weights(pipeline, final), final, losses)


def run_to_end(steps: Iterator[FitProgress | None]) -> FitResult:
    """Drive a :func:`fit` generator to its end (headless use and tests)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value

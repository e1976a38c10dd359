"""Grad-CAM: which parts of the input made the network say a class (Selvaraju et al., 2017).

For a class c and a stage with feature maps A (K x h x w), the gradients of the class score
y_c (the output value before any softmax) with respect to A are averaged over space: one
weight per channel, ``alpha_k = mean_ij dy_c / dA_kij``. The map is
``ReLU(sum_k alpha_k A_k)``, upsampled bilinearly to the input's size and scaled to [0, 1].
For a net that ends in global average pooling and one Linear layer this is CAM (Zhou et al.,
2016), ``ReLU(sum_k w_ck A_k)``, up to a positive factor (the tests check that).

The gradient is taken with respect to the chosen stage's output directly: the stages up to it
run without autograd, its output becomes a leaf that requires a gradient, and only the rest
of the stack is recorded. Weights are never changed, and no parameter needs a gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from .engine import Engine
from .pipeline import Pipeline
from .preprocess import normalize

__all__ = ["GradCam", "GradCamError", "default_stage", "grad_cam", "grad_cam_steps", "overlay",
           "spatial_stages"]


class GradCamError(ValueError):
    """Grad-CAM cannot be computed for this stack, class or stage (one clear message)."""


@dataclass(frozen=True)
class GradCam:
    target: int  # the class (index of the last stage)
    stage: int  # the stage whose feature maps are weighted
    stage_name: str
    score: float  # y_c, the output value of the class
    weights: np.ndarray  # alpha_k, (K,) float64
    cam: np.ndarray  # ReLU(sum_k alpha_k A_k) at the stage's size (h, w), float32, not scaled
    heatmap: np.ndarray  # the map at the input's size (H, W), float32 in [0, 1]


def _stage_shapes(pipeline: Pipeline, hw: tuple[int, int]) -> list[tuple[int, str, tuple]]:
    from .analysis import analyze

    analysis = analyze(pipeline, hw)
    if not analysis.ok:
        raise GradCamError(str(analysis.first_error.exception()))
    return [(k, s.stage_name, tuple(s.shape)) for k, s in enumerate(analysis.stages)]


def spatial_stages(pipeline: Pipeline, hw: tuple[int, int]) -> list[tuple[int, str]]:
    """(stage, name) of every layer stage with feature maps (C x h x w) a class score
    depends on: after the input (and its normalize stage), before the last stage."""
    first = 1 + pipeline.stage_offset
    shapes = _stage_shapes(pipeline, hw)
    return [(k, name) for k, name, shape in shapes[first:-1] if len(shape) == 3]


def default_stage(pipeline: Pipeline, hw: tuple[int, int]) -> int | None:
    """The last Conv2d's stage, taken after the activations right behind it (the feature
    maps the next layers read); else the last spatial stage; None without one."""
    spatial = dict(spatial_stages(pipeline, hw))
    if not spatial:
        return None
    enabled = [layer for _, layer in pipeline.enabled_layers()]
    first = 1 + pipeline.stage_offset
    convs = [first + k for k, layer in enumerate(enabled) if layer.type == "Conv2d"
             and first + k in spatial]
    if not convs:
        return max(spatial)
    stage = convs[-1]
    while (stage + 1 in spatial
           and enabled[stage + 1 - first].op.category == "activation"):
        stage += 1
    return stage


def grad_cam_steps(pipeline: Pipeline, image: torch.Tensor, *, target: int | None = None,
                   stage: int | None = None, device: str = "cpu"
                   ) -> Generator[str, None, GradCam]:
    """Grad-CAM one layer at a time: yields a progress text per stage, returns a
    :class:`GradCam` (``StopIteration.value``). ``image`` is the (1, C, H, W) input tensor
    in [0, 1]; ``target`` None is the top class, ``stage`` None :func:`default_stage`."""
    engine = Engine(device, channels_last=False)
    x = engine.prepare_input(pipeline, image)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    spatial = dict(spatial_stages(pipeline, hw))
    if stage is None:
        stage = default_stage(pipeline, hw)
        if stage is None:
            raise GradCamError("the stack has no stage with feature maps before its output "
                               "(Grad-CAM weighs a C x H x W stage)")
    if stage not in spatial:
        raise GradCamError(f"stage {stage} has no feature maps a class depends on; choose one "
                           f"of the stages {', '.join(map(str, sorted(spatial)))}")
    enabled = pipeline.enabled_layers()
    first = 1 + pipeline.stage_offset
    if pipeline.input.normalize is not None:
        x = normalize(x, pipeline.input.normalize)
    activation = None
    with torch.inference_mode(False):
        x = x.clone()
        for k, (i, layer) in enumerate(enabled):
            module = engine.build_module(layer)
            here = first + k
            if here <= stage:
                with torch.no_grad():
                    x = module(x)
                if here == stage:
                    activation = x.detach().requires_grad_(True)
                    x = activation
            else:
                with torch.enable_grad():
                    x = module(x)
            yield f"stage {here}: {layer.display_name(i)}"
        if x.dim() != 2 or x.shape[1] < 2:
            raise GradCamError(f"the last stage is {tuple(x.shape[1:])}, not a vector of class "
                               f"scores")
        n = int(x.shape[1])
        if target is None:
            target = int(torch.argmax(x[0]))
        if not 0 <= target < n:
            raise GradCamError(f"class {target} does not exist (the output has {n} values)")
        score = x[0, target]
        if not score.requires_grad:
            raise GradCamError(f"the class score does not depend on stage {stage}")
        (grads,) = torch.autograd.grad(score, activation)
        with torch.no_grad():
            alpha = grads.double().mean(dim=(2, 3))  # (1, K)
            cam = F.relu((alpha[:, :, None, None] * activation.double()).sum(dim=1,
                                                                             keepdim=True))
            up = F.interpolate(cam.float(), size=hw, mode="bilinear", align_corners=False)[0, 0]
            lo, hi = float(up.min()), float(up.max())
            heat = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
    names = pipeline.stage_names()
    return GradCam(target, stage, names[stage], float(score.detach()), alpha[0].cpu().numpy(),
                   cam[0, 0].float().cpu().numpy(), heat.clamp(0, 1).cpu().numpy())


def grad_cam(pipeline: Pipeline, image: torch.Tensor, *, target: int | None = None,
             stage: int | None = None, device: str = "cpu",
             cancelled: Callable[[], bool] | None = None) -> GradCam:
    """:func:`grad_cam_steps` run to the end (``cancelled`` polled between stages)."""
    steps = grad_cam_steps(pipeline, image, target=target, stage=stage, device=device)
    while True:
        if cancelled is not None and cancelled():
            raise GradCamError("stopped")
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    """The heat map over ``image`` (uint8 (H, W) gray or (H, W, 3) RGB):
    ``round((1 - a) * image + a * turbo(round(255 * heat)))`` as uint8 RGB."""
    from .colormaps import colormap_lut

    a = float(np.clip(opacity, 0.0, 1.0))
    base = image.astype(np.float64)
    if base.ndim == 2:
        base = np.repeat(base[:, :, None], 3, axis=2)
    index = np.clip(np.floor(heatmap * 255 + 0.5), 0, 255).astype(np.uint8)
    heat_rgb = colormap_lut("turbo")[index]
    blend = (1.0 - a) * base + a * heat_rgb.astype(np.float64)
    return np.clip(np.floor(blend + 0.5), 0, 255).astype(np.uint8)

"""What a channel looks for: the input image that makes it respond most.

Gradient ascent on the input (from seeded noise) maximises the channel's mean response at a
stage, with the usual regularisers of feature visualisation: a random shift (jitter, a
``torch.roll``) before every step, a small Gaussian blur every few steps, and a clamp to the
input's range [0, 1]. The response is the channel's positive part, ``relu(a)``: after a
ReLU (where trained features are usually read) that is the activation itself; for a linear
stage such as a bare Conv2d, the plain mean would depend only on the kernel's sum (every
image with the same borders gives it), while the mean of the positive part asks for the
pattern the kernel detects. :func:`visualise` is a generator for a job runner: one step per
``next()``, a :class:`VisualProgress` every few steps (``None`` between), and a
:class:`VisualResult` at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .edits import materialize
from .engine import resolve_device
from .fitting import FitError, layer_module, layer_of_stage
from .pipeline import Pipeline
from .preprocess import normalize

__all__ = ["VisualProgress", "VisualResult", "channel_response", "kernel_picture",
           "picture", "visualise"]

DEFAULT_SIZE = (128, 128)
_BLUR = torch.tensor([1.0, 2.0, 1.0]) / 4.0  # binomial: a Gaussian of sigma about 0.7


@dataclass(frozen=True)
class VisualProgress:
    step: int
    response: float  # the channel's mean positive response before this step's update
    image: np.ndarray  # (C, H, W) float32 in [0, 1], the input after this step


@dataclass
class VisualResult:
    image: np.ndarray  # (C, H, W) float32 in [0, 1]
    responses: list[float] = field(default_factory=list)  # one per step
    start_response: float = 0.0  # on the starting noise


def _chain(pipeline: Pipeline, stage: int) -> nn.Module:
    """The stack from its input to ``stage`` as one module (normalize first, if any)."""
    last = layer_of_stage(pipeline, stage)
    modules: list[nn.Module] = []
    norm = pipeline.input.normalize
    if norm is not None:
        modules.append(_Normalize(norm))
    for i, layer in pipeline.enabled_layers():
        if i > last:
            break
        modules.append(layer_module(layer, trainable=False))
    return nn.Sequential(*modules).eval()


class _Normalize(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.value)


def channel_response(model: nn.Module, image: torch.Tensor, channel: int) -> torch.Tensor:
    """The objective: the mean of ``relu`` of the channel's values (a scalar tensor)."""
    out = model(image)
    if out.dim() == 4:
        values = out[:, channel]
    elif out.dim() == 2:  # a vector stage: the channel is one value
        values = out[:, channel:channel + 1]
    else:
        raise FitError(f"a stage of shape {tuple(out.shape[1:])} has no channels to look at")
    return F.relu(values).mean()


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = torch.outer(_BLUR, _BLUR).to(x)[None, None].expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=c)


def visualise(pipeline: Pipeline, stage: int, channel: int, *,
              size: tuple[int, int] | None = None, steps: int = 200, lr: float = 0.05,
              seed: int = 0, jitter: int = 2, blur_every: int = 4, report_every: int = 10,
              device: str = "cpu") -> Iterator[VisualProgress | None]:
    """Gradient ascent on the input for ``channel`` of ``stage``.

    ``size`` (H, W) is the image's size (default: the size the stack's input fixes, else
    128 x 128). Starts from uniform noise in [0.4, 0.6] drawn from a generator seeded with
    ``seed``; each step rolls the image by up to ``jitter`` pixels (seeded too), takes an
    Adam step on ``-response``, and clamps to [0, 1]; every ``blur_every`` steps a 3 x 3
    binomial blur. Checks its arguments before returning (FitError).
    """
    if steps < 1 or report_every < 1 or blur_every < 0 or jitter < 0:
        raise FitError("steps and report_every must be at least 1, jitter and blur_every "
                       "at least 0")
    if not (lr > 0 and np.isfinite(lr)):
        raise FitError(f"the learning rate must be a positive number, not {lr!r}")
    size = size or pipeline.input.fixed_hw or DEFAULT_SIZE
    dev = resolve_device(device)
    model = _chain(pipeline, stage).to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    start = 0.4 + 0.2 * torch.rand((1, pipeline.input.channels, *size), generator=gen)
    with torch.no_grad():
        probe = model(start.to(dev))
    channels = probe.shape[1]
    if not 0 <= channel < channels:
        raise FitError(f"stage {stage} has channels 0 to {channels - 1}, not {channel}")
    return _ascent(model, start.to(dev), channel, steps, lr, gen, jitter, blur_every,
                   report_every)


def _ascent(model, start, channel, steps, lr, gen, jitter, blur_every, report_every
            ) -> Iterator[VisualProgress | None]:
    image = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([image], lr=lr)
    responses: list[float] = []
    with torch.no_grad():
        start_response = float(channel_response(model, start, channel))
    for step in range(1, steps + 1):
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                  if jitter else (0, 0))
        opt.zero_grad(set_to_none=True)
        response = channel_response(model, torch.roll(image, (dy, dx), dims=(2, 3)),
                                    channel)
        (-response).backward()
        opt.step()
        with torch.no_grad():
            if blur_every and step % blur_every == 0:
                image.copy_(_blur(image))
            image.clamp_(0.0, 1.0)
        responses.append(float(response.detach()))
        if step % report_every == 0 or step == steps:
            yield VisualProgress(step, responses[-1], _numpy(image))
        else:
            yield None
    return VisualResult(_numpy(image), responses, start_response)


def _numpy(image: torch.Tensor) -> np.ndarray:
    return image.detach()[0].to("cpu", torch.float32).numpy().copy()


def picture(image: np.ndarray) -> np.ndarray:
    """A (C, H, W) image in [0, 1] as uint8 (H, W) for gray or (H, W, 3) for RGB."""
    u8 = np.clip(np.floor(np.asarray(image, np.float64) * 255 + 0.5), 0, 255).astype(np.uint8)
    return u8[0] if u8.shape[0] == 1 else np.ascontiguousarray(u8[:3].transpose(1, 2, 0))


def kernel_picture(pipeline: Pipeline, layer: int, channel: int) -> np.ndarray | None:
    """Output channel ``channel``'s kernel of conv ``layer`` as a picture: 0 at mid-grey,
    ±max|w| at black and white; RGB when it has 3 input channels, else the input channels
    side by side. None for a layer without a kernel."""
    spec = pipeline.layers[layer]
    if spec.op.kernel is None:
        return None
    weight = materialize(spec).get("weight")
    if weight is None or weight.ndim != 4 or not 0 <= channel < weight.shape[0]:
        return None
    w = np.asarray(weight[channel], np.float64)  # (in / groups, kh, kw)
    scale = float(np.abs(w).max()) or 1.0
    u8 = np.clip(np.floor(128 + 127 * w / scale + 0.5), 0, 255).astype(np.uint8)
    if u8.shape[0] == 3:
        return np.ascontiguousarray(u8.transpose(1, 2, 0))
    gap = np.full((u8.shape[1], 1), 0, np.uint8)
    parts = [p for c in u8 for p in (c, gap)][:-1]
    return np.concatenate(parts, axis=1)


def run_to_end(steps: Iterator[VisualProgress | None]) -> VisualResult:
    """Drive a :func:`visualise` generator to its end (headless use and tests)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value

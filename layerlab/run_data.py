"""What travels between the window and its worker thread: the run request, a stage ready to
show, the run's summary, and how torch is loaded (its threads, the device it found). Plain
data, no Qt: the controller builds requests, the worker fills views and summaries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.pipeline import DEFAULT_MEMORY_BUDGET, Pipeline

if TYPE_CHECKING:
    from .core.engine import StageResult
    from .core.models import ModelSpec


def configure_threads() -> int:
    """Leave one core for the GUI thread on small machines; returns torch's thread count."""
    import torch

    cores = os.cpu_count() or 1
    threads = max(1, cores - 1) if cores <= 4 else cores - 2
    torch.set_num_threads(threads)
    return threads


@dataclass(frozen=True)
class TorchInfo:
    """What the worker found once torch was imported."""

    cuda: bool  # a CUDA device torch can use
    cuda_name: str | None  # its name, for the device box's tooltip
    threads: int  # torch's CPU threads


def load_torch(set_threads: bool = False) -> TorchInfo:
    """Import torch and everything that runs it (the engine, the renderer); with
    ``set_threads``, leave a core for the GUI (:func:`configure_threads`)."""
    import torch

    from .core import engine, render  # noqa: F401 - imported here, off the GUI thread

    threads = configure_threads() if set_threads else torch.get_num_threads()
    cuda = bool(torch.cuda.is_available())
    return TorchInfo(cuda, torch.cuda.get_device_name(0) if cuda else None, threads)


@dataclass(frozen=True)
class RenderOptions:
    normalize: str = "channel"
    colormap: str = "gray"
    bins: int = 64


@dataclass(frozen=True)
class RunRequest:
    pipeline: Pipeline
    image: Any  # PIL image (already the preview size) or a (1, C, H, W) tensor
    options: RenderOptions = RenderOptions()
    device: str = "auto"
    render_only: bool = False  # re-render the last results with new options, no torch run
    generation: int = 0
    memory_budget: int = DEFAULT_MEMORY_BUDGET  # bytes of outputs and weights a run may keep
    model: ModelSpec | None = None  # a torchvision model to run instead of the pipeline
    # The stages drawn in full (pictures, values, statistics); the others get thumbnails.
    # None: every stage in full (tests, scripts).
    shown: frozenset[int] | None = None


@dataclass
class StageView:
    """One stage, ready to show: the engine's result plus everything the views draw.

    A stage the window does not show has only its ``thumb``; its full view (``rendered``
    and ``values``) comes once it is shown (``RunController.viewReady``)."""

    generation: int
    result: StageResult
    rendered: Any = None  # render.RenderedStage; None when failed or not drawn in full
    values: np.ndarray | None = None  # exact float32 values (C, H, W) or (N,), for hover
    thumb: Any = None  # stage_draw.Thumbnail for the strip; None for a vector or a failure

    @property
    def full(self) -> bool:
        """Its full view is here (a failed stage has none)."""
        return self.rendered is not None


@dataclass
class RunSummary:
    generation: int
    stages: int
    total_seconds: float
    cancelled: bool = False
    error: str | None = None
    device: str = "cpu"
    timings: list[float] = field(default_factory=list)
    classes: tuple[str, ...] = ()  # a model's class names (its weights' categories)
    # A model's editable modules with their opened tensors (core.model_edits.ModuleWeights
    # by path; the same read-only object every run of that model)
    model_weights: dict | None = None

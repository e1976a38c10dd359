"""Runs a pipeline stage by stage with torch, caching each stage's output.

Each stage's cache key chains the image key with the keys of every layer up to it, so after an
edit at stage k the stages before k are reused and only k onwards are recomputed. Modules are
kept per position and, when only weights change, updated in place instead of rebuilt.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from .analysis import OverBudget, analyze, check_memory, same_analysis
from .edits import initial_state
from .memory import keep_freed_memory
from .pipeline import DEFAULT_MEMORY_BUDGET, LayerSpec, Pipeline
from .preprocess import normalize, resize_crop
from .specs import Shape


def _module_with_state(layer: LayerSpec) -> nn.Module:
    """The torch module holding ``initial_state(layer)``, built without torch's own random
    init (built on the meta device, then given the tensors): a 4 GB Linear is allocated
    once, not initialised twice."""
    op = layer.op
    if not op.learnable:
        return op.build(dict(layer.args))
    with torch.device("meta"):
        module = op.build(dict(layer.args))
    module.load_state_dict(initial_state(layer), strict=False, assign=True)
    for name, buf in list(module.named_buffers()):
        if buf.is_meta:  # integer counters (num_batches_tracked): torch starts them at 0
            module._buffers[name] = torch.zeros(buf.shape, dtype=buf.dtype)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class RunError(RuntimeError):
    """The whole run was refused before any stage ran (e.g. the memory budget)."""


@dataclass
class StageResult:
    index: int  # stage number: 0 is the input, then one per enabled layer
    layer_index: int  # position in pipeline.layers; -1 for the input
    name: str
    type: str
    output: torch.Tensor | None  # (1, C, H, W) or (1, N) on the engine's device
    shape: Shape  # without the batch dimension
    seconds: float  # compute time of this stage (0 when served from the cache)
    cached: bool
    error: str | None = None
    formula: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunError("CUDA was requested but no CUDA device is available; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise RunError(f"device must be auto, cpu or cuda, not {device!r}")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _ModuleSlot:
    layer: LayerSpec  # the spec the module's weights currently match
    module: nn.Module


class Engine:
    """Not thread-safe: one engine per worker thread."""

    def __init__(self, device: str = "auto", *, channels_last: bool | None = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET):
        keep_freed_memory()  # stage outputs reuse the last run's pages instead of faulting
        self.device = resolve_device(device)
        # channels_last is much faster for small/depthwise convs and pooling on CPU; on CUDA
        # cuDNN picks its own layouts well, so keep the tutorials' NCHW there.
        self.channels_last = (self.device.type == "cpu") if channels_last is None \
            else channels_last
        self.memory_budget = memory_budget
        self._slots: dict[int, _ModuleSlot] = {}
        self._stage_cache: list[tuple[str, torch.Tensor]] = []
        self._input_cache: tuple[tuple, torch.Tensor, torch.Tensor] | None = None
        self._normalized_cache: tuple | None = None
        self._last_analysis: tuple | None = None  # (pipeline, hw, its analysis)
        # Numbers each prepared input: stage keys use it, not id(image), because a freed
        # tensor's id is reused by the next one and would hit stale stages.
        self._input_serial = 0
        self.rebuilds = 0  # modules constructed (for tests of the incremental path)
        self.weight_updates = 0  # in-place weight updates

    def set_device(self, device: str) -> None:
        new = resolve_device(device)
        if new != self.device:
            self.device = new
            self.channels_last = new.type == "cpu"
            self.clear()

    def forget_outputs(self) -> None:
        """Drop cached stage outputs but keep the built modules (the next run recomputes)."""
        self._stage_cache.clear()

    def clear(self) -> None:
        self._slots.clear()
        self._stage_cache.clear()
        self._input_cache = None
        self._normalized_cache = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- input ---
    def prepare_input(self, pipeline: Pipeline, image: torch.Tensor) -> torch.Tensor:
        """(1, C, H, W) float input on the device, resized if the pipeline asks for it."""
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4 or image.shape[0] != 1:
            raise RunError(f"the input must be 1 x C x H x W, not {tuple(image.shape)}")
        if image.shape[1] != pipeline.input.channels:
            raise RunError(f"the pipeline expects {pipeline.input.mode} input "
                           f"({pipeline.input.channels} channels) but the image tensor has "
                           f"{image.shape[1]}")
        inp = pipeline.input
        ident = (id(image), image._version, tuple(image.shape), inp.resize, inp.center_crop,
                 str(self.device), self.channels_last)
        if self._input_cache and self._input_cache[0] == ident:
            return self._input_cache[2]
        x = image.to(self.device, torch.float32)
        x = resize_crop(x, inp.resize, inp.center_crop)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # Keep a reference to ``image`` so its id cannot be reused by another tensor.
        self._input_cache = (ident, image, x)
        self._input_serial += 1
        return x

    def _normalized(self, x: torch.Tensor, pipeline: Pipeline) -> torch.Tensor:
        """The normalised input, kept with the prepared input while both stay the same."""
        norm = pipeline.input.normalize
        hit = self._normalized_cache
        if hit is not None and hit[0] is x and hit[1] == norm:
            return hit[2]
        y = normalize(x, norm)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        self._normalized_cache = (x, norm, y)
        return y

    # --- modules ---
    def module_for(self, position: int, layer: LayerSpec) -> nn.Module:
        slot = self._slots.get(position)
        if slot is not None and slot.layer.structure_key == layer.structure_key:
            if slot.layer.key != layer.key:
                self._load_weights(slot.module, slot.layer, layer)
                slot.layer = layer
                self.weight_updates += 1
            return slot.module
        module = self.build_module(layer)
        self._slots[position] = _ModuleSlot(layer, module)
        self.rebuilds += 1
        return module

    def build_module(self, layer: LayerSpec) -> nn.Module:
        """Construct the module with the layer's exact tensors (explicit params, else its
        seeded init) on the CPU, then move it to the device."""
        with torch.inference_mode(False):
            module = _module_with_state(layer)
        module = module.to(self.device)
        if self.channels_last and layer.op.kernel is not None:  # conv kernels: 4-D weights
            module = module.to(memory_format=torch.channels_last)
        return module.eval()

    def _load_weights(self, module: nn.Module, old: LayerSpec, layer: LayerSpec) -> None:
        """Update weights in place; a kernel-cell edit copies just the edited tensor."""
        state = module.state_dict()
        with torch.no_grad():
            if dict(old.init) == dict(layer.init) and set(old.params) == set(layer.params):
                for pname, arr in layer.params.items():
                    if old.params[pname] is not arr:
                        state[pname].copy_(torch.from_numpy(arr.copy()))
                return
            for pname, tensor in initial_state(layer).items():
                state[pname].copy_(tensor)

    # --- running ---
    def run(self, pipeline: Pipeline, image: torch.Tensor, *,
            cancel: Callable[[], bool] | None = None, cache: bool = True,
            image_key: str | None = None) -> Iterator[StageResult]:
        """Yield a StageResult for the input and for each enabled layer, in order.

        A layer whose shape does not chain, or that fails in torch, ends the run with a
        result carrying ``error``; earlier results stay valid. ``cancel`` is polled between
        stages. With ``cache=False`` nothing is kept (full-size exports).
        """
        with torch.inference_mode():
            yield from self._run(pipeline, image, cancel, cache, image_key)

    def run_all(self, pipeline: Pipeline, image: torch.Tensor, **kw) -> list[StageResult]:
        return list(self.run(pipeline, image, **kw))

    def _analysis_of(self, pipeline: Pipeline, hw: tuple[int, int]):
        """``analyze(pipeline, hw)``, kept for the next run on the same size of the same
        pipeline or one that differs only in parameter values (a rerun, an edited kernel
        cell)."""
        last = self._last_analysis
        if last is not None and last[1] == hw and same_analysis(last[0], pipeline):
            self._last_analysis = (pipeline, hw, last[2])
            return last[2]
        analysis = analyze(pipeline, hw)
        self._last_analysis = (pipeline, hw, analysis)
        return analysis

    def _run(self, pipeline, image, cancel, cache, image_key):
        t0 = time.perf_counter()
        x = self.prepare_input(pipeline, image)
        input_seconds = time.perf_counter() - t0
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        names = pipeline.stage_names()
        enabled = pipeline.enabled_layers()

        # Shapes and memory first: refuse over-budget stacks before allocating anything, and
        # know where the chain breaks so the stages before it still run.
        analysis = self._analysis_of(pipeline, hw)
        try:
            check_memory(analysis, self.memory_budget, cached=cache)
        except OverBudget as e:
            raise RunError(str(e)) from None
        statuses = [s for s in analysis.layers if s.stage is not None]
        bad = analysis.first_error
        broken = None if bad is None else (len(statuses), str(bad.exception()))

        key = hashlib.blake2b(
            repr((image_key or ("input", self._input_serial), tuple(image.shape), image._version,
                  pipeline.input.to_dict(), str(self.device))).encode(),
            digest_size=16).hexdigest()
        yield StageResult(0, -1, "input", "Input", x, tuple(x.shape[1:]), input_seconds, False)
        offset = pipeline.stage_offset
        if offset:  # transforms.Normalize, its own stage
            if cancel is not None and cancel():
                return
            t0 = time.perf_counter()
            x = self._normalized(x, pipeline)
            _sync(self.device)
            yield StageResult(1, -1, names[1], "Normalize", x, tuple(x.shape[1:]),
                              time.perf_counter() - t0, False,
                              formula=pipeline.input.normalize.text())

        new_cache: list[tuple[str, torch.Tensor]] = []
        for pos, (i, layer) in enumerate(enabled):
            if cancel is not None and cancel():
                break
            stage = pos + 1 + offset
            if broken is not None and broken[0] == pos:
                yield StageResult(stage, i, names[stage], layer.type, None, (), 0.0, False,
                                  broken[1])
                break
            key = hashlib.blake2b((key + layer.key).encode(), digest_size=16).hexdigest()
            hit = self._stage_cache[pos] if pos < len(self._stage_cache) else None
            if hit is not None and hit[0] == key:
                x = hit[1]
                new_cache.append(hit)
                yield StageResult(stage, i, names[stage], layer.type, x, statuses[pos].shape,
                                  0.0, True, formula=statuses[pos].formula)
                continue
            # Stages after a miss can never hit again; drop them now to free memory early.
            del self._stage_cache[pos:]
            t0 = time.perf_counter()
            try:
                module = self.module_for(pos, layer)
                y = module(x)
                _sync(self.device)
            except torch.cuda.OutOfMemoryError:
                self.clear()
                yield StageResult(stage, i, names[stage], layer.type, None, (), 0.0, False,
                                  f"layer {i} ({names[stage]}): out of GPU memory; switch the "
                                  f"device to CPU or use a smaller image")
                break
            except Exception as e:  # torch raises many types; the message is what matters
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                yield StageResult(stage, i, names[stage], layer.type, None, (), 0.0, False,
                                  f"layer {i} ({names[stage]}): {layer.type} failed: {msg}")
                break
            seconds = time.perf_counter() - t0
            x = y
            if cache:
                new_cache.append((key, y))
            yield StageResult(stage, i, names[stage], layer.type, y, tuple(y.shape[1:]),
                              seconds, False, formula=statuses[pos].formula)
        if cache:
            self._stage_cache = new_cache

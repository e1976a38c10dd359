"""torchvision architectures: build, find local weights, stages by module path.

The API (no Qt; torchvision is imported inside the functions, so importing this module is
cheap)::

    names = classification_models()            # resnet18, vgg16, ... (torchvision's list)
    opened = open_model("resnet18")             # seeded random weights (seed 0)
    opened = open_model("resnet18", weights=TRAINED)          # the file in torch's hub cache
    opened = open_model("resnet18", weights="my-resnet.pt")   # a state_dict of your own
    results = run_model(opened, image)          # list[StageResult], as the engine yields them

``image`` is a (1, 3, H, W) or (3, H, W) float tensor in [0, 1] (``imageio.to_tensor``).
Stage 0 is the photo after the weights' resize and center crop, stage 1 the normalised
tensor, then one stage per call of a leaf module in execution order, named by module path
(``layer1.0.conv1``; a module called again, such as a ResNet block's shared ``relu``, gets
``#2``, ``#3``); a container module (a SqueezeNet ``Fire``, a DenseNet block, a MobileNet
inverted residual) is a stage too, right after its modules, when its forward computes more
after its last module (a concatenation, a residual addition); and a last ``output`` stage
when the model's output is not the last module's (a flatten or mean after it). The results are the engine's :class:`StageResult` objects,
so every view, the renderer and the export read them unchanged.

:class:`OpenedModel` holds ``module`` (in evaluation mode), ``input_spec`` (the pipeline's
:class:`InputSpec`: resize, center_crop, normalize), ``interpolation``, ``categories``
(ImageNet's 1000 names from the weights' metadata, offline), ``stages`` (name, module path,
type, shape of every stage, known before any image), ``parameter_count`` and ``report``
(what a weights file gave). ``opened.stage_paths`` are the module stages' paths.

Nothing is ever downloaded: :data:`TRAINED` weights are looked for where torchvision keeps
them (``torch.hub.get_dir()/checkpoints/<file name of the Weights enum's url>``), and a clear
:class:`ModelError` says where when the file is not there. Memory is counted before anything
is allocated (the model is first built on torch's meta device and run there once for every
stage's shape): a model whose weights and stage outputs exceed the memory budget is refused
with :class:`ModelOverBudget`.

AlexNet and VGG are plain chains of supported layers: :func:`to_pipeline` turns them into an
editable LayerLab :class:`Pipeline` (layers named by module path, exact tensors).
"""

from __future__ import annotations

import fnmatch
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from .engine import StageResult
from .model_build import (
    RANDOM,
    TRAINED,
    ModelError,
    WeightsReport,
    _build_on_meta,
    _build_random,
    _build_trained,
    _default_weights,
    _enum_by_file,
    _enum_for,
    _first_line,
    _is_enum_name,
    _load_file,
    _read,
    check_name,
    classification_models,
    head_classes,
    hub_weights_path,
)
from .model_edits import ModuleWeights, WeightEdit, apply_edits, editable_modules
from .pipeline import DEFAULT_MEMORY_BUDGET, InputSpec, format_bytes
from .preprocess import Normalize, resize_crop

__all__ = ["DEFAULT_MEMORY_BUDGET", "RANDOM", "TRAINED", "ModelError", "ModelOverBudget",
           "ModelPlan", "ModelSpec", "ModelStage", "OpenedModel", "WeightsReport", "check_memory",
           "check_name", "classification_models", "hub_weights_path", "open_model", "open_spec",
           "plan_model", "preprocess", "run_model", "select_stages", "to_pipeline",
           "is_chain_model", "check_stack_memory", "stack_need_bytes", "stack_steps"]

BYTES = 4  # float32


class ModelOverBudget(ModelError):
    """The model's weights and stage outputs would need more than the memory budget."""

    def __init__(self, message: str, need: int, budget: int):
        super().__init__(message)
        self.need = need
        self.budget = budget


@dataclass(frozen=True)
class ModelStage:
    index: int  # stage number: 0 input, 1 normalize, then the modules
    name: str  # the module path, with "#k" for its k-th call (k >= 2); "input", ...
    path: str  # the module path ("" for input, normalize and output)
    type: str  # the module's class name; "Input", "Normalize", "Output"
    shape: tuple[int, ...]  # without the batch
    call: int = 1  # which call of the module this is
    parameter_count: int = 0  # the module's own parameters (its first call only)
    text: str = ""  # the module as torch prints it

    @property
    def bytes(self) -> int:
        return BYTES * math.prod(self.shape)


@dataclass(frozen=True)
class ModelPlan:
    """Everything known about a model before its weights exist (built on the meta device)."""

    name: str
    weights_enum: str  # e.g. "ResNet18_Weights.IMAGENET1K_V1": where categories come from
    input_spec: InputSpec
    interpolation: str  # "bilinear" or "bicubic" (torchvision's InterpolationMode value)
    stages: tuple[ModelStage, ...]
    parameter_count: int
    tensor_bytes: int  # parameters and floating-point buffers
    clone: frozenset[tuple[str, int]]  # (path, call) whose output a later op changes in place
    output_stage: bool  # whether a last "output" stage follows the modules

    @property
    def outputs_bytes(self) -> int:
        return sum(s.bytes for s in self.stages)

    @property
    def need_bytes(self) -> int:
        """Weights plus every stage's output: what the window holds after a run."""
        return self.tensor_bytes + self.outputs_bytes


@dataclass
class OpenedModel:
    plan: ModelPlan
    module: nn.Module
    weights: str  # what the weights are, in words ("random, seed 0", "trained: ...", file)
    seed: int
    categories: tuple[str, ...]
    report: WeightsReport | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    applied_edits: tuple[WeightEdit, ...] = ()  # the weight edits the module computes with
    _editable: dict[str, ModuleWeights] | None = field(default=None, repr=False)

    @property
    def editable(self) -> dict[str, ModuleWeights]:
        """The Conv2d / ConvTranspose2d / Linear modules by path, with their opened tensors
        (taken before the first edit: :func:`~.model_edits.apply_edits` never writes them)."""
        if self._editable is None:
            self._editable = editable_modules(self.module)
        return self._editable

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def input_spec(self) -> InputSpec:
        return self.plan.input_spec

    @property
    def interpolation(self) -> str:
        return self.plan.interpolation

    @property
    def stages(self) -> tuple[ModelStage, ...]:
        return self.plan.stages

    @property
    def stage_paths(self) -> list[str]:
        return [s.path for s in self.plan.stages if s.path]

    @property
    def parameter_count(self) -> int:
        return self.plan.parameter_count

    @property
    def is_chain(self) -> bool:
        """Whether :func:`to_pipeline` can turn the model into an editable stack."""
        return type(self.module).__name__ in CHAIN_MODELS


# --- the plan: meta build and one meta forward ----------------------------------------------

def _input_of(name: str, size: tuple[int, int] | None) -> tuple[InputSpec, str]:
    """The weights' ``transforms()`` as LayerLab's input: resize of the shorter side, center
    crop, ImageNet normalisation; ``size`` replaces the crop (the resize keeps its ratio)."""
    t = _default_weights(name).transforms()
    resize, crop = int(t.resize_size[0]), int(t.crop_size[0])
    crop_hw = (crop, crop)
    if size is not None:
        crop_hw = (int(size[0]), int(size[1]))
        resize = max(1, round(max(crop_hw) * resize / crop))
    spec = InputSpec("rgb", resize, crop_hw, Normalize(tuple(t.mean), tuple(t.std)))
    return spec, str(t.interpolation.value)


def _modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module but the model itself: leaves, and containers (a Fire, a dense block,
    an inverted residual), whose output is a stage when their forward adds an operation
    after their last module (a concatenation, a residual addition)."""
    return [(path, m) for path, m in model.named_modules() if path]


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(path, m) for path, m in model.named_modules()
            if path and next(m.children(), None) is None]


def plan_model(name: str, *, size: tuple[int, int] | None = None,
               num_classes: int | None = None) -> ModelPlan:
    """Stages, shapes, parameter count and memory of ``name`` without allocating it: built on
    the meta device and run there once on an input of the crop size. ``num_classes``
    replaces the 1000 ImageNet classes (a fine-tuned head)."""
    name = check_name(name)
    spec, interpolation = _input_of(name, size)
    model = _build_on_meta(name, num_classes).eval()
    params = sum(p.numel() for p in model.parameters())
    tensor_bytes = sum(t.numel() * t.element_size() for t in
                       (*model.parameters(), *model.buffers()) if t.is_floating_point())
    h, w = spec.center_crop
    order: list[tuple[str, int, nn.Module, torch.Tensor]] = []
    versions: list[int] = []  # each output's version counter when it was recorded
    calls: dict[str, int] = {}
    leaves = {path for path, _ in _leaves(model)}

    def hook(path):
        def record(module, args, out):
            if not isinstance(out, torch.Tensor):
                return
            calls[path] = calls.get(path, 0) + 1
            if path not in leaves and order and out is order[-1][3]:
                return  # a container handing on its last module's output: no new stage
            order.append((path, calls[path], module, out))
            versions.append(out._version)
        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in _modules(model)]
    try:
        with torch.no_grad():  # not inference_mode: the version counters below need it
            out = model(torch.empty(1, 3, h, w, device="meta"))
    except Exception as e:  # a size the architecture cannot take
        raise ModelError(f"{name} cannot run on a {h} x {w} input: "
                         f"{_first_line(e)}") from None
    finally:
        for handle in handles:
            handle.remove()
    # An output whose version moved on was changed in place later (ReLU(inplace=True) on a
    # BatchNorm's output, ResNet's `out += identity`): those are cloned when recorded.
    clone = frozenset((path, call) for (path, call, _, t), v in zip(order, versions,
                                                                     strict=True)
                      if t._version != v)
    stages = [ModelStage(0, "input", "", "Input", (3, h, w)),
              ModelStage(1, "normalize", "", "Normalize", (3, h, w),
                         text=spec.normalize.text())]
    for path, call, module, t in order:
        own = sum(p.numel() for p in module.parameters(recurse=False)) if call == 1 else 0
        stages.append(ModelStage(len(stages), path if call == 1 else f"{path}#{call}", path,
                                 type(module).__name__, tuple(t.shape[1:]), call, own,
                                 _module_text(module)))
    output_stage = not isinstance(out, torch.Tensor) or not order or out is not order[-1][3]
    if output_stage and isinstance(out, torch.Tensor):
        stages.append(ModelStage(len(stages), "output", "", "Output", tuple(out.shape[1:])))
    output_stage = output_stage and isinstance(out, torch.Tensor)
    return ModelPlan(name, f"{type(_default_weights(name)).__name__}."
                     f"{_default_weights(name).name}", spec, interpolation, tuple(stages),
                     params, tensor_bytes, clone, output_stage)


def _module_text(module: nn.Module) -> str:
    text = repr(module)
    return text if "\n" not in text else type(module).__name__


def check_memory(plan: ModelPlan, budget: int) -> None:
    """Refuse (ModelOverBudget) a model whose weights and stage outputs exceed ``budget``."""
    need = plan.need_bytes
    if need <= budget:
        return
    h, w = plan.input_spec.center_crop
    raise ModelOverBudget(
        f"{plan.name} needs about {format_bytes(need)}: {format_bytes(plan.tensor_bytes)} of "
        f"weights ({plan.parameter_count:,} parameters) and {format_bytes(plan.outputs_bytes)} "
        f"for its {len(plan.stages)} stage outputs at {h} x {w}, more than the memory budget "
        f"of {format_bytes(budget)}", need, budget)


# --- opening ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """What to open, as an immutable snapshot (the window hands it to its worker thread,
    which opens the model there: building VGG takes seconds)."""

    name: str
    weights: str | None = None  # None: random; TRAINED or a Weights name; or a file path
    seed: int = 0
    edits: tuple[WeightEdit, ...] = ()  # typed weight values on top of those (model_edits)

    @property
    def opened_as(self) -> ModelSpec:
        """The same model without its edits: what has to be built."""
        return replace(self, edits=()) if self.edits else self

    def text(self) -> str:
        what = (f"random weights, seed {self.seed}" if self.weights in (None, RANDOM)
                else "trained weights" if _looks_trained(self.weights)
                else f"weights {Path(self.weights).name}")
        return f"{self.name} ({what})"


def _looks_trained(weights: str) -> bool:
    return weights == TRAINED or (weights.isupper() and "." not in weights)


def open_spec(spec: ModelSpec, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> OpenedModel:
    """:func:`open_model` of a :class:`ModelSpec`, with its weight edits applied."""
    opened = open_model(spec.name, spec.weights, seed=spec.seed, memory_budget=memory_budget)
    apply_edits(opened, spec.edits)
    return opened


def open_model(name: str, weights: str | os.PathLike | None = None, *, seed: int = 0,
               size: tuple[int, int] | None = None,
               memory_budget: int = DEFAULT_MEMORY_BUDGET) -> OpenedModel:
    """Build ``name`` with seeded random weights (``weights`` None or :data:`RANDOM`), the
    trained weights of torch's hub cache (:data:`TRAINED`, or a Weights member name such as
    ``"IMAGENET1K_V2"``), or a state_dict file (``.pt``/``.pth`` read with
    ``weights_only=True``, or ``.safetensors``). ``size`` (H, W) replaces the center crop. A
    file whose classifier has N outputs instead of 1000 (fine-tuned) gets a model with that
    head, its categories named ``class 0`` ... ``class N-1``.

    Raises :class:`ModelError` (unknown name, missing or unfitting file) and
    :class:`ModelOverBudget` before anything large is allocated."""
    plan = plan_model(name, size=size)
    check_memory(plan, memory_budget)
    name = plan.name
    w = _default_weights(name)
    categories = tuple(w.meta["categories"])
    choice = RANDOM if weights is None else weights
    if isinstance(choice, str) and choice == RANDOM:
        return OpenedModel(plan, _build_random(name, seed), f"random, seed {seed}", seed,
                           categories)
    if isinstance(choice, str) and _is_enum_name(name, choice):
        enum = _enum_for(name, choice)
        path = hub_weights_path(name, enum)
        if not path.is_file():
            raise ModelError(
                f"the trained weights of {name} ({type(enum).__name__}.{enum.name}) are not "
                f"on this computer: {path.name} is not in {path.parent} (torch's hub cache; "
                f"TORCH_HOME moves it). LayerLab does not download; copy the file there, or "
                f"give it as the weights file")
        module, report = _build_trained(name, enum, path, str(path))
        return OpenedModel(plan, module, f"trained: {type(enum).__name__}.{enum.name}", seed,
                           tuple(enum.meta["categories"]), report)
    path = Path(choice)
    enum = _enum_by_file(name, path.name)
    if enum is not None:  # torchvision's own file, given by hand: loaded as torchvision does
        module, report = _build_trained(name, enum, path, os.fspath(choice))
        return OpenedModel(plan, module, f"trained: {type(enum).__name__}.{enum.name} "
                           f"({path.name})", seed, tuple(enum.meta["categories"]), report)
    state = _read(path)
    classes = head_classes(name, state)
    if classes is not None:  # fine-tuned to other classes: the architecture with that head
        plan = plan_model(name, size=size, num_classes=classes)
        check_memory(plan, memory_budget)
        categories = tuple(f"class {i}" for i in range(classes))
    module, report = _load_file(name, seed, path, os.fspath(choice), state, classes)
    return OpenedModel(plan, module, f"file {path.name}", seed, categories, report)


# --- running ---------------------------------------------------------------------------------

class _Stop(Exception):
    """Raised from a hook to end the forward early (cancelled)."""


def select_stages(plan: ModelPlan, pattern: str | Sequence[str] | None) -> list[ModelStage]:
    """The stages a pattern keeps: fnmatch on the module path or the stage name
    (``layer*.conv1``, ``features.*``); the input and normalize stages always stay. Several
    patterns may be given, comma-separated or as a list. ModelError when none matches."""
    if pattern is None:
        return list(plan.stages)
    patterns = ([p.strip() for p in pattern.split(",")] if isinstance(pattern, str)
                else [str(p).strip() for p in pattern])
    patterns = [p for p in patterns if p]
    kept = [s for s in plan.stages[2:] if any(
        fnmatch.fnmatchcase(s.path or s.name, p) or fnmatch.fnmatchcase(s.name, p)
        for p in patterns)]
    if not kept:
        sample = ", ".join(s.name for s in plan.stages[2:6])
        raise ModelError(f"no stage of {plan.name} matches {', '.join(patterns) or '(empty)'!r}"
                         f" (stages are module paths such as {sample}, ...)")
    return [*plan.stages[:2], *kept]


def preprocess(opened: OpenedModel | ModelPlan, image: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The input stage (resized, center-cropped photo) and the normalised tensor, exactly as
    the weights' ``transforms()`` compute them on a float tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    plan = opened.plan if isinstance(opened, OpenedModel) else opened
    spec = plan.input_spec
    x = image.unsqueeze(0) if image.dim() == 3 else image
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ModelError(f"the model needs a 1 x 3 x H x W RGB image, not {tuple(x.shape)}")
    x = x.to(torch.float32)
    if plan.interpolation == "bilinear":
        x = resize_crop(x, spec.resize, spec.center_crop)
    else:
        x = F.resize(x, spec.resize, InterpolationMode(plan.interpolation), antialias=True)
        x = F.center_crop(x, list(spec.center_crop))
    norm = spec.normalize
    return x, F.normalize(x, list(norm.mean), list(norm.std))


def run_model(opened: OpenedModel, image: torch.Tensor, *,
              stages: str | Sequence[str] | None = None,
              cancel: Callable[[], bool] | None = None,
              device: str | torch.device | None = None) -> list[StageResult]:
    """Every stage (or those ``stages`` selects, see :func:`select_stages`) for ``image``
    (a [0, 1] float tensor, any size: the weights' preprocessing makes it the crop size).

    ``cancel`` is polled before each module; a cancelled run returns the stages so far. A
    module that fails ends the list with a result carrying ``error``."""
    plan = opened.plan
    keep = {s.index for s in select_stages(plan, stages)}
    if device is not None and torch.device(device) != opened.device:
        opened.module.to(device)
        opened.device = torch.device(device)
    dev = opened.device
    by_key = {(s.path, s.call): s for s in plan.stages if s.path}
    results: list[StageResult] = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        x, xn = preprocess(opened, image.to(dev))
        t_input = time.perf_counter() - t0
        results.append(StageResult(0, -1, "input", "Input", x, tuple(x.shape[1:]), t_input,
                                   False))
        results.append(StageResult(1, -1, "normalize", "Normalize", xn, tuple(xn.shape[1:]),
                                   time.perf_counter() - t0 - t_input, False,
                                   formula=plan.stages[1].text))
        calls: dict[str, int] = {}
        clock = [time.perf_counter(), time.perf_counter()]  # last pre-hook, last stage
        done = [1]  # the last stage index reached

        def before(module, args):
            if cancel is not None and cancel():
                raise _Stop
            clock[0] = time.perf_counter()

        def hook(path, leaf):
            def record(module, args, out):
                if not isinstance(out, torch.Tensor):
                    return
                calls[path] = calls.get(path, 0) + 1
                stage = by_key.get((path, calls[path]))
                if stage is None:
                    return
                now = time.perf_counter()
                # a leaf's own compute; a container's work after its last module (its cat)
                seconds = now - (clock[0] if leaf else clock[1])
                clock[1] = now
                done[0] = stage.index
                if stage.index in keep:
                    y = out.clone() if (path, stage.call) in plan.clone else out
                    results.append(StageResult(stage.index, stage.index - 2, stage.name,
                                               stage.type, y, tuple(y.shape[1:]), seconds,
                                               False, formula=stage.text))
            return record

        leaves = {path for path, _ in _leaves(opened.module)}
        handles = []
        for path, module in _modules(opened.module):
            if path in leaves:
                handles.append(module.register_forward_pre_hook(before))
            handles.append(module.register_forward_hook(hook(path, path in leaves)))
        try:
            t1 = time.perf_counter()
            out = opened.module(xn)
            if plan.output_stage:
                last = plan.stages[-1]
                if last.index in keep:
                    results.append(StageResult(last.index, last.index - 2, "output", "Output",
                                               out, tuple(out.shape[1:]),
                                               time.perf_counter() - t1, False))
        except _Stop:
            pass
        except Exception as e:  # torch raises many types; the message is what matters
            failed = plan.stages[min(done[0] + 1, len(plan.stages) - 1)]
            oom = isinstance(e, torch.cuda.OutOfMemoryError | MemoryError)
            why = ("out of memory; switch the device to CPU or use a smaller image" if oom
                   else f"{failed.type} failed: {_first_line(e)}")
            results.append(StageResult(failed.index, failed.index - 2, failed.name,
                                       failed.type, None, (), 0.0, False, why))
        finally:
            for handle in handles:
                handle.remove()
    return results


# --- plain chains as an editable stack -------------------------------------------------------

CHAIN_MODELS = ("AlexNet", "VGG")  # forward: features, avgpool, flatten(1), classifier
CHAIN_MODULES = ("torchvision.models.alexnet", "torchvision.models.vgg")  # their builders


def is_chain_model(name: str) -> bool:
    """Whether the model ``name`` is one of the plain chains (AlexNet, the VGGs) that open as
    an editable stack; told by where torchvision defines its builder (instant: the dialog
    asks on every pick). :attr:`OpenedModel.is_chain` checks the built module itself."""
    from torchvision import models

    try:
        builder = models.get_model_builder(check_name(name))
    except (ModelError, ValueError):
        return False
    return builder.__module__ in CHAIN_MODULES


def stack_need_bytes(plan: ModelPlan) -> int:
    """What the window holds for the model as an editable stack: its weights twice (the
    stack's own values, and the engine's modules computing with a copy of them) and every
    stage's output."""
    return 2 * plan.tensor_bytes + plan.outputs_bytes


def check_stack_memory(plan: ModelPlan, budget: int) -> None:
    """Refuse (ModelOverBudget) a model whose stack would exceed ``budget``."""
    need = stack_need_bytes(plan)
    if need <= budget:
        return
    h, w = plan.input_spec.center_crop
    raise ModelOverBudget(
        f"{plan.name} as an editable stack needs about {format_bytes(need)}: "
        f"{format_bytes(plan.tensor_bytes)} of weights ({plan.parameter_count:,} parameters), "
        f"held twice (the stack's values and the layers computing with them), and "
        f"{format_bytes(plan.outputs_bytes)} for its stage outputs at {h} x {w}, more than "
        f"the memory budget of {format_bytes(budget)}", need, budget)


def to_pipeline(opened: OpenedModel):
    """AlexNet or VGG as a LayerLab :class:`Pipeline`: every leaf module a layer named by its
    path (``features.0``), with its exact tensors, and Flatten where their forward flattens;
    the input is the weights' preprocessing, the classes their categories. ModelError for
    other models (branches, functional ops in their forward)."""
    steps = stack_steps(opened)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def stack_steps(opened: OpenedModel):
    """:func:`to_pipeline` one layer per step: yields ``(done, total)`` and returns the
    pipeline (a job can show progress and stop between layers). The tensors become the
    stack's without a copy: ``opened``'s module must not be changed afterwards."""
    from .pipeline import LayerSpec, Pipeline
    from .specs import OPS

    if not opened.is_chain:
        raise ModelError(f"{opened.name} is not a plain chain of layers (it has branches or "
                         f"operations outside its modules); it opens as a model view only")
    if opened.interpolation != "bilinear":  # pragma: no cover - AlexNet and VGG are bilinear
        raise ModelError(f"{opened.name}: its {opened.interpolation} resize has no pipeline "
                         f"form")
    layers = []
    leaves = _leaves(opened.module)
    for k, (path, module) in enumerate(leaves):
        if path.startswith("classifier") and not any(layer.type == "Flatten"
                                                     for layer in layers):
            layers.append(LayerSpec("Flatten", {"start_dim": 1, "end_dim": -1},
                                    name="flatten"))
        kind = type(module).__name__
        op = OPS.get(kind)
        if op is None:  # pragma: no cover - AlexNet and VGG use supported layers only
            raise ModelError(f"{opened.name}: {path} is a {kind}, not a supported layer")
        args = {}
        for p in op.params:
            value = getattr(module, p.name)
            if p.name == "bias" and p.kind == "bool":
                value = module.bias is not None
            args[p.name] = list(value) if isinstance(value, tuple) else value
        layer = LayerSpec(kind, args, name=path)
        for tname, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                arr = tensor.detach().to("cpu", torch.float32).contiguous().numpy()
                layer = layer.with_param(tname, arr, copy=False)
        layers.append(layer)
        yield (k + 1, len(leaves))
    return Pipeline(opened.input_spec, tuple(layers), tuple(opened.categories))

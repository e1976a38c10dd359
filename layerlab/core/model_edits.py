"""Weight edits of an opened torchvision model: typed values, kept as immutable data.

The window's model lives in its worker thread; what the user changed travels to it as a tuple
of :class:`WeightEdit` (module path, parameter name, index, value) inside the frozen
:class:`~layerlab.core.models.ModelSpec`. :func:`apply_edits` puts exactly those edits on the
opened model: the opened tensors are kept untouched (an edited parameter gets a fresh copy
with its edits), so an undo, or a changed edit, gives the opened values back exactly.

    edits = with_edit((), "layer1.0.conv1", "weight", (0, 0, 1, 1), 0.5)
    apply_edits(opened, edits)           # the module computes with the edit
    apply_edits(opened, ())              # ... and with its opened weights again
    save_weights(opened, "edited.safetensors")   # its state_dict, loadable with --weights

:func:`editable_modules` lists the modules whose weights can be edited (Conv2d,
ConvTranspose2d, Linear), with their constructor arguments and opened tensors as numpy arrays
(views, not copies, of the opened tensors on the CPU).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model_build import ModelError

EDITABLE = ("Conv2d", "ConvTranspose2d", "Linear")
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class WeightEdit:
    path: str  # the module path, "layer1.0.conv1"
    param: str  # the module's parameter name, "weight" or "bias"
    index: tuple[int, ...]  # the position in the tensor as torch stores it
    value: float

    def text(self) -> str:
        return f"{self.path}.{self.param}[{', '.join(map(str, self.index))}]"


@dataclass(frozen=True)
class ModuleWeights:
    """An editable module as the window needs it: its type, arguments and opened tensors."""

    type: str
    args: dict
    params: dict[str, np.ndarray]  # the opened values (read-only views of ``tensors``)
    tensors: dict[str, torch.Tensor] = field(repr=False, compare=False, default_factory=dict)


def with_edit(edits: tuple[WeightEdit, ...], path: str, param: str, index: tuple[int, ...],
              value: float) -> tuple[WeightEdit, ...]:
    """``edits`` with this cell set to ``value`` (one edit per cell: a later one replaces)."""
    return with_edits(edits, [WeightEdit(path, param, tuple(int(i) for i in index),
                                         float(value))])


def with_edits(edits: tuple[WeightEdit, ...], new: list[WeightEdit]) -> tuple[WeightEdit, ...]:
    """``edits`` with every edit of ``new`` in (a cell already edited takes the new value;
    one pass, for a preset on a whole layer's slices)."""
    cells = {(e.path, e.param, e.index): e for e in edits}
    for e in new:
        cells.pop((e.path, e.param, e.index), None)  # the newest edit of a cell comes last
        cells[(e.path, e.param, e.index)] = e
    return tuple(cells.values())


def module_args(module: nn.Module) -> dict:
    """The module's constructor arguments, as LayerLab's layer spec names them."""
    from .specs import OPS

    op = OPS[type(module).__name__]
    args = {}
    for p in op.params:
        if not hasattr(module, p.name) and p.name != "bias":
            continue
        value = module.bias is not None if p.name == "bias" else getattr(module, p.name)
        args[p.name] = list(value) if isinstance(value, tuple) else value
    return args


def editable_modules(module: nn.Module) -> dict[str, ModuleWeights]:
    """Every Conv2d / ConvTranspose2d / Linear by module path, with its opened tensors."""
    found = {}
    for path, m in module.named_modules():
        kind = type(m).__name__
        if not path or kind not in EDITABLE:
            continue
        tensors = {name: p.detach().cpu() for name, p in m.named_parameters(recurse=False)}
        params = {name: t.numpy() for name, t in tensors.items()}
        for array in params.values():
            array.flags.writeable = False  # shared with the opened model: never written
        found[path] = ModuleWeights(kind, module_args(m), params, tensors)
    return found


def check_edit(modules: dict[str, ModuleWeights], edit: WeightEdit) -> None:
    """ModelError unless ``edit`` names an editable module's tensor, a cell inside it and a
    finite value."""
    where = modules.get(edit.path)
    if where is None:
        raise ModelError(f"{edit.path!r} is not an editable module of the model "
                         f"(Conv2d, ConvTranspose2d or Linear)")
    array = where.params.get(edit.param)
    if array is None:
        raise ModelError(f"{edit.path} has no parameter {edit.param!r} "
                         f"(it has {', '.join(where.params)})")
    shape = array.shape
    if len(edit.index) != len(shape) or any(not 0 <= i < n for i, n in zip(edit.index, shape,
                                                                         strict=True)):
        raise ModelError(f"{edit.text()} is outside its shape {list(shape)}")
    if not math.isfinite(edit.value) or abs(edit.value) > FLOAT32_MAX:
        raise ModelError(f"{edit.text()} = {edit.value!r} is not a finite float32 number")


def edited_array(original: np.ndarray, edits: tuple[WeightEdit, ...], path: str, param: str
                 ) -> np.ndarray:
    """A float32 copy of ``original`` with the edits of ``path.param`` written into it."""
    array = np.array(original, dtype=np.float32, copy=True)
    for e in edits:
        if e.path == path and e.param == param:
            array[e.index] = np.float32(e.value)
    return array


def apply_edits(opened, edits: tuple[WeightEdit, ...]) -> None:
    """Make ``opened.module`` compute with its opened weights plus exactly ``edits``.

    Checks every edit first (ModelError, nothing changed). A parameter whose edits changed
    gets a new tensor (the opened one with its edits); one without edits any more gets its
    opened tensor back. Parameters are never written in place, so the opened values stay."""
    if not edits and not opened.applied_edits:
        return
    modules = opened.editable
    for e in edits:
        check_edit(modules, e)
    before = _by_param(opened.applied_edits)
    after = _by_param(edits)
    for key in before.keys() | after.keys():
        if before.get(key) == after.get(key):
            continue
        path, param = key
        target = opened.module.get_submodule(path)._parameters[param]
        original = modules[path].tensors[param]
        tensor = (original if key not in after else torch.from_numpy(
            edited_array(modules[path].params[param], after[key], path, param)))
        target.data = tensor.to(device=target.device, dtype=target.dtype)
    opened.applied_edits = tuple(edits)


def _by_param(edits: tuple[WeightEdit, ...]) -> dict[tuple[str, str], tuple[WeightEdit, ...]]:
    grouped: dict[tuple[str, str], list[WeightEdit]] = {}
    for e in edits:
        grouped.setdefault((e.path, e.param), []).append(e)
    return {k: tuple(sorted(v, key=lambda e: e.index)) for k, v in grouped.items()}


def save_weights(opened, path: str | os.PathLike) -> Path:
    """Write the model's state_dict (with its edits) as a ``.safetensors`` file, atomically;
    ``load_state_dict(strict=True)`` of the same torchvision architecture takes it back."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous().clone()
             for k, v in opened.module.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    try:
        save_file(state, os.fspath(tmp), metadata={"format": "pt", "model": opened.name})
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot write {path.name}: {e.strerror or e}") from None
    return path

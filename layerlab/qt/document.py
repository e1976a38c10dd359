"""The edited document: a pipeline, its file and its undo history.

Widgets never change the pipeline themselves: they call the edit methods here, each of which
pushes exactly one undoable command. ``changed`` fires after every change (edit, undo, redo,
open) with the layer index that should be selected afterwards (or None to keep the selection).

The helpers at the top are plain functions on immutable specs (no widgets): validation with
per-layer shapes and errors, materialising a layer's current weights, and keeping explicit
weights consistent when a layer's arguments change shape.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from ..core.kernels import DEFAULT_INIT, check_init
from ..core.pipeline import InputSpec, LayerSpec, Pipeline, new_layer
from ..core.specs import Shape, SpecError
from .commands import PipelineCommand, same_pipeline

# --- validation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerStatus:
    """What the window shows for one layer before anything runs."""

    index: int
    in_shape: Shape | None
    shape: Shape | None  # None: not computable (this or an earlier layer is broken)
    formula: str = ""
    error: str | None = None
    field: str | None = None


@dataclass(frozen=True)
class Validation:
    layers: tuple[LayerStatus, ...]
    input_shape: Shape | None
    error: str | None = None  # the first problem that stops the pipeline from running
    error_index: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def shape_text(shape: Shape | None) -> str:
    return "—" if shape is None else " × ".join(str(d) for d in shape)


def validate(pipeline: Pipeline, image_hw: tuple[int, int] | None) -> Validation:
    """Per-layer shapes and the first error, by formula (no torch run)."""
    shape: Shape | None = pipeline.input_shape(image_hw) if (
        image_hw or pipeline.input.resize) else None
    input_shape = shape
    statuses: list[LayerStatus] = []
    first: tuple[int, str] | None = None
    for i, layer in enumerate(pipeline.layers):
        op = layer.op
        try:
            args = op.normalize_args(layer.args)
            _check_params(layer, args)
        except SpecError as e:
            statuses.append(LayerStatus(i, shape if layer.enabled else None, None,
                                        error=str(e), field=e.field))
            if layer.enabled:
                if first is None:
                    first = (i, f"layer {i} ({layer.display_name(i)}): {e}")
                shape = None
            continue
        if not layer.enabled:
            statuses.append(LayerStatus(i, None, None))
            continue
        if shape is None:
            statuses.append(LayerStatus(i, None, None))
            continue
        try:
            info = op.infer_shape(shape, args)
        except SpecError as e:
            msg = f"{e} (input {shape_text(shape)})"
            statuses.append(LayerStatus(i, shape, None, error=msg, field=e.field))
            if first is None:
                first = (i, f"layer {i} ({layer.display_name(i)}): {msg}")
            shape = None
            continue
        statuses.append(LayerStatus(i, shape, info.shape, info.formula))
        shape = info.shape
    return Validation(tuple(statuses), input_shape, first[1] if first else None,
                      first[0] if first else None)


_SHAPES: OrderedDict[str, dict[str, tuple[int, ...]]] = OrderedDict()


def parameter_shapes(layer: LayerSpec, args: dict) -> dict[str, tuple[int, ...]]:
    """``OpSpec.parameter_shapes``, remembered per structure (it builds a meta module)."""
    key = layer.structure_key
    hit = _SHAPES.get(key)
    if hit is None:
        hit = _SHAPES[key] = layer.op.parameter_shapes(args)
        while len(_SHAPES) > 256:
            _SHAPES.popitem(last=False)
    return hit


def _check_params(layer: LayerSpec, args: dict) -> None:
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


def in_shape_at(pipeline: Pipeline, index: int, image_hw: tuple[int, int] | None
                ) -> Shape | None:
    """The shape entering position ``index`` (what a layer inserted there receives)."""
    if index <= 0:
        return pipeline.input_shape(image_hw) if (image_hw or pipeline.input.resize) else None
    prefix = replace(pipeline, layers=pipeline.layers[:index])
    v = validate(prefix, image_hw)
    if not v.ok:
        return None
    for status in reversed(v.layers):
        if status.shape is not None:
            return status.shape
    return v.input_shape


# --- weights ---------------------------------------------------------------------------------

_MATERIALIZED: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_MATERIALIZED_MAX = 16


def materialize(layer: LayerSpec) -> dict[str, np.ndarray]:
    """The layer's current parameter values (explicit params or its seeded init), float32.

    Built exactly as the engine builds it (on the CPU), so the values are the ones it uses.
    """
    key = layer.key
    hit = _MATERIALIZED.get(key)
    if hit is not None:
        _MATERIALIZED.move_to_end(key)
        return hit
    from ..core.engine import Engine  # torch-heavy; imported on first use

    module = Engine("cpu", channels_last=False).build_module(layer)
    out = {}
    for pname, tensor in module.state_dict().items():
        if tensor.is_floating_point():
            arr = tensor.detach().to("cpu").contiguous().numpy().astype(np.float32, copy=True)
            arr.setflags(write=False)
            out[pname] = arr
    _MATERIALIZED[key] = out
    while len(_MATERIALIZED) > _MATERIALIZED_MAX:
        _MATERIALIZED.popitem(last=False)
    return out


def _overlap_copy(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``dst`` with the overlapping part of ``src`` copied in.

    For a conv weight (out, in, kh, kw) the kept channels get the old kernels centred in the
    new kernel size, zero-padded or cropped (like ``fit_kernel``); new channels keep ``dst``.
    """
    out = np.array(dst, dtype=np.float32, copy=True)
    lead = min(src.ndim, 2) if src.ndim == 4 else src.ndim
    keep = tuple(slice(0, min(a, b)) for a, b in zip(src.shape[:lead], dst.shape[:lead],
                                                      strict=True))
    if src.ndim != 4:
        out[keep] = src[keep]
        return out
    block = np.zeros(out[keep].shape, np.float32)
    s_idx, d_idx = [], []
    for n_src, n_dst in zip(src.shape[2:], dst.shape[2:], strict=True):
        n = min(n_src, n_dst)
        s0, d0 = (n_src - n) // 2, (n_dst - n) // 2
        s_idx.append(slice(s0, s0 + n))
        d_idx.append(slice(d0, d0 + n))
    block[(..., *d_idx)] = src[keep][(..., *s_idx)]
    out[keep] = block
    return out


def fit_params(layer: LayerSpec) -> tuple[LayerSpec, str | None]:
    """Keep explicit params consistent with the layer's (valid) arguments.

    A param whose shape no longer matches keeps its overlapping part (kernels centred and
    zero-padded, so a 3x3 kernel stays in the middle of a 5x5 one); new channels come from the
    seeded init.
    Returns the layer and a note for the status bar, or the layer unchanged when its
    arguments are invalid (the error is shown; nothing is thrown away).
    """
    if not layer.params:
        return layer, None
    try:
        shapes = parameter_shapes(layer, layer.op.normalize_args(layer.args))
    except SpecError:
        return layer, None
    wrong = [p for p, a in layer.params.items() if shapes.get(p) != tuple(a.shape)]
    if not wrong:
        return layer, None
    fresh = materialize(replace(layer, params={}))
    params = dict(layer.params)
    for pname in wrong:
        if pname not in shapes:
            del params[pname]
            continue
        arr = _overlap_copy(layer.params[pname], fresh[pname])
        arr.setflags(write=False)
        params[pname] = arr
    note = (f"{', '.join(wrong)} resized to the new shape (existing values kept, new channels "
            f"from the {layer.init.get('scheme', 'default')} init)")
    return replace(layer, params=params), note


def adapt_in_channels(layer: LayerSpec, channels: int) -> tuple[LayerSpec, str]:
    """A Conv2d (groups 1) for ``channels`` input channels with the same response to gray.

    For a gray image (R = G = B) a kernel summed over the colour channels gives exactly the
    RGB kernel's output, and a gray kernel split into thirds over R, G, B gives the gray
    kernel's output on the image's channel mean.
    """
    old = layer.args["in_channels"]
    new = layer.with_args(in_channels=channels)
    weight = layer.params.get("weight")
    if weight is None:
        return new, f"in_channels {old} → {channels} (weights from the seeded init)"
    if channels == 1:
        w = weight.sum(axis=1, keepdims=True)
        how = "kernels summed over the colour channels"
    elif old == 1:
        w = np.repeat(weight, channels, axis=1) / np.float32(channels)
        how = f"kernel split into {channels} equal parts, one per colour channel"
    else:
        w = np.repeat(weight.mean(axis=1, keepdims=True), channels, axis=1)
        how = "kernels averaged over the input channels"
    return new.with_param("weight", w.astype(np.float32)), f"in_channels {old} → {channels}, {how}"


# --- the document ----------------------------------------------------------------------------


_CONTROL = dict.fromkeys([*range(32), *range(0x7F, 0xA0)])  # C0, DEL and C1, as at load


def pipeline_title(path: str | None) -> str:
    if not path:
        return "untitled"
    name = Path(path).name
    for suffix in (".layerlab.json", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


class Document(QObject):
    changed = Signal(object)  # layer index to select afterwards, or None
    pathChanged = Signal(object)  # str | None

    def __init__(self, pipeline: Pipeline | None = None, path: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.pipeline = pipeline or Pipeline()
        self.path = path
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(500)
        self.last_note: str | None = None  # a remark about the last edit, for the status bar

    # --- core ---
    def _apply(self, pipeline: Pipeline, select: int | None, path: str | None,
               change_path: bool) -> None:
        self.pipeline = pipeline
        if change_path and path != self.path:
            self.path = path
            self.pathChanged.emit(path)
        self.changed.emit(select)

    def edit(self, pipeline: Pipeline, text: str, *, merge_key: Hashable | None = None,
             select: int | None = None, note: str | None = None) -> bool:
        """Push one undoable change; returns False (and records nothing) for a no-op."""
        if same_pipeline(pipeline, self.pipeline):
            return False
        self.last_note = note
        self.undo_stack.push(PipelineCommand(
            self, self.pipeline, pipeline, text, merge_key=merge_key,
            select_before=select, select_after=select))
        return True

    def load(self, pipeline: Pipeline, path: str | None, text: str = "Open pipeline") -> None:
        """Replace the whole document (undoable) and mark it saved."""
        self.last_note = None
        self.undo_stack.push(PipelineCommand(
            self, self.pipeline, pipeline, text, path_before=self.path, path_after=path,
            change_path=True, select_after=0 if pipeline.layers else None))
        if path:
            self.undo_stack.setClean()

    def reset(self, pipeline: Pipeline, path: str | None, *, modified: bool = False) -> None:
        """Start afresh (no history), e.g. when the window restores the last session."""
        self.undo_stack.clear()
        self.pipeline = pipeline
        self.path = path
        self.pathChanged.emit(path)
        if modified:
            self.undo_stack.resetClean()  # no saved state in this history: shown as modified
        self.changed.emit(0 if pipeline.layers else None)

    def mark_saved(self, path: str) -> None:
        if path != self.path:
            self.path = path
            self.pathChanged.emit(path)
        self.undo_stack.setClean()

    @property
    def modified(self) -> bool:
        return not self.undo_stack.isClean()

    # --- edits ---
    def _layer_edit(self, index: int, layer: LayerSpec, text: str, *,
                    merge_key: Hashable | None = None, note: str | None = None) -> bool:
        layer, fit_note = fit_params(layer)
        return self.edit(self.pipeline.replace_layer(index, layer), text, merge_key=merge_key,
                         select=index, note=note or fit_note)

    def insert_layer(self, index: int, type_name: str, in_shape: Shape | None) -> int:
        try:
            layer = new_layer(type_name, in_shape)
        except SpecError:
            layer = new_layer(type_name, None)
        index = max(0, min(index, len(self.pipeline.layers)))
        self.edit(self.pipeline.insert_layer(index, layer), f"Add {type_name}", select=index)
        return index

    def remove_layer(self, index: int) -> None:
        layer = self.pipeline.layers[index]
        after = self.pipeline.remove_layer(index)
        select = min(index, len(after.layers) - 1) if after.layers else None
        self.last_note = None
        self.undo_stack.push(PipelineCommand(
            self, self.pipeline, after, f"Remove {layer.display_name(index)}",
            select_before=index, select_after=select))

    def duplicate_layer(self, index: int) -> None:
        layer = self.pipeline.layers[index]
        copy = replace(layer, name=f"{layer.name} copy" if layer.name else "")
        self.edit(self.pipeline.insert_layer(index + 1, copy),
                  f"Duplicate {layer.display_name(index)}", select=index + 1)

    def move_layer(self, src: int, dst: int) -> bool:
        n = len(self.pipeline.layers)
        if not (0 <= src < n and 0 <= dst < n) or src == dst:
            return False
        layer = self.pipeline.layers[src]
        self.last_note = None
        self.undo_stack.push(PipelineCommand(
            self, self.pipeline, self.pipeline.move_layer(src, dst),
            f"Move {layer.display_name(src)}", select_before=src, select_after=dst))
        return True

    def set_enabled(self, index: int, enabled: bool) -> None:
        layer = self.pipeline.layers[index]
        verb = "Enable" if enabled else "Disable"
        self.edit(self.pipeline.replace_layer(index, replace(layer, enabled=enabled)),
                  f"{verb} {layer.display_name(index)}", select=index)

    def rename_layer(self, index: int, name: str) -> None:
        # Tabs and newlines become spaces; other control characters (a pasted NUL) are
        # dropped: a pipeline file refuses them, so a saved stack would not open again.
        name = " ".join(name.split()).translate(_CONTROL)[:64]
        layer = self.pipeline.layers[index]
        self.edit(self.pipeline.replace_layer(index, replace(layer, name=name)),
                  f"Rename to {name or layer.type.lower()}", select=index)

    def set_arg(self, index: int, name: str, value: object) -> None:
        layer = self.pipeline.layers[index]
        self._layer_edit(index, layer.with_args(**{name: value}),
                         f"Set {layer.display_name(index)}.{name}",
                         merge_key=("arg", index, name))

    def set_param(self, index: int, pname: str, value: np.ndarray, text: str, *,
                  merge_key: Hashable | None = None) -> None:
        layer = self.pipeline.layers[index]
        self._layer_edit(index, layer.with_param(pname, value), text, merge_key=merge_key)

    def set_params(self, index: int, params: dict[str, np.ndarray], text: str) -> None:
        layer = self.pipeline.layers[index]
        for pname, value in params.items():
            layer = layer.with_param(pname, value)
        self._layer_edit(index, layer, text)

    def set_init(self, index: int, init: dict) -> None:
        """Seeded init instead of explicit weights (exact: the engine applies the same init)."""
        layer = self.pipeline.layers[index]
        init = check_init({**DEFAULT_INIT, **init})  # completes mean/std/value defaults
        self._layer_edit(index, replace(layer, params={}, init=init),
                         f"Initialise {layer.display_name(index)} ({init['scheme']}, "
                         f"seed {init['seed']})")

    def set_input_mode(self, mode: str) -> str | None:
        """Switch RGB/gray; a first Conv2d that matched the old channels follows (one step)."""
        old = self.pipeline.input
        if mode == old.mode:
            return None
        after = replace(self.pipeline, input=InputSpec(mode, old.resize))
        note = None
        select = None
        for i, layer in self.pipeline.enabled_layers():
            if (layer.type == "Conv2d" and layer.args.get("in_channels") == old.channels
                    and layer.args.get("groups", 1) == 1):
                adapted, how = adapt_in_channels(layer, after.input.channels)
                after = after.replace_layer(i, adapted)
                note = f"{layer.display_name(i)}: {how}"
                select = i
            break
        self.edit(after, f"Input {'grayscale' if mode == 'gray' else 'RGB'}", select=select,
                  note=note)
        return note

"""The edited document: a pipeline, its file and its undo history.

Widgets never change the pipeline themselves: they call the edit methods here, each of which
pushes exactly one undoable command. ``changed`` fires after every change (edit, undo, redo,
open) with the layer index that should be selected afterwards (or None to keep the selection).

The plain functions on specs it uses (a layer's weights, fitting weights to new arguments,
following the input's channels) live in ``layerlab.core.edits``.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from ..core.edits import fit_params, follow_input_channels, materialize
from ..core.kernels import DEFAULT_INIT, check_init
from ..core.pipeline import LayerSpec, Pipeline, new_layer
from ..core.preprocess import Normalize, preset_named, preset_of
from ..core.specs import Shape, SpecError
from .commands import CellCommand, PipelineCommand, same_pipeline, with_value

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
    """The pipeline, where it came from (its file, or the name of an unsaved stack such as an
    example's) and its undo history. Opening a file is undoable with its origin, so an undo
    brings back the old stack's title and save target too."""

    changed = Signal(object)  # layer index to select afterwards, or None
    pathChanged = Signal(object)  # str | None; also emitted when only the name changed

    def __init__(self, pipeline: Pipeline | None = None, path: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.pipeline = pipeline or Pipeline()
        self.path = path
        self.name = pipeline_title(path)  # the title when there is no file ("untitled")
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(500)
        self.last_note: str | None = None  # a remark about the last edit, for the status bar
        self.replaced = False  # the last change put another stack in (open, undo of an open)

    # --- core ---
    @property
    def title(self) -> str:
        return pipeline_title(self.path) if self.path else self.name

    def _set_origin(self, path: str | None, name: str | None = None) -> None:
        name = name or pipeline_title(path)
        if (path, name) != (self.path, self.name):
            self.path, self.name = path, name
            self.pathChanged.emit(path)

    def _apply(self, pipeline: Pipeline, select: int | None, origin, change_origin: bool
               ) -> None:
        self.pipeline = pipeline
        self.replaced = change_origin
        if change_origin:
            self._set_origin(*origin)
        self.changed.emit(select)

    def edit(self, pipeline: Pipeline, text: str, *, merge_key: Hashable | None = None,
             select: int | None = None, note: str | None = None) -> bool:
        """Push one undoable change; returns False (and records nothing) for a no-op."""
        if same_pipeline(pipeline, self.pipeline):
            return False
        self.last_note = note
        self.undo_stack.push(PipelineCommand(
            self._apply, self.pipeline, pipeline, text, merge_key=merge_key,
            select_before=select, select_after=select))
        return True

    def load(self, pipeline: Pipeline, path: str | None, text: str = "Open pipeline", *,
             name: str | None = None) -> None:
        """Replace the whole document (undoable) and mark it saved; ``name`` titles a stack
        without a file (an example opened as an untitled copy)."""
        self.last_note = None
        self.undo_stack.push(PipelineCommand(
            self._apply, self.pipeline, pipeline, text, path_before=(self.path, self.name),
            path_after=(path, name), change_path=True,
            select_after=0 if pipeline.layers else None))
        if path:
            self.undo_stack.setClean()

    def reset(self, pipeline: Pipeline, path: str | None, *, modified: bool = False,
              name: str | None = None) -> None:
        """Start afresh (no history), e.g. when the window restores the last session."""
        self.undo_stack.clear()
        self.pipeline = pipeline
        self.path, self.name = path, name or pipeline_title(path)
        self.pathChanged.emit(path)
        if modified:
            self.undo_stack.resetClean()  # no saved state in this history: shown as modified
        self.replaced = True
        self.changed.emit(0 if pipeline.layers else None)

    def mark_saved(self, path: str) -> None:
        self._set_origin(path)
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
        # A name of its own ("conv2d-2" beside a "conv2d"), shown the same everywhere.
        taken = {lay.display_name(i) for i, lay in enumerate(self.pipeline.layers)}
        base = name = type_name.lower()
        n = 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        layer = replace(layer, name=name)
        index = max(0, min(index, len(self.pipeline.layers)))
        self.edit(self.pipeline.insert_layer(index, layer), f"Add {type_name}", select=index)
        return index

    def remove_layer(self, index: int) -> None:
        layer = self.pipeline.layers[index]
        after = self.pipeline.remove_layer(index)
        select = min(index, len(after.layers) - 1) if after.layers else None
        self.last_note = None
        self.undo_stack.push(PipelineCommand(
            self._apply, self.pipeline, after, f"Remove {layer.display_name(index)}",
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
            self._apply, self.pipeline, self.pipeline.move_layer(src, dst),
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

    def set_param_value(self, index: int, pname: str, position: tuple[int, ...],
                        value: float) -> None:
        """One value of a parameter tensor (a kernel cell, a bias entry); repeated edits of
        the same value merge into one undo step."""
        layer = self.pipeline.layers[index]
        current = layer.params.get(pname)
        where = ", ".join(str(p) for p in position)
        text, merge_key = f"Edit {pname}[{where}]", ("cell", index, pname, position)
        if current is None:  # still the seeded init: every value becomes explicit
            arr = np.array(materialize(layer)[pname], dtype=np.float32, copy=True)
            arr[position] = np.float32(value)
            self.set_param(index, pname, arr, text, merge_key=merge_key)
            return
        before, after = np.float32(current[position]), np.float32(value)
        if before.tobytes() == after.tobytes():
            return
        self.last_note = None
        result = with_value(self.pipeline, index, pname, position, after)
        self.undo_stack.push(CellCommand(
            self._apply, lambda: self.pipeline, index, pname, position, before, after, result,
            text, merge_key=merge_key, select=index))

    def set_init(self, index: int, init: dict) -> None:
        """Seeded init instead of explicit weights (exact: the engine applies the same init)."""
        layer = self.pipeline.layers[index]
        init = check_init({**DEFAULT_INIT, **init})  # completes mean/std/value defaults
        self._layer_edit(index, replace(layer, params={}, init=init),
                         f"Initialise {layer.display_name(index)} ({init['scheme']}, "
                         f"seed {init['seed']})")

    def set_input_normalize(self, preset: str) -> None:
        """The input's normalisation preset ("none", "ImageNet", "[-1, 1]"): one undo step."""
        old = self.pipeline.input
        value = preset_named(preset).for_channels(old.channels)
        self.edit(replace(self.pipeline, input=replace(old, normalize=value)),
                  f"Normalize input: {preset}")

    def set_input_mode(self, mode: str) -> str | None:
        """Switch RGB/gray; a first Conv2d that matched the old channels follows (one step)."""
        old = self.pipeline.input
        if mode == old.mode:
            return None
        channels = 1 if mode == "gray" else 3
        normalize = old.normalize
        if normalize is not None and len(normalize.mean) != channels:
            # A preset follows the channels (ImageNet's gray mean); custom numbers repeat
            # their average, as the presets do.
            name = preset_of(normalize, old.channels)
            normalize = (preset_named(name).for_channels(channels) if name else
                         Normalize((sum(normalize.mean) / len(normalize.mean),) * channels,
                                   (sum(normalize.std) / len(normalize.std),) * channels))
        after = replace(self.pipeline, input=replace(old, mode=mode, normalize=normalize))
        after, select, note = follow_input_channels(after, old.channels, after.input.channels)
        self.edit(after, f"Input {'grayscale' if mode == 'gray' else 'RGB'}", select=select,
                  note=note)
        return note

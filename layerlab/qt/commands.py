"""Undo commands: every edit of the document is one before/after pipeline snapshot.

Pipelines are immutable and an edit shares every unchanged layer and tensor with the state
before it, so a command only keeps two references. A kernel-cell edit keeps less: the cell and
its two values (:class:`CellCommand`), so a hundred edits of a VGG's 9 MB kernel do not keep a
hundred copies of it. Consecutive edits of the same field or kernel cell (a spin-box drag, a
held arrow key) carry the same ``merge_key`` and merge into one undo step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np
from PySide6.QtGui import QUndoCommand

from ..core.pipeline import Pipeline

# How a command puts a snapshot in place: (pipeline, layer to select, origin, change the
# origin?); the origin is the document's (file path, name) when a command opens a file.
Apply = Callable[[Pipeline, "int | None", object, bool], None]

MERGE_ID = 0x4C4C  # all mergeable commands share an id; merge_key decides


def same_pipeline(a: Pipeline, b: Pipeline) -> bool:
    """True when two snapshots compute and show the same thing (names and switches included)."""
    if a is b:
        return True
    if a.input != b.input or a.classes != b.classes or len(a.layers) != len(b.layers):
        return False
    return all(x is y or (x.key == y.key and x.name == y.name and x.enabled == y.enabled)
               for x, y in zip(a.layers, b.layers, strict=True))


class PipelineCommand(QUndoCommand):
    """Replace the document's pipeline (and optionally its file path) through ``apply``."""

    def __init__(self, apply: Apply, before: Pipeline, after: Pipeline, text: str, *,
                 merge_key: Hashable | None = None, select_before: int | None = None,
                 select_after: int | None = None, path_before: object = None,
                 path_after: object = None, change_path: bool = False):
        super().__init__(text)
        self.apply = apply
        self.before = before
        self.after = after
        self.merge_key = merge_key
        self.select_before = select_before
        self.select_after = select_after
        self.path_before = path_before
        self.path_after = path_after
        self.change_path = change_path

    def id(self) -> int:  # noqa: A003 - Qt's name
        return MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if isinstance(other, CellCommand) and other.merge_key == self.merge_key \
                and not self.change_path:
            # The first edit of a seeded kernel made every value explicit (a snapshot); typing
            # the same cell again stays that one step.
            self.after = other.current()
            self.setText(other.text())
            return True
        if not isinstance(other, PipelineCommand) or other.merge_key != self.merge_key:
            return False
        if other.change_path or self.change_path:
            return False
        self.after = other.after
        self.select_after = other.select_after
        self.setText(other.text())
        if same_pipeline(self.before, self.after):
            self.setObsolete(True)  # dragged back to where it started: nothing to undo
        return True

    def redo(self) -> None:
        path = self.path_after if self.change_path else None
        self.apply(self.after, self.select_after, path, self.change_path)

    def undo(self) -> None:
        path = self.path_before if self.change_path else None
        self.apply(self.before, self.select_before, path, self.change_path)


def with_value(pipeline: Pipeline, index: int, pname: str, position: tuple[int, ...],
               value: np.float32) -> Pipeline:
    """``pipeline`` with one value of layer ``index``'s tensor ``pname`` set: that tensor is
    copied once, every other tensor and layer is the same object."""
    layer = pipeline.layers[index]
    arr = np.array(layer.params[pname], dtype=np.float32, copy=True)
    arr[position] = value
    return pipeline.replace_layer(index, layer.with_param(pname, arr, copy=False))


class CellCommand(QUndoCommand):
    """One value of an explicit tensor (a kernel cell, a bias entry) changed.

    It keeps the position and the value before and after, not the tensors: undo and redo
    rebuild the other state from the document's current one (which is, by the undo stack's
    order, exactly this command's after or before state), bit for bit."""

    def __init__(self, apply: Apply, current: Callable[[], Pipeline], index: int, pname: str,
                 position: tuple[int, ...], before: np.float32, after: np.float32,
                 result: Pipeline, text: str, *, merge_key: Hashable | None = None,
                 select: int | None = None):
        super().__init__(text)
        self.apply = apply
        self.current = current
        self.index, self.pname, self.position = index, pname, position
        self.before_value, self.after_value = np.float32(before), np.float32(after)
        self._result: Pipeline | None = result  # the first redo puts it in place
        self.merge_key = merge_key
        self.select = select

    def id(self) -> int:  # noqa: A003 - Qt's name
        return MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, CellCommand) or other.merge_key != self.merge_key:
            return False
        self.after_value = other.after_value
        self.setText(other.text())
        if self.after_value.tobytes() == self.before_value.tobytes():
            self.setObsolete(True)  # typed back to where it started: nothing to undo
        return True

    def _set(self, value: np.float32) -> None:
        self.apply(with_value(self.current(), self.index, self.pname, self.position, value),
                   self.select, None, False)

    def redo(self) -> None:
        result, self._result = self._result, None
        if result is not None:
            self.apply(result, self.select, None, False)
        else:
            self._set(self.after_value)

    def undo(self) -> None:
        self._set(self.before_value)
class ModelEditCommand(QUndoCommand):
    """Replace the weight edits of the model shown (a tuple of core.model_edits.WeightEdit)
    through ``apply``; edits of the same cell in a row merge, as the stack's do."""

    def __init__(self, apply: Callable[[tuple], None], before: tuple, after: tuple, text: str,
                 *, merge_key: Hashable | None = None):
        super().__init__(text)
        self.apply = apply
        self.before = before
        self.after = after
        self.merge_key = merge_key

    def id(self) -> int:  # noqa: A003 - Qt's name
        return MERGE_ID + 1 if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802 - Qt's name
        if not isinstance(other, ModelEditCommand) or other.merge_key != self.merge_key:
            return False
        self.after = other.after
        self.setText(other.text())
        if self.before == self.after:
            self.setObsolete(True)
        return True

    def redo(self) -> None:
        self.apply(self.after)

    def undo(self) -> None:
        self.apply(self.before)

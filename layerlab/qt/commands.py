"""Undo commands: every edit of the document is one before/after pipeline snapshot.

Pipelines are immutable, so a command only keeps two references. Consecutive edits of the same
field or kernel cell (a spin-box drag, a held arrow key) carry the same ``merge_key`` and merge
into one undo step.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

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

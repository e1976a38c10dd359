"""An editable table of a layer's 1-D tensors (a bias, PReLU's slopes, a norm's statistics).

Cells hold exact float32 text and are read back with ``float``: Qt's default number editor
would round every edited value to two decimals.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QWidget

from .text import format_value

MAX_ROWS = 4096  # longer vectors (a huge Linear's bias) are not shown cell by cell


class ValueTable(QTableWidget):
    """One column per tensor, one row per entry; typing a number emits ``valueEdited``."""

    valueEdited = Signal(str, int, float)  # tensor name, row, new value
    rejected = Signal(str)  # why a typed text was not taken

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 0, parent)
        self._names: list[str] = []
        self._shown: dict[str, np.ndarray] = {}
        # Each column as wide as torch's name of its tensor (running_mean), scrolling if need be.
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setDefaultSectionSize(22)
        self.itemChanged.connect(self._item_changed)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def show_values(self, columns: dict[str, np.ndarray]) -> None:
        """Show ``{name: 1-D array}`` (all the same length), keeping the scroll position."""
        self.blockSignals(True)
        try:
            self._shown = {k: np.asarray(v, np.float32).copy() for k, v in columns.items()}
            names = list(columns)
            rows = len(next(iter(columns.values()))) if columns else 0
            if names != self._names:
                self.setColumnCount(len(names))
                self.setHorizontalHeaderLabels(names)
                self._names = names
            if self.rowCount() != rows:
                self.setRowCount(rows)
                self.setVerticalHeaderLabels([str(r) for r in range(rows)])  # channel indices
            for c, name in enumerate(names):
                for r, v in enumerate(self._shown[name]):
                    text = format_value(float(v))
                    item = self.item(r, c)
                    if item is None:
                        item = QTableWidgetItem(text)
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                        self.setItem(r, c, item)
                    elif item.text() != text:
                        item.setText(text)
        finally:
            self.blockSignals(False)

    def type_value(self, name: str, row: int, text: str) -> None:
        """Type ``text`` into the cell of ``name`` at ``row`` (as a person would)."""
        self.item(row, self._names.index(name)).setText(text)

    def _item_changed(self, item: QTableWidgetItem) -> None:
        name = self._names[item.column()]
        try:
            value = float(item.text().strip().replace("−", "-"))
        except ValueError:
            value = None
        if value is None or not np.isfinite(np.float32(value)):
            old = float(self._shown[name][item.row()])
            self.rejected.emit(f"{item.text()!r} is not a finite number; {name}[{item.row()}] "
                               f"keeps {format_value(old)}")
            self.blockSignals(True)
            item.setText(format_value(old))
            self.blockSignals(False)
            return
        self.valueEdited.emit(name, item.row(), value)


def vector_params(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 1-D tensors of equal length that a ValueTable shows (others are left out)."""
    vectors = {k: v for k, v in values.items() if np.ndim(v) == 1 and 0 < len(v) <= MAX_ROWS}
    if not vectors:
        return {}
    length = max(len(v) for v in vectors.values())
    return {k: v for k, v in vectors.items() if len(v) == length}

"""File > Load weights: a trained state_dict onto the stack, shown before anything changes.

The dialog lists which file key goes to which layer (and how they were matched: by name, by
``nn.Sequential`` index or by order), the keys no layer takes, the layers that keep their own
weights, and any shape mismatch (then nothing can be applied). Applying is one undo step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import theme

if TYPE_CHECKING:
    from ..core.weights import WeightsMapping

METHODS = {"name": "by layer name", "index": "by nn.Sequential index",
           "order": "by the order of layers with matching shapes"}


class WeightsDialog(QDialog):
    """Shows a ``WeightsMapping``; ``accepted`` means: apply it."""

    def __init__(self, mapping: WeightsMapping, parent: QWidget | None = None):
        super().__init__(parent)
        self.mapping = mapping
        self.setWindowTitle(f"Load weights: {mapping.source}")
        how = METHODS.get(mapping.method, mapping.method)
        prefix = f" (prefix {mapping.prefix!r} removed)" if mapping.prefix else ""
        self.summary = QLabel(f"{len(mapping.applied_keys)} tensor(s) of <b>{mapping.source}"
                              f"</b> onto {len(mapping.layers)} layer(s), matched {how}"
                              f"{prefix}.", self)
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Layer / tensor", "File key"])
        self.tree.setRootIsDecorated(True)
        for m in mapping.layers:
            top = QTreeWidgetItem([f"{m.layer_index} {m.name}", ""])
            for tensor, key in m.keys.items():
                shape = list(mapping.tensors[key].shape) if key in mapping.tensors else ""
                top.addChild(QTreeWidgetItem([f"{tensor} {shape}", key]))
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        self.tree.resizeColumnToContents(0)
        problems = mapping.problems()
        self.problems = QLabel("\n".join(f"• {p}" for p in problems), self)
        self.problems.setWordWrap(True)
        self.problems.setVisible(bool(problems))
        if mapping.mismatches:
            self.problems.setStyleSheet(f"color: {theme.ERROR};")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply
                                        | QDialogButtonBox.StandardButton.Cancel, self)
        apply = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        apply.setEnabled(mapping.ok and bool(mapping.layers))
        apply.setToolTip("Put these tensors into the layers (one undo step)" if mapping.ok
                         else "A tensor has the wrong shape: nothing can be applied")
        apply.clicked.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.problems)
        lay.addWidget(self.buttons)
        self.resize(560, 420)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

"""The window's small pieces: the message banner, the shortcuts list and the about box."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from . import theme

# Shown in the shortcuts list beside the actions' own keys.
GESTURES = (
    ("Reorder layers", "drag a row in the list"),
    ("Open an image or pipeline", "drop the file onto the window"),
    ("Change a kernel value", "scroll over the cell, or ↑ / ↓"),
)


class MessageBanner(QFrame):
    """A non-blocking message strip above the feature view (errors from loading files)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        lay.addWidget(close)
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        bg, fg, border = theme.BANNER.get(kind, theme.BANNER["info"])
        self.setStyleSheet(f"#messageBanner {{ background: {bg}; border: 1px solid {border}; "
                           f"border-radius: 4px; }} #messageBanner QLabel {{ color: {fg}; }}")
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


def shortcuts_dialog(parent: QWidget, actions: list[tuple[str, QAction]]) -> QDialog:
    """Every action (its name, and its keys) then the mouse gestures (after 'Rename layer').

    Names come from the action table, not the live action: Undo's text names the next step
    ("Undo Open example ..."), which is not a command."""
    rows = [(name.replace("&", ""), ", ".join(
        s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts()))
        for name, act in actions]
    after = next((i + 1 for i, (what, _) in enumerate(rows) if what.startswith("Rename layer")),
                 len(rows))
    rows.insert(after, GESTURES[0])
    rows += GESTURES[1:]
    dialog = QDialog(parent)
    dialog.setWindowTitle("Keyboard shortcuts")
    table = QTableWidget(len(rows), 2, dialog)
    table.setHorizontalHeaderLabels(["Action", "Keys"])
    for r, (what, keys) in enumerate(rows):
        table.setItem(r, 0, QTableWidgetItem(what))
        table.setItem(r, 1, QTableWidgetItem(keys))
    table.verticalHeader().hide()
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
    buttons.rejected.connect(dialog.close)
    lay = QVBoxLayout(dialog)
    lay.addWidget(table)
    lay.addWidget(buttons)
    # Wide enough for both columns and the vertical scroll bar: no horizontal scrolling.
    width = (table.horizontalHeader().length() + table.verticalScrollBar().sizeHint().width()
             + 2 * table.frameWidth() + 40)
    dialog.resize(max(460, width), 560)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return dialog


def about_box(parent: QWidget, cuda_name: str | None) -> QMessageBox:
    import torch

    box = QMessageBox(parent)
    box.setWindowTitle("About LayerLab")
    box.setIconPixmap(parent.windowIcon().pixmap(64, 64))
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(f"<h3>LayerLab {__version__}</h3><p>See what neural-network layers do to an "
                f"image: every number shown is the one torch computes.</p>"
                f"<p>torch {torch.__version__} · CUDA: {cuda_name or 'not available'}</p>")
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    return box

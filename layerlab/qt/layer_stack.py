"""The layer stack: a list of the pipeline's layers with their output shapes and errors.

``LayerStackModel`` reflects the document (rebuilt on every change) and turns the view's
gestures (checkbox, rename, drag and drop) into document edits; ``LayerStackWidget`` adds the
buttons and the add-layer menu.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractTableModel,
    QByteArray,
    QItemSelectionModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis import Validation
from ..core.specs import CATEGORIES, ops_in
from . import theme
from .document import Document
from .text import shape_text

MIME = "application/x-layerlab-layer-row"


def _dot(colour: QColor, size: int = 10) -> QIcon:
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(colour)
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(1, 1, size - 2, size - 2)
    p.end()
    return QIcon(pix)


class LayerStackModel(QAbstractTableModel):
    """Rows are the pipeline's layers; columns: name (with the enabled box), type, output."""

    COLUMNS = ("Layer", "Type", "Output")

    # Intents: the model never edits the document itself.
    enabledRequested = Signal(int, bool)
    renameRequested = Signal(int, str)
    moveRequested = Signal(int, int)

    def __init__(self, document: Document, parent=None):
        super().__init__(parent)
        self.document = document
        self.validation: Validation | None = None
        self.run_errors: dict[int, str] = {}  # layer index -> error from the engine
        self._rows = len(document.pipeline.layers)
        self._shown_rows: tuple | None = None  # what the rows showed at the last refresh
        self._error_icon: QIcon | None = None

    def _icon(self) -> QIcon:
        if self._error_icon is None:
            self._error_icon = _dot(QColor(theme.ERROR))
        return self._error_icon

    # --- refresh from the document ---
    def _shown(self) -> tuple:
        """Everything the rows show; the same after an edit means nothing to repaint (a
        kernel value typed changes no name, shape or error)."""
        v = self.validation
        statuses = v.layers if v is not None else ()
        return tuple(
            (layer.name, layer.type, layer.enabled, self.error_for(i),
             (statuses[i].shape, statuses[i].in_shape) if i < len(statuses) else None)
            for i, layer in enumerate(self.document.pipeline.layers))

    def refresh(self, validation: Validation | None) -> bool:
        """Show ``validation``; True when the rows show anything different."""
        rows = len(self.document.pipeline.layers)
        if rows == self._rows:
            # Same number of rows (an edit, a move): repaint them, keep the view's state.
            self.validation = validation
            shown = self._shown()
            changed = shown != self._shown_rows
            if rows and changed:
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(rows - 1, len(self.COLUMNS) - 1))
            self._shown_rows = shown
            return changed
        self.beginResetModel()
        self.validation = validation
        self._rows = rows
        self._shown_rows = self._shown()
        self.endResetModel()
        return True

    def set_run_errors(self, errors: dict[int, str]) -> None:
        if errors == self.run_errors:
            return
        self.run_errors = dict(errors)
        self._shown_rows = None
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 0),
                                  self.index(self.rowCount() - 1, len(self.COLUMNS) - 1))

    def error_for(self, row: int) -> str | None:
        v = self.validation
        if v is not None and row < len(v.layers) and v.layers[row].error:
            return v.layers[row].error
        return self.run_errors.get(row)

    # --- Qt model API ---
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else self._rows

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        layers = self.document.pipeline.layers
        if row >= len(layers):
            return None
        layer = layers[row]
        error = self.error_for(row)
        status = None
        if self.validation is not None and row < len(self.validation.layers):
            status = self.validation.layers[row]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            if col == 0:
                return layer.name if role == Qt.ItemDataRole.EditRole else \
                    layer.display_name(row)
            if col == 1:
                return layer.type
            if col == 2:
                if error:
                    return "error"
                if not layer.enabled:
                    return "off"
                return shape_text(status.shape if status else None)
        if role == Qt.ItemDataRole.CheckStateRole and col == 0:
            return Qt.CheckState.Checked if layer.enabled else Qt.CheckState.Unchecked
        if role == Qt.ItemDataRole.DecorationRole and col == 2 and error:
            return self._icon()
        if role == Qt.ItemDataRole.ForegroundRole:
            if error and col == 2:
                return QColor(theme.ERROR)
            if not layer.enabled:
                return QColor(theme.MUTED)
        if role == Qt.ItemDataRole.ToolTipRole:
            lines = [f"{layer.display_name(row)} · {layer.type}", layer.op.help]
            if status and status.in_shape is not None and layer.enabled:
                lines.append(f"in {shape_text(status.in_shape)} → out "
                             f"{shape_text(status.shape)}")
            if not layer.enabled:
                lines.append("Disabled: skipped when the stack runs")
            if error:
                lines.append(f"⚠ {error}")
            return "\n".join(lines)
        if role == Qt.ItemDataRole.AccessibleTextRole and col == 0:
            return f"{layer.display_name(row)}, {layer.type}" + (", error" if error else "")
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.ItemIsDropEnabled
        # Rows are not drop targets themselves: a dragged row lands between two rows.
        f = (Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable |
             Qt.ItemFlag.ItemIsDragEnabled)
        if index.column() == 0:
            f |= Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsEditable
        return f

    def setData(self, index: QModelIndex | QPersistentModelIndex, value: object,  # noqa: N802
                role: int = Qt.ItemDataRole.EditRole) -> bool:
        if not index.isValid() or index.column() != 0:
            return False
        row = index.row()
        if role == Qt.ItemDataRole.CheckStateRole:
            checked = value in (Qt.CheckState.Checked, Qt.CheckState.Checked.value, 2, True)
            self.enabledRequested.emit(row, checked)
            return True
        if role == Qt.ItemDataRole.EditRole:
            self.renameRequested.emit(row, str(value))
            return True
        return False

    # --- drag and drop (reordering) ---
    def supportedDropActions(self) -> Qt.DropAction:  # noqa: N802
        return Qt.DropAction.MoveAction

    def supportedDragActions(self) -> Qt.DropAction:  # noqa: N802
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:  # noqa: N802
        return [MIME]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:  # noqa: N802
        data = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        if rows:
            data.setData(MIME, QByteArray(str(rows[0]).encode()))
        return data

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int,  # noqa: N802
                        column: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        return data.hasFormat(MIME)

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int,  # noqa: N802
                     column: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not data.hasFormat(MIME) or action == Qt.DropAction.IgnoreAction:
            return False
        try:
            src = int(bytes(data.data(MIME).data()).decode())
        except ValueError:
            return False
        n = self.rowCount()
        if row < 0:
            row = parent.row() if parent.isValid() else n
        # ``row`` is the gap the rows were dropped into; after taking ``src`` out it shifts.
        dst = row - 1 if row > src else row
        dst = max(0, min(dst, n - 1))
        # Returning True lets the view finish the move; our removeRows() does nothing, the
        # document already holds the reordered stack.
        if src != dst:
            self.moveRequested.emit(src, dst)
        return True


class LayerStackView(QTreeView):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked |
                             QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setAllColumnsShowFocus(True)
        self.setIconSize(QSize(10, 10))


class LayerStackWidget(QWidget):
    """The list plus its buttons. ``currentLayerChanged`` follows the selection."""

    currentLayerChanged = Signal(object)  # layer index or None
    addRequested = Signal(str)  # op type

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.model = LayerStackModel(document, self)
        self.view = LayerStackView()
        self.view.setModel(self.model)
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.view.selectionModel().currentRowChanged.connect(self._current_changed)

        self.add_menu = QMenu("Add layer", self)
        self.add_actions: dict[str, QAction] = {}
        for category, title in CATEGORIES:
            ops = ops_in(category)
            if not ops:
                continue
            self.add_menu.addSection(title)
            for op in ops:
                act = self.add_menu.addAction(op.type)
                act.setToolTip(op.help)
                act.setStatusTip(op.help)
                act.setData(op.type)
                act.triggered.connect(lambda _=False, t=op.type: self.addRequested.emit(t))
                self.add_actions[op.type] = act
        self.add_menu.setToolTipsVisible(True)

        self.add_button = QToolButton()
        self.add_button.setText("Add layer")
        self.add_button.setToolTip("Add a layer after the selected one (Ctrl+L)")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.add_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.add_button.setMenu(self.add_menu)

        self.buttons = QHBoxLayout()
        self.buttons.setContentsMargins(0, 0, 0, 0)
        self.buttons.setSpacing(2)
        self.buttons.addWidget(self.add_button)
        self.buttons.addStretch(1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addLayout(self.buttons)
        lay.addWidget(self.view, 1)
        self.empty_hint = QLabel("No layers yet: <b>Add layer</b> (Ctrl+L) puts one after the "
                                 "input, or open an example (File > Example pipelines).",
                                 self.view.viewport())
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setEnabled(False)  # drawn in the muted text colour
        self.empty_hint.hide()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._place_hint()

    def _place_hint(self) -> None:
        self.empty_hint.setGeometry(self.view.viewport().rect().adjusted(8, 24, -8, -8))
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty_hint.setVisible(self.model.rowCount() == 0)

    def add_tool_action(self, action: QAction) -> None:
        """A button for a window action (remove, duplicate, move) beside the add button."""
        button = QToolButton()
        button.setDefaultAction(action)
        button.setAutoRaise(True)
        self.buttons.addWidget(button)

    def current_layer(self) -> int | None:
        idx = self.view.currentIndex()
        return idx.row() if idx.isValid() else None

    def select_layer(self, row: int | None) -> None:
        sel = self.view.selectionModel()
        if row is None or not (0 <= row < self.model.rowCount()):
            sel.clearSelection()
            sel.setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.Clear)
            return
        index = self.model.index(row, 0)
        if self.view.currentIndex().row() == row and sel.isRowSelected(row):
            return
        sel.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect |
                            QItemSelectionModel.SelectionFlag.Rows)
        self.view.scrollTo(index)

    def set_run_errors(self, errors: dict[int, str]) -> None:
        self.model.set_run_errors(errors)

    def refresh(self, validation: Validation | None, select: int | None,
                run_errors: dict[int, str] | None = None) -> None:
        keep = self.current_layer() if select is None else select
        sel = self.view.selectionModel()
        selected_before = (self.current_layer(), tuple(i.row() for i in sel.selectedRows()))
        sel.blockSignals(True)
        try:
            self.model.run_errors = dict(run_errors or {})
            changed = self.model.refresh(validation)
            if keep is not None and keep >= self.model.rowCount():
                keep = self.model.rowCount() - 1 if self.model.rowCount() else None
            self.select_layer(keep)
        finally:
            sel.blockSignals(False)
        # The selection moved with its signals blocked, so the view was not told: repaint.
        # A kernel value typed changes neither the rows nor the selection: no repaint.
        if changed or selected_before != (self.current_layer(),
                                          tuple(i.row() for i in sel.selectedRows())):
            self.view.viewport().update()
        self._place_hint()
        self.currentLayerChanged.emit(self.current_layer())

    def _current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.currentLayerChanged.emit(current.row() if current.isValid() else None)

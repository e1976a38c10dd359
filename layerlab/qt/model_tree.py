"""The module tree of the torchvision model on screen (read-only): every stage under its
module path (``layer1`` > ``0`` > ``conv1``), with its type and output shape. Clicking a
stage shows it (``stagePicked``); the selection follows the stage shown."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from .session import Session
from .text import shape_text

STAGE = Qt.ItemDataRole.UserRole


class ModelTree(QWidget):
    stagePicked = Signal(int)

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["module", "type", "output"])
        self.tree.setUniformRowHeights(True)
        # Module names stay whole however deep a branch is opened (layer2 > 0 > conv1).
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemClicked.connect(self._clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree)
        self._items: dict[int, QTreeWidgetItem] = {}
        self._shown: tuple = ()
        session.resultsChanged.connect(self.refresh)
        session.modelChanged.connect(self.refresh)
        session.selectionChanged.connect(self._follow)

    @Slot()
    def refresh(self) -> None:
        s = self.session
        stages = tuple((i, v.result.name, v.result.type, v.result.shape)
                       for i, v in sorted(s.results.items())) if s.model is not None else ()
        if stages == self._shown:
            return
        self._shown = stages
        self.tree.clear()
        self._items = {}
        nodes: dict[str, QTreeWidgetItem] = {}
        for index, name, kind, shape in stages:
            path, _, call = name.partition("#")
            parts = path.split(".") if kind not in ("Input", "Normalize", "Output") else [name]
            parent = None
            for depth in range(1, len(parts)):
                key = ".".join(parts[:depth])
                if key not in nodes:
                    nodes[key] = QTreeWidgetItem([parts[depth - 1], "", ""])
                    (parent.addChild if parent else self.tree.addTopLevelItem)(nodes[key])
                parent = nodes[key]
            key = name
            item = nodes.get(path) if not call else None  # a container that is a stage too
            if item is None:
                item = QTreeWidgetItem([parts[-1] + (f"#{call}" if call else ""), "", ""])
                (parent.addChild if parent else self.tree.addTopLevelItem)(item)
                nodes[key] = item
            item.setText(1, kind)
            item.setText(2, shape_text(shape))
            item.setData(0, STAGE, index)
            item.setToolTip(0, f"stage {index}: {name}")
            self._items[index] = item
        self.tree.expandToDepth(0)
        self._follow()

    def _clicked(self, item: QTreeWidgetItem, _column: int) -> None:
        index = item.data(0, STAGE)
        if index is not None:
            self.stagePicked.emit(int(index))

    @Slot()
    def _follow(self) -> None:
        item = self._items.get(self.session.stage)
        if item is not None and self.tree.currentItem() is not item:
            self.tree.blockSignals(True)
            self.tree.setCurrentItem(item)
            self.tree.blockSignals(False)

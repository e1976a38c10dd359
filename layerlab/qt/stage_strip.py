"""The strip of stage thumbnails: one per stage, labelled with its name and shape, dimmed
while the pictures are older than the edited stack. The thumbnails are the worker's
(``StageView.thumb``: drawn from a downsampled tensor, also for stages not shown in full)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

from ..worker import StageView
from . import theme
from .text import shape_text

THUMB = QSize(96, 64)
MIN_CELL = 76  # the narrowest a stage's cell gets before the strip scrolls
LABEL_ROLE = Qt.ItemDataRole.UserRole + 1  # a cell's (name, shape) before they were cut


def qimage(arr: np.ndarray) -> QImage:
    """A QImage owning a copy of a (H, W) or (H, W, 3) uint8 array."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    else:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return img.copy()


def _mosaic_rgb(thumb, step: int = 1) -> np.ndarray:
    """Every ``step``-th pixel of the thumbnail's mosaic through its colormap, the gutters
    and empty slots in the strip's background (through the colormap their 0 would read as
    the lowest value)."""
    from ..core.render import grid_layout  # torch is there: the worker drew the thumbnail

    rgb = thumb.lut[thumb.grid_u8[::step, ::step]]
    c, h, w = thumb.channels_u8.shape
    if c > 1:
        tiles = np.zeros(thumb.grid_u8.shape, bool)
        for y, x in grid_layout(c, h, w, thumb.grid_ncols, thumb.padding):
            tiles[y:y + h, x:x + w] = True
        rgb[~tiles[::step, ::step]] = QColor(theme.THUMB_BACKGROUND).getRgb()[:3]
    return rgb


def _thumbnail(view: StageView, dpr: float = 1.0) -> QPixmap:
    """A thumbnail of THUMB logical pixels, drawn at the screen's device-pixel ratio (sharp on
    high-DPI screens): the worker's small mosaic scaled to fit, bars for a vector."""
    size = QSize(round(THUMB.width() * dpr), round(THUMB.height() * dpr))
    pix = QPixmap(size)
    pix.fill(QColor(theme.THUMB_BACKGROUND))
    painter = QPainter(pix)
    try:
        r, thumb = view.rendered, view.thumb
        if thumb is None and r is not None and r.vector is None:
            pass  # drawn in full, its thumbnail on its way: the background meanwhile
        elif thumb is None and r is None:
            painter.fillRect(pix.rect(), QColor(theme.ERROR))
            font = QFont(painter.font())
            font.setPointSize(22)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QColor("white"))
            painter.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, "!")
        elif thumb is None:
            _paint_bars(painter, r.vector, pix.width(), pix.height())
        else:
            colour_input = view.result.index == 0 and thumb.num_channels == 3
            grid = np.moveaxis(thumb.channels_u8, 0, -1) if colour_input else thumb.grid_u8
            step = max(1, max(grid.shape[0] // (2 * size.height()),
                              grid.shape[1] // (2 * size.width())))
            img = qimage(grid[::step, ::step] if colour_input else _mosaic_rgb(thumb, step))
            scaled = img.scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                Qt.TransformationMode.SmoothTransformation)
            painter.drawImage((size.width() - scaled.width()) // 2,
                              (size.height() - scaled.height()) // 2, scaled)
    finally:
        painter.end()
    pix.setDevicePixelRatio(dpr)
    return pix


def _paint_bars(painter: QPainter, values: np.ndarray, w: int, h: int) -> None:
    """A tiny bar chart for a vector stage's thumbnail (drawing only)."""
    vals = np.asarray(values, dtype=np.float64)
    vals = np.where(np.isfinite(vals), vals, 0.0)
    if vals.size == 0:
        return
    if vals.size > w:  # one bar per pixel column: the extreme value in each bucket
        idx = np.linspace(0, vals.size, w + 1).astype(int)
        vals = np.array([vals[a:b][np.argmax(np.abs(vals[a:b]))] for a, b in
                         zip(idx[:-1], idx[1:], strict=True) if b > a])
    top = max(float(np.abs(vals).max()), 1e-30)
    has_neg = bool((vals < 0).any())
    base = h / 2 if has_neg else h - 2
    scale = (h / 2 - 2 if has_neg else h - 4) / top
    bw = w / len(vals)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(theme.BAR))
    for i, v in enumerate(vals):
        bh = v * scale
        painter.drawRect(QRectF(i * bw, base - max(bh, 0), max(bw - (bw > 3), 1), abs(bh)))


class StageStrip(QListWidget):
    """Thumbnails of all stages, left to right, labelled with name and C x H x W."""

    stageClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(THUMB)
        # Wide enough for a full-size shape such as "64 × 3000 × 4000" under the thumbnail;
        # narrower (down to MIN_CELL) when that keeps every stage, the input too, in view.
        label = self.fontMetrics().horizontalAdvance("000 × 0000 × 0000") + 16
        self._full_cell = max(THUMB.width() + 28, label)
        self._cell = 0
        self._fit_cells()
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(THUMB.height() + 36 + 22)
        self.setSpacing(0)
        self.setWordWrap(False)  # two lines, each cut to the cell (_label)
        self.itemClicked.connect(self._clicked)
        self._items: dict[int, QListWidgetItem] = {}
        self._pictured: dict[int, object] = {}  # stage -> the rendering its thumbnail shows
        self._pixmaps: dict[int, QPixmap] = {}
        self._stale = False

    def _set_label(self, item: QListWidgetItem, name: str, shape: str) -> None:
        item.setData(LABEL_ROLE, (name, shape))
        item.setText(self._label(name, shape))

    def _label(self, name: str, shape: str) -> str:
        """Two lines cut to the cell: the name in its middle (what tells "layer1.0.conv1"
        from "layer1.0.conv2" is at its ends), the tight shape ("64×112×112") at its end."""
        fm, width = self.fontMetrics(), self._cell - 12
        return (fm.elidedText(name, Qt.TextElideMode.ElideMiddle, width) + "\n"
                + fm.elidedText(shape, Qt.TextElideMode.ElideRight, width))

    def _fit_cells(self) -> None:
        n = max(len(getattr(self, "_items", {})), 1)
        room = self.viewport().width() - 4
        cell = max(MIN_CELL, min(self._full_cell, room // n))
        if cell == self._cell:
            return
        self._cell = cell
        icon_w = min(THUMB.width(), cell - 12)
        self.setIconSize(QSize(icon_w, icon_w * THUMB.height() // THUMB.width()))
        self.setGridSize(QSize(cell, THUMB.height() + 36))
        for item in getattr(self, "_items", {}).values():  # cut again for the new width
            label = item.data(LABEL_ROLE)
            if label is not None:
                item.setText(self._label(*label))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._fit_cells()

    def set_stage(self, view: StageView) -> None:
        res = view.result
        item = self._items.get(res.index)
        if item is None:
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, res.index)
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            # keep the strip sorted by stage index
            row = sum(1 for i in self._items if i < res.index)
            self.insertItem(row, item)
            self._items[res.index] = item
            self._fit_cells()
        # A stage the worker served from its cache keeps its thumbnail (the very object, also
        # once its full view or its statistics came): no new picture.
        pictures = view.thumb if view.thumb is not None else (
            None if view.rendered is None else view.rendered.vector)
        # A stage drawn in full gets its thumbnail after its pictures (with its statistics):
        # until then the strip keeps the one it shows.
        pending = pictures is None and view.rendered is not None
        keep = pending and res.index in self._pixmaps
        if not keep and (pictures is None or self._pictured.get(res.index) is not pictures):
            self._pixmaps[res.index] = _thumbnail(view, self.devicePixelRatioF())
            self._pictured[res.index] = pictures
            self._show_icon(res.index)
        if res.error:
            self._set_label(item, f"{res.index} {res.name}", "failed")
            item.setForeground(QColor(theme.ERROR))
            item.setToolTip(res.error)
        else:
            self._set_label(item, f"{res.index} {res.name}",
                            shape_text(res.shape).replace(" × ", "×"))
            item.setData(Qt.ItemDataRole.ForegroundRole, None)
            timing = "cached" if res.cached else f"{res.seconds * 1000:.1f} ms"
            item.setToolTip(f"stage {res.index}: {res.name} ({res.type}), "
                            f"{shape_text(res.shape)} · {timing}")

    def set_stale(self, reason: str | None) -> None:
        """Dim every thumbnail while the pictures are not of the edited stack."""
        self._stale = reason is not None
        self.setStyleSheet(f"QListWidget {{ color: {theme.MUTED}; }}" if reason else "")
        self.setToolTip(f"Not run: {reason}" if reason else "")
        for index in self._items:
            self._show_icon(index)

    def _show_icon(self, index: int) -> None:
        pix = self._pixmaps.get(index)
        if pix is None:
            return
        icon = QIcon(pix)
        if self._stale:  # the platform's disabled look: greyed
            icon = QIcon(icon.pixmap(THUMB, pix.devicePixelRatio(), QIcon.Mode.Disabled))
        self._items[index].setIcon(icon)

    def remove_from(self, index: int) -> None:
        for i in sorted(self._items):
            if i >= index:
                self.takeItem(self.row(self._items.pop(i)))
                self._pictured.pop(i, None)
                self._pixmaps.pop(i, None)
        self._fit_cells()

    def clear_stages(self) -> None:
        self._items.clear()
        self._pictured.clear()
        self._pixmaps.clear()
        self.clear()

    def select(self, index: int) -> None:
        item = self._items.get(index)
        self.blockSignals(True)
        try:
            self.setCurrentItem(item) if item is not None else self.clearSelection()
        finally:
            self.blockSignals(False)
        if item is not None:
            self.scrollToItem(item)

    def is_error(self, index: int) -> bool:
        item = self._items.get(index)
        return item is not None and item.text().endswith("failed")

    def label(self, index: int) -> str | None:
        item = self._items.get(index)
        return None if item is None else item.text()

    @Slot(QListWidgetItem)
    def _clicked(self, item: QListWidgetItem) -> None:
        self.stageClicked.emit(int(item.data(Qt.ItemDataRole.UserRole)))

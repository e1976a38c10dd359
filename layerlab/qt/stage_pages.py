"""The pictures of the stage panel: the strip of thumbnails, the channel grid, one channel
large beside its input, and the bar chart of a vector stage. Drawing only: every array comes
ready from the worker (uint8 images with their LUT), nothing is normalised here."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsRectItem,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.receptive import Window
from ..worker import StageView
from . import theme
from .text import shape_text

MAX_LABELS = 512  # channel numbers drawn on the grid
MAX_BARS = 4096  # vector stages longer than this are drawn as a step curve
THUMB = QSize(96, 64)
MARKER_PX = 14  # on-screen size of the receptive-field marker


def qimage(arr: np.ndarray) -> QImage:
    """A QImage owning a copy of a (H, W) or (H, W, 3) uint8 array."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    else:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return img.copy()


def _thumbnail(view: StageView, dpr: float = 1.0) -> QPixmap:
    """A thumbnail of THUMB logical pixels, drawn at the screen's device-pixel ratio (sharp on
    high-DPI screens)."""
    size = QSize(round(THUMB.width() * dpr), round(THUMB.height() * dpr))
    pix = QPixmap(size)
    pix.fill(QColor(theme.THUMB_BACKGROUND))
    painter = QPainter(pix)
    try:
        r = view.rendered
        if r is None:
            painter.fillRect(pix.rect(), QColor(theme.ERROR))
            font = QFont(painter.font())
            font.setPointSize(22)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(QColor("white"))
            painter.drawText(pix.rect(), Qt.AlignmentFlag.AlignCenter, "!")
        elif r.vector is not None:
            _paint_bars(painter, r.vector, pix.width(), pix.height())
        else:
            colour_input = view.result.index == 0 and r.num_channels == 3
            grid = np.moveaxis(r.channels_u8, 0, -1) if colour_input else r.grid_u8
            step = max(1, max(grid.shape[0] // (2 * size.height()),
                              grid.shape[1] // (2 * size.width())))
            small = grid[::step, ::step]
            img = qimage(small if colour_input or r.colormap == "gray" else r.lut[small])
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
        # Wide enough for a full-size shape such as "64 × 3000 × 4000" under the thumbnail.
        label = self.fontMetrics().horizontalAdvance("000 × 0000 × 0000") + 16
        self.setGridSize(QSize(max(THUMB.width() + 28, label), THUMB.height() + 36))
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(THUMB.height() + 36 + 22)
        self.setSpacing(0)
        self.setWordWrap(True)
        self.itemClicked.connect(self._clicked)
        self._items: dict[int, QListWidgetItem] = {}
        self._pictured: dict[int, object] = {}  # stage -> the rendering its thumbnail shows
        self._pixmaps: dict[int, QPixmap] = {}
        self._stale = False

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
        # A stage the worker served from its cache keeps its rendering: no new thumbnail.
        if view.rendered is None or self._pictured.get(res.index) is not view.rendered:
            self._pixmaps[res.index] = _thumbnail(view, self.devicePixelRatioF())
            self._pictured[res.index] = view.rendered
            self._show_icon(res.index)
        if res.error:
            item.setText(f"{res.index} {res.name}\nfailed")
            item.setForeground(QColor(theme.ERROR))
            item.setToolTip(res.error)
        else:
            item.setText(f"{res.index} {res.name}\n{shape_text(res.shape)}")
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


def _image_view(glw: pg.GraphicsLayoutWidget, row: int, col: int) -> tuple[pg.ViewBox,
                                                                            pg.ImageItem]:
    vb = glw.addViewBox(row=row, col=col)
    vb.setAspectLocked(True)
    vb.invertY(True)
    vb.setMenuEnabled(False)
    vb.setDefaultPadding(0.02)
    img = pg.ImageItem(axisOrder="row-major")
    vb.addItem(img)
    return vb, img


def _rect_item(color, width: float = 1.5) -> QGraphicsRectItem:
    item = QGraphicsRectItem()
    pen = QPen(QColor(*color))
    pen.setCosmetic(True)
    pen.setWidthF(width)
    item.setPen(pen)
    item.setZValue(10)
    item.hide()
    return item


def _set_image(img: pg.ImageItem, arr: np.ndarray, lut: np.ndarray | None = None) -> None:
    """Show a ready uint8 (H, W) array through ``lut``, or an (H, W, 3) RGB array."""
    img.setImage(arr, levels=(0, 255), autoLevels=False, lut=None if arr.ndim == 3 else lut)


class GridPage(QWidget):
    """All channels of a stage as one mosaic, channel numbers on the tiles."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget(self)
        self.glw.setBackground((30, 30, 30))
        self.glw.ci.setContentsMargins(2, 2, 2, 2)
        self.vb, self.image = _image_view(self.glw, 0, 0)
        self.hover_box = _rect_item(theme.HOVER_PEN, 1.0)
        self.vb.addItem(self.hover_box, ignoreBounds=True)
        self.labels: list[pg.TextItem] = []
        self.rendered = None
        self._shape: tuple | None = None
        self.vb.sigRangeChanged.connect(self._update_label_visibility)
        self.vb.sigResized.connect(self._update_label_visibility)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.glw)

    def set_rendered(self, rendered) -> None:
        self.rendered = rendered
        _set_image(self.image, rendered.grid_u8, rendered.lut)
        c = rendered.num_channels
        while len(self.labels) < min(c, MAX_LABELS):
            label = pg.TextItem("", color=(255, 255, 255), fill=pg.mkBrush(0, 0, 0, 160),
                                anchor=(0, 0))
            label.setZValue(5)
            self.vb.addItem(label, ignoreBounds=True)
            self.labels.append(label)
        for i, label in enumerate(self.labels):
            if i < c and c > 1:
                y0, x0 = rendered.grid_origins[i]
                label.setText(str(i))
                label.setPos(x0, y0)
                label.setVisible(True)
            else:
                label.setVisible(False)
        shape = rendered.grid_u8.shape[:2]
        if shape != self._shape:
            self._shape = shape
            self.vb.autoRange(padding=0.02)
        self._update_label_visibility()

    def clear(self) -> None:
        self.rendered = None
        self._shape = None
        self.image.clear()
        self.hover_box.hide()
        for label in self.labels:
            label.setVisible(False)

    def _update_label_visibility(self, *_) -> None:
        r = self.rendered
        if r is None or r.num_channels < 2:
            return
        px = self.vb.viewPixelSize()[0]
        tile_px = r.tile_size[1] / px if px > 0 else 0
        show = tile_px >= 26
        for i, label in enumerate(self.labels):
            label.setVisible(show and i < r.num_channels)

    def tile_at(self, vx: float, vy: float) -> tuple[int, int, int] | None:
        """(channel, x, y) within its tile under view point (vx, vy), or None."""
        r = self.rendered
        if r is None:
            return None
        ix, iy = math.floor(vx), math.floor(vy)
        ch = r.channel_at(iy, ix)
        if ch is None:
            return None
        y0, x0 = r.grid_origins[ch]
        return ch, ix - x0, iy - y0

    def view_point(self, channel: int, x: int, y: int) -> QPointF:
        """Centre of pixel (x, y) of ``channel``'s tile in view coordinates."""
        y0, x0 = self.rendered.grid_origins[channel]
        return QPointF(x0 + x + 0.5, y0 + y + 0.5)

    def show_hover(self, channel: int | None, x: int = 0, y: int = 0) -> None:
        if channel is None or self.rendered is None:
            self.hover_box.hide()
            return
        y0, x0 = self.rendered.grid_origins[channel]
        self.hover_box.setRect(QRectF(x0 + x, y0 + y, 1, 1))
        self.hover_box.show()


class ChannelPage(QWidget):
    """One channel large (right) beside the image it came from (left)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.glw = pg.GraphicsLayoutWidget(self)
        self.glw.setBackground((30, 30, 30))
        self.glw.ci.setContentsMargins(2, 2, 2, 2)
        self.left_vb, self.left_image = _image_view(self.glw, 0, 0)
        self.right_vb, self.right_image = _image_view(self.glw, 0, 1)
        # Titles float in the views' top-left corners (not in the layout, whose columns must
        # stay equal so that linked views show the same area).
        self.left_title = self._title(self.left_vb)
        self.right_title = self._title(self.right_vb)
        self.rf_box = _rect_item(theme.RECEPTIVE_FIELD_PEN, 2.0)
        self.left_vb.addItem(self.rf_box, ignoreBounds=True)
        # A window a few input pixels wide is a dot on screen: a fixed-size square around it
        # keeps it visible at any zoom.
        self.rf_marker = pg.ScatterPlotItem(size=MARKER_PX, symbol="s", brush=None,
                                            pen=pg.mkPen(theme.RECEPTIVE_FIELD_PEN, width=2),
                                            pxMode=True)
        self.rf_marker.setZValue(11)
        self.left_vb.addItem(self.rf_marker, ignoreBounds=True)
        self.rf_marker.hide()
        self.stacked = False  # the two views one above the other (wide images)
        self.hover_box = _rect_item(theme.HOVER_PEN, 1.0)
        self.right_vb.addItem(self.hover_box, ignoreBounds=True)
        self.left_hw: tuple[int, int] | None = None
        self.right_hw: tuple[int, int] | None = None
        self.linked = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.glw)

    @staticmethod
    def _title(vb: pg.ViewBox) -> pg.TextItem:
        title = pg.TextItem("", color=(230, 230, 230), fill=pg.mkBrush(0, 0, 0, 170),
                            anchor=(0, 0))
        title.setParentItem(vb)
        title.setPos(4, 4)
        title.setZValue(20)
        return title

    def set_images(self, left: np.ndarray | None, left_lut: np.ndarray | None,
                   left_title: str, right: np.ndarray, right_lut: np.ndarray | None,
                   right_title: str) -> None:
        """uint8 (H, W) images through their LUTs (or RGB (H, W, 3)), side by side."""
        self.left_title.setText(left_title)
        self.right_title.setText(right_title)
        new_left = None if left is None else tuple(left.shape[:2])
        new_right = tuple(right.shape[:2])
        if left is None:
            self.left_image.clear()
        else:
            _set_image(self.left_image, left, left_lut)
        _set_image(self.right_image, right, right_lut)
        link = new_left is not None and new_left == new_right
        if link != self.linked:
            self.linked = link
            self.right_vb.setXLink(self.left_vb if link else None)
            self.right_vb.setYLink(self.left_vb if link else None)
        if new_left != self.left_hw:
            self.left_hw = new_left
            if left is not None:
                self.left_vb.autoRange(padding=0.02)
        if new_right != self.right_hw:
            self.right_hw = new_right
            self.right_vb.autoRange(padding=0.02)
        self._arrange()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._arrange()

    def _arrange(self) -> None:
        """Side by side or one above the other, whichever shows the images larger."""
        if self.right_hw is None:
            return
        h, w = self.right_hw
        vw, vh = max(self.glw.width(), 1), max(self.glw.height(), 1)
        beside = min(vw / 2 / w, vh / h)
        above = min(vw / w, vh / 2 / h)
        stacked = above > beside * 1.05  # a margin, so that a square image does not flip
        if stacked == self.stacked:
            return
        self.stacked = stacked
        ci = self.glw.ci
        ci.removeItem(self.right_vb)
        ci.addItem(self.right_vb, row=1 if stacked else 0, col=0 if stacked else 1)
        QTimer.singleShot(0, self, self._fit)  # once the layout has given the new sizes

    def _fit(self) -> None:
        for vb in (self.left_vb, self.right_vb):
            vb.autoRange(padding=0.02)

    def clear(self) -> None:
        self.left_image.clear()
        self.right_image.clear()
        self.left_hw = self.right_hw = None
        self.rf_box.hide()
        self.hover_box.hide()

    def show_window(self, window: Window | None) -> None:
        if window is None:
            self.rf_box.hide()
            self.rf_marker.hide()
            return
        self.rf_box.setRect(QRectF(window.x0, window.y0, window.width, window.height))
        self.rf_box.show()
        px = self.left_vb.viewPixelSize()[0] or 1.0  # input pixels per screen pixel
        if window.width / px < MARKER_PX:
            self.rf_marker.setData([window.x0 + window.width / 2],
                                   [window.y0 + window.height / 2])
            self.rf_marker.show()
        else:
            self.rf_marker.hide()

    def show_hover(self, x: int | None, y: int = 0) -> None:
        if x is None:
            self.hover_box.hide()
            return
        self.hover_box.setRect(QRectF(x, y, 1, 1))
        self.hover_box.show()


class VectorPage(QWidget):
    """A 1-D stage (after Flatten/Linear): one bar per value."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(self)
        self.plot.setBackground((30, 30, 30))
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.showGrid(x=False, y=True, alpha=0.3)
        item.setLabel("bottom", "index")
        item.setLabel("left", "value")
        self.bars: pg.BarGraphItem | None = None
        self.curve = pg.PlotDataItem(stepMode="center", fillLevel=0,
                                     brush=pg.mkBrush(100, 160, 230, 180),
                                     pen=pg.mkPen(100, 160, 230))
        self.plot.addItem(self.curve)
        self.marker = pg.ScatterPlotItem(size=9, pen=pg.mkPen(theme.HOVER_PEN, width=1.5),
                                         brush=pg.mkBrush(None), symbol="s")
        self.plot.addItem(self.marker)
        self.values: np.ndarray | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)

    def set_values(self, values: np.ndarray) -> None:
        resize = self.values is None or len(self.values) != len(values)
        self.values = values
        heights = np.where(np.isfinite(values), values, 0.0).astype(np.float64)
        x = np.arange(len(values))
        if len(values) <= MAX_BARS:
            self.curve.setData([], [])
            if self.bars is None:
                self.bars = pg.BarGraphItem(x=x, height=heights, width=0.8,
                                            brush=pg.mkBrush(100, 160, 230),
                                            pen=pg.mkPen(None))
                self.plot.addItem(self.bars)
            else:
                self.bars.setOpts(x=x, height=heights, width=0.8)
        else:
            if self.bars is not None:
                self.plot.removeItem(self.bars)
                self.bars = None
            self.curve.setData(np.arange(len(values) + 1) - 0.5, heights)
        if resize:
            self.plot.getPlotItem().enableAutoRange()
        self.marker.setData([], [])

    def bar_heights(self) -> np.ndarray:
        """The heights drawn (bars or the step curve), for checks."""
        if self.bars is not None:
            return np.asarray(self.bars.opts["height"])
        _, y = self.curve.getData()
        return np.zeros(0) if y is None else np.asarray(y)

    def index_at(self, vx: float) -> int | None:
        if self.values is None:
            return None
        i = int(math.floor(vx + 0.5))
        return i if 0 <= i < len(self.values) else None

    def show_hover(self, index: int | None) -> None:
        if index is None or self.values is None:
            self.marker.setData([], [])
            return
        v = float(self.values[index])
        self.marker.setData([index], [v if math.isfinite(v) else 0.0])

    def clear(self) -> None:
        self.values = None
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        self.curve.setData([], [])
        self.marker.setData([], [])


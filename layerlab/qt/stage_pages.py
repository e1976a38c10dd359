"""The pictures of the stage panel: the channel grid, one channel large beside its input,
and the bar chart of a vector stage. Drawing only: every array comes
ready from the worker (uint8 images with their LUT), nothing is normalised here."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsPathItem,
    QGraphicsRectItem,
    QVBoxLayout,
    QWidget,
)

from ..core.receptive import Window
from . import theme

GRID_BACKGROUND = (30, 30, 30)  # behind the mosaic, and in its gutters and empty slots
MAX_LABELS = 512  # channel numbers drawn on the grid
# Screen pixels a tile needs for its number: a number of two or three digits takes about 20,
# which on a smaller tile hides most of the picture.
MIN_LABELLED_TILE = 56
MAX_BARS = 4096  # vector stages longer than this are drawn as a step curve
MARKER_PX = 14  # on-screen size of the receptive-field marker


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
        self.glw.setBackground(GRID_BACKGROUND)
        self.glw.ci.setContentsMargins(2, 2, 2, 2)
        self.vb, self.image = _image_view(self.glw, 0, 0)
        self.hover_box = _rect_item(theme.HOVER_PEN, 1.0)
        self.vb.addItem(self.hover_box, ignoreBounds=True)
        # The gutters between tiles and the empty slots of the last row, in the background's
        # colour: through the colormap their 0 would read as the lowest value.
        self.gaps = QGraphicsPathItem()
        self.gaps.setPen(QPen(Qt.PenStyle.NoPen))
        self.gaps.setBrush(QColor(*GRID_BACKGROUND))
        self.gaps.setZValue(1)
        self.vb.addItem(self.gaps, ignoreBounds=True)
        self._gaps_for: tuple | None = None
        self.labels: list[pg.TextItem] = []
        self._labels_for: tuple | None = None
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
        self._place_labels(rendered)
        self._show_gaps(rendered)
        shape = rendered.grid_u8.shape[:2]
        if shape != self._shape:
            self._shape = shape
            self.vb.autoRange(padding=0.02)
        self._update_label_visibility()

    def _place_labels(self, rendered) -> None:
        """A channel number on each tile; moved only when the layout changes (an edit of a
        kernel value keeps it, and every label moved or set is repainted)."""
        c = rendered.num_channels
        key = (c, tuple(rendered.grid_origins[:MAX_LABELS]))
        if key == self._labels_for:
            return
        self._labels_for = key
        while len(self.labels) < min(c, MAX_LABELS):
            label = pg.TextItem("", color=(255, 255, 255), fill=pg.mkBrush(0, 0, 0, 160),
                                anchor=(0, 0))
            label.setZValue(5)
            label.setVisible(False)
            self.vb.addItem(label, ignoreBounds=True)
            self.labels.append(label)
        for i, label in enumerate(self.labels[:c]):
            y0, x0 = rendered.grid_origins[i]
            label.setText(str(i))
            label.setPos(x0, y0)

    def _show_gaps(self, rendered) -> None:
        """The mosaic's area with its tiles cut out (odd-even fill): the gutters and the
        last row's empty slots."""
        (h, w), c = rendered.tile_size, rendered.num_channels
        key = (c, h, w, rendered.grid_ncols, rendered.padding)
        if key == self._gaps_for:
            return
        self._gaps_for = key
        gh, gw = rendered.grid_u8.shape[:2]
        path = QPainterPath()
        path.setFillRule(Qt.FillRule.OddEvenFill)
        path.addRect(QRectF(0, 0, gw, gh))
        for y, x in rendered.grid_origins:
            path.addRect(QRectF(x, y, w, h))
        self.gaps.setPath(path)
        self.gaps.setVisible(c > 1)

    def show_picture(self, arr: np.ndarray) -> None:
        """A plain uint8 picture (H, W) or (H, W, 3) with no stage behind it: the photo,
        shown while torch loads for the first run."""
        self.clear()
        _set_image(self.image, arr)
        self._shape = arr.shape[:2]
        self.vb.autoRange(padding=0.02)

    def clear(self) -> None:
        self.rendered = None
        self._shape = self._gaps_for = None
        self.gaps.setVisible(False)
        self.image.clear()
        self.hover_box.hide()
        for label in self.labels:
            label.setVisible(False)

    def _update_label_visibility(self, *_) -> None:
        r = self.rendered
        if r is None:
            return
        px = self.vb.viewPixelSize()[0]
        tile_px = r.tile_size[1] / px if px > 0 else 0
        show = r.num_channels > 1 and tile_px >= MIN_LABELLED_TILE
        for i, label in enumerate(self.labels):
            wanted = show and i < r.num_channels
            if label.isVisible() != wanted:  # setVisible repaints even when nothing changes
                label.setVisible(wanted)

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


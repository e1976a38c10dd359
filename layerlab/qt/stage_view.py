"""The stage panel: what each stage did, at a glance and exact on demand.

Shows, for the selected stage, every channel as a tiled grid (zoom and pan), one channel large
beside the input it came from (with the receptive field of the hovered pixel drawn on the
input), 1-D stages as a bar chart, the histogram and statistics, the output shape and the
size formula with the user's numbers, and a strip of thumbnails of all stages.

Everything drawn comes ready from the worker (``StageView.rendered``: uint8 images with their
levels, histograms, statistics); hover values are read from ``StageView.values``, the exact
float32 tensor. Nothing is normalised or counted here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QColor, QFont, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import render
from ..core.imageio import LoadedImage
from ..core.pipeline import Pipeline, PipelineError
from ..core.receptive import Window, receptive_field
from ..worker import RenderOptions, RunSummary, StageView
from .colorbar import ColorBar
from .histogram_view import HistogramView

__all__ = ["HoverInfo", "StagePanel", "format_value", "formula_lines", "shape_text"]

NORMALIZE_LABELS = (
    ("channel", "per channel"),
    ("stage", "per stage"),
    ("fixed", "fixed [0, 1]"),
    ("symmetric", "symmetric \u00b1max"),
)
ERROR_COLOR = "#c62828"
RF_PEN = (255, 60, 60)
HOVER_PEN = (255, 220, 0)
MAX_LABELS = 512  # channel numbers drawn on the grid
MAX_BARS = 4096  # vector stages longer than this are drawn as a step curve
THUMB = QSize(96, 64)


def shape_text(shape) -> str:
    return " x ".join(str(int(d)) for d in shape) if shape else "-"


def format_value(v: float) -> str:
    """A float32 value, exact: the shortest text that reads back as the same float32.

    At least six decimals for ordinary magnitudes (``-0.031250``), scientific notation for
    very large or very small ones.
    """
    f = np.float32(v)
    if not np.isfinite(f):
        return "nan" if np.isnan(f) else ("inf" if f > 0 else "-inf")
    a = abs(float(f))
    if a != 0 and (a >= 1e6 or a < 1e-4):
        return np.format_float_scientific(f, unique=True, trim="-")
    text = np.format_float_positional(f, unique=True, trim="-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{float(f):.6f}" if decimals < 6 else text


def formula_lines(formula: str) -> str:
    """The engine's size formula laid out for a narrow column: the result on its own line.

    ``H_out = floor((512 + 2*1 - 1*(3-1) - 1)/1 + 1) = 512`` becomes two lines, the second
    ``      = 512`` aligned under the first ``=``.
    """
    out = []
    for line in formula.splitlines():
        head, sep, result = line.rpartition(" = ")
        if sep and " = " in head:
            indent = " " * head.index(" = ")
            out += [head, f"{indent} = {result}"]
        else:
            out.append(line)
    return "\n".join(out)


@dataclass(frozen=True)
class HoverInfo:
    """What the hover readout says about one value."""

    stage: int
    channel: int
    x: int
    y: int
    value: np.float32
    text: str
    window: Window | None = None  # receptive field in ``window_stage``'s pixels
    window_stage: int | None = None
    input_window: Window | None = None  # receptive field in the input image (stage 0)
    origin: str = ""  # where the value came from (the end of ``text``), if known

    @property
    def overlay_text(self) -> str:
        """``text`` on two lines: the value, then where it came from."""
        if not self.origin:
            return self.text
        return self.text[: -len(self.origin) - 3] + "\n" + self.origin


def _qimage(arr: np.ndarray) -> QImage:
    """A QImage owning a copy of a (H, W) or (H, W, 3) uint8 array."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    else:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    return img.copy()


def _thumbnail(view: StageView) -> QPixmap:
    pix = QPixmap(THUMB)
    pix.fill(QColor(40, 40, 40))
    painter = QPainter(pix)
    try:
        r = view.rendered
        if r is None:
            painter.fillRect(pix.rect(), QColor(ERROR_COLOR))
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
            step = max(1, max(grid.shape[0] // (2 * THUMB.height()),
                              grid.shape[1] // (2 * THUMB.width())))
            small = grid[::step, ::step]
            img = _qimage(small if colour_input or r.colormap == "gray" else r.lut[small])
            scaled = img.scaled(THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                Qt.TransformationMode.SmoothTransformation)
            painter.drawImage((THUMB.width() - scaled.width()) // 2,
                              (THUMB.height() - scaled.height()) // 2, scaled)
    finally:
        painter.end()
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
    painter.setBrush(QColor(100, 160, 230))
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
        self.setGridSize(QSize(THUMB.width() + 28, THUMB.height() + 36))
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFixedHeight(THUMB.height() + 36 + 22)
        self.setSpacing(0)
        self.setWordWrap(True)
        self.itemClicked.connect(self._clicked)
        self._items: dict[int, QListWidgetItem] = {}

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
        item.setIcon(QIcon(_thumbnail(view)))
        if res.error:
            item.setText(f"{res.index} {res.name}\nfailed")
            item.setForeground(QColor(ERROR_COLOR))
            item.setToolTip(res.error)
        else:
            item.setText(f"{res.index} {res.name}\n{shape_text(res.shape)}")
            item.setData(Qt.ItemDataRole.ForegroundRole, None)
            item.setToolTip(f"stage {res.index}: {res.name} ({res.type}), "
                            f"{shape_text(res.shape)}")

    def remove_from(self, index: int) -> None:
        for i in sorted(self._items):
            if i >= index:
                self.takeItem(self.row(self._items.pop(i)))

    def clear_stages(self) -> None:
        self._items.clear()
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
        self.hover_box = _rect_item(HOVER_PEN, 1.0)
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
        self.rf_box = _rect_item(RF_PEN, 2.0)
        self.left_vb.addItem(self.rf_box, ignoreBounds=True)
        self.hover_box = _rect_item(HOVER_PEN, 1.0)
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

    def clear(self) -> None:
        self.left_image.clear()
        self.right_image.clear()
        self.left_hw = self.right_hw = None
        self.rf_box.hide()
        self.hover_box.hide()

    def show_window(self, window: Window | None) -> None:
        if window is None:
            self.rf_box.hide()
            return
        self.rf_box.setRect(QRectF(window.x0, window.y0, window.width, window.height))
        self.rf_box.show()

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
        self.marker = pg.ScatterPlotItem(size=9, pen=pg.mkPen(HOVER_PEN, width=1.5),
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


class _OverlayFilter(QObject):
    """Re-places the hover label and re-fits the formula when the view area resizes."""

    def __init__(self, panel: StagePanel):
        super().__init__(panel)
        self._panel = panel

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Resize:
            self._panel._place_overlay()
            self._panel._fit_formula()
        return False


class StagePanel(QWidget):
    """Feature maps, histogram, statistics and shapes of every stage of a run.

    The main window feeds it the worker's ``StageView`` objects (``begin_run``, ``show_stage``,
    ``finish_run``) and the current pipeline and image (``set_context``). ``select_stage`` does
    not emit ``stageSelected``; only a pick by the user (the strip) does.
    """

    stageSelected = Signal(int)
    renderOptionsChanged = Signal(object)
    statusMessage = Signal(str)

    GRID, CHANNEL = "grid", "channel"
    COMPARE_INPUT, COMPARE_PREVIOUS = "input", "previous"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._views: dict[int, StageView] = {}
        self._generation = 0
        self._stage = 0
        self._channel = 0
        self._mode = self.GRID
        self._pipeline: Pipeline | None = None
        self._image: LoadedImage | None = None
        self._run_error: str | None = None
        self._last_hover: HoverInfo | None = None
        self._shapes_cache: tuple | None = None
        self._build()
        self._exporter = None  # created on first use (export_dialog.StageExporter)
        self._actions: list[QAction] | None = None

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        # controls
        self.normalize_box = QComboBox(self)
        for key, label in NORMALIZE_LABELS:
            self.normalize_box.addItem(label, key)
        self.normalize_box.setToolTip(
            "How floats become grey levels: each channel over its own min..max, the whole "
            "stage over one min..max, clipped to [0, 1] like ToPILImage, or zero at mid-grey")
        self.colormap_box = QComboBox(self)
        for name in render.COLORMAPS:
            self.colormap_box.addItem(name, name)
        self.bins_box = QSpinBox(self)
        self.bins_box.setRange(4, 1024)
        self.bins_box.setValue(RenderOptions().bins)
        self.bins_box.setToolTip("Histogram bins")
        self.bins_box.setKeyboardTracking(False)
        self.grid_button = QToolButton(self)
        self.grid_button.setText("All channels")
        self.grid_button.setCheckable(True)
        self.grid_button.setChecked(True)
        self.channel_button = QToolButton(self)
        self.channel_button.setText("One channel")
        self.channel_button.setCheckable(True)
        self.mode_group = QButtonGroup(self)
        self.mode_group.setExclusive(True)
        self.mode_group.addButton(self.grid_button)
        self.mode_group.addButton(self.channel_button)
        self.channel_box = QSpinBox(self)
        self.channel_box.setRange(0, 0)
        self.channel_box.setPrefix("ch ")
        self.channel_box.setToolTip("Channel shown large (click a tile in the grid to pick)")
        self.compare_box = QComboBox(self)
        self.compare_box.addItem("beside the input image", self.COMPARE_INPUT)
        self.compare_box.addItem("beside the stage's input", self.COMPARE_PREVIOUS)
        self.compare_box.setToolTip("What the large channel is shown next to; the hovered "
                                    "pixel's receptive field is drawn on it")

        controls = QHBoxLayout()
        controls.setContentsMargins(0, 0, 0, 0)
        controls.setSpacing(6)
        for w in (QLabel("Normalise", self), self.normalize_box,
                  QLabel("Colormap", self), self.colormap_box,
                  QLabel("Bins", self), self.bins_box):
            controls.addWidget(w)
        controls.addSpacing(12)
        controls.addWidget(self.grid_button)
        controls.addWidget(self.channel_button)
        controls.addWidget(self.channel_box)
        controls.addWidget(self.compare_box)
        controls.addStretch(1)

        self.strip = StageStrip(self)

        # banner for a failed run / stage
        self.banner = QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(f"color: {ERROR_COLOR}; font-weight: bold;")
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()

        # the view stack
        self.grid_page = GridPage(self)
        self.channel_page = ChannelPage(self)
        self.vector_page = VectorPage(self)
        self.error_page = QLabel(self)
        self.error_page.setWordWrap(True)
        self.error_page.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error_page.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_page.setStyleSheet(f"color: {ERROR_COLOR}; font-size: 12pt; padding: 24px;")
        self.empty_page = QLabel("Drop a photo in to see what every layer does to it.", self)
        self.empty_page.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_page.setStyleSheet("color: palette(mid); font-size: 12pt;")
        self.stack = QStackedWidget(self)
        for page in (self.empty_page, self.grid_page, self.channel_page, self.vector_page,
                     self.error_page):
            self.stack.addWidget(page)
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.stack.setMinimumSize(200, 160)
        self.overlay = QLabel(self.stack)
        self.overlay.setStyleSheet("background: rgba(0, 0, 0, 170); color: white; "
                                   "padding: 3px 6px; font-family: monospace;")
        self.overlay.hide()
        self.stack.installEventFilter(_OverlayFilter(self))
        self.colorbar = ColorBar(self)

        # header above the view: what the stage is, its shape and the size formula
        self.title_label = QLabel(self)
        self.title_label.setStyleSheet("font-weight: bold; font-size: 11pt;")
        self.shape_label = QLabel(self)
        self.shape_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula_label = QLabel(self)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(max(self.font().pointSizeF() - 1, 7))
        self.formula_label.setFont(mono)
        self.formula_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                         QSizePolicy.Policy.Preferred)
        self.formula_label.setAlignment(Qt.AlignmentFlag.AlignRight
                                        | Qt.AlignmentFlag.AlignVCenter)
        self.formula_label.installEventFilter(_OverlayFilter(self))
        self._formula = ""
        names = QVBoxLayout()
        names.setContentsMargins(0, 0, 0, 0)
        names.setSpacing(0)
        names.addWidget(self.title_label)
        names.addWidget(self.shape_label)
        header = QHBoxLayout()
        header.setContentsMargins(2, 0, 2, 0)
        header.addLayout(names)
        header.addWidget(self.formula_label, 1)

        view_row = QHBoxLayout()
        view_row.setContentsMargins(0, 0, 0, 0)
        view_row.setSpacing(2)
        view_row.addWidget(self.stack, 1)
        view_row.addWidget(self.colorbar)
        view_area = QWidget(self)
        va = QVBoxLayout(view_area)
        va.setContentsMargins(0, 0, 0, 0)
        va.setSpacing(2)
        va.addLayout(header)
        va.addLayout(view_row, 1)

        # info column: statistics and histogram
        self.histogram = HistogramView(self)
        info = QWidget(self)
        il = QVBoxLayout(info)
        il.setContentsMargins(4, 0, 0, 0)
        il.addWidget(self.histogram, 1)
        info.setMinimumWidth(240)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(view_area)
        self.splitter.addWidget(info)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([720, 280])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addLayout(controls)
        layout.addWidget(self.strip)
        layout.addWidget(self.banner)
        layout.addWidget(self.splitter, 1)

        # signals
        self.normalize_box.currentIndexChanged.connect(self._on_options)
        self.colormap_box.currentIndexChanged.connect(self._on_options)
        self.bins_box.valueChanged.connect(self._on_options)
        self.grid_button.toggled.connect(self._on_mode_button)
        self.channel_box.valueChanged.connect(self._on_channel_box)
        self.compare_box.currentIndexChanged.connect(self._on_compare)
        self.strip.stageClicked.connect(self._on_strip_clicked)
        self.grid_page.glw.scene().sigMouseMoved.connect(self._on_grid_moved)
        self.grid_page.glw.scene().sigMouseClicked.connect(self._on_grid_clicked)
        self.channel_page.glw.scene().sigMouseMoved.connect(self._on_channel_moved)
        self.vector_page.plot.scene().sigMouseMoved.connect(self._on_vector_moved)
        for page in (self.grid_page.glw, self.channel_page.glw, self.vector_page.plot):
            page.viewport().installEventFilter(self)
        self._update_controls()

    # ------------------------------------------------------------------ public API
    def clear(self) -> None:
        """Forget every stage (a new image or pipeline document)."""
        self._views.clear()
        self._run_error = None
        self._last_hover = None
        self.strip.clear_stages()
        self.grid_page.clear()
        self.channel_page.clear()
        self.vector_page.clear()
        self.histogram.clear()
        self.colorbar.set_levels(None)
        self.banner.hide()
        self.overlay.hide()
        self.title_label.setText("")
        self.shape_label.setText("")
        self._formula = ""
        self._fit_formula()
        self.stack.setCurrentWidget(self.empty_page)
        self._update_controls()

    def begin_run(self, generation: int) -> None:
        """A new run started: older generations' stages stay on screen until replaced."""
        self._generation = max(self._generation, int(generation))

    def show_stage(self, view: StageView) -> None:
        """Show one stage of the current run (stage 0 is the input)."""
        if view.generation < self._generation:
            return  # a stale result of an older run
        self._generation = view.generation
        index = view.result.index
        self._views[index] = view
        if view.result.error:
            # The run ends at a failed stage: later stages of an older run are gone.
            for i in [i for i in self._views if i > index]:
                del self._views[i]
            self.strip.remove_from(index + 1)
        self.strip.set_stage(view)
        if view.result.error and index < self._stage:
            self._stage = index  # the selected stage is gone: show the failure in its place
        if index == self._stage:
            self.strip.select(index)
            self._refresh()
        elif self._mode == self.CHANNEL and index in (0, self._stage - 1):
            self._refresh()  # the left (input) image changed

    def finish_run(self, summary: RunSummary) -> None:
        """The run ended: drop stages an older, longer run left behind; show run errors."""
        if summary.generation < self._generation:
            return
        self._generation = summary.generation
        if summary.cancelled:
            return
        if summary.error and summary.stages == 0:
            # Refused before any stage ran (memory budget, bad device): keep what is shown.
            self._run_error = summary.error
        else:
            for i in [i for i in self._views if i >= summary.stages]:
                del self._views[i]
            self.strip.remove_from(summary.stages)
            self._run_error = summary.error
            if self._views and self._stage not in self._views:
                self._stage = max(self._views)
                self.strip.select(self._stage)
        self._refresh()

    def select_stage(self, index: int) -> None:
        """Show stage ``index`` (does not emit ``stageSelected``)."""
        index = int(index)
        if index == self._stage and index in self._views:
            return
        self._stage = index
        self.strip.select(index)
        self._refresh()

    def current_stage(self) -> int:
        return self._stage

    def current_channel(self) -> int:
        return self._channel

    def select_channel(self, channel: int, *, large: bool = True) -> None:
        """Pick a channel of the current stage; with ``large`` show it beside the input."""
        self._channel = max(0, int(channel))
        if large:
            self._mode = self.CHANNEL
        self._refresh()

    def show_grid(self) -> None:
        self._mode = self.GRID
        self._refresh()

    def view_mode(self) -> str:
        return self._mode

    def stage_view(self, index: int) -> StageView | None:
        return self._views.get(index)

    def render_options(self) -> RenderOptions:
        return RenderOptions(normalize=self.normalize_box.currentData(),
                             colormap=self.colormap_box.currentData(),
                             bins=self.bins_box.value())

    def set_render_options(self, options: RenderOptions) -> None:
        """Set the controls (e.g. from saved settings) without emitting a change."""
        boxes = (self.normalize_box, self.colormap_box, self.bins_box)
        for b in boxes:
            b.blockSignals(True)
        try:
            i = self.normalize_box.findData(options.normalize)
            if i >= 0:
                self.normalize_box.setCurrentIndex(i)
            i = self.colormap_box.findData(options.colormap)
            if i >= 0:
                self.colormap_box.setCurrentIndex(i)
            self.bins_box.setValue(options.bins)
        finally:
            for b in boxes:
                b.blockSignals(False)

    def set_context(self, pipeline: Pipeline, image: LoadedImage | None) -> None:
        """The pipeline and image of the run shown (for export and receptive fields)."""
        self._pipeline = pipeline
        self._image = image
        self._shapes_cache = None
        if self._actions is not None:
            self._update_actions()
        if self._mode == self.CHANNEL and 0 in self._views:
            self._refresh()

    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    def image(self) -> LoadedImage | None:
        return self._image

    def export_actions(self) -> list[QAction]:
        """File > Export actions: channel PNG, grid PNG, all stages, copy to clipboard."""
        if self._actions is None:
            from .export_dialog import StageExporter
            self._exporter = StageExporter(self)
            self._actions = self._exporter.actions()
            self._update_actions()
        return self._actions

    def shutdown(self) -> None:
        """Cancel and join a running export (call from the window's closeEvent)."""
        if self._exporter is not None:
            self._exporter.shutdown()

    @property
    def exporter(self):
        self.export_actions()
        return self._exporter

    # ------------------------------------------------------------------ hover
    def hover_at(self, stage: int, channel: int, x: int, y: int) -> HoverInfo | None:
        """Read out the exact value at (x, y) of ``channel`` of ``stage`` (what the mouse does).

        For a 1-D stage ``x`` is the index and ``channel``/``y`` are ignored. Updates the
        overlay, the status message and, on the channel page, the receptive-field box.
        """
        info = self._hover_info(stage, channel, x, y)
        self._last_hover = info
        if info is None:
            self.overlay.hide()
            self.channel_page.show_window(None)
            self.channel_page.show_hover(None)
            self.grid_page.show_hover(None)
            self.vector_page.show_hover(None)
            if self._mode == self.GRID:
                self._update_colorbar(self._channel)
            self.statusMessage.emit("")
            return None
        self.overlay.setText(info.overlay_text)
        self._place_overlay()
        self.overlay.show()
        self.overlay.raise_()
        if stage == self._stage:
            if self._mode == self.CHANNEL and channel == self._channel:
                self.channel_page.show_hover(x, y)
                self.channel_page.show_window(info.window)
            self.grid_page.show_hover(channel, x, y)
            if self._views[stage].values.ndim == 1:
                self.vector_page.show_hover(x)
        if self._mode == self.GRID and stage == self._stage:
            self._update_colorbar(channel)
        self.statusMessage.emit(info.text)
        return info

    def last_hover(self) -> HoverInfo | None:
        return self._last_hover

    def _hover_info(self, stage: int, channel: int, x: int, y: int) -> HoverInfo | None:
        view = self._views.get(stage)
        if view is None or view.values is None:
            return None
        vals = view.values
        res = view.result
        head = f"stage {stage} {res.name}"
        if vals.ndim == 1:
            if not 0 <= x < vals.shape[0]:
                return None
            value = np.float32(vals[x])
            text = f"{head} \u00b7 index {x} = {format_value(value)}"
            origin = self._vector_origin(stage, x)
            if origin:
                text += f" \u00b7 {origin}"
            return HoverInfo(stage, 0, x, 0, value, text, origin=origin)
        if vals.ndim == 2:  # a 2-D stage (Flatten of some dimensions): one channel
            vals = vals[None]
        c, h, w = vals.shape
        if not (0 <= channel < c and 0 <= x < w and 0 <= y < h):
            return None
        value = np.float32(vals[channel, y, x])
        text = f"{head} \u00b7 ch {channel} \u00b7 (x {x}, y {y}) = {format_value(value)}"
        window = input_window = None
        window_stage = None
        origin = ""
        if stage > 0:
            target = 0 if self._compare() == self.COMPARE_INPUT else stage - 1
            input_window = self._receptive(stage, x, y, 0)
            window = input_window if target == 0 else self._receptive(stage, x, y, target)
            window_stage = target
            if input_window is not None and (input_window.width > 1 or
                                             input_window.height > 1):
                origin = (f"from input x {input_window.x0}..{input_window.x1}, "
                          f"y {input_window.y0}..{input_window.y1} "
                          f"({input_window.width} x {input_window.height})")
            elif input_window is None and self._shapes_match():
                origin = "depends on the whole image"
        if origin:
            text += f" \u00b7 {origin}"
        return HoverInfo(stage, channel, x, y, value, text, window, window_stage, input_window,
                         origin)

    def _vector_origin(self, stage: int, index: int) -> str:
        """For a Flatten of a C x H x W stage: where the value sat before flattening."""
        view, prev = self._views.get(stage), self._views.get(stage - 1)
        if view is None or prev is None or prev.values is None:
            return ""
        if view.result.type == "Flatten" and prev.values.ndim == 3 \
                and prev.values.size == view.values.size:
            c, h, w = np.unravel_index(index, prev.values.shape)
            return f"from stage {stage - 1} ch {c} (x {w}, y {h})"
        if view.result.type == "Linear":
            return f"mixes all {prev.values.size} values of stage {stage - 1}"
        return ""

    def _context_shapes(self) -> list | None:
        """The context pipeline's stage shapes, when it is the pipeline whose results are
        shown (else None: no receptive fields for a stale or different stack). Cached per
        pipeline and run, since the mouse asks on every move."""
        if self._pipeline is None or 0 not in self._views:
            return None
        key = (id(self._pipeline), tuple((i, v.generation) for i, v in self._views.items()))
        if self._shapes_cache is not None and self._shapes_cache[0] == key:
            return self._shapes_cache[1]
        hw = tuple(self._views[0].result.shape[1:])
        try:
            shapes = self._pipeline.infer_shapes(hw)
        except PipelineError:
            shapes = None
        if shapes is not None:
            for i, v in self._views.items():
                if v.result.error:
                    continue
                if i >= len(shapes) or tuple(shapes[i].shape) != tuple(v.result.shape) \
                        or shapes[i].name != v.result.name:
                    shapes = None
                    break
        self._shapes_cache = (key, shapes)
        return shapes

    def _shapes_match(self) -> bool:
        return self._context_shapes() is not None

    def _receptive(self, stage: int, x: int, y: int, to_stage: int) -> Window | None:
        shapes = self._context_shapes()
        if shapes is None:
            return None
        hw = tuple(self._views[0].result.shape[1:])
        try:
            return receptive_field(self._pipeline, hw, stage, y, x, to_stage=to_stage,
                                   shapes=shapes)
        except (PipelineError, ValueError):
            return None

    def _fit_formula(self) -> None:
        """One line per axis when it fits, else the result under each line's first '='."""
        text = self._formula
        fm = self.formula_label.fontMetrics()
        widest = max((fm.horizontalAdvance(line) for line in text.splitlines()), default=0)
        if widest > self.formula_label.width():
            text = formula_lines(text)
        self.formula_label.setText(text)
        self.formula_label.setToolTip(self._formula)

    def _place_overlay(self) -> None:
        """Bottom-left of the image views; top-left (beside the value axis) for bar charts."""
        self.overlay.setMaximumWidth(max(self.stack.width() - 12, 50))
        self.overlay.adjustSize()
        if self.stack.currentWidget() is self.vector_page:
            self.overlay.move(64, 6)
        else:
            self.overlay.move(6, max(0, self.stack.height() - self.overlay.height() - 6))

    # mouse handlers: map to pixels, then the same path as hover_at
    @Slot(object)
    def _on_grid_moved(self, pos) -> None:
        page = self.grid_page
        if page.rendered is None or not page.vb.sceneBoundingRect().contains(pos):
            self.hover_at(self._stage, -1, -1, -1)
            return
        p = page.vb.mapSceneToView(pos)
        hit = page.tile_at(p.x(), p.y())
        if hit is None:
            self.hover_at(self._stage, -1, -1, -1)
        else:
            self.hover_at(self._stage, *hit)

    @Slot(object)
    def _on_grid_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        page = self.grid_page
        pos = event.scenePos()
        if page.rendered is None or not page.vb.sceneBoundingRect().contains(pos):
            return
        p = page.vb.mapSceneToView(pos)
        hit = page.tile_at(p.x(), p.y())
        if hit is not None:
            self.select_channel(hit[0], large=True)

    @Slot(object)
    def _on_channel_moved(self, pos) -> None:
        page = self.channel_page
        if page.right_vb.sceneBoundingRect().contains(pos):
            p = page.right_vb.mapSceneToView(pos)
            self.hover_at(self._stage, self._channel, math.floor(p.x()), math.floor(p.y()))
        elif page.left_vb.sceneBoundingRect().contains(pos):
            p = page.left_vb.mapSceneToView(pos)
            stage, ch = self._left_source()
            if stage is None:
                return
            info = self._hover_info(stage, ch, math.floor(p.x()), math.floor(p.y()))
            if info is None:
                self.hover_at(self._stage, -1, -1, -1)
                return
            # Hovering the input: read its value, keep the output's box where it was.
            self._last_hover = info
            self.overlay.setText(info.overlay_text)
            self._place_overlay()
            self.overlay.show()
            self.statusMessage.emit(info.text)
        else:
            self.hover_at(self._stage, -1, -1, -1)

    @Slot(object)
    def _on_vector_moved(self, pos) -> None:
        page = self.vector_page
        vb = page.plot.getPlotItem().getViewBox()
        if page.values is None or not vb.sceneBoundingRect().contains(pos):
            self.hover_at(self._stage, 0, -1, 0)
            return
        i = page.index_at(vb.mapSceneToView(pos).x())
        self.hover_at(self._stage, 0, -1 if i is None else i, 0)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Leave:
            self.overlay.hide()
            self.channel_page.show_hover(None)
            self.grid_page.show_hover(None)
            self.vector_page.show_hover(None)
        return False

    # ------------------------------------------------------------------ drawing
    def _compare(self) -> str:
        return self.compare_box.currentData()

    def _left_source(self) -> tuple[int | None, int]:
        """(stage, channel) shown left of the large channel."""
        if self._compare() == self.COMPARE_INPUT or self._stage == 0:
            return (0 if 0 in self._views else None), 0
        prev = self._views.get(self._stage - 1)
        if prev is None or prev.rendered is None:
            return None, 0
        c = prev.rendered.num_channels
        return self._stage - 1, (self._channel if self._channel < c else 0)

    def _input_picture(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The input image as the person sees it (colour for RGB) at the stage-0 size, and
        the LUT to show it with (None for RGB)."""
        view = self._views.get(0)
        if view is None or view.rendered is None:
            return None, None
        r = view.rendered
        h, w = r.tile_size
        img = self._image
        if img is not None and tuple(img.size) == (w, h):
            arr = np.asarray(img.image)
            if arr.ndim == 2 and r.num_channels == 1:
                return arr, None
            if arr.ndim == 3 and r.num_channels == 3:
                return arr, None
        if r.num_channels == 3:  # resized by the pipeline: its three channels as rendered
            return np.ascontiguousarray(np.moveaxis(r.channels_u8, 0, -1)), None
        return r.channels_u8[0], r.lut

    def _refresh(self) -> None:
        """Redraw everything about the selected stage."""
        view = self._views.get(self._stage)
        self._update_controls()
        if self._run_error:
            self.banner.setText(self._run_error)
            self.banner.show()
        else:
            self.banner.hide()
        if view is None:
            if not self._views:
                self.stack.setCurrentWidget(self.empty_page)
            return
        res = view.result
        self.title_label.setText(f"stage {res.index} \u00b7 {res.name}"
                                 + (f" ({res.type})" if res.type != "Input" else ""))
        if res.error:
            self.shape_label.setText("")
            self._formula = ""
            self._fit_formula()
            self.error_page.setText(f"stage {res.index} ({res.name}) failed\n\n{res.error}")
            self.stack.setCurrentWidget(self.error_page)
            self.histogram.clear()
            self.colorbar.set_levels(None)
            self.overlay.hide()
            return
        timing = "cached" if res.cached else f"{res.seconds * 1000:.1f} ms"
        self.shape_label.setText(f"output <b>{shape_text(res.shape)}</b> &nbsp; "
                                 f"<span style='color: palette(mid)'>{timing}</span>")
        self._formula = res.formula
        self._fit_formula()
        r = view.rendered
        c = r.num_channels
        if self._channel >= c:
            self._channel = c - 1
            self._update_controls()
        if view.values is not None and view.values.ndim == 1:
            self.vector_page.set_values(view.values)
            self.stack.setCurrentWidget(self.vector_page)
            self.histogram.set_stage(r, None)
            self.colorbar.hide()  # the bars are drawn at their values, not through a colormap
            return
        self.colorbar.show()
        if self._mode == self.GRID:
            self.grid_page.set_rendered(r)
            self.stack.setCurrentWidget(self.grid_page)
        else:
            right = r.channels_u8[self._channel]
            right_title = f"stage {res.index} {res.name} \u00b7 ch {self._channel}"
            src_stage, src_ch = self._left_source()
            left, left_lut, left_title = None, None, ""
            if src_stage == 0 and self._compare() == self.COMPARE_INPUT:
                (left, left_lut), left_title = self._input_picture(), "input image"
            elif src_stage is not None:
                prev = self._views[src_stage]
                left, left_lut = prev.rendered.channels_u8[src_ch], prev.rendered.lut
                left_title = f"stage {src_stage} {prev.result.name} \u00b7 ch {src_ch}"
            self.channel_page.set_images(left, left_lut, left_title, right, r.lut, right_title)
            self.channel_page.show_window(None)
            self.channel_page.show_hover(None)
            self.stack.setCurrentWidget(self.channel_page)
        self.histogram.set_stage(r, self._channel)
        self._update_colorbar(self._channel)

    def _update_colorbar(self, channel: int) -> None:
        view = self._views.get(self._stage)
        if view is None or view.rendered is None:
            self.colorbar.set_levels(None)
            return
        r = view.rendered
        channel = min(max(channel, 0), r.num_channels - 1)
        lo, hi = r.levels[channel]
        mode = r.mode
        if mode == "channel":
            title = f"ch {channel}"
        elif mode == "fixed":
            title = "fixed"
        else:
            title = mode
        self.colorbar.set_levels((lo, hi), r.colormap, title)

    def _update_controls(self) -> None:
        view = self._views.get(self._stage)
        c = view.rendered.num_channels if view is not None and view.rendered is not None else 1
        is_vector = view is not None and view.values is not None and view.values.ndim == 1
        for w in (self.channel_box, self.compare_box, self.grid_button, self.channel_button):
            w.blockSignals(True)
        try:
            self.channel_box.setRange(0, max(c - 1, 0))
            self.channel_box.setValue(min(self._channel, max(c - 1, 0)))
            self.grid_button.setChecked(self._mode == self.GRID)
            self.channel_button.setChecked(self._mode == self.CHANNEL)
        finally:
            for w in (self.channel_box, self.compare_box, self.grid_button,
                      self.channel_button):
                w.blockSignals(False)
        for w in (self.channel_box, self.grid_button, self.channel_button):
            w.setEnabled(not is_vector and view is not None)
        self.compare_box.setEnabled(self._mode == self.CHANNEL and not is_vector)

    # ------------------------------------------------------------------ control slots
    @Slot()
    def _on_options(self, *_) -> None:
        self.renderOptionsChanged.emit(self.render_options())

    @Slot(bool)
    def _on_mode_button(self, grid: bool) -> None:
        self._mode = self.GRID if grid else self.CHANNEL
        self._refresh()

    @Slot(int)
    def _on_channel_box(self, value: int) -> None:
        self._channel = value
        if self._mode == self.CHANNEL:
            self._refresh()
        else:
            self.histogram.set_channel(value)
            self._update_colorbar(value)

    @Slot(int)
    def _on_compare(self, _index: int) -> None:
        self._refresh()

    @Slot(int)
    def _on_strip_clicked(self, index: int) -> None:
        if index != self._stage:
            self.select_stage(index)
        self.stageSelected.emit(index)

    def _update_actions(self) -> None:
        if self._exporter is not None:
            self._exporter.update_enabled()

"""A colour bar: the colormap from the low to the high level, with a value axis.

The levels are the ones render used to map floats to uint8 (``RenderedStage.levels``); the bar
only draws them, nothing is computed here.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core import render


class ColorBar(QWidget):
    """Vertical colour bar with a value axis on its right (low values at the bottom)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFixedWidth(84)
        self._title = QLabel("", self)
        self._title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._title.setWordWrap(True)
        self._title.setStyleSheet("font-size: 8pt; color: palette(mid);")
        self._plot = pg.PlotWidget(self)
        self._plot.setBackground(None)
        self._plot.setMenuEnabled(False)
        self._plot.setMouseEnabled(x=False, y=False)
        self._plot.hideButtons()
        item = self._plot.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.showAxis("right")
        item.getAxis("right").setWidth(52)
        item.layout.setContentsMargins(0, 4, 0, 4)
        self._image = pg.ImageItem(axisOrder="row-major")
        self._plot.addItem(self._image)
        self._plot.getViewBox().setDefaultPadding(0.0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._title)
        layout.addWidget(self._plot, 1)
        self.levels: tuple[float, float] | None = None
        self.colormap = "gray"
        self.set_levels(None)

    def set_levels(self, levels: tuple[float, float] | None, colormap: str = "gray",
                   title: str = "") -> None:
        """Show ``colormap`` from ``levels[0]`` (bottom) to ``levels[1]`` (top)."""
        self.levels = None if levels is None else (float(levels[0]), float(levels[1]))
        self.colormap = colormap
        self._title.setText(title)
        if levels is None or not all(np.isfinite(levels)):
            self._image.clear()
            self._plot.getPlotItem().getAxis("right").setStyle(showValues=False)
            return
        self._plot.getPlotItem().getAxis("right").setStyle(showValues=True)
        lo, hi = self.levels
        span = hi - lo
        if span <= 0:  # a constant stage: everything maps to the lowest colour
            span = abs(lo) * 1e-3 or 1e-3
        lut = render.colormap_lut(colormap)
        self._image.setImage(np.ascontiguousarray(lut[:, None, :]), levels=(0, 255),
                             autoLevels=False)
        self._image.setRect(QRectF(0.0, lo, 1.0, span))
        self._plot.setXRange(0.0, 1.0, padding=0)
        self._plot.setYRange(lo, lo + span, padding=0)

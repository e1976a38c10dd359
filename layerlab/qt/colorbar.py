"""The colour bar: pyqtgraph's ColorBarItem, from the low to the high level, with a value axis.

The levels are the ones render used to map floats to uint8 (``RenderedStage.levels``), or the
display range the user dragged with the bar's handles (``rangeEdited``); "Reset" (``rangeReset``)
goes back to the normalisation's own range. Nothing is computed here.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QToolButton, QVBoxLayout, QWidget

from ..core import colormaps


class ColorBar(QWidget):
    """Vertical colour bar with a value axis on its right (low values at the bottom)."""

    rangeEdited = Signal(float, float)  # the user dragged the display range (value units)
    rangeReset = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFixedWidth(92)
        self._title = QLabel("", self)
        self._title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._title.setWordWrap(True)
        self._title.setStyleSheet("font-size: 8pt; color: palette(mid);")
        self._glw = pg.GraphicsLayoutWidget(self)
        self._glw.setBackground(None)
        self._glw.ci.setContentsMargins(0, 4, 0, 4)
        self.bar = pg.ColorBarItem(values=(0.0, 1.0), width=18, interactive=True)
        axis = self.bar.getAxis("right")
        axis.setWidth(52)
        # Major ticks only: a few labels read at a glance, and the axis, redrawn whenever
        # the levels move (every edit), costs half as much to draw.
        axis.setStyle(maxTickLevel=0)
        self._glw.addItem(self.bar)
        # pyqtgraph's handles sit at a quarter and three quarters of the bar whatever the range:
        # they are levers, not markers of the range.
        self._glw.setToolTip("The colours from the lowest level (bottom) to the highest (top). "
                             "Drag a handle to move that end of the display range, or between "
                             "them to shift it; the handle springs back when released")
        self.bar.sigLevelsChanged.connect(self._dragged)
        self.reset_button = QToolButton(self)
        self.reset_button.setText("Reset")
        self.reset_button.setAutoRaise(True)
        self.reset_button.setToolTip("Back to the normalisation's own range (drag the bar's "
                                     "handles to set a display range for this stage)")
        self.reset_button.clicked.connect(self.rangeReset)
        self.reset_button.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._title)
        layout.addWidget(self._glw, 1)
        layout.addWidget(self.reset_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.levels: tuple[float, float] | None = None
        self.colormap = ""
        self._setting = False
        self.set_levels(None)

    def set_levels(self, levels: tuple[float, float] | None, colormap: str = "gray",
                   title: str = "", custom: bool = False) -> None:
        """Show ``colormap`` from ``levels[0]`` (bottom) to ``levels[1]`` (top); ``custom``:
        the range is one the user set (Reset is offered)."""
        self.levels = None if levels is None else (float(levels[0]), float(levels[1]))
        self._title.setText(title)
        self.reset_button.setEnabled(custom)
        if colormap != self.colormap:
            self.colormap = colormap
            lut = colormaps.colormap_lut(colormap)
            self.bar.setColorMap(pg.ColorMap(np.linspace(0.0, 1.0, 256), lut))
        visible = levels is not None and all(np.isfinite(levels))
        self._glw.setVisible(visible)
        if not visible:
            return
        lo, hi = self.levels
        if hi <= lo:  # a constant stage: everything maps to the lowest colour
            hi = lo + (abs(lo) * 1e-3 or 1e-3)
        self.bar.rounding = (hi - lo) / 1000  # the handles move in steps of 0.1 % of the range
        self._setting = True
        try:
            self.bar.setLevels((lo, hi))
        finally:
            self._setting = False

    def _dragged(self, bar) -> None:
        if self._setting:
            return
        lo, hi = bar.levels()
        self.rangeEdited.emit(float(lo), float(hi))

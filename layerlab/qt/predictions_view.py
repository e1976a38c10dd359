"""What a classifier says: its top-5 classes as horizontal bars of their softmax probability,
with the class names and percentages. Drawing only: the numbers come from
:func:`layerlab.core.predictions.predict`."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..core.predictions import LOGITS, Predictions, predict

BAR_COLOR = (100, 160, 230)
TOP_COLOR = (240, 170, 60)


def percent_text(probability: float) -> str:
    """``97.3%``; below 0.1% two significant digits (``0.0042%``), below 0.001% ``<0.001%``."""
    p = 100.0 * probability
    if not np.isfinite(p):
        return "n/a"
    if p >= 0.1 or p == 0:
        return f"{p:.1f}%"
    return f"{p:.2g}%" if p >= 0.001 else "<0.001%"


class PredictionsView(QWidget):
    """The top classes of the last stage, most probable on top."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel("", self)
        self.title.setStyleSheet("font-weight: bold;")
        self.plot = pg.PlotWidget(self)
        self.plot.setBackground((30, 30, 30))
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        item = self.plot.getPlotItem()
        item.setLabel("bottom", "probability (softmax)")
        item.setXRange(0, 1, padding=0.02)
        self.plot.setMinimumHeight(130)
        self.plot.setMaximumHeight(190)
        self.bars: pg.BarGraphItem | None = None
        self.texts: list[pg.TextItem] = []
        self.predictions: Predictions | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title)
        layout.addWidget(self.plot)

    def set_values(self, values: np.ndarray, classes: tuple[str, ...] = (),
                   kind: str = LOGITS) -> bool:
        """Show the top 5 of ``values``; False (and hidden) when it is no class vector."""
        found = predict(values, classes, kind=kind)
        self.predictions = found
        if found is None:
            self.hide()
            return False
        top = found.top
        y = np.arange(len(top))[::-1].astype(float)  # rank 1 at the top
        widths = np.array([p.probability if np.isfinite(p.probability) else 0.0 for p in top])
        brushes = [pg.mkBrush(*(TOP_COLOR if p.rank == 1 else BAR_COLOR)) for p in top]
        if self.bars is None:
            self.bars = pg.BarGraphItem(x0=np.zeros(len(top)), y=y, width=widths, height=0.7,
                                        brushes=brushes, pen=pg.mkPen(None))
            self.plot.addItem(self.bars)
        else:
            self.bars.setOpts(x0=np.zeros(len(top)), y=y, width=widths, height=0.7,
                              brushes=brushes)
        while len(self.texts) < len(top):
            text = pg.TextItem("", color=(235, 235, 235), anchor=(0, 0.5))
            self.plot.addItem(text)
            self.texts.append(text)
        for k, text in enumerate(self.texts):
            if k < len(top):
                text.setText(self.label(k))
                text.setPos(0.01, y[k])
                text.setVisible(True)
            else:
                text.setVisible(False)
        self.plot.getPlotItem().setYRange(-0.6, len(top) - 0.4, padding=0)
        self.plot.getPlotItem().getAxis("left").setTicks(
            [[(y[k], str(p.rank)) for k, p in enumerate(top)]])
        n = len(found.names)
        self.title.setText(f"Prediction: {top[0].name} ({percent_text(top[0].probability)})"
                           f" · top {len(top)} of {n} classes"
                           + ("" if found.named else " (no class names in the pipeline)"))
        self.show()
        return True

    def label(self, k: int) -> str:
        """The text on bar ``k`` (0 is the most probable): ``name  97.3%``."""
        p = self.predictions.top[k]
        return f"{p.name}  {percent_text(p.probability)}"

    def bar_widths(self) -> np.ndarray:
        """The drawn probabilities, most probable first (for checks)."""
        if self.bars is None:
            return np.zeros(0)
        return np.asarray(self.bars.opts["width"], dtype=np.float64)

    def labels(self) -> list[str]:
        return [t.toPlainText() for t in self.texts if t.isVisible()]

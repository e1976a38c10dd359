"""Histogram and statistics of one stage and of its selected channel.

Counts, edges and statistics come from ``RenderedStage`` (computed by render in the worker);
this widget only draws them. "log counts" changes the axis, not the data: the curve shows
``log10(count + 1)`` with a logarithmic axis labelled in counts + 1.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from . import theme
from .text import format_stat

STAGE_BRUSH = (150, 150, 150, 110)
STAGE_PEN = (120, 120, 120)
CHANNEL_PEN = (230, 120, 20)
STAT_ROWS = (("min", "min"), ("max", "max"), ("mean", "mean"), ("std", "std"),
             ("zero_fraction", "zeros"))


def _power_label(k: int) -> str:
    """10**k as a short label: 1, 10, 100, 1k, 10k, 100k, 1M, ..."""
    if k < 3:
        return str(10**k)
    prefix, rest = ("k", k - 3) if k < 6 else ("M", k - 6) if k < 9 else ("G", k - 9)
    return f"{10**rest}{prefix}"


class HistogramView(QWidget):
    """Stage histogram (grey) with the selected channel's on top (orange), and their stats."""

    logChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._rendered = None
        self._channel: int | None = None
        self.plot = pg.PlotWidget(self)
        self.plot.setBackground(None)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMinimumHeight(120)
        item = self.plot.getPlotItem()
        item.setLabel("left", "count", **{"font-size": "8pt"})
        item.showGrid(x=False, y=True, alpha=0.25)
        self.stage_curve = pg.PlotDataItem(stepMode="center", fillLevel=0,
                                           brush=pg.mkBrush(STAGE_BRUSH),
                                           pen=pg.mkPen(STAGE_PEN, width=1))
        self.channel_curve = pg.PlotDataItem(stepMode="center",
                                             pen=pg.mkPen(CHANNEL_PEN, width=1.5))
        self.plot.addItem(self.stage_curve)
        self.plot.addItem(self.channel_curve)

        self.log_box = QCheckBox("log counts", self)
        self.log_box.toggled.connect(self._on_log)
        self.legend = QLabel(self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.stats_label = QLabel(self)
        self.stats_label.setTextFormat(Qt.TextFormat.RichText)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.legend, 1)
        top.addWidget(self.log_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.stats_label)
        layout.addLayout(top)
        layout.addWidget(self.plot, 1)
        self.clear()

    # --- API ---
    def clear(self) -> None:
        self._rendered = None
        self._channel = None
        self.stage_curve.setData([], [])
        self.channel_curve.setData([], [])
        self.stats_label.setText("")
        self.legend.setText("")

    def set_stage(self, rendered, channel: int | None = None) -> None:
        """Show a ``RenderedStage`` (or None) with ``channel`` highlighted. One whose numbers
        are still being computed leaves the last ones up until they come (no flicker)."""
        if rendered is not None and not rendered.has_stats:
            return
        self._rendered = rendered
        self._channel = channel
        self._refresh()

    def set_channel(self, channel: int | None) -> None:
        if channel != self._channel:
            self._channel = channel
            self._refresh()

    @property
    def log_counts(self) -> bool:
        return self.log_box.isChecked()

    def set_log_counts(self, on: bool) -> None:
        self.log_box.setChecked(on)

    def shown_counts(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(stage counts, channel counts or None, edges) as currently shown (before log)."""
        r = self._rendered
        if r is None:
            return np.zeros(0, np.int64), None, np.zeros(0)
        ch = self._valid_channel()
        return r.hist_counts, (None if ch is None else r.channel_hist[ch]), r.hist_edges

    # --- drawing ---
    def _valid_channel(self) -> int | None:
        r, ch = self._rendered, self._channel
        if r is None or ch is None or not 0 <= ch < r.channel_hist.shape[0]:
            return None
        return ch

    @Slot(bool)
    def _on_log(self, on: bool) -> None:
        self._refresh()
        self.logChanged.emit(on)

    def _y(self, counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        return np.log10(counts + 1.0) if self.log_counts else counts

    def _refresh(self) -> None:
        r = self._rendered
        item = self.plot.getPlotItem()
        if r is None:
            self.stage_curve.setData([], [])
            self.channel_curve.setData([], [])
            self.stats_label.setText("")
            self.legend.setText("")
            self._set_axis(item)
            return
        edges = np.asarray(r.hist_edges, dtype=np.float64)
        self.stage_curve.setData(edges, self._y(r.hist_counts))
        ch = self._valid_channel()
        several = r.channel_hist.shape[0] > 1
        legend = f"<span style='color: rgb{STAGE_PEN}'>&#9632; stage</span>"
        if ch is not None and several:
            self.channel_curve.setData(edges, self._y(r.channel_hist[ch]))
            legend += f" &nbsp;<span style='color: rgb{CHANNEL_PEN}'>&#9632; ch {ch}</span>"
        else:
            self.channel_curve.setData([], [])
        self.legend.setText(f"{legend} &nbsp;<span style='color: palette(mid)'>"
                            f"{len(r.hist_counts)} bins</span>")
        item.enableAutoRange()
        item.getViewBox().updateAutoRange()
        self._set_axis(item)
        self.stats_label.setText(self._stats_html(r, ch if several else None))

    def _set_axis(self, item) -> None:
        """Log labels on the count axis (after the data, so the range is already in log10).

        In log mode only the powers of ten are labelled (1, 10, 100, 1k, ...) and 2..9 times
        them are unlabelled minor ticks: pyqtgraph's own log labels crowd into each other
        (``9·10¹ 8·10¹ ...``) on short ranges."""
        axis = item.getAxis("left")
        if not self.log_counts:
            axis.setTicks(None)
        else:
            top = 0.0
            if self._rendered is not None and len(self._rendered.hist_counts):
                top = float(np.log10(np.max(self._rendered.hist_counts) + 1.0))
            decades = range(0, int(math.ceil(top)) + 1)
            major = [(float(k), _power_label(k)) for k in decades]
            minor = [(math.log10(m) + k, "") for k in decades for m in range(2, 10)]
            axis.setTicks([major, minor])
        item.setLabel("left", "count + 1" if self.log_counts else "count",
                      **{"font-size": "8pt"})

    @staticmethod
    def _stats_html(r, ch: int | None) -> str:
        cell = "style='padding: 0 6px; text-align: right'"
        head = f"<tr><td></td><th {cell}>stage</th>"
        if ch is not None:
            head += f"<th {cell}>ch {ch}</th>"
        rows = [head + "</tr>"]
        for key, label in STAT_ROWS:
            sv = r.stats[key]
            if key == "zero_fraction":
                text = f"{100 * sv:.2f} %"
            else:
                text = format_stat(sv)
            row = f"<tr><td>{label}</td><td {cell}>{text}</td>"
            if ch is not None:
                cv = float(r.channel_stats[key][ch])
                ctext = f"{100 * cv:.2f} %" if key == "zero_fraction" else format_stat(cv)
                row += f"<td {cell}>{ctext}</td>"
            rows.append(row + "</tr>")
        bad = []
        if r.stats.get("nan_count"):
            bad.append(f"{r.stats['nan_count']} NaN")
        if r.stats.get("inf_count"):
            bad.append(f"{r.stats['inf_count']} inf")
        extra = (f"<tr><td colspan=3 style='color: {theme.ERROR}'>{', '.join(bad)} "
                 f"(not counted)</td></tr>") if bad else ""
        return "<table cellspacing=0>" + "".join(rows) + extra + "</table>"

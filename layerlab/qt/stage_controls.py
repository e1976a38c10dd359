"""The stage panel's controls row (normalisation, colormap, bins, grid or one channel) and
its header (the stage's name, shape, time and size formula). Widgets only: they show what they
are given and say what the user picked."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import colormaps
from ..worker import RenderOptions
from .hover import COMPARE_INPUT, COMPARE_PREVIOUS
from .text import shape_text

NORMALIZE_LABELS = (
    ("channel", "per channel"),
    ("stage", "per stage"),
    ("fixed", "fixed [0, 1]"),
    ("symmetric", "symmetric \u00b1max"),
)


class StageControls(QWidget):
    """Normalise, Colormap, Bins; All channels / One channel, the channel, what it is beside."""

    optionsChanged = Signal()  # normalise, colormap or bins
    modeChanged = Signal(bool)  # True: all channels as a grid
    channelChanged = Signal(int)
    compareChanged = Signal()
    lookForRequested = Signal()  # what does the shown channel look for?

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.normalize_box = QComboBox(self)
        for key, label in NORMALIZE_LABELS:
            self.normalize_box.addItem(label, key)
        self.normalize_box.setToolTip(
            "How floats become grey levels: each channel over its own min..max, the whole "
            "stage over one min..max, clipped to [0, 1] like ToPILImage, or zero at mid-grey")
        self.colormap_box = QComboBox(self)
        for name in colormaps.COLORMAPS:
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
        self.compare_box.addItem("beside the input image", COMPARE_INPUT)
        self.compare_box.addItem("beside the stage's input", COMPARE_PREVIOUS)
        self.compare_box.setToolTip("What the large channel is shown next to; the hovered "
                                    "pixel's receptive field is drawn on it")
        # Narrower than their longest entries (the full text is in the open list), so the
        # row fits beside the layer list on a 1366-pixel screen.
        for box, chars in ((self.normalize_box, 8), (self.compare_box, 14)):
            box.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(chars)
        self.look_button = QToolButton(self)
        # Short, so the row fits beside the layer list on a 1366-pixel screen.
        self.look_button.setText("Looks for…")
        self.look_button.setToolTip("What does this channel look for? Search for the input "
                                    "image that makes the selected channel respond most "
                                    "(gradient ascent from noise)")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        for w in (QLabel("Normalise", self), self.normalize_box,
                  QLabel("Colormap", self), self.colormap_box,
                  QLabel("Bins", self), self.bins_box):
            row.addWidget(w)
        row.addSpacing(8)
        for w in (self.grid_button, self.channel_button, self.channel_box, self.compare_box,
                  self.look_button):
            row.addWidget(w)
        row.addStretch(1)
        self.normalize_box.currentIndexChanged.connect(lambda _: self.optionsChanged.emit())
        self.colormap_box.currentIndexChanged.connect(lambda _: self.optionsChanged.emit())
        self.bins_box.valueChanged.connect(lambda _: self.optionsChanged.emit())
        self.grid_button.toggled.connect(self.modeChanged)
        self.channel_box.valueChanged.connect(self.channelChanged)
        self.compare_box.currentIndexChanged.connect(lambda _: self.compareChanged.emit())
        self.look_button.clicked.connect(self.lookForRequested)

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

    def compare(self) -> str:
        return self.compare_box.currentData()

    def show_state(self, *, grid: bool, channels: int, channel: int, vector: bool,
                   has_stage: bool) -> None:
        """Reflect the shown stage without emitting anything."""
        boxes = (self.channel_box, self.compare_box, self.grid_button, self.channel_button)
        for w in boxes:
            w.blockSignals(True)
        try:
            self.channel_box.setRange(0, max(channels - 1, 0))
            self.channel_box.setValue(min(channel, max(channels - 1, 0)))
            self.grid_button.setChecked(grid)
            self.channel_button.setChecked(not grid)
        finally:
            for w in boxes:
                w.blockSignals(False)
        for w in (self.channel_box, self.grid_button, self.channel_button):
            w.setEnabled(not vector and has_stage)
        self.compare_box.setEnabled(not grid and not vector)
        self.look_button.setEnabled(not vector and has_stage)


def _result_only(line: str) -> str:
    """``H_out = floor((512 + 2*1 - 1*(3-1) - 1)/1 + 1) = 512`` -> ``H_out = 512``."""
    name, sep, rest = line.partition(" = ")
    result = rest.rpartition(" = ")[2]
    return f"{name} = {result}" if sep and " = " in rest else line


class StageHeader(QWidget):
    """Above the view: what the stage is, its output shape and time, and the size formula."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = QLabel(self)
        self.title.setStyleSheet("font-weight: bold; font-size: 11pt;")
        self.shape = QLabel(self)
        self.shape.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula = QLabel(self)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(max(self.font().pointSizeF() - 1, 7))
        self.formula.setFont(mono)
        self.formula.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.formula.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._formula = ""
        self.formula.installEventFilter(self)
        names = QVBoxLayout()
        names.setContentsMargins(0, 0, 0, 0)
        names.setSpacing(0)
        names.addWidget(self.title)
        names.addWidget(self.shape)
        row = QHBoxLayout(self)
        row.setContentsMargins(2, 0, 2, 0)
        row.addLayout(names)
        row.addWidget(self.formula, 1)

    def show_result(self, res) -> None:
        """A stage's header (``res`` is its StageResult)."""
        self.title.setText(f"stage {res.index} \u00b7 {res.name}"
                           + (f" ({res.type})" if res.type != "Input" else ""))
        if res.error:
            self.shape.setText("")
            self.set_formula("")
            return
        timing = "cached" if res.cached else f"{res.seconds * 1000:.1f} ms"
        self.shape.setText(f"output <b>{shape_text(res.shape)}</b> &nbsp; "
                           f"<span style='color: palette(mid)'>{timing}</span>")
        self.set_formula(res.formula)

    def set_formula(self, formula: str) -> None:
        self._formula = formula
        self._fit()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if obj is self.formula and event.type() == QEvent.Type.Resize:
            self._fit()  # its width is known once the layout has placed it
        return False

    def _fit(self) -> None:
        """One line per axis when it fits the header; else only the results ("H_out = 256")
        with the whole formula in the tooltip. Wrapping it would push the view down, and the
        Parameters panel shows the formula in full."""
        text = self._formula
        fm = self.formula.fontMetrics()
        widest = max((fm.horizontalAdvance(line) for line in text.splitlines()), default=0)
        if widest > self.formula.width():
            text = "\n".join(_result_only(line) for line in text.splitlines())
        self.formula.setText(text)
        self.formula.setToolTip(self._formula)


class SidewaysScroll(QScrollArea):
    """One row of controls that scrolls sideways when it does not fit; exactly as tall as
    the row, plus the scroll bar only while the bar is shown."""

    def __init__(self, row: QWidget):
        super().__init__()
        self.setWidget(row)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fit_height()

    def _fit_height(self) -> None:
        row = self.widget()
        bar = self.horizontalScrollBar().sizeHint().height()
        needs_bar = self.width() < row.minimumSizeHint().width()
        self.setFixedHeight(row.sizeHint().height() + (bar if needs_bar else 0))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._fit_height()

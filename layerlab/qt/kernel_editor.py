"""Kernel editor for a Conv2d: one (out, in) slice as a grid of cells, presets, scaling,
seeded init and the bias values.

The editor shows the weights the engine uses (explicit params, or the seeded init made
concrete) and emits intents: one typed value (``cellEdited``: parameter, position, value) or a
whole new tensor for presets, scaling and normalising (``paramEdited``). The controller turns
each into one undoable edit; repeated edits of the same cell merge into one undo step.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.edits import materialize
from ..core.kernels import DEFAULT_INIT, INIT_SCHEMES, PRESET_HELP, PRESETS, fit_kernel, preset
from ..core.pipeline import LayerSpec
from .fields import NumberSpinBox
from .text import format_decimal
from .value_table import ValueTable

CELL_RANGE = 1e6


def cell_colour(value: float, max_abs: float) -> QColor:
    """Blue for negative, red for positive, stronger with |value| / max |value|."""
    if not np.isfinite(value):
        return QColor(255, 230, 120)
    t = 0.0 if max_abs <= 0 else min(1.0, abs(value) / max_abs)
    strength = 0.12 + 0.68 * t if value != 0 else 0.0
    target = (214, 39, 40) if value > 0 else (31, 96, 196)
    r, g, b = (round(255 + (c - 255) * strength) for c in target)
    return QColor(r, g, b)


def text_colour(background: QColor) -> QColor:
    return QColor(0, 0, 0) if background.lightness() > 130 else QColor(255, 255, 255)


class KernelCell(NumberSpinBox):
    def __init__(self, y: int, x: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.y, self.x = y, x
        self.setRange(-CELL_RANGE, CELL_RANGE)
        self.setSingleStep(0.1)
        self.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setAutoFillBackground(True)
        self.max_chars: int | None = None  # characters a cell shows; None: every decimal
        self._help = "type a value, or scroll / press ↑ ↓ to change it by 0.1"
        self._painted: tuple[float, float] | None = None  # (value, max |value|) shown

    # Big kernels show fewer digits so every cell is readable at its width; the exact value
    # is in the tooltip and the summary, and an untouched cell keeps it exactly.
    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt's name
        width = getattr(self, "max_chars", None)  # Qt asks while the box is being built
        if width is None:
            return super().textFromValue(value)
        for digits in range(6, 0, -1):  # the most significant digits that fit the cell
            text = f"{value:.{digits}g}"
            if len(text) <= width:
                break
        return "0" if text in ("-0", "0") else text

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt's name
        if text.strip() == self.textFromValue(self.value()):
            return self.value()  # shown rounded, not changed: keep every digit
        return super().valueFromText(text)

    def paint_value(self, value: float, max_abs: float) -> None:
        if (value, max_abs) == self._painted:
            return  # the same look: an edit of another cell leaves this one as it is
        self._painted = (value, max_abs)
        self.setToolTip(f"weight[…, {self.y}, {self.x}] = {format_decimal(value)}: "
                        f"{self._help}")
        pal = self.palette()
        bg = cell_colour(value, max_abs)
        pal.setColor(QPalette.ColorRole.Base, bg)
        pal.setColor(QPalette.ColorRole.Text, text_colour(bg))
        self.setPalette(pal)


PLACEHOLDER = "<i>Select a convolution layer (Conv2d, ConvTranspose2d) to edit its kernels.</i>"


MIN_CELL_WIDTH = 40  # pixels: "-0.111" in the small font of big kernels


class KernelEditor(QWidget):
    """Edits one Conv2d layer's weight and bias."""

    cellEdited = Signal(int, str, object, float)  # layer, param name, position (tuple), value
    paramEdited = Signal(int, str, object, str)  # layer, param name, whole new array, undo text
    sliceChanged = Signal(int, int)  # the (out, in) slice shown
    initRequested = Signal(int, object)  # layer, init dict: the seeded init replaces weights
    statusMessage = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._index: int | None = None
        self._layer: LayerSpec | None = None
        self._weight: np.ndarray | None = None
        self._axes: tuple[int, int] = (0, 1)
        self._bias: np.ndarray | None = None
        self.cells: list[list[KernelCell]] = []
        self._grid_shape: tuple[int, int] | None = None
        self._title: str | None = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)
        self.placeholder = QLabel(PLACEHOLDER)
        self.placeholder.setWordWrap(True)
        outer.addWidget(self.placeholder)

        self.content = QWidget()
        lay = QVBoxLayout(self.content)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        outer.addWidget(self.content, 1)

        pick = QHBoxLayout()
        self.out_box = QSpinBox()
        self.out_box.setToolTip("Output channel: which kernel (one per output feature map)")
        self.in_box = QSpinBox()
        self.in_box.setToolTip("Input channel: which slice of that kernel (one per input "
                               "channel; R, G, B for an RGB input)")
        for box in (self.out_box, self.in_box):
            box.setMinimumWidth(56)
            box.valueChanged.connect(self._slice_changed)
        pick.addWidget(QLabel("Slice: out"))
        pick.addWidget(self.out_box)
        pick.addWidget(QLabel("in"))
        pick.addWidget(self.in_box)
        pick.addStretch(1)
        lay.addLayout(pick)
        self.source = QLabel()
        self.source.setObjectName("kernelSource")
        self.source.setWordWrap(True)
        self.source.setEnabled(False)
        lay.addWidget(self.source)

        self.grid_host = QWidget()
        self.grid = QGridLayout(self.grid_host)
        self.grid.setSpacing(2)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.scroll = QScrollArea()
        self.scroll.setWidget(self.grid_host)
        self.scroll.setWidgetResizable(False)
        self.scroll.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scroll.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        lay.addWidget(self.scroll)
        self.summary = QLabel()
        self.summary.setObjectName("kernelSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)

        tools = QGroupBox("Change the kernel")
        tl = QGridLayout(tools)
        tl.setContentsMargins(6, 6, 6, 6)
        tl.setHorizontalSpacing(4)
        self.preset_box = QComboBox()
        self.preset_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset_box.setMinimumContentsLength(10)
        for name in PRESETS:
            self.preset_box.addItem(name)
            self.preset_box.setItemData(self.preset_box.count() - 1, PRESET_HELP.get(name, ""),
                                        Qt.ItemDataRole.ToolTipRole)
        self.preset_box.setCurrentText("tutorial sharpen")
        self.preset_box.setToolTip("Kernel presets (hover an entry for what it does)")
        self.preset_btn = QPushButton("Apply preset")
        self.preset_btn.setToolTip("Put the preset kernel into this slice (centred, cropped or "
                                   "zero-padded to the layer's kernel size)")
        self.preset_btn.clicked.connect(lambda: self.apply_preset())
        tl.addWidget(self.preset_box, 0, 0, 1, 4)
        tl.addWidget(self.preset_btn, 0, 4)

        self.mul_box = NumberSpinBox()
        self.mul_box.setRange(-1e6, 1e6)
        self.mul_box.setValue(1.0)
        self.mul_box.setToolTip("Multiply every value by this")
        self.div_box = NumberSpinBox()
        self.div_box.setRange(-1e6, 1e6)
        self.div_box.setValue(1.0)
        self.div_box.setToolTip("Divide every value by this (e.g. -9 for the tutorials' "
                                "ones(3, 3) / -9)")
        self.scale_btn = QPushButton("Scale")
        self.scale_btn.setToolTip("Multiply by the first number and divide by the second")
        self.scale_btn.clicked.connect(self.apply_scale)
        tl.addWidget(QLabel("×"), 1, 0)
        tl.addWidget(self.mul_box, 1, 1)
        tl.addWidget(QLabel("÷"), 1, 2)
        tl.addWidget(self.div_box, 1, 3)
        tl.addWidget(self.scale_btn, 1, 4)

        self.all_slices = QCheckBox("All slices")
        self.all_slices.setToolTip("Apply the preset, scaling or normalising to every "
                                   "(out, in) slice of the weight, not only the one shown")
        self.norm_btn = QPushButton("Normalise sum to 1")
        self.norm_btn.setToolTip("Divide the kernel by the sum of its values")
        self.norm_btn.clicked.connect(self.normalise)
        tl.addWidget(self.all_slices, 2, 0, 1, 2)
        tl.addWidget(self.norm_btn, 2, 2, 1, 3)
        tl.setColumnStretch(1, 1)
        tl.setColumnStretch(3, 1)
        lay.addWidget(tools)

        self.init_group = init = QGroupBox("Random init")
        il = QHBoxLayout(init)
        il.setContentsMargins(6, 6, 6, 6)
        self.scheme_box = QComboBox()
        self.scheme_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scheme_box.setMinimumContentsLength(10)
        self.scheme_box.addItems(list(INIT_SCHEMES))
        self.scheme_box.setToolTip("Initialisation scheme (torch.nn.init), seeded and "
                                   "reproducible")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setMinimumWidth(60)
        self.seed_box.setToolTip("Seed of the generator: the same seed gives the same weights")
        self.init_btn = QPushButton("Initialise")
        self.init_btn.setToolTip("Replace the weights (all slices) and bias with this seeded "
                                 "init")
        self.init_btn.clicked.connect(self.apply_init)
        il.addWidget(self.scheme_box, 1)
        il.addWidget(QLabel("seed"))
        il.addWidget(self.seed_box)
        il.addWidget(self.init_btn)
        lay.addWidget(init)

        self.bias_group = QGroupBox("Bias (one per output channel)")
        bl = QVBoxLayout(self.bias_group)
        bl.setContentsMargins(6, 6, 6, 6)
        self.bias_table = ValueTable()
        self.bias_table.setMaximumHeight(130)
        self.bias_table.valueEdited.connect(self._bias_edited)
        self.bias_table.rejected.connect(self.statusMessage)
        bl.addWidget(self.bias_table)
        lay.addWidget(self.bias_group)
        lay.addStretch(1)
        self.set_layer(None, None)

    # --- state ---
    @property
    def layer_index(self) -> int | None:
        return self._index

    def current_slice(self) -> tuple[int, int]:
        return self.out_box.value(), self.in_box.value()

    def set_layer(self, index: int | None, layer: LayerSpec | None, *,
                  title: str | None = None, note: str | None = None) -> None:
        """Show ``layer``'s kernels; ``title`` names where they live when they are not a
        stack layer's (a model's module path: its weights, edited in place). Without a
        kernel, ``note`` (or the usual hint) says why."""
        self._title = title
        self.init_group.setVisible(title is None)  # a model's weights have no seeded init
        if layer is None or layer.op.kernel is None:
            self._index, self._layer = None, None
            self.placeholder.setText(note or PLACEHOLDER)
            self.placeholder.show()
            self.content.hide()
            return
        try:
            values = materialize(layer)
        except Exception as e:  # invalid args: nothing to show until they are fixed
            self._index, self._layer = index, None
            self.placeholder.setText(f"<i>The kernel can be edited once the layer's arguments "
                                     f"are valid ({type(e).__name__}).</i>")
            self.placeholder.show()
            self.content.hide()
            return
        self.placeholder.setText(PLACEHOLDER)
        self.placeholder.hide()
        self.content.show()
        self._index, self._layer = index, layer
        # Shown and edited as (out, in, kh, kw) whatever the op stores (see OpSpec.kernel_axes).
        self._axes = layer.op.kernel_axes
        self._weight = self._to_shown(np.asarray(values["weight"]))
        self._bias = values.get("bias")
        o_n, i_n, kh, kw = self._weight.shape
        for box, n in ((self.out_box, o_n), (self.in_box, i_n)):
            box.blockSignals(True)
            box.setRange(0, n - 1)
            box.blockSignals(False)
        if self._grid_shape != (kh, kw):
            self._build_grid(kh, kw)
        if title is not None:
            self.source.setText(title)
            self.source.setToolTip("The module of the model whose weights these are; an edit "
                                   "changes them in place (File > Save model weights keeps "
                                   "them)")
        elif "weight" in layer.params:
            self.source.setText("explicit values")
            self.source.setToolTip("The weights are stored in the pipeline value by value")
        else:
            init = dict(layer.init)
            self.source.setText(f"{init.get('scheme')} init, seed {init.get('seed')}")
            self.source.setToolTip("The weights come from this seeded init; editing a value "
                                   "stores them all explicitly")
            self.scheme_box.setCurrentText(init.get("scheme", DEFAULT_INIT["scheme"]))
            self.seed_box.setValue(int(init.get("seed", 0)))
        self._show_slice()
        self._show_bias()

    @property
    def shows_stack_layer(self) -> bool:
        """The kernels shown are a stack layer's (not a model module's, not none)."""
        return self._layer is not None and self._title is None

    def _build_grid(self, kh: int, kw: int) -> None:
        for row in self.cells:
            for cell in row:
                self.grid.removeWidget(cell)
                cell.deleteLater()
        self.cells = []
        big = max(kh, kw)
        max_chars = None if big <= 3 else 7 if big <= 5 else 6
        font = QFont(self.font())
        if big > 7:
            font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        elif big > 5:
            font.setPointSizeF(max(7.5, font.pointSizeF() - 1.0))
        for y in range(kh):
            row = []
            for x in range(kw):
                cell = KernelCell(y, x)
                cell.setObjectName(f"cell_{y}_{x}")
                cell.setFont(font)
                cell.max_chars = max_chars
                cell.valueChanged.connect(lambda v, c=cell: self._cell_changed(c, v))
                self.grid.addWidget(cell, y, x)
                row.append(cell)
            self.cells.append(row)
        self._grid_shape = (kh, kw)
        self._size_cells()
        QTimer.singleShot(0, self, self._centre_grid)

    def _size_cells(self) -> None:
        """The cells' width for the kernel's size, narrower (down to MIN_CELL_WIDTH) in a
        narrow panel so that a 7 x 7 kernel shows whole; bigger kernels scroll."""
        kh, kw = self._grid_shape
        big = max(kh, kw)
        preferred = 72 if big <= 3 else 64 if big <= 5 else 54 if big <= 7 else 46
        spacing = self.grid.spacing()
        margins = self.grid.contentsMargins()
        frame = 2 * self.scroll.frameWidth()
        side_bar = self.scroll.verticalScrollBar().sizeHint().width() if kh > 7 else 0
        room = (self.scroll.width() - frame - side_bar - margins.left() - margins.right()
                - (kw - 1) * spacing)
        width = max(MIN_CELL_WIDTH, min(preferred, room // kw))
        for row in self.cells:
            for cell in row:
                cell.setFixedWidth(width)
        cell_h = self.cells[0][0].sizeHint().height()
        grid_w = kw * width + (kw - 1) * spacing + margins.left() + margins.right()
        grid_h = kh * cell_h + (kh - 1) * spacing + margins.top() + margins.bottom()
        self.grid_host.setFixedSize(grid_w, grid_h)
        fits = grid_w <= self.scroll.width() - frame - side_bar
        bar = 0 if fits else self.scroll.horizontalScrollBar().sizeHint().height()
        # Up to 7 rows show whole; bigger kernels scroll.
        visible = min(grid_h, 7 * cell_h + 6 * spacing + margins.top() + margins.bottom())
        self.scroll.setFixedHeight(visible + frame + bar)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._grid_shape is not None and self.cells:
            self._size_cells()

    def _centre_grid(self) -> None:
        """Big kernels open scrolled to their centre, where a fitted preset sits."""
        for bar in (self.scroll.horizontalScrollBar(), self.scroll.verticalScrollBar()):
            bar.setValue((bar.minimum() + bar.maximum()) // 2)

    def _slice(self) -> np.ndarray:
        assert self._weight is not None
        o, i = self.current_slice()
        return self._weight[o, i]

    def _show_slice(self) -> None:
        if self._weight is None:
            return
        k = self._slice()
        finite = k[np.isfinite(k)]
        max_abs = float(np.abs(finite).max()) if finite.size else 0.0
        for y, row in enumerate(self.cells):
            for x, cell in enumerate(row):
                v = float(k[y, x])
                if cell.value() != v or not cell.hasFocus():
                    cell.blockSignals(True)
                    cell.setValue(v)
                    cell.blockSignals(False)
                cell.paint_value(v, max_abs)
        o, i = self.current_slice()
        total = float(k.sum(dtype=np.float64))
        self.summary.setText(f"weight[{o}, {i}] · {k.shape[0]}×{k.shape[1]} · sum "
                             f"{format_decimal(total)} · min {format_decimal(float(k.min()))}"
                             f" · max {format_decimal(float(k.max()))}")

    def _show_bias(self) -> None:
        self.bias_group.setVisible(self._bias is not None)
        if self._bias is not None:
            self.bias_table.show_values({"bias": self._bias})

    def _slice_changed(self) -> None:
        self._show_slice()
        self.sliceChanged.emit(*self.current_slice())

    def set_slice(self, out_channel: int, in_channel: int) -> None:
        """Show the (out, in) slice (clamped to the weight's shape)."""
        for box, v in ((self.out_box, out_channel), (self.in_box, in_channel)):
            box.setValue(min(max(int(v), box.minimum()), box.maximum()))

    # --- edits ---
    def _to_shown(self, weight: np.ndarray) -> np.ndarray:
        out_axis, in_axis = self._axes
        return np.moveaxis(weight, (out_axis, in_axis), (0, 1))

    def _to_stored(self, weight: np.ndarray) -> np.ndarray:
        out_axis, in_axis = self._axes
        return np.ascontiguousarray(np.moveaxis(weight, (0, 1), (out_axis, in_axis)))

    def _emit_weight(self, weight: np.ndarray, text: str) -> None:
        self.paramEdited.emit(self._index, "weight", self._to_stored(weight.astype(np.float32)),
                              text)

    def _cell_changed(self, cell: KernelCell, value: float) -> None:
        if self._weight is None or self._index is None:
            return
        position = [0, 0, cell.y, cell.x]
        out_axis, in_axis = self._axes
        position[out_axis], position[in_axis] = self.current_slice()
        self.cellEdited.emit(self._index, "weight", tuple(position), float(value))

    def set_cell(self, y: int, x: int, value: float) -> None:
        """Type ``value`` into cell (y, x) of the shown slice (as a person would)."""
        self.cells[y][x].setValue(value)

    def _targets(self) -> list[tuple[int, int]]:
        assert self._weight is not None
        if self.all_slices.isChecked():
            return [(o, i) for o in range(self._weight.shape[0])
                    for i in range(self._weight.shape[1])]
        return [self.current_slice()]

    def _where(self) -> str:
        if self.all_slices.isChecked():
            return "all slices"
        o, i = self.current_slice()
        return f"weight[{o}, {i}]"

    def apply_preset(self, name: str | None = None) -> None:
        if self._weight is None:
            return
        name = name or self.preset_box.currentText()
        kh, kw = self._weight.shape[2:]
        kernel = fit_kernel(preset(name), (kh, kw)).numpy()
        w = np.array(self._weight, dtype=np.float32, copy=True)
        for o, i in self._targets():
            w[o, i] = kernel
        self._emit_weight(w, f"Preset {name} ({self._where()})")
        if (kh, kw) != tuple(preset(name).shape):
            self.statusMessage.emit(f"Preset {name} is {tuple(preset(name).shape)[0]}×"
                                    f"{tuple(preset(name).shape)[1]}; fitted to the layer's "
                                    f"{kh}×{kw} kernel")

    def apply_scale(self) -> None:
        if self._weight is None:
            return
        m, d = self.mul_box.value(), self.div_box.value()
        if d == 0:
            self.statusMessage.emit("Cannot divide by 0")
            return
        import torch  # torch's float32 arithmetic, as the tutorials do it

        w = torch.from_numpy(np.array(self._weight, dtype=np.float32, copy=True))
        for o, i in self._targets():
            w[o, i] = w[o, i] * m / d
        self._emit_weight(w.numpy(), f"Scale × {format_decimal(m)} ÷ {format_decimal(d)} "
                                     f"({self._where()})")

    def normalise(self) -> None:
        if self._weight is None:
            return
        import torch

        w = torch.from_numpy(np.array(self._weight, dtype=np.float32, copy=True))
        skipped = 0
        for o, i in self._targets():
            s = w[o, i].sum()
            if abs(float(s)) < 1e-12:
                skipped += 1
                continue
            w[o, i] = w[o, i] / s
        if skipped == len(self._targets()):
            self.statusMessage.emit("The kernel sums to 0: it cannot be normalised to sum 1")
            return
        if skipped:
            self.statusMessage.emit(f"{skipped} slice(s) sum to 0 and were left as they are")
        self._emit_weight(w.numpy(), f"Normalise to sum 1 ({self._where()})")

    def apply_init(self) -> None:
        if self._index is None:
            return
        self.initRequested.emit(self._index, {"scheme": self.scheme_box.currentText(),
                                 "seed": self.seed_box.value()})

    def _bias_edited(self, name: str, row: int, value: float) -> None:
        if self._bias is not None and self._index is not None:
            self.cellEdited.emit(self._index, name, (row,), value)

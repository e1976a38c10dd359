"""One small editor widget per kind of parameter (int, float, pair, padding, ...).

Each edits a value in the pipeline's JSON form and emits ``edited(value)``; none of them knows
about a particular op. ``ParamForm`` picks them from a table by the parameter's kind.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QLocale, QSize, Signal
from PySide6.QtGui import QColor, QPalette, QValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from ..core.specs import Param
from . import theme
from .text import format_decimal

INT_LIMIT = 2**31 - 1


class NumberSpinBox(QDoubleSpinBox):
    """A double spin box that shows and accepts any float, scientific notation included
    (``1e-5``), with no rounding to a fixed number of decimals."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDecimals(15)
        self.setKeyboardTracking(False)
        self.setLocale(QLocale.c())
        self.setAccelerated(True)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt's name
        return format_decimal(value)

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt's name
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        t = text.strip()
        if t in ("", "-", "+", ".", "-.", "+.") or t.lower().endswith(("e", "e-", "e+")):
            return QValidator.State.Intermediate, text, pos
        try:
            v = float(t)
        except ValueError:
            return QValidator.State.Invalid, text, pos
        if not math.isfinite(v):
            return QValidator.State.Invalid, text, pos
        if v < self.minimum() or v > self.maximum():
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Acceptable, text, pos

    def fixup(self, text: str) -> str:
        return format_decimal(self.value())

    # Qt sizes a double spin box for its longest possible text (15 decimals here); size it
    # for the numbers it actually shows instead.
    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self._hint(super().sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return self._hint(super().minimumSizeHint())

    def _hint(self, base: QSize) -> QSize:
        fm = self.fontMetrics()
        text = fm.horizontalAdvance("-0.0000000") + 8
        buttons = 0 if self.buttonSymbols() == QAbstractSpinBox.ButtonSymbols.NoButtons else 18
        return QSize(min(base.width(), text + buttons + 6), base.height())


def range_tip(p: Param) -> str:
    """The parameter's help and its valid range, for a tooltip."""
    if p.minimum is None and p.maximum is None:
        return p.help
    lo = "any" if p.minimum is None else f"{p.minimum:g}"
    hi = "any" if p.maximum is None else f"{p.maximum:g}"
    return f"{p.help} Valid: {lo} to {hi}."


# The boxes take any number, not only the valid ones: an impossible value (kernel_size 0) must
# stay visible, in red with the reason, instead of snapping back to the last valid one.
def _spin(p: Param) -> QSpinBox:
    box = QSpinBox()
    box.setRange(-INT_LIMIT, INT_LIMIT)
    box.setKeyboardTracking(False)
    box.setAccelerated(True)
    box.setToolTip(range_tip(p))
    box.setMinimumWidth(64)
    return box


def _number(p: Param) -> NumberSpinBox:
    box = NumberSpinBox()
    lo = p.minimum if p.minimum is not None else -1e12
    hi = p.maximum if p.maximum is not None else 1e12
    box.setRange(-1e12, 1e12)
    span = hi - lo
    box.setSingleStep(0.01 if span <= 2 else 0.1)
    if p.minimum is not None and 0 < p.minimum < 1e-3:
        box.setSingleStep(p.default / 10 if p.default else 1e-6)
    box.setToolTip(range_tip(p))
    box.setMinimumWidth(80)
    return box


# --- editors ---------------------------------------------------------------------------------


class FieldEditor(QWidget):
    """One parameter's editor: ``value()``/``set_value()`` in JSON form, ``edited`` signal."""

    edited = Signal(object)

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(parent)
        self.param = param
        self.setToolTip(param.help)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._updating = False

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        self._updating = True
        try:
            self._set(value)
        finally:
            self._updating = False

    def _set(self, value: Any) -> None:
        raise NotImplementedError

    def _emit(self, *_: object) -> None:
        if not self._updating:
            self.edited.emit(self.value())

    def set_error(self, on: bool) -> None:
        """Tint the field's inputs (a palette change keeps the native look)."""
        if bool(self.property("error")) == on:
            return
        self.setProperty("error", on)
        for w in self.findChildren(QWidget):
            if isinstance(w, QAbstractSpinBox | QLineEdit | QComboBox):
                if on:
                    pal = w.palette()
                    for role in (QPalette.ColorRole.Base, QPalette.ColorRole.Button):
                        pal.setColor(role, QColor(theme.ERROR_TINT))
                    w.setPalette(pal)
                else:
                    w.setPalette(QPalette())


class IntEditor(FieldEditor):
    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.box = _spin(param)
        self.box.valueChanged.connect(self._emit)
        self._layout.addWidget(self.box)

    def value(self) -> int:
        return self.box.value()

    def _set(self, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.box.setValue(int(value))


class FloatEditor(FieldEditor):
    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.box = _number(param)
        self.box.valueChanged.connect(self._emit)
        self._layout.addWidget(self.box)

    def value(self) -> float:
        return float(self.box.value())

    def _set(self, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.box.setValue(float(value))


class BoolEditor(FieldEditor):
    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.box = QCheckBox()
        self.box.setToolTip(param.help)
        self.box.toggled.connect(self._emit)
        self._layout.addWidget(self.box)
        self._layout.addStretch(1)

    def value(self) -> bool:
        return self.box.isChecked()

    def _set(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class ChoiceEditor(FieldEditor):
    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.box = QComboBox()
        self.box.addItems(list(param.choices))
        self.box.setToolTip(param.help)
        self.box.currentIndexChanged.connect(self._emit)
        self._layout.addWidget(self.box)

    def value(self) -> str:
        return self.box.currentText()

    def _set(self, value: Any) -> None:
        i = self.box.findText(str(value))
        if i >= 0:
            self.box.setCurrentIndex(i)


class PairEditor(FieldEditor):
    """Height and width spin boxes with a link toggle: linked means one number (square)."""

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.h = _spin(param)
        self.w = _spin(param)
        self.h.setToolTip(f"{range_tip(param)} (height)")
        self.w.setToolTip(f"{range_tip(param)} (width)")
        self.link = QToolButton()
        self.link.setCheckable(True)
        self.link.setChecked(True)
        self.link.setText("=")
        self.link.setToolTip("Square: one number for height and width. Untick to set them "
                             "separately.")
        self.link.setAccessibleName(f"{param.name} square")
        self.h.valueChanged.connect(self._h_changed)
        self.w.valueChanged.connect(self._emit)
        self.link.toggled.connect(self._link_toggled)
        self._layout.addWidget(self.h, 1)
        self._layout.addWidget(self.link)
        self._layout.addWidget(self.w, 1)
        self._sync_enabled()

    def _h_changed(self, v: int) -> None:
        if self.link.isChecked():
            self.w.blockSignals(True)
            self.w.setValue(v)
            self.w.blockSignals(False)
        self._emit()

    def _link_toggled(self, on: bool) -> None:
        if on and self.w.value() != self.h.value():
            self.w.blockSignals(True)
            self.w.setValue(self.h.value())
            self.w.blockSignals(False)
        self._sync_enabled()
        self._emit()

    def _sync_enabled(self) -> None:
        self.w.setEnabled(not self.link.isChecked())

    def value(self) -> int | list[int]:
        if self.link.isChecked():
            return self.h.value()
        return [self.h.value(), self.w.value()]

    def _set(self, value: Any) -> None:
        widgets = (self.h, self.w, self.link)
        for wdg in widgets:
            wdg.blockSignals(True)
        try:
            if isinstance(value, list | tuple) and len(value) == 2:
                self.link.setChecked(False)
                self.h.setValue(int(value[0]))
                self.w.setValue(int(value[1]))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                self.link.setChecked(True)
                self.h.setValue(int(value))
                self.w.setValue(int(value))
            self._sync_enabled()
        finally:
            for wdg in widgets:
                wdg.blockSignals(False)


class OptionalEditor(FieldEditor):
    """A checkbox meaning 'none' (or 'auto') and the inner editor for a value."""

    def __init__(self, param: Param, inner: FieldEditor, label: str,
                 parent: QWidget | None = None):
        super().__init__(param, parent)
        self.inner = inner
        self.none = QCheckBox(label)
        self.none.setToolTip(f"{param.help} Ticked: {label} (null in the pipeline file).")
        self.none.toggled.connect(self._toggled)
        inner.edited.connect(self._emit)
        self._layout.addWidget(self.none)
        self._layout.addWidget(inner, 1)

    def _toggled(self, on: bool) -> None:
        self.inner.setEnabled(not on)
        self._emit()

    def show_null_meaning(self, text: str, effective: Any = None) -> None:
        """Label the switch with what null means here and, while it is on, show the value
        torch then uses (greyed) instead of a stale one."""
        self.none.setText(text)
        if self.none.isChecked() and effective is not None:
            self.inner.set_value(effective)

    def value(self) -> Any:
        return None if self.none.isChecked() else self.inner.value()

    def _set(self, value: Any) -> None:
        self.none.blockSignals(True)
        self.none.setChecked(value is None)
        self.none.blockSignals(False)
        self.inner.setEnabled(value is not None)
        if value is not None:
            self.inner.set_value(value)


class OptBoolEditor(FieldEditor):
    CHOICES = (("none", None), ("true", True), ("false", False))

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.box = QComboBox()
        for text, _ in self.CHOICES:
            self.box.addItem(text)
        self.box.setToolTip(param.help)
        self.box.currentIndexChanged.connect(self._emit)
        self._layout.addWidget(self.box)

    def value(self) -> bool | None:
        return self.CHOICES[self.box.currentIndex()][1]

    def _set(self, value: Any) -> None:
        for i, (_, v) in enumerate(self.CHOICES):
            if v is value:
                self.box.setCurrentIndex(i)


class PaddingEditor(FieldEditor):
    """Conv2d padding: a number / pair, or 'same' / 'valid'."""

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.mode = QComboBox()
        self.mode.addItems(["number", *param.choices])
        self.mode.setToolTip(param.help)
        self.pair = PairEditor(param)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.pair.edited.connect(self._emit)
        self._layout.addWidget(self.mode)
        self._layout.addWidget(self.pair, 1)

    def _mode_changed(self) -> None:
        self.pair.setEnabled(self.mode.currentIndex() == 0)
        self._emit()

    def value(self) -> Any:
        if self.mode.currentIndex() == 0:
            return self.pair.value()
        return self.mode.currentText()

    def _set(self, value: Any) -> None:
        self.mode.blockSignals(True)
        if isinstance(value, str):
            self.mode.setCurrentText(value)
        else:
            self.mode.setCurrentIndex(0)
            self.pair.set_value(value)
        self.pair.setEnabled(self.mode.currentIndex() == 0)
        self.mode.blockSignals(False)


class Pad4Editor(FieldEditor):
    """Padding layers: left, right, top, bottom (one number when all four are equal)."""

    SIDES = ("left", "right", "top", "bottom")

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.boxes = []
        for side in self.SIDES:
            box = _spin(param)
            box.setMinimumWidth(44)
            box.setToolTip(f"{param.help} ({side})")
            box.setAccessibleName(f"{param.name} {side}")
            box.valueChanged.connect(self._emit)
            self.boxes.append(box)
            self._layout.addWidget(box, 1)

    def value(self) -> int | list[int]:
        values = [b.value() for b in self.boxes]
        return values[0] if len(set(values)) == 1 else values

    def _set(self, value: Any) -> None:
        values = list(value) if isinstance(value, list | tuple) else [value] * 4
        if len(values) != 4:
            return
        for box, v in zip(self.boxes, values, strict=True):
            box.blockSignals(True)
            box.setValue(int(v))
            box.blockSignals(False)


class IntsEditor(FieldEditor):
    """A list of integers typed as "1, 28, 28"."""

    def __init__(self, param: Param, parent: QWidget | None = None):
        super().__init__(param, parent)
        self.line = QLineEdit()
        self.line.setPlaceholderText("e.g. 1, 28, 28")
        self.line.setToolTip(param.help + " Separate the numbers with commas.")
        self.line.editingFinished.connect(self._finished)
        self._layout.addWidget(self.line)
        self.parse_error: str | None = None

    @staticmethod
    def parse(text: str) -> list[int]:
        parts = [t for t in text.replace("[", " ").replace("]", " ").replace(",", " ").split()]
        if not parts:
            raise ValueError("type at least one integer, e.g. 1, 28, 28")
        try:
            return [int(t) for t in parts]
        except ValueError:
            raise ValueError(f"not a list of integers: {text!r}") from None

    def _finished(self) -> None:
        if self._updating:
            return
        try:
            value = self.parse(self.line.text())
        except ValueError as e:
            self.parse_error = str(e)
            self.set_error(True)
            self.line.setToolTip(str(e))
            return
        self.parse_error = None
        self.line.setToolTip(self.param.help)
        self.edited.emit(value)

    def value(self) -> list[int]:
        return self.parse(self.line.text())

    def _set(self, value: Any) -> None:
        if isinstance(value, list | tuple):
            text = ", ".join(str(v) for v in value)
            if text != self.line.text():
                self.line.setText(text)

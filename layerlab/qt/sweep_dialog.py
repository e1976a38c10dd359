"""Animate a parameter from the window (File > Export > Animate parameter…): the dialog that
chooses the layer, the parameter, its values, the stage and the format, and the job that
writes the animation off the GUI thread behind a progress dialog.

The job is the headless ``layerlab sweep`` (:func:`layerlab.core.sweep_output.export_sweep`)
run on the preview image the window shows, with the view's normalisation and colormap; a
cancelled or failed sweep writes nothing. The values are checked when Export is pressed, so a
bad value is a message in the dialog, which stays open.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core import sweep, sweep_output
from ..core.edits import materialize
from ..core.pipeline import Pipeline
from .session import Session

# What the values box suggests for a parameter, by name, then by kind.
SUGGESTED = {"kernel_size": "1,3,5,7", "stride": "1..4", "dilation": "1..4", "padding": "0..3",
             "negative_slope": "0..1:5", sweep.INPUT_SIZE: "64,128,256"}
SUGGESTED_KIND = {"int": "1..4", "float": "0..1:5", "pair": "1..4", "opt_pair": "1..4",
                  "padding": "0..3", "cell": "-1..1:5", "scale": "0..2:5"}
FORMAT_NAMES = {"gif": "Animated GIF (.gif)", "apng": "Animated PNG (.png)",
                "frames": "PNG folder (frame-000.png, …)"}


class SweepJob(QThread):
    """Runs ``export_sweep`` off the GUI thread; cancel() stops it between frames."""

    progressed = Signal(int, int, str)
    succeeded = Signal(str)  # the path written
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, pipeline: Pipeline, image: torch.Tensor, target: sweep.Target,
                 values: list, stage: int, out: str, options: dict[str, Any],
                 parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName("layerlab-sweep")
        self.args = (pipeline, image, target, values, stage, out)
        self.options = options
        self._cancel = threading.Event()
        self.path: str | None = None
        self.error: str | None = None
        self.thread_ident: int | None = None  # which thread did the work (tests read it)

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:  # the job's thread
        self.thread_ident = threading.get_ident()
        try:
            path, _ = sweep_output.export_sweep(
                *self.args, progress=lambda d, t, text: self.progressed.emit(d, t, text),
                cancel=self._cancel.is_set, **self.options)
        except sweep.SweepCancelled:
            self.cancelled.emit()
        except sweep.SweepError as e:
            self.error = str(e)
            self.failed.emit(self.error)
        except Exception as e:  # never let the thread die silently
            self.error = f"unexpected error: {type(e).__name__}: {e}"
            self.failed.emit(self.error)
        else:
            self.path = str(path)
            self.succeeded.emit(self.path)


class SweepDialog(QDialog):
    """Layer, parameter, values, stage, format, timing and the output file of a sweep."""

    def __init__(self, session: Session, parent: QWidget | None, start_dir: str):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Animate parameter")
        pipe = session.pipeline
        self.layer_box = QComboBox(self)
        for i, layer in pipe.enabled_layers():
            self.layer_box.addItem(f"{i}: {layer.display_name(i)} ({layer.type})", i)
        self.layer_box.addItem("the input size", None)
        if session.layer is not None:
            k = self.layer_box.findData(session.layer)
            self.layer_box.setCurrentIndex(max(0, k))
        self.param_box = QComboBox(self)
        self.param_box.setEditable(True)  # any argument, or a cell such as weight[0,0,1,1]
        self.values = QLineEdit(self)
        self.values.setToolTip("values separated by commas; A..B: every whole number from A "
                               "to B; A..B:N: N evenly spaced numbers; pairs as HxW")
        self.stage_box = QComboBox(self)
        self.format_box = QComboBox(self)
        for key, text in FORMAT_NAMES.items():
            self.format_box.addItem(text, key)
        self.range_box = QComboBox(self)
        self.range_box.addItem("shared by all frames (no flicker)", "shared")
        self.range_box.addItem("each frame its own", "frame")
        self.duration = QSpinBox(self)
        self.duration.setRange(10, 60000)
        self.duration.setValue(500)
        self.duration.setSuffix(" ms")
        self.zoom = QSpinBox(self)
        self.zoom.setRange(1, sweep_output.MAX_ZOOM)
        self.zoom.setSuffix(" x")
        self.out = QLineEdit(os.path.join(start_dir, "layerlab-sweep.gif"), self)
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out, 1)
        row.addWidget(browse)
        self.error_label = QLabel(self)
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00020;")
        note = QLabel("One frame per value, the value printed on it, on the preview image "
                      "with the view's normalisation and colormap (the same as "
                      "<code>layerlab sweep</code>).", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self._try_accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(note)
        for label, w in (("Layer", self.layer_box), ("Parameter", self.param_box),
                         ("Values", self.values), ("Stage shown", self.stage_box),
                         ("Format", self.format_box), ("Range", self.range_box),
                         ("Frame duration", self.duration), ("Zoom", self.zoom)):
            form.addRow(label, w)
        form.addRow("File", row)
        form.addRow(self.error_label)
        form.addRow(buttons)
        self.layer_box.currentIndexChanged.connect(self._fill_params)
        self.param_box.currentTextChanged.connect(self._suggest_values)
        self.format_box.currentIndexChanged.connect(self._format_picked)
        self._fill_params()
        self.request: tuple | None = None  # (target, values, stage, out, fmt), once accepted
        self.resize(520, self.sizeHint().height())

    # --- the choices ---
    @Slot()
    def _fill_params(self, *_: object) -> None:
        layer = self.layer_box.currentData()
        self.param_box.blockSignals(True)
        self.param_box.clear()
        if layer is None:
            self.param_box.addItem(sweep.INPUT_SIZE)
        else:
            spec = self.session.pipeline.layers[layer]
            for p in spec.op.params:
                self.param_box.addItem(p.name)
            if spec.op.kernel is not None:  # the middle cell of the first kernel
                shape = materialize(spec)[spec.op.kernel].shape
                cell = ",".join(["0"] * (len(shape) - 2) + [str(s // 2) for s in shape[-2:]])
                self.param_box.addItem(f"{spec.op.kernel}[{cell}]")
                self.param_box.addItem(f"{spec.op.kernel}*")  # the whole kernel's strength
            names = [p.name for p in spec.op.params]
            for preferred in ("kernel_size", "negative_slope", "stride"):
                if preferred in names:
                    self.param_box.setCurrentIndex(names.index(preferred))
                    break
        self.param_box.blockSignals(False)
        self._suggest_values(self.param_box.currentText())
        self.stage_box.clear()
        self.stage_box.addItem("the layer's output" if layer is not None else "the last stage",
                               None)
        for k, name in enumerate(self.session.pipeline.stage_names()):
            self.stage_box.addItem(f"{k}: {name}", k)

    @Slot(str)
    def _suggest_values(self, name: str) -> None:
        layer = self.layer_box.currentData()
        text = SUGGESTED.get(name)
        if text is None and "[" in name:
            text = SUGGESTED_KIND["cell"]
        if text is None and name.endswith("*"):
            text = SUGGESTED_KIND["scale"]
        if text is None and layer is not None:
            try:
                kind = self.session.pipeline.layers[layer].op.param(name).kind
            except KeyError:
                kind = ""
            text = SUGGESTED_KIND.get(kind, "")
        self.values.setText(text or "")

    @Slot()
    def _format_picked(self, *_: object) -> None:
        fmt = self.format_box.currentData()
        root, ext = os.path.splitext(self.out.text())
        suffix = {"gif": ".gif", "apng": ".png", "frames": ""}[fmt]
        if ext.lower() in (".gif", ".png", ".apng", ""):
            self.out.setText(root + suffix)

    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the animation", self.out.text())
        if path:
            self.out.setText(path)

    # --- checking ---
    def check(self) -> tuple:
        """The sweep the dialog describes, checked; raises SweepError with the reason."""
        pipe = self.session.pipeline
        target = sweep.parse_target(pipe, self.layer_box.currentData(),
                                    self.param_box.currentText())
        values = sweep.parse_values(pipe, target, self.values.text())
        stage = sweep.resolve_stage(pipe, target, None if self.stage_box.currentData() is None
                                    else str(self.stage_box.currentData()))
        out = self.out.text().strip()
        fmt = self.format_box.currentData()
        sweep_output.check_output(out, fmt)
        return target, values, stage, out, fmt

    @Slot()
    def _try_accept(self) -> None:
        try:
            self.request = self.check()
        except sweep.SweepError as e:
            self.error_label.setText(str(e))
            return
        self.accept()

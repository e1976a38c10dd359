"""The fit panel: watch a filter learn.

The user picks a target (this stack with the selected conv set to a kernel preset such as
Sobel x, another pipeline file, or an image file), which layers learn, the optimiser, its
learning rate and the number of steps; Start runs ``core.fitting.fit`` as a job in its own
thread (``JobRunner``), so the window never waits. Every few steps the job reports the loss
(drawn on a log axis) and the current weights, which go out as ``weightsFitted`` for the
controller: the document takes them with one merge key per fit, so the kernel editor and the
feature maps follow and the whole fit stays ONE undo step. Stop keeps the weights of the last
report. Any other change of the stack while a fit runs stops it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.kernels import PRESET_HELP, PRESETS
from ..worker import JobOutcome, JobRunner
from . import theme
from .session import Session

if TYPE_CHECKING:
    from ..core.fitting import FitProgress, Target

# core.fitting is torch: it is imported where a fit starts, so the window paints before torch.

OPTIMIZER_CHOICES = (  # (label, name, the learning rate it usually wants)
    ("Adam", "adam", 0.05),
    ("SGD (momentum 0.9)", "sgd", 0.5),
    ("L-BFGS", "lbfgs", 1.0),
)
TARGET_KINDS = (
    ("this stack with a kernel preset", "preset"),
    ("another pipeline file", "pipeline"),
    ("an image file", "image"),
)
LOSS_FLOOR = 1e-30  # a loss of exactly 0 has no place on a log axis


class FitPanel(QWidget):
    # {layer index: {param name: float32 array}}, undo text, merge key (one per fit)
    weightsFitted = Signal(object, str, object)
    statusMessage = Signal(str)

    _fit_ids = itertools.count(1)

    def __init__(self, session: Session, jobs: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.jobs = jobs
        self.last_report: FitProgress | None = None
        self.losses: list[tuple[int, float]] = []
        self._merge_key: tuple | None = None
        self._text = ""
        self._steps = 0
        self._applying = False  # our own weights are going into the document
        self._interrupted = False  # the stack changed under a running fit
        self._build()
        jobs.progress.connect(self._on_progress)
        jobs.finished.connect(self._on_finished)
        jobs.busyChanged.connect(self._on_busy)
        session.selectionChanged.connect(self._show_subject)
        session.document.changed.connect(self._on_document_changed)
        self._show_subject()
        self._on_busy(False)

    def _build(self) -> None:
        self.subject = QLabel()
        self.subject.setWordWrap(True)
        self.subject.setStyleSheet("font-weight: bold;")
        self.kind_box = QComboBox()
        for label, kind in TARGET_KINDS:
            self.kind_box.addItem(label, kind)
        self.kind_box.setToolTip("What the stage's output should become")
        self.preset_box = QComboBox()
        for name in PRESETS:
            self.preset_box.addItem(name, name)
            self.preset_box.setItemData(self.preset_box.count() - 1, PRESET_HELP.get(name, ""),
                                        Qt.ItemDataRole.ToolTipRole)
        self.preset_box.setCurrentIndex(self.preset_box.findData("sobel x"))
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("a *.layerlab.json file or an image")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)
        path_row = QWidget()
        pr = QHBoxLayout(path_row)
        pr.setContentsMargins(0, 0, 0, 0)
        pr.addWidget(self.path_edit, 1)
        pr.addWidget(self.browse_button)
        self.path_row = path_row
        self.layers_box = QComboBox()
        self.layers_box.addItem("the selected layer", "selected")
        self.layers_box.addItem("every layer with weights up to its stage", "all")
        self.start_box = QComboBox()
        self.start_box.addItem("its current weights", "current")
        self.start_box.addItem("a random init (seed)", "seed")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setToolTip("Seed of the kaiming-normal init the fit starts from")
        start_row = QWidget()
        sr = QHBoxLayout(start_row)
        sr.setContentsMargins(0, 0, 0, 0)
        sr.addWidget(self.start_box, 1)
        sr.addWidget(self.seed_box)
        self.optimizer_box = QComboBox()
        for label, name, _lr in OPTIMIZER_CHOICES:
            self.optimizer_box.addItem(label, name)
        self.optimizer_box.setToolTip("L-BFGS solves a single conv's fit (a linear least "
                                      "squares problem) in a few dozen steps; Adam and SGD "
                                      "show the slow descent")
        self.lr_box = QDoubleSpinBox()
        self.lr_box.setDecimals(5)
        self.lr_box.setRange(1e-5, 10.0)
        self.lr_box.setSingleStep(0.01)
        self.lr_box.setValue(OPTIMIZER_CHOICES[0][2])
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100000)
        self.steps_box.setValue(200)
        self.every_box = QSpinBox()
        self.every_box.setRange(1, 1000)
        self.every_box.setValue(5)
        self.every_box.setToolTip("How often the loss curve, the kernel and the feature maps "
                                  "follow (in optimiser steps)")
        form = QFormLayout()
        form.addRow("Target", self.kind_box)
        form.addRow("Preset", self.preset_box)
        form.addRow("File", path_row)
        form.addRow("Learn", self.layers_box)
        form.addRow("Start from", start_row)
        form.addRow("Optimiser", self.optimizer_box)
        form.addRow("Learning rate", self.lr_box)
        form.addRow("Steps", self.steps_box)
        form.addRow("Show every", self.every_box)
        self.form = form

        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMinimumHeight(160)
        self.plot.setLogMode(x=False, y=True)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "MSE loss")
        self.curve = self.plot.plot([], [], pen=pg.mkPen((60, 120, 220), width=2))

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.subject)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.plot, 1)
        self.kind_box.currentIndexChanged.connect(self._show_target_fields)
        self.start_box.currentIndexChanged.connect(
            lambda _: self.seed_box.setEnabled(self.start_box.currentData() == "seed"))
        self.optimizer_box.currentIndexChanged.connect(
            lambda i: self.lr_box.setValue(OPTIMIZER_CHOICES[i][2]))
        self._show_target_fields()
        self.seed_box.setEnabled(False)

    # ------------------------------------------------------------------ the form
    def _show_target_fields(self) -> None:
        preset = self.kind_box.currentData() == "preset"
        self.form.setRowVisible(self.preset_box, preset)
        self.form.setRowVisible(self.path_row, not preset)

    def _browse(self) -> None:
        if self.kind_box.currentData() == "pipeline":
            what, filt = "Target pipeline", "LayerLab pipelines (*.layerlab.json *.json)"
        else:
            what, filt = "Target image", "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff " \
                                         "*.webp *.gif);;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, what, self.path_edit.text(), filt)
        if path:
            self.path_edit.setText(path)

    def set_target(self, kind: str, value: str) -> None:
        """Choose the target (also for scripts and tests): a preset name or a file path."""
        self.kind_box.setCurrentIndex(self.kind_box.findData(kind))
        if kind == "preset":
            self.preset_box.setCurrentIndex(self.preset_box.findData(value))
        else:
            self.path_edit.setText(value)

    def set_optimizer(self, name: str, lr: float | None = None) -> None:
        self.optimizer_box.setCurrentIndex(self.optimizer_box.findData(name))
        if lr is not None:
            self.lr_box.setValue(lr)

    def target(self) -> Target | None:
        from ..core.fitting import Target

        kind = self.kind_box.currentData()
        value = self.preset_box.currentData() if kind == "preset" else \
            self.path_edit.text().strip()
        return Target(kind, value) if value else None

    def _subject(self) -> tuple[int, int] | None:
        """(layer, stage) the fit is about: the selected layer, when it has weights."""
        s = self.session
        i = s.layer
        if i is None or i >= len(s.pipeline.layers) or not s.pipeline.layers[i].op.learnable:
            return None
        stage = s.stage_of_layer(i)
        return None if stage is None else (i, stage)

    @Slot()
    def _show_subject(self) -> None:
        subject = self._subject()
        if subject is None:
            self.subject.setText("Select a layer with weights (a Conv2d) to fit it.")
            return
        i, stage = subject
        layer = self.session.pipeline.layers[i]
        self.subject.setText(f"Fit {layer.display_name(i)} ({layer.type}) so that stage "
                             f"{stage} matches the target")

    # ------------------------------------------------------------------ running
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {theme.ERROR};" if error else "")

    @Slot()
    def start(self) -> None:
        from ..core.fitting import fit, fittable_layers, make_target

        s = self.session
        subject = self._subject()
        if subject is None:
            self._say("Select a layer with weights (a Conv2d) to fit it.", True)
            return
        if s.preview is None:
            self._say("Open an image first: the fit learns on it.", True)
            return
        if s.stale_reason:
            self._say(f"The stack cannot run: {s.stale_reason}", True)
            return
        target = self.target()
        if target is None:
            self._say("Choose the target file first.", True)
            return
        layer, stage = subject
        pipeline, image = s.pipeline, s.preview.image
        learn = [layer] if self.layers_box.currentData() == "selected" else \
            fittable_layers(pipeline, stage)
        seed = self.seed_box.value() if self.start_box.currentData() == "seed" else None
        options = dict(layers=learn, optimizer=self.optimizer_box.currentData(),
                       lr=self.lr_box.value(), steps=self.steps_box.value(),
                       report_every=self.every_box.value(), seed=seed, device=s.device)

        def job(cancelled):
            # In the job's thread: the target stack runs there too, never on the GUI thread.
            wanted = make_target(target, pipeline, image, stage, layer, s.device)
            return fit(pipeline, image, wanted, stage, **options)

        name = pipeline.layers[layer].display_name(layer)
        self._text = f"Fit {name} to {target.describe()}"
        self._merge_key = ("fit", next(self._fit_ids))
        self._steps = options["steps"]
        self.last_report = None
        self._interrupted = False
        self.losses = []
        self.curve.setData([], [])
        self._say(f"Fitting {name} to {target.describe()}…")
        self.jobs.start(job)

    @Slot()
    def stop(self) -> None:
        self.jobs.stop()

    @Slot(object)
    def _on_progress(self, event: object) -> None:
        from ..core.fitting import FitProgress

        if not isinstance(event, FitProgress):
            return
        self.last_report = event
        self.losses.append((event.step, max(event.loss, LOSS_FLOOR)))
        steps, losses = zip(*self.losses, strict=True)
        self.curve.setData(list(steps), list(losses))
        self._say(f"step {event.step}/{self._steps} · loss {event.loss:.4g}")
        self._apply(event.weights)

    def _apply(self, weights: dict) -> None:
        self._applying = True
        try:
            self.weightsFitted.emit(weights, self._text, self._merge_key)
        finally:
            self._applying = False

    @Slot(object)
    def _on_finished(self, outcome: JobOutcome) -> None:
        last = self.last_report
        if outcome.error:
            self._say(outcome.error.removeprefix("FitError: "), True)
        elif outcome.cancelled and self._interrupted:
            self._say("The stack changed while fitting: the fit stopped.")
        elif outcome.cancelled:
            kept = f"the weights of step {last.step} are kept" if last else "nothing changed"
            self._say(f"Stopped: {kept}.")
        else:
            result = outcome.result
            self._apply(result.weights)
            self._say(f"Done: {result.steps} steps, loss {result.losses[0]:.4g} → "
                      f"{result.losses[-1]:.4g}. Undo (Ctrl+Z) takes the whole fit back.")
        self.statusMessage.emit(self.status.text())

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy)

    @Slot(object)
    def _on_document_changed(self, _select: object) -> None:
        if self._applying:
            return
        if self.jobs.busy:  # an edit, an undo: the fit's weights would overwrite it
            self._interrupted = True
            self.jobs.stop()
        self._show_subject()

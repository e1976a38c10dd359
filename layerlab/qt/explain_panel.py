"""The explain panel: how the value the user clicked was computed, with the exact numbers.

It reads ``session.explained`` (stage, channel, y, x) and the session's results, asks
``core.explain`` for the breakdown (the stage's input is the previous stage's exact float32
values, the layer the one of the run that made the pictures, its tensors
``edits.materialize``), and shows the formula, the terms (one row per input channel for a
conv: pick a row to open that channel), the input patch, the kernel slice and the products as
small heat grids, and for an activation a plot of f with the point marked. The step buttons
and Play walk the output positions (x, then y) by emitting ``explainRequested``; the
controller moves the session, this panel follows.

The computing (torch rerunning the layer, about 0.3 s for a 64 -> 64 conv on a large
photo, and the breakdown) runs as a job (``JobRunner``), in the job thread the window gives
it, so the window never waits; the newest request wins. Without a runner it computes on the
calling thread (tools and tests without a window).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.edits import materialize
from ..worker import JobOutcome, JobRunner
from .session import Session
from .text import format_value

if TYPE_CHECKING:
    from ..core.explain import Explanation

HINT = ("Click a value in the one-channel view (Alt+click in the grid, or hold Alt while "
        "hovering) to see how it was computed.")
MAX_LINEAR_ROWS = 256  # a Linear shows its largest contributions, not 10^6 rows
PAD_BRUSH = QBrush(QColor(200, 200, 200))
WIN_BRUSH = QBrush(QColor(255, 200, 60))


class _OutputCache:
    """The layer's torch output for the last (layer key, stage input), shared by the jobs: a
    step to the next position reuses it instead of rerunning the layer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple | None = None

    def get(self, key: str, values: np.ndarray):
        with self._lock:
            e = self._entry
        return e[2] if e is not None and e[0] == key and e[1] is values else None

    def put(self, key: str, values: np.ndarray, output) -> None:
        with self._lock:
            self._entry = (key, values, output)


def _explain_job(layer, params, stage_input: np.ndarray, values: np.ndarray, stage: int,
                 channel: int, y: int, x: int, title: str, cache: _OutputCache):
    """The job: (explanation or None, the title or the reason, the value the view shows)."""

    def job(cancelled):
        from ..core.explain import explain, layer_output  # torch, in the job's thread

        output = cache.get(layer.key, stage_input)
        if output is None:
            try:
                output = layer_output(layer, params, stage_input)
            except (RuntimeError, ValueError) as e:
                return None, f"{layer.type} could not be rerun here: {e}", None
            cache.put(layer.key, stage_input, output)
            yield None  # a step boundary: a newer request stops this one here
        try:
            e = explain(layer, params, stage_input, channel, y, x, output=output)
        except IndexError as err:
            return None, f"Stage {stage}: {err}.", None
        index = (x,) if values.ndim == 1 else (y, x) if values.ndim == 2 else (channel, y, x)
        shown = float(values[index]) if all(
            0 <= i < n for i, n in zip(index, values.shape, strict=True)) else None
        return e, title, shown
    return job


class _ModelCache:
    """The explain jobs' own copy of the model shown (the worker's belongs to its thread),
    opened in the job's thread and kept while the same model is asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple | None = None

    def get(self, spec, budget: int):
        from ..core.model_edits import apply_edits
        from ..core.models import open_spec

        with self._lock:
            key = (spec.opened_as, budget)
            if self._entry is None or self._entry[0] != key:
                self._entry = None  # the old copy goes before the next is built
                self._entry = (key, open_spec(spec.opened_as, budget))
            opened = self._entry[1]
            apply_edits(opened, spec.edits)
            return opened

    def clear(self) -> None:
        with self._lock:
            self._entry = None


def _model_job(spec, budget: int, path: str, call: int, normalized: np.ndarray,
               values: np.ndarray, stage: int, channel: int, y: int, x: int, title: str,
               models: _ModelCache):
    """The job for a model's stage: the module's actual input recomputed (a forward with a
    hook: in a model with branches it need not be the previous stage's output), then the
    same explanation as a stack layer's."""

    def job(cancelled):
        from ..core.explain import explain
        from ..core.model_build import ModelError
        from ..core.model_explain import module_input, module_layer

        try:
            opened = models.get(spec, budget)
            yield None
            layer, params = module_layer(opened.module.get_submodule(path))
            stage_input = module_input(opened, path, call, normalized)
            yield None
            e = explain(layer, params, stage_input, channel, y, x)
        except ModelError as err:
            return None, f"Stage {stage} {path}: {err}.", None
        except (IndexError, RuntimeError, ValueError) as err:
            return None, f"Stage {stage}: {err}.", None
        index = (x,) if values.ndim == 1 else (y, x) if values.ndim == 2 else (channel, y, x)
        shown = float(values[index]) if all(
            0 <= i < n for i, n in zip(index, values.shape, strict=True)) else None
        return e, f"{title} ({layer.type})", shown
    return job


def heat_color(v: float, scale: float) -> QColor:
    """Blue (negative) - white - red (positive), by |v| / scale."""
    t = 0.0 if scale <= 0 or not np.isfinite(v) else max(-1.0, min(1.0, v / scale))
    a = int(255 * (1 - abs(t)))
    return QColor(255, a, a) if t >= 0 else QColor(a, a, 255)


def _grid(title: str) -> tuple[QWidget, QTableWidget]:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(1)
    label = QLabel(title)
    label.setWordWrap(True)
    label.setStyleSheet("font-weight: bold;")
    table = QTableWidget(0, 0)
    _compact(table)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.setStyleSheet("QTableWidget { font-family: monospace; font-size: 8pt; }")
    lay.addWidget(label)
    lay.addWidget(table, 1)
    box.label = label  # type: ignore[attr-defined]
    return box, table


def _compact(table: QTableWidget) -> None:
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    table.verticalHeader().setDefaultSectionSize(table.fontMetrics().height() + 4)


class ExplainPanel(QWidget):
    explainRequested = Signal(int, int, int, int)  # stage, channel, x, y: a step

    def __init__(self, session: Session, jobs: JobRunner | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.jobs = jobs if jobs is not None else JobRunner(self, synchronous=True)
        self.explanation: Explanation | None = None
        self.shown_value: float | None = None  # the value the stage view shows there
        self._cache = _OutputCache()
        self._models = _ModelCache()
        self._open = 0  # the opened row of a conv's per-channel sums
        self._stale = False  # something changed while the panel was hidden
        self._build()
        session.explainedChanged.connect(self.refresh)
        session.stageChanged.connect(self._on_stage_changed)
        session.resultsChanged.connect(self.refresh)
        session.modelChanged.connect(self._on_model_changed)
        self.jobs.finished.connect(self._on_job_finished)
        self.refresh()

    def _build(self) -> None:
        self.title = QLabel(HINT)
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold;")
        self.formula = QLabel("")
        self.formula.setWordWrap(True)
        self.formula.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.formula.setStyleSheet("font-family: monospace;")
        self.check = QLabel("")
        self.check.setWordWrap(True)
        self.check.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check.setStyleSheet("font-family: monospace;")
        self.terms = QTableWidget(0, 2)
        self.terms.setHorizontalHeaderLabels(["term", "value"])
        _compact(self.terms)
        self.terms.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.terms.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.terms.verticalHeader().hide()
        self.terms.horizontalHeader().setStretchLastSection(True)
        self.terms.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents)
        self.terms.setMaximumHeight(180)
        self.terms.setToolTip("Pick an input channel's row to open its patch, kernel and "
                              "products below")
        self.terms.cellClicked.connect(self._on_term_clicked)
        self.grid_area = QWidget()
        grids = QHBoxLayout(self.grid_area)
        grids.setContentsMargins(0, 0, 0, 0)
        grids.setSpacing(4)
        self.grid_boxes = []
        for title in ("input", "kernel", "products"):
            box, table = _grid(title)
            grids.addWidget(box)
            self.grid_boxes.append((box, table))
        self.plot = pg.PlotWidget()
        self.plot.setBackground(None)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMinimumHeight(140)
        self.curve = self.plot.plot([], [], pen=pg.mkPen((60, 120, 220), width=2))
        self.point = pg.ScatterPlotItem(size=9, brush=pg.mkBrush(230, 80, 20), pen=None)
        self.plot.addItem(self.point)

        self.prev_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Walk the output positions one by one (x, then y)")
        self.speed = QSlider(Qt.Orientation.Horizontal)
        self.speed.setRange(1, 30)
        self.speed.setValue(4)
        self.speed.setToolTip("Steps per second")
        self.speed_label = QLabel()
        self.timer = QTimer(self)
        self.timer.timeout.connect(lambda: self.step(1))
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        self.play_button.toggled.connect(self.set_playing)
        self.speed.valueChanged.connect(self._on_speed)
        self._on_speed(self.speed.value())
        steps = QHBoxLayout()
        for w in (self.prev_button, self.next_button, self.play_button):
            steps.addWidget(w)
        steps.addWidget(self.speed, 1)
        steps.addWidget(self.speed_label)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addWidget(self.formula)
        lay.addWidget(self.check)
        lay.addWidget(self.terms)
        lay.addWidget(self.grid_area, 1)
        lay.addWidget(self.plot, 1)
        lay.addLayout(steps)

    # ------------------------------------------------------------------ computing
    @Slot(int)
    def _on_stage_changed(self, index: int) -> None:
        pos = self.session.explained
        if pos is not None and index in (pos[0], pos[0] - 1):
            self.refresh()

    def _request(self):
        """On the GUI thread: the job that explains ``session.explained``, or None and why
        there is nothing to explain."""
        s = self.session
        if s.explained is None:
            return None, HINT
        stage, channel, y, x = s.explained
        if stage == 0:
            return None, "Stage 0 is the input image itself: pick a later stage's value."
        if s.model is not None:
            return self._model_request(stage, channel, y, x)
        view, prev = s.results.get(stage), s.results.get(stage - 1)
        if (view is None or prev is None or view.values is None or prev.values is None
                or s.run_pipeline is None
                or not 0 <= view.result.layer_index < len(s.run_pipeline.layers)):
            return None, f"Stage {stage} has no result to explain yet."
        layer = s.run_pipeline.layers[view.result.layer_index]
        title = f"stage {stage} {view.result.name} ({layer.type})"
        return _explain_job(layer, materialize(layer), prev.values, view.values, stage,
                            channel, y, x, title, self._cache), title

    def _model_request(self, stage: int, channel: int, y: int, x: int):
        s = self.session
        view, normalized = s.results.get(stage), s.results.get(1)
        if view is None or normalized is None or view.values is None \
                or normalized.values is None:
            return None, f"Stage {stage} has no result to explain yet."
        name, kind = view.result.name, view.result.type
        path, _, call = name.partition("#")
        if kind in ("Normalize", "Output"):
            return None, (f"Stage {stage} is the model's {kind.lower()} step, not one of its "
                          f"modules: pick a module's stage to explain its values.")
        title = f"stage {stage} {name}"
        return _model_job(s.model, s.memory_budget_gb * 1024**3, path, int(call or 1),
                          normalized.values, view.values, stage, channel, y, x, title,
                          self._models), title

    @Slot()
    def _on_model_changed(self) -> None:
        if self.session.model is None:
            self._models.clear()  # its copy of the model is not needed any more

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def hideEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().hideEvent(event)
        self.set_playing(False)  # no walking positions nobody sees

    @Slot()
    def refresh(self) -> None:
        """Recompute the explanation (only while the panel is visible: torch reruns the
        layer; a hidden panel catches up when it is shown)."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        job, title = self._request()
        if job is None:
            self.jobs.stop()  # an older request's result must not come back
            self._show(None, title, None)
        else:
            self.jobs.start(job)

    @Slot(object)
    def _on_job_finished(self, outcome: JobOutcome) -> None:
        if outcome.cancelled:
            return
        if outcome.error:
            self._show(None, f"The value could not be explained: {outcome.error}", None)
            return
        self._show(*outcome.result)

    def _show(self, e: Explanation | None, title: str, shown: float | None) -> None:
        self.shown_value = shown
        if e is not self.explanation and (e is None or self.explanation is None
                                           or e.input_channels !=
                                           self.explanation.input_channels):
            self._open = 0
        self.explanation = e
        pos = self.session.explained
        if e is None:
            self.title.setText(title)
            for w in (self.formula, self.check):
                w.setText("")
            self.terms.setRowCount(0)
            self._show_grids([])
            self.plot.hide()
            return
        where = f"index {e.x}" if pos is not None and self._is_vector() else \
            f"ch {e.channel} · (x {e.x}, y {e.y})"
        self.title.setText(f"{title} · {where}")
        self.formula.setText(e.formula)
        lines = [f"float64:        {e.total:.9g}",
                 f"torch float32:  {format_value(e.value)}"]
        if self.shown_value is not None:
            lines.append(f"shown:          {format_value(self.shown_value)}")
        if e.explained:
            lines.append(f"difference:     {e.error:.2g} (float32 rounding)")
        self.check.setText("\n".join(lines))
        self._fill_terms(e)
        self._show_details(e)

    def _is_vector(self) -> bool:
        pos = self.session.explained
        view = self.session.results.get(pos[0]) if pos else None
        return view is not None and view.values is not None and view.values.ndim == 1

    # ------------------------------------------------------------------ drawing
    def _fill_terms(self, e: Explanation) -> None:
        rows = list(e.terms) + [(k, v) for k, v in e.details.items()
                                if not any(k == t for t, _ in e.terms) and v is not None]
        self.terms.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.terms.setItem(r, 0, QTableWidgetItem(str(name)))
            text = f"{value:.9g}" if isinstance(value, float) else str(value)
            self.terms.setItem(r, 1, QTableWidgetItem(text))
        if e.kind == "conv" and self._open < len(e.input_channels):
            self.terms.selectRow(self._open)
        else:
            self.terms.clearSelection()

    @Slot(int, int)
    def _on_term_clicked(self, row: int, _col: int) -> None:
        e = self.explanation
        if e is not None and e.kind == "conv" and row < len(e.input_channels):
            self._open = row
            self._show_details(e)

    def _show_details(self, e: Explanation) -> None:
        self.plot.setVisible(e.curve is not None)
        if e.curve is not None:
            self.curve.setData(*e.curve)
            self.point.setData([e.details["x"]], [e.value])
        shows = _SHOW.get(e.kind)
        self._show_grids(shows(self, e) if shows else [])

    def _show_grids(self, grids: list) -> None:
        """``grids``: (title, 2-D array, heat, marks[, row labels, column labels]) per table
        shown, in order."""
        self.grid_area.setVisible(bool(grids))
        for i, (box, table) in enumerate(self.grid_boxes):
            box.setVisible(i < len(grids))
            if i < len(grids):
                title, arr, heat, marks, *labels = grids[i]
                box.label.setText(title)
                self._fill_grid(table, arr, heat, marks, *labels)

    @staticmethod
    def _fill_grid(table: QTableWidget, arr: np.ndarray, heat: bool,
                   marks: dict | None = None, rows=None, cols=None) -> None:
        arr = np.atleast_2d(arr)
        table.clear()
        table.setRowCount(arr.shape[0])
        table.setColumnCount(arr.shape[1])
        table.setVerticalHeaderLabels([str(r) for r in (rows or range(arr.shape[0]))])
        table.setHorizontalHeaderLabels([str(c) for c in (cols or range(arr.shape[1]))])
        scale = float(np.nanmax(np.abs(arr))) if heat and arr.size else 0.0
        for r in range(arr.shape[0]):
            for c in range(arr.shape[1]):
                v = float(arr[r, c])
                item = QTableWidgetItem(f"{v:.4g}")
                item.setToolTip(repr(v))
                if heat:
                    item.setBackground(heat_color(v, scale))
                    item.setForeground(QBrush(QColor(0, 0, 0)))
                mark = (marks or {}).get((r, c))
                if mark is not None:
                    item.setBackground(mark)
                    item.setForeground(QBrush(QColor(0, 0, 0)))
                table.setItem(r, c, item)

    def _conv_grids(self, e: Explanation) -> list:
        i = min(self._open, len(e.input_channels) - 1)
        ch = e.input_channels[i]
        pad = {(r, c): PAD_BRUSH for r, c in zip(*np.nonzero(e.arrays["padded"][i]),
                                                 strict=True)}
        return [(f"input ch {ch} (y down, x across; grey = padding)", e.arrays["patch"][i],
                 False, pad, e.rows, e.cols),
                (f"kernel [{e.channel}, {i}]", e.arrays["kernel"][i], True, None),
                (f"products (sum {e.terms[i][1]:.6g})", e.arrays["products"][i], True, None)]

    def _linear_grids(self, e: Explanation) -> list:
        prod = e.arrays["products"]
        order = np.argsort(-np.abs(prod), kind="stable")[:MAX_LINEAR_ROWS]
        table = np.stack([e.arrays["inputs"][order], e.arrays["weights"][order],
                          prod[order]], axis=1)
        what = "all" if prod.size <= MAX_LINEAR_ROWS else f"the {MAX_LINEAR_ROWS} largest of"
        return [(f"x[i], W[i], x[i]*W[i]: {what} {prod.size} products, largest first",
                 table, False, None, [int(i) for i in order], ["x", "W", "x*W"])]

    def _pool_grids(self, e: Explanation) -> list:
        valid = e.arrays["valid"]
        marks = {(r, c): PAD_BRUSH for r, c in zip(*np.nonzero(~valid), strict=True)}
        if "winner" in e.details:
            wr, wc = e.details["winner"]
            marks[(e.rows.index(wr), e.cols.index(wc))] = WIN_BRUSH
        title = (f"window of input ch {e.channel} (y down, x across; grey = padding"
                 + (", gold = max" if "winner" in e.details else "") + ")")
        grids = [(title, e.arrays["window"], False, marks, e.rows, e.cols)]
        if "powers" in e.arrays:
            grids.append(("x^p", e.arrays["powers"], True, None, e.rows, e.cols))
        return grids

    def _vector_grids(self, e: Explanation) -> list:
        if "inputs" not in e.arrays:
            return []
        return [("inputs over the channels", e.arrays["inputs"][None], True, None),
                ("softmax", e.arrays["softmax"][None], True, None)]

    # ------------------------------------------------------------------ stepping
    def step(self, delta: int) -> None:
        """Explain the next (or previous) output position: x first, then y; wraps."""
        s, pos = self.session, self.session.explained
        view = s.results.get(pos[0]) if pos is not None else None
        if view is None or view.values is None:
            self.set_playing(False)
            return
        stage, channel, y, x = pos
        vals = view.values
        h, w = (1, vals.shape[0]) if vals.ndim == 1 else vals.shape[-2:]
        flat = (y * w + x + delta) % (h * w)
        self.explainRequested.emit(stage, channel, flat % w, flat // w)

    @Slot(bool)
    def set_playing(self, on: bool) -> None:
        if self.play_button.isChecked() != on:
            self.play_button.setChecked(on)  # comes back here through toggled
            return
        self.play_button.setText("Pause" if on else "Play")
        if on:
            self.timer.start()
        else:
            self.timer.stop()

    @Slot(int)
    def _on_speed(self, per_second: int) -> None:
        self.timer.setInterval(max(1, round(1000 / per_second)))
        self.speed_label.setText(f"{per_second}/s")


_SHOW = {"conv": ExplainPanel._conv_grids, "linear": ExplainPanel._linear_grids,
         "pool": ExplainPanel._pool_grids, "activation": ExplainPanel._vector_grids}

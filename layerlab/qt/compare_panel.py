"""The Compare view (A/B): the selected stage and channel of the stack being edited (A) beside
the same stage of a second run (B), and their difference A - B with its statistics.

B is one of:
- a snapshot of the current stack ("Duplicate as B"): edit A and watch what the edit did;
- another pipeline file on the same image ("B from pipeline…");
- the current stack on a second photo ("B from image…", resized to A's preview size):
  B follows every edit of A.

B runs in its own worker thread (a second :class:`RunController`, latest request wins), so
A's runs never wait for it. A is the session's newest results, so the view follows every
edit of A live. A and B are drawn with one shared range; A - B with the diverging ``RdBu``
colormap centred at 0 (blue where A is larger, red where B is). The difference, its
statistics and the pictures (:func:`layerlab.core.compare.compare_stage`, of the one channel
shown) are computed on a thread of their own, the newest request winning, so the GUI thread
only puts pictures on screen.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.imageio import ImageLoadError, LoadedImage, load_image
from ..core.pipeline import Pipeline, PipelineError
from ..worker import RunController, RunRequest, RunSummary, StageView
from .session import Session
from .stage_strip import qimage
from .text import format_value

if TYPE_CHECKING:
    from ..core.compare import Comparison, Difference

PICTURE_MIN = 96  # logical pixels a picture keeps at least; it grows with the dock
HINT = ("Choose B: a snapshot of this stack, another pipeline on this image, or this stack "
        "on another image.")
PIPELINE_FILTER = "LayerLab pipelines (*.layerlab.json);;JSON files (*.json);;All files (*)"


class ComparePanel(QWidget):
    """A, B and A - B of the session's selected stage and channel (see the module doc)."""

    _computed = Signal(object)  # (token, Comparison or an error text), from the pool thread

    def __init__(self, session: Session, parent: QWidget | None = None, *,
                 synchronous: bool = False):
        super().__init__(parent)
        self.session = session
        # B's histograms and statistics are never shown: only A - B has numbers here.
        self.runner = RunController(self, synchronous=synchronous, numbers=False)
        self.b_pipeline: Pipeline | None = None  # None: B runs A's stack (image mode)
        self.b_image: LoadedImage | None = None  # None: B runs on A's preview
        self.b_input: Image.Image | None = None  # the picture B's last run was given
        self._b_resized: tuple[tuple, Image.Image] | None = None
        self.b_description = ""
        self.b_results: dict[int, StageView] = {}
        self.b_error: str | None = None
        self.difference: Difference | None = None
        self.pictures: dict[str, np.ndarray] = {}  # "A", "B", "A - B": RGB uint8 as shown
        self.message = HINT
        self._pixmaps: dict[str, QPixmap] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="layerlab-compare")
        self._token = 0  # the newest comparison asked for
        self._delivered = 0  # the newest one shown
        self._computed.connect(self._on_computed)
        self._build()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)  # coalesce the stage signals of one run
        self._refresh_timer.timeout.connect(self.refresh)
        self.runner.stageReady.connect(self._on_b_stage)
        self.runner.viewReady.connect(self._on_b_view)
        self.runner.runFinished.connect(self._on_b_finished)
        s = session
        s.stageChanged.connect(self._schedule)
        s.resultsChanged.connect(self._follow_stage)  # a run's end may move the stage
        s.resultsChanged.connect(self._schedule)
        s.selectionChanged.connect(self._follow_stage)
        s.selectionChanged.connect(self._schedule)
        s.staleChanged.connect(self._schedule)
        s.document.changed.connect(self._on_document_changed)
        s.imageChanged.connect(self._on_image_changed)
        s.deviceChanged.connect(lambda *_: self.run_b())
        self._show()

    # --- construction ------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        buttons = QGridLayout()
        self.duplicate_button = QPushButton("Duplicate as B")
        self.duplicate_button.setToolTip("B is a snapshot of the stack as it is now; edit A "
                                         "and see what each edit changes")
        self.duplicate_button.clicked.connect(self.duplicate_as_b)
        self.pipeline_button = QPushButton("B from pipeline…")
        self.pipeline_button.setToolTip("B is another pipeline file run on this image")
        self.pipeline_button.clicked.connect(self.choose_b_pipeline)
        self.image_button = QPushButton("B from image…")
        self.image_button.setToolTip("B is this stack (following every edit) on another "
                                     "image, resized to this image's preview size")
        self.image_button.clicked.connect(self.choose_b_image)
        self.swap_button = QPushButton("Swap A and B")
        self.swap_button.setToolTip("Edit B: its stack becomes the one you edit (one undo "
                                    "step) and the stack you had becomes B")
        self.swap_button.clicked.connect(self.swap)
        self.clear_button = QPushButton("Clear B")
        self.clear_button.clicked.connect(self.clear_b)
        # Two rows: the dock shares its column with the other panels and stays narrow.
        for k, b in enumerate((self.duplicate_button, self.pipeline_button, self.image_button,
                               self.swap_button, self.clear_button)):
            buttons.addWidget(b, k // 3, k % 3)
        lay.addLayout(buttons)
        self.b_label = QLabel()
        self.b_label.setWordWrap(True)
        lay.addWidget(self.b_label)
        grid = QGridLayout()  # A | B above, A - B below across both: the dock is narrow
        self.picture_labels: dict[str, QLabel] = {}
        self.caption_labels: dict[str, QLabel] = {}
        for key, row, col, span in (("A", 0, 0, 1), ("B", 0, 1, 1), ("A - B", 2, 0, 2)):
            caption = QLabel(key)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture = QLabel()
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setMinimumSize(PICTURE_MIN, PICTURE_MIN)
            picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
            grid.addWidget(caption, row, col, 1, span)
            grid.addWidget(picture, row + 1, col, 1, span)
            self.caption_labels[key] = caption
            self.picture_labels[key] = picture
        grid.setRowStretch(1, 1)
        grid.setRowStretch(3, 2)
        lay.addLayout(grid, 1)
        self.stats_label = QLabel()
        self.stats_label.setWordWrap(True)
        self.stats_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats_label.setStyleSheet("font-family: monospace;")
        lay.addWidget(self.stats_label)

    # --- choosing B --------------------------------------------------------------------------
    @Slot()
    def duplicate_as_b(self) -> None:
        self._set_b(self.session.pipeline, None,
                    f"B: a snapshot of {self.session.title()} (edit A to compare)")

    def choose_b_pipeline(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compare with pipeline", "",
                                              PIPELINE_FILTER)
        if path:
            self.open_b_pipeline(path)

    def choose_b_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compare with image", "",
                                              "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff "
                                              "*.webp *.gif);;All files (*)")
        if path:
            self.open_b_image(path)

    def open_b_pipeline(self, path: str) -> bool:
        """B is the pipeline file ``path`` on A's image; a bad file keeps B as it was."""
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as e:
            self._say(f"B not changed: {e}")
            return False
        self._set_b(pipeline, None, f"B: {Path(path).name} on the same image")
        return True

    def open_b_image(self, path: str) -> bool:
        """B is A's stack (live) on the image ``path``; a bad file keeps B as it was."""
        try:
            loaded = load_image(path)
        except ImageLoadError as e:
            self._say(f"B not changed: {e}")
            return False
        self._set_b(None, loaded, f"B: this stack on {Path(path).name}")
        return True

    @Slot()
    def swap(self) -> bool:
        """B's stack becomes the edited one (so either side can be edited, in turn) and the
        stack that was edited becomes B; both keep running on the same image."""
        if self.b_pipeline is None:
            self._say("Swap needs a B stack (Duplicate as B, or B from pipeline)")
            return False
        s = self.session
        before = s.pipeline
        if not s.document.edit(self.b_pipeline, "Swap A and B"):
            return False  # the two stacks are the same
        self._set_b(before, None, "B: the stack before the swap (Swap again to edit it)")
        return True

    @Slot()
    def clear_b(self) -> None:
        self.runner.cancel()
        self.b_pipeline = self.b_image = self.b_input = self._b_resized = None
        self.b_description = ""
        self.b_results = {}
        self.b_error = None
        self.refresh()

    @property
    def active(self) -> bool:
        return self.b_pipeline is not None or self.b_image is not None

    def _set_b(self, pipeline: Pipeline | None, image: LoadedImage | None, text: str) -> None:
        self.b_pipeline, self.b_image, self.b_description = pipeline, image, text
        self._b_resized = None  # (an id can be reused by the next image)
        self.b_results = {}
        self.b_error = None
        self.run_b()
        self.refresh()

    # --- running B ---------------------------------------------------------------------------
    def run_b(self) -> int | None:
        """Hand B's snapshot to its worker (the newest request wins)."""
        s = self.session
        if not self.active or s.preview is None:
            return None
        pipeline = self.b_pipeline if self.b_pipeline is not None else s.pipeline
        image = s.preview.image
        if self.b_image is not None:
            image = self.b_image.image
            if image.size != s.preview.image.size:
                # Resized once per size: the same picture object lets B's worker keep its
                # input tensor between edits.
                key = (id(self.b_image), s.preview.image.size)
                if self._b_resized is None or self._b_resized[0] != key:
                    small = image.resize(s.preview.image.size, Image.Resampling.BILINEAR)
                    self._b_resized = (key, small)
                image = self._b_resized[1]
        self.b_input = image
        return self.runner.submit(RunRequest(pipeline, image, s.render_options, s.device,
                                             memory_budget=s.memory_budget_gb * 1024**3,
                                             shown=frozenset({s.stage})))

    @Slot(object)
    def _on_b_stage(self, view: StageView) -> None:
        self.b_results[view.result.index] = view
        if view.result.error:
            for i in [i for i in self.b_results if i > view.result.index]:
                del self.b_results[i]
        self._schedule()

    @Slot()
    def _follow_stage(self, *_: object) -> None:
        """B's worker draws in full only the stage compared (the others are thumbnails
        nobody looks at); a stage picked later is drawn from its kept results."""
        want = frozenset({self.session.stage})
        if self.runner.shown != want:
            self.runner.show(want)

    @Slot(object)
    def _on_b_view(self, view: StageView) -> None:
        held = self.b_results.get(view.result.index)
        if held is not None and held.generation == view.generation:
            self.b_results[view.result.index] = view  # the full view of a thumbnail
            self._schedule()

    @Slot(object)
    def _on_b_finished(self, summary: RunSummary) -> None:
        if summary.cancelled:
            return
        self.b_error = summary.error
        for i in [i for i in self.b_results if i >= summary.stages]:
            del self.b_results[i]
        self._schedule()

    @Slot()
    def _on_document_changed(self, *_: object) -> None:
        if self.b_pipeline is None and self.b_image is not None:
            self.run_b()  # B is A's stack on another image: it follows the edit

    @Slot()
    def _on_image_changed(self) -> None:
        if self.b_pipeline is not None or self.b_image is not None:
            self.run_b()

    # --- showing -----------------------------------------------------------------------------
    @Slot()
    def _schedule(self, *_: object) -> None:
        self._refresh_timer.start()

    @Slot()
    def refresh(self) -> None:
        """Compare the session's stage and channel again (on the comparison thread)."""
        request = self._request()
        if isinstance(request, str):  # nothing to compute: say why
            self._token += 1
            self._delivered = self._token
            self.difference, self.pictures, self.message = None, {}, request
            self._show()
            return
        self._token += 1
        self._pool.submit(self._compute, self._token, request)

    @property
    def computing(self) -> bool:
        return self._delivered != self._token

    @property
    def idle(self) -> bool:
        """No run of B, no refresh scheduled and no comparison in flight (tests wait on it)."""
        return not (self.runner.busy or self.runner.drawing or self._refresh_timer.isActive()
                    or self.computing)

    def _request(self) -> dict | str:
        """The arguments of ``compare_stage`` for the selected stage, or why there are none."""
        if not self.active:
            return HINT
        s = self.session
        stage = s.stage
        a_view, b_view = s.results.get(stage), self.b_results.get(stage)
        if b_view is None and self.b_error:
            return f"B did not run: {self.b_error}"
        if a_view is None or b_view is None or a_view.values is None or b_view.values is None:
            failed = next((v.result.error for v in (a_view, b_view)
                           if v is not None and v.result.error), None)
            if failed:
                return f"stage {stage} failed: {failed}"
            if b_view is None and not self.runner.busy and self.b_results:
                return f"B has no stage {stage} (its stages are 0 to {max(self.b_results)})"
            return "waiting for both runs…"
        return {"a": a_view.values, "b": b_view.values, "channel": s.channel,
                "what": f"stage {stage} ({a_view.result.name})",
                "colormap": s.render_options.colormap}

    def _compute(self, token: int, request: dict) -> None:  # the comparison thread
        if token != self._token:
            return  # a newer request is queued behind this one
        try:
            from ..core.compare import compare_stage  # torch, in the pool's thread

            result: Comparison | str = compare_stage(**request)
        except Exception as e:  # a message in the view, never a dead thread
            result = f"the comparison failed: {type(e).__name__}: {e}"
        self._computed.emit((token, result))

    @Slot(object)
    def _on_computed(self, item: tuple) -> None:
        token, result = item
        if token != self._token:
            return
        self._delivered = token
        if isinstance(result, str):
            self.difference, self.pictures, self.message = None, {}, result
        else:
            self.difference, self.pictures = result.difference, result.pictures
            self.message = result.problem or self._stats_text(result.what, result.difference)
            if self.session.stale_reason:
                self.message = (f"A is the last stack that ran (the edited one cannot: "
                                f"{self.session.stale_reason}). {self.message}")
        self._show()

    @staticmethod
    def _stats_text(what: str, d: Difference | None) -> str:
        if d is None:
            return ""
        st = d.stats
        return (f"A - B at {what}: min {format_value(st['min'])}, max "
                f"{format_value(st['max'])}, mean {format_value(st['mean'])}, std "
                f"{format_value(st['std'])}, max |A - B| {format_value(st['max_abs'])}"
                + (" (identical)" if d.identical else ""))

    def _show(self) -> None:
        self.b_label.setText(self.b_description or "B: none")
        self.stats_label.setText(self.message)
        self._pixmaps = {key: QPixmap.fromImage(qimage(arr if arr.ndim == 3
                                                       else arr.reshape(1, -1, 3)))
                         for key, arr in self.pictures.items()}
        self._fit_pixmaps()
        self.clear_button.setEnabled(self.active)
        self.swap_button.setEnabled(self.b_pipeline is not None)

    def _fit_pixmaps(self) -> None:
        """Each picture scaled to its label (aspect kept, pixels sharp)."""
        for key, label in self.picture_labels.items():
            pix = self._pixmaps.get(key)
            if pix is None:
                label.clear()
                continue
            size = label.size()
            label.setPixmap(pix.scaled(max(size.width(), 1), max(size.height(), 1),
                                       Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.FastTransformation))

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit_pixmaps()

    def _say(self, text: str) -> None:
        self.message = text
        self.stats_label.setText(text)

    def shutdown(self) -> None:
        """Join B's worker and the comparison thread (the window calls this when it
        closes)."""
        self.runner.shutdown()
        self._token += 1  # a queued comparison returns without working
        self._pool.shutdown(wait=True, cancel_futures=True)

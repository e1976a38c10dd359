"""What this channel looks for: the input image that makes a channel respond most, shown
beside the channel itself (on the user's photo) and, for a conv layer, its kernel.

``look_at(stage, channel)`` starts ``core.visualise.visualise`` as a job in its own thread
(``JobRunner``): a progress bar and the picture follow every few steps, Stop ends it at the
next step and keeps the picture so far. The panel changes nothing in the stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..worker import JobOutcome, JobRunner
from . import theme
from .session import Session

if TYPE_CHECKING:
    from ..core.visualise import VisualProgress

# core.visualise is torch: imported where a search starts or reports, so the window paints
# before torch is loaded.

PICTURE_SIDE = 128  # pixels on screen for each picture's longest side (three fit a 420 px dock)
HINT = ("Pick a stage and a channel, then “Looks for…”: LayerLab "
        "searches for the input image that makes that channel respond most.")


def to_pixmap(image: np.ndarray, side: int = PICTURE_SIDE) -> QPixmap:
    """A uint8 (H, W) or (H, W, 3) array as a pixmap that fits ``side``: a small picture
    (a kernel) grows by a whole factor with square cells, a large one (a photo) shrinks."""
    a = np.ascontiguousarray(image)
    h, w = a.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if a.ndim == 2 else QImage.Format.Format_RGB888
    pixmap = QPixmap.fromImage(QImage(a.data, w, h, a.strides[0], fmt).copy())
    if max(h, w) > side:
        return pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    scale = side // max(h, w)
    return pixmap.scaled(w * scale, h * scale, Qt.AspectRatioMode.IgnoreAspectRatio,
                         Qt.TransformationMode.FastTransformation)


def _picture_box(caption: str) -> tuple[QWidget, QLabel]:
    box = QWidget()
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    title = QLabel(caption)
    title.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label = QLabel()
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setMinimumSize(PICTURE_SIDE, PICTURE_SIDE)
    lay.addWidget(title)
    lay.addWidget(label, 1)
    return box, label


class ChannelVisualPanel(QWidget):
    def __init__(self, session: Session, jobs: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.jobs = jobs
        self.subject: tuple[int, int] | None = None  # (stage, channel) being looked at
        self.result = None  # the VisualResult of the last finished search
        self.last_report: VisualProgress | None = None
        self._steps = 0
        self._build()
        jobs.progress.connect(self._on_progress)
        jobs.finished.connect(self._on_finished)
        jobs.busyChanged.connect(self._on_busy)
        self._on_busy(False)

    def _build(self) -> None:
        self.title = QLabel(HINT)
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold;")
        self.pictures = QGridLayout()
        boxes = [_picture_box(c) for c in ("looks for", "the channel on your image",
                                           "its kernel")]
        (self.result_box, self.result_label), (self.channel_box, self.channel_label), \
            (self.kernel_box, self.kernel_label) = boxes
        for i, (box, _) in enumerate(boxes):
            self.pictures.addWidget(box, 0, i)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.steps_box = QSpinBox()
        self.steps_box.setRange(1, 100000)
        self.steps_box.setValue(200)
        self.steps_box.setPrefix("steps ")
        self.seed_box = QSpinBox()
        self.seed_box.setRange(0, 2**31 - 1)
        self.seed_box.setPrefix("seed ")
        self.seed_box.setToolTip("Seed of the starting noise and of the jitter")
        self.again_button = QPushButton("Again")
        self.again_button.setToolTip("Search again for the same channel (e.g. with another "
                                     "seed)")
        self.again_button.clicked.connect(self.again)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.jobs.stop)
        row = QHBoxLayout()
        for w in (self.steps_box, self.seed_box, self.again_button, self.stop_button):
            row.addWidget(w)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.title)
        lay.addLayout(self.pictures)
        lay.addWidget(self.progress)
        lay.addLayout(row)
        lay.addWidget(self.status)
        lay.addStretch(1)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {theme.ERROR};" if error else "")

    # ------------------------------------------------------------------ starting
    @Slot(int, int)
    def look_at(self, stage: int, channel: int) -> None:
        """Search for what ``channel`` of ``stage`` (of the stack that made the pictures)
        looks for."""
        from ..core.visualise import kernel_picture, visualise

        s = self.session
        pipeline = s.run_pipeline or s.pipeline
        view = s.results.get(stage)
        self.subject = (stage, channel)
        self.result, self.last_report = None, None
        self.result_label.clear()
        if view is None or view.result.layer_index < 0 or not view.result.ok:
            self.title.setText(f"Stage {stage} has no layer's result to look at: pick a "
                               f"layer's stage." if view is None or view.result.ok else
                               f"Stage {stage} failed: {view.result.error}")
            self.channel_label.clear()
            self.kernel_label.clear()
            self._say("")
            return
        layer = view.result.layer_index
        spec = pipeline.layers[layer]
        self.title.setText(f"What channel {channel} of stage {stage} "
                           f"({spec.display_name(layer)}, {spec.type}) looks for")
        rendered = view.rendered
        if rendered is not None and 0 <= channel < rendered.num_channels \
                and rendered.vector is None:
            self.channel_label.setPixmap(to_pixmap(rendered.channel_image(channel)))
        else:
            self.channel_label.clear()
        kernel = kernel_picture(pipeline, layer, channel)
        self.kernel_box.setVisible(kernel is not None)
        if kernel is not None:
            self.kernel_label.setPixmap(to_pixmap(kernel))
            self.kernel_label.setToolTip("0 is mid-grey; the largest |weight| is black or "
                                         "white" + (" (R, G, B: one input channel each)"
                                                    if kernel.ndim == 3 else
                                                    " (input channels side by side)"))
        steps, seed = self.steps_box.value(), self.seed_box.value()
        self._steps = steps
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self._say("Searching…")
        device = s.device
        self.jobs.start(lambda cancelled: visualise(pipeline, stage, channel, steps=steps,
                                                    seed=seed, report_every=5, device=device))

    @Slot()
    def again(self) -> None:
        if self.subject is not None:
            self.look_at(*self.subject)

    # ------------------------------------------------------------------ job events
    @Slot(object)
    def _on_progress(self, event: object) -> None:
        from ..core.visualise import VisualProgress, picture

        if not isinstance(event, VisualProgress):
            return
        self.last_report = event
        self.progress.setValue(event.step)
        self.result_label.setPixmap(to_pixmap(picture(event.image)))
        self._say(f"step {event.step}/{self._steps} · mean positive response "
                  f"{event.response:.4g}")

    @Slot(object)
    def _on_finished(self, outcome: JobOutcome) -> None:
        from ..core.visualise import picture
        if outcome.error:
            self._say(outcome.error.removeprefix("FitError: "), True)
        elif outcome.cancelled:
            at = f" at step {self.last_report.step}" if self.last_report else ""
            self._say(f"Stopped{at}; the picture so far stays.")
        else:
            self.result = outcome.result
            self.progress.setValue(self._steps)
            self.result_label.setPixmap(to_pixmap(picture(self.result.image)))
            self._say(f"Mean positive response {self.result.responses[-1]:.4g} (on the "
                      f"starting noise {self.result.start_response:.4g}). Jitter and a "
                      f"small blur keep the picture smooth.")

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.again_button.setEnabled(not busy and self.subject is not None)

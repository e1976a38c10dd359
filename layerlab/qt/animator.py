"""The "Animate parameter…" action: asks with the sweep dialog and runs the sweep job.

Kept apart from ``sweep_dialog`` because the window builds it at start-up: the dialog and
the job use ``core.sweep`` (torch), imported only once a sweep is asked for, so the window
paints before torch is loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QProgressDialog, QWidget

from .session import Session

if TYPE_CHECKING:
    from ..core import sweep
    from .sweep_dialog import SweepJob

PROGRESS_MIN_MS = 300


class Animator(QObject):
    """The "Animate parameter…" action and the sweep job behind it."""

    statusMessage = Signal(str)
    finishedJob = Signal(str)  # the message once a job ended (written, failed, cancelled)

    def __init__(self, session: Session, parent: QWidget):
        super().__init__(parent)
        self.session = session
        self.parent_widget = parent
        self.job: SweepJob | None = None
        self.progress: QProgressDialog | None = None
        self.last_dir = os.path.expanduser("~")
        self.last_message = ""
        self.action = QAction("Animate parameter\u2026", parent)
        self.action.setToolTip("Sweep one parameter over values and save the stage as an "
                               "animated GIF, an animated PNG or PNG frames")
        self.action.triggered.connect(self.ask)

    @Slot()
    def ask(self) -> None:
        if self.session.preview is None:
            self._say("load an image first")
            return
        from .sweep_dialog import SweepDialog

        dialog = SweepDialog(self.session, self.parent_widget, self.last_dir)
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.request is None:
            return
        target, values, stage, out, fmt = dialog.request
        self.last_dir = os.path.dirname(os.path.abspath(out))
        self.start(target, values, stage, out, fmt=fmt,
                   levels=dialog.range_box.currentData(), duration_ms=dialog.duration.value(),
                   zoom=dialog.zoom.value())

    def start(self, target: sweep.Target, values: list, stage: int, out: str, *,
              fmt: str | None = None, levels: str = "shared", duration_ms: int = 500,
              zoom: int = 1, show_progress: bool = True) -> SweepJob | None:
        """Start writing the sweep of the current stack on the preview; returns the job."""
        if self.job is not None:
            self._say("an animation is already being written")
            return None
        s = self.session
        if s.preview is None:
            self._say("load an image first")
            return None
        from ..core.imageio import to_tensor
        from .sweep_dialog import SweepJob

        image = to_tensor(s.preview.image, s.pipeline.input.mode)
        opts = s.render_options
        protect = [s.loaded.path] if s.loaded is not None and s.loaded.path else []
        job = SweepJob(s.pipeline, image, target, values, stage, out, {
            "fmt": fmt, "normalize": opts.normalize, "colormap": opts.colormap,
            "levels": levels, "duration_ms": duration_ms, "zoom": zoom,
            "record": {"image": s.image_name(), "pipeline": s.title()},
            "protect": protect}, parent=self)
        self.job = job
        if show_progress:
            dlg = QProgressDialog("Computing frames\u2026", "Cancel", 0, len(values),
                                  self.parent_widget)
            dlg.setWindowTitle("Animate parameter")
            dlg.setMinimumDuration(PROGRESS_MIN_MS)
            dlg.setAutoClose(False)
            dlg.setAutoReset(False)
            dlg.canceled.connect(job.cancel)
            job.progressed.connect(self._on_progress)
            self.progress = dlg
        job.succeeded.connect(lambda path: self._say(f"wrote {len(values)} frames to {path}"))
        job.failed.connect(lambda msg: self._say(f"animation failed: {msg}"))
        job.cancelled.connect(lambda: self._say("animation cancelled; nothing was written"))
        job.finished.connect(self._on_finished)
        self.action.setEnabled(False)
        job.start()
        return job

    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, text: str) -> None:
        if self.progress is not None:
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            self.progress.setLabelText(text)

    @Slot()
    def _on_finished(self) -> None:
        job, self.job = self.job, None
        if self.progress is not None:
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None
        if job is not None:
            job.deleteLater()
        self.action.setEnabled(True)
        self.finishedJob.emit(self.last_message)

    def _say(self, text: str) -> None:
        self.last_message = text
        self.statusMessage.emit(text)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel a running sweep and join its thread (the window is closing)."""
        if self.job is not None:
            self.job.cancel()
            self.job.wait(timeout_ms)

"""Export from the window: current channel PNG, stage grid PNG, histogram CSV, all stages,
clipboard.

The single-stage PNGs are the pixels on screen (``RenderedStage`` from the worker), written by
core export's atomic ``save_png``; they equal ``layerlab export``'s ``ch-KKK.png`` / ``grid.png``
for the same image and pipeline. "All stages" runs core ``export_run`` (same layout and
manifest as ``layerlab export``, full-size image) in a thread behind a progress dialog; a
cancelled or failed export leaves nothing on disk (core writes into a hidden folder and renames
it at the end).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QWidget,
)

from ..core.outdir import ExportError
from ..core.pipeline import Pipeline
from .session import Session
from .stage_strip import qimage

if TYPE_CHECKING:
    import torch

    from ..core.imageio import LoadedImage

# core.export and core.histcsv run torch: they are imported where used, so that the window
# starts without torch.
# Exports of fewer stages than this finish before a progress dialog would be worth showing.
PROGRESS_MIN_MS = 400


def stage_tensor(view) -> torch.Tensor:
    """The exact stage output of a ``StageView`` with its batch dimension, on the CPU."""
    import torch

    if view.values is None or view.rendered is None:
        raise ExportError(f"stage {view.result.index} ({view.result.name}) failed; "
                          f"there is nothing to export")
    return torch.from_numpy(view.values).unsqueeze(0)


def shown_image(view, channel: int | None) -> np.ndarray:
    """A stage's picture exactly as core export writes it: one channel, or the grid (None).

    Made by core export from the exact values with the normalisation and colormap the view
    was rendered with, so it is byte for byte ``layerlab export``'s ``ch-KKK.png`` /
    ``grid.png``. Vector stages give the heat strip (their ``grid.png``).
    """
    from ..core import export

    r = view.rendered
    imgs = export.stage_images(stage_tensor(view), r.mode, r.colormap)
    if channel is None or imgs.vector:
        return imgs.grid
    if not 0 <= channel < imgs.channels.shape[0]:
        raise ExportError(f"channel {channel} does not exist (the stage has "
                          f"{imgs.channels.shape[0]})")
    return imgs.channel_image(channel)


class ExportJob(QThread):
    """Runs core ``export_run`` off the GUI thread; cancel() stops it between files."""

    progressed = Signal(int, int, str)
    succeeded = Signal(object)  # manifest dict
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, image: LoadedImage, pipeline: Pipeline, out_dir: str, *,
                 options: dict[str, Any], parent: QObject | None = None, model=None,
                 memory_budget: int = 0):
        super().__init__(parent)
        self.setObjectName("layerlab-export")
        self.image = image
        self.pipeline = pipeline
        # the torchvision model shown instead of the stack (a ModelSpec with its edits)
        self.model, self.memory_budget = model, memory_budget
        self.out_dir = out_dir
        self.options = options
        self._cancel = threading.Event()
        self.manifest: dict | None = None
        self.error: str | None = None
        self.was_cancelled = False

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:  # worker thread
        from ..core import export

        def progress(done: int, total: int, text: str) -> None:
            self.progressed.emit(done, total, text)

        try:
            if self.model is not None:
                self.manifest = self._export_model(progress)
            else:
                self.manifest = export.export_run(
                    self.image, self.pipeline, self.out_dir, progress=progress,
                    cancel=self._cancel.is_set, **self.options)
        except export.ExportCancelled:
            self.was_cancelled = True
            self.cancelled.emit()
        except ExportError as e:
            self.error = str(e)
            self.failed.emit(self.error)
        except Exception as e:  # never let the thread die silently
            self.error = f"unexpected error: {type(e).__name__}: {e}"
            self.failed.emit(self.error)
        else:
            self.succeeded.emit(self.manifest)

    def _export_model(self, progress) -> dict:
        """Every stage of the model shown, as ``layerlab export --model`` writes them."""
        from ..core.model_export import export_model
        from ..core.models import ModelError, open_spec

        try:
            opened = open_spec(self.model, self.memory_budget)  # this thread's own copy
        except ModelError as e:
            raise ExportError(str(e)) from None
        return export_model(self.image, opened, self.out_dir, progress=progress,
                            cancel=self._cancel.is_set, **self.options)


class ExportAllDialog(QDialog):
    """Asks where to export every stage, and whether to add the raw float32 arrays."""

    def __init__(self, parent: QWidget | None, start_dir: str, *, gradcam_ok: bool = True):
        super().__init__(parent)
        self.setWindowTitle("Export all stages")
        self.folder = QLineEdit(os.path.join(start_dir, "layerlab-export"), self)
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.raw = QCheckBox("also write the exact values (.npy, float32)", self)
        self.overwrite = QCheckBox("replace the folder if it exists", self)
        self.gradcam = QCheckBox("Grad-CAM of the class shown in Why this class "
                                 "(gradcam.png, gradcam.npy)", self)
        self.gradcam.setToolTip("For a classifier: the heat map of the class over the input, "
                                "as View > Why this class shows it (default: the top class)"
                                if gradcam_ok else "Only for a stack whose last stage is a "
                                "vector of class scores (a classifier)")
        self.gradcam.setEnabled(gradcam_ok)
        note = QLabel("Runs the pipeline on the full-size image and writes, per stage, every "
                      "channel as a PNG, the grid and manifest.json (the layout of "
                      "<code>layerlab export</code>).", self)
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(note)
        form.addRow("Folder", row)
        form.addRow(self.raw)
        form.addRow(self.overwrite)
        form.addRow(self.gradcam)
        form.addRow(buttons)
        self.resize(520, self.sizeHint().height())

    @Slot()
    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New export folder", self.folder.text())
        if path:
            self.folder.setText(path)


class StageExporter(QObject):
    """The export actions and the jobs behind them, on the session's shown stage."""

    exported = Signal(str)  # a message once something was written
    statusMessage = Signal(str)

    def __init__(self, session: Session, view_mode, parent: QWidget):
        super().__init__(parent)
        self.session = session
        self.view_mode = view_mode  # callable: "grid" or "channel", what the view shows
        self.parent_widget = parent
        self.job: ExportJob | None = None
        self.progress: QProgressDialog | None = None
        self.last_error: str | None = None
        self.last_dir = os.path.expanduser("~")
        self._box: QMessageBox | None = None

        self.channel_action = QAction("Export current channel as PNG\u2026", parent)
        self.grid_action = QAction("Export stage grid as PNG\u2026", parent)
        self.hist_action = QAction("Export histogram as CSV\u2026", parent)
        self.all_action = QAction("Export all stages\u2026", parent)
        self.all_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.copy_action = QAction("Copy image to clipboard", parent)
        self.copy_action.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.channel_action.triggered.connect(self._ask_channel)
        self.grid_action.triggered.connect(self._ask_grid)
        self.hist_action.triggered.connect(self._ask_histogram)
        self.all_action.triggered.connect(self._ask_all)
        self.copy_action.triggered.connect(self.copy_to_clipboard)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        session.stageChanged.connect(self.update_enabled)
        session.resultsChanged.connect(self.update_enabled)
        session.selectionChanged.connect(self.update_enabled)
        self.update_enabled()

    def actions(self) -> list[QAction]:
        return [self.channel_action, self.grid_action, self.hist_action, self.all_action,
                self.copy_action]

    @Slot()
    def update_enabled(self, *_: object) -> None:
        s = self.session
        view = s.results.get(s.stage)
        has_view = view is not None and view.rendered is not None
        for a in (self.channel_action, self.grid_action, self.hist_action, self.copy_action):
            a.setEnabled(has_view)
        self.all_action.setEnabled(s.run_pipeline is not None and s.loaded is not None
                                   and self.job is None)

    # --- single images ---
    def _current(self):
        view = self.session.results.get(self.session.stage)
        if view is None:
            raise ExportError("no stage to export yet")
        return view

    def _default_name(self, channel: int | None) -> str:
        from ..core import export

        view = self._current()
        base = export.stage_dir_name(view.result.index, view.result.name)
        if channel is None or view.rendered is None or view.rendered.vector is not None:
            return f"{base}-grid.png"
        return f"{base}-{export.channel_file_name(channel)}"

    def save_channel_png(self, path: str | os.PathLike, channel: int | None = None) -> Path:
        """Write a channel (default: the selected one) of the current stage, as shown."""
        from ..core import export

        view = self._current()
        ch = self.session.channel if channel is None else channel
        r = view.rendered
        return export.export_channel_png(stage_tensor(view), ch, path, normalize=r.mode,
                                         colormap=r.colormap)

    def save_grid_png(self, path: str | os.PathLike) -> Path:
        """Write the current stage's grid (a vector stage's heat strip), as shown."""
        from ..core import export

        view = self._current()
        r = view.rendered
        return export.export_grid_png(stage_tensor(view), path, normalize=r.mode,
                                      colormap=r.colormap)

    def save_histogram_csv(self, path: str | os.PathLike) -> Path:
        """Write the current stage's histogram (the window's bins) as CSV: bin edges, the
        stage's and every channel's counts (see :mod:`layerlab.core.histcsv`)."""
        from ..core import histcsv

        view = self._current()
        r = view.rendered
        bins = len(r.hist_edges) - 1 if r is not None and r.has_stats else \
            self.session.render_options.bins
        p = Path(path)
        try:
            return histcsv.write_histogram_csv(stage_tensor(view), p, bins)
        except OSError as e:
            raise ExportError(f"cannot write {p}: {e.strerror or e}") from None

    def copy_to_clipboard(self) -> bool:
        """Put what the view shows (the large channel or the grid) on the clipboard."""
        try:
            view = self._current()
            channel = self.session.channel if self.view_mode() == "channel" else None
            arr = shown_image(view, channel)
        except ExportError as e:
            self._report_error(str(e))
            return False
        QGuiApplication.clipboard().setImage(qimage(arr))
        self._done(f"copied {arr.shape[1]} x {arr.shape[0]} image to the clipboard")
        return True

    @Slot()
    def _ask_channel(self) -> None:
        self._ask_png(self.save_channel_png, self._default_name(self.session.channel))

    @Slot()
    def _ask_grid(self) -> None:
        self._ask_png(self.save_grid_png, self._default_name(None))

    @Slot()
    def _ask_histogram(self) -> None:
        from ..core import export

        view = self._current()
        name = f"{export.stage_dir_name(view.result.index, view.result.name)}-histogram.csv"
        self._ask_png(self.save_histogram_csv, name, "Save histogram",
                      "CSV files (*.csv)", ".csv")

    def _ask_png(self, save, name: str, title: str = "Save PNG",
                 filters: str = "PNG images (*.png)", suffix: str = ".png") -> None:
        path, _ = QFileDialog.getSaveFileName(self.parent_widget, title,
                                              os.path.join(self.last_dir, name), filters)
        if not path:
            return
        if not path.lower().endswith(suffix):
            path += suffix
        self.last_dir = os.path.dirname(path)
        try:
            written = save(path)
        except (ExportError, ValueError) as e:
            self._report_error(str(e))
            return
        self._done(f"saved {written}")

    # --- everything ---
    @Slot()
    def _ask_all(self) -> None:
        dialog = ExportAllDialog(self.parent_widget, self.last_dir,
                                 gradcam_ok=self._ends_in_scores())
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        folder = dialog.folder.text().strip()
        if not folder:
            return
        self.last_dir = os.path.dirname(os.path.abspath(folder))
        self.export_all(folder, raw=dialog.raw.isChecked(),
                        overwrite=dialog.overwrite.isChecked(),
                        gradcam=dialog.gradcam.isChecked())

    def _ends_in_scores(self) -> bool:
        """The stack shown ends in a vector of class scores (what a Grad-CAM needs)."""
        s = self.session
        last = s.results.get(max(s.results)) if s.results else None
        return (s.model is None and last is not None and last.result.output is not None
                and last.result.output.dim() == 2)

    def export_all(self, out_dir: str | os.PathLike, *, raw: bool = False,
                   overwrite: bool = False, show_progress: bool = True,
                   gradcam: bool = False) -> ExportJob | None:
        """Start exporting every stage into ``out_dir``; returns the running job. With
        ``gradcam``, also the Grad-CAM of the class and stage "Why this class" shows (the
        top class at the last conv stage when it shows none)."""
        if self.job is not None:
            self._report_error("an export is already running")
            return None
        s = self.session
        pipeline, image = s.run_pipeline, s.loaded
        if pipeline is None or image is None:
            self._report_error("load an image first")
            return None
        opts = s.render_options
        options = {"device": s.device, "raw": raw, "normalize": opts.normalize,
                   "colormap": opts.colormap, "overwrite": overwrite}
        if gradcam and s.model is not None:
            self._report_error("the Grad-CAM export is for a stack; for a model use "
                               "Why this class and save its picture")
            return None
        if gradcam:
            from ..core.export_extras import GradCamOption  # torch is there once maps are

            shown = s.gradcam
            options["gradcam"] = GradCamOption(shown.target if shown else None,
                                               shown.stage if shown else None)
        job = ExportJob(image, pipeline, os.fspath(out_dir), options=options, parent=self,
                        model=s.model, memory_budget=int(s.memory_budget_gb * 1024**3))
        self.job = job
        self.last_error = None
        if show_progress:
            total = (len(s.results) if s.model is not None
                     else len(pipeline.enabled_layers())) + 2
            dlg = QProgressDialog("Exporting\u2026", "Cancel", 0, total, self.parent_widget)
            dlg.setWindowTitle("Export all stages")
            dlg.setMinimumDuration(PROGRESS_MIN_MS)
            dlg.setAutoClose(False)
            dlg.setAutoReset(False)
            dlg.setValue(0)
            dlg.canceled.connect(job.cancel)
            job.progressed.connect(self._on_progress)
            self.progress = dlg
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self.update_enabled()
        job.start()
        return job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Cancel a running export and join its thread (call before quitting)."""
        job = self.job
        if job is not None:
            job.cancel()
            job.wait(timeout_ms)

    @Slot(int, int, str)
    def _on_progress(self, done: int, total: int, text: str) -> None:
        if self.progress is not None:
            if self.progress.wasCanceled() and self.job is not None:
                self.job.cancel()
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            self.progress.setLabelText(text)

    @Slot(object)
    def _on_succeeded(self, manifest: dict) -> None:
        job = self.sender() if isinstance(self.sender(), ExportJob) else self.job
        where = job.out_dir if job is not None else ""
        self._done(f"exported {len(manifest['stages'])} stages to {where}")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._report_error(f"export failed: {message}")

    @Slot()
    def _on_cancelled(self) -> None:
        self._done("export cancelled; nothing was written")

    @Slot()
    def _on_finished(self) -> None:
        job, self.job = self.job, None
        if self.progress is not None:
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None
        if job is not None:
            job.deleteLater()
        self.update_enabled()

    # --- messages ---
    def _done(self, message: str) -> None:
        self.statusMessage.emit(message)
        self.exported.emit(message)

    def _report_error(self, message: str) -> None:
        self.last_error = message
        self.statusMessage.emit(message)
        if self.parent_widget.isVisible():
            box = QMessageBox(QMessageBox.Icon.Warning, "Export", message,
                              QMessageBox.StandardButton.Ok, self.parent_widget)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
            self._box = box

"""Long jobs off the GUI thread (QtCore only): a fit, a search, a Grad-CAM, an explanation,
each in a thread of its own beside the pipeline runs, stopped within one step."""

from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot


def join_thread(thread: QThread, timeout_ms: int) -> None:
    """Wait for ``thread`` to end. A step that cannot be interrupted (torch's import, one long
    layer) may outlast ``timeout_ms``; a QThread destroyed while it runs aborts the whole
    process, so then say why the window is slow to close and wait for the step's end."""
    if not thread.wait(timeout_ms):
        print("LayerLab: waiting for the step under way to finish before closing",
              file=sys.stderr, flush=True)
        thread.wait()


@dataclass
class JobOutcome:
    """How a job ended: its return value, or that it was stopped, or its error message."""

    job_id: int
    result: Any = None
    cancelled: bool = False
    error: str | None = None


class _JobWorker(QObject):
    progress = Signal(int, object)  # job id, whatever the job yielded
    finished = Signal(object)  # JobOutcome

    def __init__(self) -> None:
        super().__init__()
        self.current = 0  # the job id allowed to go on; written by the GUI thread

    @Slot(int, object)
    def run(self, job_id: int, job: Any) -> None:
        import torch  # jobs use torch; importing it here keeps it off the first paint

        def cancelled() -> bool:
            return job_id != self.current

        outcome = JobOutcome(job_id)
        try:
            steps = job(cancelled)
            while True:
                if cancelled():
                    outcome.cancelled = True
                    break
                try:
                    event = next(steps)
                except StopIteration as done:
                    outcome.result = done.value
                    break
                if event is not None:  # a step with nothing to report
                    self.progress.emit(job_id, event)
        except torch.cuda.OutOfMemoryError:
            outcome.error = "out of GPU memory; switch the device to CPU or use a smaller image"
        except Exception as e:  # the thread must survive a failing job
            traceback.print_exc()
            outcome.error = f"{type(e).__name__}: {e}"
        self.finished.emit(outcome)


class JobRunner(QObject):
    """Runs one long job at a time in its own thread, beside the pipeline runs.

    A job is a callable ``job(cancelled) -> generator``: the generator does one step per
    ``next()`` (an optimiser step, a frame), yields a progress event now and then and returns
    its result (it yields ``None`` for a step with nothing to report: the step still counts
    as a boundary where a stop takes effect). ``stop()`` takes effect at the next step
    boundary, so a job is cancellable within one step. Progress and the outcome arrive on the GUI thread; events of a stopped
    job are dropped.
    """

    progress = Signal(object)  # what the running job yielded
    finished = Signal(object)  # JobOutcome of the job that was running
    busyChanged = Signal(bool)

    _dispatch = Signal(int, object)

    def __init__(self, parent: QObject | None = None, *, synchronous: bool = False):
        super().__init__(parent)
        self.synchronous = synchronous
        self._next_id = 0
        self._running: int | None = None
        self._worker = _JobWorker()
        self._thread: QThread | None = None
        if not synchronous:
            self._thread = QThread()
            self._thread.setObjectName("layerlab-jobs")
            self._worker.moveToThread(self._thread)
            self._dispatch.connect(self._worker.run)
            self._thread.start()
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)

    @property
    def busy(self) -> bool:
        return self._running is not None

    def start(self, job: Any) -> int:
        """Stop any running job and start ``job``; returns its id."""
        if self._thread is not None and not self._thread.isRunning():
            raise RuntimeError("the job runner was shut down")
        self._next_id += 1
        job_id = self._next_id
        self._worker.current = job_id
        was_busy = self.busy
        self._running = job_id
        if not was_busy:
            self.busyChanged.emit(True)
        if self.synchronous:
            self._worker.run(job_id, job)
        else:
            self._dispatch.emit(job_id, job)
        return job_id

    def stop(self) -> None:
        """Ask the running job to stop at its next step; its outcome says cancelled."""
        self._worker.current = 0

    @Slot(int, object)
    def _on_progress(self, job_id: int, event: Any) -> None:
        if job_id == self._running and job_id == self._worker.current:
            self.progress.emit(event)

    @Slot(object)
    def _on_finished(self, outcome: JobOutcome) -> None:
        if outcome.job_id != self._running:
            return  # a job replaced by a newer one: its successor reports
        self._running = None
        self.finished.emit(outcome)
        self.busyChanged.emit(False)

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Stop the running job and join the thread (call from closeEvent)."""
        self.stop()
        if self._thread is not None and self._thread.isRunning():
            self._thread.quit()
            join_thread(self._thread, timeout_ms)

"""File > Open model… as an editable stack: AlexNet or a VGG becomes the document's stack.

Building the model and turning its modules into layers takes seconds (VGG16's 138 M weights),
so a ``JobRunner`` does it off the GUI thread, one layer per step (stoppable, with progress in
the status bar). The finished pipeline is loaded as one undo step: Ctrl+Z brings the previous
stack back. A model over the memory budget, or weights that do not fit it, is one message and
the stack stays as it was.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot

from ..worker import JobOutcome, JobRunner
from .session import Session


def stack_job(spec, memory_budget: int):
    """A JobRunner job: opens ``spec`` (a core.models.ModelSpec) and yields ``(done, total)``
    per layer; returns ``(pipeline, weights text)``, or the message of a ModelError."""

    def job(cancelled):
        # torch and torchvision, in the job's thread
        from ..core.models import (
            ModelError,
            check_stack_memory,
            open_spec,
            plan_model,
            stack_steps,
        )

        try:
            check_stack_memory(plan_model(spec.name), memory_budget)  # before any allocation
            yield (0, 0)
            opened = open_spec(spec, memory_budget)
            pipeline = yield from stack_steps(opened)
            return pipeline, opened.weights
        except ModelError as e:
            return str(e)

    return job


class ModelStack(QObject):
    """Opens chain models as the document's stack; ``window`` shows the messages."""

    def __init__(self, session: Session, window, parent: QObject | None = None, *,
                 synchronous: bool = False):
        super().__init__(parent)
        self.session = session
        self.window = window
        self.jobs = JobRunner(self, synchronous=synchronous)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.finished.connect(self._on_finished)
        self._spec = None

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def open(self, spec) -> None:
        """Build ``spec`` (a ModelSpec of a chain model) as a stack; a newer call replaces a
        build still running."""
        self._spec = spec
        budget = int(self.session.memory_budget_gb * 1024**3)
        self.window.show_status(f"Opening {spec.text()} as an editable stack…", 0)
        self.window.set_progress(f"building {spec.name}…")
        self.jobs.start(stack_job(spec, budget))

    def stop(self) -> None:
        self.jobs.stop()

    @Slot(object)
    def _on_progress(self, event) -> None:
        done, total = event
        name = self._spec.name if self._spec is not None else "the model"
        self.window.set_progress(f"building {name}: layer {done}/{total}" if total
                                 else f"building {name}…")

    @Slot(object)
    def _on_finished(self, outcome: JobOutcome) -> None:
        spec, w = self._spec, self.window
        w.set_progress("")
        if outcome.cancelled:
            w.show_status(f"Stopped opening {spec.name}; the stack is as it was")
            return
        result = outcome.result
        if outcome.error or isinstance(result, str):
            message = outcome.error or result
            w.show_error(f"Could not open {spec.name} as a stack: {message}")
            w.set_progress("⚠ error", message)
            return
        pipeline, weights = result
        had_changes = self.session.document.modified
        self.session.document.load(pipeline, None, f"Open {spec.name} as a stack",
                                   name=spec.name)
        w.show_status(f"Opened {spec.name} ({weights}) as an editable stack: "
                      f"{len(pipeline.layers)} layers"
                      + ("; Ctrl+Z brings the previous stack back" if had_changes else ""))

    def shutdown(self) -> None:
        self.jobs.shutdown()

"""The "why this class" intents: a Grad-CAM of the run on screen, computed by a ``JobRunner``
off the GUI thread (stoppable between stages; a newer request replaces a running one), its
result put into the session for the panel to draw."""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot

from ..worker import JobOutcome, JobRunner
from .session import Session


def gradcam_job(pipeline, image, target, stage, device):
    """A JobRunner job: one step per stage; returns the GradCam, or the message of a
    GradCamError (a stack or choice Grad-CAM cannot use)."""

    def job(cancelled):
        # torch (core.gradcam), in the job's thread: the window paints before torch is loaded
        from ..core.gradcam import GradCamError, grad_cam_steps
        from ..core.imageio import to_tensor

        try:
            x = to_tensor(image, pipeline.input.mode)
            return (yield from grad_cam_steps(pipeline, x, target=target, stage=stage,
                                              device=device))
        except GradCamError as e:
            return str(e)

    return job


class WhyClass(QObject):
    def __init__(self, session: Session, panel, parent: QObject | None = None, *,
                 synchronous: bool = False):
        super().__init__(parent)
        self.session = session
        self.jobs = JobRunner(self, synchronous=synchronous)
        self._input_view = None
        self.jobs.finished.connect(self._on_job_finished)
        panel.requested.connect(self.on_requested)

    @Slot(object, object)
    def on_requested(self, target, stage) -> None:
        s = self.session
        if s.run_pipeline is None or s.run_image is None or 0 not in s.results:
            return
        self._input_view = s.results[0]
        self.jobs.start(gradcam_job(s.run_pipeline, s.run_image.image, target, stage,
                                    s.device))

    @Slot(object)
    def _on_job_finished(self, outcome: JobOutcome) -> None:
        if outcome.cancelled:
            return
        result = outcome.result
        if outcome.error or isinstance(result, str):
            self.session.set_gradcam(None, None, f"Grad-CAM failed: {outcome.error or result}")
        else:
            self.session.set_gradcam(result, self._input_view)

    def shutdown(self) -> None:
        self.jobs.shutdown()

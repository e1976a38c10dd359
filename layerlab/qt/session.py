"""The session: one evented model of what the user works on. No widgets.

It holds the document (pipeline + undo), the image and its preview, the device, the preview
size, the memory budget, the render options, the selection (layer, stage, channel, kernel
slice), the analysis of the current stack for the preview's size, and the one store of the
newest run's results and errors. Widgets read it; only the controller writes it. Each setter
emits a signal when something changed, and nothing else keeps a copy of these values.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from ..core.analysis import Validation, same_analysis, validate
from ..core.imageio import LoadedImage, downscale_for_preview
from ..core.pipeline import DEFAULT_MEMORY_BUDGET, Pipeline
from ..worker import RenderOptions, RunSummary, StageView
from .document import Document

DEFAULT_PREVIEW = 1024
DEFAULT_BUDGET_GB = DEFAULT_MEMORY_BUDGET // 1024**3


class Session(QObject):
    imageChanged = Signal()
    validationChanged = Signal()
    optionsChanged = Signal(object)  # RenderOptions
    deviceChanged = Signal(str)
    selectionChanged = Signal()  # stage, channel or layer
    stageChanged = Signal(int)  # results[index] was replaced
    statsChanged = Signal(int)  # results[index] gained its histograms and statistics
    resultsChanged = Signal()  # stages were dropped, or the run's errors changed
    staleChanged = Signal()  # the pictures stopped (or started again) matching the stack
    displayRangeChanged = Signal(int)  # a stage's display range was set or reset
    explainedChanged = Signal()  # the value the explain panel explains moved
    gradcamChanged = Signal()  # a Grad-CAM ("why this class") arrived, failed or was dropped
    modelChanged = Signal()  # a torchvision model is shown instead of the stack, or no more
    # (also each weight edit of it); modelShown only when another model, or none, is shown
    modelShown = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.document = Document(parent=self)
        self.loaded: LoadedImage | None = None  # the full-size image
        self.preview: LoadedImage | None = None  # what runs while editing
        self.preview_max = DEFAULT_PREVIEW
        self.memory_budget_gb = DEFAULT_BUDGET_GB
        self.device = "cpu"
        self.render_options = RenderOptions()
        # Display ranges the user dragged on the colour bar, by stage (value units).
        self.display_ranges: dict[int, tuple[float, float]] = {}
        self.validation: Validation | None = None
        self._validated: tuple | None = None  # (pipeline, image size) of that validation
        # selection
        self.layer: int | None = None
        self.stage = 0
        self.channel = 0
        self.kernel_slice = (0, 0)
        # the value being explained: (stage, channel, y, x), or None
        self.explained: tuple[int, int, int, int] | None = None
        # the newest run: results by stage index (0 is the input) and what they came from
        self.results: dict[int, StageView] = {}
        self.run_pipeline: Pipeline | None = None
        self.run_image: LoadedImage | None = None
        self.run_errors: dict[int, str] = {}  # by layer index, from the last finished run
        self.run_error: str | None = None  # the last run's own error (refused, failed)
        self.stale_reason: str | None = None  # why the stack shown is not the one edited
        self.last_summary: RunSummary | None = None
        # "Why this class": the newest Grad-CAM (core.gradcam.GradCam) of the run shown, and
        # the run's input stage it belongs to; or why there is none
        self.gradcam = None
        self.gradcam_input = None
        self.gradcam_error: str | None = None
        # A torchvision model shown instead of the stack (core.models.ModelSpec), or None.
        self.model = None
        self.model_classes: tuple[str, ...] = ()  # its class names, from the last model run
        # Its editable modules with their opened tensors (core.model_edits.ModuleWeights by
        # path), from the worker's last run of it; the edits are in ``model.edits``.
        self.model_weights: dict | None = None
        # The model's weight edits have their own history: Undo undoes them while the model
        # is shown (the group's active stack), the stack's edits otherwise.
        self.model_saved_edits: tuple = ()  # the edits in the last saved weights file
        # (ModelSpec, its saved edits) of a model with unsaved weight edits that an edit of
        # the stack replaced; opening the same model again brings them back
        self.parked_model: tuple | None = None
        self.model_undo = QUndoStack(self)
        self.model_undo.setUndoLimit(500)
        self.undo_group = QUndoGroup(self)
        self.undo_group.addStack(self.document.undo_stack)
        self.undo_group.addStack(self.model_undo)
        self.undo_group.setActiveStack(self.document.undo_stack)

    # --- the image ---------------------------------------------------------------------------
    def set_image(self, loaded: LoadedImage) -> None:
        self.loaded = loaded
        self._make_preview()
        self.imageChanged.emit()

    def set_preview_max(self, size: int) -> None:
        self.preview_max = int(size)
        if self.loaded is not None:
            self._make_preview()
            self.imageChanged.emit()

    def _make_preview(self) -> None:
        assert self.loaded is not None
        img = downscale_for_preview(self.loaded.image, self.preview_max)
        self.preview = replace(self.loaded, image=img, size=img.size,
                               source_size=self.source_size())

    def source_size(self) -> tuple[int, int]:
        """(width, height) of the file as it was on disk (before any decode-time scaling)."""
        if self.loaded is None:
            return (0, 0)
        return self.loaded.source_size or self.loaded.size

    def image_hw(self, *, full: bool = False) -> tuple[int, int] | None:
        image = self.loaded if full else self.preview
        if image is None:
            return None
        w, h = image.size
        return (h, w)

    def is_full_size(self) -> bool:
        """True when the preview is the whole image (nothing was scaled down)."""
        return (self.preview is not None and self.loaded is not None
                and tuple(self.preview.size) == tuple(self.loaded.size)
                and tuple(self.loaded.size) == tuple(self.source_size()))

    def image_name(self) -> str:
        if self.loaded is None:
            return "no image"
        return Path(self.loaded.path).name if self.loaded.path else "pasted image"

    # --- the stack ---------------------------------------------------------------------------
    @property
    def pipeline(self) -> Pipeline:
        return self.document.pipeline

    def title(self) -> str:
        return self.document.title

    def revalidate(self) -> None:
        pipeline, hw = self.pipeline, self.image_hw()
        last = self._validated
        if last is None or last[1] != hw or not same_analysis(last[0], pipeline):
            self.validation = validate(pipeline, hw)  # (a typed kernel cell keeps it)
        self._validated = (pipeline, hw)
        self.validationChanged.emit()

    def stage_of_layer(self, layer_index: int) -> int | None:
        if self.model is not None:  # a model's stages are not the stack's layers
            return None
        first = 1 + self.pipeline.stage_offset  # after the input (and its normalize stage)
        for stage, (i, _layer) in enumerate(self.pipeline.enabled_layers(), start=first):
            if i == layer_index:
                return stage
        return None

    def layer_of_stage(self, stage: int) -> int | None:
        if self.model is not None:
            return None
        enabled = self.pipeline.enabled_layers()
        k = stage - 1 - self.pipeline.stage_offset
        return enabled[k][0] if 0 <= k < len(enabled) else None

    def set_model(self, spec) -> None:
        """Show the torchvision model ``spec`` (a ModelSpec) instead of the stack; None goes
        back to the stack."""
        if spec != self.model:
            if spec is None and self.model_edits_unsaved:
                # Kept, with their history: opening the same model again brings them back.
                self.parked_model = (self.model, self.model_saved_edits)
            another = (spec is None or self.model is None
                       or spec.opened_as != self.model.opened_as)
            if another:
                self.model_weights = None  # its weights come with its run
            self.model = spec
            self.undo_group.setActiveStack(self.document.undo_stack if spec is None
                                           else self.model_undo)
            self.modelChanged.emit()
            if another:
                self.modelShown.emit()

    @property
    def model_edits_unsaved(self) -> bool:
        """The model shown has weight edits that are not in a saved weights file."""
        return self.model is not None and self.model.edits != self.model_saved_edits

    @property
    def weight_edits_unsaved(self) -> bool:
        """Unsaved weight edits of the model shown, or of one the stack replaced (parked)."""
        return self.model_edits_unsaved or self.parked_model is not None

    # --- options -----------------------------------------------------------------------------
    def set_render_options(self, options: RenderOptions) -> None:
        if options != self.render_options:
            self.render_options = options
            self.optionsChanged.emit(options)

    def set_display_range(self, stage: int, value_range: tuple[float, float] | None) -> None:
        if value_range is None:
            changed = self.display_ranges.pop(stage, None) is not None
        else:
            changed = self.display_ranges.get(stage) != value_range
            self.display_ranges[stage] = value_range
        if changed:
            self.displayRangeChanged.emit(stage)

    def set_device(self, device: str) -> None:
        if device != self.device:
            self.device = device
            self.deviceChanged.emit(device)

    # --- selection ---------------------------------------------------------------------------
    def select(self, *, stage: int | None = None, channel: int | None = None,
               layer: int | None | type[...] = ...) -> None:
        """Change any part of the selection; one ``selectionChanged`` if anything moved."""
        before = (self.stage, self.channel, self.layer)
        if stage is not None:
            self.stage = max(0, int(stage))
        if channel is not None:
            self.channel = max(0, int(channel))
        if layer is not ...:
            self.layer = layer  # type: ignore[assignment]
        if (self.stage, self.channel, self.layer) != before:
            self.selectionChanged.emit()

    def shown_stages(self) -> frozenset[int]:
        """The stages the window draws in full; the strip shows the others as thumbnails
        until they are picked. The selected stage; the one before it (the channel view's
        left picture, the pointer's receptive field and explain read it); the input (the
        photo beside a channel, Grad-CAM's background); the explained value's stage and the
        one before it, or for a model the normalized input its module's input is recomputed
        from. (A vector stage, such as a classifier's scores, always is.)"""
        stages = {0, self.stage, self.stage - 1}
        if self.explained is not None:
            stages |= {self.explained[0], 1 if self.model is not None else self.explained[0] - 1}
        return frozenset(i for i in stages if i >= 0)

    def set_explained(self, position: tuple[int, int, int, int] | None) -> None:
        """Explain output value (stage, channel, y, x), or nothing (None)."""
        position = None if position is None else tuple(int(v) for v in position)
        if position != self.explained:
            self.explained = position  # type: ignore[assignment]
            self.explainedChanged.emit()

    # --- results -----------------------------------------------------------------------------
    def begin_run(self, pipeline: Pipeline, image: LoadedImage) -> None:
        """A run of ``pipeline`` on ``image`` started; the old pictures stay until replaced."""
        self.run_pipeline = pipeline
        self.run_image = image

    def put_stage(self, view: StageView) -> None:
        """A stage of the newest run arrived (the runner dropped older generations)."""
        index = view.result.index
        self.results[index] = view
        if view.result.error:
            # The run ends at a failed stage: later stages of an older run are gone.
            self._drop_from(index + 1)
            if index < self.stage:
                self.stage = index  # the selected stage is gone: show the failure instead
        self.stageChanged.emit(index)

    def put_stats(self, view: StageView) -> None:
        """The histograms and statistics of a stage whose pictures came first."""
        shown = self.results.get(view.result.index)
        if shown is not None and shown.generation == view.generation:
            self._complete(shown, view)

    def put_view(self, view: StageView) -> None:
        """The full view of a stage shown as a thumbnail (it was picked after its run), or the
        numbers of pictures held whose run a Stop cut short: kept only where it completes
        the very thumbnail or pictures held."""
        index = view.result.index
        held = self.results.get(index)
        if held is None:
            return
        if not held.full:
            if held.thumb is not None and held.thumb is view.thumb:
                self.results[index] = view
                self.stageChanged.emit(index)
        elif (view.rendered.has_stats and not held.rendered.has_stats
              and held.rendered.grid_u8 is view.rendered.grid_u8):
            self._complete(held, view)

    def _complete(self, held: StageView, view: StageView) -> None:
        """``held`` gets ``view``'s histograms and statistics (and the strip's thumbnail,
        made after the pictures). The same stage object: views that drew its pictures need
        not redraw them."""
        held.rendered = view.rendered
        if held.thumb is None:
            held.thumb = view.thumb
        self.statsChanged.emit(view.result.index)

    def end_run(self, summary: RunSummary, errors: dict[int, str]) -> None:
        """The newest run ended: keep its results, drop what an older, longer run left."""
        self.last_summary = summary
        if summary.cancelled:
            return
        self.model_classes = summary.classes  # what a model's last stage scores
        if self.model is not None and summary.model_weights is not None:
            self.model_weights = summary.model_weights
        refused = bool(summary.error) and summary.stages == 0  # e.g. the memory budget
        self.run_error = summary.error
        if not refused:
            self._drop_from(summary.stages)
            self.run_errors = dict(errors)
            if self.results and self.stage not in self.results:
                self.stage = max(self.results)
        self.resultsChanged.emit()

    def set_gradcam(self, result, input_view=None, error: str | None = None) -> None:
        """A Grad-CAM of the run whose input stage is ``input_view`` (or its ``error``)."""
        self.gradcam, self.gradcam_input, self.gradcam_error = result, input_view, error
        self.gradcamChanged.emit()

    def set_stale(self, reason: str | None) -> None:
        """The edited stack cannot run (``reason``): the pictures are of an older one."""
        if reason != self.stale_reason:
            self.stale_reason = reason
            self.staleChanged.emit()

    def clear_run_errors(self) -> None:
        if self.run_errors:
            self.run_errors = {}
            self.resultsChanged.emit()

    def _drop_from(self, index: int) -> None:
        for i in [i for i in self.results if i >= index]:
            del self.results[i]

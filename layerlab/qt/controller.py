"""The controller: view intents become session edits, worker events become session results.

It owns the decisions between them: what is validated and when, what is run (the preview, the
full-size image, or only a re-render of the last results), and which view follows which
selection. Views are passed in as plain objects with the methods used below; a view that is
not there (a test without a window) is simply not updated. Handlers are named ``on_*`` for
intents and ``_on_runner_*`` / ``_on_document_*`` for events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Slot

from ..core.analysis import in_shape_at, validate
from ..core.pipeline import InputSpec, Pipeline
from ..worker import RenderOptions, RunController, RunRequest, RunSummary, StageView
from .model_weights import ModelWeights
from .session import Session
from .text import shape_text, size_text

NOT_RUN = "Not run: "  # the status message of a stack that cannot run

# What the parameter form says while a torchvision model is on screen instead of the stack.
MODEL_SHOWN_NOTE = ("<i>{name} is shown, not the stack: its layers' arguments are fixed. Pick "
                    "a convolution stage to edit its weights in the Kernel tab; an edit of "
                    "the stack brings the stack back.</i>")


class _Absent:
    """Stands in for a view that is not there: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@dataclass
class Views:
    """The views the controller updates; any of them may be missing."""

    window: Any = field(default_factory=_Absent)  # status bar, banner, title, toolbar
    stack: Any = field(default_factory=_Absent)  # the layer list
    form: Any = field(default_factory=_Absent)  # the selected layer's parameters
    kernel: Any = field(default_factory=_Absent)  # the selected Conv2d's kernels
    stages: Any = field(default_factory=_Absent)  # the stage panel (its hover box)


class Controller(QObject):
    def __init__(self, session: Session, runner: RunController, views: Views | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.runner = runner
        self.views = views or Views()
        self.closing = False
        self._run_kind = "preview"  # what the newest request runs: preview, full or render
        self._run_errors_now: dict[int, str] = {}
        self._run_names: dict[int, str] = {}
        self._last_run_key: tuple | None = None  # what the last finished run computed
        self._submitted_key: tuple | None = None
        self._opening_model: Any = None  # the ModelSpec asked for, until its first run ends
        self._contexts: dict[int, tuple] = {}  # generation -> (pipeline, image) it runs
        self._refreshing = False  # the layer list is being rebuilt: ignore its selection
        self._following_stage = False  # the layer list follows a stage the user picked
        self._showing_full = False  # the pictures are of the full-size image
        self.model_weights = ModelWeights(session, self)  # a model's weights in the editor
        doc = session.document
        doc.changed.connect(self._on_document_changed)
        doc.pathChanged.connect(self._update_title)
        doc.undo_stack.cleanChanged.connect(self._update_title)
        session.modelChanged.connect(self._update_title)  # its weight edits, saved or not
        session.modelShown.connect(self._on_model_shown)
        session.selectionChanged.connect(self._on_session_selection)
        session.resultsChanged.connect(self._on_session_selection)
        runner.runStarted.connect(self._on_runner_started)
        runner.stageReady.connect(self._on_runner_stage)
        runner.statsReady.connect(session.put_stats)
        runner.viewReady.connect(session.put_view)
        session.selectionChanged.connect(self._on_shown_changed)
        session.explainedChanged.connect(self._on_shown_changed)
        runner.runFinished.connect(self._on_runner_finished)
        runner.busyChanged.connect(self._on_runner_busy)

    # ------------------------------------------------------------------ model events
    @Slot(object)
    def _on_document_changed(self, select: object) -> None:
        s = self.session
        left = s.model if s.model_edits_unsaved else None
        s.set_model(None)  # an edit of the stack (or another stack) brings the stack back
        if left is not None:
            self.views.window.show_banner(
                f"The stack is back; the unsaved weight edits of {left.name} are kept: File > "
                f"Open model… {left.text()} again brings them back", "info")
        s.clear_run_errors()
        s.revalidate()
        if s.document.last_note:
            self.views.window.show_status(s.document.last_note)
            s.document.last_note = None
        # The worker starts on the edit first; the list, form and kernel catch up meanwhile.
        self.submit()
        if s.document.replaced:  # another stack: the view follows its selected layer
            s.select(layer=None)
        self._show_validation(select if isinstance(select, int) else None)
        self.views.window.set_input(s.pipeline.input)
        self._update_title()
        self.views.window.schedule_autosave()

    def revalidate(self, select: int | None = None) -> None:
        """Shapes and errors by formula for the preview's size; the list and form follow."""
        self.session.revalidate()
        self._show_validation(select)

    def _show_validation(self, select: int | None) -> None:
        """The layer list, form and kernel editor show the session's validation."""
        s = self.session
        self._refreshing = True
        try:
            self.views.stack.refresh(s.validation, select, s.run_errors)
        finally:
            self._refreshing = False
        self.on_layer_selected(self.views.stack.current_layer())

    @Slot()
    def _update_title(self, *_: object) -> None:
        s = self.session
        self.views.window.set_title(f"{s.image_name()} · {s.title()}[*] — LayerLab",
                                    s.document.modified or s.model_edits_unsaved)

    def image_opened(self) -> None:
        """A new image is in the session: say so, re-check the shapes and run."""
        s = self.session
        notes = "; ".join(s.loaded.notes) if s.loaded else ""
        self.views.window.hide_banner()
        self.views.window.show_status(f"Opened {s.image_name()} ({size_text(s.source_size())})"
                                      + (f": {notes}" if notes else ""))
        self._show_preview_size()
        self._update_title()
        self.revalidate()
        self.submit()
        self.views.window.schedule_autosave()

    def _show_preview_size(self) -> None:
        s = self.session
        if s.preview is None:
            return
        if s.is_full_size():
            self.views.window.set_preview_text(
                f"{size_text(s.preview.size)} (full size)",
                "The image is small enough to edit at full size")
        else:
            self.views.window.set_preview_text(
                f"preview {size_text(s.preview.size)} of {size_text(s.source_size())}",
                f"Editing runs a {s.preview_max}-pixel preview; Run > Run at full size "
                f"(Ctrl+Shift+R) runs the whole image once. Change it in View > Preview size.")

    # ------------------------------------------------------------------ selection intents
    @Slot(object)
    def on_layer_selected(self, index: object) -> None:
        if self._refreshing:
            return  # revalidate() calls again once the list is rebuilt
        s = self.session
        layers = s.pipeline.layers
        i = index if isinstance(index, int) and 0 <= index < len(layers) else None
        layer = layers[i] if i is not None else None
        changed = i != s.layer
        s.select(layer=i)
        self.views.window.set_layer_actions(i, len(layers))
        if s.model is not None:  # the editors show the model, not the stack behind it
            self.views.form.show_note(MODEL_SHOWN_NOTE.format(name=s.model.name))
            self.model_weights.show()
        else:
            self.views.form.set_layer(i, layer)
            self.views.kernel.set_layer(i, layer)
            self.views.window.show_editor_for(layer)
        self._update_form_status()
        # The feature view follows a newly picked layer, not every edit of the same one (a
        # person tuning the first kernel may be watching the last stage).
        if i is not None and changed and not self._following_stage:
            stage = s.stage_of_layer(i)
            if stage is not None:
                s.select(stage=stage)

    def _update_form_status(self) -> None:
        s = self.session
        i, v = s.layer, s.validation
        if i is None or v is None or i >= len(v.layers):
            self.views.form.show_status(None, None, "")
            return
        status = v.layers[i]
        error, fld = status.error, status.field
        if error is None and i in s.run_errors:
            error, fld = s.run_errors[i], None
        text = ""
        if not s.pipeline.layers[i].enabled:
            text = "This layer is disabled: the stack skips it."
        elif status.shape is not None:
            text = f"in {shape_text(status.in_shape)} → out {shape_text(status.shape)}"
            if status.formula and status.formula != "shape unchanged":
                text += "\n" + status.formula
        self.views.form.show_status(error, fld, text)

    @Slot(int)
    def on_stage_picked(self, stage: int) -> None:
        """The user picked a stage (the strip): show it, and select its layer in the list."""
        s = self.session
        s.select(stage=stage)
        layer = s.layer_of_stage(stage)
        if layer is not None:
            self._following_stage = True
            try:
                self.views.stack.select_layer(layer)
            finally:
                self._following_stage = False

    @Slot(int)
    def on_channel_picked(self, channel: int) -> None:
        """A channel of the shown stage; for a stage with a kernel (a Conv2d) the kernel
        editor follows to that output channel's kernel."""
        s = self.session
        s.select(channel=channel)
        if s.model is not None and self.model_weights.path is not None:
            self.views.kernel.set_slice(channel, s.kernel_slice[1])  # that channel's kernel
            return
        layer = s.layer_of_stage(s.stage)
        if layer is not None and layer == s.layer and s.pipeline.layers[layer].op.kernel:
            self.views.kernel.set_slice(channel, s.kernel_slice[1])

    @Slot(int, int, int, int)
    def on_explain(self, stage: int, channel: int, x: int, y: int) -> None:
        """Explain value (x, y) of ``channel`` of ``stage`` (a click, Alt+hover or a step):
        the explain panel follows the session, the stage panel draws its receptive field."""
        self.session.set_explained((stage, channel, y, x))
        self.views.stages.hover_at(stage, channel, x, y)

    # ------------------------------------------------------------------ edit intents
    def _current(self) -> int | None:
        i = self.session.layer
        return i if i is not None and i < len(self.session.pipeline.layers) else None

    @Slot(str)
    def on_add_layer(self, type_name: str) -> None:
        s = self.session
        cur = self._current()
        index = len(s.pipeline.layers) if cur is None else cur + 1
        s.document.insert_layer(index, type_name, in_shape_at(s.pipeline, index, s.image_hw()))

    def on_remove_layer(self) -> None:
        if (i := self._current()) is not None:
            self.session.document.remove_layer(i)

    def on_duplicate_layer(self) -> None:
        if (i := self._current()) is not None:
            self.session.document.duplicate_layer(i)

    def on_move_layer(self, delta: int) -> None:
        if (i := self._current()) is not None:
            self.session.document.move_layer(i, i + delta)

    def on_toggle_layer(self) -> None:
        if (i := self._current()) is not None:
            self.session.document.set_enabled(i, not self.session.pipeline.layers[i].enabled)

    @Slot(str, object)
    def on_arg_edited(self, name: str, value: object) -> None:
        if (i := self._current()) is not None:
            self.session.document.set_arg(i, name, value)

    def _is_layer(self, index: int) -> bool:
        return 0 <= index < len(self.session.pipeline.layers)

    @Slot()
    def _on_session_selection(self) -> None:
        weights = self.model_weights
        if self.session.model is not None and (
                weights.stage != self.session.stage or self.views.kernel.shows_stack_layer
                or weights.module_of_stage(self.session.stage) != weights.path):
            self.model_weights.show()  # another stage's module (or none) in the editor

    @Slot()
    def _on_model_shown(self) -> None:
        """The model view opened or closed: the form and the kernel editor show what is on
        screen."""
        self.on_layer_selected(self.views.stack.current_layer())

    @Slot(int, str, object, float)
    def on_cell_edited(self, layer: int, pname: str, position: object, value: float) -> None:
        """One value of a parameter tensor (a kernel cell, a bias entry) was typed."""
        if self.session.model is not None:  # a model's module: one weight edit
            self.model_weights.edit_cell(pname, tuple(position), value)
        elif self._is_layer(layer):
            self.session.document.set_param_value(layer, pname, tuple(position), value)

    @Slot(int, str, object, str)
    def on_param_edited(self, layer: int, pname: str, value: object, text: str) -> None:
        """A whole parameter tensor was replaced (a preset, a scale, a normalisation)."""
        if self.session.model is not None:
            self.model_weights.edit_param(pname, np.asarray(value, np.float32), text)
        elif self._is_layer(layer):
            self.session.document.set_param(layer, pname, np.asarray(value, np.float32), text)

    @Slot(int, object)
    def on_init_requested(self, layer: int, init: object) -> None:
        if self.session.model is None and self._is_layer(layer) and isinstance(init, dict):
            self.session.document.set_init(layer, init)

    @Slot(object, str, object)
    def on_fit_weights(self, weights: object, text: str, merge_key: object) -> None:
        """A fit reported its current weights: into the document, one undo step per fit
        (its reports share ``merge_key`` and merge)."""
        from ..core.fitting import FitError, with_weights  # torch: a fit has run by now

        s = self.session
        try:
            pipeline = with_weights(s.pipeline, weights)  # type: ignore[arg-type]
        except (FitError, IndexError) as e:
            self.views.window.show_status(f"The fitted weights do not fit the stack: {e}")
            return
        s.document.edit(pipeline, text, merge_key=merge_key, select=s.layer)

    @Slot(int, float, float)
    def on_display_range(self, stage: int, lo: float, hi: float) -> None:
        """The user dragged the colour bar: show ``stage`` over [lo, hi] (no torch run)."""
        self.session.set_display_range(stage, (lo, hi))

    @Slot(int)
    def on_display_range_reset(self, stage: int) -> None:
        self.session.set_display_range(stage, None)

    @Slot(int, int)
    def on_kernel_slice(self, out_channel: int, in_channel: int) -> None:
        self.session.kernel_slice = (out_channel, in_channel)

    @Slot(str)
    def on_input_mode(self, mode: str) -> None:
        note = self.session.document.set_input_mode(mode)
        if note:
            self.views.window.show_status(note)

    @Slot(str)
    def on_normalize_preset(self, preset: str) -> None:
        self.session.document.set_input_normalize(preset)

    @Slot(str)
    def on_device(self, device: str) -> None:
        self.session.set_device(device)
        self._last_run_key = None
        self.submit()

    @Slot(object)
    def on_render_options(self, options: RenderOptions) -> None:
        """Normalisation, colormap or bins changed: redraw the last results if they are
        still what the stack computes, else run."""
        s = self.session
        s.set_render_options(options)
        if (not self.runner.busy and self._last_run_key is not None
                and self._last_run_key == self._run_key(s.preview)
                and self._run_kind != "full"):
            self.submit(render_only=True)
        else:
            self.submit()

    def set_preview_max(self, size: int) -> None:
        s = self.session
        s.set_preview_max(size)
        if s.loaded is not None:
            self._show_preview_size()
            self.revalidate()
            self.submit()

    def set_memory_budget(self, gb: int) -> None:
        self.session.memory_budget_gb = int(gb)
        self.submit()

    @Slot()
    def _on_shown_changed(self) -> None:
        """The worker draws in full what the window now shows (from its kept results)."""
        shown = self.session.shown_stages()
        if shown != self.runner.shown:
            self.runner.show(shown)

    # ------------------------------------------------------------------ running
    def _run_key(self, image: Any) -> tuple:
        return (id(self.session.pipeline), id(image), self.session.device, self.session.model)

    # ------------------------------------------------------------------ torchvision models
    def on_open_model(self, spec: Any) -> None:
        """Show the torchvision model ``spec`` (core.models.ModelSpec) on the image: the
        worker opens it (building takes seconds for the large ones) and runs it; any edit of
        the stack brings the stack back."""
        s = self.session
        parked = s.parked_model
        if parked is not None and parked[0].opened_as == spec and s.model is None:
            spec, saved = parked  # the model the stack replaced, with its edits and history
            self.views.window.hide_banner()
        else:
            if s.weight_edits_unsaved and not self.views.window.settle_model_edits(
                    f"open {spec.name}"):
                return
            s.model_undo.clear()  # the new model's weights start a history of their own
            saved = spec.edits
        s.parked_model = None
        s.model_saved_edits = saved
        s.set_model(spec)
        s.results.clear()
        s.display_ranges.clear()
        s.select(stage=0, channel=0)
        s.resultsChanged.emit()
        self._last_run_key = None
        self.views.window.show_status(f"Opening {spec.text()}…")
        self._opening_model = spec
        self.submit()

    def _submit_model(self, image: Any, render_only: bool, full: bool) -> int | None:
        s = self.session
        s.set_stale(None)
        self._run_kind = "full" if full else "render" if render_only else "preview"
        self._submitted_key = self._run_key(image)
        pipeline = Pipeline(InputSpec("rgb"))  # the photo in; the model does the rest
        request = RunRequest(pipeline, image.image, s.render_options, s.device, render_only,
                             memory_budget=s.memory_budget_gb * 1024**3, model=s.model,
                             shown=s.shown_stages())
        self._contexts = {self.runner.generation + 1: (pipeline, image)}
        return self.runner.submit(request)

    def submit(self, *, render_only: bool = False, full: bool = False) -> int | None:
        """Hand the current snapshot to the worker (the newest request wins)."""
        s = self.session
        if self.closing:
            return None
        image = s.loaded if full else s.preview
        if image is None:
            return None
        if s.model is not None:
            return self._submit_model(image, render_only, full)
        validation = s.validation
        if full:  # the full image's shapes decide, not the preview's (a 20000 x 20 strip)
            validation = validate(s.pipeline, s.image_hw(full=True))
        if validation is None or not validation.ok:
            err = validation.error if validation else "no pipeline"
            self.views.window.set_progress("⚠ not run", f"{err}\nThe pictures are from the "
                                                        f"last stack that ran.")
            self.views.window.show_status(f"{NOT_RUN}{err}", 15000)
            s.set_stale(err)
            return None
        if s.stale_reason is not None:
            self.views.window.clear_status(NOT_RUN)  # it runs again
        s.set_stale(None)
        if not full and self._showing_full:
            self._showing_full = False  # back to editing the preview
            self._show_preview_size()
        self._run_kind = "full" if full else "render" if render_only else "preview"
        self._submitted_key = self._run_key(image)
        request = RunRequest(s.pipeline, image.image, s.render_options, s.device, render_only,
                             memory_budget=s.memory_budget_gb * 1024**3,
                             shown=s.shown_stages())
        # Known before submitting: a synchronous runner starts the run inside submit().
        self._contexts = {self.runner.generation + 1: (s.pipeline, image)}
        return self.runner.submit(request)

    def on_run_or_stop(self) -> None:
        if self.runner.busy:
            self.on_stop()
        else:
            self._last_run_key = None
            self.submit()

    def on_stop(self) -> None:
        if self.runner.busy:
            self.runner.cancel()
            self.views.window.set_progress("stopped")
            self.views.window.show_status("Stopped; the stages computed so far stay on screen")

    def on_run_full_size(self) -> None:
        s = self.session
        if s.loaded is None:
            return
        if s.preview is not None and s.preview.size == s.loaded.size:
            self.views.window.show_status("The image is already run at full size")
            self.submit()
            return
        check = validate(s.pipeline, s.image_hw(full=True))
        if not check.ok:
            self.views.window.show_error(f"Cannot run at full size: {check.error}")
            return
        self.views.window.show_status(f"Running the full {size_text(s.loaded.size)} image…")
        self.submit(full=True)

    # ------------------------------------------------------------------ worker events
    @Slot(object)
    def _on_runner_started(self, generation: object) -> None:
        self._run_errors_now = {}
        self._run_names = {}
        context = self._contexts.pop(int(generation), None)  # type: ignore[call-overload]
        if context is not None:
            self.session.begin_run(*context)
        self.views.window.set_progress("running…")

    @Slot(object)
    def _on_runner_stage(self, view: StageView) -> None:
        r = view.result
        self._run_names[r.index] = r.name
        if r.error and r.layer_index >= 0:
            self._run_errors_now[r.layer_index] = r.error
        self.session.put_stage(view)
        total = ("" if self.session.model is not None
                 else f"/{len(self.session.pipeline.enabled_layers())}")
        prefix = "full size · " if self._run_kind == "full" else ""
        self.views.window.set_progress(f"{prefix}input" if r.index == 0 else
                                       f"{prefix}stage {r.index}{total}: {r.name}")

    @Slot(object)
    def _on_runner_finished(self, summary: RunSummary) -> None:
        s = self.session
        s.end_run(summary, self._run_errors_now)
        self._on_shown_changed()  # the run's end may have moved the selection
        refused = bool(summary.error) and summary.stages == 0
        w = self.views.window
        if refused and s.model is not None:  # the model could not be opened: the stack stays
            s.set_model(None)
            w.show_error(f"Could not open the model: {summary.error}")
            w.set_progress("⚠ error", summary.error or "")
            self._last_run_key = None
            self.submit()
            return
        if not summary.cancelled and not refused and s.model is not None \
                and s.model == self._opening_model and not summary.error:
            self._opening_model = None
            # as the timings count them: the input is not one of the model's stages
            w.show_status(f"Opened {s.model.text()}: {summary.stages - 1} stages")
        if not summary.cancelled and not refused:
            self.views.stack.set_run_errors(s.run_errors)
            self._update_form_status()
            self._last_run_key = self._submitted_key
            if self._run_kind == "full":
                self._show_full_size()
        if summary.error and not self._run_errors_now:
            w.show_error(f"The run failed: {summary.error}")
        elif summary.error:
            w.show_status(summary.error, 10000)
        w.set_progress("stopped" if summary.cancelled else "⚠ error" if summary.error else "",
                       summary.error or "")
        self._show_timings(summary)

    def _show_full_size(self) -> None:
        """The full-size run is on screen: the list shows its shapes, the status bar says so."""
        s = self.session
        self._showing_full = True
        self.views.stack.refresh(validate(s.pipeline, s.image_hw(full=True)), None,
                                 s.run_errors)
        w, h = s.loaded.size
        self.views.window.set_preview_text(
            f"showing full size {w}×{h}",
            "These pictures are of the whole image; the next edit runs the "
            f"{s.preview_max}-pixel preview again.")

    def _show_timings(self, summary: RunSummary) -> None:
        parts = []
        for idx, secs in enumerate(summary.timings):
            if idx == 0:
                continue
            name = self._run_names.get(idx, f"stage {idx}")
            parts.append(f"{name} {secs * 1000:.1f}" if secs > 0 else f"{name} cached")
        layers = max(0, summary.stages - 1)
        head = (f"{summary.device} · {layers} stage{'s' if layers != 1 else ''} · "
                f"{summary.total_seconds * 1000:.1f} ms")
        full = head + (f" ({', '.join(parts)})" if parts else "")
        short = head + (f" ({', '.join(parts[:4])}{', …' if len(parts) > 4 else ''})"
                        if parts else "")
        self.views.window.set_timings(short, full + "\nper-stage times in ms; 'cached': "
                                      "unchanged since the last run, not recomputed")

    @Slot(bool)
    def _on_runner_busy(self, busy: bool) -> None:
        self.views.window.set_busy(busy)

    def shutdown(self) -> None:
        """Stop listening and join the worker (the window is closing)."""
        self.closing = True
        doc = self.session.document
        doc.changed.disconnect(self._on_document_changed)
        doc.pathChanged.disconnect(self._update_title)
        # The undo stack says it is clean again while it is destroyed, after the window.
        doc.undo_stack.cleanChanged.disconnect(self._update_title)
        self.runner.shutdown()

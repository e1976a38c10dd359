"""Runs the engine off the GUI thread (QtCore only, no widgets).

The GUI thread hands ``RunController.submit`` an immutable snapshot (pipeline specs + image)
and gets a generation number back. The worker runs the engine generator, polls a cancel flag
between stages and emits ``StageView`` objects tagged with their generation; the controller
forwards only those of the newest generation. Edits are coalesced without a fixed delay: when
idle an edit runs at once; while busy only the latest pending request is kept and the running
one is cancelled at its next stage boundary (or between the passes of its statistics). A lone
edit made once the GUI has taken every picture of the last run is handed to the worker, which
runs it as soon as that run ends, without waiting for the GUI thread to hear of the end; a
stream of edits is still started by the GUI thread, about one run per turn of its event loop.

Only what the window shows is drawn in full (``core.stage_draw``): the stages in the request's
``shown`` set get their pictures, exact values and statistics, every other stage a thumbnail
from a downsampled tensor. When the selection moves, ``RunController.show`` says so and the
worker draws the newly shown stages from the results it keeps (no torch run, no delay).

torch is imported by the worker thread, not with this module: the window paints its first
picture while torch loads (``RunController.torchLoaded`` says when it is there).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from .jobs import JobOutcome, JobRunner, join_thread  # noqa: F401 - the first two from here too
from .run_data import (  # noqa: F401 - the run's data, imported from here too
    RenderOptions,
    RunRequest,
    RunSummary,
    StageView,
    TorchInfo,
    configure_threads,
    load_torch,
)

if TYPE_CHECKING:
    import torch

    from .core.engine import Engine, StageResult


class PipelineWorker(QObject):
    """Lives in the worker thread. Not used directly by widgets: see ``RunController``."""

    stageReady = Signal(object)  # StageView (its histograms and statistics may follow)
    statsReady = Signal(object)  # StageView: the same stage with them
    viewReady = Signal(object)  # StageView: the full view of a stage that had a thumbnail
    drawFinished = Signal()  # draw_shown is done
    runFinished = Signal(object)  # RunSummary
    torchLoaded = Signal(object)  # TorchInfo

    def __init__(self) -> None:
        super().__init__()
        self.torch_info: TorchInfo | None = None
        self.engine: Engine | None = None
        self.latest_generation = 0  # written by the GUI thread; an int store is atomic
        # A lone edit made once the GUI has taken every picture of the run in progress (only
        # its statistics are left) is handed here and run as soon as that run ends, without
        # waiting for the GUI thread (busy painting those pictures) to start it.
        self._lock = threading.Lock()
        self._next: RunRequest | None = None
        self.taken: tuple[int, int] | None = None  # the last stage the GUI took (GUI thread)
        self._sent: tuple[int, int] | None = None  # the last stage sent
        self._in_run = False  # between a run's start and its end's look for a handed one
        self.numbers = True  # histograms and statistics of the shown stages, after the pixels
        self._tensor_cache: tuple[tuple, torch.Tensor] | None = None
        self._last_results: list[StageResult] = []
        self._device_choice = "auto"
        # stage index -> (output tensor, options, view): a stage the engine served from its
        # cache is the same tensor object, so its pictures need not be drawn again.
        self._drawn: dict[int, tuple[torch.Tensor, RenderOptions, StageView]] = {}
        self._model: tuple[tuple, Any] | None = None  # (spec, budget, device) -> OpenedModel
        # The stages the window shows (None: all); written by the GUI thread, read at each
        # stage, so a run already going draws a stage picked meanwhile.
        self.shown: frozenset[int] | None = None

    def _cancelled(self, generation: int) -> bool:
        return generation != self.latest_generation

    @Slot(bool)
    def load(self, set_threads: bool = False) -> None:
        """Import torch (once); the first thing the worker thread does."""
        if self.torch_info is None:
            self.torch_info = load_torch(set_threads)
            self.torchLoaded.emit(self.torch_info)

    def _input_tensor(self, request: RunRequest) -> torch.Tensor:
        import torch

        from .core.imageio import to_tensor

        image = request.image
        if isinstance(image, torch.Tensor):
            return image
        key = (id(image), request.pipeline.input.mode)
        if self._tensor_cache and self._tensor_cache[0] == key:
            return self._tensor_cache[1]
        tensor = to_tensor(image, request.pipeline.input.mode)
        self._tensor_cache = (key, tensor)
        self._tensor_image = image  # keeps id(image) from being reused while cached
        return tensor

    def hand(self, request: RunRequest) -> str | None:
        """(GUI thread) Take ``request`` as the next run if the GUI has taken all of the
        last run's pictures and nothing else waits: "queued" (it runs as soon as the run in
        progress ends), "idle" (that run has ended: the caller sends it now), else None."""
        with self._lock:
            if self._next is not None or self.taken != self._sent:
                return None
            if not self._in_run:
                self._in_run = True  # claimed: nothing else is handed until it runs
                return "idle"
            self._next = request
            return "queued"

    def take_back(self) -> bool:
        """(GUI thread) Withdraw the handed request; False when it already runs."""
        with self._lock:
            queued, self._next = self._next is not None, None
            return queued

    @Slot(object)
    def run(self, request: RunRequest) -> None:
        """Run ``request``, then the request handed meanwhile, if any."""
        with self._lock:
            self._in_run = True
        while request is not None:  # (a run the GUI sent while idle comes in here too)
            summary = self._run(request)
            with self._lock:  # nothing is handed once this says the run is over
                request, self._next = self._next, None
                self._in_run = request is not None
            self.runFinished.emit(summary)
        # Once the first pictures are out, compile the faster pixel kernels for later runs.
        from .core.render_cpu import compile_kernels
        compile_kernels()

    def _run(self, request: RunRequest) -> RunSummary:
        self.load()  # normally done already: RunController.load_torch
        import torch

        from .core.engine import Engine, RunError
        from .core.models import ModelError

        gen = request.generation
        start = time.perf_counter()
        summary = RunSummary(gen, 0, 0.0)
        try:
            if self.engine is None:
                self.engine = Engine(request.device)
            elif request.device != self._device_choice:
                self.engine.set_device(request.device)
            self._device_choice = request.device
            self.engine.memory_budget = request.memory_budget
            summary.device = str(self.engine.device)
            if request.render_only:
                results = self._last_results
            elif request.model is not None:
                results = self._model_results(request, gen)
                summary.classes = tuple(self._model[1].categories)
                summary.model_weights = self._model[1].editable
            else:
                tensor = self._input_tensor(request)
                results = self.engine.run(request.pipeline, tensor,
                                          cancel=lambda: self._cancelled(gen))
            kept: list[StageResult] = []
            later: list[StageView] = []  # pictures shown, histograms and statistics to come
            for result in results:
                if self._cancelled(gen):
                    summary.cancelled = True
                    break
                kept.append(result)
                view = self._view_cached(gen, result, request.options, self._wants_full(result))
                self._sent = (gen, result.index)
                self.stageReady.emit(view)
                if self.numbers and view.rendered is not None and not view.rendered.has_stats:
                    later.append(view)
                summary.stages += 1
                summary.timings.append(result.seconds)
                if result.error:
                    summary.error = result.error
            else:
                summary.cancelled = self._cancelled(gen)
            for view in later:  # the newest edit's pixels never wait for these
                done = None if self._cancelled(gen) else self._with_stats(
                    view, request.options, lambda: self._cancelled(gen))
                if done is None:  # a newer edit came: it does not wait for these numbers
                    summary.cancelled = True
                    break
                self.statsReady.emit(done)
            if not request.render_only:
                self._last_results = kept
            if not summary.cancelled:
                for index in [i for i in self._drawn if i >= summary.stages]:
                    del self._drawn[index]  # stages this stack no longer has
                self._draw_missing()
        except (RunError, ModelError) as e:
            summary.error = str(e)
        except torch.cuda.OutOfMemoryError:
            summary.error = "out of GPU memory; switch the device to CPU or use a smaller image"
            if self.engine is not None:
                self.engine.clear()
        except Exception as e:  # never let the worker thread die: report and carry on
            traceback.print_exc()
            summary.error = f"unexpected error: {type(e).__name__}: {e}"
        summary.total_seconds = time.perf_counter() - start
        return summary

    def _model_results(self, request: RunRequest, gen: int) -> list[StageResult]:
        """The model's stages (opened here, in the worker thread, and kept while the same
        model is asked for)."""
        from .core.model_edits import apply_edits
        from .core.models import open_spec, run_model

        device = self.engine.device
        # Weight edits do not reopen the model: they are put on the opened one (its opened
        # tensors kept, so an undone edit is exact). Every stage is recomputed: in a model
        # with branches the later stages need more than the edited module's output.
        key = (request.model.opened_as, request.memory_budget)
        if self._model is None or self._model[0] != key:
            self._model = None  # free the old model before building the next
            self._model = (key, open_spec(request.model.opened_as, request.memory_budget))
        apply_edits(self._model[1], request.model.edits)
        tensor = self._input_tensor(request)
        return run_model(self._model[1], tensor, cancel=lambda: self._cancelled(gen),
                         device=device)

    def _wants_full(self, result: StageResult) -> bool:
        from .core.stage_draw import needs_full, stage_tensor

        return (result.output is not None
                and needs_full(result.index, stage_tensor(result.output), self.shown))

    def _view_cached(self, gen: int, result: StageResult, options: RenderOptions,
                     full: bool = True) -> StageView:
        """The stage's view; what was drawn of the same tensor with the same options is
        used again (a full view also where a thumbnail would do)."""
        drawn = self._drawn.get(result.index)
        if (drawn is not None and result.output is not None and drawn[0] is result.output
                and drawn[1] == options):
            old = drawn[2]
            view = StageView(gen, result, old.rendered, old.values, old.thumb)
            if full and not old.full:
                view = self._full(view, options)
        else:
            view = self._view(gen, result, options, full)
        if result.output is None:
            self._drawn.pop(result.index, None)
        else:
            self._drawn[result.index] = (result.output, options, view)
        return view

    @Slot()
    def draw_shown(self) -> None:
        """Draw the stages shown now that have only thumbnails (the selection moved)."""
        try:
            self._draw_missing()
        finally:
            self.drawFinished.emit()

    def _draw_missing(self) -> None:
        """Full views of the shown stages that have only thumbnails, from the kept results:
        all their pictures first, then their histograms and statistics; a newer request
        stops it (that run draws what is shown)."""
        asked = self.latest_generation
        shown = [i for i in sorted(self.shown or ()) if i in self._drawn]
        missing = [i for i in shown if not self._drawn[i][2].full]
        # drawn in full, but a Stop cut their numbers (and thumbnail) short
        unfinished = [i for i in shown if self._drawn[i][2].full
                      and not self._drawn[i][2].rendered.has_stats]
        done: list[tuple[StageView, RenderOptions]] = []
        for index in missing:
            if self.latest_generation != asked:
                return
            output, options, thumb_view = self._drawn[index]
            view = self._full(thumb_view, options)
            self._drawn[index] = (output, options, view)
            self.viewReady.emit(view)
            done.append((view, options))
        if not self.numbers:
            return
        done += [(self._drawn[i][2], self._drawn[i][1]) for i in unfinished]
        for view, options in done:
            stats = self._with_stats(view, options, lambda: self.latest_generation != asked)
            if stats is None:
                return
            self.viewReady.emit(stats)

    def _with_stats(self, view: StageView, options: RenderOptions,
                    cancel: Any = None) -> StageView | None:
        """``view`` with its histograms and statistics (as one whole render gives them);
        None when ``cancel()`` said stop before they were done."""
        from .core import render, stage_draw

        result = view.result
        rendered = render.add_stats(view.rendered, self._shown(result), cancel)
        if rendered is None:
            return None
        thumb = view.thumb
        if thumb is None and rendered.vector is None:  # see _full
            thumb = stage_draw.thumbnail_of(rendered)
        done = StageView(view.generation, result, rendered, view.values, thumb)
        self._drawn[result.index] = (result.output, options, done)
        return done

    @staticmethod
    def _shown(result: StageResult) -> torch.Tensor:
        from .core.stage_draw import stage_tensor

        return stage_tensor(result.output)

    @staticmethod
    def _view(gen: int, result: StageResult, options: RenderOptions, full: bool = True
              ) -> StageView:
        from .core import stage_draw

        if result.output is None:
            return StageView(gen, result)
        if full:
            return PipelineWorker._full(StageView(gen, result), options)
        thumb = stage_draw.thumbnail(PipelineWorker._shown(result), options.normalize,
                                     options.colormap)
        return StageView(gen, result, thumb=thumb)

    @staticmethod
    def _full(view: StageView, options: RenderOptions) -> StageView:
        """``view`` with its full view drawn, its thumbnail kept. A new thumbnail is made
        from the pixels where the histograms and statistics came with them; else it comes
        with those (``_with_stats``): the strip waits for it, the pixels do not."""
        from .core import stage_draw

        out = PipelineWorker._shown(view.result)
        rendered, values = stage_draw.full_view(out, options.normalize, options.colormap,
                                                options.bins)
        thumb = view.thumb
        if thumb is None and rendered.vector is None and rendered.has_stats:
            thumb = stage_draw.thumbnail_of(rendered)
        return StageView(view.generation, view.result, rendered, values, thumb)


class RunController(QObject):
    """GUI-side handle: submit snapshots, receive the newest generation's stages."""

    stageReady = Signal(object)  # StageView of the newest generation
    # The same stage again with its histograms and statistics (after all of the run's
    # pictures), where stageReady came without them.
    statsReady = Signal(object)
    # The full view of a stage that came as a thumbnail, once it is shown (pictures first,
    # then again with statistics); of any generation: the session keeps it only for the very
    # thumbnail it holds.
    viewReady = Signal(object)
    runStarted = Signal(object)  # generation
    runFinished = Signal(object)  # RunSummary of the newest generation
    busyChanged = Signal(bool)
    torchLoaded = Signal(object)  # TorchInfo, once torch is imported (before the first run)

    _dispatch = Signal(object)
    _load = Signal(bool)
    _draw = Signal()

    def __init__(self, parent: QObject | None = None, *, synchronous: bool = False,
                 set_threads: bool = False, numbers: bool = True):
        """``numbers=False``: the shown stages' pictures and values only, never their
        histograms and statistics (a runner whose views nobody reads those of)."""
        super().__init__(parent)
        self.synchronous = synchronous
        self.set_threads = set_threads  # leave a core for the GUI when torch loads (the app)
        self.generation = 0
        self.runs_started = 0
        self._busy = False
        self._held = False
        self._pending: RunRequest | None = None
        self._draws = 0  # draw_shown calls in flight
        self._shown_moved = False  # show() was called during the run in flight
        self._closed = False
        # The newest generation the worker is bound to run (sent, or handed and not taken
        # back): its runFinished is the last one of what is under way.
        self._committed: int | None = None
        self._committed_before: int | None = None  # the one before a handed request
        self._worker = PipelineWorker()
        self._worker.numbers = numbers
        self._thread: QThread | None = None
        if not synchronous:
            self._thread = QThread()
            self._thread.setObjectName("layerlab-worker")
            self._worker.moveToThread(self._thread)
            self._dispatch.connect(self._worker.run)
            self._load.connect(self._worker.load)
            self._draw.connect(self._worker.draw_shown)
            self._thread.start()
        self._worker.stageReady.connect(self._on_stage)
        self._worker.statsReady.connect(self._on_stats)
        self._worker.viewReady.connect(self._on_view)
        self._worker.drawFinished.connect(self._on_drawn)
        self._worker.runFinished.connect(self._on_finished)
        self._worker.torchLoaded.connect(self.torchLoaded)

    @property
    def torch_info(self) -> TorchInfo | None:
        """What the worker found once torch was imported; None before."""
        return self._worker.torch_info

    def load_torch(self) -> None:
        """Start importing torch now (in the worker thread), before the first run needs it;
        ``torchLoaded`` follows. (A run loads it too, if nobody asked before.)"""
        if self.synchronous:
            self._worker.load(self.set_threads)
        else:
            self._load.emit(self.set_threads)

    def hold(self) -> None:
        """Keep submitted runs (the latest) until :meth:`release`: the window paints its
        first picture before the worker's torch import competes with it for the GIL."""
        self._held = True

    def release(self) -> None:
        """Load torch, then start the run that waited, if any."""
        if not self._held:
            return
        self._held = False
        self.load_torch()
        if not self._busy and self._pending is not None:
            request, self._pending = self._pending, None
            self._start(request)

    @property
    def busy(self) -> bool:
        """A run is in flight, or one waits for :meth:`release`."""
        return self._busy or (self._held and self._pending is not None)

    @property
    def shown(self) -> frozenset[int] | None:
        """The stages the worker draws in full now (see ``show``)."""
        return self._worker.shown

    @property
    def drawing(self) -> bool:
        """Stages newly shown are being drawn from the kept results."""
        return self._draws > 0

    def show(self, stages: frozenset[int] | None) -> None:
        """The window now shows ``stages`` (see ``RunRequest.shown``): a run in flight draws
        them as it goes; otherwise the worker draws those it has only thumbnails of."""
        self._worker.shown = stages
        if not self._busy:
            self._request_draw()
        else:  # the run may be past its last look at them: check once it ends
            self._shown_moved = True

    def _request_draw(self) -> None:
        self._draws += 1
        if self.synchronous:
            self._worker.draw_shown()
        else:
            self._draw.emit()

    @Slot()
    def _on_drawn(self) -> None:
        self._draws -= 1

    def submit(self, request: RunRequest) -> int:
        """Queue ``request`` (latest wins); returns its generation."""
        self.generation += 1
        request = replace(request, generation=self.generation)
        self._worker.latest_generation = self.generation
        self._worker.shown = request.shown
        if self._busy or self._held:
            if self._held and not self.busy:
                self.busyChanged.emit(True)  # it waits, but it is on its way
            if self._worker.take_back():  # a newer edit: the handed one never runs
                self._committed = self._committed_before
                self.runs_started -= 1  # (announced, never run)
            handed = (self._busy and not self._held and self._pending is None
                      and self._worker.hand(request))
            if handed:
                self._committed_before, self._committed = self._committed, request.generation
                self.runs_started += 1
                self.runStarted.emit(request.generation)
                if handed == "idle":  # the worker ended its run; its runFinished is on its way
                    if self.synchronous:
                        self._worker.run(request)
                    else:
                        self._dispatch.emit(request)
            else:
                self._pending = request  # replaces any older pending request
        else:
            self._start(request)
        return self.generation

    def _start(self, request: RunRequest) -> None:
        self._busy = True
        self._committed = request.generation
        self.runs_started += 1
        self.busyChanged.emit(True)
        self.runStarted.emit(request.generation)
        if self.synchronous:
            self._worker.run(request)
        else:
            self._dispatch.emit(request)

    @Slot(object)
    def _on_stage(self, view: StageView) -> None:
        self._worker.taken = (view.generation, view.result.index)
        if view.generation == self.generation:
            self.stageReady.emit(view)

    @Slot(object)
    def _on_view(self, view: StageView) -> None:
        if not self._closed:  # drawn before the window closed: nobody to show it to
            self.viewReady.emit(view)

    @Slot(object)
    def _on_stats(self, view: StageView) -> None:
        if view.generation == self.generation:
            self.statsReady.emit(view)

    @Slot(object)
    def _on_finished(self, summary: RunSummary) -> None:
        if summary.generation != self._committed:
            return  # the worker goes on with a request handed to it
        self._busy = False
        if summary.generation == self.generation:
            self.runFinished.emit(summary)
        if self._pending is not None:
            request, self._pending = self._pending, None
            self._start(request)
        else:
            self.busyChanged.emit(False)
            if summary.cancelled or self._shown_moved:  # a stage picked meanwhile
                self._request_draw()
        self._shown_moved = False

    def cancel(self) -> None:
        """Stop the current run at its next stage boundary; results so far stay."""
        waited = self._held and self._pending is not None and not self._busy
        self._pending = None
        if self._worker.take_back():
            self._committed = self._committed_before
        self.generation += 1
        self._worker.latest_generation = self.generation
        if waited:
            self.busyChanged.emit(False)  # the held run will not come

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel and join the worker thread (call from closeEvent)."""
        self._closed = True
        self.cancel()
        if self._thread is not None and self._thread.isRunning():
            self._thread.quit()
            join_thread(self._thread, timeout_ms)
        render_cpu = sys.modules.get("layerlab.core.render_cpu")  # (never imports torch here)
        if render_cpu is not None:
            render_cpu.finish_compiling(timeout_ms / 1000)

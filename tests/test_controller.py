"""The controller against fake views, with no window: intents become edits and runs, worker
events become the session's results, and the views are told what to show."""

from __future__ import annotations

from unittest.mock import MagicMock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerlab.core.engine import Engine
from layerlab.core.imageio import from_array, to_tensor
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.qt.controller import Controller, Views
from layerlab.qt.kernel_editor import KernelEditor
from layerlab.qt.layer_stack import LayerStackWidget
from layerlab.qt.main_window import MainWindow
from layerlab.qt.param_form import ParamForm
from layerlab.qt.session import Session
from layerlab.worker import RenderOptions, RunController

SHARPEN = np.full((1, 1, 3, 3), -1 / 9, dtype=np.float32)
SHARPEN[0, 0, 1, 1] = 1.0


def gray_photo(h: int = 40, w: int = 56) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 5) % 256).astype(np.uint8)


def sharpen_stack() -> Pipeline:
    conv = new_layer("Conv2d", (1, 8, 8), kernel_size=3, padding=1, bias=False)
    conv = conv.with_param("weight", SHARPEN)
    return Pipeline(InputSpec("gray"), (conv, new_layer("ReLU"),
                                        new_layer("MaxPool2d", kernel_size=2)))


class Rig:
    """A session and a controller with fake views and a synchronous runner."""

    def __init__(self, qtbot):
        self.session = Session()
        self.runner = RunController(synchronous=True)
        self.window = MagicMock(spec=MainWindow)
        self.stack = MagicMock(spec=LayerStackWidget)
        self.form = MagicMock(spec=ParamForm)
        self.kernel = MagicMock(spec=KernelEditor)
        self.stack.current_layer.side_effect = lambda: self.session.layer
        self.controller = Controller(self.session, self.runner, Views(
            window=self.window, stack=self.stack, form=self.form, kernel=self.kernel))
        self.session.document.reset(sharpen_stack(), None)
        self.session.set_image(from_array(gray_photo(), "photo"))
        self.controller.image_opened()

    def full(self, stage: int):
        """Stage ``stage`` picked, so drawn in full (the synchronous runner draws it at once)."""
        self.session.select(stage=stage)
        view = self.session.results[stage]
        assert view.full
        return view

    def torch_stages(self) -> list[np.ndarray]:
        """Every stage of the document's stack, from the engine run directly (NCHW)."""
        x = to_tensor(self.session.preview.image, "gray")
        results = Engine("cpu", channels_last=False).run_all(self.session.pipeline, x)
        return [r.output[0].numpy() for r in results]


@pytest.fixture
def rig(qtbot):
    r = Rig(qtbot)
    yield r
    r.controller.shutdown()


def test_an_opened_image_runs_and_every_stage_is_torchs(rig):
    s = rig.session
    assert sorted(s.results) == [0, 1, 2, 3]
    x = torch.from_numpy(gray_photo().astype(np.float32) / 255)[None, None]
    conv = F.conv2d(x, torch.from_numpy(SHARPEN), padding=1)
    np.testing.assert_allclose(rig.full(1).values, conv[0].numpy(), atol=2e-6)
    np.testing.assert_allclose(rig.full(3).values, F.max_pool2d(conv.relu(), 2)[0].numpy(),
                               atol=2e-6)
    assert s.run_pipeline is s.pipeline and s.run_image is s.preview
    rig.window.set_preview_text.assert_called_with("56×40 (full size)",
                                                   "The image is small enough to edit at "
                                                   "full size")
    text, tip = rig.window.set_timings.call_args.args
    assert text.startswith("cpu · 3 stages · ")


def test_a_kernel_cell_intent_is_one_edit_and_reruns(rig):
    s, c = rig.session, rig.controller
    c.on_cell_edited(0, "weight", (0, 0, 1, 1), 2.0)
    c.on_cell_edited(0, "weight", (0, 0, 1, 1), 3.0)  # the same cell again: merged
    assert s.document.undo_stack.count() == 1
    assert s.pipeline.layers[0].params["weight"][0, 0, 1, 1] == np.float32(3.0)
    for got, want in zip((rig.full(i).values for i in range(4)), rig.torch_stages(),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=2e-6)
    s.document.undo_stack.undo()
    np.testing.assert_array_equal(s.pipeline.layers[0].params["weight"], SHARPEN)
    np.testing.assert_allclose(rig.full(1).values, rig.torch_stages()[1], atol=2e-6)


def test_an_impossible_value_is_not_run_and_the_pictures_stay(rig):
    s, c = rig.session, rig.controller
    s.select(layer=0)
    before = s.results[1]
    runs = rig.runner.runs_started
    c.on_arg_edited("in_channels", 3)
    assert rig.runner.runs_started == runs
    assert s.results[1] is before
    assert not s.validation.ok and "in_channels is 3" in s.validation.error
    rig.window.set_progress.assert_called_with("⚠ not run", s.validation.error +
                                               "\nThe pictures are from the last stack that "
                                               "ran.")
    error, field, _ = rig.form.show_status.call_args.args
    assert field == "in_channels" and "in_channels is 3 but the input has 1 channel" in error
    assert s.stale_reason == s.validation.error  # the pictures are marked as old
    c.on_arg_edited("in_channels", 1)
    assert s.stale_reason is None and s.results[1] is not before


def test_new_options_redraw_the_last_results_without_torch(rig, monkeypatch):
    s, c = rig.session, rig.controller
    computed = rig.full(1).result
    calls = []
    monkeypatch.setattr(Engine, "run", lambda *a, **k: calls.append(a) or iter(()))
    c.on_render_options(RenderOptions("stage", "viridis", 16))
    assert calls == []
    assert s.results[1].result is computed  # the same tensor, drawn again
    assert s.results[1].rendered.colormap == "viridis"
    assert len(s.results[1].rendered.hist_counts) == 16


def test_picking_a_layer_shows_its_stage_and_picking_a_stage_selects_its_layer(rig):
    s, c = rig.session, rig.controller
    c.on_layer_selected(2)
    assert s.layer == 2 and s.stage == 3
    rig.form.set_layer.assert_called_with(2, s.pipeline.layers[2])
    rig.window.set_layer_actions.assert_called_with(2, 3)
    c.on_stage_picked(1)
    assert s.stage == 1
    rig.stack.select_layer.assert_called_with(0)


def test_a_failing_stage_is_reported_beside_its_layer(rig, monkeypatch):
    def broken(self, x):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(torch.nn.ReLU, "forward", broken)
    rig.controller.on_cell_edited(0, "weight", (0, 0, 0, 0), 0.5)  # the ReLU runs again
    s = rig.session
    assert s.run_errors == {1: s.results[2].result.error}
    assert "simulated kernel failure" in s.run_errors[1]
    assert sorted(s.results) == [0, 1, 2]  # the stages after it are gone, those before stay
    rig.stack.set_run_errors.assert_called_with(s.run_errors)
    rig.window.show_status.assert_called_with(s.last_summary.error, 10000)


def test_run_at_full_size_uses_the_whole_image(qtbot):
    rig = Rig(qtbot)
    try:
        big = np.tile(gray_photo(), (30, 30))  # 1200 x 1680: previewed at 1024
        rig.session.set_image(from_array(big, "big"))
        rig.controller.image_opened()
        assert rig.session.results[0].result.shape == (1, 731, 1024)
        rig.controller.on_run_full_size()
        assert rig.session.results[0].result.shape == (1, 1200, 1680)
        assert rig.session.results[3].result.shape == (1, 600, 840)
        rig.window.set_progress.assert_called_with("", "")
        rig.window.set_preview_text.assert_called_with(
            "showing full size 1680×1200", "These pictures are of the whole image; the next "
            "edit runs the 1024-pixel preview again.")
        shown = rig.stack.refresh.call_args.args[0]  # the list shows the full-size shapes
        assert shown.layers[2].shape == (1, 600, 840)
        rig.controller.on_cell_edited(0, "weight", (0, 0, 1, 1), 2.0)  # editing: the preview
        assert rig.session.results[0].result.shape == (1, 731, 1024)
        assert rig.stack.refresh.call_args.args[0].layers[2].shape == (1, 365, 512)
        rig.window.set_preview_text.assert_called_with(
            "preview 1024×731 of 1680×1200", rig.window.set_preview_text.call_args.args[1])
    finally:
        rig.controller.shutdown()


def _same_rendering(a, b) -> None:
    """Every field the views read, equal."""
    for name in ("shape", "mode", "colormap", "grid_origins", "grid_ncols", "padding"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("channels_u8", "grid_u8", "levels", "hist_counts", "hist_edges",
                 "channel_hist"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.stats == b.stats
    for key, column in b.channel_stats.items():
        np.testing.assert_array_equal(a.channel_stats[key], column, err_msg=key)


def test_stages_not_shown_are_thumbnails_until_picked_then_drawn_without_torch(
        rig, monkeypatch):
    from layerlab.core import render

    s = rig.session
    assert s.stage == 0 and s.results[0].full
    for i in (1, 2, 3):  # the strip's thumbnails only: no pictures, values or statistics
        view = s.results[i]
        assert not view.full and view.values is None and view.thumb is not None
    computed = {i: s.results[i].result for i in (1, 2, 3)}
    calls = []
    monkeypatch.setattr(Engine, "run", lambda *a, **k: calls.append(a) or iter(()))
    s.select(stage=3)
    assert calls == []  # drawn from the kept results: no torch run
    assert s.results[3].full and s.results[2].full  # the one before it too (the pointer)
    assert all(s.results[i].result is computed[i] for i in (2, 3))
    assert s.results[3].thumb is not None  # the strip keeps its thumbnail
    # torch's own numbers: a fresh engine (as the worker's) on the same photo, rendered
    x = to_tensor(s.preview.image, "gray")
    monkeypatch.undo()
    torch_out = Engine("cpu").run_all(s.pipeline, x)[3].output
    view = s.results[3]
    np.testing.assert_array_equal(view.values, torch_out[0].numpy())
    _same_rendering(view.rendered, render.render_stage(torch_out[0], "channel", "gray"))
    # a 40 x 56 photo needs no reduction: the thumbnail is the full mosaic itself
    np.testing.assert_array_equal(view.thumb.grid_u8, view.rendered.grid_u8)


def test_after_an_edit_the_thumbnails_follow_the_new_results(rig):
    from layerlab.core import render

    s = rig.session
    before = s.results[2].thumb
    rig.controller.on_cell_edited(0, "weight", (0, 0, 1, 1), 2.0)
    assert s.stage == 0  # the input is shown; the conv, ReLU and pool are thumbnails
    x = to_tensor(s.preview.image, "gray")
    stages = Engine("cpu").run_all(s.pipeline, x)
    for i in (1, 2, 3):
        view = s.results[i]
        assert not view.full and view.thumb is not before
        want = render.render_stage(stages[i].output, "channel", "gray")
        np.testing.assert_array_equal(view.thumb.grid_u8, want.grid_u8)

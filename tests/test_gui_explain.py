"""The explain panel driven by real runs: the numbers it shows against torch called directly."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtWidgets import QApplication

from layerlab.core.edits import materialize
from layerlab.core.imageio import load_image
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.qt.controller import Controller, Views
from layerlab.qt.explain_panel import ExplainPanel
from layerlab.qt.session import Session
from layerlab.qt.stage_panel import StagePanel
from layerlab.qt.text import format_value
from layerlab.worker import RunController

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "resources" / "samples" / "astronaut.jpg"


class Harness:
    """A StagePanel and an ExplainPanel on a session, wired to the controller as the main
    window wires them, with a synchronous runner and no window."""

    def __init__(self, qtbot):
        self.session = Session()
        self.runner = RunController(synchronous=True)
        self.panel = StagePanel(self.session)
        self.explain = ExplainPanel(self.session)
        for w in (self.panel, self.explain):
            qtbot.addWidget(w)
        self.controller = Controller(self.session, self.runner, Views(stages=self.panel))
        self.panel.stagePicked.connect(self.controller.on_stage_picked)
        self.panel.channelPicked.connect(self.controller.on_channel_picked)
        self.panel.explainRequested.connect(self.controller.on_explain)
        self.explain.explainRequested.connect(self.controller.on_explain)
        self.panel.resize(1000, 600)
        self.explain.resize(420, 700)
        for w in (self.panel, self.explain):
            w.show()
            qtbot.waitExposed(w)

    def run(self, pipeline: Pipeline) -> None:
        self.session.set_device("cpu")
        self.session.document.reset(pipeline, None)
        self.session.set_image(load_image(ASTRONAUT))
        self.controller.image_opened()
        assert all(v.result.ok for v in self.session.results.values())


@pytest.fixture
def harness(qtbot):
    h = Harness(qtbot)
    yield h
    h.explain.set_playing(False)
    h.runner.shutdown()


def astronaut() -> torch.Tensor:
    arr = np.asarray(Image.open(ASTRONAUT).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def conv_stack() -> Pipeline:
    conv = new_layer("Conv2d", (3, 512, 512), out_channels=4, kernel_size=3, stride=2,
                     padding=1, padding_mode="reflect")
    return Pipeline(InputSpec("rgb"), (conv, new_layer("ReLU"),
                                       new_layer("MaxPool2d", (4, 256, 256), kernel_size=2)))


def torch_stages(pipeline: Pipeline) -> list[torch.Tensor]:
    """The stack's stages by torch called directly (no LayerLab module building)."""
    conv = pipeline.layers[0]
    p = {k: torch.from_numpy(np.array(v)) for k, v in materialize(conv).items()}
    x = astronaut()
    with torch.no_grad():
        s1 = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), p["weight"], p["bias"],
                      stride=2)
        s2 = torch.relu(s1)
        s3 = F.max_pool2d(s2, 2)
    return [x[0], s1[0], s2[0], s3[0]]


def test_explaining_a_conv_value_shows_torchs_number(harness):
    pipe = conv_stack()
    harness.run(pipe)
    want = torch_stages(harness.session.pipeline)
    harness.controller.on_explain(1, 2, 100, 37)
    s, e = harness.session, harness.explain.explanation
    assert s.explained == (1, 2, 37, 100)
    value = float(want[1][2, 37, 100])
    assert e is not None and e.kind == "conv"
    assert e.value == value == harness.explain.shown_value
    assert abs(e.total - value) <= 1e-5 * (1 + abs(value))
    assert format_value(value) in harness.explain.check.text()
    assert e.formula in harness.explain.formula.text()
    # per-channel rows: three input channels, then the bias; the first one's grids shown
    terms = [harness.explain.terms.item(r, 0).text() for r in range(4)]
    assert terms == ["ch 0", "ch 1", "ch 2", "bias"]
    patch = F.pad(astronaut(), (1, 1, 1, 1), mode="reflect")[0, :, 74:77, 200:203].double()
    grid = harness.explain.grid_boxes[0][1]
    assert float(grid.item(1, 2).toolTip()) == float(patch[0, 1, 2])
    harness.explain._on_term_clicked(2, 0)  # open input channel 2
    assert float(grid.item(0, 0).toolTip()) == float(patch[2, 0, 0])
    products = harness.explain.grid_boxes[2][1]
    kernel = materialize(harness.session.pipeline.layers[0])["weight"][2, 2]
    assert float(products.item(2, 1).toolTip()) == float(patch[2, 2, 1]) * float(kernel[2, 1])
    # the stage panel draws the value's receptive field on the input
    info = harness.panel.last_hover()
    assert (info.stage, info.channel, info.x, info.y) == (1, 2, 100, 37)
    assert info.input_window is not None and info.input_window.x0 == 199


def test_pool_and_activation_values(harness):
    harness.run(conv_stack())
    want = torch_stages(harness.session.pipeline)
    harness.controller.on_explain(3, 1, 20, 30)
    e = harness.explain.explanation
    assert e.kind == "pool" and e.value == float(want[3][1, 30, 20]) == e.total
    harness.controller.on_explain(2, 0, 5, 6)
    e = harness.explain.explanation
    assert e.kind == "activation" and e.value == float(want[2][0, 6, 5])
    assert e.details["x"] == float(want[1][0, 6, 5])
    assert not harness.explain.plot.isHidden()


def test_step_mode_walks_x_then_y(harness, qtbot):
    harness.run(conv_stack())
    s, panel = harness.session, harness.explain
    harness.controller.on_explain(1, 0, 254, 3)
    panel.next_button.click()
    assert s.explained == (1, 0, 3, 255)
    panel.next_button.click()
    assert s.explained == (1, 0, 4, 0)  # the next row
    panel.prev_button.click()
    assert s.explained == (1, 0, 3, 255)
    want = torch_stages(s.pipeline)[1]
    assert panel.explanation.value == float(want[0, 3, 255])
    assert harness.panel.last_hover().x == 255
    panel.speed.setValue(30)
    panel.play_button.click()
    assert panel.timer.isActive() and panel.play_button.text() == "Pause"
    qtbot.waitUntil(lambda: s.explained[1:] >= (0, 4, 2), timeout=5000)
    panel.play_button.click()
    assert not panel.timer.isActive()
    y, x = s.explained[2:]
    assert panel.explanation.value == float(want[0, y, x])


def test_hints_and_out_of_range(harness):
    assert "Click a value" in harness.explain.title.text()
    harness.run(conv_stack())
    harness.controller.on_explain(0, 0, 3, 3)
    assert "input image" in harness.explain.title.text()
    harness.controller.on_explain(3, 0, 500, 3)
    assert harness.explain.explanation is None and "outside" in harness.explain.title.text()


class _Click:
    """A pyqtgraph mouse click, as the scene delivers it."""

    def __init__(self, pos, modifiers=Qt.KeyboardModifier.NoModifier):
        self._pos, self._mods = pos, modifiers

    def button(self):
        return Qt.MouseButton.LeftButton

    def scenePos(self):  # noqa: N802 (pyqtgraph's name)
        return self._pos

    def modifiers(self):
        return self._mods


def test_clicks_in_the_channel_view_and_alt_click_in_the_grid(harness, qtbot):
    harness.run(conv_stack())
    panel = harness.panel
    harness.controller.on_stage_picked(1)
    panel.select_channel(3, large=True)  # the one-channel view of channel 3
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.channel_page)
    pos = panel.channel_page.right_vb.mapViewToScene(QPointF(40.5, 12.5))
    panel._on_channel_clicked(_Click(pos))
    assert harness.session.explained == (1, 3, 12, 40)
    want = torch_stages(harness.session.pipeline)[1]
    assert harness.explain.explanation.value == float(want[3, 12, 40])
    # the box follows the mouse, and comes back to the explained value when it leaves
    rf = panel.channel_page.rf_box
    assert rf.rect() == QRectF(79, 23, 3, 3)  # stride 2, padding 1, kernel 3
    panel.hover_at(1, 3, 100, 100)
    assert rf.rect() == QRectF(199, 199, 3, 3)
    QApplication.sendEvent(panel.channel_page.glw.viewport(), QEvent(QEvent.Type.Leave))
    assert rf.rect() == QRectF(79, 23, 3, 3) and rf.isVisible()
    # the grid: a plain click picks a channel, Alt+click explains the value under it
    panel._on_mode_button(True)
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.grid_page)
    grid = panel.grid_page
    pos = grid.vb.mapViewToScene(grid.view_point(1, 7, 9))
    panel._on_grid_clicked(_Click(pos, Qt.KeyboardModifier.AltModifier))
    assert harness.session.explained == (1, 1, 9, 7)
    assert harness.explain.explanation.value == float(want[1, 9, 7])
    panel._on_grid_clicked(_Click(pos))
    assert harness.session.explained == (1, 1, 9, 7) and harness.session.channel == 1


def test_alt_hover_explains_what_is_under_the_mouse(harness, qtbot, monkeypatch):
    from layerlab.qt import stage_pointer as module  # where the pointer reads the keys

    harness.run(conv_stack())
    panel = harness.panel
    harness.controller.on_stage_picked(1)
    panel.select_channel(0, large=True)
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.channel_page)
    pos = panel.channel_page.right_vb.mapViewToScene(QPointF(8.5, 3.5))
    panel._on_channel_moved(pos)  # a plain hover explains nothing
    assert harness.session.explained is None

    class AltHeld:
        @staticmethod
        def keyboardModifiers():  # noqa: N802 (Qt's name)
            return Qt.KeyboardModifier.AltModifier

    monkeypatch.setattr(module, "QGuiApplication", AltHeld)
    panel._on_channel_moved(pos)
    assert harness.session.explained == (1, 0, 3, 8)
    assert harness.explain.explanation.value == float(
        torch_stages(harness.session.pipeline)[1][0, 3, 8])


def test_main_window_has_the_dock(main_window, qtbot):
    w = main_window
    assert w.explain_dock.isHidden()
    s = w.session
    w.controller.on_explain(1, 0, 10, 20)  # hidden: nothing computed until it is shown
    assert s.explained == (1, 0, 20, 10) and w.explain_panel.explanation is None
    w.explain_dock.show()  # computed in the window's explain job thread: wait for it
    qtbot.waitUntil(lambda: w.explain_panel.explanation is not None, timeout=10000)
    assert w.explain_panel.explanation.value == float(s.results[1].values[0, 20, 10])
    w.explain_dock.hide()
    w.stage_panel.explainRequested.emit(1, 0, 11, 20)  # a click shows the dock again
    assert s.explained == (1, 0, 20, 11) and not w.explain_dock.isHidden()
    qtbot.waitUntil(lambda: w.explain_panel.explanation.x == 11, timeout=10000)
    layer = s.run_pipeline.layers[s.results[1].result.layer_index]
    x = torch.from_numpy(np.array(s.results[0].values))[None]
    with torch.no_grad():
        direct = F.conv2d(x, torch.from_numpy(np.array(materialize(layer)["weight"])),
                          padding=layer.args["padding"])
    assert w.explain_panel.explanation.value == pytest.approx(float(direct[0, 0, 20, 11]),
                                                              abs=1e-6)
    assert w.explain_dock.toggleViewAction() in w.menuBar().actions()[2].menu().actions()


def test_linear_on_a_vector_stage(harness, qtbot):
    pool = new_layer("AdaptiveAvgPool2d", (3, 512, 512), output_size=4)
    linear = new_layer("Linear", (48,), in_features=48, out_features=5)
    harness.run(Pipeline(InputSpec("rgb"), (pool, new_layer("Flatten"), linear)))
    p = {k: torch.from_numpy(np.array(v)) for k, v in
         materialize(harness.session.pipeline.layers[2]).items()}
    with torch.no_grad():
        vec = F.adaptive_avg_pool2d(astronaut(), 4).flatten(1)
        want = F.linear(vec, p["weight"], p["bias"])[0]
    harness.controller.on_explain(3, 0, 3, 0)  # a vector stage: x is the index
    e = harness.explain.explanation
    assert e.kind == "linear" and e.value == float(want[3]) == harness.explain.shown_value
    assert abs(e.total - e.value) <= 1e-5 * (1 + abs(e.value))
    np.testing.assert_array_equal(e.arrays["inputs"], vec[0].double().numpy())
    assert "index 3" in harness.explain.title.text()
    harness.explain.next_button.click()
    assert harness.session.explained == (3, 0, 0, 4)
    harness.explain.next_button.click()
    assert harness.session.explained == (3, 0, 0, 0)  # wraps around
    # a click on a bar of the chart explains that index
    panel = harness.panel
    harness.controller.on_stage_picked(3)
    qtbot.waitUntil(lambda: panel.stack.currentWidget() is panel.vector_page)
    vb = panel.vector_page.plot.getPlotItem().getViewBox()

    def bar_2():
        return vb.mapViewToScene(QPointF(2.1, vb.viewRect().center().y()))

    qtbot.waitUntil(lambda: vb.sceneBoundingRect().contains(bar_2()))  # laid out
    panel._on_vector_clicked(_Click(bar_2()))
    assert harness.session.explained == (3, 0, 0, 2)
    assert harness.explain.explanation.value == float(want[2])


def test_the_intent_sets_the_session_and_draws_the_box_once(qtbot):
    from unittest.mock import MagicMock

    session, runner = Session(), RunController(synchronous=True)
    stages = MagicMock(spec=StagePanel)
    controller = Controller(session, runner, Views(stages=stages))
    with qtbot.waitSignal(session.explainedChanged):
        controller.on_explain(2, 1, 30, 40)
    assert session.explained == (2, 1, 40, 30)
    stages.hover_at.assert_called_once_with(2, 1, 30, 40)
    with qtbot.assertNotEmitted(session.explainedChanged):
        session.set_explained((2, 1, 40, 30))  # the same position: no signal
    runner.shutdown()

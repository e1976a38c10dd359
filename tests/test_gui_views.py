"""The stage panel driven by real runs: hover values, histograms, export, options, errors."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton

from layerlab.core import export, render
from layerlab.core.engine import Engine
from layerlab.core.imageio import load_image
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline, new_layer
from layerlab.core.receptive import Window
from layerlab.qt.controller import Controller
from layerlab.qt.export_dialog import StageExporter
from layerlab.qt.session import Session
from layerlab.qt.stage_panel import StagePanel
from layerlab.qt.text import format_value
from layerlab.worker import RenderOptions, RunController, RunRequest

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "resources" / "samples" / "camera.png"
ASTRONAUT = ROOT / "resources" / "samples" / "astronaut.jpg"
SEED_SHARPEN = np.full((1, 1, 3, 3), -1 / 9, dtype=np.float32)
SEED_SHARPEN[0, 0, 1, 1] = 1.0


def sharpen_pipeline(*more: LayerSpec) -> Pipeline:
    conv = new_layer("Conv2d", (1, 512, 512), kernel_size=3, padding=1, bias=False)
    conv = LayerSpec(conv.type, conv.args, "sharpen").with_param("weight", SEED_SHARPEN)
    return Pipeline(InputSpec("gray"), (conv, *more))


class Harness:
    """A StagePanel on a session, driven by the controller and a synchronous runner as the
    main window wires them, without a window."""

    def __init__(self, qtbot, *, show: bool = False):
        self.session = Session()
        self.runner = RunController(synchronous=True)
        self.controller = Controller(self.session, self.runner)
        self.panel = StagePanel(self.session)
        qtbot.addWidget(self.panel)
        self.exporter = StageExporter(self.session, self.panel.view_mode, self.panel)
        self.panel.stagePicked.connect(self.controller.on_stage_picked)
        self.panel.channelPicked.connect(self.controller.on_channel_picked)
        self.panel.optionsEdited.connect(self.controller.on_render_options)
        self.panel.rangeEdited.connect(self.controller.on_display_range)
        self.panel.rangeReset.connect(self.controller.on_display_range_reset)
        self.image = None
        self.summaries = []
        self.runner.runFinished.connect(self.summaries.append)
        if show:
            self.panel.resize(1100, 650)
            self.panel.show()
            qtbot.waitExposed(self.panel)

    def run(self, pipeline: Pipeline, image_path: Path = CAMERA, device: str = "cpu"):
        self.image = load_image(image_path)
        self.session.set_device(device)
        self.session.document.reset(pipeline, None)
        self.session.set_image(self.image)
        self.controller.image_opened()
        return self.summaries[-1]

    def run_unchecked(self, pipeline: Pipeline):
        """Run a stack the controller would refuse to run (to see a stage fail at run time)."""
        self.session.begin_run(pipeline, self.image)
        self.runner.submit(RunRequest(pipeline, self.image.image, self.session.render_options,
                                      self.session.device))
        return self.summaries[-1]


@pytest.fixture
def harness(qtbot):
    h = Harness(qtbot)
    yield h
    h.exporter.shutdown()
    h.runner.shutdown()


@pytest.fixture
def shown(qtbot):
    h = Harness(qtbot, show=True)
    yield h
    h.exporter.shutdown()
    h.runner.shutdown()


def camera_tensor() -> torch.Tensor:
    arr = np.asarray(Image.open(CAMERA).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None, None]


# --- hover ---------------------------------------------------------------------------------

def test_hover_value_is_the_engine_value_and_torch_conv2d(harness):
    summary = harness.run(sharpen_pipeline())
    assert summary.error is None and summary.stages == 2
    panel = harness.panel
    engine_out = Engine("cpu").run_all(harness.session.pipeline, camera_tensor())[1].output[0]
    direct = F.conv2d(camera_tensor(), torch.from_numpy(SEED_SHARPEN), padding=1)[0]
    harness.session.select(stage=1)  # the pointer is over the stage shown
    for x, y in [(120, 45), (0, 0), (511, 511), (300, 200)]:
        info = panel.hover_at(1, 0, x, y)
        assert info is not None
        assert info.value == engine_out[0, y, x].item()  # bit for bit what the engine made
        assert info.value == pytest.approx(direct[0, y, x].item(), abs=1e-6)
        # and by hand, in float64, from the kernel definition
        img = camera_tensor()[0, 0].double()
        pad = F.pad(img, (1, 1, 1, 1))
        win = pad[y:y + 3, x:x + 3]
        by_hand = (win.sum() * (-1 / 9) + win[1, 1] * (1 + 1 / 9)).item()
        assert info.value == pytest.approx(by_hand, abs=1e-6)
        assert info.text.startswith(f"stage 1 sharpen \u00b7 ch 0 \u00b7 (x {x}, y {y}) = ")
        assert format_value(info.value) in info.text
        assert np.float32(format_value(info.value)) == info.value  # the text is exact


def test_hover_text_shows_receptive_field_and_status(harness, qtbot):
    pipe = sharpen_pipeline(new_layer("ReLU"), new_layer("MaxPool2d", (1, 512, 512),
                                                         kernel_size=2))
    harness.run(pipe)
    panel = harness.panel
    harness.session.select(stage=3)
    with qtbot.waitSignal(panel.statusMessage) as sig:
        info = panel.hover_at(3, 0, 60, 45)
    assert sig.args[0] == info.text
    assert info.input_window == Window(89, 92, 119, 122)
    assert "from input x 119..122, y 89..92 (4 x 4)" in info.text
    assert panel.overlay.text() == info.text.replace(" \u00b7 from", "\nfrom")


def test_receptive_field_box_on_the_input_view(harness):
    pipe = Pipeline(InputSpec("gray"), (
        new_layer("Conv2d", (1, 512, 512), kernel_size=3, stride=2, padding=2, dilation=2),))
    harness.run(pipe)
    panel = harness.panel
    panel.session.select(stage=1)
    panel.select_channel(0)
    assert panel.view_mode() == "channel"
    info = panel.hover_at(1, 0, 10, 20)
    # window start = out * stride - padding, span = dilation * (k - 1) + 1
    assert info.window == Window(20 * 2 - 2, 20 * 2 - 2 + 4, 10 * 2 - 2, 10 * 2 - 2 + 4)
    box = panel.channel_page.rf_box
    assert box.isVisible()
    assert box.parentItem() is panel.channel_page.left_vb.childGroup  # in input pixels
    assert (box.rect().x(), box.rect().y(), box.rect().width(), box.rect().height()) == \
        (18.0, 38.0, 5.0, 5.0)
    # compare with the stage's input: for stage 1 that is the input again
    panel.controls.compare_box.setCurrentIndex(panel.controls.compare_box.findData(panel.COMPARE_PREVIOUS))
    info = panel.hover_at(1, 0, 0, 0)
    assert info.window == Window(-2, 2, -2, 2) and info.window_stage == 0


def test_real_mouse_move_reads_the_pixel_under_the_cursor(shown, qtbot):
    shown.run(sharpen_pipeline())
    panel = shown.panel
    panel.session.select(stage=1)
    panel.select_channel(0)
    qtbot.wait(50)
    page = panel.channel_page
    scene = page.right_vb.mapViewToScene(QPointF(37.5, 101.5))
    pos = page.glw.mapFromScene(scene)
    # the pixel under that (integer) mouse position
    back = page.right_vb.mapSceneToView(page.glw.mapToScene(pos))
    x, y = int(back.x()), int(back.y())
    assert abs(x - 37) <= 1 and abs(y - 101) <= 1
    messages = []
    panel.statusMessage.connect(messages.append)
    QTest.mouseMove(page.glw.viewport(), QPoint(pos.x() + 1, pos.y()))
    qtbot.wait(60)  # pyqtgraph drops moves that come faster than its rate limit
    QTest.mouseMove(page.glw.viewport(), pos)
    qtbot.waitUntil(lambda: panel.last_hover() is not None
                    and (panel.last_hover().x, panel.last_hover().y) == (x, y), timeout=3000)
    info = panel.last_hover()
    assert info.value == shown.panel.session.results.get(1).values[0, y, x]
    assert messages and messages[-1] == info.text
    assert page.hover_box.isVisible()


def test_grid_hover_and_click_pick_the_channel(shown, qtbot):
    pipe = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 512, 512), out_channels=6,
                                                 kernel_size=3, padding=1),))
    shown.run(pipe, ASTRONAUT)
    panel = shown.panel
    panel.session.select(stage=1)
    assert panel.view_mode() == "grid"
    r = panel.session.results.get(1).rendered
    assert r.num_channels == 6
    page = panel.grid_page
    qtbot.wait(50)
    scene = page.vb.mapViewToScene(page.view_point(4, 200, 150))
    pos = page.glw.mapFromScene(scene)
    back = page.vb.mapSceneToView(page.glw.mapToScene(pos))
    ch, x, y = page.tile_at(back.x(), back.y())
    assert ch == 4 and abs(x - 200) <= 2 and abs(y - 150) <= 2
    QTest.mouseMove(page.glw.viewport(), QPoint(pos.x() + 1, pos.y()))
    qtbot.wait(60)  # pyqtgraph drops moves that come faster than its rate limit
    QTest.mouseMove(page.glw.viewport(), pos)
    qtbot.waitUntil(lambda: panel.last_hover() is not None
                    and panel.last_hover().channel == ch, timeout=3000)
    info = panel.last_hover()
    assert (info.x, info.y) == (x, y)
    assert info.value == panel.session.results.get(1).values[ch, y, x]
    assert panel.colorbar.levels == tuple(r.levels[ch])
    QTest.mouseClick(page.glw.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: panel.view_mode() == "channel", timeout=3000)
    assert panel.session.channel == ch
    assert panel.controls.channel_box.value() == ch


def test_channel_numbers_are_on_the_tiles(harness):
    pipe = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 512, 512), out_channels=5,
                                                 kernel_size=3),))
    harness.run(pipe, ASTRONAUT)
    harness.panel.session.select(stage=1)
    page = harness.panel.grid_page
    r = harness.panel.session.results.get(1).rendered
    texts = [(lab.textItem.toPlainText(), (lab.pos().y(), lab.pos().x()))
             for lab in page.labels[:5]]
    assert texts == [(str(i), tuple(map(float, r.grid_origins[i]))) for i in range(5)]
    assert page.image.image.shape == r.grid_u8.shape
    assert page.image.levels is not None and list(page.image.levels) == [0, 255]


def test_channel_numbers_follow_the_layout_and_only_it(shown, qtbot):
    from layerlab.core import render

    page = shown.panel.grid_page
    shown.panel.stack.setCurrentWidget(page)
    stage = torch.randn(16, 20, 30)
    page.set_rendered(render.render_stage(stage, "channel", stats=False))
    moved = []
    for lab in page.labels[:16]:
        lab.setPos = lambda *a, _m=moved: _m.append(a)  # noqa: B023 (records, per label)
    # new values, same layout (a kernel edit): the labels stay as they are
    page.set_rendered(render.render_stage(stage * 2, "channel", stats=False))
    assert moved == []
    for lab in page.labels[:16]:
        del lab.setPos
    # another layout: 6 channels in 3 columns; the other labels go
    six = render.render_stage(torch.randn(6, 20, 30), "channel", stats=False)
    page.set_rendered(six)
    page.vb.setRange(xRange=(0, 2 * 32), yRange=(0, 20), padding=0)  # tiles wide enough
    qtbot.wait(20)
    shown = [(lab.textItem.toPlainText(), (lab.pos().y(), lab.pos().x()))
             for lab in page.labels if lab.isVisible()]
    assert shown == [(str(i), tuple(map(float, six.grid_origins[i]))) for i in range(6)]


def test_channel_numbers_leave_small_tiles_uncovered(shown, qtbot):
    from layerlab.qt.stage_pages import MIN_LABELLED_TILE

    pipe = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 512, 512), out_channels=64,
                                                 kernel_size=3, stride=8),))
    shown.run(pipe, ASTRONAUT)
    shown.panel.session.select(stage=1)
    page = shown.panel.grid_page
    r = page.rendered
    assert r.num_channels == 64
    th, tw = r.tile_size
    for tiles_across, visible in ((16, False), (2, True)):  # the view as 8 x 8 tiles is wide
        page.vb.setRange(xRange=(0, tiles_across * (tw + r.padding)), yRange=(0, th),
                         padding=0)
        qtbot.wait(20)
        tile_px = tw / page.vb.viewPixelSize()[0]
        assert (tile_px >= MIN_LABELLED_TILE) == visible, tile_px
        assert [lab.isVisible() for lab in page.labels[:64]] == [visible] * 64, tile_px


# --- histogram and statistics -----------------------------------------------------------------

def test_histogram_counts_equal_numpy(harness):
    pipe = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 512, 512), out_channels=4,
                                                 kernel_size=5, stride=2),))
    harness.run(pipe, ASTRONAUT)
    panel = harness.panel
    panel.session.select(stage=1)
    panel.controls.channel_box.setValue(2)
    values = panel.session.results.get(1).values
    counts, ch_counts, edges = panel.histogram.shown_counts()
    want, want_edges = np.histogram(values, bins=64)
    np.testing.assert_array_equal(counts, want)
    np.testing.assert_array_equal(edges, want_edges)
    want_ch, _ = np.histogram(values[2], bins=want_edges)
    np.testing.assert_array_equal(ch_counts, want_ch)
    # the curves drawn hold these counts
    x, y = panel.histogram.stage_curve.getData()
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(x, want_edges)
    _, y = panel.histogram.channel_curve.getData()
    np.testing.assert_array_equal(y, want_ch)
    # log counts changes the drawing only
    panel.histogram.set_log_counts(True)
    _, y = panel.histogram.stage_curve.getData()
    np.testing.assert_allclose(y, np.log10(want + 1.0))
    # only powers of ten are labelled on the log axis (no crowded 2..9 x 10^k labels)
    major, minor = panel.histogram.plot.getPlotItem().getAxis("left")._tickLevels
    decades = int(np.ceil(np.log10(want.max() + 1.0)))
    assert [label for _, label in major] == ["1", "10", "100", "1k", "10k", "100k"][
        : decades + 1]
    assert all(label == "" for _, label in minor)
    text = panel.histogram.stats_label.text()
    st = render.stats(torch.from_numpy(values))
    for key in ("min", "max", "mean", "std"):
        assert f"{st[key]:.6g}" in text
    assert f"{100 * float((values == 0).mean()):.2f} %" in text
    assert f"{float(values[2].max()):.6g}" in text  # the channel column


def test_bins_change_rerenders_without_torch(harness, monkeypatch):
    harness.run(sharpen_pipeline())
    calls = []
    real_run = Engine.run

    def spy(self, *a, **kw):
        calls.append(1)
        return real_run(self, *a, **kw)

    monkeypatch.setattr(Engine, "run", spy)
    harness.panel.session.select(stage=1)
    harness.panel.controls.bins_box.setValue(16)
    counts, _, edges = harness.panel.histogram.shown_counts()
    want, want_edges = np.histogram(harness.panel.session.results.get(1).values, bins=16)
    np.testing.assert_array_equal(counts, want)
    assert calls == []


# --- normalisation, colormap -----------------------------------------------------------------

def test_switching_normalisation_and_colormap_does_not_run_torch(harness, monkeypatch):
    pipe = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 512, 512), out_channels=4,
                                                 kernel_size=3, padding=1),))
    harness.run(pipe, ASTRONAUT)
    panel = harness.panel
    panel.session.select(stage=1)
    calls = []
    real_run = Engine.run

    def spy(self, *a, **kw):
        calls.append(1)
        return real_run(self, *a, **kw)

    monkeypatch.setattr(Engine, "run", spy)
    runs_before = harness.runner.runs_started
    before = panel.grid_page.image.image.copy()
    emitted = []
    panel.optionsEdited.connect(emitted.append)
    panel.controls.normalize_box.setCurrentIndex(panel.controls.normalize_box.findData("symmetric"))
    assert emitted[-1] == RenderOptions("symmetric", "gray", 64)
    assert calls == []
    assert harness.runner.runs_started == runs_before + 1  # one render-only request
    r = panel.session.results.get(1).rendered
    assert r.mode == "symmetric"
    shown = panel.grid_page.image.image
    assert not np.array_equal(shown, before)
    values = panel.session.results.get(1).values
    np.testing.assert_array_equal(shown, render.make_grid(
        render.to_uint8(torch.from_numpy(values), "symmetric")))
    m = float(np.abs(values).max())
    assert panel.colorbar.levels == pytest.approx((-m, m))
    panel.controls.colormap_box.setCurrentIndex(panel.controls.colormap_box.findData("viridis"))
    assert calls == []
    assert panel.session.results.get(1).rendered.colormap == "viridis"
    np.testing.assert_array_equal(panel.grid_page.image.lut, render.colormap_lut("viridis"))
    assert panel.colorbar.colormap == "viridis"
    panel.controls.normalize_box.setCurrentIndex(panel.controls.normalize_box.findData("fixed"))
    assert panel.colorbar.levels == (0.0, 1.0)
    assert calls == []


def test_set_render_options_does_not_emit(harness, qtbot):
    with qtbot.assertNotEmitted(harness.panel.optionsEdited):
        harness.panel.set_render_options(RenderOptions("stage", "magma", 32))
    assert harness.panel.render_options() == RenderOptions("stage", "magma", 32)


# --- shapes and formulas -------------------------------------------------------------------

@pytest.mark.parametrize("args,expected", [
    ({"kernel_size": 3, "padding": 1},
     ["H_out = floor((512 + 2*1 - 1*(3-1) - 1)/1 + 1) = 512",
      "W_out = floor((512 + 2*1 - 1*(3-1) - 1)/1 + 1) = 512"], ),
    ({"kernel_size": 3, "stride": 2, "padding": 2, "dilation": 2},
     ["H_out = floor((512 + 2*2 - 2*(3-1) - 1)/2 + 1) = 256"]),
    ({"kernel_size": [5, 3], "stride": [3, 1], "padding": [0, 4], "dilation": [1, 3]},
     ["H_out = floor((512 + 2*0 - 1*(5-1) - 1)/3 + 1) = 170",
      "W_out = floor((512 + 2*4 - 3*(3-1) - 1)/1 + 1) = 514"]),
])
def test_formula_shows_the_numbers(shown, args, expected, qtbot):
    pipe = Pipeline(InputSpec("gray"), (new_layer("Conv2d", (1, 512, 512), **args),))
    shown.run(pipe)
    panel = shown.panel
    panel.resize(1600, 700)  # room for the whole formula in the header
    qtbot.waitUntil(lambda: panel.header.formula.width() > 700, timeout=3000)
    panel.session.select(stage=1)
    res = panel.session.results.get(1).result
    shown = " ".join(panel.header.formula.text().split())
    for line in expected:
        assert line in res.formula
        assert " ".join(line.split()) in shown
    assert f"<b>{' × '.join(map(str, res.shape))}</b>" in panel.header.shape.text()
    assert panel.strip.label(1) == f"1 conv2d\n{'×'.join(map(str, res.shape))}"  # tight
    # a narrow header keeps one line per axis: the results, the formula whole on hover
    height = panel.header.formula.height()
    panel.header.formula.setFixedWidth(200)  # far too narrow for the whole formula
    qtbot.waitUntil(lambda: panel.header.formula.width() == 200, timeout=3000)
    assert panel.header.formula.text().splitlines() == [
        f"{line.split(' = ')[0]} = {line.rpartition(' = ')[2]}" for line in res.formula.splitlines()]
    assert panel.header.formula.toolTip() == res.formula
    assert panel.header.formula.height() == height


def test_pool_formula(harness):
    harness.run(sharpen_pipeline(new_layer("MaxPool2d", (1, 512, 512), kernel_size=3,
                                           stride=2, padding=1, ceil_mode=True)))
    harness.panel.session.select(stage=2)
    assert "ceil((512 + 2*1 - 1*(3-1) - 1)/2 + 1) = 257" in harness.panel.header.formula.toolTip()


# --- vector stages ---------------------------------------------------------------------------

def vector_pipeline() -> Pipeline:
    return Pipeline(InputSpec("gray", (16, 16)), (
        new_layer("Conv2d", (1, 16, 16), out_channels=2, kernel_size=3),
        new_layer("Flatten", (2, 14, 14)),
        new_layer("Linear", (392,), in_features=392, out_features=10),
    ))


def test_vector_stage_shows_bars_equal_to_values(harness):
    harness.run(vector_pipeline())
    panel = harness.panel
    panel.session.select(stage=3)
    values = panel.session.results.get(3).values
    assert values.shape == (10,)
    assert panel.stack.currentWidget() is panel.vector_page
    np.testing.assert_array_equal(panel.vector_page.bar_heights(), values)
    np.testing.assert_array_equal(panel.vector_page.bars.opts["x"], np.arange(10))
    info = panel.hover_at(3, 0, 7, 0)
    assert info.value == values[7]
    assert info.text.startswith(f"stage 3 linear \u00b7 index 7 = {format_value(values[7])}")
    assert "mixes all 392 values of stage 2" in info.text
    # a flattened stage tells where each value came from
    panel.session.select(stage=2)
    info = panel.hover_at(2, 0, 14 * 14 + 3 * 14 + 5, 0)
    assert "from stage 1 ch 1 (x 5, y 3)" in info.text
    assert info.value == panel.session.results.get(1).values[1, 3, 5]
    assert panel.hover_at(3, 0, 10, 0) is None  # outside
    assert not panel.controls.grid_button.isEnabled()


def test_vector_hover_with_the_mouse(shown, qtbot):
    shown.run(vector_pipeline())
    panel = shown.panel
    panel.session.select(stage=3)
    qtbot.wait(50)
    vb = panel.vector_page.plot.getPlotItem().getViewBox()
    scene = vb.mapViewToScene(QPointF(4.1, 0.0))
    pos = panel.vector_page.plot.mapFromScene(scene)
    QTest.mouseMove(panel.vector_page.plot.viewport(), QPoint(pos.x() + 1, pos.y()))
    qtbot.wait(60)  # pyqtgraph drops moves that come faster than its rate limit
    QTest.mouseMove(panel.vector_page.plot.viewport(), pos)
    qtbot.waitUntil(lambda: panel.last_hover() is not None and panel.last_hover().x == 4,
                    timeout=3000)
    assert panel.last_hover().value == panel.session.results.get(3).values[4]


# --- errors and runs -------------------------------------------------------------------------

def failing_pipeline() -> Pipeline:
    ok = sharpen_pipeline(new_layer("ReLU")).layers
    bad = LayerSpec("Conv2d", new_layer("Conv2d", (3, 8, 8), in_channels=3).args, "wants-rgb")
    return Pipeline(InputSpec("gray"), (*ok, bad, new_layer("ReLU")))


def test_failing_stage_shows_its_error_and_earlier_stages_stay(harness):
    long = sharpen_pipeline(new_layer("ReLU"), new_layer("ReLU"), new_layer("ReLU"))
    harness.run(long)
    panel = harness.panel
    panel.session.select(stage=4)
    assert panel.strip.count() == 5
    summary = harness.run_unchecked(failing_pipeline())
    assert summary.error and "in_channels" in summary.error
    # stage 3 failed: the view shows it in place, red, and the thumbnail is marked
    assert panel.session.stage == 3
    assert panel.stack.currentWidget() is panel.error_page
    assert "in_channels is 3 but the input has 1 channel" in panel.error_page.text()
    assert ERROR_RED in panel.error_page.styleSheet()
    assert panel.strip.is_error(3)
    assert panel.strip.count() == 4  # stage 4 of the older run is gone
    assert panel.banner.isVisibleTo(panel)
    # earlier stages are still there and still work
    for i in (0, 1, 2):
        assert panel.session.results.get(i).rendered is not None
        assert not panel.strip.is_error(i)
    panel.session.select(stage=1)
    assert panel.stack.currentWidget() is panel.grid_page
    assert panel.hover_at(1, 0, 3, 3) is not None


ERROR_RED = "#c62828"


def test_new_run_keeps_old_pictures_until_stages_arrive(harness):
    harness.run(sharpen_pipeline(new_layer("ReLU")))
    panel = harness.panel
    panel.session.select(stage=2)
    old = panel.session.results.get(2)
    harness.session.begin_run(harness.session.pipeline, harness.session.preview)
    assert panel.session.results.get(2) is old
    assert panel.stack.currentWidget() is panel.grid_page
    # a stale result of an older generation is ignored (as the worker thread sends it)
    stale = type(old)(old.generation - 1, old.result, old.rendered, old.values)
    harness.runner._worker.stageReady.emit(stale)
    assert panel.session.results.get(2) is old


def test_run_refused_before_any_stage_keeps_the_pictures(harness):
    harness.run(sharpen_pipeline())
    panel = harness.panel
    gen = harness.runner.generation
    from layerlab.worker import RunSummary
    harness.runner._worker.runFinished.emit(
        RunSummary(gen, 0, 0.0, error="this stack needs about 9 GB"))
    assert panel.session.results.get(1) is not None
    assert panel.banner.text() == "this stack needs about 9 GB"


def test_strip_click_emits_stage_selected(shown, qtbot):
    shown.run(sharpen_pipeline(new_layer("ReLU")))
    panel = shown.panel
    item = panel.strip.item(2)
    rect = panel.strip.visualItemRect(item)
    with qtbot.waitSignal(panel.stagePicked) as sig:
        QTest.mouseClick(panel.strip.viewport(), Qt.MouseButton.LeftButton,
                         pos=rect.center())
    assert sig.args == [2]
    assert panel.session.stage == 2
    with qtbot.assertNotEmitted(panel.stagePicked):
        panel.session.select(stage=1)


def test_results_dropped_show_the_empty_page(harness):
    harness.run(sharpen_pipeline())
    harness.session.results.clear()
    harness.session.resultsChanged.emit()
    assert harness.panel.strip.count() == 0
    assert harness.panel.stack.currentWidget() is harness.panel.empty_page
    assert harness.panel.hover_at(1, 0, 0, 0) is None


# --- export --------------------------------------------------------------------------------

@pytest.mark.parametrize("normalize,colormap,device", [
    ("channel", "gray", "cpu"), ("stage", "viridis", "cpu"), ("symmetric", "coolwarm", "auto")])
def test_exported_pngs_equal_core_export(harness, tmp_path, normalize, colormap, device):
    """With "auto" both the window's run and the export use CUDA where there is one."""
    pipe = Pipeline(InputSpec("rgb"), (
        new_layer("Conv2d", (3, 512, 512), out_channels=3, kernel_size=3, padding=1),
        new_layer("ReLU"), new_layer("MaxPool2d", (3, 512, 512), kernel_size=2)))
    harness.session.set_render_options(RenderOptions(normalize, colormap))
    harness.run(pipe, ASTRONAUT, device)
    panel = harness.panel
    ref = tmp_path / "ref"
    manifest = export.export_run(ASTRONAUT, pipe, ref, device=device, normalize=normalize,
                                 colormap=colormap)
    exporter = harness.exporter
    for stage in (1, 3):
        panel.session.select(stage=stage)
        folder = ref / manifest["stages"][stage]["grid"].split("/")[0]
        out = exporter.save_channel_png(tmp_path / f"ch{stage}.png", channel=2)
        assert out.read_bytes() == (folder / "ch-002.png").read_bytes()
        out = exporter.save_grid_png(tmp_path / f"grid{stage}.png")
        assert out.read_bytes() == (folder / "grid.png").read_bytes()
    # what the view draws is the same pixels: the uint8 channel through the colormap's table
    panel.session.select(stage=3)
    panel.select_channel(2)
    drawn = panel.channel_page.right_image
    np.testing.assert_array_equal(drawn.lut, render.colormap_lut(colormap))
    written = np.asarray(Image.open(folder / "ch-002.png"))
    shown = drawn.image if colormap == "gray" else drawn.lut[drawn.image]
    np.testing.assert_array_equal(shown, written)


def test_export_all_from_the_window_equals_layerlab_export(harness, tmp_path, qtbot):
    pipe = sharpen_pipeline(new_layer("ReLU"), new_layer("Flatten", (1, 512, 512)))
    harness.run(pipe)
    exporter = harness.exporter
    job = exporter.export_all(tmp_path / "win", raw=True)
    assert job is not None
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    assert exporter.last_error is None, exporter.last_error
    ref = tmp_path / "cli"
    export.export_run(CAMERA, pipe, ref, device="auto", raw=True)
    got = json.loads((tmp_path / "win" / "manifest.json").read_text())
    want = json.loads((ref / "manifest.json").read_text())
    assert got == want
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "win")
                           for p in (tmp_path / "win").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "win" / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_cancelled_export_leaves_nothing(harness, tmp_path, qtbot):
    pipe = sharpen_pipeline(*[new_layer("ReLU") for _ in range(6)])
    harness.run(pipe)
    exporter = harness.exporter
    job = exporter.export_all(tmp_path / "out", show_progress=False)
    job.cancel()
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    assert job.was_cancelled or job.manifest is not None
    if job.was_cancelled:
        assert list(tmp_path.iterdir()) == []


def test_cancel_from_the_progress_dialog(harness, tmp_path, qtbot, monkeypatch):
    pipe = sharpen_pipeline(*[new_layer("ReLU") for _ in range(4)])
    harness.run(pipe)
    exporter = harness.exporter
    real = export.export_stage_images

    def slow(*a, **kw):  # a slow disk: the cancel arrives while stages are written
        time.sleep(0.3)
        return real(*a, **kw)

    monkeypatch.setattr(export, "export_stage_images", slow)
    job = exporter.export_all(tmp_path / "out")
    assert exporter.progress is not None
    qtbot.waitUntil(lambda: exporter.progress.value() >= 1, timeout=20000)
    assert "stage" in exporter.progress.labelText()
    exporter.progress.findChild(QPushButton).click()  # the dialog's Cancel button
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    assert job.was_cancelled
    assert list(tmp_path.iterdir()) == []


def test_export_of_an_existing_folder_reports_and_keeps_it(harness, tmp_path, qtbot):
    harness.run(sharpen_pipeline())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    exporter = harness.exporter
    exporter.export_all(tmp_path / "out", show_progress=False)
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    assert "already exists" in exporter.last_error
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_copy_to_clipboard_and_actions(harness):
    harness.run(sharpen_pipeline())
    panel = harness.panel
    actions = harness.exporter.actions()
    assert [a.text() for a in actions] == [
        "Export current channel as PNG\u2026", "Export stage grid as PNG\u2026",
        "Export histogram as CSV\u2026", "Export all stages\u2026", "Copy image to clipboard"]
    assert all(a.isEnabled() for a in actions)
    panel.session.select(stage=1)
    assert harness.exporter.copy_to_clipboard()
    img = QGuiApplication.clipboard().image()
    assert (img.width(), img.height()) == (512, 512)


def test_format_value():
    assert format_value(-0.03125) == "-0.031250"
    assert format_value(0.0) == "0.000000"
    assert format_value(np.float32(1 / 3)) == "0.33333334"
    assert format_value(1e-7) == "1e-07"
    assert format_value(float("nan")) == "nan"
    assert format_value(float("-inf")) == "-inf"
    for v in np.random.default_rng(0).standard_normal(200).astype(np.float32):
        assert np.float32(format_value(v)) == v


def test_no_receptive_field_from_a_pipeline_that_did_not_make_the_pictures(harness):
    harness.run(sharpen_pipeline())
    panel = harness.panel
    harness.session.select(stage=1)
    assert panel.hover_at(1, 0, 5, 5).input_window == Window(4, 6, 4, 6)
    # the user edits the stack (kernel 5, stride 2) but the new run has not arrived yet
    edited = Pipeline(InputSpec("gray"), (new_layer("Conv2d", (1, 512, 512), kernel_size=5,
                                                    stride=2),))
    harness.session.begin_run(edited, harness.image)
    info = panel.hover_at(1, 0, 5, 5)
    assert info.input_window is None and "from input" not in info.text
    assert info.value == panel.session.results.get(1).values[0, 5, 5]


def test_global_stage_says_it_depends_on_the_whole_image(harness):
    harness.run(sharpen_pipeline(new_layer("InstanceNorm2d", (1, 512, 512))))
    harness.session.select(stage=2)
    info = harness.panel.hover_at(2, 0, 10, 10)
    assert info.input_window is None
    assert info.text.endswith("depends on the whole image")
    assert info.overlay_text.endswith("\ndepends on the whole image")


def test_a_wide_photo_in_one_channel_mode_stacks_the_views_and_marks_the_window(shown, qtbot):
    chelsea = ROOT / "resources" / "samples" / "chelsea.jpg"  # 451 x 300: wider than tall
    shown.run(sharpen_pipeline(), chelsea)
    panel = shown.panel
    panel.resize(1000, 900)  # a view about as tall as it is wide, as in the window
    panel.session.select(stage=1)
    panel.select_channel(0)
    page = panel.channel_page
    qtbot.waitUntil(lambda: page.stacked, timeout=3000)
    assert page.glw.ci.getItem(1, 0) is page.right_vb  # below the input, not beside it
    # each image is shown larger than side by side would (half the width each)
    qtbot.waitUntil(lambda: 451 / page.right_vb.viewPixelSize()[0] > page.glw.width() / 2,
                    timeout=3000)
    info = panel.hover_at(1, 0, 100, 80)
    assert info.window == Window(79, 81, 99, 101)
    assert page.rf_box.isVisible()
    # a 3 x 3 window is a few screen pixels: the fixed-size marker shows where it is
    assert page.rf_marker.isVisible()
    (mx,), (my,) = page.rf_marker.getData()
    assert (mx, my) == (100.5, 80.5)


def test_thumbnails_are_drawn_at_the_screens_pixel_ratio(harness):
    from layerlab.qt import stage_strip as stage_pages

    harness.run(sharpen_pipeline())
    view = harness.session.results[0]
    sharp = stage_pages._thumbnail(view, 2.0)
    assert (sharp.width(), sharp.height()) == (192, 128)  # device pixels
    assert sharp.devicePixelRatio() == 2.0
    assert sharp.deviceIndependentSize().toSize() == stage_pages.THUMB
    plain = stage_pages._thumbnail(view, 1.0)
    assert (plain.width(), plain.height()) == (96, 64)
    # the 2x thumbnail holds twice the detail: more distinct grey levels across its middle row
    row2 = {sharp.toImage().pixelColor(x, 64).red() for x in range(32, 160)}
    row1 = {plain.toImage().pixelColor(x, 32).red() for x in range(16, 80)}
    assert len(row2) > len(row1)


def test_dragging_the_colour_bar_sets_a_display_range_for_the_stage(harness, monkeypatch):
    harness.run(sharpen_pipeline(new_layer("ReLU")))
    panel = harness.panel
    panel.session.select(stage=1)
    r = panel.session.results[1].rendered
    lo, hi = (float(v) for v in r.levels[0])
    runs = harness.runner.runs_started
    bar = panel.colorbar.bar
    bar.region.setRegion((63 + 32, 191))  # drag the lower handle up, as the mouse does
    new_lo, new_hi = bar.levels()
    assert lo < new_lo < new_hi and new_hi == pytest.approx(hi, abs=(hi - lo) / 1000)
    assert panel.session.display_ranges[1] == (new_lo, new_hi)
    scale = 255.0 / (hi - lo)
    want = ((new_lo - lo) * scale, (new_hi - lo) * scale)
    np.testing.assert_allclose(panel.grid_page.image.levels, want, rtol=1e-6)
    assert panel.colorbar.levels == (new_lo, new_hi) and panel.colorbar.reset_button.isEnabled()
    assert harness.runner.runs_started == runs  # a display change: torch does not run
    # another stage keeps its own range; coming back shows the one set here
    panel.session.select(stage=2)
    np.testing.assert_array_equal(panel.grid_page.image.levels, (0, 255))
    panel.session.select(stage=1)
    np.testing.assert_allclose(panel.grid_page.image.levels, want, rtol=1e-6)
    panel.colorbar.reset_button.click()
    assert 1 not in panel.session.display_ranges
    np.testing.assert_array_equal(panel.grid_page.image.levels, (0, 255))
    assert panel.colorbar.levels == (lo, hi) and not panel.colorbar.reset_button.isEnabled()


def test_the_export_dialog_offers_a_grad_cam_only_for_a_classifier(harness, tmp_path):
    """A stack without class scores at its end: the box is off and says why (ticking it
    failed the whole export)."""
    from layerlab.qt.export_dialog import ExportAllDialog

    harness.run(sharpen_pipeline(new_layer("ReLU")))
    assert not harness.exporter._ends_in_scores()
    dialog = ExportAllDialog(None, str(tmp_path), gradcam_ok=False)
    assert not dialog.gradcam.isEnabled() and "class scores" in dialog.gradcam.toolTip()
    dialog.deleteLater()


def test_the_grids_gutters_and_empty_slots_show_the_background(qtbot):
    """Three channels in a 2 x 2 mosaic through viridis: the empty fourth slot and the gutters
    are the view's background, not the colormap's lowest colour; every tile pixel is data."""
    import torch
    from PySide6.QtCore import QPointF

    from layerlab.core import render
    from layerlab.qt.stage_pages import GRID_BACKGROUND, GridPage

    page = GridPage()
    qtbot.addWidget(page)
    page.resize(400, 400)
    page.show()
    qtbot.waitExposed(page)
    r = render.render_stage(torch.rand(3, 20, 30), "channel", "viridis")
    page.set_rendered(r)
    gaps = page.gaps.path()
    (y0, x0), (h, w) = r.grid_origins[2], r.tile_size
    assert gaps.contains(QPointF(x0 + w + 2 + w / 2, y0 + h / 2))  # the empty slot
    assert gaps.contains(QPointF(w + 1, 5)) and gaps.contains(QPointF(5, h + 1))  # gutters
    for y, x in r.grid_origins:  # no tile is covered
        assert not gaps.contains(QPointF(x + w / 2, y + h / 2))
    assert page.gaps.brush().color().getRgb()[:3] == GRID_BACKGROUND
    assert tuple(render.colormap_lut("viridis")[0]) != GRID_BACKGROUND

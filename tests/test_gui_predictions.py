"""The predictions view and the "why this class" panel driven by real runs: the bars and
labels against torch.softmax of the engine's output, the overlay against core's Grad-CAM,
the opacity slider against the blend computed here in numpy."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import torch

from layerlab.core import resources
from layerlab.core.colormaps import colormap_lut
from layerlab.core.engine import Engine
from layerlab.core.gradcam import grad_cam
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import Pipeline
from layerlab.qt.controller import Controller, Views
from layerlab.qt.session import Session
from layerlab.qt.stage_panel import StagePanel
from layerlab.qt.why_class import WhyClass
from layerlab.qt.why_class_panel import WhyClassPanel
from layerlab.worker import RunController

DIGITS = resources.example_pipeline("digits-cnn")
CIFAR = resources.example_pipeline("cifar10-tutorial")


class Harness:
    """A stage panel and the why-this-class panel on one session, wired as the window wires
    them, with synchronous runners."""

    def __init__(self, qtbot):
        self.session = Session()
        self.runner = RunController(synchronous=True)
        self.panel = StagePanel(self.session)
        self.why_panel = WhyClassPanel(self.session)
        for w in (self.panel, self.why_panel):
            qtbot.addWidget(w)
        self.controller = Controller(self.session, self.runner, Views(stages=self.panel))
        self.why = WhyClass(self.session, self.why_panel, synchronous=True)
        self.panel.resize(1000, 700)
        self.panel.show()
        qtbot.waitExposed(self.panel)

    def run(self, path, sample: str) -> Pipeline:
        pipeline = Pipeline.load(path)
        self.session.set_device("cpu")
        self.session.document.reset(pipeline, None)
        self.session.set_image(load_image(resources.sample(sample)))
        self.controller.image_opened()
        assert all(v.result.ok for v in self.session.results.values())
        return pipeline


def engine_logits(pipeline: Pipeline, sample: str) -> torch.Tensor:
    x = to_tensor(load_image(resources.sample(sample)).image, pipeline.input.mode)
    return Engine("cpu", channels_last=False).run_all(pipeline, x, cache=False)[-1].output[0]


def test_the_last_stage_shows_the_top5_of_torch_softmax(qtbot):
    h = Harness(qtbot)
    for path, sample in [(DIGITS, "camera.png"), (CIFAR, "chelsea.jpg")]:
        pipeline = h.run(path, sample)
        last = max(h.session.results)
        h.session.select(stage=last)
        view = h.panel.predictions
        assert view.isVisible()
        probs = torch.softmax(engine_logits(pipeline, sample).double(), 0)
        values, indices = torch.topk(probs, 5)
        # the window's preview runs channels_last: the same numbers to float32 rounding
        np.testing.assert_allclose(view.bar_widths(), values.numpy(), atol=1e-5)
        want = [f"{pipeline.classes[i]}  " for i in indices.tolist()]
        labels = view.labels()
        assert [label[:len(w)] for label, w in zip(labels, want, strict=True)] == want
        for label, p in zip(labels, values.tolist(), strict=True):
            if label.endswith("  <0.001%"):
                assert 100 * p < 0.001 + 1e-9
                continue
            shown = float(label.split()[-1].rstrip("%"))
            # rounded to one decimal, or to two significant digits below 0.1%
            assert abs(shown - 100 * p) <= (0.0501 if 100 * p >= 0.1 else 0.051 * 100 * p)
        assert view.title.text().startswith(f"Prediction: {pipeline.classes[indices[0]]} ")
        # other stages have no predictions
        h.session.select(stage=last - 1)
        assert not view.isVisible()


def test_why_this_class_overlay_is_core_grad_cam_and_the_slider_blends(qtbot):
    h = Harness(qtbot)
    pipeline = h.run(DIGITS, "camera.png")
    h.why_panel.show()
    qtbot.waitExposed(h.why_panel)
    qtbot.waitUntil(lambda: h.session.gradcam is not None, timeout=20000)
    x = to_tensor(h.session.run_image.image, "gray")
    top = grad_cam(pipeline, x)
    g = h.session.gradcam
    assert (g.target, g.stage, g.stage_name) == (top.target, 5, "relu2")
    np.testing.assert_array_equal(g.heatmap, top.heatmap)
    # choose class 7 at stage 3 (pool1)
    h.why_panel.class_box.setCurrentIndex(h.why_panel.class_box.findData(7))
    h.why_panel.stage_box.setCurrentIndex(h.why_panel.stage_box.findData(3))
    h.why_panel.request()
    want = grad_cam(pipeline, x, target=7, stage=3)
    g = h.session.gradcam
    assert (g.target, g.stage) == (7, 3)
    np.testing.assert_array_equal(g.heatmap, want.heatmap)
    # the photo: stage 0 of the run, as 8-bit gray
    photo = np.floor(np.clip(h.session.results[0].values[0].astype(np.float64), 0, 1) * 255
                     + 0.5)
    heat_rgb = colormap_lut("turbo")[np.floor(want.heatmap * 255 + 0.5).astype(int)]
    for percent in (0, 35, 100):
        h.why_panel.opacity.setValue(percent)
        a = percent / 100
        blend = np.floor((1 - a) * photo[:, :, None] + a * heat_rgb.astype(np.float64) + 0.5)
        np.testing.assert_array_equal(h.why_panel.image.image, blend.astype(np.uint8))
    assert "Why '7'" in h.why_panel.status.text()


def test_why_this_class_says_when_the_stack_is_no_classifier(qtbot):
    h = Harness(qtbot)
    h.run(resources.example_pipeline("edge-detection"), "camera.png")
    h.why_panel.show()
    qtbot.waitExposed(h.why_panel)
    assert "needs a stack whose last stage is a vector" in h.why_panel.status.text()
    assert h.session.gradcam is None


def test_a_labels_file_names_the_bars_and_undo_takes_it_off(qtbot, tmp_path, settings):
    from PySide6.QtWidgets import QWidget

    from layerlab.qt.files import Files

    class Shell(QWidget):
        def __init__(self):
            super().__init__()
            self.errors, self.statuses = [], []

        def show_error(self, text):
            self.errors.append(text)

        def show_status(self, text, *args):
            self.statuses.append(text)

    h = Harness(qtbot)
    pipeline = h.run(CIFAR, "chelsea.jpg")
    shell = Shell()
    qtbot.addWidget(shell)
    files = Files(h.session, h.controller, settings, shell)
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"animal {k}" for k in range(10)) + "\n")
    assert files.load_labels_path(str(labels))
    h.session.select(stage=max(h.session.results))
    top = int(torch.argmax(engine_logits(pipeline, "chelsea.jpg")))
    assert h.session.pipeline.classes[top] == f"animal {top}"
    assert h.panel.predictions.labels()[0].startswith(f"animal {top}  ")
    h.session.document.undo_stack.undo()
    assert h.session.pipeline.classes == pipeline.classes
    assert h.panel.predictions.labels()[0].startswith(f"{pipeline.classes[top]}  ")
    (tmp_path / "bad.txt").write_bytes(b"\n")
    assert not files.load_labels_path(str(tmp_path / "bad.txt"))
    assert "bad.txt: holds no class names" in shell.errors[-1]
    assert h.session.pipeline.classes == pipeline.classes


def test_export_all_with_gradcam_writes_the_class_the_panel_shows(qtbot, tmp_path):
    import json

    from layerlab.qt.export_dialog import StageExporter

    h = Harness(qtbot)
    pipeline = h.run(DIGITS, "camera.png")
    h.why_panel.show()
    qtbot.waitExposed(h.why_panel)
    h.why_panel.class_box.setCurrentIndex(h.why_panel.class_box.findData(2))
    h.why_panel.request()
    assert h.session.gradcam.target == 2
    exporter = StageExporter(h.session, h.panel.view_mode, h.panel)
    assert exporter._ends_in_scores()  # the dialog offers the Grad-CAM for this stack
    job = exporter.export_all(tmp_path / "win", gradcam=True, show_progress=False)
    assert job is not None
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    assert exporter.last_error is None, exporter.last_error
    manifest = json.loads((tmp_path / "win" / "manifest.json").read_text())
    assert (manifest["gradcam"]["class"], manifest["gradcam"]["stage"]) == (2, 5)
    x = to_tensor(load_image(resources.sample("camera.png")).image, "gray")
    np.testing.assert_array_equal(np.load(tmp_path / "win" / "gradcam.npy"),
                                  grad_cam(pipeline, x, target=2).heatmap)

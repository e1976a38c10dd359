"""Start-up: the window paints the photo before torch is imported, then the first maps come.

The check runs in a fresh interpreter (this test process has torch loaded already). There the
worker's torch import is held until the window's first paint, so that a torch import on the
GUI thread's way to that paint would be seen in ``sys.modules``, whatever the timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from layerlab.core.imageio import downscale_for_preview

SCRIPT = r"""
import json, os, sys, threading
import layerlab.worker as worker

painted = threading.Event()
real_load = worker.load_torch
loads = []

def held_load(set_threads=False):
    painted.wait(60)
    loads.append(threading.current_thread() is threading.main_thread())
    return real_load(set_threads)

worker.load_torch = held_load
# Which thread first imported each large library: the pixel kernels' compile thread starts
# once the first maps are out, and may bring numba's own imports (scipy among them).
importers = {}

class Importers:
    def find_spec(self, name, path=None, target=None):
        importers.setdefault(name, threading.current_thread().name)
        return None

sys.meta_path.insert(0, Importers())
# The right-hand panels' modules (made when their dock is first shown) and large libraries
# the first maps do not need.
PANELS = [f"layerlab.qt.{m}" for m in ("explain_panel", "compare_panel", "fit_panel",
                                         "visual_panel", "why_class", "why_class_panel")]
LARGE = ("scipy", "skimage", "sklearn", "matplotlib", "pandas")

from PySide6.QtCore import QEvent, QObject, QTimer
from layerlab.qt.app import ensure_app, make_settings

app = ensure_app()
from layerlab.qt.main_window import MainWindow

window = MainWindow(make_settings())
out = {}

class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint and "at_paint" not in out:
            panel = window.stage_panel
            shown = panel.grid_page.image.image
            out["at_paint"] = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
            out["panels_at_paint"] = sorted(m for m in PANELS if m in sys.modules)
            out["photo_page"] = panel.stack.currentWidget() is panel.grid_page
            out["shown"] = None if shown is None else shown.tolist()
            out["progress"] = window.progress_label.text()
            out["layers"] = [layer.type for layer in window.session.pipeline.layers]
            painted.set()
        return False

def finished(summary):
    out["stages"], out["error"] = summary.stages, summary.error
    out["results"] = sorted(window.session.results)
    out["after"] = sorted(m for m in ("torch", "torchvision", *LARGE) if m in sys.modules
                          and importers.get(m) != "layerlab-compile")
    out["numba_by"] = importers.get("numba")
    out["loads_on_main_thread"] = loads
    QTimer.singleShot(0, window.close)

paint_filter = FirstPaint()
window.installEventFilter(paint_filter)
window.runner.runFinished.connect(finished)
QTimer.singleShot(120000, window.close)
window.show()
window.start(image=sys.argv[1])
app.exec()
print(json.dumps(out))
"""


def test_window_paints_the_photo_before_torch_then_the_first_maps_arrive(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = np.arange(60, dtype=np.uint8)[None, :] * 4
    rgb[10:30, 20:50] = (255, 128, 0)
    photo = tmp_path / "photo.png"
    Image.fromarray(rgb, "RGB").save(photo)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LAYERLAB_SETTINGS_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(photo)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    assert out["at_paint"] == []  # neither torch nor torchvision on the way to the paint
    assert out["panels_at_paint"] == []  # nor a right-hand panel nobody opened
    assert out["layers"] == ["Conv2d", "ReLU", "MaxPool2d"]  # the stack is there already
    assert out["photo_page"]
    # The photo as the first run will see it (the default stack is gray): its pixels, shown
    # as pyqtgraph holds them (column-major: width first).
    expected = np.asarray(downscale_for_preview(Image.open(photo).convert("RGB"), 1024))
    shown = np.asarray(out["shown"], np.uint8)
    assert shown.shape in (expected.shape, expected.transpose(1, 0, 2).shape)
    np.testing.assert_array_equal(shown if shown.shape == expected.shape
                                  else shown.transpose(1, 0, 2), expected)
    assert out["progress"] == "loading torch…"

    assert out["error"] is None and out["stages"] == 4
    assert out["results"] == [0, 1, 2, 3]
    assert out["loads_on_main_thread"] == [False]  # imported by the worker thread
    # torchvision only when a stack needs it (resize, crop) or a model is opened; no scipy &c.
    assert out["after"] == ["torch"]
    assert out["numba_by"] in (None, "layerlab-compile")  # never on the first maps' way


PLAIN_IMPORTS = r"""
import builtins, json, sys
from PySide6.QtWidgets import QApplication
from layerlab.qt.app import plain_imports

feature = sys.modules["PySide6.support.feature"]
wrapped = builtins.__import__ is builtins.__feature_import__
plain_imports()
import colorsys  # a module first imported now, with the plain import
from PySide6.QtWidgets import QLabel  # PySide6's lazily made classes still come

app = QApplication([])
label = QLabel("ok")
print(json.dumps({"wrapped_before": wrapped,
                  "looked_at": "colorsys" in feature.pyside_feature_dict,
                  "plain": builtins.__import__ is builtins.__orig_import__,
                  "label": label.text()}))
"""


def test_the_app_imports_modules_without_pysides_feature_wrapper(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", PLAIN_IMPORTS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # PySide6 wraps import (and looks at each new module's source) until the app unwraps it.
    assert out == {"wrapped_before": True, "looked_at": False, "plain": True, "label": "ok"}


def test_the_cycle_collector_is_back_once_the_first_run_has_finished(qtbot):
    import gc

    from layerlab.core.imageio import from_array
    from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
    from layerlab.qt.app import resume_gc_after_first_run
    from layerlab.worker import RunController, RunRequest

    runner = RunController()
    try:
        gc.disable()  # as the app starts
        resume_gc_after_first_run(runner)
        layer = new_layer("Conv2d", (1, 8, 8), out_channels=1, kernel_size=3)
        request = RunRequest(Pipeline(InputSpec("gray"), (layer,)),
                             from_array(np.zeros((8, 8), np.uint8)).image)
        assert not gc.isenabled()
        with qtbot.waitSignal(runner.runFinished, timeout=60000):
            runner.submit(request)
        qtbot.waitUntil(gc.isenabled, timeout=5000)
    finally:
        gc.enable()
        runner.shutdown()

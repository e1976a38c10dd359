"""The fit panel in the window: a random kernel learns Sobel-x live, in its own thread, as one
undo step; Stop keeps the last reported weights."""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from gui_helpers import wait_idle
from PySide6.QtCore import QTimer

from layerlab.core import fitting as fit_module  # the panel imports it per fit
from layerlab.core.edits import materialize

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def _weight(window, layer: int = 0) -> np.ndarray:
    return np.array(materialize(window.session.pipeline.layers[layer])["weight"])


def _prepare(window, qtbot, *, optimizer="lbfgs", lr=1.0, steps=30, every=5, seed=0):
    window.stack.select_layer(0)
    qtbot.waitUntil(lambda: window.session.layer == 0)
    window.show_fit_panel()
    panel = window.fit_panel
    panel.set_target("preset", "sobel x")
    panel.set_optimizer(optimizer, lr)
    panel.steps_box.setValue(steps)
    panel.every_box.setValue(every)
    panel.start_box.setCurrentIndex(panel.start_box.findData("seed"))
    panel.seed_box.setValue(seed)
    return panel


def test_a_random_kernel_learns_sobel_x_as_one_undo_step(main_window, qtbot):
    w = main_window
    original = _weight(w)
    undo = w.session.document.undo_stack
    count = undo.count()
    panel = _prepare(w, qtbot)
    reports = []
    panel.jobs.progress.connect(reports.append)
    with qtbot.waitSignal(panel.jobs.finished, timeout=120000):
        panel.start_button.click()
    assert [r.step for r in reports] == [5, 10, 15, 20, 25, 30]
    fitted = _weight(w)
    assert np.abs(fitted[0, 0] - SOBEL_X).max() < 1e-3
    assert undo.count() == count + 1 and undo.undoText().startswith("Fit ")
    assert "Done: 30 steps" in panel.status.text()
    # the loss curve has every report, on a log axis
    xs, ys = panel.curve.getData()
    assert list(xs) == [5, 10, 15, 20, 25, 30] and panel.plot.getPlotItem().ctrl.logYCheck.isChecked()
    # the kernel editor and the feature maps follow: stage 1 is torch's conv with the kernel
    wait_idle(w, qtbot)
    np.testing.assert_array_equal(w.kernel_editor._weight, fitted)
    x = torch.from_numpy(np.array(w.session.results[0].values))[None]
    want = F.conv2d(x, torch.from_numpy(fitted), padding=1)[0]
    np.testing.assert_allclose(w.session.results[1].values, want.numpy(), atol=1e-5)
    # one Undo brings back the exact kernel from before the fit; Redo the fitted one
    undo.undo()
    np.testing.assert_array_equal(_weight(w), original)
    undo.redo()
    np.testing.assert_array_equal(_weight(w), fitted)


def test_stop_keeps_the_last_reported_weights_and_the_gui_thread_keeps_ticking(
        main_window, qtbot, monkeypatch):
    w = main_window
    stepped_on: list[str] = []
    real_fit = fit_module.fit

    def watched_fit(*args, **kwargs):
        steps = real_fit(*args, **kwargs)

        def each():
            while True:
                stepped_on.append(threading.current_thread().name)
                try:
                    event = next(steps)
                except StopIteration as done:
                    return done.value
                yield event
        return each()

    monkeypatch.setattr(fit_module, "fit", watched_fit)
    original = _weight(w)
    undo = w.session.document.undo_stack
    count = undo.count()
    panel = _prepare(w, qtbot, optimizer="adam", lr=0.01, steps=100000, every=2)
    ticks = []
    heartbeat = QTimer()
    heartbeat.setInterval(5)
    heartbeat.timeout.connect(lambda: ticks.append(panel.jobs.busy))
    heartbeat.start()
    reports = []
    panel.jobs.progress.connect(reports.append)
    panel.start_button.click()
    assert panel.jobs.busy and not panel.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(reports) >= 4, timeout=60000)
    with qtbot.waitSignal(panel.jobs.finished, timeout=30000):
        panel.stop_button.click()
    heartbeat.stop()
    assert sum(ticks) > 0  # the GUI thread's timer ran while the fit was busy
    gui = threading.current_thread().name
    assert stepped_on and gui not in set(stepped_on)
    assert len(stepped_on) < 100000  # stopped long before the end
    last = panel.last_report
    assert last is reports[-1] and "Stopped" in panel.status.text()
    np.testing.assert_array_equal(_weight(w), last.weights[0]["weight"])
    assert not np.array_equal(_weight(w), original)
    assert undo.count() == count + 1
    undo.undo()
    np.testing.assert_array_equal(_weight(w), original)
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


def test_bad_targets_say_why_and_change_nothing(main_window, qtbot, tmp_path):
    w = main_window
    panel = _prepare(w, qtbot)
    undo = w.session.document.undo_stack
    count, original = undo.count(), _weight(w)
    panel.set_target("image", str(tmp_path / "missing.png"))
    with qtbot.waitSignal(panel.jobs.finished, timeout=30000):
        panel.start_button.click()
    assert "missing.png" in panel.status.text() and "FitError" not in panel.status.text()
    # another stack whose stage 1 has another shape (2 channels)
    other = tmp_path / "two.layerlab.json"
    other.write_text('{"format": "layerlab.pipeline", "version": 1, "input": {"mode": "gray"},'
                     ' "layers": [{"type": "Conv2d", "args": {"in_channels": 1, '
                     '"out_channels": 2, "kernel_size": 3, "padding": 1}}]}')
    panel.set_target("pipeline", str(other))
    with qtbot.waitSignal(panel.jobs.finished, timeout=30000):
        panel.start_button.click()
    assert "the target is 2 x" in panel.status.text()
    assert "must have the stage's shape" in panel.status.text()
    assert undo.count() == count
    np.testing.assert_array_equal(_weight(w), original)
    # a layer without weights cannot be fitted
    w.stack.select_layer(1)  # ReLU
    qtbot.waitUntil(lambda: w.session.layer == 1)
    panel.start_button.click()
    assert "Select a layer with weights" in panel.status.text() and not panel.jobs.busy


def test_an_edit_during_the_fit_stops_it(main_window, qtbot):
    w = main_window
    panel = _prepare(w, qtbot, optimizer="adam", lr=0.01, steps=100000, every=2)
    reports = []
    panel.jobs.progress.connect(reports.append)
    panel.start_button.click()
    qtbot.waitUntil(lambda: len(reports) >= 2, timeout=60000)
    with qtbot.waitSignal(panel.jobs.finished, timeout=30000):
        w.session.document.rename_layer(0, "edited")
    assert "stack changed" in panel.status.text()
    assert w.session.pipeline.layers[0].name == "edited"

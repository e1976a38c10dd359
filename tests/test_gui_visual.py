""""What does this channel look for?" in the window: the search runs in its own thread, shows
its progress, the picture, the channel and the kernel, and stops on Stop."""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from layerlab.core import visualise as visual_module  # the panel imports it per search
from layerlab.core.edits import materialize
from layerlab.core.visualise import kernel_picture


def _pixels(label) -> np.ndarray:
    image = label.pixmap().toImage()
    return np.array([[image.pixelColor(x, y).red() for x in range(image.width())]
                     for y in range(image.height())])


def test_the_channel_button_shows_what_the_channel_looks_for(main_window, qtbot, monkeypatch):
    w = main_window
    stepped_on: list[str] = []
    real = visual_module.visualise

    def watched(*args, **kwargs):
        steps = real(*args, **kwargs)

        def each():
            while True:
                stepped_on.append(threading.current_thread().name)
                try:
                    event = next(steps)
                except StopIteration as done:
                    return done.value
                yield event
        return each()

    monkeypatch.setattr(visual_module, "visualise", watched)
    w.controller.on_stage_picked(1)  # the sharpen conv
    w.stage_panel.select_channel(0, large=True)
    panel = w.visual_panel
    panel.steps_box.setValue(40)
    button = w.stage_panel.controls.look_button
    assert button.isEnabled() and button.text() == "Looks for…"
    with qtbot.waitSignal(w.visual_jobs.finished, timeout=120000):
        button.click()
    assert not w.visual_dock.isHidden()
    assert panel.subject == (1, 0) and "stage 1" in panel.title.text()
    assert stepped_on and threading.current_thread().name not in set(stepped_on)
    result = panel.result
    assert result is not None and result.image.shape[0] == 1
    assert panel.progress.value() == 40
    # the search raised the channel's response: torch's own conv with the layer's kernel
    layer = w.session.run_pipeline.layers[0]
    kernel = torch.from_numpy(np.array(materialize(layer)["weight"]))

    def response(image):
        x = torch.from_numpy(np.asarray(image, np.float32))[None]
        return float(F.relu(F.conv2d(x, kernel, padding=layer.args["padding"])).mean())

    assert result.responses[-1] > result.start_response
    # (the tutorial sharpen kernel sums to 1/9 > 0: brightness everywhere is what it likes)
    assert response(result.image) > 1.5 * result.start_response
    assert "Mean positive response" in panel.status.text()
    # the three pictures: the result, the channel on the photo, the kernel (scaled, nearest)
    assert not panel.result_label.pixmap().isNull()
    assert not panel.channel_label.pixmap().isNull()
    kernel_u8 = kernel_picture(w.session.run_pipeline, 0, 0)
    shown = _pixels(panel.kernel_label)
    scale = shown.shape[0] // kernel_u8.shape[0]
    np.testing.assert_array_equal(shown[::scale, ::scale], kernel_u8)


def test_stop_keeps_the_picture_so_far(main_window, qtbot):
    w = main_window
    panel = w.visual_panel
    panel.steps_box.setValue(100000)
    reports = []
    w.visual_jobs.progress.connect(reports.append)
    w.look_for(1, 0)
    qtbot.waitUntil(lambda: len(reports) >= 2, timeout=60000)
    assert panel.stop_button.isEnabled() and not panel.again_button.isEnabled()
    with qtbot.waitSignal(w.visual_jobs.finished, timeout=30000):
        panel.stop_button.click()
    assert panel.result is None and panel.last_report is not None
    assert "Stopped at step" in panel.status.text()
    assert not panel.result_label.pixmap().isNull()
    assert panel.again_button.isEnabled()
    # the input stage is not a layer: a message, no search
    w.look_for(0, 0)
    assert "no layer's result" in panel.title.text() and not w.visual_jobs.busy

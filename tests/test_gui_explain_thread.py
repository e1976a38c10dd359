"""The explain panel in the window computes off the GUI thread, with the same numbers."""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from layerlab.core import explain as explain_module  # the panel imports it per request
from layerlab.core.edits import materialize


def test_the_layer_reruns_in_the_job_thread(main_window, qtbot, monkeypatch):
    w = main_window
    ran_on: list[str] = []
    real = explain_module.layer_output

    def watched(*args, **kwargs):
        ran_on.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(explain_module, "layer_output", watched)
    w.explain_dock.show()
    w.controller.on_explain(1, 0, 33, 44)
    panel = w.explain_panel
    qtbot.waitUntil(lambda: panel.explanation is not None and panel.explanation.x == 33,
                    timeout=10000)
    assert ran_on and threading.current_thread().name not in set(ran_on)
    s = w.session
    layer = s.run_pipeline.layers[s.results[1].result.layer_index]
    x = torch.from_numpy(np.array(s.results[0].values))[None]
    with torch.no_grad():
        direct = F.conv2d(x, torch.from_numpy(np.array(materialize(layer)["weight"])),
                          padding=layer.args["padding"])
    e = panel.explanation
    assert e.value == float(s.results[1].values[0, 44, 33]) == panel.shown_value
    assert abs(e.value - float(direct[0, 0, 44, 33])) <= 1e-6
    assert abs(e.total - e.value) <= 1e-5 * (1 + abs(e.value))
    # the next position reuses the layer's output: no second rerun
    runs = len(ran_on)
    panel.next_button.click()
    qtbot.waitUntil(lambda: panel.explanation.x == 34, timeout=10000)
    assert len(ran_on) == runs
    assert panel.explanation.value == float(s.results[1].values[0, 44, 34])

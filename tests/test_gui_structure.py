"""How an edit travels through the window: no nn.Module built on the GUI thread for a kernel
cell, each stage drawn once per run, and results kept in one place."""

from __future__ import annotations

import threading

import numpy as np
import torch.nn.functional as F
from gui_helpers import wait_idle

from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.qt.histogram_view import HistogramView
from layerlab.qt.stage_pages import GridPage


def test_a_kernel_cell_edit_builds_no_module_on_the_gui_thread(main_window, qtbot,
                                                                monkeypatch):
    w = main_window
    w.stack.select_layer(0)
    built_on = []
    build = Engine.build_module

    def spy(self, layer):
        built_on.append(threading.current_thread() is threading.main_thread())
        return build(self, layer)

    monkeypatch.setattr(Engine, "build_module", spy)
    w.kernel_editor.set_cell(0, 2, 0.25)
    wait_idle(w, qtbot)
    assert True not in built_on
    weight = w.session.pipeline.layers[0].params["weight"]
    assert weight[0, 0, 0, 2] == np.float32(0.25)
    assert w.kernel_editor.cells[0][2].value() == 0.25
    x = to_tensor(w.session.preview.image, "gray")
    np.testing.assert_allclose(w.session.results[1].values,
                               F.conv2d(x, torch_weight(weight), padding=1)[0].numpy(),
                               rtol=0, atol=1e-6)


def torch_weight(arr):
    import torch

    return torch.from_numpy(np.array(arr))


def test_each_shown_stage_is_drawn_once_per_run(main_window, qtbot, monkeypatch):
    w = main_window
    w.session.select(stage=3)  # the last stage (maxpool) is on screen
    wait_idle(w, qtbot)  # and drawn in full
    counts = {"grid": 0, "histogram": 0, "thumbnails": []}
    grid, hist = GridPage.set_rendered, HistogramView.set_stage
    import layerlab.qt.stage_strip as pages

    thumb = pages._thumbnail

    def count_grid(self, rendered):
        counts["grid"] += 1
        return grid(self, rendered)

    def count_hist(self, rendered, channel=None):
        counts["histogram"] += 1
        return hist(self, rendered, channel)

    def count_thumb(view, *args):
        counts["thumbnails"].append(view.result.index)
        return thumb(view, *args)

    monkeypatch.setattr(GridPage, "set_rendered", count_grid)
    monkeypatch.setattr(HistogramView, "set_stage", count_hist)
    monkeypatch.setattr(pages, "_thumbnail", count_thumb)
    runs = w.runner.runs_started
    w.kernel_editor.cellEdited.emit(0, "weight", (0, 0, 1, 1), 1.5)
    wait_idle(w, qtbot)
    assert w.runner.runs_started == runs + 1
    assert counts["grid"] == 1 and counts["histogram"] == 1
    # the input is unchanged (served from the cache): its thumbnail is not drawn again
    assert sorted(counts["thumbnails"]) == [1, 2, 3]
    # the window keeps no copy of the results: the panel and the exporter read the session's
    assert not hasattr(w, "views") and not hasattr(w.stage_panel, "_views")

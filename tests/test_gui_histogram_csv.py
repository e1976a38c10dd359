"""File > Export > Export histogram as CSV: the shown stage's histogram with the window's bins,
counts equal to np.histogram on the stage's values (computed here with torch directly)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch.nn.functional as F
from PIL import Image
from test_gui_views import CAMERA, Harness
from torchvision.transforms import ToTensor

from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.worker import RenderOptions


@pytest.fixture
def harness(qtbot):
    h = Harness(qtbot)
    yield h
    h.exporter.shutdown()
    h.runner.shutdown()


def test_the_action_is_in_the_export_actions_and_follows_the_stage(harness):
    action = harness.exporter.hist_action
    assert action.text() == "Export histogram as CSV\u2026"
    assert action in harness.exporter.actions()
    assert not action.isEnabled()  # nothing shown yet
    harness.run(Pipeline(InputSpec("gray"), (new_layer("MaxPool2d", (1, 512, 512),
                                                       kernel_size=2),)))
    assert action.isEnabled()


@pytest.mark.parametrize("bins", [16, 64])
def test_csv_counts_equal_numpy_on_the_shown_stage(harness, tmp_path, bins):
    pipe = Pipeline(InputSpec("gray"), (new_layer("MaxPool2d", (1, 512, 512), kernel_size=2),))
    harness.session.set_render_options(RenderOptions("channel", "gray", bins))
    harness.run(pipe)
    harness.session.select(stage=1)
    out = harness.exporter.save_histogram_csv(tmp_path / "h.csv")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["bin_lo", "bin_hi", "stage", "ch0"]
    table = np.array([[float(v) for v in r] for r in rows[1:]])
    # max pooling is exact: the tutorial's way gives the very same values
    x = ToTensor()(Image.open(CAMERA).convert("L")).unsqueeze(0)
    values = F.max_pool2d(x, 2)[0].numpy()
    counts, edges = np.histogram(values, bins=bins)
    np.testing.assert_array_equal(table[:, 0], edges[:-1])
    np.testing.assert_array_equal(table[:, 1], edges[1:])
    np.testing.assert_array_equal(table[:, 2], counts)
    np.testing.assert_array_equal(table[:, 3], counts)
    # the same counts the histogram view shows
    np.testing.assert_array_equal(harness.session.results[1].rendered.hist_counts, counts)

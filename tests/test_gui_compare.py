"""The Compare view (A/B): the difference and its statistics against numpy's A - B of torch
called directly on both stacks (a real photo), a clear message for mismatched shapes, and A's
edits reaching the difference live."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as tvf

from layerlab.core import resources
from layerlab.core.colormaps import colormap_lut

SHARPEN = torch.tensor(json.loads(resources.example_pipeline("sharpen-relu-maxpool")
                                  .read_text())["layers"][0]["params"]["weight"])
# The window runs its preview channels_last; torch called here runs NCHW, which sums in
# another order: the values agree to float32 rounding of numbers of size ~1 (1e-6), not bitwise.
ATOL = 1e-5


def wait_both(window, qtbot, timeout: int = 30000) -> None:
    """Until A's run (and the full view of a stage just picked), B's run and the comparison
    (on its own thread) are all done."""
    panel = window.compare_panel
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.drawing
                    and panel.idle, timeout=timeout)


def gray(image) -> torch.Tensor:
    return tvf.to_tensor(image.convert("L")).unsqueeze(0)


def stack(x: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    """The sharpen-relu-maxpool stages, by torch directly."""
    conv = F.conv2d(x, weight, padding=1)
    relu = F.relu(conv)
    return [x, conv, relu, F.max_pool2d(relu, 2)]


def check_difference(panel, want: np.ndarray) -> None:
    d = panel.difference
    assert d is not None, panel.message
    np.testing.assert_allclose(d.values, want, atol=ATOL, rtol=0)
    v = d.values.astype(np.float64)  # the stats are exactly numpy's of the values shown
    assert d.stats["min"] == v.min() and d.stats["max"] == v.max()
    assert np.isclose(d.stats["mean"], v.mean(), rtol=1e-12, atol=1e-15)
    assert np.isclose(d.stats["std"], v.std(ddof=1), rtol=1e-12)
    assert d.stats["max_abs"] == np.abs(v).max()
    assert abs(d.stats["max_abs"] - np.abs(want).max()) <= ATOL
    # The picture: RdBu with -m..m stretched, 0 in the middle (render's symmetric levels).
    m = np.float32(np.abs(d.values).max())
    u8 = np.floor(np.clip((d.values + m) / (m + m) * np.float32(255) + np.float32(0.5), 0,
                          255)).astype(np.uint8)
    np.testing.assert_array_equal(panel.pictures["A - B"], colormap_lut("RdBu")[u8])
    assert "max |A - B|" in panel.message


def test_duplicate_as_b_then_edit_a_updates_the_difference(main_window, qtbot, monkeypatch):
    import threading

    from layerlab.core import compare

    threads = set()

    def recorded(**kw):
        threads.add(threading.get_ident())
        return compare_stage(**kw)

    compare_stage = compare.compare_stage
    monkeypatch.setattr(compare, "compare_stage", recorded)  # the panel imports it per call
    w = main_window
    panel = w.compare_panel
    w.session.select(stage=1, channel=0)
    panel.duplicate_as_b()
    wait_both(w, qtbot)
    assert panel.difference is not None and panel.difference.identical, panel.message
    assert "(identical)" in panel.message
    # B's worker draws in full only the stage compared; the others are thumbnails.
    assert {i for i, v in panel.b_results.items() if v.full} == {1}
    assert all(v.values is None and v.thumb is not None
               for i, v in panel.b_results.items() if i != 1)
    # nor does it make the compared stage's histograms and statistics, which nobody sees
    assert not panel.b_results[1].rendered.has_stats

    w.controller.on_cell_edited(0, "weight", (0, 0, 1, 1), 2.0)  # edit A's centre cell
    wait_both(w, qtbot)
    x = gray(w.session.preview.image)
    edited = SHARPEN.clone()
    edited[0, 0, 1, 1] = 2.0
    a, b = stack(x, edited), stack(x, SHARPEN)
    check_difference(panel, (a[1] - b[1])[0, 0].numpy())
    # A's centre grew by 1: A - B at the conv is exactly the input (up to rounding).
    np.testing.assert_allclose(panel.difference.values, x[0, 0].numpy(), atol=ATOL)

    w.session.select(stage=3)  # the same comparison after ReLU and the max pool
    wait_both(w, qtbot)
    assert panel.b_results[3].full  # drawn from B's kept results once picked
    assert not panel.b_results[3].rendered.has_stats
    check_difference(panel, (a[3] - b[3])[0, 0].numpy())
    assert threads and threading.get_ident() not in threads  # never on the GUI thread


def test_b_from_another_pipeline_and_a_shape_mismatch(main_window, qtbot, tmp_path):
    w = main_window
    panel = w.compare_panel
    data = json.loads(resources.example_pipeline("sharpen-relu-maxpool").read_text())
    data["layers"][0]["params"]["weight"] = [[[[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0],
                                               [0.0, 0.0, 0.0]]]]
    other = tmp_path / "other.layerlab.json"
    other.write_text(json.dumps(data))
    assert panel.open_b_pipeline(str(other))
    w.session.select(stage=2, channel=0)
    wait_both(w, qtbot)
    x = gray(w.session.preview.image)
    kb = torch.tensor(data["layers"][0]["params"]["weight"])
    a, b = stack(x, SHARPEN), stack(x, kb)
    check_difference(panel, (a[2] - b[2])[0, 0].numpy())

    # Two conv channels against one: the stage cannot be subtracted, and says why.
    assert panel.open_b_pipeline(str(resources.example_pipeline("edge-detection")))
    w.session.select(stage=1)
    wait_both(w, qtbot)
    assert panel.difference is None
    h, wd = x.shape[-2:]
    assert panel.message == (f"A and B differ in shape at stage 1 (sharpen): A is 1 x {h} x "
                             f"{wd}, B is 2 x {h} x {wd}; the difference needs one shape "
                             f"(compare a stage where both stacks agree)")
    assert "A - B" not in panel.pictures and "A" in panel.pictures

    bad = tmp_path / "bad.layerlab.json"
    bad.write_text("{")
    assert not panel.open_b_pipeline(str(bad))
    assert panel.message.startswith("B not changed: bad.layerlab.json: not valid JSON")
    assert "edge-detection" in panel.b_description  # B kept


def test_b_on_a_second_photo_follows_the_edits_of_a(main_window, qtbot):
    w = main_window
    panel = w.compare_panel
    chelsea = Path(resources.sample("chelsea.jpg"))
    assert panel.open_b_image(str(chelsea))
    w.session.select(stage=1, channel=0)
    wait_both(w, qtbot)
    assert panel.b_input.size == w.session.preview.image.size  # resized to A's size
    xa, xb = gray(w.session.preview.image), gray(panel.b_input)
    check_difference(panel, (stack(xa, SHARPEN)[1] - stack(xb, SHARPEN)[1])[0, 0].numpy())

    w.controller.on_cell_edited(0, "weight", (0, 0, 0, 0), 0.5)  # B runs A's stack: both move
    wait_both(w, qtbot)
    k = SHARPEN.clone()
    k[0, 0, 0, 0] = 0.5
    check_difference(panel, (stack(xa, k)[1] - stack(xb, k)[1])[0, 0].numpy())
    panel.clear_b()
    assert panel.difference is None and not panel.active


def test_swap_lets_b_be_edited_and_both_stay_live(main_window, qtbot):
    w = main_window
    panel = w.compare_panel
    w.session.select(stage=1, channel=0)
    panel.duplicate_as_b()
    w.controller.on_cell_edited(0, "weight", (0, 0, 1, 1), 2.0)  # A: centre 2
    wait_both(w, qtbot)
    assert panel.swap()  # now the sharpen stack is edited, the centre-2 stack is B
    wait_both(w, qtbot)
    np.testing.assert_array_equal(w.session.pipeline.layers[0].params["weight"],
                                  SHARPEN.numpy())
    x = gray(w.session.preview.image)
    centre2 = SHARPEN.clone()
    centre2[0, 0, 1, 1] = 2.0
    check_difference(panel, (stack(x, SHARPEN)[1] - stack(x, centre2)[1])[0, 0].numpy())
    # Edit what was B: the difference follows.
    w.controller.on_cell_edited(0, "weight", (0, 0, 0, 0), 0.5)
    wait_both(w, qtbot)
    edited = SHARPEN.clone()
    edited[0, 0, 0, 0] = 0.5
    check_difference(panel, (stack(x, edited)[1] - stack(x, centre2)[1])[0, 0].numpy())
    # The swap is one undo step (the edit after it is another).
    w.session.document.undo_stack.undo()
    w.session.document.undo_stack.undo()
    wait_both(w, qtbot)
    np.testing.assert_array_equal(w.session.pipeline.layers[0].params["weight"],
                                  centre2.numpy())
    panel.clear_b()
    assert not panel.swap_button.isEnabled() and not panel.swap()


def test_the_compared_stage_follows_when_a_run_ends_without_it(main_window, qtbot):
    """A's last stage is gone after an edit (its layer disabled): the window shows the stage
    before it, and B's worker draws that one in full for the comparison."""
    w = main_window
    s, panel = w.session, w.compare_panel
    s.select(stage=3)
    panel.duplicate_as_b()
    wait_both(w, qtbot)
    s.document.set_enabled(2, False)  # the max pool: A has stages 0-2, B still 0-3
    qtbot.waitUntil(lambda: s.stage == 2, timeout=20000)
    wait_both(w, qtbot)
    assert panel.runner.shown == frozenset({2}) and panel.b_results[2].full
    d = panel.difference  # the same ReLU stage on both sides
    assert d is not None and d.identical and "stage 2" in panel.message, panel.message
    np.testing.assert_array_equal(d.values, np.zeros((512, 512), np.float32))

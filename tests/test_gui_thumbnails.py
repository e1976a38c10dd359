"""The window draws in full only the stages it shows; the strip shows thumbnails made from a
downsampled tensor, and picking a stage draws its full view from the kept results.

Thumbnails are compared with the full view made small by numpy (see test_stage_draw.py for
why 1 level is the bound); full views with ``render.render_stage`` of a fresh engine's output,
field by field.
"""

from __future__ import annotations

import numpy as np
from gui_helpers import wait_idle

from layerlab.core import render
from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor


def block_means(tiles: np.ndarray, f: int) -> np.ndarray:
    starts_h, starts_w = np.arange(0, tiles.shape[1], f), np.arange(0, tiles.shape[2], f)
    sums = np.add.reduceat(np.add.reduceat(tiles.astype(np.float64), starts_h, axis=1),
                           starts_w, axis=2)
    rows = np.minimum(starts_h + f, tiles.shape[1]) - starts_h
    cols = np.minimum(starts_w + f, tiles.shape[2]) - starts_w
    return sums / (rows[:, None] * cols[None, :])


def fresh_outputs(w) -> list:
    x = to_tensor(w.session.preview.image, w.session.document.pipeline.input.mode)
    return [r.output for r in Engine(w.session.device).run_all(w.session.document.pipeline, x)]


def assert_thumbnail_of(view, output) -> None:
    """The stage's thumbnail is its full picture (of ``output``) made small, within 1."""
    full = render.render_stage(output[0], "channel", "gray", stats=False)
    thumb = view.thumb
    assert thumb.factor > 1  # a 512-pixel preview: reduced
    want = block_means(full.channels_u8, thumb.factor)
    assert thumb.channels_u8.shape == want.shape
    assert np.abs(thumb.channels_u8 - want).max() <= 1.0


def test_the_strip_shows_thumbnails_that_follow_each_edit(main_window, qtbot):
    w = main_window
    s, strip = w.session, w.stage_panel.strip
    w.session.select(stage=1)
    wait_idle(w, qtbot)
    assert s.shown_stages() == {0, 1}
    outputs = fresh_outputs(w)
    for i in (2, 3):  # not shown: thumbnails only, and the strip shows exactly those
        view = s.results[i]
        assert not view.full and view.values is None
        assert strip._pictured[i] is view.thumb
        assert_thumbnail_of(view, outputs[i])
    before = {i: s.results[i].thumb for i in (1, 2, 3)}
    w.kernel_editor.cellEdited.emit(0, "weight", (0, 0, 1, 1), 3.0)
    wait_idle(w, qtbot)
    outputs = fresh_outputs(w)
    for i in (2, 3):  # new results: new thumbnails of them, in the strip
        view = s.results[i]
        assert view.thumb is not before[i] and strip._pictured[i] is view.thumb
        assert_thumbnail_of(view, outputs[i])
        assert not strip._items[i].icon().isNull()
    view = s.results[1]  # the stage shown: in full, and its thumbnail from those pixels
    assert view.full and view.rendered.has_stats and strip._pictured[1] is view.thumb


def test_picking_a_stage_draws_its_full_view_without_running_torch(main_window, qtbot):
    w = main_window
    s, strip, panel = w.session, w.stage_panel.strip, w.stage_panel
    w.session.select(stage=1)
    wait_idle(w, qtbot)
    thumb = s.results[3].thumb
    assert not s.results[3].full
    runs = w.runner.runs_started
    w.stage_panel.strip.stageClicked.emit(3)  # a click on its thumbnail
    assert s.stage == 3
    assert strip._pictured[3] is thumb  # the thumbnail stays while the full view comes
    qtbot.waitUntil(lambda: s.results[3].full and s.results[3].rendered.has_stats)
    wait_idle(w, qtbot)
    assert w.runner.runs_started == runs  # drawn from the kept results: no torch run
    view = s.results[3]
    assert view.thumb is thumb and strip._pictured[3] is thumb  # not drawn again
    assert s.results[2].full  # the stage before it: the pointer's receptive field reads it
    assert panel.grid_page.rendered.grid_u8 is view.rendered.grid_u8  # on screen
    want = render.render_stage(fresh_outputs(w)[3][0], "channel", "gray")
    np.testing.assert_array_equal(view.values, fresh_outputs(w)[3][0].numpy())
    for name in ("channels_u8", "grid_u8", "levels", "hist_counts", "hist_edges",
                 "channel_hist"):
        np.testing.assert_array_equal(getattr(view.rendered, name), getattr(want, name))
    assert view.rendered.stats == want.stats
    for key, column in want.channel_stats.items():
        np.testing.assert_array_equal(view.rendered.channel_stats[key], column)
    info = panel.hover_at(3, 0, 10, 20)  # the pointer reads the exact values
    assert info is not None and info.value == view.values[0, 20, 10]
    assert "from input x" in info.text


def test_a_stage_picked_while_a_run_is_on_its_way_is_drawn_in_full(main_window, qtbot):
    w = main_window
    s = w.session
    w.session.select(stage=1)
    wait_idle(w, qtbot)
    w.kernel_editor.cellEdited.emit(0, "weight", (0, 0, 0, 0), 0.5)  # a run starts
    w.session.select(stage=3)  # picked before its new pictures came
    wait_idle(w, qtbot)
    view = s.results[3]
    assert view.generation == w.runner.generation and view.full
    np.testing.assert_array_equal(view.values, fresh_outputs(w)[3][0].numpy())


def test_a_narrow_strip_cell_cuts_a_long_name_in_its_middle(main_window):
    """"layer1.0.conv1" and "layer1.0.conv2" stay apart in a 76 px cell: the name is cut in
    its middle, each line fits the cell, and the shape is written tight."""
    strip = main_window.stage_panel.strip
    strip._cell = 76
    fm = strip.fontMetrics()
    one, two = (strip._label(f"6 layer1.0.conv{k}", "64×56×56").split("\n") for k in (1, 2))
    assert one[0] != two[0] and one[0].startswith("6 l") and one[0].endswith("1")
    assert "\u2026" in one[0] and two[0].endswith("2")
    assert all(fm.horizontalAdvance(line) <= 76 - 12 for line in one + two)


def test_a_thumbnails_gutters_and_empty_slots_are_the_strips_background():
    """Three channels through viridis: the thumbnail's tiles are the colormap of their pixels,
    the fourth slot and the gutters the strip's background (not viridis' lowest colour)."""
    import torch
    from PySide6.QtGui import QColor

    from layerlab.core import render, stage_draw
    from layerlab.qt import theme
    from layerlab.qt.stage_strip import _mosaic_rgb

    thumb = stage_draw.thumbnail(torch.rand(3, 40, 60), "channel", "viridis")
    rgb = _mosaic_rgb(thumb)
    c, h, w = thumb.channels_u8.shape
    origins = render.grid_layout(c, h, w, thumb.grid_ncols, thumb.padding)
    lut = render.colormap_lut("viridis")
    for i, (y, x) in enumerate(origins):
        np.testing.assert_array_equal(rgb[y:y + h, x:x + w], lut[thumb.channels_u8[i]])
    background = QColor(theme.THUMB_BACKGROUND).getRgb()[:3]
    y, x = origins[1][0] + h + thumb.padding, origins[1][1]  # the empty fourth slot
    assert (rgb[y:y + h, x:x + w] == background).all()
    assert (rgb[:, w:w + thumb.padding] == background).all()  # a gutter
    assert tuple(lut[0]) != background

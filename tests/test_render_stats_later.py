"""The window shows a stage's pictures first and its histograms and statistics after:
``render_stage(t, stats=False)`` then ``add_stats`` must equal ``render_stage(t)`` exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from skimage import data

from layerlab.core import render


def stage_from_photo(channels_last: bool) -> torch.Tensor:
    photo = torch.from_numpy(data.astronaut()[::2, ::2].copy()).permute(2, 0, 1).float() / 255
    conv = torch.nn.Conv2d(3, 16, 3, padding=1)
    torch.nn.init.kaiming_normal_(conv.weight, generator=torch.Generator().manual_seed(0))
    x = photo[None]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    with torch.no_grad():
        return conv(x)[0]


def assert_same(a: render.RenderedStage, b: render.RenderedStage) -> None:
    for f in dataclasses.fields(render.RenderedStage):
        if f.name == "pending":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), f.name
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{f.name}[{k}]")
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", ["channel", "stage", "fixed", "symmetric"])
@pytest.mark.parametrize("bins", [1, 64, 256])
def test_pictures_first_then_numbers_equal_one_render(channels_last, mode, bins):
    stage = stage_from_photo(channels_last)
    whole = render.render_stage(stage, mode, "viridis", bins)
    first = render.render_stage(stage, mode, "viridis", bins, stats=False)
    assert not first.has_stats and first.hist_counts is None
    np.testing.assert_array_equal(first.grid_u8, whole.grid_u8)
    assert_same(render.add_stats(first, stage), whole)
    assert whole.has_stats


def test_data_the_fast_path_does_not_take_comes_complete():
    stage = stage_from_photo(False).clone()
    stage[0, 0, 0] = float("nan")
    first = render.render_stage(stage, "channel", stats=False)
    assert first.has_stats  # NaN takes the general path, which has everything at once
    assert render.add_stats(first, stage) is first
    assert_same(first, render.render_stage(stage, "channel"))


def test_the_window_gets_every_stages_numbers_after_its_pictures(main_window, qtbot):
    from gui_helpers import full_view, wait_idle

    w = main_window
    pictures, numbers = [], []
    w.runner.stageReady.connect(lambda view: pictures.append(view.result.index))
    w.runner.statsReady.connect(lambda view: numbers.append(view.result.index))
    w.session.document.set_param_value(0, "weight", (0, 0, 1, 1), 0.25)
    wait_idle(w, qtbot)
    assert pictures == [0, 1, 2, 3]
    # The stages shown in full get their numbers after all the pictures (the input did not
    # change: it had its numbers); the others are thumbnails until picked.
    shown = w.session.shown_stages()
    assert numbers == sorted(shown - {0}) and w.session.stage in shown
    options = w.session.render_options
    for index in sorted(w.session.results):
        view = full_view(w, qtbot, index)  # picked: drawn in full, numbers after pictures
        assert view.rendered.has_stats
        whole = render.render_stage(torch.from_numpy(view.values), options.normalize,
                                    options.colormap, options.bins)
        assert_same(view.rendered, whole)
        counts, _, edges = w.stage_panel.histogram.shown_counts()
        np.testing.assert_array_equal(counts, view.rendered.hist_counts)


def test_a_stage_drawn_in_full_gets_its_thumbnail_with_its_numbers(main_window, qtbot):
    """The pixels do not wait for the strip's thumbnail: it is made after them, from them,
    and the strip keeps the picture it had (never the failure mark) until it comes."""
    from gui_helpers import wait_idle

    from layerlab.core import stage_draw
    from layerlab.qt import stage_strip

    w = main_window
    strip = w.stage_panel.strip
    drawn = []
    real = stage_strip._thumbnail
    stage_strip_thumbnail = lambda view, *a: drawn.append(view) or real(view, *a)  # noqa: E731
    pictures, numbers = {}, {}
    # (as they came: the session completes the very view object once the numbers come)
    w.runner.stageReady.connect(lambda v: pictures.setdefault(v.result.index, (v, v.thumb)))
    w.runner.statsReady.connect(lambda v: numbers.setdefault(v.result.index, v))
    stage_strip._thumbnail = stage_strip_thumbnail
    try:
        w.session.document.set_param_value(0, "weight", (0, 0, 1, 1), 0.5)
        wait_idle(w, qtbot)
    finally:
        stage_strip._thumbnail = real
    stage = w.session.stage
    view, thumb_then = pictures[stage]
    assert stage in numbers and view.full
    assert thumb_then is None  # the pixels came first, alone
    thumb = numbers[stage].thumb
    want = stage_draw.thumbnail_of(numbers[stage].rendered)
    np.testing.assert_array_equal(thumb.grid_u8, want.grid_u8)
    assert w.session.results[stage].thumb is thumb  # the session keeps it
    # The strip drew the stage once, from that thumbnail: not from the view without one.
    assert [v.thumb for v in drawn if v.result.index == stage] == [thumb]
    assert strip._pictured[stage] is thumb


def test_stop_during_the_numbers_leaves_no_stage_without_them(main_window, qtbot, monkeypatch):
    """Stop pressed while the shown stage's histograms and statistics are computed: they and
    its strip thumbnail come from the kept results, not the previous run's picture."""
    import time

    from gui_helpers import wait_idle

    from layerlab.core import stage_draw

    w = main_window
    s, strip = w.session, w.stage_panel.strip
    stage = s.stage
    before = strip._pictured[stage]
    real = render.add_stats

    def slow(rendered, tensor, cancel=None):  # long enough for Stop to land in it
        for _ in range(50):
            if cancel is not None and cancel():
                return None
            time.sleep(0.01)
        return real(rendered, tensor, cancel)

    monkeypatch.setattr(render, "add_stats", slow)
    s.document.set_param_value(0, "weight", (0, 0, 1, 1), 0.5)
    generation = w.runner.generation
    qtbot.waitUntil(lambda: s.results[stage].generation == generation, timeout=20000)
    assert not s.results[stage].rendered.has_stats  # the pixels are there, the numbers not
    w.controller.on_stop()
    monkeypatch.setattr(render, "add_stats", real)
    wait_idle(w, qtbot)
    qtbot.waitUntil(lambda: s.results[stage].thumb is not None, timeout=20000)
    view = s.results[stage]
    assert view.generation == generation and view.rendered.has_stats
    want = render.render_stage(torch.from_numpy(view.values), view.rendered.mode,
                               view.rendered.colormap, view.rendered.hist_counts.size)
    assert_same(view.rendered, want)
    np.testing.assert_array_equal(view.thumb.grid_u8,
                                  stage_draw.thumbnail_of(view.rendered).grid_u8)
    assert strip._pictured[stage] is view.thumb and view.thumb is not before

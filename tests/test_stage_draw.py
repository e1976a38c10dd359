"""Thumbnails from a downsampled tensor look like the full view made small.

The reference is the full view itself (``render.render_stage``, pixel-exact against torch in
test_render.py) shrunk with numpy: the mean of each f x f block of a tile's pixels (the last,
partial blocks averaging the pixels they have). The thumbnail averages the tensor's values
first and maps the mean; the mapping is affine between the levels, so the two differ only by
rounding: at most 0.5 from rounding the mean, plus 0.5 from the full view's own rounding of
each pixel, i.e. 1 level. ``fixed`` truncates instead of rounding (ToPILImage's cast): each
side is up to 1 below its real value, so up to 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from skimage import data

from layerlab.core import render, stage_draw
from layerlab.core.imageio import from_array, to_tensor

TOLERANCE = {"channel": 1.0, "stage": 1.0, "symmetric": 1.0, "fixed": 2.0}


def block_means(tiles: np.ndarray, f: int) -> np.ndarray:
    """(C, H, W) uint8 -> (C, ceil(H/f), ceil(W/f)) float64 means of f x f blocks."""
    starts_h, starts_w = np.arange(0, tiles.shape[1], f), np.arange(0, tiles.shape[2], f)
    t = tiles.astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(t, starts_h, axis=1), starts_w, axis=2)
    rows = np.minimum(starts_h + f, tiles.shape[1]) - starts_h
    cols = np.minimum(starts_w + f, tiles.shape[2]) - starts_w
    return sums / (rows[:, None] * cols[None, :])


@pytest.fixture(scope="module")
def conv1_output() -> torch.Tensor:
    """torchvision resnet18's first conv (seeded weights) on the astronaut photo, laid out
    channels_last as the engine keeps stage outputs: (64, 256, 256)."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = to_tensor(from_array(data.astronaut(), "astronaut").image, "rgb")
    with torch.inference_mode():
        y = model.conv1(x.contiguous(memory_format=torch.channels_last))
    assert y.shape == (1, 64, 256, 256)
    return y[0]


@pytest.mark.parametrize("mode", render.NORMALIZE_MODES)
def test_a_thumbnail_is_the_full_view_shrunk(conv1_output, mode):
    full = render.render_stage(conv1_output, mode, "gray", stats=False)
    thumb = stage_draw.thumbnail(conv1_output, mode, "gray")
    gh, gw = full.grid_u8.shape
    f = max(1, gh // stage_draw.THUMB_BOX[0], gw // stage_draw.THUMB_BOX[1])
    assert thumb.factor == f == 16  # a 8 x 8 mosaic of 256 x 256 tiles: 2062 px a side
    np.testing.assert_array_equal(thumb.levels, full.levels)  # the very same mapping
    want = block_means(full.channels_u8, f)
    assert thumb.channels_u8.shape == want.shape == (64, 16, 16)
    diff = np.abs(thumb.channels_u8.astype(np.float64) - want)
    assert diff.max() <= TOLERANCE[mode]
    assert diff.mean() < 0.5  # not just within the bound: the rounding averages out
    # the mosaic: the full view's columns, one pixel between the tiles
    assert thumb.grid_ncols == full.grid_ncols
    np.testing.assert_array_equal(thumb.grid_u8, render.make_grid(thumb.channels_u8,
                                                                  full.grid_ncols, 1))
    assert thumb.grid_u8.shape == (8 * 17 - 1, 8 * 17 - 1)


def test_the_layout_in_memory_does_not_change_a_thumbnail(conv1_output):
    a = stage_draw.thumbnail(conv1_output, "channel", "viridis")
    b = stage_draw.thumbnail(conv1_output.contiguous(), "channel", "viridis")
    np.testing.assert_array_equal(a.grid_u8, b.grid_u8)
    assert a.colormap == "viridis" and a.lut.shape == (256, 3)


def test_a_thumbnail_of_drawn_pixels_is_their_rounded_block_mean(conv1_output):
    full = render.render_stage(conv1_output, "channel", "gray", stats=False)
    thumb = stage_draw.thumbnail_of(full)
    want = block_means(full.channels_u8, thumb.factor)
    np.testing.assert_array_equal(thumb.channels_u8, np.floor(want + 0.5).astype(np.uint8))


def test_a_small_stage_thumbnail_is_the_full_mosaic(conv1_output):
    small = conv1_output[:12, :30, :41]  # a 4 x 3 mosaic of 30 x 41 tiles: no reduction
    for mode in render.NORMALIZE_MODES:
        full = render.render_stage(small, mode, "gray", stats=False)
        thumb = stage_draw.thumbnail(small, mode, "gray")
        assert thumb.factor == 1
        np.testing.assert_array_equal(thumb.grid_u8, full.grid_u8)
        np.testing.assert_array_equal(stage_draw.thumbnail_of(full).grid_u8, full.grid_u8)


def test_nan_and_inf_shrink_as_the_full_view_shows_them(conv1_output):
    x = conv1_output[:4].clone()
    x[0, 10:40, 10:40] = math.nan  # shown black
    x[1, :64, :] = math.inf  # white
    x[2, 100:, 100:] = -math.inf  # black
    x[3] = 0.25  # a constant channel: black everywhere, as in the full view
    x[3, 0, 0] = math.inf
    for mode in render.NORMALIZE_MODES:
        full = render.render_stage(x, mode, "gray", stats=False)
        thumb = stage_draw.thumbnail(x, mode, "gray")
        assert thumb.factor > 1
        want = block_means(full.channels_u8, thumb.factor)
        assert np.abs(thumb.channels_u8 - want).max() <= TOLERANCE[mode], mode


def test_which_stages_are_drawn_in_full():
    plane, vector = torch.zeros(3, 4, 4), torch.zeros(10)
    assert stage_draw.needs_full(5, plane, None)  # no set given: everything
    assert stage_draw.needs_full(5, plane, frozenset({0, 5}))
    assert not stage_draw.needs_full(4, plane, frozenset({0, 5}))
    assert stage_draw.needs_full(4, vector, frozenset({0, 5}))  # scores: always
    assert stage_draw.stage_tensor(torch.zeros(1, 6, 7)).shape == (1, 6, 7)  # A x B: one
    assert stage_draw.stage_tensor(torch.zeros(1, 10)).shape == (10,)

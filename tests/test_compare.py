"""core.compare: A - B of one stage and its statistics against numpy on a real photo, the
diverging picture centred at 0, and the message for stages of different shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as tvf

from layerlab.core import resources
from layerlab.core.colormaps import colormap_lut
from layerlab.core.compare import ShapeMismatch, compare_stage, difference


def photo() -> torch.Tensor:
    return tvf.to_tensor(Image.open(resources.sample("astronaut.jpg")).convert("L")).unsqueeze(0)


def test_difference_and_stats_equal_numpy_on_a_photo():
    x = photo()
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).reshape(1, 1, 3, 3)
    a = F.conv2d(x, sobel, padding=1)[0].numpy()  # (1, H, W)
    b = F.conv2d(x, sobel.transpose(-1, -2), padding=1)[0].numpy()
    c = compare_stage(a, b, what="stage 1 (sobel)", channel=0, colormap="gray")
    want = (a - b)[0]
    np.testing.assert_array_equal(c.difference.values, want)  # float32 A - B, exactly
    v = want.astype(np.float64)
    st = c.difference.stats
    assert (st["min"], st["max"], st["max_abs"]) == (v.min(), v.max(), np.abs(v).max())
    assert st["mean"] == pytest.approx(v.mean(), rel=1e-12, abs=1e-15)
    assert st["std"] == pytest.approx(v.std(ddof=1), rel=1e-12)
    assert st["count"] == v.size and c.what == "stage 1 (sobel), channel 0"
    # A and B share one range (lowest and highest of both); A - B is symmetric about 0.
    lo, hi = np.float32(min(a.min(), b.min())), np.float32(max(a.max(), b.max()))
    u8 = np.floor(np.clip((a[0] - lo) / (hi - lo) * np.float32(255) + np.float32(0.5), 0,
                          255)).astype(np.uint8)
    np.testing.assert_array_equal(c.pictures["A"], np.repeat(u8[..., None], 3, axis=2))
    lut = colormap_lut("RdBu")
    zero = want == 0
    assert zero.any() and (c.pictures["A - B"][zero] == lut[128]).all()  # 0: the middle
    m = np.abs(want).max()  # +m is the blue end (A > B), -m the red end
    top, bottom = want == m, want == -m
    assert top.any() or bottom.any()
    assert (c.pictures["A - B"][top] == lut[255]).all()
    assert (c.pictures["A - B"][bottom] == lut[0]).all()


def test_identical_stages_and_a_vector():
    v = np.linspace(-1, 1, 10, dtype=np.float32)
    c = compare_stage(v, v.copy(), what="stage 9 (fc2)")
    assert c.difference.identical and c.difference.stats["std"] == 0.0
    assert c.pictures["A - B"].shape == (1, 10, 3)


def test_shapes_that_differ_are_named_and_shown_alone():
    a = np.zeros((1, 4, 5), np.float32)
    b = np.ones((2, 4, 5), np.float32)
    with pytest.raises(ShapeMismatch, match=r"A is 1 x 4 x 5, B is 2 x 4 x 5"):
        difference(a, b)
    c = compare_stage(a, b, what="stage 1 (conv)", channel=1)
    assert c.difference is None and set(c.pictures) == {"A", "B"}
    assert c.problem.startswith("A and B differ in shape at stage 1 (conv): A is 1 x 4 x 5")
    assert compare_stage(a, a, what="s", channel=3).problem == "channel 3 is not in s"

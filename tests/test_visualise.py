"""What a channel looks for: a Sobel-x channel asks for vertical edges (checked with numpy
derivatives and torch's own convolution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerlab.core.fitting import FitError, preset_pipeline
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.core.preprocess import Normalize
from layerlab.core.visualise import (
    VisualProgress,
    kernel_picture,
    picture,
    run_to_end,
    visualise,
)

SOBEL_X = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])[None, None]


def sobel_stack(mode: str = "gray") -> Pipeline:
    channels = 1 if mode == "gray" else 3
    conv = new_layer("Conv2d", (channels, 64, 64), out_channels=2, kernel_size=3, padding=1,
                     bias=False)
    return preset_pipeline(Pipeline(InputSpec(mode), (conv,)), 0, "sobel x")


def response(image: np.ndarray, kernel: torch.Tensor) -> float:
    """The objective, by torch directly: the mean positive response of the channel."""
    x = torch.from_numpy(np.asarray(image, np.float32))[None]
    return float(F.relu(F.conv2d(x, kernel, padding=1)).mean())


def test_a_sobel_x_channel_looks_for_vertical_edges():
    steps = visualise(sobel_stack(), 1, 1, size=(48, 64), steps=60, seed=0,
                      report_every=15)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as done:
            result = done.value
            break
    reports = [e for e in events if e is not None]
    assert len(events) == 60 and [r.step for r in reports] == [15, 30, 45, 60]
    assert all(isinstance(r, VisualProgress) for r in reports)
    image = result.image
    assert image.shape == (1, 48, 64) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    np.testing.assert_array_equal(image, reports[-1].image)
    im = image[0].astype(np.float64)
    ddx = np.abs(np.diff(im, axis=1)).mean()
    ddy = np.abs(np.diff(im, axis=0)).mean()
    assert ddx > 3 * ddy  # vertical edges: the image changes across x, hardly along y
    # the starting noise: the same seeded draw, no direction preferred
    gen = torch.Generator().manual_seed(0)
    noise = (0.4 + 0.2 * torch.rand((1, 1, 48, 64), generator=gen))[0].numpy()
    n = noise[0].astype(np.float64)
    assert 0.8 < np.abs(np.diff(n, axis=1)).mean() / np.abs(np.diff(n, axis=0)).mean() < 1.25
    assert result.start_response == pytest.approx(response(noise, SOBEL_X), rel=1e-5)
    assert response(image, SOBEL_X) > 5 * response(noise, SOBEL_X)
    # a later report responds more than an earlier one
    assert reports[-1].response > reports[0].response
    # the same seed, the same image
    again = run_to_end(visualise(sobel_stack(), 1, 1, size=(48, 64), steps=60, seed=0))
    np.testing.assert_array_equal(again.image, image)


def test_rgb_after_relu_with_normalize_and_pictures():
    pipe = sobel_stack("rgb")
    pipe = Pipeline(InputSpec("rgb", normalize=Normalize((0.5,) * 3, (0.5,) * 3)),
                    (*pipe.layers, new_layer("ReLU")))
    result = run_to_end(visualise(pipe, 3, 0, size=(32, 32), steps=20, seed=1))
    assert result.image.shape == (3, 32, 32)
    assert result.responses[-1] > result.start_response
    shown = picture(result.image)
    assert shown.shape == (32, 32, 3) and shown.dtype == np.uint8
    np.testing.assert_array_equal(shown[..., 2],
                                  np.floor(result.image[2].astype(np.float64) * 255 + 0.5))
    # the kernel as a picture: 0 at mid-grey, the largest |w| at 0 and 255, RGB for 3 inputs
    k = kernel_picture(pipe, 0, 0)
    assert k.shape == (3, 3, 3)
    sobel_u8 = [[65, 128, 192], [1, 128, 255], [65, 128, 192]]  # floor(128 + 127 w / 2 + 0.5)
    np.testing.assert_array_equal(k[:, :, 0], sobel_u8)
    gray = kernel_picture(sobel_stack(), 0, 1)
    np.testing.assert_array_equal(gray, sobel_u8)
    assert kernel_picture(pipe, 1, 0) is None  # ReLU has no kernel


def test_bad_requests_say_what_is_wrong():
    with pytest.raises(FitError, match="channels 0 to 1, not 5"):
        visualise(sobel_stack(), 1, 5)
    with pytest.raises(FitError, match="stage 4 is not a layer's output"):
        visualise(sobel_stack(), 4, 0)
    with pytest.raises(FitError, match="learning rate"):
        visualise(sobel_stack(), 1, 0, lr=-1)

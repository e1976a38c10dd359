"""Fitting a kernel: from a seeded random 3x3 to Sobel-x on a real photo, checked against the
least-squares solution numpy computes on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from layerlab.core.edits import materialize
from layerlab.core.fitting import (
    FitError,
    FitProgress,
    fit,
    fittable_layers,
    preset_pipeline,
    run_to_end,
    stage_output,
    target_from_image,
)
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.core.resources import sample

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def camera(size: int = 192) -> Image.Image:
    """A crop of the real camera photo (small, so the fit takes about a second)."""
    return Image.open(sample("camera.png")).convert("L").crop((160, 60, 160 + size, 60 + size))


def one_conv(**args) -> Pipeline:
    conv = new_layer("Conv2d", (1, 64, 64), out_channels=1, kernel_size=3, padding=1,
                     bias=False, **args)
    return Pipeline(InputSpec("gray"), (conv, new_layer("ReLU")))


def photo_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, np.float32) / 255.0)[None, None]


def test_a_random_kernel_becomes_sobel_x():
    image = Image.open(sample("camera.png")).convert("L")  # 512 x 512
    start = one_conv()
    target_stack = preset_pipeline(start, 0, "sobel x")
    np.testing.assert_array_equal(materialize(target_stack.layers[0])["weight"][0, 0], SOBEL_X)
    target = stage_output(target_stack, image, 1)
    x = photo_tensor(image)
    # the target is torch's own convolution of the photo with Sobel-x
    want = F.conv2d(x, torch.from_numpy(SOBEL_X)[None, None], padding=1)
    torch.testing.assert_close(target, want, rtol=0, atol=1e-6)

    # numpy on its own: the least-squares kernel for this photo and target is Sobel-x, and
    # the problem is well posed (the 9 shifted copies of the photo are independent)
    padded = np.pad(x[0, 0].numpy().astype(np.float64), 1)
    h, w = x.shape[-2:]
    columns = np.stack([padded[dy:dy + h, dx:dx + w].ravel()
                        for dy in range(3) for dx in range(3)], axis=1)
    solution, *_ = np.linalg.lstsq(columns, target.numpy().astype(np.float64).ravel(),
                                   rcond=None)
    np.testing.assert_allclose(solution.reshape(3, 3), SOBEL_X, atol=1e-4)
    assert np.linalg.cond(columns) < 1e4

    seeded = materialize(start.layers[0])["weight"][0, 0]
    assert np.abs(seeded - SOBEL_X).max() > 1  # a random start, far from the answer
    steps = fit(start, image, target, 1, optimizer="lbfgs", lr=1.0, steps=30,
                report_every=5)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as done:
            result = done.value
            break
    reports = [e for e in events if e is not None]
    assert len(events) == 30 and [r.step for r in reports] == list(range(5, 35, 5))
    assert all(isinstance(r, FitProgress) for r in reports)
    fitted = result.pipeline.layers[0].params["weight"]
    assert np.abs(fitted[0, 0] - SOBEL_X).max() < 1e-3
    np.testing.assert_array_equal(fitted, reports[-1].weights[0]["weight"])
    assert result.losses[-1] < 1e-6 * result.losses[0]
    # monotone: no report's loss is above the one before
    losses = [r.loss for r in reports]
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[1] < losses[0]
    # the fitted stack's output is the target, as torch computes it
    out = F.conv2d(x, torch.from_numpy(np.array(fitted)), padding=1)
    assert float((out - target).abs().max()) < 1e-3


def test_adam_descends_and_a_seed_restarts_from_a_random_kernel():
    image = camera(96)
    start = preset_pipeline(one_conv(), 0, "identity")
    target = stage_output(preset_pipeline(start, 0, "sobel x"), image, 1)
    result = run_to_end(fit(start, image, target, 1, optimizer="adam", lr=0.05, steps=60,
                            seed=3))
    assert result.losses[-1] < 0.05 * result.losses[0]
    # seed 3 started from a kaiming-normal init (seed 3), not from the identity kernel
    x = photo_tensor(image)
    w0 = torch.nn.init.kaiming_normal_(torch.empty(1, 1, 3, 3),
                                       generator=torch.Generator().manual_seed(3))
    first = F.mse_loss(F.conv2d(x, w0, padding=1), target)
    assert result.losses[0] == pytest.approx(float(first), rel=1e-5)
    again = run_to_end(fit(start, image, target, 1, optimizer="adam", lr=0.05, steps=60,
                           seed=3))
    assert again.losses == result.losses  # deterministic


def test_fitting_a_later_stage_through_fixed_layers():
    image = camera(64)
    conv2 = new_layer("Conv2d", (1, 64, 64), out_channels=1, kernel_size=3, padding=1)
    pipe = Pipeline(InputSpec("gray"), (*one_conv().layers, conv2))
    target = stage_output(preset_pipeline(pipe, 2, "box blur 3"), image, 3)
    assert fittable_layers(pipe, 3) == [0, 2]
    result = run_to_end(fit(pipe, image, target, 3, optimizer="lbfgs", lr=1.0, steps=30))
    # only the last conv changed; the first keeps its exact (seeded) weights
    assert "weight" not in result.pipeline.layers[0].params
    assert set(result.weights) == {2}
    assert result.losses[-1] < 1e-3 * result.losses[0]
    both = run_to_end(fit(pipe, image, target, 3, layers=[0, 2], optimizer="sgd", lr=0.01,
                          steps=5))
    assert set(both.weights) == {0, 2} and both.steps == 5


def test_an_image_target_is_resized_to_the_stage(tmp_path):
    image = camera(96)
    blurred = tmp_path / "blurred.png"
    image.resize((48, 48)).save(blurred)  # a different size than the stage
    target = target_from_image(Image.open(blurred), (1, 96, 96))
    assert tuple(target.shape) == (1, 1, 96, 96)
    assert 0 <= float(target.min()) and float(target.max()) <= 1
    with pytest.raises(FitError, match="1 \\(gray\\) or 3 \\(RGB\\) channels"):
        target_from_image(image, (4, 96, 96))


def test_bad_targets_and_arguments_say_what_is_wrong():
    image = camera(64)
    pipe = one_conv()
    with pytest.raises(FitError, match="the target is 1 x 32 x 32 but stage 1 is 1 x 64 x 64"):
        fit(pipe, image, torch.zeros(1, 32, 32), 1)
    with pytest.raises(FitError, match="ReLU, which has no weights"):
        fit(pipe, image, torch.zeros(1, 64, 64), 2, layers=[1])
    with pytest.raises(FitError, match="stage 5 is not a layer's output"):
        fit(pipe, image, torch.zeros(1, 64, 64), 5)
    with pytest.raises(FitError, match="optimizer must be one of"):
        fit(pipe, image, torch.zeros(1, 64, 64), 1, optimizer="rmsprop")
    with pytest.raises(FitError, match="learning rate"):
        fit(pipe, image, torch.zeros(1, 64, 64), 1, lr=0)
    with pytest.raises(FitError, match="needs a convolution"):
        preset_pipeline(pipe, 1, "sobel x")


def test_targets_from_files(tmp_path):
    from layerlab.core.fitting import Target, make_target

    image = camera(64)
    pipe = one_conv()
    sobel = preset_pipeline(pipe, 0, "sobel x")
    path = tmp_path / "sobel.layerlab.json"
    sobel.save(path)
    from_file = make_target(Target("pipeline", str(path)), pipe, image, 1, 0)
    torch.testing.assert_close(from_file, stage_output(sobel, image, 1), rtol=0, atol=0)
    assert Target("pipeline", str(path)).describe() == "sobel.layerlab.json"
    rgb = tmp_path / "rgb.layerlab.json"
    Pipeline(InputSpec("rgb"), ()).save(rgb)
    with pytest.raises(FitError, match="takes rgb input but this one takes gray"):
        make_target(Target("pipeline", str(rgb)), pipe, image, 1, 0)
    with pytest.raises(FitError, match="target stack cannot be used"):
        make_target(Target("pipeline", str(tmp_path / "none.json")), pipe, image, 1, 0)
    blurred = tmp_path / "blurred.png"
    image.resize((32, 32)).save(blurred)
    from_image = make_target(Target("image", str(blurred)), pipe, image, 1, 0)
    assert tuple(from_image.shape) == (1, 1, 64, 64)
    with pytest.raises(FitError, match="missing.png"):
        make_target(Target("image", str(tmp_path / "missing.png")), pipe, image, 1, 0)


def test_stage_outputs_before_and_after_the_normalize_stage():
    from layerlab.core.preprocess import Normalize

    image = camera(32)
    pipe = Pipeline(InputSpec("gray", normalize=Normalize((0.5,), (0.25,))),
                    one_conv().layers)
    x = photo_tensor(image)
    torch.testing.assert_close(stage_output(pipe, image, 0), x, rtol=0, atol=0)
    torch.testing.assert_close(stage_output(pipe, image, 1), (x - 0.5) / 0.25)
    w = torch.from_numpy(np.array(materialize(pipe.layers[0])["weight"]))
    conv = F.conv2d((x - 0.5) / 0.25, w, padding=1)
    torch.testing.assert_close(stage_output(pipe, image, 2), conv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stage_output(pipe, image, 3), F.relu(conv), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(FitError, match="stages 0 to 3, not 4"):
        stage_output(pipe, image, 4)


def test_a_hand_blurred_photo_teaches_the_box_blur(tmp_path):
    image = camera(128)
    # the blur made by hand with numpy (zero padding, as the conv pads), saved as 8-bit PNG
    gray = np.asarray(image, np.float64) / 255.0
    padded = np.pad(gray, 1)
    blurred = sum(padded[dy:dy + 128, dx:dx + 128] for dy in range(3) for dx in range(3)) / 9
    path = tmp_path / "blurred.png"
    Image.fromarray(np.round(blurred * 255).astype(np.uint8), "L").save(path)
    target = target_from_image(Image.open(path), (1, 128, 128))
    result = run_to_end(fit(one_conv(), image, target, 1, optimizer="lbfgs", lr=1.0,
                            steps=30))
    kernel = result.weights[0]["weight"][0, 0]
    # the PNG's rounding to 1/255 is all that keeps the kernel from being exactly ones/9
    assert np.abs(kernel - 1 / 9).max() < 1e-3
    assert result.losses[-1] < 1e-5 * result.losses[0]

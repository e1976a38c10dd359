"""The three bundled lessons: they load, run, and show the shapes and values their lesson
claims (README "Teaching with LayerLab"), checked against torch called directly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as tvf

from layerlab.core import resources
from layerlab.core.engine import Engine
from layerlab.core.pipeline import Pipeline

CAMERA = Path(resources.sample("camera.png"))
LESSONS = ("lesson-conv-arithmetic", "lesson-edges-from-data", "lesson-pooling-vs-stride")


def camera() -> torch.Tensor:
    return tvf.to_tensor(Image.open(CAMERA).convert("L")).unsqueeze(0)


def outputs(pipeline: Pipeline, x: torch.Tensor) -> list[np.ndarray]:
    engine = Engine("cpu", channels_last=False)
    results = engine.run_all(pipeline, x)
    assert all(r.ok for r in results), [r.error for r in results]
    return [r.output[0].numpy() for r in results]


def out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """The tutorials' formula: floor((H + 2p - d(k - 1) - 1) / s + 1)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def test_the_lessons_are_bundled_examples():
    names = {p.name for p in resources.example_pipelines()}
    for lesson in LESSONS:
        assert f"{lesson}.layerlab.json" in names
        Pipeline.load(resources.example_pipeline(lesson))


def test_conv_arithmetic_sizes_follow_the_formula():
    pipe = Pipeline.load(resources.example_pipeline("lesson-conv-arithmetic"))
    x = camera()
    got = outputs(pipe, x)
    box = torch.ones(1, 1, 3, 3) / 9.0
    want = [x]
    want.append(F.conv2d(want[-1], box, padding=0))
    want.append(F.conv2d(want[-1], box, stride=2, padding=1))
    want.append(F.conv2d(want[-1], box, dilation=2))
    h1 = out_size(512, 3)
    h2 = out_size(h1, 3, s=2, p=1)
    h3 = out_size(h2, 3, d=2)
    assert (h1, h2, h3) == (510, 255, 251)  # the floor in stride 2: 509 / 2 + 1 = 255.5
    assert [g.shape for g in got] == [(1, 512, 512), (1, h1, h1), (1, h2, h2), (1, h3, h3)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w[0].numpy())


def test_edges_from_data_starts_from_a_seeded_random_kernel():
    pipe = Pipeline.load(resources.example_pipeline("lesson-edges-from-data"))
    [conv] = pipe.layers
    assert conv.type == "Conv2d" and not conv.params  # nothing explicit: the seeded init
    weight = torch.nn.init.kaiming_normal_(torch.empty(1, 1, 3, 3),
                                           generator=torch.Generator().manual_seed(7))
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).reshape(1, 1, 3, 3)
    assert float((weight - sobel_x).abs().max()) > 0.5  # far from the answer at the start
    x = camera()
    got = outputs(pipe, x)
    assert got[1].shape == (1, 512, 512)  # padding 1 keeps the size of a 3x3 conv's input
    np.testing.assert_array_equal(got[1], F.conv2d(x, weight, padding=1)[0].numpy())


def test_pooling_vs_stride_each_halves_the_photo_differently():
    pipe = Pipeline.load(resources.example_pipeline("lesson-pooling-vs-stride"))
    assert [layer.enabled for layer in pipe.layers] == [True, False, False, False]
    x = camera()
    only = {}
    for i, layer in enumerate(pipe.layers):  # the lesson: enable one layer at a time
        layers = tuple(replace(lay, enabled=(j == i)) for j, lay in enumerate(pipe.layers))
        only[layer.name] = outputs(replace(pipe, layers=layers), x)[-1]
    assert {v.shape for v in only.values()} == {(1, 256, 256)}
    np.testing.assert_array_equal(only["max-pool-2"], F.max_pool2d(x, 2)[0].numpy())
    np.testing.assert_array_equal(only["avg-pool-2"], F.avg_pool2d(x, 2)[0].numpy())
    # A 2x2 conv with weights 1/4 at stride 2 is the average pool (up to summation order);
    # a 1x1 conv at stride 2 keeps every second pixel and throws the rest away.
    np.testing.assert_allclose(only["conv-k2-stride-2"], only["avg-pool-2"], atol=1e-6)
    np.testing.assert_array_equal(only["conv-k1-stride-2"], x[0, :, ::2, ::2].numpy())
    assert float(np.abs(only["max-pool-2"] - only["avg-pool-2"]).max()) > 0.1


@pytest.mark.parametrize("lesson", LESSONS)
def test_each_lesson_runs_on_an_rgb_photo_through_the_gray_input(lesson):
    """The lessons are gray stacks; a colour photo is converted as the window does it."""
    from layerlab.core.imageio import load_image, to_tensor

    pipe = Pipeline.load(resources.example_pipeline(lesson))
    x = to_tensor(load_image(resources.sample("astronaut.jpg")).image, pipe.input.mode)
    assert x.shape[1] == 1
    assert all(o.ndim == 3 for o in outputs(pipe, x))

"""The tutorials' examples (the users' seeds), reproduced through LayerLab.

Each test writes the tutorial's own torch code as the tutorial writes it and checks that the
same stack in LayerLab (a pipeline run by the engine) gives the same numbers: bit for bit with
the tutorials' NCHW layout, to 1e-6 with the default CPU layout (channels_last). channels_last
sums the conv products in another order, so after several 800-term convolutions (the CIFAR-10
net) it drifts by a couple of float32 roundings: there the bound is 2e-6 of the stage's range.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torch.nn import Conv2d, Flatten, Linear, MaxPool2d, Sequential, Sigmoid, init
from torchvision.transforms import ToTensor

from layerlab.core.analysis import analyze
from layerlab.core.engine import Engine
from layerlab.core.kernels import preset
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline, new_layer

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
CAMERA = SAMPLES / "camera.png"  # grayscale photograph (scikit-image "camera")
CHELSEA = SAMPLES / "chelsea.jpg"  # RGB photograph (scikit-image "chelsea")


@pytest.fixture(params=[True, False], ids=["channels_last", "nchw"])
def engine(request) -> Engine:
    return Engine("cpu", channels_last=request.param)


def assert_same(engine: Engine, actual: torch.Tensor, expected: torch.Tensor, *,
                deep: bool = False) -> None:
    actual = actual.detach().cpu()
    expected = expected.detach().cpu().to(actual.dtype)
    assert actual.shape == expected.shape
    if engine.channels_last:
        if deep:
            bound = 2e-6 * max(1.0, float(expected.abs().max()))
            assert float((actual - expected).abs().max()) <= bound
        else:
            torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)
    else:
        assert torch.equal(actual, expected), (actual - expected).abs().max()


def run(engine: Engine, pipeline: Pipeline, image: torch.Tensor):
    results = engine.run_all(pipeline, image)
    assert all(r.ok for r in results), [r.error for r in results]
    return results


def gray_photo() -> torch.Tensor:
    # as the tutorials load it: Image.open(...).convert("L"), then ToTensor().unsqueeze(0)
    return ToTensor()(Image.open(CAMERA).convert("L")).unsqueeze(0)


def rgb_photo() -> torch.Tensor:
    return ToTensor()(Image.open(CHELSEA).convert("RGB")).unsqueeze(0)


def test_photos_are_real():
    import skimage.data

    gray = gray_photo()
    assert gray.shape == (1, 1, 512, 512)
    assert np.array_equal((gray[0, 0] * 255).round().byte().numpy(), skimage.data.camera())
    rgb = rgb_photo()
    assert rgb.shape[:2] == (1, 3) and min(rgb.shape[-2:]) >= 64
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0 and rgb.std() > 0.1


# --- convolution: the sharpen kernel on a grayscale photo ------------------------------------

def test_seed_sharpen_on_a_gray_photo(engine):
    # The tutorial, verbatim (but for the file name):
    img = Image.open(CAMERA).convert("L")
    to_tensor = ToTensor()
    img = to_tensor(img).unsqueeze(0)
    kernel = torch.ones(3, 3) / (-9.0)
    kernel[1][1] = 1
    conv = nn.Conv2d(1, 1, 3, 1, 1, bias=False)
    conv.weight.data = kernel.reshape(1, 1, 3, 3)
    img = conv(img)

    # LayerLab: Conv2d(1, 1, 3, 1, 1, bias=False) with the "tutorial sharpen" preset on gray input
    layer = new_layer("Conv2d", (1, 512, 512), in_channels=1, out_channels=1, kernel_size=3,
                      stride=1, padding=1, bias=False)
    layer = layer.with_param("weight", preset("tutorial sharpen").reshape(1, 1, 3, 3).numpy())
    pipeline = Pipeline(InputSpec("gray"), (layer,))
    # and through the pipeline file format, which must keep the float32 kernel exactly
    reloaded = Pipeline.from_json(pipeline.to_json())
    assert np.array_equal(reloaded.layers[0].params["weight"], kernel.reshape(1, 1, 3, 3))

    for p in (pipeline, reloaded):
        results = run(engine, p, gray_photo())
        assert [r.shape for r in results] == [(1, 512, 512), (1, 512, 512)]
        assert_same(engine, results[-1].output, img)
    # sharpening changes the photo (and keeps its mean brightness: the kernel sums to 1/9)
    assert not torch.allclose(img, gray_photo())


# --- pooling ---------------------------------------------------------------------------------

def test_avgpool_2_2_on_a_gray_photo(engine):
    to_tensor = ToTensor()
    img = Image.open(CAMERA).convert('L')
    img = to_tensor(img).unsqueeze(0)
    pool = nn.AvgPool2d(2, 2)
    img = pool(img).squeeze(0)

    pipeline = Pipeline(InputSpec("gray"), (new_layer("AvgPool2d", kernel_size=2, stride=2),))
    results = run(engine, pipeline, gray_photo())
    assert results[-1].shape == (1, 256, 256)
    assert_same(engine, results[-1].output.squeeze(0), img)


def test_maxpool_kernel_3_on_an_rgb_photo(engine):
    class Pool_test(nn.Module):
        def __init__(self):
            super(Pool_test, self).__init__()  # noqa: UP008 - as the tutorial writes it
            self.maxpool1 = MaxPool2d(kernel_size=3, ceil_mode=False)

        def forward(self, input):
            output = self.maxpool1(input)
            return output

    test = Pool_test()
    photo = rgb_photo()
    output = test(photo)

    pipeline = Pipeline(InputSpec("rgb"),
                        (new_layer("MaxPool2d", kernel_size=3, ceil_mode=False),))
    results = run(engine, pipeline, photo)
    h, w = photo.shape[-2:]
    assert results[-1].shape == (3, h // 3, w // 3)  # stride = kernel_size, floor
    assert_same(engine, results[-1].output, output)
    # and with ceil_mode=True the partial windows at the edge are kept
    ceil = run(engine, Pipeline(InputSpec("rgb"), (new_layer(
        "MaxPool2d", kernel_size=3, ceil_mode=True),)), photo)[-1]
    assert ceil.shape == (3, math.ceil(h / 3), math.ceil(w / 3))
    assert_same(engine, ceil.output, MaxPool2d(kernel_size=3, ceil_mode=True)(photo))


# --- activations -----------------------------------------------------------------------------

def test_relu_of_minus1_2_minus3(engine):
    layer = nn.ReLU()
    output = layer(torch.tensor([-1, 2, -3]))
    assert output.tolist() == [0, 2, 0]

    # a 1 x 3 "image" with those values, through a ReLU layer
    image = torch.tensor([-1, 2, -3], dtype=torch.float32).reshape(1, 1, 1, 3)
    results = run(engine, Pipeline(InputSpec("gray"), (new_layer("ReLU"),)), image)
    assert results[-1].shape == (1, 1, 3)
    assert results[-1].output.flatten().tolist() == [0.0, 2.0, 0.0]
    assert results[-1].output.flatten().tolist() == output.float().tolist()


@pytest.mark.parametrize("name", ["Sigmoid", "Tanh", "ReLU"])
def test_activations_on_a_photo(engine, name):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = getattr(nn, name)()

        def forward(self, input):
            return self.act(input)

    # shifted so that negative inputs occur too
    photo = rgb_photo() * 4 - 2
    expected = Model()(photo)
    results = run(engine, Pipeline(InputSpec("rgb"), (new_layer(name),)), photo)
    assert_same(engine, results[-1].output, expected)


def test_sigmoid_as_in_the_tutorial(engine):
    class RecoModel(nn.Module):
        def __init__(self):
            super(RecoModel, self).__init__()  # noqa: UP008
            self.sigmoid1 = Sigmoid()

        def forward(self, input):
            output = self.sigmoid1(input)
            return output

    photo = rgb_photo()
    output = RecoModel()(photo)
    results = run(engine, Pipeline(InputSpec("rgb"), (new_layer("Sigmoid"),)), photo)
    assert_same(engine, results[-1].output, output)
    # on [0, 1] images the sigmoid lands in [0.5, 0.731]
    assert 0.5 <= float(output.min()) and float(output.max()) <= 1 / (1 + math.exp(-1)) + 1e-6


# --- linear layers ---------------------------------------------------------------------------

def test_linear_4_5_on_rows(engine):
    layer = nn.Linear(4, 5)
    X = torch.randn(3, 4, generator=torch.Generator().manual_seed(7))
    output = layer(X)
    assert output.shape == (3, 5)

    # LayerLab: a 3 x 4 gray "image"; Linear acts on the last dimension (each row)
    spec = new_layer("Linear", (1, 3, 4), in_features=4, out_features=5)
    spec = spec.with_param("weight", layer.weight.detach().numpy())
    spec = spec.with_param("bias", layer.bias.detach().numpy())
    results = run(engine, Pipeline(InputSpec("gray"), (spec,)), X.reshape(1, 1, 3, 4))
    assert results[-1].shape == (1, 3, 5)
    assert_same(engine, results[-1].output.reshape(3, 5), output)


def test_sequential_block_linear_relu_linear(engine):
    block = nn.Sequential(
        nn.Linear(4, 5),
        nn.ReLU(),
        nn.Linear(5, 3))
    input_data = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))
    output_data = block(input_data)

    layers = (
        new_layer("Linear", (1, 2, 4), in_features=4, out_features=5)
        .with_param("weight", block[0].weight.detach().numpy())
        .with_param("bias", block[0].bias.detach().numpy()),
        new_layer("ReLU"),
        new_layer("Linear", (1, 2, 5), in_features=5, out_features=3)
        .with_param("weight", block[2].weight.detach().numpy())
        .with_param("bias", block[2].bias.detach().numpy()),
    )
    results = run(engine, Pipeline(InputSpec("gray"), layers), input_data.reshape(1, 1, 2, 4))
    assert [r.shape for r in results] == [(1, 2, 4), (1, 2, 5), (1, 2, 5), (1, 2, 3)]
    assert_same(engine, results[-1].output.reshape(2, 3), output_data)


# --- the CIFAR-10 tutorial: Conv2d(3, 6, 3, 1, 0) and the full net ---------------------------

def cifar_like_batch(n: int) -> torch.Tensor:
    """n 32 x 32 RGB crops of a real photo, shaped like a CIFAR-10 batch."""
    photo = Image.open(CHELSEA).convert("RGB")
    crops = []
    for i in range(n):
        x, y = (i * 37) % (photo.width - 96), (i * 23) % (photo.height - 96)
        crops.append(ToTensor()(photo.crop((x, y, x + 96, y + 96)).resize((32, 32))))
    return torch.stack(crops)


def test_conv2d_3_6_3_1_0_gives_6x30x30(engine):
    class Model(nn.Module):
        def __init__(self):
            super(Model, self).__init__()  # noqa: UP008
            self.conv1 = Conv2d(in_channels=3, out_channels=6, kernel_size=3, stride=1,
                                padding=0)

        def forward(self, x):
            x = self.conv1(x)
            return x

    imgs = cifar_like_batch(64)
    model = Model()
    out = model(imgs)
    assert imgs.shape == (64, 3, 32, 32)
    assert out.shape == (64, 6, 30, 30)
    assert torch.reshape(out, (-1, 3, 30, 30)).shape == (128, 3, 30, 30)

    layer = new_layer("Conv2d", (3, 32, 32), in_channels=3, out_channels=6, kernel_size=3,
                      stride=1, padding=0)
    layer = layer.with_param("weight", model.conv1.weight.detach().numpy())
    layer = layer.with_param("bias", model.conv1.bias.detach().numpy())
    pipeline = Pipeline(InputSpec("rgb", (32, 32)), (layer,))
    stages = analyze(pipeline, (32, 32)).stage_shapes()
    assert stages[-1].shape == (6, 30, 30)
    assert "floor((32 + 2*0 - 1*(3-1) - 1)/1 + 1) = 30" in stages[-1].formula
    assert stages[-1].parameter_count == 6 * 3 * 3 * 3 + 6
    for i in (0, 17, 63):
        results = run(engine, pipeline, imgs[i:i + 1])
        assert results[-1].shape == (6, 30, 30)
        # torch itself may sum a batch of 64 in another order than a single image
        torch.testing.assert_close(results[-1].output, out[i:i + 1], atol=1e-6, rtol=1e-6)
        assert_same(engine, results[-1].output, model(imgs[i:i + 1]))


CIFAR_JSON = """{"format": "layerlab.pipeline", "version": 1,
 "input": {"mode": "rgb", "resize": [32, 32]},
 "layers": [
  {"type": "Conv2d", "args": {"in_channels": 3, "out_channels": 32, "kernel_size": 5,
                              "stride": 1, "padding": 2}},
  {"type": "MaxPool2d", "args": {"kernel_size": 2}},
  {"type": "Conv2d", "args": {"in_channels": 32, "out_channels": 32, "kernel_size": 5,
                              "stride": 1, "padding": 2}},
  {"type": "MaxPool2d", "args": {"kernel_size": 2}},
  {"type": "Conv2d", "args": {"in_channels": 32, "out_channels": 64, "kernel_size": 5,
                              "stride": 1, "padding": 2}},
  {"type": "MaxPool2d", "args": {"kernel_size": 2}},
  {"type": "Flatten"},
  {"type": "Linear", "args": {"in_features": 1024, "out_features": 64}},
  {"type": "Linear", "args": {"in_features": 64, "out_features": 10}}]}"""


def tutorial_cifar_net() -> nn.Module:
    class Tudui(nn.Module):
        def __init__(self):
            super().__init__()
            self.model1 = Sequential(
                Conv2d(3, 32, 5, 1, 2),
                MaxPool2d(2),
                Conv2d(32, 32, 5, 1, 2),
                MaxPool2d(2),
                Conv2d(32, 64, 5, 1, 2),
                MaxPool2d(2),
                Flatten(),
                Linear(1024, 64),
                Linear(64, 10),
            )

        def forward(self, x):
            x = self.model1(x)
            return x

    return Tudui()


def test_cifar10_net_shapes():
    pipeline = Pipeline.from_json(CIFAR_JSON)
    stages = analyze(pipeline, (480, 640)).stage_shapes()  # any photo: resized to 32 x 32
    assert [s.shape for s in stages] == [
        (3, 32, 32), (32, 32, 32), (32, 16, 16), (32, 16, 16), (32, 8, 8), (64, 8, 8),
        (64, 4, 4), (1024,), (64,), (10,)]
    assert stages[7].formula == "64 * 4 * 4 = 1024"
    assert [s.parameter_count for s in stages] == [
        0, 3 * 32 * 25 + 32, 0, 32 * 32 * 25 + 32, 0, 32 * 64 * 25 + 64, 0, 0,
        1024 * 64 + 64, 64 * 10 + 10]
    # and torch agrees on every stage
    net = tutorial_cifar_net().eval()
    x = torch.ones((64, 3, 32, 32))
    seen = []
    for m in net.model1:
        x = m(x)
        seen.append(tuple(x.shape))
    assert seen == [(64, *s.shape) for s in stages[1:]]


def test_cifar10_net_values_equal_the_tutorial_net(engine):
    pipeline = Pipeline.from_json(CIFAR_JSON)
    # LayerLab's default init, by the documented torch calls: for every weight,
    # nn.init.kaiming_normal_(w, generator=torch.Generator().manual_seed(0)); biases zero
    assert all(dict(layer.init) == {"scheme": "kaiming_normal", "seed": 0}
               for layer in pipeline.layers)
    tudui = tutorial_cifar_net().eval()
    with torch.no_grad():
        for m in tudui.model1:
            if isinstance(m, Conv2d | Linear):
                nn.init.kaiming_normal_(m.weight, generator=torch.Generator().manual_seed(0))
                nn.init.zeros_(m.bias)

    for img in cifar_like_batch(3):
        img = img.unsqueeze(0)  # already 32 x 32, as CIFAR-10 images are
        results = run(engine, pipeline, img)
        x = img
        with torch.no_grad():
            for stage, module in zip(results[1:], tudui.model1, strict=True):
                x = module(x)
                assert stage.shape == tuple(x.shape[1:])
                assert_same(engine, stage.output, x, deep=True)
            assert_same(engine, results[-1].output, tudui(img), deep=True)
    assert results[-1].shape == (10,)


# --- initialisation ----------------------------------------------------------------------------

def test_xavier_normal_with_manual_seed_2021():
    with torch.random.fork_rng(devices=[]):
        # the tutorial, verbatim
        linear = nn.Linear(3, 4)
        print("默认初始化的权重:")
        print(linear.weight)
        torch.manual_seed(2021)
        init.xavier_normal_(linear.weight)
        print("Xavier正态分布初始化后的权重:")
        print(linear.weight)
    tutorial = linear.weight.detach().clone()

    layer = LayerSpec("Linear", new_layer("Linear", in_features=3, out_features=4).args,
                      init={"scheme": "xavier_normal", "seed": 2021})
    module = Engine("cpu").build_module(layer)
    # LayerLab seeds its own torch.Generator().manual_seed(2021): the same stream as the
    # global generator after torch.manual_seed(2021), so the very same weights
    assert torch.equal(module.weight.cpu(), tutorial)
    assert torch.count_nonzero(module.bias) == 0  # LayerLab zeroes biases
    # and the same through a pipeline file
    p = Pipeline.from_json('{"format": "layerlab.pipeline", "version": 1, "layers": ['
                           '{"type": "Linear", "args": {"in_features": 3, "out_features": 4},'
                           ' "init": {"scheme": "xavier_normal", "seed": 2021}}]}')
    assert torch.equal(Engine("cpu").build_module(p.layers[0]).weight, tutorial)
    # std = sqrt(2 / (fan_in + fan_out)) = sqrt(2/7); 12 samples cannot be far off
    assert 0.2 < float(tutorial.std()) < 1.0


# --- the output-size formula -------------------------------------------------------------------

@pytest.mark.parametrize("h, k, s, p, d", [
    (32, 5, 1, 2, 1),  # the tutorial's padding question: Hin = 32, k = 5, s = 1 -> p = 2
    (32, 3, 1, 0, 1),  # Conv2d(3, 6, 3, 1, 0): 30
    (32, 3, 1, 1, 1),  # the sharpen conv keeps the size
    (28, 5, 2, 0, 1),
    (17, 3, 2, 1, 2),
    (224, 7, 2, 3, 1),
    (10, 4, 3, 0, 1),
])
def test_output_size_formula(h, k, s, p, d):
    hout = math.floor((h + 2 * p - d * (k - 1) - 1) / s + 1)
    layer = new_layer("Conv2d", (1, h, h + 1), kernel_size=k, stride=s, padding=p, dilation=d)
    pipeline = Pipeline(InputSpec("gray"), (layer,))
    stage = analyze(pipeline, (h, h + 1)).stage_shapes()[-1]
    wout = math.floor((h + 1 + 2 * p - d * (k - 1) - 1) / s + 1)
    assert stage.shape == (1, hout, wout)
    assert stage.formula.splitlines() == [
        f"H_out = floor(({h} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {hout}",
        f"W_out = floor(({h + 1} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {wout}"]
    out = nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, h, h + 1))
    assert tuple(out.shape[-2:]) == (hout, wout)


def test_the_padding_question():
    # "Hin=32, padding[0]=?, dilation[0]=1, kernel_size[0]=5, stride[0]=1, Hout=32"
    solutions = [p for p in range(10)
                 if math.floor((32 + 2 * p - 1 * (5 - 1) - 1) / 1 + 1) == 32]
    assert solutions == [2]
    layer = new_layer("Conv2d", (3, 32, 32), out_channels=32, kernel_size=5, stride=1,
                      padding=2)
    stage = analyze(Pipeline(InputSpec("rgb"), (layer,)), (32, 32)).stage_shapes()[-1]
    assert stage.shape == (32, 32, 32)
    assert "H_out = floor((32 + 2*2 - 1*(5-1) - 1)/1 + 1) = 32" in stage.formula

"""The engine: incremental runs, layouts, errors in a stage; kernel presets; seeded init."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import ToTensor

from layerlab.core import kernels
from layerlab.core.analysis import analyze
from layerlab.core.engine import Engine, StageResult
from layerlab.core.kernels import INIT_SCHEMES, PRESETS, fit_kernel, preset
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline, new_layer
from layerlab.core.specs import OPS

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real RGB photograph, 1 x 3 x H x W in [0, 1] (ToTensor convention)."""
    return ToTensor()(Image.open(SAMPLES / "chelsea.jpg").convert("RGB")).unsqueeze(0)


@pytest.fixture(scope="module")
def small_photo(photo) -> torch.Tensor:
    return photo[..., 100:164, 150:230].clone()  # 64 x 80 crop


def conv(in_ch: int, out_ch: int, name: str, seed: int, **args) -> LayerSpec:
    rng = np.random.default_rng(seed)
    layer = new_layer("Conv2d", (in_ch, 8, 8), out_channels=out_ch, **{"padding": 1, **args})
    shapes = layer.op.parameter_shapes(dict(layer.args))
    layer = replace(layer, name=name)
    for pname, shape in shapes.items():
        layer = layer.with_param(pname, rng.standard_normal(shape).astype(np.float32) * 0.3)
    return layer


def four_stages() -> Pipeline:
    return Pipeline(InputSpec("rgb"), (
        conv(3, 8, "c1", 1), new_layer("ReLU"), conv(8, 8, "c2", 2), conv(8, 4, "c3", 3)))


def edit_cell(layer: LayerSpec, index: tuple[int, ...], value: float) -> LayerSpec:
    w = layer.params["weight"].copy()
    w[index] = value
    return layer.with_param("weight", w)


def outputs(results: list[StageResult]) -> list[torch.Tensor]:
    assert all(r.ok for r in results), [r.error for r in results]
    return [r.output for r in results]


def assert_equal_runs(a: list[StageResult], b: list[StageResult]) -> None:
    assert [r.shape for r in a] == [r.shape for r in b]
    for x, y in zip(outputs(a), outputs(b), strict=True):
        assert torch.equal(x, y)


# --- incremental runs -------------------------------------------------------------------------

def test_rerun_is_served_from_the_cache(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    first = engine.run_all(p, small_photo)
    assert [r.cached for r in first] == [False] * 5
    assert engine.rebuilds == 4 and engine.weight_updates == 0
    again = engine.run_all(p, small_photo)
    assert [r.cached for r in again[1:]] == [True] * 4
    assert all(r.seconds == 0.0 for r in again[1:])
    assert engine.rebuilds == 4 and engine.weight_updates == 0
    assert_equal_runs(first, again)


def test_kernel_edit_in_the_last_conv_recomputes_only_the_last_stage(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    before = engine.run_all(p, small_photo)
    module = engine._slots[3].module
    edited = p.replace_layer(3, edit_cell(p.layers[3], (2, 5, 1, 1), 4.0))
    after = engine.run_all(edited, small_photo)
    assert [r.cached for r in after[1:]] == [True, True, True, False]
    assert engine.weight_updates == 1 and engine.rebuilds == 4
    assert engine._slots[3].module is module  # updated in place, not rebuilt
    # the same numbers as a full run from a fresh engine
    assert_equal_runs(after, Engine("cpu").run_all(edited, small_photo))
    # only the edited output channel changed
    diff = (after[-1].output - before[-1].output).abs().amax(dim=(0, 2, 3))
    assert diff[2] > 0 and diff[[0, 1, 3]].max() == 0


def test_edit_in_the_first_layer_recomputes_everything_after_it(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    engine.run_all(p, small_photo)
    edited = p.replace_layer(0, edit_cell(p.layers[0], (0, 0, 0, 0), -2.5))
    after = engine.run_all(edited, small_photo)
    assert [r.cached for r in after] == [False] * 5
    assert engine.weight_updates == 1 and engine.rebuilds == 4
    assert_equal_runs(after, Engine("cpu").run_all(edited, small_photo))
    # a bias edit, an init change and a structural edit
    p2 = edited.replace_layer(2, edited.layers[2].with_param("bias", np.ones(8, np.float32)))
    r2 = engine.run_all(p2, small_photo)
    assert [r.cached for r in r2[1:]] == [True, True, False, False]
    assert engine.weight_updates == 2 and engine.rebuilds == 4
    p3 = p2.replace_layer(0, replace(new_layer("Conv2d", (3, 8, 8), out_channels=8, padding=1),
                                     init={"scheme": "xavier_uniform", "seed": 5}))
    r3 = engine.run_all(p3, small_photo)
    assert engine.rebuilds == 4 and engine.weight_updates == 3
    assert_equal_runs(r3, Engine("cpu").run_all(p3, small_photo))
    p4 = p3.replace_layer(0, p3.layers[0].with_args(kernel_size=5, padding=2))
    r4 = engine.run_all(p4, small_photo)
    assert engine.rebuilds == 5  # only the changed structure is rebuilt
    assert [r.cached for r in r4] == [False] * 5
    assert_equal_runs(r4, Engine("cpu").run_all(p4, small_photo))
    # and back: identical numbers to the first edit
    assert_equal_runs(engine.run_all(edited, small_photo),
                      Engine("cpu").run_all(edited, small_photo))


def test_many_random_edits_match_fresh_runs(small_photo):
    rng = np.random.default_rng(42)
    engine = Engine("cpu")
    p = four_stages()
    for _ in range(12):
        i = int(rng.choice([0, 2, 3]))
        w = p.layers[i].params["weight"]
        cell = tuple(int(rng.integers(0, n)) for n in w.shape)
        p = p.replace_layer(i, edit_cell(p.layers[i], cell, float(rng.normal())))
        if rng.random() < 0.3:
            j = int(rng.integers(0, 4))
            p = p.replace_layer(j, replace(p.layers[j], enabled=not p.layers[j].enabled))
        got = engine.run_all(p, small_photo)
        fresh = Engine("cpu").run_all(p, small_photo)
        assert [r.ok for r in got] == [r.ok for r in fresh]
        for a, b in zip(got, fresh, strict=True):
            assert a.error == b.error
            if a.ok:
                assert torch.equal(a.output, b.output)


def test_new_image_or_edited_image_recomputes(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    image = small_photo.clone()
    engine.run_all(p, image)
    image[0, 0, 0, 0] = 0.5  # in-place edit of the same tensor
    r = engine.run_all(p, image)
    assert [x.cached for x in r] == [False] * 5
    assert_equal_runs(r, Engine("cpu").run_all(p, image.clone()))
    other = torch.rand_like(image)
    r = engine.run_all(p, other)
    assert not any(x.cached for x in r)
    assert_equal_runs(r, Engine("cpu").run_all(p, other))


def test_a_new_tensor_never_hits_the_stages_of_a_freed_one(small_photo):
    # A run abandoned after the input stage must not leave stages that a later tensor, which
    # may reuse a freed tensor's id(), would be served from.
    p = Pipeline(InputSpec("rgb"), (new_layer("Conv2d", (3, 8, 8), out_channels=2),))
    engine = Engine("cpu")
    for i in range(12):
        a = torch.rand(1, 3, 16, 16)
        engine.run_all(p, a)
        gen = engine.run(p, torch.rand(1, 3, 16, 16))
        next(gen)  # only the prepared input was wanted
        gen.close()
        del a  # freed at once (reference counting); its id() is free for reuse
        c = torch.rand(1, 3, 16, 16)
        got = engine.run_all(p, c)
        assert torch.equal(got[-1].output, Engine("cpu").run_all(p, c)[-1].output), i


def test_image_key_lets_an_equal_image_hit_the_cache(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    engine.run_all(p, small_photo, image_key="chelsea")
    again = engine.run_all(p, small_photo.clone(), image_key="chelsea")
    assert [r.cached for r in again[1:]] == [True] * 4


def test_cache_false_keeps_nothing(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    engine.run_all(p, small_photo, cache=False)
    r = engine.run_all(p, small_photo, cache=False)
    assert not any(x.cached for x in r)


def test_cancel_between_stages(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    # polled before each layer; the generator is lazy, so this stops after two layers
    gen = engine.run(p, small_photo, cancel=lambda: len(got) >= 3)
    got = []
    for r in gen:
        got.append(r)
    assert len(got) == 3
    full = engine.run_all(p, small_photo)
    assert [r.cached for r in full[1:]] == [True, True, False, False]
    assert_equal_runs(full, Engine("cpu").run_all(p, small_photo))


# --- layouts ----------------------------------------------------------------------------------

def layout_stacks() -> dict[str, tuple[LayerSpec, ...]]:
    return {
        "conv": (conv(3, 16, "a", 1), new_layer("ReLU"), conv(16, 8, "b", 2, stride=2),
                 conv(8, 4, "c", 3, kernel_size=5, dilation=2)),
        "depthwise": (conv(3, 12, "a", 4), conv(12, 12, "dw", 5, groups=12),
                      conv(12, 12, "dw2", 6, groups=12, kernel_size=[3, 7], padding="same",
                           padding_mode="reflect"),
                      conv(12, 6, "pw", 7, kernel_size=1, padding=0)),
        "pool": (new_layer("MaxPool2d", kernel_size=3, stride=2, padding=1, ceil_mode=True),
                 conv(3, 8, "a", 8, padding_mode="circular"),
                 new_layer("AvgPool2d", kernel_size=2, count_include_pad=False),
                 new_layer("ReLU"),  # odd powers of negatives would be NaN in LPPool2d
                 new_layer("LPPool2d", kernel_size=2, norm_type=3.0),
                 new_layer("MaxPool2d", kernel_size=2, dilation=2),
                 new_layer("AdaptiveAvgPool2d", output_size=[5, 7]),
                 new_layer("AdaptiveMaxPool2d", output_size=3)),
        "mixed": (conv(3, 8, "a", 9), new_layer("BatchNorm2d", (8, 1, 1)),
                  new_layer("GroupNorm", (8, 1, 1), num_groups=4), new_layer("SiLU"),
                  new_layer("Upsample", scale_factor=1.5, mode="bilinear"),
                  new_layer("InstanceNorm2d", (8, 1, 1), affine=True),
                  new_layer("ReflectionPad2d", padding=[1, 2, 3, 4]),
                  new_layer("Softmax2d"), new_layer("LocalResponseNorm", size=3),
                  new_layer("Flatten"), new_layer("LayerNorm", normalized_shape=[1]),
                  ),
    }


@pytest.mark.parametrize("stack", ["conv", "depthwise", "pool", "mixed"])
def test_channels_last_equals_nchw(photo, stack):
    """Same numbers to 1e-5 in either layout; the norm layers' statistics ("mixed") are summed
    in another order on channels_last, and torch's CPU GroupNorm is markedly less precise there
    (max error ~2e-5 against float64, NCHW ~4e-7), so that stack gets 3e-5 of each stage's
    range."""
    layers = layout_stacks()[stack]
    if stack == "mixed":  # LayerNorm over the flattened vector
        n = analyze(Pipeline(InputSpec("rgb"), layers[:-1]),
                    tuple(photo.shape[-2:])).stage_shapes()
        layers = (*layers[:-1], new_layer("LayerNorm", normalized_shape=list(n[-1].shape)))
    p = Pipeline(InputSpec("rgb"), layers)
    cl = Engine("cpu", channels_last=True).run_all(p, photo)
    nchw = Engine("cpu", channels_last=False).run_all(p, photo)
    expected = analyze(p, tuple(photo.shape[-2:])).stage_shapes()
    assert [r.shape for r in cl] == [r.shape for r in nchw] == [s.shape for s in expected]
    for a, b in zip(outputs(cl), outputs(nchw), strict=True):
        assert torch.isfinite(a).all()
        if stack == "mixed":
            assert float((a - b).abs().max()) <= 3e-5 * max(1.0, float(b.abs().max()))
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        if b.dim() == 4:
            assert b.is_contiguous()
    assert cl[1].output.is_contiguous(memory_format=torch.channels_last)
    # and NCHW is exactly what the torch modules give when called one after another
    x = photo
    engine = Engine("cpu", channels_last=False)
    with torch.no_grad():
        for i, (layer, r) in enumerate(zip(p.layers, nchw[1:], strict=True)):
            x = engine.build_module(layer)(x)
            assert torch.equal(x, r.output), i


# --- disabling ----------------------------------------------------------------------------------

def test_disabling_a_layer(small_photo):
    engine = Engine("cpu")
    p = four_stages()
    engine.run_all(p, small_photo)
    off = p.replace_layer(1, replace(p.layers[1], enabled=False))
    r = engine.run_all(off, small_photo)
    assert [x.layer_index for x in r] == [-1, 0, 2, 3]
    assert [x.name for x in r] == ["input", "c1", "c2", "c3"]
    assert [x.cached for x in r[1:]] == [True, False, False]
    without = Pipeline(InputSpec("rgb"), (p.layers[0], p.layers[2], p.layers[3]))
    assert_equal_runs(r, Engine("cpu").run_all(without, small_photo))
    # enabling it again gives the original numbers
    assert_equal_runs(engine.run_all(p, small_photo), Engine("cpu").run_all(p, small_photo))
    # everything disabled: the input only
    none = Pipeline(InputSpec("rgb"), tuple(replace(x, enabled=False) for x in p.layers))
    r = engine.run_all(none, small_photo)
    assert len(r) == 1 and torch.equal(r[0].output, small_photo)


# --- an error in a stage -----------------------------------------------------------------------

def test_shape_failure_in_the_middle_keeps_the_earlier_stages(small_photo):
    p = Pipeline(InputSpec("rgb"), (
        conv(3, 8, "c1", 1), new_layer("ReLU"),
        replace(new_layer("Conv2d", (3, 8, 8), out_channels=4), name="wrong"),
        new_layer("MaxPool2d")))
    engine = Engine("cpu")
    r = engine.run_all(p, small_photo)
    assert [x.ok for x in r] == [True, True, True, False]
    assert r[-1].output is None and r[-1].layer_index == 2 and r[-1].name == "wrong"
    assert "layer 2 ('wrong')" in r[-1].error and "in_channels" in r[-1].error
    assert "8 channels" in r[-1].error
    assert engine.rebuilds == 2  # the broken layer and the one after were never built
    fixed = p.replace_layer(2, p.layers[2].with_args(in_channels=8))
    r2 = engine.run_all(fixed, small_photo)
    assert all(x.ok for x in r2) and [x.cached for x in r2[1:]] == [True, True, False, False]
    # a kernel larger than the shrunken image, deep in the stack
    deep = Pipeline(InputSpec("rgb"), (
        new_layer("MaxPool2d", kernel_size=8), new_layer("MaxPool2d", kernel_size=4),
        new_layer("Conv2d", (3, 2, 2), kernel_size=3)))
    r3 = engine.run_all(deep, small_photo)
    assert [x.shape for x in r3[:3]] == [(3, 64, 80), (3, 8, 10), (3, 2, 2)]
    assert not r3[-1].ok and "layer 2" in r3[-1].error and "kernel" in r3[-1].error


def test_torch_failure_in_a_stage_becomes_an_error_result(small_photo, monkeypatch):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("simulated failure\nwith a second line")

    real = Engine.build_module

    def build(self, layer):
        return Broken() if layer.name == "boom" else real(self, layer)

    monkeypatch.setattr(Engine, "build_module", build)
    p = Pipeline(InputSpec("rgb"), (conv(3, 4, "ok", 1), replace(new_layer("ReLU"), name="boom"),
                                    new_layer("Sigmoid")))
    r = Engine("cpu").run_all(p, small_photo)
    assert [x.ok for x in r] == [True, True, False]
    assert r[-1].error == "layer 1 (boom): ReLU failed: simulated failure"


# --- kernel presets ----------------------------------------------------------------------------

PUBLISHED = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "sobel x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "prewitt x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "prewitt y": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "laplacian 4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "laplacian 8": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "outline": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_integer_presets_equal_their_published_definitions(name):
    k = preset(name)
    assert k.dtype == torch.float32 and k.shape == (3, 3)
    assert torch.equal(k, torch.tensor(PUBLISHED[name], dtype=torch.float32))


def test_sobel_is_the_derivative_times_the_smoothing():
    assert torch.equal(preset("sobel x"), torch.outer(torch.tensor([1., 2., 1.]),
                                                      torch.tensor([-1., 0., 1.])))
    assert torch.equal(preset("sobel y"), preset("sobel x").T)
    assert torch.equal(preset("prewitt y"), preset("prewitt x").T)


def test_gaussian_presets_are_binomial_and_sum_to_one():
    g3 = torch.tensor([1., 2., 1.])
    g5 = torch.tensor([1., 4., 6., 4., 1.])
    assert torch.equal(preset("gaussian 3"), torch.outer(g3, g3) / 16)
    assert torch.equal(preset("gaussian 5"), torch.outer(g5, g5) / 256)
    for name in ("gaussian 3", "gaussian 5"):
        k = preset(name)
        assert float(k.sum()) == 1.0  # powers of two: exact
        assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and (k > 0).all()


def test_box_blur_presets():
    assert torch.equal(preset("box blur 3"), torch.full((3, 3), 1 / 9.0))
    assert torch.equal(preset("box blur 5"), torch.full((5, 5), 1 / 25.0))
    for name in ("box blur 3", "box blur 5"):
        assert float(preset(name).sum()) == pytest.approx(1.0, abs=1e-6)


def test_seed_sharpen_is_bit_exact():
    kernel = torch.ones(3, 3) / (-9.0)
    kernel[1][1] = 1
    got = preset("tutorial sharpen")
    assert got.dtype == torch.float32
    assert torch.equal(got, kernel)
    assert got.numpy().tobytes() == kernel.numpy().tobytes()
    assert float(got.sum()) == pytest.approx(1 - 8 / 9, abs=1e-6)


def test_presets_behave_on_a_photo(photo):
    gray = photo.mean(dim=1, keepdim=True)
    flat = torch.full((1, 1, 16, 16), 0.4)

    def apply(name, x):
        k = preset(name)
        return nn.functional.conv2d(x, k.reshape(1, 1, *k.shape))

    for name in ("sobel x", "sobel y", "laplacian 4", "laplacian 8", "outline",
                 "prewitt x", "prewitt y"):
        assert apply(name, flat).abs().max() < 1e-6, name  # zero-sum: flat -> 0
        assert apply(name, gray).abs().max() > 0.1, name
    for name in ("identity", "sharpen", "gaussian 3", "gaussian 5", "box blur 3"):
        assert torch.allclose(apply(name, flat), torch.full_like(apply(name, flat), 0.4))
    assert torch.equal(apply("identity", gray), gray[..., 1:-1, 1:-1])


def test_every_preset_is_fresh_and_helped():
    assert set(kernels.PRESET_HELP) == set(PRESETS)
    a = preset("sobel x")
    a[0, 0] = 99
    assert preset("sobel x")[0, 0] == -1  # callers may edit their copy
    with pytest.raises(ValueError, match="unknown kernel preset"):
        preset("nope")


def test_fit_kernel_centres_and_crops():
    k = preset("sobel x")
    big = fit_kernel(k, (5, 5))
    assert torch.equal(big[1:4, 1:4], k) and big.abs().sum() == k.abs().sum()
    assert torch.equal(fit_kernel(preset("gaussian 5"), (3, 3)),
                       preset("gaussian 5")[1:4, 1:4])
    assert torch.equal(fit_kernel(k, (3, 3)), k)


# --- seeded initialisation -------------------------------------------------------------------

def init_layer(scheme: str, seed: int, **extra) -> LayerSpec:
    args = OPS["Conv2d"].normalize_args({"in_channels": 3, "out_channels": 6, "kernel_size": 5})
    return LayerSpec("Conv2d", args, init={"scheme": scheme, "seed": seed, **extra})


@pytest.mark.parametrize("scheme", [s for s in INIT_SCHEMES if s != "constant"])
def test_init_is_reproducible_per_seed(scheme):
    extra = {"mean": 0.0, "std": 0.02} if scheme == "normal" else {}
    w = [Engine("cpu").build_module(init_layer(scheme, s, **extra)).weight for s in (7, 7, 8)]
    assert torch.equal(w[0], w[1])
    assert not torch.equal(w[0], w[2])
    assert w[0].std() > 0


@pytest.mark.parametrize("scheme, call", [
    ("kaiming_normal", lambda w, g: nn.init.kaiming_normal_(w, generator=g)),
    ("kaiming_uniform", lambda w, g: nn.init.kaiming_uniform_(w, generator=g)),
    ("xavier_normal", lambda w, g: nn.init.xavier_normal_(w, generator=g)),
    ("xavier_uniform", lambda w, g: nn.init.xavier_uniform_(w, generator=g)),
    ("normal", lambda w, g: nn.init.normal_(w, mean=0.5, std=0.1, generator=g)),
])
def test_init_matches_torch_nn_init_with_a_seeded_generator(scheme, call):
    extra = {"mean": 0.5, "std": 0.1} if scheme == "normal" else {}
    for seed in (0, 1, 2021, 2**40 + 3):
        got = Engine("cpu").build_module(init_layer(scheme, seed, **extra))
        ref = nn.Conv2d(3, 6, 5)
        with torch.no_grad():
            call(ref.weight, torch.Generator().manual_seed(seed))
        assert torch.equal(got.weight, ref.weight)
        assert torch.count_nonzero(got.bias) == 0
    # and the documented expression is that very call
    expr = kernels.init_expression({"scheme": scheme, "seed": 0, **extra}, "w", "g")
    assert expr.startswith(f"nn.init.{scheme}_(w")
    w = torch.empty(6, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        eval(expr, {"nn": nn, "w": w, "g": g})  # noqa: S307 - our own generated text
    assert torch.equal(w, Engine("cpu").build_module(init_layer(scheme, 0, **extra)).weight)


def test_constant_and_torch_default_init():
    m = Engine("cpu").build_module(init_layer("constant", 0, value=0.25))
    assert torch.equal(m.weight, torch.full_like(m.weight, 0.25))
    a = Engine("cpu").build_module(init_layer("torch_default", 11))
    b = Engine("cpu").build_module(init_layer("torch_default", 11))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        ref = nn.Conv2d(3, 6, 5)  # torch's own default init, right after seeding
    assert torch.equal(a.weight, ref.weight) and torch.equal(a.bias, ref.bias)


def test_given_params_win_over_init_and_norm_layers_keep_torch_defaults():
    layer = init_layer("kaiming_normal", 0).with_param("bias", np.arange(6, dtype=np.float32))
    m = Engine("cpu").build_module(layer)
    assert torch.equal(m.bias, torch.arange(6, dtype=torch.float32))
    assert torch.equal(m.weight, Engine("cpu").build_module(init_layer("kaiming_normal",
                                                                       0)).weight)
    bn = Engine("cpu").build_module(new_layer("BatchNorm2d", (4, 8, 8)))
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_var, torch.ones(4))
    linear = replace(new_layer("Linear", (3,), out_features=4),
                     init={"scheme": "xavier_normal", "seed": 2021})
    module = Engine("cpu").build_module(linear)
    assert math.isclose(float(module.bias.detach().abs().sum()), 0.0)


def test_the_old_name_of_the_tutorial_sharpen_preset_still_works():
    want = torch.full((3, 3), -1 / 9.0)
    want[1, 1] = 1.0
    assert torch.equal(preset("tutorial sharpen"), want)
    assert torch.equal(preset("seed sharpen"), want)

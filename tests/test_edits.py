"""Edit helpers on specs (core.edits): weights against torch's own init, fitting weights to new
arguments, following the input's channel count."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layerlab.core.edits import (
    adapt_in_channels,
    fit_params,
    follow_input_channels,
    initial_state,
    materialize,
)
from layerlab.core.engine import Engine
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer


def seeded(layer, scheme, seed, **extra):
    return replace(layer, init={"scheme": scheme, "seed": seed, **extra})


CALLS = {
    "kaiming_normal": lambda w, g: nn.init.kaiming_normal_(w, generator=g),
    "kaiming_uniform": lambda w, g: nn.init.kaiming_uniform_(w, generator=g),
    "xavier_normal": lambda w, g: nn.init.xavier_normal_(w, generator=g),
    "xavier_uniform": lambda w, g: nn.init.xavier_uniform_(w, generator=g),
    "normal": lambda w, g: nn.init.normal_(w, mean=0.5, std=0.1, generator=g),
    "constant": lambda w, g: nn.init.constant_(w, 0.25),
}


@pytest.mark.parametrize("scheme", list(CALLS))
@pytest.mark.parametrize("make", [
    lambda: (new_layer("Conv2d", (3, 8, 8), out_channels=6, kernel_size=[5, 3], groups=3),
             nn.Conv2d(3, 6, (5, 3), groups=3)),
    lambda: (new_layer("Linear", (20,), out_features=7), nn.Linear(20, 7)),
])
def test_materialize_is_torch_init_bit_for_bit(scheme, make):
    extra = {"normal": {"mean": 0.5, "std": 0.1}, "constant": {"value": 0.25}}.get(scheme, {})
    for seed in (0, 3, 2**40 + 1):
        layer, ref = make()
        got = materialize(seeded(layer, scheme, seed, **extra))
        with torch.no_grad():
            CALLS[scheme](ref.weight, torch.Generator().manual_seed(seed))
            ref.bias.zero_()
        assert set(got) == {"weight", "bias"}
        assert got["weight"].tobytes() == ref.weight.detach().numpy().tobytes()
        assert got["bias"].tobytes() == ref.bias.detach().numpy().tobytes()
        assert got["weight"].dtype == np.float32 and not got["weight"].flags.writeable


def test_torch_default_is_torch_module_init_after_seeding():
    layer = seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4), "torch_default", 11)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        ref = nn.Conv2d(3, 4, 3)
    got = materialize(layer)
    assert torch.equal(torch.tensor(got["weight"]), ref.weight.detach())
    assert torch.equal(torch.tensor(got["bias"]), ref.bias.detach())
    # explicit numbers win; the rest still comes from torch's init under the seed
    mixed = materialize(layer.with_param("weight", np.ones((4, 3, 3, 3), np.float32)))
    assert (mixed["weight"] == 1).all()
    assert torch.equal(torch.tensor(mixed["bias"]), ref.bias.detach())


def test_torch_default_kept_for_small_layers_stays_torchs_and_fresh(monkeypatch):
    # A kernel value typed keeps the layer's structure and init: its torch_default tensors
    # are kept, not rebuilt, and each caller still gets its own copies.
    layer = seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4), "torch_default", 12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        ref = nn.Conv2d(3, 4, 3)
    seeds = []
    real_seed = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: (seeds.append(s), real_seed(s))[1])
    for k in range(3):
        edited = layer.with_param("weight", np.full((4, 3, 3, 3), k, np.float32))
        first = initial_state(edited)
        assert torch.equal(first["bias"], ref.bias.detach())
        assert (first["weight"] == k).all()
        first["bias"].add_(1.0)  # a module trained on it (the fit panel) changes its copy
        assert torch.equal(initial_state(edited)["bias"], ref.bias.detach())
    assert seeds.count(12) <= 1  # built (at most) once: kept since an earlier test
    # another seed or other arguments are other tensors
    other = initial_state(seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4),
                                 "torch_default", 13))
    assert not torch.equal(other["bias"], ref.bias.detach())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12)
        ref5 = nn.Conv2d(3, 5, 3)
    five = initial_state(seeded(new_layer("Conv2d", (3, 8, 8), out_channels=5),
                                "torch_default", 12))
    assert torch.equal(five["weight"], ref5.weight.detach())


def test_seeded_builds_in_two_threads_keep_their_own_seeds():
    # The worker and the window both build under torch's global seed (torch_default layers,
    # random model weights): interleaved, one would take the other's numbers, and a kept
    # torch_default state would keep them.
    import threading

    from layerlab.core import edits
    from layerlab.core.kernels import torch_seeded

    layers = [seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4), "torch_default", 5000 + s)
              for s in range(120)]
    refs = []
    for s in range(120):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5000 + s)
            refs.append(nn.Conv2d(3, 4, 3).bias.detach())
    stop = threading.Event()

    def other_builds():
        while not stop.is_set():
            with torch_seeded(999):
                nn.Conv2d(3, 4, 3)

    thread = threading.Thread(target=other_builds)
    thread.start()
    try:
        got = [initial_state(layer)["bias"] for layer in layers]
    finally:
        stop.set()
        thread.join()
    assert all(torch.equal(g, r) for g, r in zip(got, refs, strict=True))
    kept = [initial_state(layer)["bias"] for layer in layers]
    assert all(torch.equal(g, r) for g, r in zip(kept, refs, strict=True))
    assert len(edits._DEFAULT_STATES) > 0


@pytest.mark.parametrize("layer, ref", [
    (new_layer("BatchNorm2d", (5, 4, 4)), nn.BatchNorm2d(5)),
    (new_layer("InstanceNorm2d", (5, 4, 4), affine=True, track_running_stats=True),
     nn.InstanceNorm2d(5, affine=True, track_running_stats=True)),
    (new_layer("GroupNorm", (6, 4, 4), num_groups=3), nn.GroupNorm(3, 6)),
    (new_layer("LayerNorm", (2, 3, 4)), nn.LayerNorm([2, 3, 4])),
])
def test_norm_layers_start_at_torch_defaults(layer, ref):
    got = materialize(layer)
    want = {k: v for k, v in ref.state_dict().items() if v.is_floating_point()}
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k].tobytes() == v.numpy().tobytes(), k


def test_the_engine_runs_with_the_materialized_values():
    layer = seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4), "xavier_uniform", 5)
    layer = layer.with_param("bias", np.arange(4, dtype=np.float32))
    module = Engine("cpu", channels_last=False).build_module(layer)
    values = materialize(layer)
    for k, v in module.state_dict().items():
        assert v.detach().numpy().tobytes() == values[k].tobytes()
    bn = Engine("cpu").build_module(new_layer("BatchNorm2d", (4, 8, 8)))
    assert int(bn.num_batches_tracked) == 0  # integer buffers are torch's zero, not garbage
    fresh = initial_state(layer)
    fresh["weight"].add_(1)  # a fresh copy: the cache is untouched
    assert materialize(layer)["weight"].tobytes() == values["weight"].tobytes()


def sharpen() -> np.ndarray:
    k = torch.ones(3, 3) / -9.0
    k[1][1] = 1
    return k.numpy()[None, None]


def test_adapt_in_channels_keeps_the_response_to_gray():
    conv = new_layer("Conv2d", (1, 8, 8), kernel_size=3, padding=1, bias=False)
    conv = conv.with_param("weight", sharpen())
    gray = torch.rand(1, 1, 9, 7)
    rgb_image = gray.repeat(1, 3, 1, 1)  # R = G = B
    rgb, note = adapt_in_channels(conv, 3)
    assert rgb.args["in_channels"] == 3 and note.startswith("in_channels 1 → 3, kernel split")
    torch.testing.assert_close(F.conv2d(rgb_image, torch.tensor(rgb.params["weight"]),
                                        padding=1),
                               F.conv2d(gray, torch.from_numpy(sharpen()), padding=1))
    back, note = adapt_in_channels(rgb, 1)
    assert "summed" in note
    torch.testing.assert_close(F.conv2d(gray, torch.tensor(back.params["weight"]),
                                        padding=1),
                               F.conv2d(rgb_image, torch.tensor(rgb.params["weight"]),
                                        padding=1))
    bn = new_layer("BatchNorm2d", (3, 8, 8)).with_param("weight", np.array([2, 3, 4],
                                                                           np.float32))
    one, note = adapt_in_channels(bn, 1)
    assert one.args["num_features"] == 1 and one.params["weight"].tolist() == [2.0]
    with pytest.raises(ValueError):
        adapt_in_channels(new_layer("ReLU"), 3)


def test_fit_params_centres_old_kernels_and_inits_new_channels():
    conv = new_layer("Conv2d", (1, 8, 8), kernel_size=3, padding=1, bias=False)
    conv = conv.with_param("weight", sharpen())
    bigger, note = fit_params(conv.with_args(kernel_size=5, padding=2))
    assert bigger.params["weight"].shape == (1, 1, 5, 5) and note
    np.testing.assert_array_equal(bigger.params["weight"][0, 0, 1:4, 1:4], sharpen()[0, 0])
    assert (bigger.params["weight"][0, 0, 0] == 0).all()
    wider, _ = fit_params(conv.with_args(out_channels=3))
    fresh = nn.Conv2d(1, 3, 3, bias=False)
    with torch.no_grad():
        nn.init.kaiming_normal_(fresh.weight, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(wider.params["weight"][0], sharpen()[0])
    np.testing.assert_array_equal(wider.params["weight"][1:], fresh.weight.detach().numpy()[1:])
    same, note = fit_params(conv.with_args(kernel_size=0))  # invalid args: left alone
    assert same.params["weight"].shape == (1, 1, 3, 3) and note is None


def test_follow_input_channels_uses_the_spec_rule():
    conv = new_layer("Conv2d", (3, 8, 8), out_channels=3, kernel_size=3)
    p = Pipeline(InputSpec("gray"), (conv, new_layer("ReLU")))
    after, index, note = follow_input_channels(p, 3, 1)
    assert index == 0 and after.layers[0].args["in_channels"] == 1 and note.startswith("conv2d")
    grouped = Pipeline(InputSpec("gray"), (conv.with_args(groups=3),))
    assert follow_input_channels(grouped, 3, 1) == (grouped, None, None)
    bn = Pipeline(InputSpec("gray"), (new_layer("BatchNorm2d", (3, 8, 8)),))
    after, index, _ = follow_input_channels(bn, 3, 1)
    assert index == 0 and after.layers[0].args["num_features"] == 1
    other = Pipeline(InputSpec("gray"), (new_layer("ReLU"), conv))
    assert follow_input_channels(other, 3, 1)[1] is None  # only the first layer follows


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "normal", "constant", "torch_default"])
def test_the_generated_script_sets_the_same_tensors(scheme):
    from layerlab.core.codegen import generate_script

    extra = {"normal": {"mean": 0.5, "std": 0.1}, "constant": {"value": 0.25}}.get(scheme, {})
    conv = seeded(new_layer("Conv2d", (3, 8, 8), out_channels=4), scheme, 9, **extra)
    layers = (conv,
              conv.with_param("weight", np.full((4, 3, 3, 3), 0.5, np.float32)),  # bias: init
              conv.with_param("bias", np.arange(4, dtype=np.float32)),  # weight: init
              seeded(new_layer("Linear", (5,), out_features=2), scheme, 4, **extra),
              new_layer("BatchNorm2d", (4, 8, 8)))
    namespace: dict = {"__name__": "generated"}
    for layer in layers:
        script = generate_script(Pipeline(InputSpec("rgb"), (layer,)))
        exec(compile(script, "generated.py", "exec"), namespace)  # noqa: S102 - our own text
        module = namespace["build_model"]()[0]
        want = materialize(layer)
        got = {k: v for k, v in module.state_dict().items() if v.is_floating_point()}
        assert set(got) == set(want)
        for k, v in got.items():
            assert v.detach().numpy().tobytes() == want[k].tobytes(), (layer.params.keys(), k)

"""Trained weights onto a stack: safe reading, key mapping, applying, and the round trip
through the script of ``layerlab code`` (its nn.Sequential's state_dict loads back)."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from layerlab.core.codegen import generate_script
from layerlab.core.engine import Engine
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline, new_layer
from layerlab.core.weights import (
    BY_INDEX,
    BY_NAME,
    BY_ORDER,
    WeightsError,
    apply_weights,
    load_weights,
    match_state_dict,
    read_state_dict,
)

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT / "resources" / "pipelines" / "cifar10-tutorial.layerlab.json"
PHOTO = ROOT / "resources" / "samples" / "chelsea.jpg"


def small_stack(names=("conv1", "bn1", "act", "conv2")) -> Pipeline:
    layers = (new_layer("Conv2d", (3, 8, 8), out_channels=4, kernel_size=3, padding=1),
              new_layer("BatchNorm2d", (4, 8, 8)), new_layer("ReLU"),
              new_layer("Conv2d", (4, 8, 8), out_channels=2, kernel_size=1))
    layers = tuple(LayerSpec(la.type, la.args, name=n) for la, n in zip(layers, names,
                                                                         strict=True))
    return Pipeline(InputSpec("rgb"), layers)


def torch_twin() -> nn.Sequential:
    """The same stack built in torch directly, trained a little so BatchNorm has statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 2, 1))
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(5, 3, 8, 8) * 2 + 1)
    return model.eval()


def stage_outputs(pipeline: Pipeline, x: torch.Tensor) -> list[torch.Tensor]:
    results = Engine("cpu", channels_last=False).run_all(pipeline, x, cache=False)
    assert all(r.ok for r in results), [r.error for r in results]
    return [r.output for r in results]


def hooked_outputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
               for m in model]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


# --- reading ---------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"0.weight": torch.zeros(1), "x": _Evil(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(WeightsError, match="refused.*weights_only=True"):
        read_state_dict(evil)
    assert not marker.exists()
    # the same file through torch's unsafe path would run it: the test's payload is real
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_pt_and_safetensors_give_the_same_tensors(tmp_path):
    model = torch_twin()
    state = model.state_dict()
    torch.save(state, tmp_path / "w.pt")
    save_file(dict(state), tmp_path / "w.safetensors")
    a = read_state_dict(tmp_path / "w.pt")
    b = read_state_dict(tmp_path / "w.safetensors")
    assert list(a) == list(state) and set(b) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(a[key], value.numpy())
        np.testing.assert_array_equal(b[key], value.numpy())


def test_a_checkpoint_wrapping_the_state_dict_is_unwrapped(tmp_path):
    state = torch_twin().state_dict()
    torch.save({"epoch": 3, "state_dict": state}, tmp_path / "ckpt.pth")
    assert set(read_state_dict(tmp_path / "ckpt.pth")) == set(state)


@pytest.mark.parametrize("payload, message", [
    (torch.zeros(3), "not a state_dict \\(it holds a tensor"),
    ([torch.zeros(3)], "not a state_dict \\(it holds a list"),
    ({"a": 1.5}, "value of 'a' is a float"),
    ({}, "holds no tensors"),
])
def test_a_pt_that_is_not_a_state_dict_is_one_clear_message(tmp_path, payload, message):
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(WeightsError, match=message):
        read_state_dict(tmp_path / "x.pt")


def test_truncated_files_are_one_clear_message(tmp_path):
    state = torch_twin().state_dict()
    save_file(dict(state), tmp_path / "w.safetensors")
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.safetensors: not a readable safetensors file"):
        read_state_dict(tmp_path / "cut.safetensors")
    torch.save(state, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.pt: not a readable torch file"):
        read_state_dict(tmp_path / "cut.pt")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"\.pt, \.pth or \.safetensors"):
        read_state_dict(tmp_path / "w.npz")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "nothing.pt")


# --- matching and applying -------------------------------------------------------------------

def test_sequential_indices_load_and_equal_torch_stage_by_stage():
    model = torch_twin()
    pipeline = small_stack()
    mapping = match_state_dict(pipeline, model.state_dict())
    assert mapping.method == BY_INDEX and mapping.ok
    assert not mapping.unmatched_keys and not mapping.without_tensor
    assert mapping.quiet_keys == ("1.num_batches_tracked",)
    bn = next(m for m in mapping.layers if m.layer_index == 1)
    assert dict(bn.keys) == {"weight": "1.weight", "bias": "1.bias",
                             "running_mean": "1.running_mean", "running_var": "1.running_var"}
    loaded = apply_weights(pipeline, mapping)
    assert not pipeline.layers[0].params  # the original is untouched
    x = torch.rand(1, 3, 8, 8)
    for got, want in zip(stage_outputs(loaded, x)[1:], hooked_outputs(model, x), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_names_and_prefixes_and_order():
    model = torch_twin()
    seq = model.state_dict()
    names = ("conv1", "bn1", "act", "conv2")
    by_name = {f"{names[int(k.split('.')[0])]}.{k.split('.', 1)[1]}": v for k, v in seq.items()}
    m = match_state_dict(small_stack(), by_name)
    assert m.method == BY_NAME and len(m.applied_keys) == 8 and not m.unmatched_keys
    nested = {f"model.{k}": v for k, v in by_name.items()}  # a prefix before the names
    assert match_state_dict(small_stack(), nested).method == BY_NAME
    features = {f"features.{k}": v for k, v in seq.items()}
    m = match_state_dict(small_stack(), features)
    assert m.method == BY_INDEX and m.prefix == "features." and len(m.applied_keys) == 8
    odd = {}
    for k, v in seq.items():
        idx, rest = k.split(".", 1)
        odd[f"part{'abcd'[int(idx)]}.{rest}"] = v
    m = match_state_dict(small_stack(names=("", "", "", "")), odd)
    assert m.method == BY_ORDER and len(m.applied_keys) == 8 and not m.mismatches
    x = torch.rand(1, 3, 8, 8)
    got = stage_outputs(apply_weights(small_stack(names=("", "", "", "")), m), x)[-1]
    torch.testing.assert_close(got, model(x), atol=1e-6, rtol=1e-5)


def test_missing_extra_and_mismatched_keys_are_reported_and_nothing_changes():
    seq = dict(torch_twin().state_dict())
    del seq["3.bias"]
    seq["9.weight"] = torch.zeros(2)
    seq["head.fc.weight"] = torch.zeros(2)
    pipeline = small_stack()
    m = match_state_dict(pipeline, seq)
    assert m.ok and set(m.unmatched_keys) == {"9.weight", "head.fc.weight"}
    conv2 = next(x for x in m.layers if x.layer_index == 3)
    assert conv2.missing == ("bias",)
    assert any("9.weight" in line for line in m.problems())
    loaded = apply_weights(pipeline, m)
    assert "bias" not in loaded.layers[3].params  # keeps its own seeded bias
    only_first = {k: v for k, v in seq.items() if k.startswith("0.")}
    m = match_state_dict(pipeline, only_first)
    assert [i for i, _ in m.without_tensor] == [1, 3]
    bad = dict(torch_twin().state_dict())
    bad["3.weight"] = torch.zeros(2, 4, 3, 3)
    m = match_state_dict(pipeline, bad)
    assert not m.ok and m.mismatches[0].key == "3.weight"
    with pytest.raises(WeightsError, match=r"3.weight has shape \[2, 4, 3, 3\] but layer 3 "
                                           r"\(conv2\) needs weight of shape \[2, 4, 1, 1\]"):
        apply_weights(pipeline, m)
    assert not any(layer.params for layer in pipeline.layers)


# --- the round trip through `layerlab code` --------------------------------------------------

@pytest.mark.parametrize("fmt", [".pt", ".safetensors"])
def test_cifar10_script_model_trained_loads_back_stage_for_stage(tmp_path, fmt):
    pipeline = Pipeline.load(CIFAR)
    script = tmp_path / "cifar.py"
    script.write_text(generate_script(pipeline), encoding="utf-8")
    model = runpy.run_path(str(script))["build_model"]()
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for _ in range(5):  # a few steps on synthetic data
        x = torch.rand(8, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    path = tmp_path / f"trained{fmt}"
    if fmt == ".pt":
        torch.save(model.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)

    loaded, mapping = load_weights(pipeline, path)
    assert mapping.method == BY_INDEX and not mapping.unmatched_keys
    assert not mapping.without_tensor and mapping.ok
    image = to_tensor(load_image(PHOTO).image, "rgb")
    stages = stage_outputs(loaded, image)
    x = stages[0]  # the engine's resized input, as the script's load_image gives it
    want = hooked_outputs(model, x)
    assert all(torch.isfinite(w).all() for w in want)
    assert len(stages) == len(want) + 1
    for got, ref in zip(stages[1:], want, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the trained weights really differ from the seeded ones
    assert not torch.allclose(stage_outputs(pipeline, image)[-1], stages[-1])


# --- --weights on the headless commands ------------------------------------------------------

def _cli(capsys, *argv):
    from layerlab import cli

    rc = cli.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return rc, out, err


def _trained_cifar_state() -> dict[str, torch.Tensor]:
    pipeline = Pipeline.load(CIFAR)
    gen = torch.Generator().manual_seed(3)
    state = {}
    for pos, (_, layer) in enumerate(pipeline.enabled_layers()):
        for tensor, shape in layer.op.parameter_shapes(dict(layer.args)).items():
            state[f"{pos}.{tensor}"] = torch.randn(shape, generator=gen) * 0.05
    return state


def test_export_with_weights_records_them_and_equals_torch(tmp_path, capsys):
    state = _trained_cifar_state()
    state["extra.weight"] = torch.zeros(3)
    del state["7.bias"]  # fc1's bias: kept from the seeded init, and said so
    torch.save(state, tmp_path / "w.pt")
    out = tmp_path / "out"
    rc, _, err = _cli(capsys, "export", PHOTO, "--pipeline", CIFAR, "--out", out, "--raw",
                      "--weights", tmp_path / "w.pt", "--quiet")
    assert rc == 0, err
    assert "extra.weight" in err and "match no layer" in err
    assert "layer 7 (fc1) gets no bias" in err
    manifest = json.loads((out / "manifest.json").read_text())
    w = manifest["weights"]
    assert w["file"] == str(tmp_path / "w.pt") and w["method"] == "index"
    assert w["unmatched_keys"] == ["extra.weight"]
    assert {"layer": 0, "name": "conv1", "keys": {"weight": "0.weight", "bias": "0.bias"}} \
        in w["applied"]
    assert {"image", "pipeline", "weights", "device", "stages"} <= set(manifest)
    # the last stage equals the tensors run through torch directly
    model = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(2),
                          nn.Conv2d(32, 32, 5, padding=2), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(1024, 64), nn.Linear(64, 10)).eval()
    seeded_bias = Pipeline.load(CIFAR).layers[7]
    from layerlab.core.edits import materialize
    full = dict(state)
    del full["extra.weight"]
    full["7.bias"] = torch.from_numpy(np.array(materialize(seeded_bias)["bias"]))
    model.load_state_dict(full)
    x = torch.from_numpy(np.load(out / "00-input.npy"))[None]
    with torch.no_grad():
        want = model(x)[0].numpy()
    np.testing.assert_allclose(np.load(out / "09-fc2.npy"), want, atol=1e-5, rtol=1e-5)


def test_without_weights_the_manifest_says_null(tmp_path, capsys):
    rc, _, err = _cli(capsys, "export", PHOTO, "--pipeline", CIFAR, "--out", tmp_path / "o",
                      "--quiet")
    assert rc == 0, err
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["weights"] is None


def test_a_shape_mismatch_is_exit_2_and_nothing_written(tmp_path, capsys):
    state = _trained_cifar_state()
    state["0.weight"] = torch.zeros(32, 3, 3, 3)
    save_file(state, tmp_path / "w.safetensors")
    out = tmp_path / "out"
    rc, stdout, err = _cli(capsys, "export", PHOTO, "--pipeline", CIFAR, "--out", out,
                           "--weights", tmp_path / "w.safetensors")
    assert rc == 2 and not out.exists() and stdout == ""
    assert err.count("\n") == 1 and "0.weight has shape [32, 3, 3, 3]" in err
    script = tmp_path / "s.py"
    rc, _, err = _cli(capsys, "code", CIFAR, "-o", script, "--weights",
                      tmp_path / "w.safetensors")
    assert rc == 2 and not script.exists()
    rc, _, err = _cli(capsys, "info", CIFAR, "--weights", tmp_path / "evil.pt")
    assert rc == 2 and "does not exist" in err


def test_code_and_info_with_weights(tmp_path, capsys):
    state = _trained_cifar_state()
    torch.save(state, tmp_path / "w.pth")
    rc, out, err = _cli(capsys, "info", CIFAR, "--weights", tmp_path / "w.pth")
    assert rc == 0 and err == ""
    assert "weights: 10 tensor(s) from w.pth onto 5 layer(s), matched by nn.Sequential index" \
        in out
    script = tmp_path / "s.py"
    rc, _, err = _cli(capsys, "code", CIFAR, "-o", script, "--weights", tmp_path / "w.pth")
    assert rc == 0, err
    model = runpy.run_path(str(script))["build_model"]()
    for key, value in state.items():  # the script embeds exactly the file's tensors
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)

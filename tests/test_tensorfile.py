"""Tensors beside the pipeline: a .safetensors file referenced from the pipeline file."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.numpy import save as st_save
from safetensors.torch import load as st_load

from layerlab.core import resources, tensorfile
from layerlab.core.analysis import parameter_shapes
from layerlab.core.codegen import generate_script
from layerlab.core.engine import Engine
from layerlab.core.pipeline import Pipeline, PipelineError


def load_file(path: str) -> dict[str, torch.Tensor]:
    """The file's tensors, copied (not mapped: the tests rewrite the files)."""
    with open(path, "rb") as f:
        return st_load(f.read())


def trained_cifar(seed: int = 0) -> Pipeline:
    """The bundled CIFAR-10 tutorial net with every tensor explicit (145,578 values)."""
    p = Pipeline.load(resources.example_pipeline("cifar10-tutorial"))
    rng = np.random.default_rng(seed)
    layers = []
    for layer in p.layers:
        if layer.op.learnable:
            for name, shape in parameter_shapes(layer).items():
                layer = layer.with_param(name, rng.standard_normal(shape).astype(np.float32))
        layers.append(layer)
    return replace(p, layers=tuple(layers))


def same_tensors(a: Pipeline, b: Pipeline) -> bool:
    return all(la.params.keys() == lb.params.keys() and all(
        torch.equal(torch.from_numpy(np.array(la.params[k])),
                    torch.from_numpy(np.array(lb.params[k]))) for k in la.params)
        for la, lb in zip(a.layers, b.layers, strict=True))


def test_save_above_the_threshold_writes_tensors_beside_and_loads_back_exactly(tmp_path):
    p = trained_cifar()
    assert p.tensor_bytes() == 145_578 * 4 < tensorfile.EXTERNAL_THRESHOLD_BYTES
    # below the threshold Save keeps everything inline, as before
    p.save(tmp_path / "small.layerlab.json")
    assert not (tmp_path / "small.safetensors").exists()
    assert "tensors" not in json.loads((tmp_path / "small.layerlab.json").read_text())
    # a pipeline with more than 1 MB of tensors goes beside
    wide = replace(p, layers=p.layers[:-2] + (
        p.layers[-2].with_args(out_features=512).with_param(
            "weight", np.random.default_rng(2).standard_normal((512, 1024)).astype(np.float32))
        .with_param("bias", np.zeros(512, np.float32)),
        p.layers[-1].with_args(in_features=512).with_param(
            "weight", np.ones((10, 512), np.float32))))
    assert wide.tensor_bytes() > tensorfile.EXTERNAL_THRESHOLD_BYTES
    wide.save(tmp_path / "net.layerlab.json")
    doc = json.loads((tmp_path / "net.layerlab.json").read_text())
    assert doc["tensors"]["file"] == "net.safetensors"
    assert doc["layers"][0]["params"]["weight"] == {"tensor": "conv1.weight"}
    loaded = Pipeline.load(tmp_path / "net.layerlab.json")
    assert same_tensors(wide, loaded)
    # the file is a plain state_dict by layer name, readable by safetensors itself
    state = load_file(str(tmp_path / "net.safetensors"))
    fc1 = torch.from_numpy(np.array(wide.layers[7].params["weight"]))
    assert torch.equal(state["fc1.weight"], fc1)
    assert len(state) == 10


def test_external_round_trip_runs_to_the_same_numbers(tmp_path, camera_like):
    p = trained_cifar(3)
    p.save(tmp_path / "c.layerlab.json", tensors="external")
    q = Pipeline.load(tmp_path / "c.layerlab.json")
    x = camera_like
    a = [r.output for r in Engine("cpu").run(p, x, cache=False)]
    b = [r.output for r in Engine("cpu").run(q, x, cache=False)]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    # the generated script keeps its weights inline: no safetensors needed to run it
    script = generate_script(q, source="c.layerlab.json")
    assert "safetensors" not in script
    assert _first_weight_text(q) in script


def _first_weight_text(p: Pipeline) -> str:
    from layerlab.core.codegen import _num

    return _num(float(p.layers[0].params["weight"].reshape(-1)[0]))


@pytest.fixture
def camera_like():
    from PIL import Image

    from layerlab.core.imageio import to_tensor

    img = Image.open(resources.sample("chelsea.jpg")).convert("RGB").resize((32, 32))
    return to_tensor(img)


def test_names_not_unique_use_the_layer_index(tmp_path):
    p = trained_cifar()
    layers = list(p.layers)
    layers[2] = replace(layers[2], name="conv1")  # two layers called conv1
    p = replace(p, layers=tuple(layers))
    p.save(tmp_path / "d.layerlab.json", tensors="external")
    keys = set(load_file(str(tmp_path / "d.safetensors")))
    assert {"layers.0.weight", "layers.2.weight", "conv3.weight"} <= keys
    assert same_tensors(p, Pipeline.load(tmp_path / "d.layerlab.json"))


def test_inline_files_still_load_and_mixed_params_work(tmp_path):
    arr = np.arange(4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3) / 7
    (tmp_path / "m.safetensors").write_bytes(st_save({"w": arr}))
    doc = {"format": "layerlab.pipeline", "version": 1, "input": {"mode": "rgb"},
           "tensors": {"file": "m.safetensors"},
           "layers": [{"type": "Conv2d", "args": {"in_channels": 3, "out_channels": 4,
                                                  "kernel_size": 3},
                       "params": {"weight": {"tensor": "w"}, "bias": [1.0, 2.0, 3.0, 4.0]}}]}
    (tmp_path / "m.layerlab.json").write_text(json.dumps(doc))
    p = Pipeline.load(tmp_path / "m.layerlab.json")
    assert np.array_equal(p.layers[0].params["weight"], arr)
    assert p.layers[0].params["bias"].tolist() == [1, 2, 3, 4]


def _pair(tmp_path) -> tuple[Pipeline, dict]:
    p = trained_cifar()
    p.save(tmp_path / "e.layerlab.json", tensors="external")
    return p, json.loads((tmp_path / "e.layerlab.json").read_text())


def _error(tmp_path) -> str:
    with pytest.raises(PipelineError) as exc:
        Pipeline.load(tmp_path / "e.layerlab.json")
    return str(exc.value)


def test_missing_tensors_file(tmp_path):
    _pair(tmp_path)
    (tmp_path / "e.safetensors").unlink()
    msg = _error(tmp_path)
    assert msg.startswith("e.layerlab.json: e.safetensors: ") and "does not exist" in msg


def test_truncated_tensors_file(tmp_path):
    _, doc = _pair(tmp_path)
    data = (tmp_path / "e.safetensors").read_bytes()
    for cut in (len(data) - 100, 50, 4, 0):
        (tmp_path / "e.safetensors").write_bytes(data[:cut])
        del doc["tensors"]["sha256"]  # without the digest the damage itself is reported
        (tmp_path / "e.layerlab.json").write_text(json.dumps(doc))
        msg = _error(tmp_path)
        assert "e.safetensors: not a readable safetensors file (truncated" in msg, msg
        doc["tensors"]["sha256"] = "0" * 64
    # with the digest: the file is not the one the pipeline was saved with
    (tmp_path / "e.layerlab.json").write_text(json.dumps(doc))
    assert "e.safetensors: is not the tensors file this pipeline was saved with" in \
        _error(tmp_path)


def test_missing_key_wrong_shape_wrong_dtype(tmp_path):
    _, doc = _pair(tmp_path)
    del doc["tensors"]["sha256"]
    state = {k: v.numpy() for k, v in load_file(str(tmp_path / "e.safetensors")).items()}
    cases = [
        ({k: v for k, v in state.items() if k != "conv2.weight"},
         "layer 2 ('conv2'): params.weight: the tensors file holds no tensor 'conv2.weight'"),
        ({**state, "fc2.bias": np.zeros(11, np.float32)},
         "layer 8 ('fc2'): params.bias: the tensor 'fc2.bias' has shape [11], expected [10]"),
        ({**state, "fc2.bias": np.zeros(10, np.float64)},
         "e.safetensors: fc2.bias holds float64 values; a pipeline's tensors are float32"),
    ]
    (tmp_path / "e.layerlab.json").write_text(json.dumps(doc))
    for tensors, words in cases:
        (tmp_path / "e.safetensors").write_bytes(st_save(tensors))
        assert words in _error(tmp_path)


def test_bad_references(tmp_path):
    base = {"format": "layerlab.pipeline", "version": 1, "input": {"mode": "gray"},
            "layers": [{"type": "Conv2d", "args": {"in_channels": 1, "out_channels": 1,
                                                   "kernel_size": 1},
                        "params": {"weight": {"tensor": "w"}}}]}
    with pytest.raises(PipelineError, match="names no tensors file"):
        Pipeline.from_dict(base, folder=tmp_path)
    for tensors, words in [("x.safetensors", "tensors must be an object"),
                           ({"file": "../x.safetensors"}, "without a folder"),
                           ({"file": "x.bin"}, "must end in .safetensors"),
                           ({"file": "x.safetensors", "sha256": "abc"}, "64 lowercase hex")]:
        with pytest.raises(PipelineError, match=words):
            Pipeline.from_dict({**base, "tensors": tensors}, folder=tmp_path)
    # a pipeline object on its own (no file) cannot reach a tensors file
    with pytest.raises(PipelineError, match="can only be read beside a pipeline file"):
        Pipeline.from_dict({**base, "tensors": {"file": "x.safetensors"}})


def test_a_save_that_fails_halfway_is_reported_on_load_not_mixed(tmp_path, monkeypatch):
    p, _ = _pair(tmp_path)
    q = trained_cifar(seed=9)
    from layerlab.core import pipeline as pipeline_module

    write_file = pipeline_module.safeio.write_file

    def fail(path, data):  # the tensors file is written, the pipeline file is not
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device")
        return write_file(path, data)

    monkeypatch.setattr(pipeline_module.safeio, "write_file", fail)
    with pytest.raises(OSError):
        q.save(tmp_path / "e.layerlab.json", tensors="external")
    monkeypatch.undo()
    # the tensors were replaced but the pipeline file was not: the digest tells them apart
    assert "is not the tensors file this pipeline was saved with" in _error(tmp_path)
    q.save(tmp_path / "e.layerlab.json", tensors="external")
    assert same_tensors(q, Pipeline.load(tmp_path / "e.layerlab.json"))
    assert not same_tensors(p, q)


def test_export_keeps_big_tensors_beside_its_manifest(tmp_path):
    from layerlab.core.export import export_run

    p = trained_cifar()
    wide = replace(p, layers=p.layers[:-2] + (
        p.layers[-2].with_args(out_features=512).with_param(
            "weight", np.random.default_rng(2).standard_normal((512, 1024)).astype(np.float32))
        .with_param("bias", np.zeros(512, np.float32)),
        p.layers[-1].with_args(in_features=512).with_param(
            "weight", np.ones((10, 512), np.float32))))
    out = tmp_path / "out"
    image = resources.sample("chelsea.jpg")
    manifest = export_run(image, wide, out)
    assert manifest["pipeline"]["tensors"]["file"] == "pipeline.safetensors"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert same_tensors(wide, Pipeline.from_dict(on_disk["pipeline"], folder=out))
    # an export with its tensors file is LayerLab's own: --overwrite replaces it
    export_run(image, wide, out, overwrite=True)
    # a small pipeline stays inline, as before
    small = export_run(image, p, tmp_path / "small")
    assert "tensors" not in small["pipeline"]
    assert same_tensors(p, Pipeline.from_dict(small["pipeline"]))


def test_a_tensors_file_that_is_a_fifo_or_device_is_refused(tmp_path):
    import os

    _pair(tmp_path)
    (tmp_path / "e.safetensors").unlink()
    os.mkfifo(tmp_path / "e.safetensors")  # nobody writes: reading would wait
    assert "e.safetensors: the tensors file of this pipeline is not a regular file" in \
        _error(tmp_path)
    (tmp_path / "e.safetensors").unlink()
    (tmp_path / "e.safetensors").symlink_to("/dev/zero")  # would send zeros forever
    assert "is not a regular file" in _error(tmp_path)


def test_the_same_tensors_give_the_same_file_in_every_process(tmp_path):
    import subprocess
    import sys

    p = trained_cifar(4)
    p.save(tmp_path / "a.layerlab.json", tensors="external")
    code = ("import sys; from layerlab.core.pipeline import Pipeline; "
            "Pipeline.load(sys.argv[1]).save(sys.argv[2], tensors='external')")
    for name in ("b", "c"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.layerlab.json"),
                        str(tmp_path / f"{name}.layerlab.json")], check=True)
        assert (tmp_path / f"{name}.safetensors").read_bytes() == \
            (tmp_path / "a.safetensors").read_bytes()

"""The bundled digits network: its shipped weights reproduce the accuracy its training reported,
measured through LayerLab itself on PNGs of the held-out digits, and LayerLab runs it exactly
as an nn.Sequential the test builds from the same tensors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load
from torch import nn
from torchvision.transforms import ToTensor
from torchvision.transforms.functional import resize

from layerlab.core import resources
from layerlab.core.engine import Engine
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import Pipeline

sklearn_datasets = pytest.importorskip("sklearn.datasets")

PIPELINE = resources.example_pipeline("digits-cnn")
RECORD = json.loads((PIPELINE.parent / "digits-cnn.training.json").read_text())


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """The held-out digits as PNG files, split as the record says (computed here, not taken
    from the training script), and their labels."""
    data = sklearn_datasets.load_digits()
    n = len(data.images)
    split = RECORD["split"]
    order = np.random.default_rng(split["seed"]).permutation(n)
    n_test = int(round(n * split["test_fraction"]))
    test_idx = np.sort(order[-n_test:])
    assert len(test_idx) == split["test"] == 359
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for k in test_idx:
        # dark ink on white paper: 16 (ink) -> 0, 0 (paper) -> 255
        u8 = np.rint(255 * (1 - data.images[k] / 16)).astype(np.uint8)
        path = folder / f"digit-{k:04d}.png"
        Image.fromarray(u8, mode="L").save(path)
        paths.append(path)
    return paths, data.target[test_idx]


def reference_model() -> nn.Sequential:
    """The digits CNN written out as the tutorials write one, with the shipped tensors."""
    model = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 10))
    state = st_load((PIPELINE.parent / "digits-cnn.safetensors").read_bytes())
    index = {"conv1": 0, "conv2": 3, "fc1": 7, "fc2": 9}
    model.load_state_dict({f"{index[k.split('.')[0]]}.{k.split('.')[1]}": v
                           for k, v in state.items()})
    return model.eval()


def test_the_shipped_weights_reproduce_the_reported_accuracy(held_out):
    paths, labels = held_out
    pipeline = Pipeline.load(PIPELINE)
    assert pipeline.classes == tuple("0123456789")
    engine = Engine("cpu", channels_last=False)
    predicted = []
    for path in paths:
        x = to_tensor(load_image(path).image, pipeline.input.mode)
        last = engine.run_all(pipeline, x, cache=False)[-1]
        assert last.shape == (10,)
        predicted.append(int(torch.argmax(last.output[0])))
    correct = int((np.array(predicted) == labels).sum())
    assert correct == RECORD["test_correct"]
    assert correct / len(labels) == RECORD["test_accuracy"] >= 0.95


def test_layerlab_runs_the_net_as_the_nn_sequential_with_the_same_tensors(held_out):
    paths, labels = held_out
    pipeline = Pipeline.load(PIPELINE)
    model = reference_model()
    engine = Engine("cpu", channels_last=False)
    for path in paths[:40]:
        # the tutorials' way in: gray, ToTensor, resized to the net's 32 x 32
        x = resize(ToTensor()(Image.open(path).convert("L")).unsqueeze(0), [32, 32],
                   antialias=True)
        stages = engine.run_all(pipeline, to_tensor(load_image(path).image, "gray"),
                                cache=False)
        assert torch.equal(stages[0].output, x)
        with torch.no_grad():
            for module, stage in zip(model, stages[1:], strict=True):
                x = module(x)
                assert torch.equal(stage.output, x), stage.name
    # and the whole held-out set gives the same answers batched through the reference model
    batch = torch.cat([resize(ToTensor()(Image.open(p).convert("L")).unsqueeze(0), [32, 32],
                              antialias=True) for p in paths])
    with torch.no_grad():
        correct = int((model(batch).argmax(1).numpy() == labels).sum())
    assert correct == RECORD["test_correct"]


def test_the_pipeline_is_the_tutorial_layers_only():
    pipeline = Pipeline.load(PIPELINE)
    assert [layer.type for layer in pipeline.layers] == [
        "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear",
        "ReLU", "Linear"]
    assert pipeline.input.mode == "gray" and pipeline.input.resize == (32, 32)
    doc = json.loads(PIPELINE.read_text())
    assert doc["tensors"]["file"] == "digits-cnn.safetensors"


def test_the_sample_digit_is_read_as_a_seven():
    from layerlab.core.predictions import predict

    pipeline = Pipeline.load(PIPELINE)
    x = to_tensor(load_image(resources.sample("digit-7.png")).image, "gray")
    out = Engine("cpu", channels_last=False).run_all(pipeline, x, cache=False)[-1].output[0]
    top = predict(out.numpy(), pipeline.classes).top[0]
    assert top.name == "7" and top.index == int(torch.argmax(out)) and top.probability > 0.9

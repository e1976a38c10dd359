"""Predictions: softmax top-5 against torch, class names, labels files, the export's
predictions.json and gradcam.png, and the headless options."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from layerlab import cli
from layerlab.core import resources
from layerlab.core.engine import Engine
from layerlab.core.export import export_run
from layerlab.core.export_extras import GradCamOption
from layerlab.core.gradcam import grad_cam, overlay
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import Pipeline, new_layer
from layerlab.core.predictions import (
    LOG_PROBABILITIES,
    PROBABILITIES,
    LabelsError,
    output_kind,
    predict,
    read_labels,
    softmax,
)

DIGITS = resources.example_pipeline("digits-cnn")
CIFAR = resources.example_pipeline("cifar10-tutorial")
CIFAR_NAMES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def last_stage(pipeline: Pipeline, sample: str) -> torch.Tensor:
    x = to_tensor(load_image(resources.sample(sample)).image, pipeline.input.mode)
    return Engine("cpu", channels_last=False).run_all(pipeline, x, cache=False)[-1].output[0]


@pytest.mark.parametrize("path, sample", [(DIGITS, "camera.png"), (CIFAR, "chelsea.jpg"),
                                          (CIFAR, "astronaut.jpg")])
def test_top5_is_torch_softmax_topk_of_the_engine_output(path, sample):
    pipeline = Pipeline.load(path)
    logits = last_stage(pipeline, sample)
    found = predict(logits.numpy(), pipeline.classes)
    probs = torch.softmax(logits.double(), dim=0)
    values, indices = torch.topk(probs, 5)
    assert [p.index for p in found.top] == indices.tolist()
    np.testing.assert_allclose([p.probability for p in found.top], values.numpy(), rtol=1e-12)
    np.testing.assert_allclose(found.probabilities, probs.numpy(), rtol=1e-12, atol=1e-300)
    assert [p.name for p in found.top] == [pipeline.classes[i] for i in indices.tolist()]
    assert [p.value for p in found.top] == logits[indices].tolist()
    # float32 torch agrees to float32 rounding
    np.testing.assert_allclose(found.probabilities, torch.softmax(logits, 0).numpy(),
                               atol=1e-6)


def test_cifar_names_and_numbered_fallback():
    pipeline = Pipeline.load(CIFAR)
    assert pipeline.classes == CIFAR_NAMES
    logits = last_stage(pipeline, "chelsea.jpg").numpy()
    assert predict(logits, ()).top[0].name.startswith("class ")
    assert predict(logits, ("a", "b")).named is False  # 2 names for 10 values: not used
    assert predict(np.zeros(1, np.float32)) is None and predict(np.zeros((2, 2))) is None
    # softmax is shift-safe: huge logits do not overflow
    np.testing.assert_allclose(softmax(np.array([1000.0, 1001.0])),
                               torch.softmax(torch.tensor([1000.0, 1001.0], dtype=torch.float64),
                                             0).numpy())


def test_a_stack_ending_in_softmax_or_logsoftmax_is_not_softmaxed_twice():
    pipeline = Pipeline.load(DIGITS)
    for type_name, kind in [("Softmax", PROBABILITIES), ("LogSoftmax", LOG_PROBABILITIES)]:
        p = replace(pipeline, layers=pipeline.layers + (new_layer(type_name, (10,), dim=1),))
        assert output_kind(p) == kind
        out = last_stage(p, "camera.png")
        found = predict(out.numpy(), p.classes, kind=kind)
        want = torch.softmax(last_stage(pipeline, "camera.png").double(), 0)
        np.testing.assert_allclose(found.probabilities, want.numpy(), atol=1e-6)


def test_labels_files(tmp_path):
    (tmp_path / "l.txt").write_text("zero\n one \ntwo\n\n\n", encoding="utf-8")
    assert read_labels(tmp_path / "l.txt") == ("zero", "one", "two")
    (tmp_path / "l.json").write_text(json.dumps(["a", "b"]))
    assert read_labels(tmp_path / "l.json") == ("a", "b")
    for name, data, words in [("e.txt", b"\n\n", "holds no class names"),
                              ("b.json", b"[1, 2]", "name 1 must be text"),
                              ("c.txt", b"a\x1bb\n", "without control characters"),
                              ("d.json", b"{", "not valid JSON"),
                              ("u.txt", b"\xff\xfe\xfa", "not UTF-8")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LabelsError, match=words) as exc:
            read_labels(tmp_path / name)
        assert str(exc.value).startswith(name + ": ")
    with pytest.raises(LabelsError, match="missing.txt: cannot read"):
        read_labels(tmp_path / "missing.txt")


def test_export_writes_predictions_and_gradcam(tmp_path):
    pipeline = Pipeline.load(DIGITS)
    image = resources.sample("camera.png")
    manifest = export_run(image, pipeline, tmp_path / "out",
                          gradcam=GradCamOption(target="7", opacity=0.4))
    out = tmp_path / "out"
    assert manifest["predictions"] == "predictions.json"
    record = json.loads((out / "predictions.json").read_text())
    logits = last_stage(pipeline, "camera.png")
    values, indices = torch.topk(torch.softmax(logits.double(), 0), 5)
    assert [t["index"] for t in record["top"]] == indices.tolist()
    assert [t["name"] for t in record["top"]] == [str(i) for i in indices.tolist()]
    np.testing.assert_allclose([t["probability"] for t in record["top"]], values.numpy(),
                               rtol=1e-12)
    g = manifest["gradcam"]
    assert (g["class"], g["class_name"], g["stage"], g["stage_name"]) == (7, "7", 5, "relu2")
    x = to_tensor(load_image(image).image, "gray")
    want = grad_cam(pipeline, x, target=7)
    heat = np.load(out / "gradcam.npy")
    np.testing.assert_array_equal(heat, want.heatmap)
    base = np.floor(Engine("cpu").prepare_input(pipeline, x)[0, 0].double().numpy() * 255 + 0.5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "gradcam.png")),
                                  overlay(base.astype(np.uint8), want.heatmap, 0.4))
    export_run(image, pipeline, out, overwrite=True)  # its own files: replaced
    # a stack that is no classifier writes neither
    plain = export_run(image, resources.example_pipeline("edge-detection"), tmp_path / "e")
    assert plain["predictions"] is None and plain["gradcam"] is None


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_headless_labels_and_gradcam_options(tmp_path, capsys):
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"digit {d}" for d in range(10)) + "\n")
    rc, out, _ = run(capsys, "info", DIGITS, "--labels", labels)
    assert rc == 0 and "classes: 10 (digit 0, digit 1," in out
    rc, _, err = run(capsys, "export", resources.sample("camera.png"), "--pipeline", DIGITS,
                     "--out", tmp_path / "o", "--labels", labels, "--gradcam", "digit 3",
                     "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["gradcam"]["class"] == 3
    record = json.loads((tmp_path / "o" / "predictions.json").read_text())
    top = int(torch.argmax(last_stage(Pipeline.load(DIGITS), "camera.png")))
    assert record["top"][0]["name"] == f"digit {top}"
    for extra, words in [(["--gradcam", "eleven"], "neither a class index"),
                         (["--gradcam", "12"], "classes 0 to 9"),
                         (["--gradcam", "--gradcam-stage", "8"], "stage 8 has no feature maps"),
                         (["--labels", tmp_path / "none.txt"], "--labels none.txt")]:
        rc, _, err = run(capsys, "export", resources.sample("camera.png"), "--pipeline",
                         DIGITS, "--out", tmp_path / "bad", "--quiet", *extra)
        assert rc == 2 and words in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad").exists()

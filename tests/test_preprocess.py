"""Inputs as real models expect them: resize of the shorter side, center crop and
transforms.Normalize, bit for bit against torchvision, and the normalize stage everywhere."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import transforms
from torchvision.transforms._presets import ImageClassification

from layerlab import cli
from layerlab.core.analysis import analyze
from layerlab.core.codegen import generate_script
from layerlab.core.engine import Engine
from layerlab.core.export import export_run
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import Pipeline, PipelineError
from layerlab.core.preprocess import PRESETS, preset_named, preset_of, resized_hw
from layerlab.core.receptive import is_local, receptive_field

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "samples"
ASTRONAUT = SAMPLES / "astronaut.jpg"
CHELSEA = SAMPLES / "chelsea.jpg"
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def pipe(inp: dict, layers=()) -> Pipeline:
    return Pipeline.from_dict({"format": "layerlab.pipeline", "version": 1,
                               "input": inp, "layers": list(layers)})


CONV = {"type": "Conv2d", "name": "conv", "args": {"in_channels": 3, "out_channels": 2,
                                                   "kernel_size": 3, "padding": 1}}
IMAGENET = {"mode": "rgb", "resize": 256, "center_crop": [224, 224],
            "normalize": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}}


@pytest.mark.parametrize("photo", [ASTRONAUT, CHELSEA])
def test_stages_equal_torchvision_transforms_bit_for_bit(photo):
    img = load_image(photo).image.convert("RGB")
    x = to_tensor(load_image(photo).image, "rgb")
    results = Engine("cpu").run_all(pipe(IMAGENET, [CONV]), x)
    assert [r.name for r in results] == ["input", "normalize", "conv"]
    assert [r.type for r in results] == ["Input", "Normalize", "Conv2d"]
    tt = transforms.ToTensor()(img).unsqueeze(0)
    photo_ref = transforms.CenterCrop(224)(transforms.Resize(256, antialias=True)(tt))
    norm_ref = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)(photo_ref)
    assert torch.equal(results[0].output.contiguous(), photo_ref)
    assert torch.equal(results[1].output.contiguous(), norm_ref)
    # torchvision's own classification preset (the weights' transforms()) on the same tensor
    preset = ImageClassification(crop_size=224, resize_size=256)
    assert torch.equal(results[1].output.contiguous(), preset(tt))
    conv = Engine("cpu").build_module(pipe(IMAGENET, [CONV]).layers[0])
    with torch.no_grad():
        want = torch.nn.functional.conv2d(norm_ref, conv.weight, conv.bias, padding=1)
    torch.testing.assert_close(results[2].output, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hw", [(512, 512), (300, 451), (451, 300), (17, 1000), (224, 224)])
def test_shorter_side_resize_sizes_equal_torchvision(hw):
    out = transforms.Resize(256, antialias=True)(torch.zeros(1, 3, *hw))
    assert resized_hw(hw, 256) == tuple(out.shape[-2:])
    p = pipe({"mode": "rgb", "resize": 256})
    assert analyze(p, hw).input_shape == (3, *out.shape[-2:])


def test_presets_table():
    assert [p.name for p in PRESETS] == ["none", "ImageNet", "[-1, 1]"]
    assert preset_named("none").for_channels(3) is None
    imagenet = preset_named("ImageNet").for_channels(3)
    assert list(imagenet.mean) == IMAGENET_MEAN and list(imagenet.std) == IMAGENET_STD
    half = preset_named("[-1, 1]").for_channels(1)
    assert half.mean == (0.5,) and half.std == (0.5,)
    assert preset_of(imagenet, 3) == "ImageNet" and preset_of(None, 3) == "none"
    p = pipe({"mode": "gray", "normalize": {"mean": [0.5], "std": [0.5]}})
    assert preset_of(p.input.normalize, 1) == "[-1, 1]"
    x = to_tensor(load_image(SAMPLES / "camera.png").image, "gray")
    out = Engine("cpu").run_all(p, x)[1].output
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert torch.equal(out.contiguous(), transforms.Normalize([0.5], [0.5])(x))


def test_json_round_trip_and_clear_errors():
    p = pipe(IMAGENET, [CONV])
    assert Pipeline.from_json(p.to_json()).to_dict() == p.to_dict()
    assert p.to_dict()["input"] == IMAGENET
    bad = [({"mode": "rgb", "normalize": {"mean": [0.5, 0.5], "std": [1, 1, 1]}},
            "mean must be a list of 3 number"),
           ({"mode": "rgb", "normalize": {"mean": [0.5], "std": [0.0]}}, "std must not be zero"),
           ({"mode": "rgb", "normalize": {"mean": [0.5]}}, "normalize must be"),
           ({"mode": "rgb", "center_crop": [0, 3]}, "input.center_crop must be"),
           ({"mode": "rgb", "resize": 0}, "input.resize must be"),
           ({"mode": "rgb", "resize": True}, "input.resize must be"),
           ({"mode": "rgb", "crop": [3, 3]}, "unknown input field")]
    for inp, message in bad:
        with pytest.raises(PipelineError, match=message):
            pipe(inp)


def test_analysis_stage_numbers_names_and_windows():
    layers = [CONV, {"type": "ReLU", "name": "normalize"}, {"type": "MaxPool2d",
                                                            "args": {"kernel_size": 2}}]
    p = pipe(IMAGENET, layers)
    a = analyze(p, (300, 400))
    assert [s.stage_name for s in a.stages] == ["input", "normalize", "conv", "normalize",
                                                "maxpool2d"]
    assert [s.type for s in a.stages] == ["Input", "Normalize", "Conv2d", "ReLU", "MaxPool2d"]
    assert [s.stage for s in a.layers] == [2, 3, 4]
    assert a.stages[1].shape == (3, 224, 224) and "mean [0.485" in a.stages[1].formula
    # windows: the normalize stage maps each pixel to itself
    assert receptive_field(p, (300, 400), 1, 5, 7).text() == "x 7..7, y 5..5 (1 x 1)"
    win = receptive_field(p, (300, 400), 4, 10, 20)
    assert (win.y0, win.y1, win.x0, win.x1) == (19, 22, 39, 42)
    assert is_local(p, 4)
    x = torch.rand(1, 3, 300, 400)
    results = Engine("cpu").run_all(p, x)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.shape for r in results] == [s.shape for s in a.stages]


def test_export_code_and_info_follow_the_normalize_stage(tmp_path, capsys):
    p = pipe(IMAGENET, [CONV])
    path = tmp_path / "net.layerlab.json"
    p.save(path)
    manifest = export_run(CHELSEA, p, tmp_path / "out", device="cpu", raw=True)
    assert [s["name"] for s in manifest["stages"]] == ["input", "normalize", "conv"]
    assert manifest["stages"][1]["type"] == "Normalize"
    assert manifest["pipeline"]["input"] == IMAGENET
    img = load_image(CHELSEA).image.convert("RGB")
    ref = transforms.Compose([transforms.ToTensor(), transforms.Resize(256, antialias=True),
                              transforms.CenterCrop(224),
                              transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
    assert np.array_equal(np.load(tmp_path / "out" / "01-normalize.npy"), ref.numpy())

    script = tmp_path / "net.py"
    script.write_text(generate_script(p), encoding="utf-8")
    text = script.read_text()
    assert "Resize(256, antialias=True)" in text and "CenterCrop([224, 224])" in text
    assert "Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])" in text
    ns = runpy.run_path(str(script))
    assert torch.equal(ns["load_image"](str(CHELSEA))[0], ref)
    out = tmp_path / "o.npy"
    assert ns["main"]([str(CHELSEA), "--out", str(out)]) == 0
    assert np.array_equal(np.load(out), np.load(tmp_path / "out" / "02-conv.npy"))

    rc = cli.main(["info", str(path), "--image", str(CHELSEA)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "input size 300 x 451 (the size of chelsea.jpg), shorter side resized to 256 " \
           "(256 x 384), then center crop 224 x 224 by the pipeline" in text
    assert "(preset ImageNet)" in text
    row = next(line for line in text.splitlines() if line.split()[:1] == ["1"])
    assert row.split()[1:5] == ["-", "normalize", "Normalize", "3"]
    rc = cli.main(["info", str(path)])
    assert rc == 0 and "input size 224 x 224 (the pipeline's input.center_crop)" in \
        capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["weights"] is None


def test_an_edited_normalize_reruns_the_stages_after_it():
    x = torch.rand(1, 3, 40, 50)
    engine = Engine("cpu")
    first = pipe(IMAGENET | {"resize": 32, "center_crop": [24, 24]}, [CONV])
    engine.run_all(first, x)
    second = pipe({"mode": "rgb", "resize": 32, "center_crop": [24, 24],
                   "normalize": {"mean": [0.5], "std": [0.25]}}, [CONV])
    got = engine.run_all(second, x)
    fresh = Engine("cpu").run_all(second, x)
    assert not any(r.cached for r in got[1:])
    for a, b in zip(got, fresh, strict=True):
        assert torch.equal(a.output, b.output)
    ref = transforms.Normalize([0.5], [0.25])(
        transforms.CenterCrop(24)(transforms.Resize(32, antialias=True)(x)))
    assert torch.equal(got[1].output.contiguous(), ref)
    again = engine.run_all(second, x)  # nothing changed: the conv stage is served cached
    assert again[2].cached and torch.equal(again[2].output, got[2].output)

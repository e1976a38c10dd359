"""Weight edits of an opened torchvision model (core.model_edits): the same numbers as the edit
made in torch, exact undo, refused bad edits, and a saved file torchvision loads strictly."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file
from torchvision import models as tvm

from layerlab.core import models as M
from layerlab.core.model_edits import (
    ModelError,
    WeightEdit,
    apply_edits,
    save_weights,
    with_edit,
)

SIZE = (64, 64)


def seeded(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return tvm.get_model(name).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float().div(255)


def by_name(results) -> dict[str, torch.Tensor]:
    return {r.name: r.output for r in results}


def test_edits_compute_as_torch_and_undo_is_exact(image):
    opened = M.open_model("mobilenet_v2", size=SIZE)
    before = by_name(M.run_model(opened, image))
    edits = with_edit((), "features.2.conv.0.0", "weight", (7, 3, 0, 0), -1.5)
    edits = with_edit(edits, "features.2.conv.0.0", "weight", (7, 3, 0, 0), 2.25)  # replaces
    edits = with_edit(edits, "classifier.1", "bias", (5,), 3.0)
    assert len(edits) == 2
    apply_edits(opened, edits)
    after = by_name(M.run_model(opened, image))

    ref = seeded("mobilenet_v2")
    with torch.no_grad():
        ref.features[2].conv[0][0].weight[7, 3, 0, 0] = 2.25
        ref.classifier[1].bias[5] = 3.0
    _, xn = M.preprocess(opened, image)
    seen = {}

    def keep(_module, _args, out) -> None:
        seen.setdefault("conv", out.clone())

    hook = ref.features[2].conv[0][0].register_forward_hook(keep)
    with torch.no_grad():
        logits = ref(xn)
    hook.remove()
    torch.testing.assert_close(after["features.2.conv.0.0"], seen["conv"], rtol=0, atol=1e-5)
    torch.testing.assert_close(after["classifier.1"], logits, rtol=0, atol=1e-5)
    assert not torch.allclose(after["classifier.1"], before["classifier.1"])

    apply_edits(opened, ())
    undone = by_name(M.run_model(opened, image))
    assert all(torch.equal(undone[k], before[k]) for k in before)


def test_bad_edits_are_refused_and_change_nothing(image):
    opened = M.open_model("resnet18", size=SIZE)
    good = WeightEdit("layer1.0.conv1", "weight", (0, 0, 0, 0), 1.0)
    for bad, words in [
        (WeightEdit("layer1.0.bn1", "weight", (0,), 1.0), "not an editable module"),
        (WeightEdit("layer1.0.conv1", "bias", (0,), 1.0), "has no parameter 'bias'"),
        (WeightEdit("layer1.0.conv1", "weight", (64, 0, 0, 0), 1.0), "outside its shape"),
        (WeightEdit("layer1.0.conv1", "weight", (0, 0, 0), 1.0), "outside its shape"),
        (WeightEdit("layer1.0.conv1", "weight", (0, 0, 0, 0), math.nan), "not a finite"),
        (WeightEdit("layer1.0.conv1", "weight", (0, 0, 0, 0), 1e39), "not a finite"),
    ]:
        with pytest.raises(ModelError, match=words):
            apply_edits(opened, (good, bad))
        assert opened.applied_edits == ()
    torch.testing.assert_close(opened.module.layer1[0].conv1.weight,
                               seeded("resnet18").layer1[0].conv1.weight, rtol=0, atol=0)


def test_saved_weights_load_strictly_and_open_again(image, tmp_path):
    spec = M.ModelSpec("resnet18", edits=with_edit((), "fc", "weight", (3, 10), 4.0))
    opened = M.open_spec(spec)
    path = save_weights(opened, tmp_path / "r.safetensors")
    ref = tvm.resnet18()
    ref.load_state_dict(load_file(path), strict=True)
    assert float(ref.fc.weight.detach()[3, 10]) == 4.0
    torch.testing.assert_close(ref.fc.weight.detach()[3, :10],
                               seeded("resnet18").fc.weight.detach()[3, :10], rtol=0, atol=0)
    again = M.open_model("resnet18", weights=path, size=SIZE)
    small = M.open_model("resnet18", size=SIZE)
    apply_edits(small, spec.edits)
    last = M.run_model(again, image)[-1].output
    torch.testing.assert_close(last, M.run_model(small, image)[-1].output, rtol=0, atol=1e-6)
    assert not list(tmp_path.glob("*.part"))


def test_saved_weights_run_headless_with_weights_flag(image, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from layerlab import cli

    spec = M.ModelSpec("resnet18", edits=with_edit((), "layer1.0.conv1", "weight",
                                                   (1, 2, 0, 1), -3.0))
    weights = save_weights(M.open_spec(spec), tmp_path / "edited.safetensors")
    photo = tmp_path / "astronaut.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(photo)
    out_dir = tmp_path / "out"
    rc = cli.main(["export", str(photo), "--model", "resnet18", "--weights", str(weights),
                   "--out", str(out_dir), "--stages", "layer1.0.conv1", "--raw"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    ref = seeded("resnet18")
    with torch.no_grad():
        ref.layer1[0].conv1.weight[1, 2, 0, 1] = -3.0
    from layerlab.core.imageio import load_image, to_tensor

    _, xn = M.preprocess(M.plan_model("resnet18"), to_tensor(load_image(photo).image, "rgb"))
    seen = {}

    def keep(_module, _args, out) -> None:
        seen["conv"] = out[0].clone()

    ref.layer1[0].conv1.register_forward_hook(keep)
    with torch.no_grad():
        ref(xn)
    (raw,) = out_dir.glob("*-layer1.0.conv1.npy")
    np.testing.assert_allclose(np.load(raw), seen["conv"].numpy(), rtol=0, atol=1e-5)

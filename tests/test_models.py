"""torchvision models in LayerLab: seeded weights saved to a file by the test and loaded back,
every stage against the same model's intermediate outputs computed here with forward hooks
(and torchvision's own feature extractor), the preprocessing against torchvision's preset,
names, patterns, bad files, the memory budget and the hub-cache lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision import models as tvm
from torchvision.transforms import InterpolationMode
from torchvision.transforms._presets import ImageClassification

from layerlab.core import models as M
from layerlab.core.engine import Engine, StageResult
from layerlab.core.imageio import load_image, to_tensor

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "resources" / "samples" / "chelsea.jpg"
SIZE = (64, 64)  # small inputs keep the file fast; every model below takes them


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    return to_tensor(load_image(PHOTO).image, "rgb")


def seeded_model(name: str, seed: int = 123) -> torch.nn.Module:
    """The test's own model with seeded random tensors: weights normal with std
    1/sqrt(fan-in) (activations stay of order one), norm scales in [0.5, 1.5], shifts and
    BatchNorm statistics non-trivial (a stage that skipped them would differ). Filled
    directly rather than through torch's init, which takes seconds for VGG and ConvNeXt."""
    try:
        with torch.device("meta"):
            model = tvm.get_model(name)
        model = model.to_empty(device="cpu")
    except (NotImplementedError, RuntimeError):  # RegNet computes its layout with tensors
        model = tvm.get_model(name)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
            elif t.dim() >= 2:
                t.normal_(0, (t[0].numel()) ** -0.5, generator=g)
            elif key.endswith("running_var") or key.endswith("weight"):
                t.uniform_(0.5, 1.5, generator=g)
            else:
                t.uniform_(-0.2, 0.2, generator=g)
    return model.eval()


def reference_stages(model: torch.nn.Module, x: torch.Tensor):
    """(module path, output) of every module call in order, cloned at once (so later in-place
    ops cannot change them), leaving out a container's output when it is its last module's
    very tensor (nothing new); and the model's output."""
    outs: list[tuple[str, torch.Tensor]] = []
    last = [None]
    leaves = {p for p, m in model.named_modules() if p and not list(m.children())}

    def hook(path):
        def record(module, args, out):
            if isinstance(out, torch.Tensor):
                if path in leaves or out is not last[0]:
                    outs.append((path, out.detach().clone()))
                last[0] = out
        return record

    handles = [m.register_forward_hook(hook(p)) for p, m in model.named_modules() if p]
    try:
        with torch.no_grad():
            final = model(x)
    finally:
        for h in handles:
            h.remove()
    return outs, final


def torchvision_input(name: str, image: torch.Tensor, size=SIZE) -> torch.Tensor:
    """torchvision's classification preset of the model's weights, at the test's crop size."""
    t = tvm.get_model_weights(name).DEFAULT.transforms()
    resize = round(size[0] * t.resize_size[0] / t.crop_size[0])
    preset = ImageClassification(crop_size=size[0], resize_size=resize, mean=t.mean, std=t.std,
                                 interpolation=t.interpolation, antialias=True)
    return preset(image if image.dim() == 4 else image.unsqueeze(0))


MODELS = ["resnet18", "mobilenet_v3_small", "squeezenet1_0", "shufflenet_v2_x0_5",
          "efficientnet_b0", "regnet_x_400mf", "densenet121", "alexnet", "convnext_tiny",
          "vgg11"]


@pytest.mark.parametrize("name", MODELS)
def test_every_stage_equals_the_models_own_intermediate_outputs(name, photo, tmp_path):
    model = seeded_model(name)
    path = tmp_path / f"{name}-seeded.pt"
    torch.save(model.state_dict(), path)

    opened = M.open_model(name, weights=path, size=SIZE)
    assert opened.report is not None and not opened.report.problems()
    results = M.run_model(opened, photo)
    assert all(isinstance(r, StageResult) and r.ok for r in results)
    assert [r.index for r in results] == list(range(len(results)))

    x = torchvision_input(name, photo)
    assert torch.equal(results[1].output, x)  # the normalised input, bit for bit
    refs, final = reference_stages(model, x)
    modules = [r for r in results[2:] if r.type != "Output"]
    assert len(modules) == len(refs)
    seen: dict[str, int] = {}
    for result, (ref_path, ref) in zip(modules, refs, strict=True):
        seen[ref_path] = seen.get(ref_path, 0) + 1
        expected = ref_path if seen[ref_path] == 1 else f"{ref_path}#{seen[ref_path]}"
        assert result.name == expected
        assert result.shape == tuple(ref.shape[1:])
        torch.testing.assert_close(result.output, ref, rtol=0, atol=1e-5,
                                   msg=lambda m, n=result.name: f"{name} {n}: {m}")
    torch.testing.assert_close(results[-1].output.reshape(final.shape), final, rtol=0, atol=1e-5)
    assert results[-1].shape == tuple(final.shape[1:])  # the last stage is the classifier's


def test_the_input_stage_is_torchvisions_resize_and_crop(photo):
    opened = M.open_model("efficientnet_b0", size=SIZE)  # bicubic
    assert opened.interpolation == "bicubic"
    x, xn = M.preprocess(opened, photo)
    t = tvm.EfficientNet_B0_Weights.DEFAULT.transforms()
    assert t.interpolation == InterpolationMode.BICUBIC
    assert torch.equal(xn, torchvision_input("efficientnet_b0", photo))
    spec = M.open_model("resnet18").input_spec  # the full preset: 256 then 224
    assert (spec.resize, spec.center_crop) == (256, (224, 224))
    assert spec.normalize.mean == (0.485, 0.456, 0.406)
    assert spec.normalize.std == (0.229, 0.224, 0.225)


def test_resnet_blocks_equal_torchvisions_feature_extractor(photo, tmp_path):
    """The block outputs (the second ReLU of each block, after the residual addition) against
    torchvision.models.feature_extraction on the same weights."""
    from torchvision.models.feature_extraction import create_feature_extractor

    model = seeded_model("resnet18", seed=7)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    results = {r.name: r for r in M.run_model(M.open_model("resnet18", weights=path,
                                                           size=SIZE), photo)}
    x = torchvision_input("resnet18", photo)
    nodes = {"layer1": "layer1.1.relu#2", "layer2": "layer2.1.relu#2",
             "layer3": "layer3.1.relu#2", "layer4": "layer4.1.relu#2", "avgpool": "avgpool",
             "fc": "fc", "layer1.0.bn1": "layer1.0.bn1"}
    with torch.no_grad():
        # layer1.0.bn1 is changed in place by the ReLU after it; ask for a copy of it
        feats = create_feature_extractor(model, {k: k for k in nodes if k != "layer1.0.bn1"})(x)
        stem = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        bn1 = model.layer1[0].bn1(model.layer1[0].conv1(stem))
    feats["layer1.0.bn1"] = bn1
    for node, stage in nodes.items():
        torch.testing.assert_close(results[stage].output, feats[node], rtol=0, atol=1e-5)
    assert float(results["layer1.0.bn1"].output.min()) < 0  # before the in-place ReLU


def test_stage_names_paths_and_patterns(photo):
    opened = M.open_model("resnet18", size=SIZE)
    names = [s.name for s in opened.stages]
    assert names[:8] == ["input", "normalize", "conv1", "bn1", "relu", "maxpool",
                         "layer1.0.conv1", "layer1.0.bn1"]
    assert "layer1.0.relu#2" in names and names[-1] == "fc"
    paths = {p for p, m in tvm.resnet18().named_modules() if p and not list(m.children())}
    assert set(opened.stage_paths) == paths
    picked = M.run_model(opened, photo, stages="layer*.conv1")
    assert [r.name for r in picked] == ["input", "normalize"] + [
        f"layer{i}.{j}.conv1" for i in (1, 2, 3, 4) for j in (0, 1)]
    full = {r.name: r for r in M.run_model(opened, photo)}
    for r in picked:
        assert r.index == full[r.name].index  # stage numbers do not move with the pattern
        assert torch.equal(r.output, full[r.name].output)
    both = M.run_model(opened, photo, stages="fc, layer4.1.relu")  # the path: both calls
    assert [r.name for r in both][2:] == ["layer4.1.relu", "layer4.1.relu#2", "fc"]
    with pytest.raises(M.ModelError, match=r"no stage of resnet18 matches 'nope\*'.*conv1"):
        M.select_stages(opened.plan, "nope*")


def test_random_weights_are_seeded_and_leave_the_callers_random_state():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    a = M.open_model("squeezenet1_0", seed=3, size=SIZE)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b = M.open_model("squeezenet1_0", seed=3, size=SIZE)
    c = M.open_model("squeezenet1_0", seed=4, size=SIZE)
    torch.manual_seed(3)
    own = tvm.squeezenet1_0()
    for k, v in own.state_dict().items():
        assert torch.equal(a.module.state_dict()[k], v)
        assert torch.equal(b.module.state_dict()[k], v)
    assert not torch.equal(c.module.features[0].weight, own.features[0].weight)
    assert a.weights == "random, seed 3" and len(a.categories) == 1000
    assert a.categories[0] == "tench"  # ImageNet's names, offline, from the weights' metadata


def test_unknown_names_say_the_closest():
    with pytest.raises(M.ModelError, match=r"unknown model 'resnet19'; close names: .*resnet18"):
        M.open_model("resnet19")
    with pytest.raises(M.ModelError, match="not a classification model"):
        M.plan_model("fasterrcnn_resnet50_fpn")
    names = M.classification_models()
    assert "resnet18" in names and "vgg16" in names and "fasterrcnn_resnet50_fpn" not in names


def test_weights_files_that_do_not_fit(tmp_path):
    state = seeded_model("resnet18").state_dict()
    wrong = dict(state)
    wrong["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(M.ModelError, match=r"wrong.pt: layer1.0.conv1.weight has shape "
                                           r"\[64, 64, 1, 1\] but resnet18 needs "
                                           r"\[64, 64, 3, 3\]; nothing loaded"):
        M.open_model("resnet18", weights=tmp_path / "wrong.pt", size=SIZE)
    wrong["fc.weight"] = torch.zeros(10, 512)  # a head of another size does not excuse it
    wrong["fc.bias"] = torch.zeros(10)
    torch.save(wrong, tmp_path / "wrong-10.pt")
    with pytest.raises(M.ModelError, match="layer1.0.conv1.weight has shape"):
        M.open_model("resnet18", weights=tmp_path / "wrong-10.pt", size=SIZE)

    partial = {k: v for k, v in state.items() if not k.startswith("fc.")}
    partial["head.extra"] = torch.zeros(3)
    torch.save(partial, tmp_path / "partial.pt")
    opened = M.open_model("resnet18", weights=tmp_path / "partial.pt", size=SIZE)
    problems = opened.report.problems()
    assert problems[0].startswith("1 key(s) of partial.pt match no tensor") and \
        "head.extra" in problems[0]
    assert "2 tensor(s) of the model get nothing from partial.pt" in problems[1]
    assert "fc.weight" in problems[1]
    assert torch.equal(opened.module.conv1.weight, state["conv1.weight"])

    torch.save({"a.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(M.ModelError, match="none of its 1 key.* nothing loaded"):
        M.open_model("resnet18", weights=tmp_path / "other.pt", size=SIZE)
    with pytest.raises(M.ModelError, match="missing.pt: file does not exist"):
        M.open_model("resnet18", weights=tmp_path / "missing.pt")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(M.ModelError, match="cut.safetensors: not a readable safetensors"):
        M.open_model("resnet18", weights=tmp_path / "cut.safetensors")
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "parallel.pt")
    opened = M.open_model("resnet18", weights=tmp_path / "parallel.pt", size=SIZE)
    assert not opened.report.problems()  # nn.DataParallel's prefix is taken off


def test_a_head_fine_tuned_to_other_classes_gets_that_many_outputs(photo, tmp_path):
    torch.manual_seed(0)
    model = seeded_model("resnet18")
    model.fc = torch.nn.Linear(512, 10)
    model.eval()
    torch.save(model.state_dict(), tmp_path / "cifar-head.pt")
    opened = M.open_model("resnet18", weights=tmp_path / "cifar-head.pt", size=SIZE)
    assert opened.categories == tuple(f"class {i}" for i in range(10))
    assert opened.stages[-1].shape == (10,) and opened.parameter_count == sum(
        p.numel() for p in model.parameters())
    last = M.run_model(opened, photo)[-1]
    with torch.no_grad():
        ref = model(torchvision_input("resnet18", photo))
    torch.testing.assert_close(last.output, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["alexnet", "resnet50", "mobilenet_v2", "efficientnet_b1",
                                  "regnet_y_400mf", "convnext_small", "densenet169",
                                  "swin_t", "vit_b_32", "maxvit_t", "mnasnet0_5",
                                  "wide_resnet50_2", "vgg19_bn", "vit_h_14"])
def test_parameters_are_counted_as_torchvision_documents_them(name):
    """On the meta device, without allocating: equal to the weights' own num_params."""
    plan = M.plan_model(name)
    assert plan.parameter_count == tvm.get_model_weights(name).DEFAULT.meta["num_params"]
    assert plan.input_spec.center_crop == (tvm.get_model_weights(name).DEFAULT.transforms()
                                           .crop_size[0],) * 2


def test_vgg16_is_counted_before_it_is_built_and_refused_over_the_budget():
    plan = M.plan_model("vgg16")
    assert plan.parameter_count == tvm.VGG16_Weights.DEFAULT.meta["num_params"] == 138_357_544
    assert plan.tensor_bytes == 4 * 138_357_544
    M.check_memory(plan, M.DEFAULT_MEMORY_BUDGET)  # fits the default 4 GB budget
    with pytest.raises(M.ModelOverBudget) as info:
        M.open_model("vgg16", memory_budget=512 * 1024**2)
    msg = str(info.value)
    assert msg.startswith("vgg16 needs about 638.3 MB: 527.8 MB of weights (138,357,544 "
                          "parameters)") and "memory budget of 512.0 MB" in msg
    assert info.value.need == plan.need_bytes
    assert plan.need_bytes == plan.tensor_bytes + sum(
        4 * torch.Size(s.shape).numel() for s in plan.stages)


def test_trained_weights_come_from_the_hub_cache_only(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "squeezenet1_0-b66bff10.pth"
    assert M.hub_weights_path("squeezenet1_0") == expected
    with pytest.raises(M.ModelError, match=r"squeezenet1_0-b66bff10.pth is not in .*"
                                           r"checkpoints .*does not download"):
        M.open_model("squeezenet1_0", weights=M.TRAINED)
    model = seeded_model("squeezenet1_0", seed=11)
    expected.parent.mkdir(parents=True)
    torch.save(model.state_dict(), expected)
    opened = M.open_model("squeezenet1_0", weights=M.TRAINED, size=SIZE)
    assert opened.weights == "trained: SqueezeNet1_0_Weights.IMAGENET1K_V1"
    assert opened.report.trained == "SqueezeNet1_0_Weights.IMAGENET1K_V1"
    last = M.run_model(opened, photo)[-1]
    with torch.no_grad():
        ref = model(torchvision_input("squeezenet1_0", photo))
    torch.testing.assert_close(last.output, ref, rtol=0, atol=1e-5)
    assert last.name == "output" and last.shape == (1000,)


def test_alexnet_becomes_an_editable_stack_with_the_same_stages(photo, tmp_path):
    model = seeded_model("alexnet", seed=2)
    torch.save(model.state_dict(), tmp_path / "alexnet.pt")
    opened = M.open_model("alexnet", weights=tmp_path / "alexnet.pt", size=SIZE)
    assert opened.is_chain
    pipeline = M.to_pipeline(opened)
    assert pipeline.input == opened.input_spec
    assert [la.name for la in pipeline.layers][:3] == ["features.0", "features.1", "features.2"]
    assert "flatten" in [la.name for la in pipeline.layers]
    staged = Engine("cpu", channels_last=False).run_all(pipeline, photo, cache=False)
    assert all(r.ok for r in staged), [r.error for r in staged]
    ours = {r.name: r.output for r in M.run_model(opened, photo)}
    for r in staged[2:]:
        if r.name != "flatten":
            torch.testing.assert_close(r.output, ours[r.name], rtol=0, atol=1e-5)
    with pytest.raises(M.ModelError, match="not a plain chain"):
        M.to_pipeline(M.open_model("squeezenet1_0", size=SIZE))


def test_a_cancelled_run_keeps_the_stages_so_far(photo):
    opened = M.open_model("squeezenet1_0", size=SIZE)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 5

    results = M.run_model(opened, photo, cancel=cancel)
    assert [r.name for r in results] == ["input", "normalize", "features.0", "features.1",
                                         "features.2", "features.3.squeeze",
                                         "features.3.squeeze_activation"]
    assert all(r.ok for r in results)


def test_too_small_an_input_is_one_clear_message():
    with pytest.raises(M.ModelError, match="alexnet cannot run on a 8 x 8 input"):
        M.plan_model("alexnet", size=(8, 8))


# --- the headless commands -------------------------------------------------------------------

def cli_run(capsys, *argv) -> tuple[int, str, str]:
    from layerlab import cli

    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_info_lists_the_stages_with_shapes_and_parameters(capsys):
    rc, out, err = cli_run(capsys, "info", "--model", "resnet18")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == ("resnet18 (torchvision): 60 stage(s) after the input and normalize, "
                        "weights random, seed 0")
    assert "shorter side resized to 256 (bilinear), center crop 224 x 224" in lines[1]
    rows = {ln.split()[1]: ln.split() for ln in lines if ln[:5].strip().isdigit()}
    assert rows["conv1"][2:8] == ["Conv2d", "64", "x", "112", "x", "112"]
    assert rows["conv1"][8] == f"{64 * 3 * 7 * 7:,}"
    assert rows["layer4.1.relu#2"][3:8] == ["512", "x", "7", "x", "7"]
    assert rows["fc"][2:5] == ["Linear", "1000", f"{512 * 1000 + 1000:,}"]
    total = sum(p.numel() for p in tvm.resnet18().parameters())
    assert f"{total:,} parameters" in out and total == 11_689_512
    rc, out, _ = cli_run(capsys, "info", "--model", "resnet18", "--stages", "layer*.conv1",
                         "--size", "64x64")
    assert rc == 0
    rows = {ln.split()[1]: ln.split() for ln in out.splitlines() if ln[:5].strip().isdigit()}
    assert list(rows) == ["input", "normalize"] + [f"layer{i}.{j}.conv1" for i in (1, 2, 3, 4)
                                                   for j in (0, 1)]
    assert rows["layer3.0.conv1"][3:8] == ["256", "x", "4", "x", "4"]
    assert "shown: 8 of 60 stages (--stages)" in out
    rc, out, err = cli_run(capsys, "info", "--model", "vit_h_14")  # counted, never built
    assert rc == 0, err
    assert "633,470,440 parameters" in out and "more than the memory budget of 4.0 GB" in out


@pytest.mark.parametrize("argv, needle", [
    (["info", "--model", "resnet19"], "unknown model 'resnet19'; close names: resnet18"),
    (["info", "P.json", "--model", "resnet18"], "not both"),
    (["info", "--model", "resnet18", "--stages", "zzz"], "no stage of resnet18 matches"),
    (["export", "x.png", "--model", "resnet18", "--pipeline", "p.json", "--out", "o"],
     "not allowed with argument"),
    (["export", "x.png", "--model", "vgg", "--out", "o"], "close names: vgg11"),
    (["export", "x.png", "--pipeline", "p.json", "--stages", "a*", "--out", "o"],
     "--stages selects stages of a --model"),
])
def test_command_line_mistakes_are_one_line_and_status_2(capsys, argv, needle):
    rc, out, err = cli_run(capsys, *argv)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_export_writes_the_layout_and_manifest_of_a_stack(capsys, tmp_path):
    import json

    import numpy as np

    model = seeded_model("squeezenet1_0", seed=4)
    weights = tmp_path / "sq.pt"
    torch.save(model.state_dict(), weights)
    out_dir = tmp_path / "out"
    rc, out, err = cli_run(capsys, "export", PHOTO, "--model", "squeezenet1_0", "--weights",
                           weights, "--out", out_dir, "--stages", "features.12,output", "--raw")
    assert rc == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["pipeline"] is None and manifest["model"]["name"] == "squeezenet1_0"
    assert manifest["model"]["stages"] == "features.12,output"
    assert manifest["weights"]["file"] == str(weights)
    assert manifest["weights"]["missing"] == [] and manifest["weights"]["unexpected"] == []
    names = [(s["index"], s["name"], s["path"]) for s in manifest["stages"]]
    assert names == [(0, "input", ""), (1, "normalize", ""), (62, "features.12", "features.12"),
                     (67, "output", "")]
    x = torchvision_input("squeezenet1_0", to_tensor(load_image(PHOTO).image, "rgb"),
                          size=(224, 224))
    with torch.no_grad():
        feats = model.features(x)
        final = model(x)
    assert np.array_equal(np.load(out_dir / "01-normalize.npy"), x[0].numpy())
    np.testing.assert_allclose(np.load(out_dir / "62-features.12.npy"), feats[0].numpy(),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.load(out_dir / "67-output.npy"), final[0].numpy(), rtol=0,
                               atol=1e-5)
    stage = manifest["stages"][2]
    assert stage["shape"] == [512, 13, 13] and len(stage["images"]) == 512
    assert (out_dir / stage["grid"]).is_file()
    assert "wrote 4 stages of squeezenet1_0" in out

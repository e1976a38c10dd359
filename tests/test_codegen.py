"""`layerlab code`: the generated script reproduces LayerLab's numbers outside LayerLab."""

from __future__ import annotations

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from layerlab.core.codegen import generate_script
from layerlab.core.engine import Engine
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import Pipeline
from layerlab.core.specs import OPS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "samples"
PIPELINES = ROOT / "resources" / "pipelines"
EXAMPLES = sorted(PIPELINES.glob("*.layerlab.json"))
ALLOWED_IMPORTS = {"argparse", "sys", "numpy", "torch", "torchvision", "PIL"}


def engine_output(pipeline: Pipeline, image: Path) -> np.ndarray:
    x = to_tensor(load_image(image).image, pipeline.input.mode)
    results = Engine("cpu").run_all(pipeline, x, cache=False)
    assert all(r.ok for r in results), [r.error for r in results]
    return results[-1].output[0].contiguous().numpy()


def p(layers: list[dict], mode: str = "gray", **inp) -> Pipeline:
    return Pipeline.from_dict({"format": "layerlab.pipeline", "version": 1,
                               "input": {"mode": mode, **inp}, "layers": layers})


def example_image(pipeline: Pipeline) -> Path:
    return SAMPLES / ("camera.png" if pipeline.input.mode == "gray" else "chelsea.jpg")


RANDOM_SEEDS = (0, 1)


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory) -> dict[str, tuple[Pipeline, Path, np.ndarray]]:
    """Every script of this module run as ``python script.py IMAGE --out FILE``.

    The interpreters start concurrently (each one imports torch and torchvision, which takes
    seconds); the tests below compare the saved arrays.
    """
    jobs: dict[str, tuple[Pipeline, Path]] = {}
    for path in EXAMPLES:
        pipeline = Pipeline.load(path)
        jobs[path.name.split(".")[0]] = (pipeline, example_image(pipeline))
    for seed in RANDOM_SEEDS:
        jobs[f"random-{seed}"] = (random_pipeline(seed), SAMPLES / "astronaut.jpg")

    root = tmp_path_factory.mktemp("scripts")
    procs = {}
    for name, (pipeline, image) in jobs.items():
        script = root / f"{name}.py"
        script.write_text(generate_script(pipeline, source=f"{name}.layerlab.json"),
                          encoding="utf-8")
        out = root / f"{name}.result"  # not .npy: the script must write exactly this name
        procs[name] = (subprocess.Popen([sys.executable, str(script), str(image), "--out",
                                         str(out)], cwd=root, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True), out)
    results = {}
    for name, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err}"
        arr = np.load(out)
        assert arr.dtype == np.float32
        results[name] = (*jobs[name], arr)
    return results


def assert_close(got: np.ndarray, want: np.ndarray, rel: float = 1e-6) -> float:
    assert got.shape == want.shape
    diff = float(np.abs(got.astype(np.float64) - want).max()) if want.size else 0.0
    assert diff <= rel * max(1.0, float(np.abs(want).max())), diff
    return diff


# --- bundled examples ------------------------------------------------------------------------

@pytest.mark.parametrize("name", [q.name.split(".")[0] for q in EXAMPLES])
def test_script_matches_the_engine_for_every_example(name, script_runs):
    pipeline, image, got = script_runs[name]
    want = engine_output(pipeline, image)
    # The CIFAR-10 net's 800-term sums are added in another order by the engine's
    # channels_last convolutions; everything else is the same float32 arithmetic.
    rel = 1e-5 if "cifar" in name else 1e-6
    assert_close(got, want, rel)


def test_script_reads_like_the_tutorials():
    pipeline = Pipeline.load(PIPELINES / "sharpen-relu-maxpool.layerlab.json")
    src = generate_script(pipeline)
    assert "model = nn.Sequential(" in src
    assert "nn.Conv2d(1, 1, 3, padding=1, bias=False),  # [0] sharpen" in src
    assert "nn.ReLU(),  # [1] relu" in src and "nn.MaxPool2d(2),  # [2] maxpool" in src
    # the 3 x 3 kernel as a readable, aligned block of rows
    assert "[-0.11111111, -0.11111111, -0.11111111],\n" in src
    assert "[-0.11111111,         1.0, -0.11111111]" in src
    assert 'Image.open(path)' in src and 'img.convert("L")' in src
    assert "ToTensor()(img).unsqueeze(0)" in src and "model.eval()" in src
    assert "with torch.no_grad():\n        y = model(x)" in src
    assert max(len(line) for line in src.splitlines()) <= 100


def test_script_imports_only_the_allowed_packages():
    for path in EXAMPLES:
        tree = ast.parse(generate_script(Pipeline.load(path)))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module.split(".")[0])
        assert names <= ALLOWED_IMPORTS, names


def test_cifar_script_resizes_and_seeds_like_layerlab():
    src = generate_script(Pipeline.load(PIPELINES / "cifar10-tutorial.layerlab.json"))
    assert "x = resize(x, [32, 32], antialias=True)" in src
    assert ("nn.init.kaiming_normal_(model[0].weight, generator=torch.Generator()"
            ".manual_seed(1))") in src
    assert "nn.init.zeros_(model[8].bias)" in src
    assert "nn.Linear(1024, 64),  # [7] fc1" in src


# --- randomized stacks -----------------------------------------------------------------------

def _random_params(rng: np.random.Generator, shape: tuple[int, ...]) -> list:
    # mixed magnitudes, including values whose shortest decimal form is tricky
    a = rng.standard_normal(shape).astype(np.float32)
    a.flat[0] = np.float32(1e-38) if a.size > 1 else a.flat[0]
    if a.size > 2:
        a.flat[1] = np.float32(3.4e38)
        a.flat[2] = np.nextafter(np.float32(0.1), np.float32(1))
    return a.tolist()


def random_pipeline(seed: int) -> Pipeline:
    """Convs with random args/init schemes/seeds, BatchNorm with params, Linear layers."""
    rng = np.random.default_rng(seed)
    schemes = ["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
               "torch_default"]
    c1 = int(rng.integers(2, 6))
    k = int(rng.choice([1, 3, 5]))
    bn = {name: rng.standard_normal(c1).astype(np.float32).tolist()
          for name in ("weight", "bias", "running_mean")}
    bn["running_var"] = (rng.random(c1) + 0.5).astype(np.float32).tolist()
    w = rng.standard_normal((c1, 3, k, k)).astype(np.float32) * 0.3
    layers = [
        {"type": "Conv2d", "name": "random conv \"q\" \\ 'x'",
         "args": {"in_channels": 3, "out_channels": c1, "kernel_size": k, "padding": k // 2,
                  "stride": int(rng.integers(1, 3))},
         "init": {"scheme": str(rng.choice(schemes)), "seed": int(rng.integers(0, 2**31))},
         "params": {"weight": w.tolist()}},  # weight given, bias from the seeded init
        {"type": "BatchNorm2d", "name": "bn", "args": {"num_features": c1}, "params": bn},
        {"type": "Sigmoid", "enabled": False},
        {"type": "LeakyReLU", "args": {"negative_slope": float(rng.random())}},
        {"type": "Conv2d", "name": "seeded",
         "args": {"in_channels": c1, "out_channels": 4, "kernel_size": [3, 2], "dilation": 2,
                  "padding_mode": "reflect", "padding": 2},
         "init": {"scheme": str(rng.choice(schemes)), "seed": int(rng.integers(0, 2**31))}},
        {"type": "Conv2d", "name": "normal init",
         "args": {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "groups": 2},
         "init": {"scheme": "normal", "seed": seed, "mean": 0.1, "std": 0.2}},
        {"type": "GroupNorm", "args": {"num_groups": 2, "num_channels": 4}},
        {"type": "AdaptiveAvgPool2d", "args": {"output_size": [3, 4]}},
        {"type": "Flatten"},
        {"type": "Linear", "name": "fc", "args": {"in_features": 48, "out_features": 7},
         "params": {"weight": _random_params(rng, (7, 48)),
                    "bias": rng.standard_normal(7).astype(np.float32).tolist()}},
        {"type": "Tanh"},
        {"type": "Linear", "name": "const", "args": {"in_features": 7, "out_features": 5},
         "init": {"scheme": "constant", "seed": 0, "value": 0.25}},
        {"type": "Linear", "name": "torch init", "args": {"in_features": 5, "out_features": 3},
         "init": {"scheme": "torch_default", "seed": seed + 1}},
    ]
    return p(layers, "rgb", resize=[int(rng.integers(20, 60)), int(rng.integers(20, 60))])


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_randomized_stacks_match_the_engine(seed, script_runs):
    pipeline, image, got = script_runs[f"random-{seed}"]
    want = engine_output(pipeline, image)
    assert got.shape == (3,) and len(set(got.tolist())) == 3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_script_weights_are_bit_identical_to_the_engine(seed, tmp_path):
    pipeline = random_pipeline(seed)
    script = tmp_path / "stack.py"
    script.write_text(generate_script(pipeline), encoding="utf-8")
    model = runpy.run_path(str(script))["build_model"]()
    engine = Engine("cpu", channels_last=False)
    enabled = [layer for _, layer in pipeline.enabled_layers()]
    assert len(model) == len(enabled)
    for module, layer in zip(model, enabled, strict=True):
        ref = engine.build_module(layer).state_dict()
        got = module.state_dict()
        assert set(got) == set(ref)
        for name in ref:
            assert torch.equal(got[name], ref[name]), (layer.type, name)


def test_explicit_weights_round_trip_exactly_even_for_awkward_floats(tmp_path):
    rng = np.random.default_rng(7)
    special = np.array([1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, -0.0, 0.1, 1 / 3,
                        16777217.0, 2.5e-8, 123456.789], np.float32)
    w = np.concatenate([special, rng.standard_normal(54).astype(np.float32) * 1e3])
    pipeline = p([{"type": "Linear", "args": {"in_features": 8, "out_features": 8},
                   "params": {"weight": w.reshape(8, 8).tolist(), "bias": [0.0] * 8}}])
    script = tmp_path / "w.py"
    script.write_text(generate_script(pipeline), encoding="utf-8")
    model = runpy.run_path(str(script))["build_model"]()
    got = model[0].weight.detach().numpy()
    assert got.tobytes() == w.reshape(8, 8).tobytes()


def test_disabled_layers_are_comments_and_indices_stay_aligned():
    pipeline = p([{"type": "ReLU", "name": "off", "enabled": False},
                  {"type": "Conv2d", "name": "k", "args": {"kernel_size": 3}},
                  {"type": "Sigmoid", "enabled": False}])
    src = generate_script(pipeline)
    assert "# nn.ReLU(),  # disabled in LayerLab: off (LayerLab layer 0)" in src
    assert "nn.Conv2d(1, 1, 3),  # [0] k (LayerLab layer 1)" in src
    assert "# nn.Sigmoid(),  # disabled in LayerLab: Sigmoid (LayerLab layer 2)" in src
    assert "model[0].weight" in src and "model[1]" not in src
    compile(src, "stack.py", "exec")


def test_empty_stack_saves_the_input(tmp_path):
    # in-process this time: the script's main() with command-line arguments
    script = tmp_path / "empty.py"
    script.write_text(generate_script(p([], "rgb")), encoding="utf-8")
    out = tmp_path / "x.npy"
    assert runpy.run_path(str(script))["main"]([str(SAMPLES / "chelsea.jpg"), "--out",
                                                str(out)]) == 0
    got = np.load(out)
    want = np.asarray(Image.open(SAMPLES / "chelsea.jpg").convert("RGB"), np.float32) / 255
    assert np.array_equal(got, want.transpose(2, 0, 1))


# --- image loading like imageio --------------------------------------------------------------

def _odd_images(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    paths = []
    # EXIF orientation 6 (rotate 90 degrees): the photo must be turned upright first
    q = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(q, quality=95, exif=exif)
    paths.append(q)
    # RGBA with partial transparency: composited on white
    rgba = np.dstack([rgb, rng.integers(0, 256, (23, 37), dtype=np.uint8)])
    q = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(q)
    paths.append(q)
    # 16-bit grayscale
    q = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65536, (19, 29), dtype=np.uint16)).save(q)
    paths.append(q)
    # palette with a transparent index, and a plain palette
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    q = tmp_path / "palette.png"
    pal.save(q)
    paths.append(q)
    q = tmp_path / "palette-t.png"
    pal.save(q, transparency=3)
    paths.append(q)
    # CMYK JPEG, gray+alpha
    q = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(q, quality=95)
    paths.append(q)
    q = tmp_path / "la.png"
    Image.fromarray(rgba[..., [0, 3]], "LA").save(q)
    paths.append(q)
    return paths


@pytest.mark.parametrize("mode", ["gray", "rgb"])
def test_script_loads_images_exactly_like_layerlab(mode, tmp_path):
    # The script's own load_image(), imported from the generated file.
    script = tmp_path / "load.py"
    script.write_text(generate_script(p([], mode)), encoding="utf-8")
    script_load = runpy.run_path(str(script))["load_image"]
    for image in _odd_images(tmp_path):
        loaded = load_image(image)
        want = to_tensor(loaded.image, mode)
        got = script_load(str(image))
        assert got.dtype == torch.float32 and got.shape == want.shape, image.name
        assert torch.equal(got, want), (image.name, loaded.notes)
    assert script_load(str(tmp_path / "rotated.jpg")).shape[-2:] == (37, 23)  # turned upright


# --- every supported op ----------------------------------------------------------------------

ALL_OPS = [
    {"type": "ZeroPad2d", "args": {"padding": [1, 2, 0, 3]}},
    {"type": "ReflectionPad2d", "args": {"padding": 2}},
    {"type": "ReplicationPad2d", "args": {"padding": 1}},
    {"type": "ConstantPad2d", "args": {"padding": 1, "value": 0.5}},
    {"type": "Conv2d", "args": {"in_channels": 3, "out_channels": 6, "kernel_size": 3,
                                "padding": "same", "padding_mode": "circular"},
     "init": {"scheme": "xavier_uniform", "seed": 3}},
    {"type": "InstanceNorm2d", "args": {"num_features": 6, "affine": True},
     "init": {"scheme": "torch_default", "seed": 1}},
    {"type": "LocalResponseNorm", "args": {"size": 3}},
    {"type": "ELU"}, {"type": "GELU", "args": {"approximate": "tanh"}}, {"type": "SiLU"},
    {"type": "Softplus", "args": {"beta": 2.0}},
    {"type": "Hardtanh", "args": {"min_val": -0.5, "max_val": 0.7}},
    {"type": "LeakyReLU", "args": {"negative_slope": 0.2}}, {"type": "Tanh"},
    {"type": "Dropout", "args": {"p": 0.3}}, {"type": "Dropout2d"},
    {"type": "LPPool2d", "args": {"norm_type": 2.0, "kernel_size": 2}},
    {"type": "AdaptiveMaxPool2d", "args": {"output_size": [10, 12]}},
    {"type": "Upsample", "args": {"scale_factor": 1.5, "mode": "bilinear",
                                  "align_corners": False}},
    {"type": "Upsample", "args": {"size": [16, 16], "scale_factor": None, "mode": "bicubic"}},
    {"type": "Softmax2d"},
    # the layers real CNNs use (6 x 16 x 16 in, 6 x 16 x 16 out)
    {"type": "PReLU", "args": {"num_parameters": 6, "init": 0.2}}, {"type": "ReLU6"},
    {"type": "Hardswish"}, {"type": "Hardsigmoid"}, {"type": "Mish"}, {"type": "SELU"},
    {"type": "CELU", "args": {"alpha": 0.5}},
    {"type": "Threshold", "args": {"threshold": 0.1, "value": -0.2}},
    {"type": "Softmax", "args": {"dim": 1}}, {"type": "LogSoftmax", "args": {"dim": 3}},
    {"type": "Identity"}, {"type": "ChannelShuffle", "args": {"groups": 3}},
    {"type": "PixelUnshuffle", "args": {"downscale_factor": 2}},
    {"type": "PixelShuffle", "args": {"upscale_factor": 2}},
    {"type": "ConvTranspose2d", "args": {"in_channels": 6, "out_channels": 6, "kernel_size": 3,
                                         "stride": 2, "padding": 1, "output_padding": 1,
                                         "groups": 2}, "init": {"scheme": "kaiming_normal",
                                                                "seed": 6}},
    {"type": "AvgPool2d", "args": {"kernel_size": 2}},
    # LayerNorm over C x H x W has a 3-D weight: the seeded scheme applies to it
    {"type": "LayerNorm", "args": {"normalized_shape": [6, 16, 16]},
     "init": {"scheme": "kaiming_uniform", "seed": 9}},
    {"type": "BatchNorm2d", "args": {"num_features": 6, "track_running_stats": False}},
    {"type": "GroupNorm", "args": {"num_groups": 3, "num_channels": 6},
     "init": {"scheme": "torch_default", "seed": 2}},
    {"type": "MaxPool2d", "args": {"kernel_size": 3, "stride": 2, "padding": 1,
                                   "ceil_mode": True}},
    {"type": "Sigmoid"},
    {"type": "AvgPool2d", "args": {"kernel_size": 2, "count_include_pad": False,
                                   "divisor_override": 3, "padding": 1}},
    {"type": "AdaptiveAvgPool2d", "args": {"output_size": 5}},
    {"type": "ReLU"},
    {"type": "Unfold", "args": {"kernel_size": 2, "padding": 1, "stride": 2}},  # 24 x 9
    {"type": "Flatten", "args": {"start_dim": 2}},
    {"type": "LayerNorm", "args": {"normalized_shape": [9]}},
    {"type": "Linear", "args": {"in_features": 9, "out_features": 4},
     "init": {"scheme": "xavier_normal", "seed": 4}},
    {"type": "Flatten"},
    {"type": "Linear", "args": {"in_features": 96, "out_features": 5, "bias": False},
     "init": {"scheme": "torch_default", "seed": 5}},
]


def test_every_op_type_matches_the_engine_bit_for_bit(tmp_path):
    """All op types, odd arguments and every init scheme; engine in NCHW like the script."""
    pipeline = p(ALL_OPS, "rgb", resize=[20, 24])
    assert {layer.type for layer in pipeline.layers} == set(OPS)
    script = tmp_path / "all.py"
    script.write_text(generate_script(pipeline), encoding="utf-8")
    ns = runpy.run_path(str(script))
    model = ns["build_model"]()
    x = ns["load_image"](str(SAMPLES / "astronaut.jpg"))
    image = to_tensor(load_image(SAMPLES / "astronaut.jpg").image, "rgb")
    results = Engine("cpu", channels_last=False).run_all(pipeline, image, cache=False)
    assert all(r.ok for r in results), [r.error for r in results]
    assert torch.equal(x, results[0].output)
    with torch.no_grad():
        for module, result in zip(model, results[1:], strict=True):
            x = module(x)
            assert torch.equal(x, result.output), result.name
    assert tuple(x.shape) == (1, 5)


def test_a_big_stack_reads_its_weights_from_a_tensors_file_beside_the_script(tmp_path):
    from layerlab import cli
    from layerlab.core import codegen

    rng = np.random.default_rng(11)
    n_in, n_out = 64 * 64, codegen.INLINE_MAX_BYTES // (4 * 64 * 64) + 8  # just over
    stack = p([{"type": "Conv2d", "name": "conv", "args": {"in_channels": 1,
               "out_channels": 1, "kernel_size": 3, "padding": 1}},
               {"type": "Flatten"},
               {"type": "Linear", "name": "fc", "args": {"in_features": n_in,
                                                         "out_features": n_out}}],
              resize=[64, 64])
    stack = stack.replace_layer(2, stack.layers[2].with_param(
        "weight", rng.standard_normal((n_out, n_in), dtype=np.float32) / 64))
    assert stack.tensor_bytes() > codegen.INLINE_MAX_BYTES
    source = tmp_path / "big.layerlab.json"
    stack.save(source)
    assert cli.main(["code", str(source)]) == 2  # too many numbers to print
    script = tmp_path / "big_net.py"
    assert cli.main(["code", str(source), "-o", str(script)]) == 0
    beside = tmp_path / "big_net-tensors.safetensors"
    assert beside.is_file() and script.stat().st_size < 100_000
    tree = ast.parse(script.read_text())
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= ALLOWED_IMPORTS | {"json", "os"}, imported
    model = runpy.run_path(str(script))["build_model"]()
    fc = model[2].weight.detach().numpy()
    assert fc.tobytes() == stack.layers[2].params["weight"].tobytes()
    out = tmp_path / "out.npy"
    image = SAMPLES / "camera.png"
    subprocess.run([sys.executable, str(script), str(image), "--out", str(out)], check=True,
                   cwd=tmp_path, capture_output=True)
    np.testing.assert_allclose(np.load(out), engine_output(Pipeline.load(source), image),
                               rtol=1e-5, atol=1e-6)

"""`layerlab export`: the folder layout, exact raw arrays, PNGs, manifest, and safe writing.

References are built here directly from the tutorials' code (Image.open().convert(),
ToTensor(), nn.Conv2d with the sharpen kernel, ...), not through LayerLab's engine, and the
PNGs are checked against the documented normalisation computed with numpy from the .npy files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import ToTensor
from torchvision.transforms.functional import resize

from layerlab import cli
from layerlab.core import render
from layerlab.core.export import (
    ExportCancelled,
    ExportError,
    export_channel_png,
    export_grid_png,
    export_run,
    safe_name,
)
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "samples"
PIPELINES = ROOT / "resources" / "pipelines"
CAMERA = SAMPLES / "camera.png"
CHELSEA = SAMPLES / "chelsea.jpg"
ASTRONAUT = SAMPLES / "astronaut.jpg"
EXAMPLES = sorted(p.name.removesuffix(".layerlab.json") for p in PIPELINES.glob("*.layerlab.json"))


# --- independent references ------------------------------------------------------------------

def tutorial_input(path: Path, mode: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    img = Image.open(path).convert("L" if mode == "gray" else "RGB")
    x = ToTensor()(img).unsqueeze(0)
    if size is not None:
        x = resize(x, list(size), antialias=True)
    return x


def sharpen_conv() -> nn.Conv2d:
    # The tutorial's lines, verbatim in spirit.
    kernel = torch.ones(3, 3) / (-9.0)
    kernel[1][1] = 1
    conv = nn.Conv2d(1, 1, 3, 1, 1, bias=False)
    conv.weight.data = kernel.reshape(1, 1, 3, 3)
    return conv


def sobel_conv() -> nn.Conv2d:
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    sx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    conv.weight.data = torch.stack([sx, sx.T]).reshape(2, 1, 3, 3)
    return conv


def cifar_net() -> nn.Sequential:
    """The tutorial's CIFAR-10 net with the example file's seeded init (seeds 1..5)."""
    net = nn.Sequential(
        nn.Conv2d(3, 32, 5, 1, 2), nn.MaxPool2d(2), nn.Conv2d(32, 32, 5, 1, 2), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, 1, 2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 64),
        nn.Linear(64, 10))
    with torch.no_grad():
        for seed, idx in enumerate((0, 2, 4, 7, 8), start=1):
            nn.init.kaiming_normal_(net[idx].weight, generator=torch.Generator().manual_seed(seed))
            net[idx].bias.zero_()
    return net.eval()


def digits_net() -> nn.Sequential:
    """The bundled digits CNN as the tutorials write one, with its shipped tensors."""
    from safetensors.torch import load

    net = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 10))
    state = load((PIPELINES / "digits-cnn.safetensors").read_bytes())
    index = {"conv1": 0, "conv2": 3, "fc1": 7, "fc2": 9}
    net.load_state_dict({f"{index[k.split('.')[0]]}.{k.split('.')[1]}": v
                         for k, v in state.items()})
    return net.eval()


def box_conv(**kw) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 3, bias=False, **kw)
    conv.weight.data = torch.ones(1, 1, 3, 3) / 9.0
    return conv


def seeded_conv(seed: int) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight.data, generator=torch.Generator().manual_seed(seed))
    return conv


def reference_stages(example: str, image: Path) -> list[np.ndarray]:
    """Every stage (input first) of a bundled example, computed with torch directly."""
    gray = example in ("conv-sharpen-gray", "avgpool-2x2", "edge-detection",
                       "sharpen-relu-maxpool") or example.startswith("lesson-")
    if example == "cifar10-tutorial":
        x = tutorial_input(image, "rgb", (32, 32))
        modules = list(cifar_net())
    elif example == "digits-cnn":
        x = tutorial_input(image, "gray", (32, 32))
        modules = list(digits_net())
    else:
        x = tutorial_input(image, "gray" if gray else "rgb")
        modules = {
            "conv-sharpen-gray": [sharpen_conv()],
            "avgpool-2x2": [nn.AvgPool2d(2, 2)],
            "maxpool-3x3-rgb": [nn.MaxPool2d(kernel_size=3, ceil_mode=False)],
            "edge-detection": [sobel_conv(), nn.ReLU(), nn.MaxPool2d(2)],
            "sharpen-relu-maxpool": [sharpen_conv(), nn.ReLU(), nn.MaxPool2d(2)],
            "lesson-conv-arithmetic": [box_conv(), box_conv(stride=2, padding=1),
                                       box_conv(dilation=2)],
            "lesson-edges-from-data": [seeded_conv(7)],
            "lesson-pooling-vs-stride": [nn.MaxPool2d(2)],  # the other layers start disabled
        }[example]
    out = [x[0].numpy()]
    with torch.no_grad():
        for m in modules:
            x = m(x)
            out.append(x[0].numpy())
    return out


def expected_u8(x: np.ndarray, mode: str) -> np.ndarray:
    """The README's normalisation, in numpy: (C, ...) float32 -> uint8, levels per mode."""
    x = np.asarray(x, dtype=np.float32)
    c = x.shape[0]
    flat = x.reshape(c, -1)
    if mode == "fixed":
        return (np.clip(x, 0, 1) * np.float32(255)).astype(np.uint8)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    if mode == "stage":
        lo, hi = np.full(c, lo.min()), np.full(c, hi.max())
    elif mode == "symmetric":
        m = max(abs(lo.min()), abs(hi.max())) or np.float32(1)
        lo, hi = np.full(c, -m), np.full(c, m)
    lo = lo.astype(np.float32).reshape((c,) + (1,) * (x.ndim - 1))
    hi = hi.astype(np.float32).reshape((c,) + (1,) * (x.ndim - 1))
    span = hi - lo
    y = np.floor((x - lo) / np.where(span == 0, np.float32(1), span) * np.float32(255)
                 + np.float32(0.5))
    y = np.where(span == 0, 0, np.clip(y, 0, 255))
    return y.astype(np.uint8)


def expected_grid(tiles: np.ndarray, gutter: int = 2) -> np.ndarray:
    c, h, w = tiles.shape[:3]
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    out = np.zeros((rows * (h + gutter) - gutter, cols * (w + gutter) - gutter)
                   + tiles.shape[3:], np.uint8)
    for i in range(c):
        r, q = divmod(i, cols)
        out[r * (h + gutter):r * (h + gutter) + h, q * (w + gutter):q * (w + gutter) + w] = \
            tiles[i]
    return out


def expected_strip(values_u8: np.ndarray) -> np.ndarray:
    n = values_u8.size
    ncols = max(min(n, 64), math.ceil(math.sqrt(n)))
    rows = math.ceil(n / ncols)
    cell = max(1, min(8, 512 // max(rows, ncols)))
    img = np.zeros((rows * cell, ncols * cell), np.uint8)
    for i, v in enumerate(values_u8):
        r, q = divmod(i, ncols)
        img[r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] = v
    return img


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def expected_listing(stage_dirs: list[str], channels: list[int], raw: bool) -> set[str]:
    files = {"manifest.json"}
    if channels and channels[-1] == 0:  # a classifier's export: its top classes too
        files.add("predictions.json")
    for d, c in zip(stage_dirs, channels, strict=True):
        files |= {d, f"{d}/grid.png"} | {f"{d}/ch-{k:03d}.png" for k in range(c)}
        if raw:
            files.add(f"{d}.npy")
    return files


def run_cli(*argv: str) -> int:
    return cli.main(["export", *map(str, argv)])


# --- layout and numbers ----------------------------------------------------------------------

def test_default_stack_on_camera_matches_the_tutorial_code(tmp_path, capsys):
    out = tmp_path / "out"
    rc = run_cli(CAMERA, "--pipeline", PIPELINES / "sharpen-relu-maxpool.layerlab.json",
                 "--out", out, "--raw", "--device", "cpu")
    assert rc == 0, capsys.readouterr().err
    dirs = ["00-input", "01-sharpen", "02-relu", "03-maxpool"]
    assert listing(out) == expected_listing(dirs, [1, 1, 1, 1], raw=True)

    refs = reference_stages("sharpen-relu-maxpool", CAMERA)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["image"] == str(CAMERA)
    assert manifest["device"] == "cpu"
    assert manifest["pipeline"] == Pipeline.load(
        PIPELINES / "sharpen-relu-maxpool.layerlab.json").to_dict()
    assert [s["name"] for s in manifest["stages"]] == ["input", "sharpen", "relu", "maxpool"]
    assert [s["type"] for s in manifest["stages"]] == ["Input", "Conv2d", "ReLU", "MaxPool2d"]
    assert [s["shape"] for s in manifest["stages"]] == [[1, 512, 512], [1, 512, 512],
                                                         [1, 512, 512], [1, 256, 256]]
    for k, (stage, ref) in enumerate(zip(manifest["stages"], refs, strict=True)):
        assert stage["index"] == k
        raw = np.load(out / stage["raw"])
        assert raw.dtype == np.float32 and raw.shape == ref.shape
        assert np.abs(raw - ref).max() <= 1e-6
        # the sharpen output really has negative values and values above 1
        if k == 1:
            assert raw.min() < -0.1 and raw.max() > 0.5
        want = expected_u8(raw, "channel")
        ch = png(out / stage["images"][0])
        assert ch.dtype == np.uint8 and ch.ndim == 2
        assert np.array_equal(ch, want[0])
        assert np.array_equal(png(out / stage["grid"]), want[0])
        st = stage["stats"]
        assert st["min"] == float(raw.min()) and st["max"] == float(raw.max())
        assert st["mean"] == pytest.approx(float(raw.astype(np.float64).mean()), rel=1e-5,
                                           abs=1e-7)
        assert st["std"] == pytest.approx(float(raw.astype(np.float64).std(ddof=1)), rel=1e-5)
    # the input stage is exactly ToTensor of the gray image
    assert np.array_equal(np.load(out / "00-input.npy")[0],
                          np.asarray(Image.open(CAMERA).convert("L"), np.float32) / 255)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_exports_the_torch_numbers(example, tmp_path):
    image = CHELSEA  # not square: catches H/W swaps
    out = tmp_path / example
    manifest = export_run(image, PIPELINES / f"{example}.layerlab.json", out, device="cpu",
                          raw=True)
    refs = reference_stages(example, image)
    stages = manifest["stages"]
    assert len(stages) == len(refs)
    dirs, channels = [], []
    for k, (stage, ref) in enumerate(zip(stages, refs, strict=True)):
        d = f"{k:02d}-{stage['name']}"
        dirs.append(d)
        channels.append(ref.shape[0] if ref.ndim == 3 else 0)
        assert stage["shape"] == list(ref.shape)
        assert stage["grid"] == f"{d}/grid.png" and stage["raw"] == f"{d}.npy"
        assert stage["images"] == [f"{d}/ch-{c:03d}.png" for c in range(channels[-1])]
        raw = np.load(out / stage["raw"])
        assert raw.shape == ref.shape
        # The hand-made examples are exact to float32 rounding; the CIFAR-10 net sums up to
        # 800 products per value, and the engine's channels_last convolutions add them in
        # another order than NCHW torch here, so allow a few float32 ulps of the magnitude.
        tol = 1e-6 if example != "cifar10-tutorial" else 1e-5 * float(np.abs(ref).max())
        assert np.abs(raw - ref).max() <= tol, (example, k)
        want = expected_u8(raw if raw.ndim == 3 else raw.reshape(1, -1), "channel")
        if raw.ndim == 3:
            for c in range(raw.shape[0]):
                assert np.array_equal(png(out / stage["images"][c]), want[c])
            assert np.array_equal(png(out / stage["grid"]), expected_grid(want))
        else:
            assert np.array_equal(png(out / stage["grid"]), expected_strip(want[0]))
    assert listing(out) == expected_listing(dirs, channels, raw=True)
    json.loads((out / "manifest.json").read_text())  # strict JSON


def test_vector_stages_are_heat_strips(tmp_path):
    out = tmp_path / "cifar"
    m = export_run(ASTRONAUT, PIPELINES / "cifar10-tutorial.layerlab.json", out, device="cpu")
    by_name = {s["name"]: s for s in m["stages"]}
    assert png(out / by_name["fc2"]["grid"]).shape == (8, 80)  # 10 values, 8 px cells
    assert png(out / by_name["flatten"]["grid"]).shape == (128, 512)  # 1024 = 16 rows of 64
    assert by_name["fc2"]["images"] == [] and by_name["fc2"]["raw"] is None
    assert not list(out.glob("*.npy"))


@pytest.mark.parametrize("mode", ["channel", "stage", "fixed", "symmetric"])
def test_normalisation_modes_match_numpy(mode, tmp_path):
    out = tmp_path / mode
    m = export_run(ASTRONAUT, PIPELINES / "edge-detection.layerlab.json", out, device="cpu",
                   raw=True, normalize=mode)
    sobel = m["stages"][1]
    raw = np.load(out / sobel["raw"])
    assert raw.min() < 0 < raw.max()
    want = expected_u8(raw, mode)
    got = np.stack([png(out / p) for p in sobel["images"]])
    assert np.array_equal(got, want)
    assert np.array_equal(png(out / sobel["grid"]), expected_grid(want))
    if mode == "symmetric":
        assert got[0][raw[0] == 0].tolist() == [128] * int((raw[0] == 0).sum())


def test_colormap_writes_rgb_through_the_table(tmp_path):
    out = tmp_path / "viridis"
    m = export_run(CHELSEA, PIPELINES / "edge-detection.layerlab.json", out, device="cpu",
                   raw=True, colormap="viridis")
    stage = m["stages"][3]
    raw = np.load(out / stage["raw"])
    lut = render.colormap_lut("viridis")
    want = lut[expected_u8(raw, "channel")]
    ch1 = png(out / stage["images"][1])
    assert ch1.shape == raw.shape[1:] + (3,)
    assert np.array_equal(ch1, want[1])
    assert np.array_equal(png(out / stage["grid"]), expected_grid(want))  # black gutters


def test_2d_stage_is_one_image(tmp_path):
    p = Pipeline.from_dict({"format": "layerlab.pipeline", "version": 1,
                            "input": {"mode": "rgb"},
                            "layers": [{"type": "AvgPool2d", "args": {"kernel_size": 8}},
                                       {"type": "Flatten", "args": {"start_dim": 2}}]})
    m = export_run(CHELSEA, p, tmp_path / "o", device="cpu", raw=True)
    flat = m["stages"][2]
    assert flat["shape"] == [3, 37 * 56]
    raw = np.load(tmp_path / "o" / flat["raw"])
    assert flat["images"] == ["02-flatten/ch-000.png"]
    assert np.array_equal(png(tmp_path / "o" / flat["images"][0]), expected_u8(raw[None], "channel")[0])


# --- names and safe writing ------------------------------------------------------------------

def _named(names: list[str]) -> Pipeline:
    return Pipeline(InputSpec("gray"), tuple(LayerSpec("ReLU", {}, name=n) for n in names))


def test_hostile_layer_names_stay_inside_the_folder(tmp_path):
    names = ["../evil", "..", "/etc/passwd", "a\\b", ".hidden", "C:\\x", "ünï cødé 名字",
             "x" * 64, "\u202e\u2028ok", " ", "sobel x"]
    out = tmp_path / "box" / "out"
    out.parent.mkdir()
    m = export_run(CAMERA, _named(names), out, device="cpu", raw=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]
    root = out.resolve()
    for stage in m["stages"]:
        for rel in [stage["grid"], stage["raw"], *stage["images"]]:
            assert ".." not in Path(rel).parts and not Path(rel).is_absolute()
            p = (out / rel).resolve()
            assert p.is_file() and root in p.parents
    dirs = [s["grid"].split("/")[0] for s in m["stages"]]
    assert len(set(dirs)) == len(dirs)
    assert all(len(d) <= 48 and not d.endswith((".", " ")) for d in dirs)
    assert dirs[1] == "01-evil" and dirs[-1] == "11-sobel_x"
    assert [s["name"] for s in m["stages"][1:3]] == ["../evil", ".."]  # names kept in JSON
    assert safe_name("..") == "stage" and safe_name("a/../b") == "a_._b"


def test_existing_folder_is_refused_then_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    pipe = PIPELINES / "conv-sharpen-gray.layerlab.json"
    rc = run_cli(CAMERA, "--pipeline", pipe, "--out", out)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("layerlab: error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert listing(out) == {"keep.txt"} and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    # --overwrite replaces only a folder LayerLab exported: this one is the user's
    rc = run_cli(CAMERA, "--pipeline", pipe, "--out", out, "--overwrite", "--raw")
    err = capsys.readouterr().err
    assert rc == 2 and "is not one: it has no manifest.json" in err
    assert listing(out) == {"keep.txt"} and (out / "keep.txt").read_text() == "mine"

    export = tmp_path / "export"
    assert run_cli(CAMERA, "--pipeline", pipe, "--out", export) == 0
    rc = run_cli(CAMERA, "--pipeline", pipe, "--out", export, "--overwrite", "--raw")
    assert rc == 0
    assert (export / "01-sharpen.npy").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "out"]


def test_empty_existing_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", out, device="cpu")
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("where", ["missing-parent", "parent-is-a-file", "out-is-a-file"])
def test_unwritable_locations_fail_cleanly(where, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    out = {"missing-parent": tmp_path / "nope" / "out",
           "parent-is-a-file": tmp_path / "file.txt" / "out",
           "out-is-a-file": tmp_path / "file.txt"}[where]
    rc = run_cli(CAMERA, "--pipeline", PIPELINES / "avgpool-2x2.layerlab.json", "--out", out)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("layerlab: error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    assert (tmp_path / "file.txt").read_text() == "x"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_read_only_parent_fails_cleanly(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc = run_cli(CAMERA, "--pipeline", PIPELINES / "avgpool-2x2.layerlab.json",
                     "--out", ro / "out")
        assert rc == 2 and "permission denied" in capsys.readouterr().err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("bad", ["image", "pipeline", "device", "shape"])
def test_bad_input_writes_nothing(bad, tmp_path, capsys):
    img, pipe, extra = CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", []
    if bad == "image":
        img = tmp_path / "broken.png"
        img.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif bad == "pipeline":
        pipe = tmp_path / "bad.layerlab.json"
        pipe.write_text('{"format": "layerlab.pipeline", "version": 1, "layers": '
                        '[{"type": "Conv2d", "args": {"kernel_size": -1}}]}')
    elif bad == "device":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        extra = ["--device", "cuda"]
    else:
        pipe = tmp_path / "big.layerlab.json"
        pipe.write_text('{"format": "layerlab.pipeline", "version": 1, "layers": '
                        '[{"type": "MaxPool2d", "args": {"kernel_size": 200}}]}')
        img = tmp_path / "tiny.png"
        Image.new("RGB", (20, 20)).save(img)
    before = listing(tmp_path)
    rc = run_cli(img, "--pipeline", pipe, "--out", tmp_path / "out", *extra)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("layerlab: error: ") and err.count("\n") == 1, err
    assert listing(tmp_path) == before


def test_cancel_leaves_nothing_and_progress_counts_up(tmp_path):
    calls = []

    def progress(done, total, text):
        calls.append((done, total, text))

    with pytest.raises(ExportCancelled):
        export_run(CAMERA, PIPELINES / "edge-detection.layerlab.json", tmp_path / "out",
                   device="cpu", raw=True, progress=progress, cancel=lambda: len(calls) >= 2)
    assert list(tmp_path.iterdir()) == []
    assert [c[0] for c in calls] == [0, 1] and all(c[1] == 5 for c in calls)

    calls.clear()
    export_run(CAMERA, PIPELINES / "edge-detection.layerlab.json", tmp_path / "out",
               device="cpu", progress=progress)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 5]
    assert "maxpool" in calls[3][2]


def test_export_error_types(tmp_path):
    with pytest.raises(ExportError, match="normalize"):
        export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", tmp_path / "o",
                   normalize="loud")
    with pytest.raises(ExportError, match="colormap"):
        export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", tmp_path / "o",
                   colormap="rainbow")
    assert list(tmp_path.iterdir()) == []


def test_nonfinite_stats_are_null(tmp_path):
    p = Pipeline.from_dict({"format": "layerlab.pipeline", "version": 1,
                            "input": {"mode": "gray"},
                            "layers": [{"type": "Conv2d", "args": {"kernel_size": 1,
                                                                   "bias": False},
                                        "params": {"weight": [[[[float("nan")]]]]}}]})
    m = export_run(CHELSEA, p, tmp_path / "o", device="cpu")
    assert m["stages"][1]["stats"] == {"min": None, "max": None, "mean": None, "std": None}
    stats_text = json.dumps(json.loads((tmp_path / "o" / "manifest.json").read_text())["stages"])
    assert "NaN" not in stats_text
    assert not png(tmp_path / "o" / m["stages"][1]["grid"]).any()


def test_single_channel_and_grid_helpers(tmp_path):
    x = tutorial_input(ASTRONAUT, "gray")
    y = sobel_conv()(x).detach()
    export_channel_png(y, 1, tmp_path / "c1.png", normalize="stage")
    export_grid_png(y, tmp_path / "g.png", normalize="stage", colormap="magma")
    want = expected_u8(y[0].numpy(), "stage")
    assert np.array_equal(png(tmp_path / "c1.png"), want[1])
    lut = render.colormap_lut("magma")
    assert np.array_equal(png(tmp_path / "g.png"), expected_grid(lut[want]))
    with pytest.raises(ExportError, match="channel 2"):
        export_channel_png(y, 2, tmp_path / "c2.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.png", "g.png"]

"""``layerlab sweep``: every frame's pixels against the stage computed by torch directly (and
normalised with numpy), the value printed on each frame, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as tvf

from layerlab import cli
from layerlab.core import sweep
from layerlab.core.colormaps import colormap_lut
from layerlab.core.pipeline import Pipeline
from layerlab.core.sweep_output import LABEL_HEIGHT

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / "resources" / "samples" / "camera.png"
PIPELINES = ROOT / "resources" / "pipelines"
SHARPEN = PIPELINES / "conv-sharpen-gray.layerlab.json"
AVGPOOL = PIPELINES / "avgpool-2x2.layerlab.json"


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def camera() -> torch.Tensor:
    """The photo as ToTensor gives it (gray), independently of LayerLab's loader."""
    return tvf.to_tensor(Image.open(CAMERA).convert("L")).unsqueeze(0)


def tutorial_sharpen() -> torch.Tensor:
    k = torch.ones(3, 3) / (-9.0)  # the tutorial's construction, as the example file holds
    k[1][1] = 1
    return k.reshape(1, 1, 3, 3)


def to_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """render's documented mapping, in numpy float32: floor((x - lo) / (hi - lo) * 255 + 0.5)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    y = (x.astype(np.float32) - lo32) / (hi32 - lo32) * np.float32(255) + np.float32(0.5)
    return np.floor(np.clip(y, 0, 255)).astype(np.uint8)


def frames_of(path: Path) -> list[np.ndarray]:
    """Every frame of an animated GIF / PNG as Pillow decodes it, RGB."""
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB")))
    return out


def picture(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The stage picture inside a frame: centred below the label band (the documented
    layout of layerlab.core.sweep_output)."""
    h, w = hw
    y = LABEL_HEIGHT + (frame.shape[0] - LABEL_HEIGHT - h) // 2
    x = (frame.shape[1] - w) // 2
    return frame[y:y + h, x:x + w]


def gray_rgb(u8: np.ndarray) -> np.ndarray:
    return np.repeat(u8[..., None], 3, axis=2)


def test_dilation_gif_frames_equal_torch_with_one_shared_range(tmp_path, capsys):
    out = tmp_path / "dilation.gif"
    rc, text, err = run(capsys, "sweep", CAMERA, "--pipeline", SHARPEN, "--layer", "0",
                        "--param", "dilation", "--values", "1..4", "--out", out,
                        "--duration", "250")
    assert rc == 0, err
    assert "wrote 4 frames of stage 1 (sharpen)" in text
    x = camera()
    stages = [F.conv2d(x, tutorial_sharpen(), padding=1, dilation=d)[0, 0].numpy()
              for d in (1, 2, 3, 4)]
    assert [s.shape for s in stages] == [(512, 512), (510, 510), (508, 508), (506, 506)]
    lo = min(s.min() for s in stages)
    hi = max(s.max() for s in stages)
    frames = frames_of(out)
    assert len(frames) == 4
    assert {f.shape for f in frames} == {(LABEL_HEIGHT + 512, 512, 3)}
    # The gray GIF is lossless (8-bit gray palette): exact pixels, not approximately.
    for f, s in zip(frames, stages, strict=True):
        np.testing.assert_array_equal(picture(f, s.shape), gray_rgb(to_u8(s, lo, hi)))
    with Image.open(out) as im:
        assert im.info["duration"] == 250 and im.info["loop"] == 0
    # The label band holds the value: white text on black, different in every frame.
    bands = [f[:LABEL_HEIGHT, :, 0] for f in frames]
    for band in bands:
        assert set(np.unique(band)) == {0, 255} and (band == 255).sum() > 30
    assert all(not np.array_equal(a, b) for i, a in enumerate(bands) for b in bands[i + 1:])


def test_kernel_size_apng_refits_the_kernel_and_frame_ranges(tmp_path, capsys):
    out = tmp_path / "k.png"
    rc, _, err = run(capsys, "sweep", CAMERA, "--pipeline", SHARPEN, "--layer", "sharpen",
                     "--param", "kernel_size", "--values", "1,3,5", "--out", out,
                     "--range", "frame")
    assert rc == 0, err
    # As the window does it: the 3x3 kernel's centre for 1x1, centred and zero-padded in 5x5.
    k3 = tutorial_sharpen()
    k5 = torch.zeros(1, 1, 5, 5)
    k5[..., 1:4, 1:4] = k3
    kernels = {1: k3[..., 1:2, 1:2], 3: k3, 5: k5}
    frames = frames_of(out)
    assert len(frames) == 3
    for f, k in zip(frames, (1, 3, 5), strict=True):
        s = F.conv2d(camera(), kernels[k], padding=1)[0, 0].numpy()
        assert s.shape == (514 - k + 1,) * 2
        np.testing.assert_array_equal(picture(f, s.shape), gray_rgb(to_u8(s, s.min(), s.max())))


def test_kernel_cell_folder_with_a_colormap(tmp_path, capsys):
    out = tmp_path / "cells"
    rc, _, err = run(capsys, "sweep", CAMERA, "--pipeline", SHARPEN, "--layer", "0",
                     "--param", "weight[0,0,1,1]", "--values=-1..1:3", "--out", out,
                     "--colormap", "viridis", "--normalize", "symmetric")
    assert rc == 0, err
    record = json.loads((out / "sweep.json").read_text())
    assert record["values"] == ["-1", "0", "1"] and record["param"] == "weight[0,0,1,1]"
    assert record["frames"] == ["frame-000.png", "frame-001.png", "frame-002.png"]
    stages = []
    for centre in (-1.0, 0.0, 1.0):
        k = tutorial_sharpen().clone()
        k[0, 0, 1, 1] = centre
        stages.append(F.conv2d(camera(), k, padding=1)[0, 0].numpy())
    m = max(np.abs(s).max() for s in stages)  # symmetric, shared: -m..m for every frame
    lut = colormap_lut("viridis")
    for name, s in zip(record["frames"], stages, strict=True):
        frame = np.asarray(Image.open(out / name).convert("RGB"))
        np.testing.assert_array_equal(picture(frame, s.shape), lut[to_u8(s, -m, m)])


def test_scaling_a_two_channel_kernel_tiles_channels_with_a_range_each(tmp_path, capsys):
    out = tmp_path / "scale.png"
    rc, _, err = run(capsys, "sweep", CAMERA, "--pipeline", PIPELINES /
                     "edge-detection.layerlab.json", "--layer", "sobel", "--param", "weight*",
                     "--values", "0.5,2", "--out", out)
    assert rc == 0, err
    sobel = torch.tensor([[[[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]],
                          [[[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]]]])
    stages = [F.conv2d(camera(), sobel * s, padding=1)[0].numpy() for s in (0.5, 2.0)]
    lo = np.minimum(*[s.reshape(2, -1).min(1) for s in stages])  # per channel, both frames
    hi = np.maximum(*[s.reshape(2, -1).max(1) for s in stages])
    frames = frames_of(out)
    assert [f.shape for f in frames] == [(LABEL_HEIGHT + 512, 512 + 2 + 512, 3)] * 2
    for f, s in zip(frames, stages, strict=True):
        for k in range(2):  # the grid: two tiles in a row, a 2-pixel black gutter between
            tile = f[LABEL_HEIGHT:, k * 514:k * 514 + 512]
            np.testing.assert_array_equal(tile, gray_rgb(to_u8(s[k], lo[k], hi[k])))
        assert not f[LABEL_HEIGHT:, 512:514].any()
    # One range for both frames: the weaker kernel's picture is the flatter one.
    assert np.ptp(frames[0][LABEL_HEIGHT:]) < np.ptp(frames[1][LABEL_HEIGHT:])


def test_input_size_shows_the_last_stage_zoomed(tmp_path, capsys):
    out = tmp_path / "size.gif"
    rc, _, err = run(capsys, "sweep", CAMERA, "--pipeline", AVGPOOL, "--param",
                     "input.resize", "--values", "64,32x48", "--out", out, "--zoom", "2")
    assert rc == 0, err
    stages = []
    for hw in ((64, 64), (32, 48)):  # 64: the shorter side, as transforms.Resize(64)
        small = tvf.resize(camera(), list(hw), antialias=True)
        stages.append(F.avg_pool2d(small, 2)[0, 0].numpy())
    assert [s.shape for s in stages] == [(32, 32), (16, 24)]
    lo = min(s.min() for s in stages)
    hi = max(s.max() for s in stages)
    frames = frames_of(out)
    assert len(frames) == 2
    for f, s in zip(frames, stages, strict=True):
        want = np.repeat(np.repeat(to_u8(s, lo, hi), 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(picture(f, want.shape), gray_rgb(want))


def test_values_ranges_and_kinds():
    pipe = Pipeline.load(SHARPEN)
    target = sweep.parse_target(pipe, "0", "stride")
    assert sweep.parse_values(pipe, target, "1..4") == [1, 2, 3, 4]
    assert sweep.parse_values(pipe, target, "1, 2x3") == [1, [2, 3]]
    scale = sweep.parse_target(pipe, "sharpen", "weight*")
    assert (scale.kind, scale.label) == ("scale", "weight scale")
    cell = sweep.parse_target(pipe, "sharpen", "weight[0,0,2,2]")
    assert sweep.parse_values(pipe, cell, "0..1:5") == [0.0, 0.25, 0.5, 0.75, 1.0]
    size = sweep.parse_target(pipe, None, "input.resize")
    assert sweep.parse_values(pipe, size, "32,16x8") == [32, (16, 8)]
    assert sweep.resolve_stage(pipe, size, None) == len(pipe.stage_names()) - 1


@pytest.mark.parametrize("extra, needles", [
    (["--layer", "0", "--param", "bogus", "--values", "1"], ["no parameter 'bogus'",
                                                              "accepted:", "stride"]),
    (["--layer", "0", "--param", "stride", "--values", "1,0"], ["stride = 0",
                                                                "at least 1"]),
    (["--layer", "0", "--param", "stride", "--values", "1,two"], ["'two' is not a number"]),
    (["--layer", "0", "--param", "stride", "--values", "1..3,2"], ["2 appears twice"]),
    (["--layer", "7", "--param", "stride", "--values", "1"], ["--layer 7 is out of range"]),
    (["--layer", "nope", "--param", "stride", "--values", "1"], ["no layer is named 'nope'"]),
    (["--layer", "0", "--param", "weight[0,0,3,0]", "--values", "1"],
     ["not a cell", "1 x 1 x 3 x 3"]),
    (["--param", "stride", "--values", "1"], ["--layer is needed"]),
    (["--layer", "0", "--param", "stride", "--values", "1", "--stage", "9"],
     ["--stage 9 is out of range"]),
])
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, extra, needles):
    rc, out, err = run(capsys, "sweep", CAMERA, "--pipeline", SHARPEN, "--out",
                       tmp_path / "x.gif", *extra)
    assert rc == 2 and out == ""
    assert err.startswith("layerlab: error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_value_with_an_impossible_shape_names_the_value(tmp_path, capsys):
    rc, _, err = run(capsys, "sweep", CAMERA, "--pipeline", AVGPOOL, "--param",
                     "input.resize", "--values", "8,1", "--out", tmp_path / "x.gif")
    assert rc == 2 and "at input size = 1:" in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_outputs_that_are_refused(tmp_path, capsys):
    base = ["sweep", CAMERA, "--pipeline", SHARPEN, "--layer", "0", "--param", "stride",
            "--values", "1,2"]
    rc, _, err = run(capsys, *base, "--out", tmp_path / "x.jpg")
    assert rc == 2 and "cannot tell the format" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    rc, _, err = run(capsys, *base, "--out", tmp_path / "full")
    assert rc == 2 and "not empty" in err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    copy = tmp_path / "p.png"
    copy.write_bytes(CAMERA.read_bytes())
    rc, _, err = run(capsys, "sweep", copy, "--pipeline", SHARPEN, "--layer", "0", "--param",
                     "stride", "--values", "1,2", "--out", copy)
    assert rc == 2 and "is an input of the sweep" in err
    assert copy.read_bytes() == CAMERA.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "p.png"]  # no temp files


def test_sweep_does_not_import_qt(tmp_path):
    import subprocess
    import sys

    argv = ["sweep", str(CAMERA), "--pipeline", str(AVGPOOL), "--param", "input.resize",
            "--values", "32,48", "--out", str(tmp_path / "s.gif"), "--quiet"]
    code = ("import sys; from layerlab import cli; "
            f"rc = cli.main({argv!r}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'pyqtgraph', 'shiboken6')); "
            "print(rc, bad); assert rc == 0 and not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("0 []") and (tmp_path / "s.gif").is_file()

"""The `layerlab` command: info/code/export/bench dispatch, one-line errors, no Qt headless."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from torch import nn

import layerlab
from layerlab import cli

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "resources" / "samples"
PIPELINES = ROOT / "resources" / "pipelines"
CIFAR = PIPELINES / "cifar10-tutorial.layerlab.json"
MAXPOOL = PIPELINES / "maxpool-3x3-rgb.layerlab.json"
QT = ("PySide6", "pyqtgraph", "shiboken6")


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> None:
    assert rc == 2
    assert out == ""
    assert err.startswith("layerlab: error: ") and err.endswith("\n") and err.count("\n") == 1
    for n in needles:
        assert n in err, err


def table_rows(out: str) -> dict[str, list[str]]:
    """name -> cells of the info table (split on runs of 2+ spaces)."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(-|\d+)\s+(\S+)\s+(\S+)\s+(.+?)\s{2,}([\d,]+)(?:\s{2}(.*))?$",
                     line)
        if m:
            rows[m.group(3)] = list(m.groups())
    return rows


# --- info ------------------------------------------------------------------------------------

def test_info_cifar_net_shapes_params_and_formulas(capsys):
    rc, out, err = run(capsys, "info", CIFAR)
    assert rc == 0 and err == ""
    assert "input size 32 x 32 (the pipeline's input.resize)" in out
    rows = table_rows(out)
    assert list(rows) == ["input", "conv1", "pool1", "conv2", "pool2", "conv3", "pool3",
                          "flatten", "fc1", "fc2"]
    # parameter counts of the tutorial net, counted by torch itself
    net = [nn.Conv2d(3, 32, 5, 1, 2), nn.Conv2d(32, 32, 5, 1, 2), nn.Conv2d(32, 64, 5, 1, 2),
           nn.Linear(1024, 64), nn.Linear(64, 10)]
    counts = [sum(p.numel() for p in m.parameters()) for m in net]
    for name, count in zip(["conv1", "conv2", "conv3", "fc1", "fc2"], counts, strict=True):
        assert rows[name][5] == f"{count:,}"
    assert f"{sum(counts):,} parameters" in out
    assert rows["conv1"][4] == "32 x 32 x 32" and rows["pool3"][4] == "64 x 4 x 4"
    assert rows["flatten"][4] == "1024" and rows["fc2"][4] == "10"
    # the tutorial's padding reasoning: floor((32 + 2*2 - 1*(5-1) - 1)/1 + 1) = 32
    assert "H_out = floor((32 + 2*2 - 1*(5-1) - 1)/1 + 1) = 32" in rows["conv1"][6]
    assert "H_out = floor((16 + 2*0 - 1*(2-1) - 1)/2 + 1) = 8" in rows["pool2"][6]
    assert "64 * 4 * 4 = 1024" in rows["flatten"][6]


def test_info_size_and_image_and_default(capsys):
    rc, out, _ = run(capsys, "info", MAXPOOL, "--size", "100x61")
    assert rc == 0 and "input size 100 x 61 (--size)" in out
    # MaxPool2d(kernel_size=3): stride defaults to 3
    assert table_rows(out)["maxpool1"][4] == "3 x 33 x 20"
    assert "H_out = floor((100 + 2*0 - 1*(3-1) - 1)/3 + 1) = 33" in out
    assert "W_out = floor((61 + 2*0 - 1*(3-1) - 1)/3 + 1) = 20" in out

    rc, out, _ = run(capsys, "info", MAXPOOL, "--image", SAMPLES / "chelsea.jpg")
    assert rc == 0 and "input size 300 x 451 (the size of chelsea.jpg)" in out
    assert table_rows(out)["maxpool1"][4] == "3 x 100 x 150"

    rc, out, _ = run(capsys, "info", PIPELINES / "edge-detection.layerlab.json")
    assert rc == 0 and "input size 224 x 224 (default" in out
    rows = table_rows(out)
    assert rows["sobel"][4] == "2 x 224 x 224" and rows["sobel"][5] == "18"
    assert rows["maxpool"][4] == "2 x 112 x 112"


def test_info_lists_disabled_layers(tmp_path, capsys):
    p = tmp_path / "d.layerlab.json"
    p.write_text(json.dumps({"format": "layerlab.pipeline", "version": 1,
                             "input": {"mode": "gray"},
                             "layers": [{"type": "ReLU", "name": "off", "enabled": False},
                                        {"type": "AvgPool2d", "args": {"kernel_size": 4}}]}))
    rc, out, _ = run(capsys, "info", p, "--size", "8x8")
    assert rc == 0 and "disabled (not run): layer 0 (off)" in out
    assert table_rows(out)["avgpool2d"][1] == "1"  # layer index 1 is stage 1


# --- errors ----------------------------------------------------------------------------------

BAD_PIPELINES = {
    "missing": None,
    "not-json": "{nope",
    "unknown-type": '{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": "Evil"}]}',
    "bad-arg": '{"format": "layerlab.pipeline", "version": 1, "layers": '
               '[{"type": "Conv2d", "name": "c", "args": {"kernel_size": 0}}]}',
    "wrong-version": '{"format": "layerlab.pipeline", "version": 9, "layers": []}',
}


@pytest.mark.parametrize("command", ["info", "code", "export"])
@pytest.mark.parametrize("kind", list(BAD_PIPELINES))
def test_bad_pipeline_is_one_line_and_exit_2(command, kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.layerlab.json"
    if BAD_PIPELINES[kind] is not None:
        path.write_text(BAD_PIPELINES[kind])
    argv = {"info": ["info", path], "code": ["code", path, "-o", tmp_path / "s.py"],
            "export": ["export", SAMPLES / "camera.png", "--pipeline", path, "--out",
                       tmp_path / "out"]}[command]
    before = sorted(tmp_path.iterdir())
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err, path.name)
    assert sorted(tmp_path.iterdir()) == before
    if kind == "bad-arg":
        assert "layer 0 ('c')" in err and "kernel_size" in err


def test_shape_that_does_not_chain_names_the_layer(capsys):
    rc, out, err = run(capsys, "info", MAXPOOL, "--size", "2x2")
    assert_one_line_error(rc, out, err, "layer 0 ('maxpool1')", "kernel_size")


@pytest.mark.parametrize("argv", [
    ["info"], ["info", MAXPOOL, "--size", "big"], ["export", "x.png"],
    ["export", SAMPLES / "camera.png", "--pipeline", MAXPOOL, "--out", "o", "--normalize", "x"],
    ["code"], ["info", MAXPOOL, "--bogus"], ["nonexistent-image.png"],
    ["info", MAXPOOL, "--image", "/nonexistent/photo.jpg"],
])
def test_usage_errors_are_one_line(argv, capsys):
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err)


def test_version_and_help(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"layerlab {layerlab.__version__}"
    for command in ("", "export", "code", "info"):
        rc, out, _ = run(capsys, *([command] if command else []), "--help")
        assert rc == 0 and "example:" in out and "layerlab" in out


# --- code ------------------------------------------------------------------------------------

def test_code_prints_or_writes_the_script(tmp_path, capsys):
    rc, out, err = run(capsys, "code", MAXPOOL)
    assert rc == 0 and err == ""
    assert "nn.MaxPool2d(3),  # [0] maxpool1" in out
    compile(out, "script.py", "exec")
    target = tmp_path / "s.py"
    rc, out2, _ = run(capsys, "code", MAXPOOL, "-o", target)
    assert rc == 0 and out2 == "" and target.read_text() == out
    rc, out, err = run(capsys, "code", MAXPOOL, "-o", tmp_path / "missing" / "s.py")
    assert_one_line_error(rc, out, err, "does not exist")


# --- export through the CLI ------------------------------------------------------------------

def test_export_prints_a_summary(tmp_path, capsys):
    rc, out, err = run(capsys, "export", SAMPLES / "camera.png", "--pipeline",
                       PIPELINES / "avgpool-2x2.layerlab.json", "--out", tmp_path / "o",
                       "--raw", "--device", "cpu")
    assert rc == 0 and err == ""
    assert out.startswith("wrote 2 stages (6 files and manifest.json) to ")
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [s["shape"] for s in manifest["stages"]] == [[1, 512, 512], [1, 256, 256]]


# --- dispatch --------------------------------------------------------------------------------

def test_no_command_opens_the_window_lazily(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("layerlab.qt.app")
    fake.run_app = lambda **kw: calls.append(kw) or 0
    package = types.ModuleType("layerlab.qt")
    package.app = fake
    monkeypatch.setitem(sys.modules, "layerlab.qt", package)
    monkeypatch.setitem(sys.modules, "layerlab.qt.app", fake)
    monkeypatch.setattr(layerlab, "qt", package, raising=False)
    image, pipe = SAMPLES / "camera.png", PIPELINES / "edge-detection.layerlab.json"
    assert cli.main([]) == 0
    assert cli.main([str(image), "--pipeline", str(pipe)]) == 0
    assert calls == [{"image": None, "pipeline": None},
                     {"image": str(image), "pipeline": str(pipe)}]


def test_bench_is_dispatched_with_its_arguments(monkeypatch):
    seen = []
    fake = types.ModuleType("layerlab.bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "layerlab.bench", fake)
    monkeypatch.setattr(layerlab, "bench", fake, raising=False)
    assert cli.main(["bench", "--quick", "--json"]) == 0
    assert seen == [["--quick", "--json"]]


@pytest.mark.parametrize("command", ["info", "code", "export"])
def test_headless_commands_do_not_import_qt(command, tmp_path):
    argv = {"info": ["info", str(CIFAR)],
            "code": ["code", str(MAXPOOL), "-o", str(tmp_path / "s.py")],
            "export": ["export", str(SAMPLES / "chelsea.jpg"), "--pipeline", str(CIFAR),
                       "--out", str(tmp_path / "out"), "--raw", "--quiet"]}[command]
    code = ("import sys; from layerlab import cli; "
            f"rc = cli.main({argv!r}); "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {QT!r}); "
            "print(rc, bad); assert rc == 0 and not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("0 []")

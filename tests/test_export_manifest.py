"""The export manifest maps PNG pixels back to values, is standard JSON, and histogram CSVs
hold exactly np.histogram's counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from layerlab import __version__, cli
from layerlab.core.export import export_run
from layerlab.core.histcsv import histogram_csv
from layerlab.core.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / "resources" / "samples" / "camera.png"
CHELSEA = ROOT / "resources" / "samples" / "chelsea.jpg"
PIPELINES = ROOT / "resources" / "pipelines"


def _refuse(name: str):
    raise AssertionError(f"manifest.json holds the non-standard JSON constant {name}")


def strict_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text("utf-8"), parse_constant=_refuse)


@pytest.mark.parametrize("normalize", ["channel", "stage", "fixed", "symmetric"])
def test_png_pixels_map_back_to_the_raw_values_with_the_recorded_levels(normalize, tmp_path):
    out = tmp_path / "out"
    export_run(CAMERA, PIPELINES / "edge-detection.layerlab.json", out, device="cpu",
               raw=True, normalize=normalize)
    m = strict_manifest(out)
    assert m["format"] == "layerlab.export" and m["version"] == 1
    assert m["layerlab_version"] == __version__
    assert m["torch_version"] == torch.__version__
    assert m["normalize"] == normalize and m["colormap"] == "gray"
    for stage in m["stages"]:
        assert stage["normalize"] == normalize and stage["colormap"] == "gray"
        raw = np.load(out / stage["raw"]).astype(np.float64)
        assert len(stage["levels"]) == raw.shape[0] == len(stage["images"])
        for k, (lo, hi) in enumerate(stage["levels"]):
            u8 = np.asarray(Image.open(out / stage["images"][k])).astype(np.float64)
            x = raw[k]
            if normalize == "fixed":
                assert (lo, hi) == (0.0, 1.0)
                x = np.clip(x, 0.0, 1.0)
            else:
                assert lo <= x.min() and x.max() <= hi  # the levels cover the values
            step = (hi - lo) / 255
            back = lo + u8 * step
            assert np.abs(back - x).max() <= step * (1 + 1e-6)
        if normalize == "symmetric":
            m_abs = np.abs(raw).max()
            assert all(lv == [-m_abs, m_abs] for lv in stage["levels"]) or m_abs == 0
        if normalize == "stage":
            assert all(lv == [raw.min(), raw.max()] for lv in stage["levels"])


def test_channel_levels_are_each_channels_min_and_max(tmp_path):
    out = tmp_path / "out"
    export_run(CHELSEA, PIPELINES / "maxpool-3x3-rgb.layerlab.json", out, device="cpu", raw=True)
    for stage in strict_manifest(out)["stages"]:
        raw = np.load(out / stage["raw"])
        assert stage["levels"] == [[float(c.min()), float(c.max())] for c in raw]


def test_vector_stages_have_one_level_pair(tmp_path):
    out = tmp_path / "out"
    export_run(CHELSEA, PIPELINES / "cifar10-tutorial.layerlab.json", out, device="cpu",
               raw=True)
    last = strict_manifest(out)["stages"][-1]
    raw = np.load(out / last["raw"])
    assert raw.shape == (10,) and last["images"] == []
    assert last["levels"] == [[float(raw.min()), float(raw.max())]]


def test_nan_and_infinity_are_never_written(tmp_path):
    p = Pipeline.from_dict({"format": "layerlab.pipeline", "version": 1,
                            "input": {"mode": "gray"},
                            "layers": [{"type": "Conv2d", "name": "bad",
                                        "args": {"in_channels": 1, "out_channels": 2,
                                                 "kernel_size": 1, "bias": False},
                                        "params": {"weight": [[[[float("nan")]]],
                                                              [[[float("inf")]]]]}}]})
    out = tmp_path / "o"
    export_run(CHELSEA, p, out, device="cpu")
    m = strict_manifest(out)  # raises on NaN / Infinity
    assert m["pipeline"]["layers"][0]["params"]["weight"] == [[[[None]]], [[[None]]]]
    assert m["stages"][1]["stats"]["min"] is None
    for lo, hi in m["stages"][1]["levels"]:
        assert lo is not None and hi is not None  # levels only ever come from finite values


# --- histograms ------------------------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]])


@pytest.mark.parametrize("bins", [64, 7])
def test_export_histograms_equal_numpy(bins, tmp_path):
    out = tmp_path / "out"
    args = ["export", str(CAMERA), "--pipeline", str(PIPELINES / "edge-detection.layerlab.json"),
            "--out", str(out), "--raw", "--histograms", "--quiet"]
    if bins != 64:
        args += ["--bins", str(bins)]
    assert cli.main(args) == 0
    m = strict_manifest(out)
    for stage in m["stages"]:
        name = stage["histogram"]
        assert name == stage["grid"].replace("grid.png", "histogram.csv")
        header, table = read_csv(out / name)
        raw = np.load(out / stage["raw"])
        channels = raw.reshape(raw.shape[0], -1)
        assert header == ["bin_lo", "bin_hi", "stage"] + [f"ch{k}" for k in range(len(channels))]
        assert table.shape == (bins, 3 + len(channels))
        counts, edges = np.histogram(raw, bins=bins)
        np.testing.assert_array_equal(table[:, 0], edges[:-1])
        np.testing.assert_array_equal(table[:, 1], edges[1:])
        np.testing.assert_array_equal(table[:, 2], counts)
        for k, ch in enumerate(channels):
            np.testing.assert_array_equal(table[:, 3 + k], np.histogram(ch, bins=edges)[0])


def test_histograms_are_off_by_default_and_the_listing_stays_an_export(tmp_path):
    out = tmp_path / "out"
    export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", out, device="cpu")
    assert all(s["histogram"] is None for s in strict_manifest(out)["stages"])
    assert not list(out.rglob("*.csv"))
    # an export with histograms can be replaced with --overwrite (everything in it is listed)
    export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", out, device="cpu",
               histograms=True, overwrite=True)
    export_run(CAMERA, PIPELINES / "avgpool-2x2.layerlab.json", out, device="cpu",
               histograms=True, overwrite=True)
    assert len(list(out.rglob("histogram.csv"))) == 2


def test_histogram_csv_of_a_vector_and_of_nonfinite_values():
    v = torch.tensor([[0.0, 1.0, 2.0, 3.0, float("nan"), float("inf")]])
    lines = histogram_csv(v, 3).splitlines()
    assert lines[0] == "bin_lo,bin_hi,stage,ch0"
    counts, edges = np.histogram(np.array([0.0, 1.0, 2.0, 3.0], np.float32), bins=3)
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[2]) for r in rows] == counts.tolist() == [1, 1, 2]
    assert [float(r[0]) for r in rows] == edges[:-1].tolist()


def test_bad_bins_are_one_error_line(tmp_path, capsys):
    rc = cli.main(["export", str(CAMERA), "--pipeline",
                   str(PIPELINES / "avgpool-2x2.layerlab.json"), "--out", str(tmp_path / "o"),
                   "--histograms", "--bins", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "bins must be 1 to 65536, not 0" in err
    assert list(tmp_path.iterdir()) == []

"""Fast exports: PNG levels and parallel encoding give the same pixels, batches of images
(folders, globs, several files) give what single exports give, shards partition exactly."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerlab import cli, cli_export
from layerlab.bench import four_stage_pipeline
from layerlab.bench.plain_export import main as plain_main
from layerlab.core import png
from layerlab.core.batch import (
    collect_images,
    export_batch,
    folder_names,
    parse_shard,
    shard,
)
from layerlab.core.export import ExportCancelled, ExportError, export_run
from layerlab.core.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "resources" / "pipelines"
EDGES = PIPELINES / "edge-detection.layerlab.json"


def photo(path: Path, seed: int, size=(48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    a = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)
    return path


def folder_of_photos(folder: Path, n: int, suffix: str = ".png") -> list[Path]:
    folder.mkdir()
    return [photo(folder / f"p{k:02d}{suffix}", k) for k in range(n)]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert(im.mode)).copy()


def tree(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file()}


def same_export(a: Path, b: Path, *, same_bytes: bool = False) -> None:
    """Two exports hold the same files; PNGs decode to the same pixels."""
    ta, tb = tree(a), tree(b)
    assert ta.keys() == tb.keys()
    for name, pa in ta.items():
        if name.endswith(".png") and not same_bytes:
            x, y = pixels(pa), pixels(tb[name])
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
        else:
            assert pa.read_bytes() == tb[name].read_bytes(), name


# --- PNG levels and the parallel writer -------------------------------------------------------

@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3), (1, 1), (300, 2)])
def test_every_level_decodes_to_the_pillow_default_encode(shape):
    rng = np.random.default_rng(1)
    a = (rng.integers(0, 40, shape) + np.arange(shape[1]).reshape(1, -1, *([1] * (len(shape) - 2)))
         ).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")  # Pillow's defaults: level 6
    reference = pixels(io.BytesIO(buf.getvalue()))
    sizes = []
    for level in range(10):
        data = png.encode(a, level)
        sizes.append(len(data))
        assert np.array_equal(pixels(io.BytesIO(data)), reference)
        assert np.array_equal(reference, a)
    assert sizes[0] >= sizes[9]  # level 0 stores, level 9 compresses hardest


def test_strided_and_large_arrays_round_trip(monkeypatch):
    rng = np.random.default_rng(2)
    big = rng.integers(0, 256, (64, 90, 3), dtype=np.uint8)
    for a in (big[::2, 1::3], big[:, :, 1], big[5:6], np.zeros((3, 5), np.uint8) + 255):
        for level in (0, 1, 9):
            assert np.array_equal(pixels(io.BytesIO(png.encode(a, level))), a)
    monkeypatch.setattr(png, "_IDAT_MAX", 7)  # many IDAT chunks decode as one stream
    monkeypatch.setattr(png, "_BLOCK_BYTES", 100)  # rows filtered a few at a time
    assert np.array_equal(pixels(io.BytesIO(png.encode(big, 1))), big)
    with pytest.raises(ValueError, match="expected uint8"):
        png.encode(big.astype(np.float32))
    with pytest.raises(ValueError, match="cannot write"):
        png.encode(np.zeros((0, 4), np.uint8))


@pytest.mark.parametrize("level", [-1, 10, 1.5, True, "3"])
def test_a_bad_level_is_refused(level, tmp_path):
    with pytest.raises(ValueError, match="from 0 to 9"):
        png.check_level(level)
    with pytest.raises(ExportError, match="from 0 to 9"):
        export_run(ROOT / "resources/samples/camera.png", EDGES, tmp_path / "o", device="cpu",
                   png_level=level)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("colormap", ["gray", "viridis"])
def test_parallel_and_level_do_not_change_pixels_or_manifest(tmp_path, colormap):
    img = photo(tmp_path / "in.png", 3, (70, 50))
    ref = tmp_path / "ref"  # sequential, in this thread, at Pillow's default level
    m0 = export_run(img, EDGES, ref, device="cpu", raw=True, colormap=colormap, jobs=0,
                    png_level=png.PILLOW_DEFAULT_LEVEL)
    for k, (level, jobs) in enumerate([(1, None), (9, 3), (0, 1)]):
        out = tmp_path / f"o{k}"
        m = export_run(img, EDGES, out, device="cpu", raw=True, colormap=colormap, jobs=jobs,
                       png_level=level)
        assert m == m0
        same_export(ref, out)


def test_plain_script_writes_the_same_pixels(tmp_path, capsys):
    # The bench's baseline writes what `layerlab export` writes (so the timing is fair).
    img = photo(tmp_path / "in.png", 4, (64, 48))
    pipe = tmp_path / "four.layerlab.json"
    four_stage_pipeline(48).save(pipe)
    export_run(img, pipe, tmp_path / "ours", device="cpu")
    assert plain_main([str(img), str(pipe), str(tmp_path / "plain")]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 1
    (tmp_path / "ours" / "manifest.json").unlink()
    same_export(tmp_path / "ours", tmp_path / "plain")


def test_a_failed_write_in_a_pool_thread_leaves_nothing(tmp_path):
    calls = []

    def fail_third(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        png.safeio.write_new_file(path, data)

    writer = png.ParallelWriter(1, workers=2, write=fail_third)
    with pytest.raises(OSError):  # from a later submit, or at the latest from wait
        for k in range(6):
            writer.submit(tmp_path / f"{k}.png", lambda: np.zeros((4, 4), np.uint8), 16)
        writer.wait()
    writer.close(abort=True)
    with pytest.raises(png.Aborted):
        writer.submit(tmp_path / "late.png", lambda: np.zeros((4, 4), np.uint8))


def test_disk_full_during_a_parallel_export_leaves_nothing(tmp_path, monkeypatch):
    real = png.safeio.write_new_file
    calls = []

    def fill_up(path, data):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(png.safeio, "write_new_file", fill_up)
    box = tmp_path / "box"
    box.mkdir()
    img = photo(tmp_path / "in.png", 5)
    with pytest.raises(ExportError, match="the disk is full"):
        export_run(img, EDGES, box / "out", device="cpu", jobs=2)
    assert len(calls) >= 4 and list(box.iterdir()) == []


# --- batches ----------------------------------------------------------------------------------

def test_a_folder_batch_equals_single_exports(tmp_path):
    images = folder_of_photos(tmp_path / "in", 3)
    pipe = Pipeline.load(EDGES)
    m = export_batch([tmp_path / "in"], pipe, tmp_path / "batch", device="cpu", raw=True,
                     pipeline_path=EDGES)
    assert m["format"] == "layerlab.batch" and m["shard"] is None
    assert [e["folder"] for e in m["images"]] == ["p00", "p01", "p02"]
    assert [e["image"] for e in m["images"]] == [str(p) for p in images]
    on_disk = json.loads((tmp_path / "batch" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == \
        ["manifest.json", "p00", "p01", "p02"]
    for p, entry in zip(images, m["images"], strict=True):
        single = tmp_path / f"single-{p.stem}"
        ms = export_run(p, EDGES, single, device="cpu", raw=True, jobs=0, png_level=6)
        sub = tmp_path / "batch" / entry["folder"]
        assert json.loads((sub / "manifest.json").read_text()) == json.loads(json.dumps(ms))
        same_export(single, sub)


def test_globs_files_and_collisions(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    x = photo(tmp_path / "a" / "x.png", 1)
    photo(tmp_path / "a" / "y.jpg", 2)
    x2 = photo(tmp_path / "b" / "x.png", 3)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(x.read_bytes())
    found = collect_images([str(tmp_path / "*" / "x.png"), tmp_path / "a", x])
    assert found == [x, x2, tmp_path / "a" / "y.jpg"]  # x named twice: kept once
    assert folder_names(found) == ["x", "x-2", "y"]
    with pytest.raises(ExportError, match="no file matches"):
        collect_images([str(tmp_path / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="it is a directory and holds no image files"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(ExportError, match="does not exist"):
        collect_images([tmp_path / "missing.png"])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
def test_shards_partition_the_list_exactly(n):
    items = [f"img{k}" for k in range(10)]
    parts = [shard(items, i, n) for i in range(1, n + 1)]
    flat = [x for part in parts for x in part]
    assert sorted(flat) == sorted(items) and len(flat) == len(set(flat))  # complete, disjoint
    assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced


def test_shard_exports_partition_a_folder(tmp_path):
    folder_of_photos(tmp_path / "in", 5)
    seen = []
    for i in (1, 2, 3):
        assert cli.main(["export", str(tmp_path / "in"), "--pipeline", str(EDGES), "--out",
                         str(tmp_path / f"s{i}"), "--shard", f"{i}/3", "-q"]) == 0
        m = json.loads((tmp_path / f"s{i}" / "manifest.json").read_text())
        assert m["shard"] == {"index": i, "count": 3}
        seen += [e["folder"] for e in m["images"]]
        for e in m["images"]:
            assert (tmp_path / f"s{i}" / e["manifest"]).is_file()
    assert sorted(seen) == [f"p{k:02d}" for k in range(5)] and len(seen) == len(set(seen))


@pytest.mark.parametrize("bad, why", [("0/3", "must be from 1 to 3"), ("4/3", "from 1 to 3"),
                                      ("1/0", "from 1 to"), ("a/b", "two whole numbers"),
                                      ("1-3", "look like i/n"), ("", "look like i/n"),
                                      ("1/2/3", "look like i/n")])
def test_a_bad_shard_is_an_error(bad, why, tmp_path, capsys):
    with pytest.raises(ValueError, match=why):
        parse_shard(bad)
    folder_of_photos(tmp_path / "in", 2)
    rc = cli.main(["export", str(tmp_path / "in"), "--pipeline", str(EDGES), "--out",
                   str(tmp_path / "out"), "--shard", bad])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("layerlab: error: argument --shard") and why in err
    assert not (tmp_path / "out").exists()


def test_batch_cli_progress_overwrite_and_refusals(tmp_path, capsys):
    folder_of_photos(tmp_path / "in", 2)
    args = ["export", str(tmp_path / "in" / "p00.png"), str(tmp_path / "in" / "p01.png"),
            "--pipeline", str(EDGES), "--out", str(tmp_path / "out")]
    assert cli.main(args) == 0
    cap = capsys.readouterr()
    assert "[1/2] p00.png" in cap.err and "[2/2] p01.png" in cap.err
    assert "wrote 2 image export(s)" in cap.out
    assert cli.main(args) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite", "-q"]) == 0
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert cli.main(args + ["--overwrite"]) == 2
    assert "'mine.txt'" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"
    # An export into the folder holding the images is refused.
    assert cli.main(args[:-1] + [str(tmp_path / "in"), "--overwrite"]) == 2
    assert "refusing to export into" in capsys.readouterr().err


def test_a_bad_image_or_cancel_in_a_batch_leaves_nothing(tmp_path):
    folder_of_photos(tmp_path / "in", 3)
    (tmp_path / "in" / "p01.png").write_bytes(b"not a png at all")
    box = tmp_path / "box"
    box.mkdir()
    with pytest.raises(ExportError, match="p01.png"):
        export_batch([tmp_path / "in"], Pipeline.load(EDGES), box / "out", device="cpu")
    assert list(box.iterdir()) == []
    (tmp_path / "in" / "p01.png").unlink()
    done = []
    with pytest.raises(ExportCancelled):
        export_batch([tmp_path / "in"], Pipeline.load(EDGES), box / "out", device="cpu",
                     progress=lambda k, n, text: done.append(k), cancel=lambda: bool(done))
    assert done == [1] and list(box.iterdir()) == []


def test_a_batch_stopped_by_sigterm_leaves_nothing(tmp_path):
    folder_of_photos(tmp_path / "in", 4)
    code = ("import os, signal, sys\n"
            "from layerlab import cli\n"
            "from layerlab.core import batch\n"
            "real = batch.write_export\n"
            "def once(*a, **kw):\n"
            "    out = real(*a, **kw)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return out\n"
            "batch.write_export = once\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    p = subprocess.run([sys.executable, "-c", code, "export", str(tmp_path / "in"),
                        "--pipeline", str(EDGES), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 143, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("c", [1, 2, 3, 5, 16, 17])
def test_the_export_mosaic_is_render_make_grid(c):
    from layerlab.core import export, render

    u8 = np.random.default_rng(c).integers(0, 256, (c, 7, 5), dtype=np.uint8)
    assert np.array_equal(export._mosaic(u8), render.make_grid(u8, padding=export.GUTTER))


@pytest.mark.parametrize("mode", ["channel", "stage", "fixed", "symmetric"])
@pytest.mark.parametrize("special", [None, "nan", "inf", "huge"])
def test_chunked_normalisation_is_to_uint8(mode, special, monkeypatch):
    import torch

    from layerlab.core import export, render

    t = torch.randn(1, 7, 9, 11) * 3
    if special == "nan":
        t[0, 2, 1, 1] = float("nan")
    elif special == "inf":
        t[0, 4, 0, 0] = float("inf")
    elif special == "huge":
        t[0, 3, 0, 0], t[0, 3, 0, 1] = 3e38, -3e38
    from layerlab.core import stage_images

    monkeypatch.setattr(stage_images, "U8_CHUNK_BYTES", 9 * 11 * 4 * 2)  # two at a time
    assert np.array_equal(export.stage_uint8(t, mode), render.to_uint8(t, mode))


def test_cli_png_options(tmp_path, capsys):
    assert cli_export.PNG_DEFAULT_LEVEL == png.DEFAULT_LEVEL  # the help text says the real default
    img = photo(tmp_path / "in.png", 6)
    for bad in (["--png-level", "10"], ["--png-level", "x"], ["--jobs", "0"]):
        rc = cli.main(["export", str(img), "--pipeline", str(EDGES), "--out",
                       str(tmp_path / "o"), *bad])
        assert rc == 2 and "layerlab: error: argument" in capsys.readouterr().err
    assert cli.main(["export", str(img), "--pipeline", str(EDGES), "--out", str(tmp_path / "a"),
                     "--png-level", "9", "-j", "2", "-q"]) == 0
    assert cli.main(["export", str(img), "--pipeline", str(EDGES), "--out", str(tmp_path / "b"),
                     "--png-level", "0", "-q"]) == 0
    same_export(tmp_path / "a", tmp_path / "b")
    assert not (tmp_path / "o").exists()

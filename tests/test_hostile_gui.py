"""The window under bad input and abuse: every hostile image dropped onto it and every hostile
pipeline file opened says exactly what is wrong (naming the file, the layer and the field),
changes nothing when it fails, and leaves a window that still runs the next edit. Runtime
failures (a stage failing in torch, the GPU out of memory, an export into a folder that cannot
be written) are reported next to what failed; closing in the middle of work exits cleanly."""

from __future__ import annotations

import errno
import io
import json
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from gui_helpers import assert_view_shows, drop_files, full_view, wait_idle
from PIL import Image, ImageOps
from torch import nn

from layerlab.core import export
from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.core.pipeline import (
    InputSpec,
    Pipeline,
    format_bytes,
    new_layer,
)
from layerlab.qt.persistence import session_file

# --- helpers ---------------------------------------------------------------------------------


def preview_tensor(window) -> torch.Tensor:
    return to_tensor(window.session.preview.image, window.session.document.pipeline.input.mode)


def snapshot(window) -> dict:
    """Everything a failed load must leave as it was."""
    w = window
    return {
        "image": w.session.loaded, "preview": w.session.preview, "path": w.session.loaded.path,
        "pipeline": w.session.document.pipeline,
        "json": json.dumps(w.session.document.pipeline.to_dict()),
        "doc_path": w.session.document.path, "undo": w.session.document.undo_stack.count(),
        "modified": w.isWindowModified(), "title": w.windowTitle(),
        "views": dict(w.session.results),
        "values": {i: v.values.copy() for i, v in w.session.results.items() if v.values is not None},
        "panel": {i: w.session.results.get(i) for i in w.session.results},
        "runs": w.runner.runs_started,
    }


def assert_untouched(window, before: dict) -> None:
    after = snapshot(window)
    for key in ("image", "preview", "pipeline", "panel"):
        assert after[key] is before[key] or after[key] == before[key], key
    for key in ("path", "json", "doc_path", "undo", "modified", "title", "runs"):
        assert after[key] == before[key], key
    assert after["views"].keys() == before["views"].keys()
    for i, view in before["views"].items():
        assert after["views"][i] is view
    assert after["values"].keys() == before["values"].keys()
    for i, values in before["values"].items():
        np.testing.assert_array_equal(after["values"][i], values)


def assert_same_results(results: dict, before: dict) -> None:
    """The same stages of the same run (their views may have been drawn in full since)."""
    assert results.keys() == before.keys()
    for i, view in before.items():
        assert results[i].result is view.result, i


def assert_shows_engine_result(window) -> None:
    """The stages on screen are what a fresh engine computes for the document's pipeline."""
    w = window
    results = Engine(w.session.device).run_all(w.session.document.pipeline, preview_tensor(w))
    assert sorted(w.session.results) == list(range(len(results)))
    for r in results:
        view = w.session.results[r.index]
        assert view.generation == w.runner.generation
        assert w.session.results.get(r.index) is view
        if r.error:
            assert view.result.error == r.error
        else:
            assert_view_shows(view, r.output, exact=w.session.device == "cpu")


def assert_still_works(window, qtbot) -> None:
    """The app is responsive: an ordinary edit runs and shows torch's numbers."""
    w = window
    runs = w.runner.runs_started
    w.session.document.insert_layer(len(w.session.document.pipeline.layers), "ReLU", None)
    wait_idle(w, qtbot)
    assert w.runner.runs_started > runs
    assert w.session.validation.ok and w.session.last_summary.error is None
    assert_shows_engine_result(w)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose header declares width x height (CRC fixed up)."""
    data = bytearray(png_bytes(Image.new("L", (8, 8), 0)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def noise(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w, channels) if channels > 1 else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --- hostile images, dropped -----------------------------------------------------------------


def _truncated(tmp: Path, name: str, fmt: str) -> Path:
    buf = io.BytesIO()
    Image.fromarray(noise(60, 80)).save(buf, fmt)
    data = buf.getvalue()
    (tmp / name).write_bytes(data[: len(data) // 2])
    return tmp / name


def _make_failing(kind: str, tmp: Path) -> tuple[Path, str]:
    """A hostile file and the exact message the window must show for it."""
    if kind == "zero-byte":
        (tmp / "empty.png").write_bytes(b"")
        return tmp / "empty.png", "Cannot open 'empty.png': the file is empty (0 bytes)"
    if kind == "truncated-jpeg":
        return _truncated(tmp, "cut.jpg", "JPEG"), "Cannot open 'cut.jpg': the file is truncated"
    if kind == "truncated-png":
        return _truncated(tmp, "cut.png", "PNG"), "Cannot open 'cut.png': the file is truncated"
    if kind == "text-named-png":
        (tmp / "notes.png").write_text("shopping list: eggs, milk\n")
        return tmp / "notes.png", "Cannot open 'notes.png': it is not an image Pillow can read"
    if kind == "decompression-bomb":
        (tmp / "bomb.png").write_bytes(bomb_png(100_000, 100_000))
        return tmp / "bomb.png", (f"Cannot open 'bomb.png': it declares 100000x100000 pixels, "
                                  f"more than the {Image.MAX_IMAGE_PIXELS}-pixel safety limit")
    if kind == "missing":
        return tmp / "gone.png", "Cannot open 'gone.png': the file does not exist"
    if kind == "directory":
        (tmp / "holiday photos").mkdir()
        return (tmp / "holiday photos",
                "Cannot open 'holiday photos': it is a folder, not an image file")
    raise AssertionError(kind)


FAILING_IMAGES = ["zero-byte", "truncated-jpeg", "truncated-png", "text-named-png",
                  "decompression-bomb", "missing", "directory"]


@pytest.mark.parametrize("kind", FAILING_IMAGES)
def test_dropped_bad_image_says_why_and_changes_nothing(kind, main_window, qtbot, tmp_path):
    w = main_window
    path, message = _make_failing(kind, tmp_path)
    before = snapshot(w)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert w.banner.text() == message
    assert w.statusBar().currentMessage() == message
    wait_idle(w, qtbot)
    assert_untouched(w, before)
    assert str(path.resolve()) not in w.files.recent()
    assert_still_works(w, qtbot)


def _expect_input(window, expected_u8: np.ndarray) -> None:
    """Stage 0 (the gray input of the default stack) holds exactly these 8-bit pixels."""
    values = window.session.results[0].values
    assert values.shape == (1, *expected_u8.shape)
    np.testing.assert_array_equal(values[0], expected_u8.astype(np.float32) / 255)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.array(Image.fromarray(rgb).convert("L"))


def test_16_bit_grayscale_png(main_window, qtbot, tmp_path):
    w = main_window
    v16 = (np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) * 54).astype(np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(v16).save(path)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == "Opened depth.png (40×30): 16-bit image reduced to 8 bits"
    assert not w.banner.isVisible()
    _expect_input(w, ((v16.astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert_shows_engine_result(w)


def test_cmyk_jpeg(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "print.jpg"
    Image.fromarray(noise(60, 80)).convert("CMYK").save(path, quality=95)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == "Opened print.jpg (80×60): CMYK converted to RGB"
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        expected = np.asarray(im.convert("RGB").convert("L"))
    _expect_input(w, expected)
    assert_shows_engine_result(w)


def test_palette_png_with_transparency_is_composited_on_white(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "logo.png"
    im = Image.new("P", (20, 10), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # 0: red (transparent), 1: blue
    im.paste(1, (0, 0, 10, 10))
    im.save(path, transparency=0)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == ("Opened logo.png (20×10): alpha channel "
                                              "composited on white")
    expected = np.full((10, 20), 255, np.uint8)
    expected[:, :10] = _gray(np.array([[[0, 0, 255]]], np.uint8))[0, 0]  # blue, opaque
    _expect_input(w, expected)
    assert_shows_engine_result(w)


def test_rgba_png(main_window, qtbot, tmp_path):
    w = main_window
    rgb = noise(30, 40)
    alpha = np.zeros((30, 40), np.uint8)
    alpha[:, 20:] = 255  # left half fully transparent, right half opaque
    path = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == ("Opened cutout.png (40×30): alpha channel "
                                              "composited on white")
    expected = _gray(rgb)
    expected[:, :20] = 255
    _expect_input(w, expected)
    assert_shows_engine_result(w)


def test_animated_gif_uses_the_first_frame_and_says_so(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (30, 20), c) for c in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == ("Opened blink.gif (30×20): animated GIF: using "
                                              "frame 1 of 3")
    _expect_input(w, np.full((20, 30), _gray(np.array([[[255, 0, 0]]], np.uint8))[0, 0]))
    assert_shows_engine_result(w)


def test_exif_rotated_jpeg_is_shown_upright(main_window, qtbot, tmp_path):
    w = main_window
    stored = np.zeros((60, 40), np.uint8)  # 40 wide, 60 tall as stored
    stored[:20, :20] = 255  # a bright block at the stored top-left
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif, quality=95)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.statusBar().currentMessage() == ("Opened phone.jpg (60×40): rotated upright from "
                                              "EXIF orientation 6")
    assert w.session.preview.size == (60, 40)  # landscape once upright
    assert w.session.results[0].values.shape == (1, 40, 60)
    shown = w.session.results[0].values[0]
    # Turned clockwise, the stored top-left corner is now the top-right corner.
    assert shown[:20, 40:].mean() > 0.9 and shown[:20, :20].mean() < 0.1
    with Image.open(path) as raw:
        _expect_input(w, np.asarray(ImageOps.exif_transpose(raw).convert("L")))
    assert_shows_engine_result(w)


def test_one_pixel_image_loads_and_says_why_the_stack_cannot_run(main_window, qtbot,
                                                                   tmp_path):
    w = main_window
    path = tmp_path / "dot.png"
    Image.new("L", (1, 1), 77).save(path)
    old_views = dict(w.session.results)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    assert w.session.preview.size == (1, 1)
    assert "dot.png" in w.windowTitle()
    # MaxPool2d(2) cannot pool a 1 x 1 picture: said in the status bar and on the layer row;
    # the pictures of the last run stay rather than half a run.
    message = w.statusBar().currentMessage()
    assert message.startswith("Not run: layer 2 (maxpool): kernel 2 is larger than the "
                              "input's H 1"), message
    assert message.endswith("(input 1 × 1 × 1)")
    assert w.progress_label.text() == "⚠ not run"
    assert w.session.validation.error_index == 2
    assert w.stack.model.error_for(2).startswith("kernel 2 is larger")
    assert w.session.results == old_views
    # Taking the pooling out runs the 1 x 1 image through the rest.
    w.session.document.remove_layer(2)
    wait_idle(w, qtbot)
    _expect_input(w, np.array([[77]], np.uint8))
    assert_shows_engine_result(w)


def test_20000_by_20_strip(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "strip.png"
    pixels = noise(20, 20000, channels=1, seed=3)
    Image.fromarray(pixels).save(path)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(path))
    wait_idle(w, qtbot)
    # The preview keeps the aspect ratio: 1024 x 1, too thin for MaxPool2d(2), which is said.
    assert w.session.preview.size == (1024, 1)
    assert w.preview_label.text() == "preview 1024×1 of 20000×20"
    assert w.statusBar().currentMessage().startswith("Not run: layer 2 (maxpool)")
    assert w.progress_label.text() == "⚠ not run"
    # Run > Run at full size runs the real 20 x 20000 pixels.
    w.actions["full_size"].trigger()
    wait_idle(w, qtbot)
    assert w.session.last_summary.error is None
    _expect_input(w, pixels)
    full = Engine(w.session.device).run_all(w.session.document.pipeline, to_tensor(w.session.loaded.image, "gray"))
    last = full_view(w, qtbot, 3)
    np.testing.assert_allclose(last.values, full[3].output[0].cpu().numpy(), atol=1e-6)
    assert last.values.shape == (1, 10, 10000)


def test_dropping_several_files_opens_the_first_and_says_so(main_window, qtbot, tmp_path):
    w = main_window
    bad, message = _make_failing("text-named-png", tmp_path)
    good = tmp_path / "good.png"
    Image.fromarray(noise(16, 16, channels=1)).save(good)
    before = snapshot(w)
    drop_files(w, bad, good)
    assert w.statusBar().currentMessage() == "2 files dropped: opening the first, notes.png"
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert w.banner.text() == message
    assert_untouched(w, before)


# --- hostile pipeline files, opened ----------------------------------------------------------


def doc(*layers, mode: str = "gray", **top) -> dict:
    return {"format": "layerlab.pipeline", "version": 1, "input": {"mode": mode},
            "layers": list(layers), **top}


def conv(name: str = "c", **args) -> dict:
    return {"type": "Conv2d", "name": name,
            "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1,
                     **args}}


SUPPORTED = "(supported: Conv2d, MaxPool2d, AvgPool2d"

# name -> (file bytes or JSON document, the message after "Could not open the pipeline: ")
BAD_PIPELINES: dict[str, tuple[object, str]] = {
    "invalid-json": (b'{"format": "layerlab.pipeline", "version": 1, "layers": [',
                     "not valid JSON (line 1, column 58: Expecting value)"),
    "not-an-object": ([doc()], "must be a JSON object, not list"),
    "wrong-format": ({**doc(), "format": "photoshop.actions"},
                     "format: format must be 'layerlab.pipeline', not 'photoshop.actions'"),
    "version-2": ({**doc(), "version": 2},
                  "version: version 2 is not supported (this LayerLab reads version 1)"),
    "unknown-type": (doc(conv(), {"type": "Conv7d", "name": "future"}),
                     "layer 1 ('future'): type: unknown layer type 'Conv7d' " + SUPPORTED),
    "Module": (doc({"type": "Module", "name": "m"}),
               "layer 0 ('m'): type: unknown layer type 'Module' " + SUPPORTED),
    "Sequential": (doc({"type": "Sequential", "name": "s"}),
                   "layer 0 ('s'): type: unknown layer type 'Sequential' " + SUPPORTED),
    "dunder": (doc({"type": "__class__", "name": "d"}),
               "layer 0 ('d'): type: unknown layer type '__class__' " + SUPPORTED),
    "dotted": (doc({"type": "torch.nn.Conv2d", "name": "t"}),
               "layer 0 ('t'): type: unknown layer type 'torch.nn.Conv2d' " + SUPPORTED),
    "wrong-arg-name": (doc(conv(kernal_size=3)),
                       "layer 0 ('c'): args.kernal_size: unknown argument 'kernal_size' for "
                       "Conv2d (accepted: bias, dilation, groups, in_channels, kernel_size, "
                       "out_channels, padding, padding_mode, stride)"),
    "wrong-arg-type": (doc(conv(stride=[1, 2, 3])),
                       "layer 0 ('c'): args.stride: stride must be an integer or a pair "
                       "[height, width], not [1, 2, 3]"),
    "negative-size": (doc(conv(kernel_size=-3)),
                      "layer 0 ('c'): args.kernel_size: kernel_size must be at least 1, not -3"),
    "zero-size": (doc(conv(out_channels=0)),
                  "layer 0 ('c'): args.out_channels: out_channels must be at least 1, not 0"),
    "string-for-number": (doc(conv(kernel_size="3")),
                          "layer 0 ('c'): args.kernel_size: kernel_size must be an integer, "
                          "not '3'"),
    "params-wrong-shape": (doc({**conv(bias=False), "params": {"weight": [[[[1, 2], [3, 4]]]]}}),
                           "layer 0 ('c'): params.weight: has shape [1, 1, 2, 2], expected "
                           "[1, 1, 3, 3]"),
    "params-strings": (doc({**conv(bias=False), "params": {
        "weight": [[[["1", 0, 0], [0, 1, 0], [0, 0, 1]]]]}}),
        "layer 0 ('c'): params.weight: must be a nested list of numbers (no strings, "
        "true/false or null)"),
    "10000-layers": (doc(*[{"type": "ReLU"}] * 10000),
                     "layers: 10000 layers is more than the 1000 LayerLab accepts"),
    "non-utf8": ('{"format": "layerlab.pipeline", "version": 1, "layers": '
                 '[{"type": "ReLU", "name": "caf\xe9"}]}'.encode("latin-1"),
                 "not UTF-8 text (bad byte at offset 86)"),
    "nul-in-name": (doc({"type": "ReLU", "name": "a\x00b"}),
                    "layer 0: name: name must be text of at most 64 characters without "
                    "control characters (it holds '\\x00')"),
}


def _write_pipeline(path: Path, content: object) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(json.dumps(content))


@pytest.mark.parametrize("kind", list(BAD_PIPELINES))
def test_opening_a_bad_pipeline_says_where_and_changes_nothing(kind, main_window, qtbot,
                                                               tmp_path):
    w = main_window
    content, detail = BAD_PIPELINES[kind]
    path = tmp_path / f"{kind}.layerlab.json"
    _write_pipeline(path, content)
    before = snapshot(w)
    assert not w.files.open_pipeline_path(str(path))
    message = f"Could not open the pipeline: {path.name}: {detail}"
    if detail.endswith(SUPPORTED):
        assert w.banner.text().startswith(message)
        assert w.banner.text().endswith(", Flatten, Linear)")
    else:
        assert w.banner.text() == message
    assert w.statusBar().currentMessage() == w.banner.text()
    wait_idle(w, qtbot)
    assert_untouched(w, before)
    assert_still_works(w, qtbot)


def test_a_fifo_without_a_writer_opens_at_once_as_an_error(main_window, qtbot, tmp_path):
    # The window opens files through the core loaders: a FIFO nobody writes to must not hang
    # the GUI thread, as image or as pipeline.
    w = main_window
    fifo = tmp_path / "stream.layerlab.json"
    os.mkfifo(fifo)
    before = snapshot(w)
    t0 = time.monotonic()
    assert not w.files.open_pipeline_path(str(fifo))
    assert w.banner.text() == ("Could not open the pipeline: stream.layerlab.json: cannot read "
                               "the file: nothing arrived from it (a FIFO or pipe without a "
                               "writer)")
    assert not w.files.open_image_path(str(fifo))
    assert time.monotonic() - t0 < 5
    wait_idle(w, qtbot)
    assert_untouched(w, before)
    assert_still_works(w, qtbot)


def test_a_dropped_bad_pipeline_is_reported_like_an_opened_one(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "typo.layerlab.json"
    _write_pipeline(path, BAD_PIPELINES["wrong-arg-name"][0])
    before = snapshot(w)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert w.banner.text().startswith("Could not open the pipeline: typo.layerlab.json: "
                                      "layer 0 ('c'): args.kernal_size: ")
    assert_untouched(w, before)


def test_nan_and_inf_weights_load_with_a_visible_warning(main_window, qtbot, tmp_path):
    w = main_window
    weight = [[[[0.0, 0.0, 0.0], [0.0, float("nan"), 0.0], [0.0, 0.0, float("inf")]]]]
    path = tmp_path / "nan.layerlab.json"
    path.write_text(json.dumps(doc({**conv("bad", bias=False), "params": {"weight": weight}},
                                   {"type": "ReLU"})))
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()
    assert w.files.open_pipeline_path(str(path))
    wait_idle(w, qtbot)
    assert w.banner.isVisible()
    assert w.banner.text() == ("Opened pipeline nan.layerlab.json: layer 0 (bad): params.weight "
                               "has 2 NaN/inf value(s); outputs will contain NaN/inf")
    assert w.session.document.path == str(path.resolve())
    assert w.session.last_summary.error is None and sorted(w.session.results) == [0, 1, 2]
    assert np.isnan(w.session.results[1].values).all()  # a NaN in the kernel reaches every pixel
    assert_shows_engine_result(w)
    # The warning goes when a clean stack is opened.
    clean = tmp_path / "clean.layerlab.json"
    clean.write_text(json.dumps(doc(conv())))
    assert w.files.open_pipeline_path(str(clean))
    assert not w.banner.isVisible()


def test_shapes_that_do_not_chain_load_and_the_layer_says_why(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "rgb-conv.layerlab.json"
    path.write_text(json.dumps(doc(
        {"type": "ReLU", "name": "r"},
        {"type": "Conv2d", "name": "wants-rgb",
         "args": {"in_channels": 3, "out_channels": 1, "kernel_size": 3}},
        {"type": "ReLU"})))
    old_views = dict(w.session.results)
    runs = w.runner.runs_started
    assert w.files.open_pipeline_path(str(path))
    wait_idle(w, qtbot)
    # Loaded (it is a valid file), not run; the window says which layer and why.
    reason = w.session.validation.error
    assert reason.startswith("layer 1 (wants-rgb): in_channels is 3 but the input has 1 ")
    assert reason.endswith("(input 1 × 512 × 512)")
    assert w.statusBar().currentMessage() == ("Opened pipeline rgb-conv.layerlab.json, but "
                                              "it cannot run: " + reason)
    assert w.progress_label.text() == "⚠ not run"
    assert "in_channels is 3" in w.progress_label.toolTip()
    assert w.stack.model.error_for(1).startswith("in_channels is 3 but the input has 1")
    assert w.stack.model.error_for(0) is None
    assert w.runner.runs_started == runs and w.session.results == old_views
    # Fixing the field runs the whole stack.
    w.session.document.set_arg(1, "in_channels", 1)
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)


def test_100000_output_channels_hit_the_memory_budget(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "wide.layerlab.json"
    path.write_text(json.dumps(doc(conv("wide", out_channels=100_000))))
    old_views = dict(w.session.results)
    old_values = {i: v.values.copy() for i, v in old_views.items() if v.full}
    assert w.files.open_pipeline_path(str(path))
    wait_idle(w, qtbot)
    weights = 4 * (100_000 * 1 * 3 * 3 + 100_000)  # nn.Conv2d(1, 100000, 3): weight, bias
    need = 4 * (512 * 512 + 100_000 * 512 * 512) + weights
    message = (f"The run failed: this stack needs about {format_bytes(need)} for its stage "
               f"outputs and weights at 512 x 512, more than the memory budget of "
               f"{format_bytes(w.session.memory_budget_gb * 1024**3)}; the largest is layer 0 "
               f"(wide, 100000 x 512 x 512), {format_bytes(4 * 100_000 * 512 * 512)}")
    assert w.banner.text() == message
    assert w.progress_label.text() == "⚠ error"
    # The previous results stay, in the window and in the stage panel (the stages shown
    # now drawn in full from them).
    assert_same_results(w.session.results, old_views)
    for i, values in old_values.items():
        np.testing.assert_array_equal(w.session.results[i].values, values)
    assert w.stage_panel.banner.text().startswith("this stack needs about 97.7 GB")
    # Back to a sane width, the app runs again.
    w.session.document.set_arg(0, "out_channels", 2)
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)


def test_a_50_mb_pipeline_file_opens_and_runs(main_window, qtbot, tmp_path):
    w = main_window
    # Flatten an 8 x 8 gray input, then Linear(64, 80000) with every weight written out.
    row = "[" + ", ".join(["0.0123456"] * 64) + "]"
    text = ('{"format": "layerlab.pipeline", "version": 1, "input": {"mode": "gray", '
            '"resize": [8, 8]}, "layers": [{"type": "Flatten"}, {"type": "Linear", '
            '"name": "wide", "args": {"in_features": 64, "out_features": 80000}, '
            '"params": {"weight": [' + ", ".join([row] * 80000) + "]}}]}")
    path = tmp_path / "big.layerlab.json"
    path.write_text(text)
    assert path.stat().st_size > 50e6
    assert w.files.open_pipeline_path(str(path))
    wait_idle(w, qtbot, timeout=60000)
    assert w.banner.text() == "" and w.session.last_summary.error is None
    assert w.session.results[2].values.shape == (80000,)
    assert_shows_engine_result(w)
    assert_still_works(w, qtbot)


# --- runtime failures ------------------------------------------------------------------------


def four_stage_pipeline() -> Pipeline:
    return Pipeline(InputSpec("gray"), (
        new_layer("Conv2d", (1, 8, 8), kernel_size=3, padding=1),
        new_layer("ReLU"), new_layer("Tanh"), new_layer("Sigmoid")))


def test_a_stage_that_fails_in_torch_shows_its_error_and_earlier_stages_stay(
        main_window, qtbot, monkeypatch):
    w = main_window

    def broken(self, x):
        raise RuntimeError("simulated kernel failure\nsecond line of torch's message")

    monkeypatch.setattr(nn.Tanh, "forward", broken)
    w.session.document.load(four_stage_pipeline(), None)
    wait_idle(w, qtbot)
    error = "layer 2 (tanh): Tanh failed: simulated kernel failure"
    assert sorted(w.session.results) == [0, 1, 2, 3]
    assert w.session.results[3].result.error == error and w.session.results[3].values is None
    assert w.session.last_summary.error == error
    assert w.session.run_errors == {2: error}
    assert w.stack.model.error_for(2) == error
    assert w.progress_label.text() == "⚠ error"
    assert w.statusBar().currentMessage() == error
    # next to the stage: its page in the feature view, its thumbnail marked
    panel = w.stage_panel
    w.session.select(stage=3)
    assert panel.stack.currentWidget() is panel.error_page
    assert error in panel.error_page.text()
    assert panel.strip.is_error(3)
    for i in (0, 1, 2):  # the stages before it stay, with torch's numbers
        view = w.session.results[i]
        assert (view.full or view.thumb is not None) and not panel.strip.is_error(i)
    x = preview_tensor(w)
    conv = Engine(w.session.device).build_module(w.session.document.pipeline.layers[0])
    with torch.inference_mode():
        expected = torch.relu(conv(x.to(conv.weight.device)))[0].cpu().numpy()
    np.testing.assert_allclose(full_view(w, qtbot, 2).values, expected, atol=1e-5)
    # the layer's form shows the error too
    w.stack.select_layer(2)
    assert w.param_form.error.text() == f"⚠ {error}"
    # torch works again: the next edit runs every stage
    monkeypatch.undo()
    w.session.document.set_arg(0, "padding", 0)
    wait_idle(w, qtbot)
    assert w.session.run_errors == {} and w.stack.model.error_for(2) is None
    assert_shows_engine_result(w)


def test_gpu_out_of_memory_in_a_stage(main_window, qtbot, monkeypatch):
    w = main_window

    def oom(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(nn.ReLU, "forward", oom)
    w.session.document.load(four_stage_pipeline(), None)
    wait_idle(w, qtbot)
    error = ("layer 1 (relu): out of GPU memory; switch the device to CPU or use a smaller "
             "image")
    assert w.session.results[2].result.error == error
    assert sorted(w.session.results) == [0, 1, 2] and w.session.results[1].values is not None
    assert w.session.run_errors == {1: error}
    monkeypatch.undo()
    assert_still_works(w, qtbot)


def test_gpu_out_of_memory_before_any_stage(main_window, qtbot, monkeypatch):
    w = main_window
    before = {i: v for i, v in w.session.results.items()}

    def oom(self, pipeline, image):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(Engine, "prepare_input", oom)
    w.session.document.set_arg(2, "kernel_size", 3)
    wait_idle(w, qtbot)
    assert w.banner.text() == ("The run failed: out of GPU memory; switch the device to CPU or "
                               "use a smaller image")
    assert w.progress_label.text() == "⚠ error"
    assert_same_results(w.session.results, before)  # nothing ran: the last pictures stay
    monkeypatch.undo()
    assert_still_works(w, qtbot)


# --- export from the window ------------------------------------------------------------------


def _export_and_wait(window, qtbot, out: Path):
    exporter = window.exporter
    job = exporter.export_all(out)
    assert job is not None
    qtbot.waitUntil(lambda: exporter.job is None, timeout=60000)
    box = exporter._box
    if box is not None:
        assert box.isVisible() and box.text() == exporter.last_error
        box.close()
    return exporter


def test_export_into_a_missing_folder_says_so_and_writes_nothing(main_window, qtbot,
                                                                 tmp_path):
    w = main_window
    box = tmp_path / "box"
    box.mkdir()
    out = box / "not-there" / "export"
    exporter = _export_and_wait(w, qtbot, out)
    assert exporter.last_error == (f"export failed: cannot create {out}: the folder "
                                   f"{out.parent} does not exist")
    assert w.statusBar().currentMessage() == exporter.last_error
    assert list(box.iterdir()) == []
    assert_still_works(w, qtbot)


def test_export_into_a_read_only_folder_says_so_and_writes_nothing(main_window, qtbot,
                                                                   tmp_path, monkeypatch):
    w = main_window
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the folder refuse like a read-only disk
        import tempfile

        real_mkdtemp = tempfile.mkdtemp

        def refuse(*a, dir=None, **kw):
            if dir is not None and Path(dir) == ro:
                raise PermissionError(errno.EACCES, "Permission denied", str(dir))
            return real_mkdtemp(*a, dir=dir, **kw)

        monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    try:
        exporter = _export_and_wait(w, qtbot, ro / "export")
        assert exporter.last_error == f"export failed: cannot write in {ro}: permission denied"
        assert w.statusBar().currentMessage() == exporter.last_error
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
    assert_still_works(w, qtbot)


def test_disk_full_in_the_middle_of_an_export_leaves_nothing(main_window, qtbot, tmp_path,
                                                             monkeypatch):
    w = main_window
    real = export.export_stage_images
    calls = []

    def fill_up(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(export, "export_stage_images", fill_up)
    box = tmp_path / "box"
    box.mkdir()
    exporter = _export_and_wait(w, qtbot, box / "export")
    assert len(calls) == 3
    assert exporter.last_error == (f"export failed: cannot write the export {box / 'export'}: "
                                   f"the disk is full (no space left in {box})")
    assert list(box.iterdir()) == []


# --- closing in the middle of work ------------------------------------------------------------


def heavy_pipeline() -> Pipeline:
    return Pipeline(InputSpec("gray"), tuple(
        new_layer("Conv2d", (1 if i == 0 else 16, 512, 512), out_channels=16, kernel_size=7,
                  padding=3) for i in range(8)))


def test_closing_mid_export_cancels_it_joins_the_thread_and_leaves_nothing(
        make_window, settings, qtbot, tmp_path):
    w = make_window(settings)
    w.session.document.load(heavy_pipeline(), None)
    wait_idle(w, qtbot, timeout=60000)
    out = tmp_path / "exports" / "run"
    out.parent.mkdir()
    exporter = w.exporter
    job = exporter.export_all(out)
    qtbot.waitUntil(lambda: any(out.parent.iterdir()), timeout=20000)  # it is writing
    w.session.document.set_arg(0, "kernel_size", 5)  # and a run is in flight as well
    assert w.runner.busy and job.isRunning()
    worker = w.runner._thread
    w.close()
    assert not w.isVisible()
    assert worker.isFinished()
    assert job.isFinished() and job.was_cancelled
    assert list(out.parent.iterdir()) == []  # the hidden folder is gone too
    # The window object is deleted at teardown; with a thread still running that aborted.


def test_closing_mid_run_twice_keeps_the_work(make_window, settings, qtbot):
    w = make_window(settings)
    w.session.document.load(heavy_pipeline(), None)
    assert w.runner.busy
    expected = json.dumps(w.session.document.pipeline.to_dict(), separators=(",", ":"))
    w.close()
    w.close()  # a second close (e.g. the quit shortcut again) is harmless
    assert w.runner._thread.isFinished()
    assert session_file(settings).read_text() == expected + "\n"
    # Whatever the worker was doing, nothing more arrives after the close.
    runs = w.runner.runs_started
    qtbot.wait(50)
    assert w.runner.runs_started == runs


# --- start-up and saved work ------------------------------------------------------------------


def test_a_bad_image_on_the_command_line_is_said_after_the_fallback_opens(
        make_window, settings, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_text("%PDF-1.7 not a picture")
    w = make_window(settings, image=str(bad))
    assert w.session.loaded.path is not None and w.session.loaded.path.endswith("camera.png")
    assert w.banner.text() == "Cannot open 'scan.png': it is not an image Pillow can read"


def test_a_bad_pipeline_on_the_command_line_is_said_and_the_default_stack_used(
        make_window, settings, tmp_path):
    bad = tmp_path / "old.layerlab.json"
    bad.write_text(json.dumps({**doc(), "version": 2}))
    w = make_window(settings, pipeline=str(bad))
    assert [layer.type for layer in w.session.document.pipeline.layers] == ["Conv2d", "ReLU",
                                                                    "MaxPool2d"]
    assert w.banner.text() == ("Could not open the pipeline: old.layerlab.json: version: "
                               "version 2 is not supported (this LayerLab reads version 1)")


def test_work_that_cannot_be_restored_at_start_is_said(make_window, settings):
    data = doc(conv(), {"type": "MaxPool2d", "name": "pool", "args": {"kernel_size": 0}})
    settings.setValue("session/pipeline", json.dumps(data))
    w = make_window(settings)
    assert w.banner.text() == ("The last session's stack could not be restored: last session: "
                               "layer 1 ('pool'): args.kernel_size: kernel_size must be at "
                               "least 1, not 0")
    assert w.session.validation.ok and sorted(w.session.results) == [0, 1, 2, 3]


def test_a_pasted_control_character_in_a_layer_name_cannot_break_the_saved_file(
        make_window, settings, qtbot, tmp_path):
    w = make_window(settings)
    w.session.document.rename_layer(1, "clip\x00ped\x07\ttwice")
    assert w.session.document.pipeline.layers[1].name == "clipped twice"
    path = tmp_path / "named.layerlab.json"
    assert w.files.save_pipeline_to(str(path))
    assert Pipeline.load(path).layers[1].name == "clipped twice"
    w.close()
    again = make_window(settings)  # the unsaved work comes back too
    assert again.session.document.pipeline.layers[1].name == "clipped twice"
    assert again.banner.text() == ""

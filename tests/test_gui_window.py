"""The main window as a person uses it: start-up, images in, pipelines in and out, settings,
running and quitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gui_helpers import drop_files
from PIL import Image
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QGuiApplication, QImage

from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.core.kernels import preset
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.qt.main_window import DEFAULT_SAMPLE, PIPELINES, default_pipeline


def preview_tensor(window) -> torch.Tensor:
    return to_tensor(window.preview.image, window.document.pipeline.input.mode)


def engine_outputs(pipeline: Pipeline, x: torch.Tensor) -> list[np.ndarray]:
    return [r.output[0].numpy() for r in Engine("cpu").run_all(pipeline, x)]


# --- start-up --------------------------------------------------------------------------------


def test_starts_with_the_sample_through_the_default_stack(main_window):
    w = main_window
    assert w.loaded.path == str(DEFAULT_SAMPLE)
    assert "camera.png" in w.windowTitle() and "sharpen-relu-maxpool" in w.windowTitle()
    assert not w.isWindowModified()
    assert [layer.type for layer in w.document.pipeline.layers] == ["Conv2d", "ReLU",
                                                                    "MaxPool2d"]
    assert sorted(w.views) == [0, 1, 2, 3]
    # The tutorial's numbers: torch called directly on the same preview tensor.
    x = to_tensor(w.preview.image, "gray")
    kernel = preset("seed sharpen").reshape(1, 1, 3, 3)
    conv = F.conv2d(x, kernel, padding=1)
    np.testing.assert_allclose(w.views[1].values, conv[0].numpy(), rtol=0, atol=1e-6)
    pooled = F.max_pool2d(F.relu(conv), 2)
    np.testing.assert_allclose(w.views[3].values, pooled[0].numpy(), rtol=0, atol=1e-6)
    # The status bar tells what ran and how long it took.
    assert w.timing_label.text().startswith("cpu · 3 stages · ")
    assert "sharpen" in w.timing_label.text()
    assert "512×512" in w.preview_label.text()


def test_default_stack_without_the_bundled_file_is_the_same(monkeypatch, tmp_path):
    from layerlab.qt import main_window as mw

    bundled, _ = default_pipeline()
    monkeypatch.setattr(mw, "DEFAULT_PIPELINE", tmp_path / "missing.layerlab.json")
    built, name = mw.default_pipeline()
    assert name == "sharpen-relu-maxpool"
    assert built.input.mode == "gray"
    assert [(a.type, a.key) for a in built.layers] == [(b.type, b.key) for b in bundled.layers]


def test_command_line_image_and_pipeline(make_window, settings, photo):
    example = PIPELINES / "edge-detection.layerlab.json"
    if not example.exists():
        pytest.skip("the edge-detection example is not bundled")
    w = make_window(settings, image=str(photo), pipeline=str(example))
    assert w.loaded.path == str(photo)
    assert w.document.path == str(example.resolve())
    assert "photo.png" in w.windowTitle() and "edge-detection" in w.windowTitle()
    assert not w.isWindowModified()
    outs = engine_outputs(w.document.pipeline, preview_tensor(w))
    for stage, expected in enumerate(outs):
        np.testing.assert_array_equal(w.views[stage].values, expected)


def test_title_marks_unsaved_changes(main_window):
    w = main_window
    w.stack.select_layer(2)
    w.document.set_arg(2, "kernel_size", 3)
    assert w.isWindowModified()
    w.document.undo_stack.undo()
    assert not w.isWindowModified()


# --- images in -------------------------------------------------------------------------------


def test_drop_an_image_file(main_window, qtbot, photo):
    w = main_window
    drop_files(w, photo)
    qtbot.waitUntil(lambda: w.loaded.path == str(photo))
    w.wait_idle(qtbot)
    assert w.views[0].values.shape == (1, 48, 64)  # gray input mode of the stack
    outs = engine_outputs(w.document.pipeline, preview_tensor(w))
    np.testing.assert_array_equal(w.views[3].values, outs[3])
    assert "photo.png" in w.windowTitle()
    assert str(photo.resolve()) in w._recent_images()


def test_drop_a_broken_file_changes_nothing(main_window, qtbot, tmp_path):
    w = main_window
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before_image, before_pipeline = w.loaded, w.document.pipeline
    before_views = dict(w.views)
    runs = w.controller.runs_started
    drop_files(w, broken)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert "broken.png" in w.banner.text()
    assert "truncated or damaged" in w.banner.text()
    assert "broken.png" in w.statusBar().currentMessage()
    assert w.loaded is before_image and w.document.pipeline is before_pipeline
    assert w.views == before_views and w.controller.runs_started == runs
    assert not w.isWindowModified()


def test_drop_a_folder_says_so(main_window, qtbot, tmp_path):
    w = main_window
    before = w.loaded
    drop_files(w, tmp_path)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert "folder" in w.banner.text()
    assert w.loaded is before


def test_drop_a_pipeline_file_opens_it(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "two.layerlab.json"
    Pipeline(InputSpec("rgb"), (new_layer("ReLU"), new_layer("Tanh"))).save(path)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.document.path == str(path.resolve()))
    w.wait_idle(qtbot)
    assert [layer.type for layer in w.document.pipeline.layers] == ["ReLU", "Tanh"]
    assert sorted(w.views) == [0, 1, 2]


def test_paste_an_image(main_window, qtbot):
    w = main_window
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(image)
    w.paste_act.trigger()
    w.wait_idle(qtbot)
    assert w.loaded.path is None and w.loaded.size == (40, 30)
    assert "pasted image" in w.windowTitle()
    assert w.views[0].values.shape == (1, 30, 40)


def test_paste_a_file_url(main_window, qtbot, photo):
    w = main_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo))])
    QGuiApplication.clipboard().setMimeData(mime)
    w.paste_image()
    w.wait_idle(qtbot)
    assert w.loaded.path == str(photo)


def test_paste_without_an_image_says_so(main_window):
    w = main_window
    QGuiApplication.clipboard().setText("just some words")
    before = w.loaded
    w.paste_image()
    assert "no image" in w.banner.text()
    assert w.loaded is before


def test_sample_and_recent_menus(main_window, qtbot, photo):
    w = main_window
    names = [a.text() for a in w.samples_menu.actions()]
    assert "camera.png" in names and "astronaut.jpg" in names
    [astronaut] = [a for a in w.samples_menu.actions() if a.text() == "astronaut.jpg"]
    astronaut.trigger()
    w.wait_idle(qtbot)
    assert w.loaded.path.endswith("astronaut.jpg")
    w.open_image_path(str(photo))
    w._fill_recent_menu()
    recent = [a.text() for a in w.recent_menu.actions() if a.text()]
    assert recent[:2] == ["photo.png", "astronaut.jpg"]


def test_preview_size_and_full_size_run(main_window, qtbot, tmp_path):
    w = main_window
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (900, 1200), dtype=np.uint8), "L").save(big)
    w.set_preview_max(768)
    assert w.open_image_path(str(big))
    w.wait_idle(qtbot)
    assert w.preview.size == (768, 576)
    assert w.preview_label.text() == "preview 768×576 of 1200×900"
    assert w.views[0].values.shape == (1, 576, 768)
    w.full_size_act.trigger()
    w.wait_idle(qtbot)
    assert w.views[0].values.shape == (1, 900, 1200)
    full = engine_outputs(w.document.pipeline, to_tensor(w.loaded.image, "gray"))
    np.testing.assert_array_equal(w.views[3].values, full[3])
    # The next edit goes back to the preview.
    w.document.set_arg(2, "kernel_size", 3)
    w.wait_idle(qtbot)
    assert w.views[0].values.shape == (1, 576, 768)


# --- toolbar ---------------------------------------------------------------------------------


def test_input_mode_switch_adapts_the_first_conv_in_one_undo_step(main_window, qtbot):
    w = main_window
    gray_weight = w.document.pipeline.layers[0].params["weight"]
    steps = w.document.undo_stack.count()
    w.mode_box.setCurrentIndex(w.mode_box.findData("rgb"))
    w.mode_box.activated.emit(w.mode_box.currentIndex())
    w.wait_idle(qtbot)
    p = w.document.pipeline
    assert p.input.mode == "rgb" and p.layers[0].args["in_channels"] == 3
    weight = p.layers[0].params["weight"]
    assert weight.shape == (1, 3, 3, 3)
    np.testing.assert_allclose(weight.sum(axis=1), gray_weight[:, 0], rtol=1e-6)
    assert "in_channels 1 → 3" in w.statusBar().currentMessage()
    assert w.document.undo_stack.count() == steps + 1
    assert w.validation.ok and w.views[1].values.shape == (1, 512, 512)
    x = preview_tensor(w)
    assert x.shape[1] == 3
    np.testing.assert_allclose(w.views[1].values, F.conv2d(x, torch.from_numpy(weight.copy()),
                                                           padding=1)[0].numpy(), atol=1e-6)
    w.document.undo_stack.undo()
    assert w.document.pipeline.input.mode == "gray"
    assert w.mode_box.currentData() == "gray"
    assert w.document.pipeline.layers[0].params["weight"] is gray_weight


def test_device_selector_offers_cuda_only_when_available(main_window):
    devices = [main_window.device_box.itemData(i)
               for i in range(main_window.device_box.count())]
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()


def test_run_button_and_stop(main_window, qtbot):
    w = main_window
    runs = w.controller.runs_started
    w.run_act.trigger()  # idle: runs again
    assert w.controller.runs_started == runs + 1
    w.stop_act.setEnabled(True)
    w.stop()  # stops whatever is in flight; the window keeps working
    w.wait_idle(qtbot)
    w.run_act.trigger()
    w.wait_idle(qtbot)
    assert sorted(w.views) == [0, 1, 2, 3]


# --- pipelines in and out --------------------------------------------------------------------


def test_save_and_reload_a_pipeline(main_window, qtbot, tmp_path):
    w = main_window
    w.stack.select_layer(2)
    w.add_layer("Sigmoid")
    w.document.set_arg(2, "kernel_size", [2, 3])
    w.wait_idle(qtbot)
    assert w.isWindowModified()
    path = tmp_path / "mine.layerlab.json"
    assert w.save_pipeline_to(str(path))
    assert not w.isWindowModified() and "mine" in w.windowTitle()
    saved = json.loads(path.read_text())
    assert [layer["type"] for layer in saved["layers"]] == ["Conv2d", "ReLU", "MaxPool2d",
                                                          "Sigmoid"]
    before = w.document.pipeline
    w.open_example(str(PIPELINES / "seed-maxpool.layerlab.json"))
    w.wait_idle(qtbot)
    assert w.document.path is None
    assert w.open_pipeline_path(str(path))
    w.wait_idle(qtbot)
    again = w.document.pipeline
    assert again.to_json() == before.to_json()
    assert [a.key for a in again.layers] == [b.key for b in before.layers]
    assert not w.isWindowModified()
    # Ctrl+S writes back to the same file.
    w.document.rename_layer(3, "squash")
    assert w.save_pipeline()
    assert json.loads(path.read_text())["layers"][3]["name"] == "squash"
    # Opening is undoable like any edit.
    w.open_example(str(PIPELINES / "seed-maxpool.layerlab.json"))
    w.document.undo_stack.undo()
    assert w.document.path == str(path.resolve())


def test_open_a_broken_pipeline_changes_nothing(main_window, tmp_path):
    w = main_window
    bad = tmp_path / "bad.layerlab.json"
    data = default_pipeline()[0].to_dict()
    data["layers"][2]["args"]["kernel_size"] = -3
    bad.write_text(json.dumps(data))
    before = w.document.pipeline
    steps = w.document.undo_stack.count()
    assert not w.open_pipeline_path(str(bad))
    assert "bad.layerlab.json: layer 2" in w.banner.text()
    assert "kernel_size" in w.banner.text()
    assert w.document.pipeline is before and w.document.undo_stack.count() == steps


def test_example_pipelines_menu(main_window, qtbot):
    w = main_window
    names = [a.text() for a in w.examples_menu.actions()]
    assert "seed-sharpen-gray" in names and "cifar10-tutorial" in names
    [cifar] = [a for a in w.examples_menu.actions() if a.text() == "cifar10-tutorial"]
    cifar.trigger()
    w.wait_idle(qtbot, timeout=60000)
    assert "cifar10-tutorial" in w.windowTitle()
    last = max(w.views)
    assert w.views[last].values.shape == (10,)
    outs = engine_outputs(w.document.pipeline, preview_tensor(w))
    np.testing.assert_array_equal(w.views[last].values, outs[-1])


# --- settings and quitting -------------------------------------------------------------------


def test_work_and_preferences_survive_a_restart(make_window, settings, qtbot, photo):
    w = make_window(settings)
    w.set_preview_max(512)
    w.open_image_path(str(photo))
    w.stack.select_layer(0)
    w.kernel_editor.set_cell(0, 0, 0.5)
    w.document.rename_layer(1, "clip")
    w.wait_idle(qtbot)
    expected = w.document.pipeline.to_json()
    w.close()
    again = make_window(settings)
    assert again.document.pipeline.to_json() == expected
    assert again.isWindowModified()  # still not saved to a file: nothing was lost
    assert again.loaded.path == str(photo)
    assert again.preview_max == 512 and again.preview_actions[512].isChecked()
    assert again.document.pipeline.layers[0].params["weight"][0, 0, 0, 0] == np.float32(0.5)


def test_close_during_a_run_exits_cleanly(make_window, settings, qtbot):
    w = make_window(settings)
    heavy = Pipeline(InputSpec("rgb"), tuple(
        new_layer("Conv2d", (3 if i == 0 else 32, 512, 512), out_channels=32, kernel_size=7,
                  padding=3) for i in range(6)))
    w.document.load(heavy, None)
    assert w.controller.busy
    thread = w.controller._thread
    w.close()
    assert not w.isVisible()
    assert thread is not None and thread.isFinished()


def test_help_dialogs_do_not_block(main_window, qtbot):
    w = main_window
    w.shortcuts_act.trigger()
    table = w.shortcuts_dialog.findChild(type(w.shortcuts_dialog.children()[-1]))
    assert w.shortcuts_dialog.isVisible() and table is not None
    texts = [w.shortcuts_dialog.layout().itemAt(0).widget().item(r, 1).text()
             for r in range(w.shortcuts_dialog.layout().itemAt(0).widget().rowCount())]
    assert "Ctrl+Z" in texts and "Alt+Up" in texts
    w.shortcuts_dialog.close()
    w.about_act.trigger()
    assert w.about_box.isVisible() and "LayerLab" in w.about_box.text()
    w.about_box.close()


def test_render_options_rerender_without_running_torch(main_window, qtbot, monkeypatch):
    w = main_window
    requests = []
    submit = w.controller.submit
    monkeypatch.setattr(w.controller, "submit", lambda r: requests.append(r) or submit(r))
    before = w.views[1].values
    w.stage_panel.bins_box.setValue(16)
    w.wait_idle(qtbot)
    assert len(requests) == 1 and requests[0].render_only
    assert requests[0].options.bins == 16
    assert len(w.views[1].rendered.hist_counts) == 16
    np.testing.assert_array_equal(w.views[1].values, before)
    # After an edit the next options change runs the new stack (nothing stale is re-rendered).
    w.document.set_arg(2, "kernel_size", 4)
    w.stage_panel.bins_box.setValue(32)
    w.wait_idle(qtbot)
    assert w.views[3].values.shape == (1, 128, 128)
    assert len(w.views[3].rendered.hist_counts) == 32
    w.close()
    assert w.settings.value("prefs/render") == "channel|gray|32"

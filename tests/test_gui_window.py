"""The main window as a person uses it: start-up, images in, pipelines in and out, settings,
running and quitting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gui_helpers import drop_files, full_view, wait_idle
from PIL import Image
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QDialogButtonBox

from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.core.kernels import preset
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.qt.files import DEFAULT_SAMPLE, PIPELINES
from layerlab.qt.persistence import default_pipeline


def preview_tensor(window) -> torch.Tensor:
    return to_tensor(window.session.preview.image, window.session.document.pipeline.input.mode)


def engine_outputs(pipeline: Pipeline, x: torch.Tensor) -> list[np.ndarray]:
    return [r.output[0].numpy() for r in Engine("cpu").run_all(pipeline, x)]


# --- start-up --------------------------------------------------------------------------------


def test_starts_with_the_sample_through_the_default_stack(main_window, qtbot):
    w = main_window
    assert w.session.loaded.path == str(DEFAULT_SAMPLE)
    assert "camera.png" in w.windowTitle() and "sharpen-relu-maxpool" in w.windowTitle()
    assert not w.isWindowModified()
    assert [layer.type for layer in w.session.document.pipeline.layers] == ["Conv2d", "ReLU",
                                                                    "MaxPool2d"]
    assert sorted(w.session.results) == [0, 1, 2, 3]
    # The tutorial's numbers: torch called directly on the same preview tensor.
    x = to_tensor(w.session.preview.image, "gray")
    kernel = preset("tutorial sharpen").reshape(1, 1, 3, 3)
    conv = F.conv2d(x, kernel, padding=1)
    np.testing.assert_allclose(full_view(w, qtbot, 1).values, conv[0].numpy(), rtol=0,
                               atol=1e-6)
    pooled = F.max_pool2d(F.relu(conv), 2)
    np.testing.assert_allclose(full_view(w, qtbot, 3).values, pooled[0].numpy(), rtol=0,
                               atol=1e-6)
    # The status bar tells what ran and how long it took.
    assert w.timing_label.text().startswith("cpu · 3 stages · ")
    assert "sharpen" in w.timing_label.text()
    assert "512×512" in w.preview_label.text()


def test_default_stack_without_the_bundled_file_is_the_same(monkeypatch, tmp_path):
    from layerlab.qt import persistence as mw

    bundled, _ = default_pipeline()
    monkeypatch.setattr(mw, "DEFAULT_PIPELINE", tmp_path / "missing.layerlab.json")
    built, name = mw.default_pipeline()
    assert name == "sharpen-relu-maxpool"
    assert built.input.mode == "gray"
    assert [(a.type, a.key) for a in built.layers] == [(b.type, b.key) for b in bundled.layers]


def test_command_line_image_and_pipeline(make_window, settings, photo, qtbot):
    example = PIPELINES / "edge-detection.layerlab.json"
    if not example.exists():
        pytest.skip("the edge-detection example is not bundled")
    w = make_window(settings, image=str(photo), pipeline=str(example))
    assert w.session.loaded.path == str(photo)
    assert w.session.document.path == str(example.resolve())
    assert "photo.png" in w.windowTitle() and "edge-detection" in w.windowTitle()
    assert not w.isWindowModified()
    outs = engine_outputs(w.session.document.pipeline, preview_tensor(w))
    for stage, expected in enumerate(outs):
        np.testing.assert_array_equal(full_view(w, qtbot, stage).values, expected)


def test_title_marks_unsaved_changes(main_window):
    w = main_window
    w.stack.select_layer(2)
    w.session.document.set_arg(2, "kernel_size", 3)
    assert w.isWindowModified()
    w.session.document.undo_stack.undo()
    assert not w.isWindowModified()


# --- images in -------------------------------------------------------------------------------


def test_drop_an_image_file(main_window, qtbot, photo):
    w = main_window
    drop_files(w, photo)
    qtbot.waitUntil(lambda: w.session.loaded.path == str(photo))
    wait_idle(w, qtbot)
    assert w.session.results[0].values.shape == (1, 48, 64)  # gray input mode of the stack
    outs = engine_outputs(w.session.document.pipeline, preview_tensor(w))
    np.testing.assert_array_equal(full_view(w, qtbot, 3).values, outs[3])
    assert "photo.png" in w.windowTitle()
    assert str(photo.resolve()) in w.files.recent()


def test_drop_a_broken_file_changes_nothing(main_window, qtbot, tmp_path):
    w = main_window
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before_image, before_pipeline = w.session.loaded, w.session.document.pipeline
    before_views = dict(w.session.results)
    runs = w.runner.runs_started
    drop_files(w, broken)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert "broken.png" in w.banner.text()
    assert "truncated or damaged" in w.banner.text()
    assert "broken.png" in w.statusBar().currentMessage()
    assert w.session.loaded is before_image and w.session.document.pipeline is before_pipeline
    assert w.session.results == before_views and w.runner.runs_started == runs
    assert not w.isWindowModified()


def test_drop_a_folder_says_so(main_window, qtbot, tmp_path):
    w = main_window
    before = w.session.loaded
    drop_files(w, tmp_path)
    qtbot.waitUntil(lambda: w.banner.isVisible())
    assert "folder" in w.banner.text()
    assert w.session.loaded is before


def test_drop_a_pipeline_file_opens_it(main_window, qtbot, tmp_path):
    w = main_window
    path = tmp_path / "two.layerlab.json"
    Pipeline(InputSpec("rgb"), (new_layer("ReLU"), new_layer("Tanh"))).save(path)
    drop_files(w, path)
    qtbot.waitUntil(lambda: w.session.document.path == str(path.resolve()))
    wait_idle(w, qtbot)
    assert [layer.type for layer in w.session.document.pipeline.layers] == ["ReLU", "Tanh"]
    assert sorted(w.session.results) == [0, 1, 2]


def test_paste_an_image(main_window, qtbot):
    w = main_window
    image = QImage(40, 30, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(image)
    w.actions["paste"].trigger()
    wait_idle(w, qtbot)
    assert w.session.loaded.path is None and w.session.loaded.size == (40, 30)
    assert "pasted image" in w.windowTitle()
    assert w.session.results[0].values.shape == (1, 30, 40)


def test_paste_a_file_url(main_window, qtbot, photo):
    w = main_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo))])
    QGuiApplication.clipboard().setMimeData(mime)
    w.files.paste_image()
    wait_idle(w, qtbot)
    assert w.session.loaded.path == str(photo)


def test_paste_without_an_image_says_so(main_window):
    w = main_window
    QGuiApplication.clipboard().setText("just some words")
    before = w.session.loaded
    w.files.paste_image()
    assert "no image" in w.banner.text()
    assert w.session.loaded is before


def test_sample_and_recent_menus(main_window, qtbot, photo):
    w = main_window
    names = [a.text() for a in w.samples_menu.actions()]
    assert "camera.png" in names and "astronaut.jpg" in names
    [astronaut] = [a for a in w.samples_menu.actions() if a.text() == "astronaut.jpg"]
    astronaut.trigger()
    wait_idle(w, qtbot)
    assert w.session.loaded.path.endswith("astronaut.jpg")
    w.files.open_image_path(str(photo))
    w.files.fill_recent_menu(w.recent_menu)
    recent = [a.text() for a in w.recent_menu.actions() if a.text()]
    assert recent[:2] == ["photo.png", "astronaut.jpg"]


def test_preview_size_and_full_size_run(main_window, qtbot, tmp_path):
    w = main_window
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (900, 1200), dtype=np.uint8), "L").save(big)
    w.set_preview_max(768)
    assert w.files.open_image_path(str(big))
    wait_idle(w, qtbot)
    assert w.session.preview.size == (768, 576)
    assert w.preview_label.text() == "preview 768×576 of 1200×900"
    assert w.session.results[0].values.shape == (1, 576, 768)
    w.actions["full_size"].trigger()
    wait_idle(w, qtbot)
    assert w.session.results[0].values.shape == (1, 900, 1200)
    full = engine_outputs(w.session.document.pipeline, to_tensor(w.session.loaded.image, "gray"))
    np.testing.assert_array_equal(full_view(w, qtbot, 3).values, full[3])
    # The next edit goes back to the preview.
    w.session.document.set_arg(2, "kernel_size", 3)
    wait_idle(w, qtbot)
    assert w.session.results[0].values.shape == (1, 576, 768)


# --- toolbar ---------------------------------------------------------------------------------


def test_input_mode_switch_adapts_the_first_conv_in_one_undo_step(main_window, qtbot):
    w = main_window
    gray_weight = w.session.document.pipeline.layers[0].params["weight"]
    steps = w.session.document.undo_stack.count()
    w.mode_box.setCurrentIndex(w.mode_box.findData("rgb"))
    w.mode_box.activated.emit(w.mode_box.currentIndex())
    wait_idle(w, qtbot)
    p = w.session.document.pipeline
    assert p.input.mode == "rgb" and p.layers[0].args["in_channels"] == 3
    weight = p.layers[0].params["weight"]
    assert weight.shape == (1, 3, 3, 3)
    np.testing.assert_allclose(weight.sum(axis=1), gray_weight[:, 0], rtol=1e-6)
    assert "in_channels 1 → 3" in w.statusBar().currentMessage()
    assert w.session.document.undo_stack.count() == steps + 1
    assert w.session.validation.ok and w.session.results[1].values.shape == (1, 512, 512)
    x = preview_tensor(w)
    assert x.shape[1] == 3
    np.testing.assert_allclose(w.session.results[1].values, F.conv2d(x, torch.from_numpy(weight.copy()),
                                                           padding=1)[0].numpy(), atol=1e-6)
    w.session.document.undo_stack.undo()
    assert w.session.document.pipeline.input.mode == "gray"
    assert w.mode_box.currentData() == "gray"
    assert w.session.document.pipeline.layers[0].params["weight"] is gray_weight


def test_device_selector_offers_cuda_only_when_available(main_window):
    devices = [main_window.device_box.itemData(i)
               for i in range(main_window.device_box.count())]
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()


def test_run_button_and_stop(main_window, qtbot):
    w = main_window
    runs = w.runner.runs_started
    w.actions["run"].trigger()  # idle: runs again
    assert w.runner.runs_started == runs + 1
    w.actions["stop"].setEnabled(True)
    w.controller.on_stop()  # stops whatever is in flight; the window keeps working
    wait_idle(w, qtbot)
    w.actions["run"].trigger()
    wait_idle(w, qtbot)
    assert sorted(w.session.results) == [0, 1, 2, 3]


# --- pipelines in and out --------------------------------------------------------------------


def test_save_and_reload_a_pipeline(main_window, qtbot, tmp_path):
    w = main_window
    w.stack.select_layer(2)
    w.controller.on_add_layer("Sigmoid")
    w.session.document.set_arg(2, "kernel_size", [2, 3])
    wait_idle(w, qtbot)
    assert w.isWindowModified()
    path = tmp_path / "mine.layerlab.json"
    assert w.files.save_pipeline_to(str(path))
    assert not w.isWindowModified() and "mine" in w.windowTitle()
    saved = json.loads(path.read_text())
    assert [layer["type"] for layer in saved["layers"]] == ["Conv2d", "ReLU", "MaxPool2d",
                                                          "Sigmoid"]
    before = w.session.document.pipeline
    w.files.open_example(str(PIPELINES / "maxpool-3x3-rgb.layerlab.json"))
    wait_idle(w, qtbot)
    assert w.session.document.path is None
    assert w.files.open_pipeline_path(str(path))
    wait_idle(w, qtbot)
    again = w.session.document.pipeline
    assert again.to_json() == before.to_json()
    assert [a.key for a in again.layers] == [b.key for b in before.layers]
    assert not w.isWindowModified()
    # Ctrl+S writes back to the same file.
    w.session.document.rename_layer(3, "squash")
    assert w.files.save_pipeline()
    assert json.loads(path.read_text())["layers"][3]["name"] == "squash"
    # Opening is undoable like any edit.
    w.files.open_example(str(PIPELINES / "maxpool-3x3-rgb.layerlab.json"))
    w.session.document.undo_stack.undo()
    assert w.session.document.path == str(path.resolve())


def test_open_a_broken_pipeline_changes_nothing(main_window, tmp_path):
    w = main_window
    bad = tmp_path / "bad.layerlab.json"
    data = default_pipeline()[0].to_dict()
    data["layers"][2]["args"]["kernel_size"] = -3
    bad.write_text(json.dumps(data))
    before = w.session.document.pipeline
    steps = w.session.document.undo_stack.count()
    assert not w.files.open_pipeline_path(str(bad))
    assert "bad.layerlab.json: layer 2" in w.banner.text()
    assert "kernel_size" in w.banner.text()
    assert w.session.document.pipeline is before and w.session.document.undo_stack.count() == steps


def test_example_pipelines_menu(main_window, qtbot):
    w = main_window
    names = [a.text() for a in w.examples_menu.actions()]
    assert "conv-sharpen-gray" in names and "cifar10-tutorial" in names
    [cifar] = [a for a in w.examples_menu.actions() if a.text() == "cifar10-tutorial"]
    cifar.trigger()
    wait_idle(w, qtbot, timeout=60000)
    assert "cifar10-tutorial" in w.windowTitle()
    last = max(w.session.results)
    assert w.session.results[last].values.shape == (10,)
    outs = engine_outputs(w.session.document.pipeline, preview_tensor(w))
    np.testing.assert_array_equal(w.session.results[last].values, outs[-1])


# --- settings and quitting -------------------------------------------------------------------


def test_work_and_preferences_survive_a_restart(make_window, settings, qtbot, photo):
    w = make_window(settings)
    w.set_preview_max(512)
    w.files.open_image_path(str(photo))
    w.stack.select_layer(0)
    w.kernel_editor.set_cell(0, 0, 0.5)
    w.session.document.rename_layer(1, "clip")
    wait_idle(w, qtbot)
    expected = w.session.document.pipeline.to_json()
    w.close()
    again = make_window(settings)
    assert again.session.document.pipeline.to_json() == expected
    assert again.isWindowModified()  # still not saved to a file: nothing was lost
    assert again.session.loaded.path == str(photo)
    assert again.session.preview_max == 512 and again.preview_actions[512].isChecked()
    assert again.session.document.pipeline.layers[0].params["weight"][0, 0, 0, 0] == np.float32(0.5)


def test_close_during_a_run_exits_cleanly(make_window, settings, qtbot):
    w = make_window(settings)
    heavy = Pipeline(InputSpec("rgb"), tuple(
        new_layer("Conv2d", (3 if i == 0 else 32, 512, 512), out_channels=32, kernel_size=7,
                  padding=3) for i in range(6)))
    w.session.document.load(heavy, None)
    assert w.runner.busy
    thread = w.runner._thread
    w.close()
    assert not w.isVisible()
    assert thread is not None and thread.isFinished()


def test_help_dialogs_do_not_block(main_window, qtbot):
    w = main_window
    w.actions["shortcuts"].trigger()
    table = w.shortcuts_dialog.findChild(type(w.shortcuts_dialog.children()[-1]))
    assert w.shortcuts_dialog.isVisible() and table is not None
    texts = [w.shortcuts_dialog.layout().itemAt(0).widget().item(r, 1).text()
             for r in range(w.shortcuts_dialog.layout().itemAt(0).widget().rowCount())]
    assert "Ctrl+Z" in texts and "Alt+Up" in texts
    table = w.shortcuts_dialog.layout().itemAt(0).widget()
    names = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert "Undo" in names and not any(n.startswith("Undo ") for n in names)
    qtbot.waitUntil(lambda: table.isVisible(), timeout=3000)
    assert not table.horizontalScrollBar().isVisible()
    close = w.shortcuts_dialog.findChild(QDialogButtonBox).button(
        QDialogButtonBox.StandardButton.Close)
    close.click()
    assert not w.shortcuts_dialog.isVisible()
    w.actions["about"].trigger()
    assert w.about_box.isVisible() and "LayerLab" in w.about_box.text()
    w.about_box.close()


def test_render_options_rerender_without_running_torch(main_window, qtbot, monkeypatch):
    w = main_window
    requests = []
    submit = w.runner.submit
    monkeypatch.setattr(w.runner, "submit", lambda r: requests.append(r) or submit(r))
    before = w.session.results[1].values
    w.stage_panel.controls.bins_box.setValue(16)
    wait_idle(w, qtbot)
    assert len(requests) == 1 and requests[0].render_only
    assert requests[0].options.bins == 16
    assert len(w.session.results[1].rendered.hist_counts) == 16
    np.testing.assert_array_equal(w.session.results[1].values, before)
    # After an edit the next options change runs the new stack (nothing stale is re-rendered).
    w.session.document.set_arg(2, "kernel_size", 4)
    w.stage_panel.controls.bins_box.setValue(32)
    wait_idle(w, qtbot)
    assert w.session.results[3].values.shape == (1, 128, 128)
    assert len(w.session.results[3].rendered.hist_counts) == 32
    w.close()
    assert w.settings.value("prefs/render") == "channel|gray|32"


def test_view_layers_hides_and_shows_the_dock(main_window, qtbot):
    w = main_window
    toggle = w.dock.toggleViewAction()
    assert toggle.isEnabled() and toggle.isChecked()
    toggle.trigger()
    assert not w.dock.isVisible()
    toggle.trigger()
    qtbot.waitUntil(w.dock.isVisible, timeout=3000)


def test_undo_of_opening_an_example_brings_back_the_old_title_and_file(main_window, qtbot,
                                                                      tmp_path):
    w = main_window
    mine = tmp_path / "mine.layerlab.json"
    assert w.files.save_pipeline_to(str(mine))
    w.session.document.set_arg(0, "padding", 2)  # a change after saving: modified
    wait_idle(w, qtbot)
    w.files.open_example(str(PIPELINES / "edge-detection.layerlab.json"))
    wait_idle(w, qtbot)
    assert "edge-detection" in w.windowTitle() and w.session.document.path is None
    w.actions["undo"].trigger()
    wait_idle(w, qtbot)
    assert "mine" in w.windowTitle() and "edge-detection" not in w.windowTitle()
    assert w.session.document.path == str(mine.resolve())
    assert w.isWindowModified()
    assert w.files.save_pipeline()  # Ctrl+S: the old file, no dialog
    assert json.loads(mine.read_text())["layers"][0]["args"]["padding"] == 2
    w.actions["redo"].trigger()
    assert "edge-detection" in w.windowTitle() and w.session.document.path is None


def test_undo_between_two_examples_restores_the_first_ones_name(main_window, qtbot):
    w = main_window
    w.files.open_example(str(PIPELINES / "edge-detection.layerlab.json"))
    w.files.open_example(str(PIPELINES / "avgpool-2x2.layerlab.json"))
    wait_idle(w, qtbot)
    assert "avgpool-2x2" in w.windowTitle()
    w.actions["undo"].trigger()
    wait_idle(w, qtbot)
    assert "edge-detection" in w.windowTitle() and "avgpool-2x2" not in w.windowTitle()
    assert w.session.document.title == "edge-detection"


def test_new_pipeline_is_empty_says_what_to_do_and_undoes(main_window, qtbot):
    w = main_window
    w.session.document.set_arg(0, "padding", 2)
    before = w.session.pipeline
    w.actions["new_pipeline"].trigger()
    wait_idle(w, qtbot)
    assert w.session.pipeline.layers == () and w.session.pipeline.input.mode == "gray"
    assert "untitled" in w.windowTitle()
    assert w.stack.empty_hint.isVisible() and "Add layer" in w.stack.empty_hint.text()
    assert sorted(w.session.results) == [0]  # the input alone
    assert "Ctrl+Z brings back" in w.statusBar().currentMessage()
    w.actions["undo"].trigger()
    wait_idle(w, qtbot)
    assert w.session.pipeline is before and not w.stack.empty_hint.isVisible()


def test_a_long_status_message_is_whole_on_hover(main_window):
    w = main_window
    text = "layer 4 (fc1): " + "in_features is 1024 but the input has 4096 values " * 4
    w.show_error(text)
    assert w.statusBar().toolTip() == text[:1].upper() + text[1:]


def test_recent_pipelines_and_every_image_suffix_pillow_opens(main_window, qtbot, tmp_path):
    from PIL import Image

    from layerlab.qt.files import IMAGE_FILTER

    w = main_window
    saved = tmp_path / "mine.layerlab.json"
    assert w.files.save_pipeline_to(str(saved))
    assert w.files.open_pipeline_path(str(PIPELINES / "edge-detection.layerlab.json"))
    assert w.files.recent("pipelines")[:2] == [
        str((PIPELINES / "edge-detection.layerlab.json").resolve()), str(saved.resolve())]
    w.files.fill_recent_menu(w.recent_pipelines_menu, "pipelines")
    names = [a.text() for a in w.recent_pipelines_menu.actions() if a.text()]
    assert names[:2] == ["edge-detection.layerlab.json", "mine.layerlab.json"]
    next(a for a in w.recent_pipelines_menu.actions() if a.text() == "mine.layerlab.json"
         ).trigger()
    wait_idle(w, qtbot)
    assert w.session.document.path == str(saved.resolve())
    Image.init()
    for ext, fmt in Image.registered_extensions().items():
        if fmt in Image.OPEN:
            assert f"*{ext}" in IMAGE_FILTER
    assert "*.jfif" in IMAGE_FILTER and "*.apng" in IMAGE_FILTER


def test_actual_size_and_fit_to_window(main_window, qtbot):
    w = main_window
    vb = w.stage_panel.grid_page.vb
    w.actions["zoom_actual"].trigger()
    px, py = vb.viewPixelSize()  # picture pixels per screen pixel
    assert px == pytest.approx(1.0, rel=1e-3) and py == pytest.approx(1.0, rel=1e-3)
    w.actions["zoom_fit"].trigger()
    (x0, x1), (y0, y1) = vb.viewRange()
    # the whole 512 x 512 picture is in view, with the 2 % padding around it
    assert x0 <= 0 and x1 >= 512 and y0 <= 0 and y1 >= 512
    assert min(x1 - x0, y1 - y0) == pytest.approx(512 * 1.04, rel=0.02)


def test_the_strip_keeps_the_input_in_view_for_the_cifar_net(main_window, qtbot):
    w = main_window
    w.files.open_example(str(PIPELINES / "cifar10-tutorial.layerlab.json"))
    wait_idle(w, qtbot)
    strip = w.stage_panel.strip
    assert strip.count() == 10  # the input and 9 layers
    w.session.select(stage=9)  # the last stage selected: the strip scrolls to it ...
    qtbot.wait(50)
    first = strip.visualItemRect(strip.item(0))
    last = strip.visualItemRect(strip.item(9))
    # ... and the input's thumbnail is still in view beside it
    assert strip.viewport().rect().contains(first) and strip.viewport().rect().contains(last)
    assert strip.iconSize().width() <= 96


def test_load_weights_shows_the_mapping_then_applies_in_one_undo_step(main_window, qtbot,
                                                                      tmp_path):
    import torch
    from PySide6.QtWidgets import QDialogButtonBox

    w = main_window
    before = w.session.pipeline
    trained = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1, bias=False),
                                  torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    torch.manual_seed(7)
    torch.nn.init.normal_(trained[0].weight)
    path = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), path)
    dialog = w.files.load_weights_path(str(path))
    assert dialog is not None and dialog.isVisible()
    assert "matched by nn.Sequential index" in dialog.summary.text()
    top = dialog.tree.topLevelItem(0)
    assert top.text(0) == "0 sharpen" and top.child(0).text(1) == "0.weight"
    assert w.session.pipeline is before  # nothing changed yet
    dialog.buttons.button(QDialogButtonBox.StandardButton.Apply).click()
    wait_idle(w, qtbot)
    np.testing.assert_array_equal(w.session.pipeline.layers[0].params["weight"],
                                  trained[0].weight.detach().numpy())
    x = torch.from_numpy(w.session.results[0].values)[None]
    with torch.inference_mode():
        np.testing.assert_allclose(full_view(w, qtbot, 3).values, trained(x)[0].numpy(),
                                   atol=1e-5)
    w.actions["undo"].trigger()
    wait_idle(w, qtbot)
    assert w.session.pipeline is before


def test_weights_with_the_wrong_shape_cannot_be_applied(main_window, tmp_path):
    import torch
    from PySide6.QtWidgets import QDialogButtonBox

    w = main_window
    path = tmp_path / "wrong.pt"
    torch.save({"0.weight": torch.zeros(4, 1, 3, 3)}, path)
    dialog = w.files.load_weights_path(str(path))
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Apply).isEnabled()
    assert "has shape [4, 1, 3, 3]" in dialog.problems.text()
    bad = tmp_path / "pickle.pt"
    bad.write_bytes(b"not a state dict")
    assert w.files.load_weights_path(str(bad)) is None
    assert w.banner.text().startswith("Could not load the weights: ")


def test_the_window_fits_a_1366_pixel_screen_with_a_panel_open_on_the_right(main_window):
    w = main_window
    assert w.minimumSizeHint().width() <= 1366
    for dock in w._right_docks:  # one at a time, and all at once (they share a tabbed column)
        w.show_dock(dock)
        assert w.minimumSizeHint().width() <= 1366, dock.objectName()


def test_the_views_controls_fit_in_one_row_at_the_default_size_of_a_1366_pixel_screen(
        main_window, qtbot):
    from PySide6.QtCore import QRect

    from layerlab.qt.main_window import default_size
    from layerlab.qt.stage_controls import SidewaysScroll

    assert default_size(QRect(0, 0, 1366, 768)) == (1366, 760)
    assert default_size(QRect(0, 0, 1920, 1050)) == (1440, 900)
    assert default_size(None) == (1440, 900)
    w = main_window
    w.resize(*default_size(QRect(0, 0, 1366, 768)))
    qtbot.wait(50)
    (scroll,) = w.findChildren(SidewaysScroll)
    assert scroll.horizontalScrollBar().maximum() == 0  # nothing hidden off its right end
    controls = w.stage_panel.controls
    assert controls.look_button.geometry().right() <= scroll.viewport().width()


def test_a_7x7_kernel_shows_whole_beside_the_layer_list_and_an_11x11_one_scrolls(
        main_window, qtbot):
    from layerlab.qt.kernel_editor import MIN_CELL_WIDTH

    w = main_window
    w.resize(1366, 760)
    w.tabs.setCurrentIndex(1)  # Kernel
    k = w.kernel_editor
    for size, whole in ((7, True), (11, False)):
        w.session.document.set_arg(0, "kernel_size", size)
        qtbot.waitUntil(lambda s=size: len(k.cells) == s, timeout=5000)
        qtbot.wait(50)
        bar = k.scroll.horizontalScrollBar()
        assert (bar.maximum() == 0) == whole, (size, bar.maximum())
        widths = {cell.width() for row in k.cells for cell in row}
        assert len(widths) == 1 and min(widths) >= MIN_CELL_WIDTH
        if whole:  # every column inside the visible part of the scroll area
            right = k.cells[0][-1].geometry().right()
            assert right <= k.scroll.viewport().width(), (right, k.scroll.viewport().width())


def test_opening_another_stack_shows_the_stage_of_its_selected_layer(main_window, qtbot):
    from dataclasses import replace

    from layerlab.core.preprocess import Normalize

    w = main_window
    s, doc = w.session, w.session.document
    default = doc.pipeline
    conv = replace(new_layer("Conv2d", (1, 64, 64), out_channels=2, kernel_size=3),
                   name="first")
    other = Pipeline(InputSpec("gray", normalize=Normalize((0.5,), (0.25,))),
                     (conv, new_layer("ReLU", (2, 62, 62))))
    for stage in (1, 3):  # from the default stack's first layer's stage, and from its last
        doc.load(default, None, "Open default", name="default")
        qtbot.waitUntil(lambda: s.stage == 1, timeout=3000)
        s.select(stage=stage)
        doc.load(other, None, "Open other", name="other")
        qtbot.waitUntil(lambda: s.stage == 2, timeout=3000)  # after the input and normalize
        assert s.layer == 0 and s.stage_of_layer(0) == 2
        assert w.controller.views.stack.current_layer() == 0

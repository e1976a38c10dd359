"""Editing the stack in the window: adding every kind of layer, the generated forms, the kernel
editor, reordering, undo/redo, invalid values, and bursts of edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gui_helpers import assert_view_shows, wait_idle
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit

from layerlab.core import export
from layerlab.core.analysis import validate
from layerlab.core.edits import adapt_in_channels, fit_params
from layerlab.core.engine import Engine
from layerlab.core.imageio import to_tensor
from layerlab.core.kernels import fit_kernel, preset
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.core.specs import OPS
from layerlab.qt.document import Document
from layerlab.qt.fields import IntsEditor
from layerlab.qt.param_form import ParamForm


def preview_tensor(window) -> torch.Tensor:
    return to_tensor(window.session.preview.image, window.session.document.pipeline.input.mode)


def assert_shows_engine_result(window) -> None:
    """Every stage on screen equals the engine run on the document's current pipeline."""
    results = Engine("cpu").run_all(window.session.document.pipeline, preview_tensor(window))
    assert sorted(window.session.results) == list(range(len(results)))
    for r in results:
        view = window.session.results[r.index]
        assert view.generation == window.runner.generation
        if r.error:
            assert view.result.error == r.error
        else:
            assert_view_shows(view, r.output)


def seed_sharpen() -> np.ndarray:
    return preset("tutorial sharpen").reshape(1, 1, 3, 3).numpy().copy()


# --- adding layers ---------------------------------------------------------------------------


def test_add_every_kind_of_layer_from_the_menu(main_window, qtbot):
    w = main_window
    actions = w.stack.add_actions
    assert set(actions) == set(OPS)
    categories = [a.text() for a in w.stack.add_menu.actions() if a.isSeparator()]
    assert categories == ["Convolution", "Pooling", "Padding", "Activation", "Normalisation",
                          "Other"]
    base = w.session.document.pipeline
    for type_name, action in actions.items():
        w.stack.select_layer(2)  # after the max-pool: input 1 x 256 x 256
        action.trigger()
        layers = w.session.document.pipeline.layers
        assert len(layers) == 4 and layers[3].type == type_name
        assert w.session.layer == 3
        expected = new_layer(type_name, (1, 256, 256))
        assert dict(layers[3].args) == dict(expected.args), type_name
        assert w.param_form.layer_index == 3
        assert set(w.param_form.editors) == {p.name for p in OPS[type_name].params}
        wait_idle(w, qtbot)
        status = w.session.validation.layers[3]
        if status.error is None:
            assert 4 in w.session.results and w.session.results[4].result.type == type_name
            # a 2-D stage (Unfold's C*kh*kw x L) is shown as one A x B image, as the worker does
            shown = (1, *status.shape) if len(status.shape) == 2 else status.shape
            assert w.session.results[4].values.shape == shown
        else:  # shown next to the layer, the earlier stages stay
            assert w.stack.model.error_for(3)
        w.session.document.undo_stack.undo()
        assert w.session.document.pipeline is base
    wait_idle(w, qtbot)


def test_added_layer_takes_channels_from_the_incoming_shape(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.controller.on_add_layer("Conv2d")  # after the sharpen conv: 1 channel in
    conv2 = w.session.document.pipeline.layers[1]
    assert conv2.args["in_channels"] == 1
    w.session.document.set_arg(1, "out_channels", 8)
    wait_idle(w, qtbot)
    w.controller.on_add_layer("BatchNorm2d")
    assert w.session.document.pipeline.layers[2].args["num_features"] == 8
    wait_idle(w, qtbot)
    assert w.session.validation.ok
    assert_shows_engine_result(w)


# --- the generated form ----------------------------------------------------------------------


@pytest.mark.parametrize("type_name", sorted(OPS))
def test_form_shows_every_argument_of_every_op(qtbot, type_name):
    form = ParamForm()
    qtbot.addWidget(form)
    layer = new_layer(type_name, (3, 32, 32))
    form.set_layer(0, layer)
    assert list(form.editors) == [p.name for p in layer.op.params]
    for p in layer.op.params:
        editor = form.editors[p.name]
        assert editor.value() == layer.args[p.name], p.name
        assert editor.toolTip() == p.help
    form.set_layer(None, None)
    assert form.editors == {}


def test_form_editors_emit_json_values(qtbot):
    form = ParamForm()
    qtbot.addWidget(form)
    seen = []
    form.argEdited.connect(lambda n, v: seen.append((n, v)))
    form.set_layer(0, new_layer("Conv2d", (3, 32, 32)))
    ks = form.editors["kernel_size"]
    ks.h.setValue(5)
    assert seen[-1] == ("kernel_size", 5)
    ks.link.setChecked(False)
    ks.w.setValue(3)
    assert seen[-1] == ("kernel_size", [5, 3])
    pad = form.editors["padding"]
    pad.mode.setCurrentText("same")
    assert seen[-1] == ("padding", "same")
    form.editors["bias"].box.setChecked(False)
    assert seen[-1] == ("bias", False)
    form.editors["padding_mode"].box.setCurrentText("reflect")
    assert seen[-1] == ("padding_mode", "reflect")

    pool = new_layer("MaxPool2d", (3, 32, 32))
    form.set_layer(1, pool)
    stride = form.editors["stride"]
    assert stride.none.isChecked() and stride.value() is None
    stride.none.setChecked(False)  # an explicit stride starts from the one torch used
    assert seen[-1] == ("stride", pool.args["kernel_size"])

    form.set_layer(2, new_layer("ZeroPad2d", (3, 32, 32)))
    form.editors["padding"].boxes[2].setValue(4)
    assert seen[-1] == ("padding", [1, 1, 4, 1])

    form.set_layer(3, new_layer("BatchNorm2d", (3, 32, 32)))
    eps = form.editors["eps"].box
    assert eps.text() == "1e-05"
    eps.lineEdit().setText("2.5e-7")
    QTest.keyClick(eps, Qt.Key.Key_Return)
    assert seen[-1] == ("eps", 2.5e-7)

    form.set_layer(4, new_layer("LayerNorm", (3, 32, 32)))
    ints = form.editors["normalized_shape"]
    assert isinstance(ints, IntsEditor) and ints.line.text() == "3, 32, 32"
    ints.line.setText("32, 32")
    ints.line.editingFinished.emit()
    assert seen[-1] == ("normalized_shape", [32, 32])
    n = len(seen)
    ints.line.setText("3, x")
    ints.line.editingFinished.emit()
    assert len(seen) == n and ints.parse_error

    form.set_layer(5, new_layer("Upsample", (3, 32, 32)))
    align = form.editors["align_corners"]
    assert align.value() is None
    align.box.setCurrentIndex(1)
    assert seen[-1] == ("align_corners", True)


def test_form_keeps_its_widgets_while_the_same_layer_is_edited(main_window, qtbot):
    w = main_window
    w.stack.select_layer(2)
    editor = w.param_form.editors["kernel_size"]
    editor.h.setValue(3)
    wait_idle(w, qtbot)
    assert w.param_form.editors["kernel_size"] is editor
    assert w.session.document.pipeline.layers[2].args["kernel_size"] == 3
    assert w.session.results[3].values.shape == (1, 170, 170)


def test_invalid_value_shows_the_reason_and_keeps_the_last_result(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    shown = dict(w.session.results)
    runs = w.runner.runs_started
    w.param_form.editors["in_channels"].box.setValue(3)
    # Recorded in the document (undoable) ...
    assert w.session.document.pipeline.layers[0].args["in_channels"] == 3
    assert w.isWindowModified()
    # ... explained next to the field ...
    assert w.param_form.error.isVisible()
    assert "in_channels is 3 but the input has 1 channel" in w.param_form.error.text()
    assert w.param_form.editors["in_channels"].property("error") is True
    assert "color" in w.param_form.labels["in_channels"].styleSheet()
    assert w.stack.model.error_for(0)
    idx = w.stack.model.index(0, 2)
    assert w.stack.model.data(idx) == "error"
    assert "in_channels" in w.stack.model.data(idx, Qt.ItemDataRole.ToolTipRole)
    assert "Not run" in w.statusBar().currentMessage()
    # ... and the pictures of the last valid run stay.
    wait_idle(w, qtbot)
    assert w.runner.runs_started == runs
    assert w.session.results == shown
    assert w.session.results.get(1) is shown[1]
    # ... marked as old: a badge over the view, the thumbnails dimmed.
    badge = w.stage_panel.stale_badge
    assert badge.isVisible() and badge.text().startswith("Not run: layer 0")
    assert "from the last stack that ran" in badge.text()
    assert w.stage_panel.strip._stale
    # Fixing it runs again.
    w.session.document.undo_stack.undo()
    assert not w.param_form.error.isVisible()
    wait_idle(w, qtbot)
    assert w.runner.runs_started == runs + 1
    assert_shows_engine_result(w)
    assert not badge.isVisible() and not w.stage_panel.strip._stale
    assert "Not run" not in w.statusBar().currentMessage()  # the message went with it


def test_shape_error_after_a_flatten_is_marked_on_the_layer(main_window, qtbot):
    w = main_window
    w.stack.select_layer(1)
    w.controller.on_add_layer("Flatten")  # then MaxPool2d gets a vector
    wait_idle(w, qtbot)
    assert not w.session.validation.ok and w.session.validation.error_index == 3
    assert "needs a C x H x W input" in w.stack.model.error_for(3)
    assert w.stack.model.data(w.stack.model.index(3, 2)) == "error"
    w.stack.select_layer(3)
    assert "needs a C x H x W input" in w.param_form.error.text()


# --- the kernel editor -----------------------------------------------------------------------


def test_kernel_cell_edit_shows_what_torch_computes(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.tabs.setCurrentIndex(1)
    ke = w.kernel_editor
    assert ke.layer_index == 0 and len(ke.cells) == 3 and len(ke.cells[0]) == 3
    assert ke.cells[1][1].value() == 1.0
    assert ke.cells[0][0].value() == pytest.approx(-1 / 9)
    ke.set_cell(1, 1, 2.0)
    wait_idle(w, qtbot)
    weight = seed_sharpen()
    weight[0, 0, 1, 1] = 2.0
    np.testing.assert_array_equal(w.session.document.pipeline.layers[0].params["weight"], weight)
    x = to_tensor(w.session.preview.image, "gray")
    expected = F.conv2d(x, torch.from_numpy(weight), padding=1)[0].numpy()
    np.testing.assert_allclose(w.session.results[1].values, expected, rtol=0, atol=1e-6)
    assert_shows_engine_result(w)
    # Colour follows sign and size: the centre is the strongest red.
    centre = ke.cells[1][1].palette().color(QPalette.ColorRole.Base)
    corner = ke.cells[0][0].palette().color(QPalette.ColorRole.Base)
    assert centre.red() > centre.blue() and corner.blue() > corner.red()
    # Undo and redo go through the same path.
    w.session.document.undo_stack.undo()
    wait_idle(w, qtbot)
    np.testing.assert_array_equal(w.session.document.pipeline.layers[0].params["weight"],
                                  seed_sharpen())
    assert ke.cells[1][1].value() == 1.0
    w.session.document.undo_stack.redo()
    wait_idle(w, qtbot)
    np.testing.assert_allclose(w.session.results[1].values, expected, rtol=0, atol=1e-6)


def test_editing_an_initialised_kernel_makes_it_explicit(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.controller.on_add_layer("Conv2d")
    w.session.document.set_arg(1, "out_channels", 2)
    wait_idle(w, qtbot)
    layer = w.session.document.pipeline.layers[1]
    assert not layer.params
    ke = w.kernel_editor
    assert ke.source.text() == "kaiming_normal init, seed 0"
    init_weight = Engine("cpu").build_module(layer).weight.detach().numpy().copy()
    ke.out_box.setValue(1)
    assert ke.cells[2][0].value() == pytest.approx(float(init_weight[1, 0, 2, 0]), abs=1e-7)
    ke.set_cell(2, 0, 0.25)
    wait_idle(w, qtbot)
    weight = w.session.document.pipeline.layers[1].params["weight"]
    init_weight[1, 0, 2, 0] = 0.25
    np.testing.assert_array_equal(weight, init_weight)
    assert ke.source.text() == "explicit values"
    assert_shows_engine_result(w)


def test_presets_scaling_normalising_and_init(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    ke = w.kernel_editor
    ke.preset_box.setCurrentText("sobel x")
    ke.preset_btn.click()
    wait_idle(w, qtbot)
    sobel = preset("sobel x").numpy()
    np.testing.assert_array_equal(w.session.document.pipeline.layers[0].params["weight"][0, 0], sobel)
    assert_shows_engine_result(w)
    # Sobel sums to zero: normalising says why it cannot.
    steps = w.session.document.undo_stack.count()
    ke.norm_btn.click()
    assert "sums to 0" in w.statusBar().currentMessage()
    assert w.session.document.undo_stack.count() == steps
    # The seed tutorial: ones / -9 with the centre 1, typed as scale + preset.
    ke.preset_box.setCurrentText("box blur 3")
    ke.preset_btn.click()
    ke.mul_box.setValue(9)
    ke.div_box.setValue(-9)
    ke.scale_btn.click()
    ke.set_cell(1, 1, 1.0)
    wait_idle(w, qtbot)
    tutorial = torch.ones(3, 3) / 9 * 9 / -9
    tutorial[1][1] = 1
    np.testing.assert_allclose(w.session.document.pipeline.layers[0].params["weight"][0, 0],
                               tutorial.numpy(), rtol=1e-6)
    # Normalise a box blur back to sum 1.
    ke.preset_btn.click()
    ke.mul_box.setValue(3)
    ke.div_box.setValue(1)
    ke.scale_btn.click()
    ke.norm_btn.click()
    wait_idle(w, qtbot)
    np.testing.assert_allclose(w.session.document.pipeline.layers[0].params["weight"].sum(), 1.0,
                               rtol=1e-6)
    # Seeded init replaces the explicit values, exactly and undoably.
    ke.scheme_box.setCurrentText("xavier_uniform")
    ke.seed_box.setValue(7)
    ke.init_btn.click()
    wait_idle(w, qtbot)
    layer = w.session.document.pipeline.layers[0]
    assert not layer.params and dict(layer.init) == {"scheme": "xavier_uniform", "seed": 7}
    assert ke.source.text() == "xavier_uniform init, seed 7"
    assert_shows_engine_result(w)
    # Schemes with extra settings get their defaults (normal: mean 0, std 0.01).
    ke.scheme_box.setCurrentText("normal")
    ke.init_btn.click()
    wait_idle(w, qtbot)
    assert w.session.document.pipeline.layers[0].init["std"] == 0.01
    assert w.session.last_summary.error is None
    assert_shows_engine_result(w)
    w.session.document.undo_stack.undo()
    w.session.document.undo_stack.undo()
    assert "weight" in w.session.document.pipeline.layers[0].params


def test_preset_on_all_slices_and_large_kernels(main_window, qtbot):
    w = main_window
    w.mode_box.setCurrentIndex(w.mode_box.findData("rgb"))
    w.mode_box.activated.emit(w.mode_box.currentIndex())
    w.stack.select_layer(0)
    w.session.document.set_arg(0, "kernel_size", 11)
    w.session.document.set_arg(0, "padding", 5)
    w.session.document.set_arg(0, "out_channels", 2)
    wait_idle(w, qtbot)
    ke = w.kernel_editor
    assert len(ke.cells) == 11 and all(len(r) == 11 for r in ke.cells)
    # The 3x3 kernel stays in the middle of the 11x11 one after the resize.
    weight = w.session.document.pipeline.layers[0].params["weight"]
    assert weight.shape == (2, 3, 11, 11)
    assert weight[0, 0, 5, 5] == pytest.approx(1 / 3, rel=1e-6)
    assert weight[0, 0, 0, 0] == 0.0
    assert ke.cells[0][0].width() < 60  # cells shrink for big kernels
    ke.all_slices.setChecked(True)
    ke.preset_box.setCurrentText("gaussian 5")
    ke.preset_btn.click()
    wait_idle(w, qtbot)
    g = fit_kernel(preset("gaussian 5"), (11, 11)).numpy()
    weight = w.session.document.pipeline.layers[0].params["weight"]
    for o in range(2):
        for i in range(3):
            np.testing.assert_array_equal(weight[o, i], g)
    assert_shows_engine_result(w)


def test_bias_table_edits(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.session.document.set_arg(0, "bias", True)
    wait_idle(w, qtbot)
    ke = w.kernel_editor
    assert ke.bias_group.isVisibleTo(ke) and ke.bias_table.rowCount() == 1
    # Typed text is taken exactly (Qt's own number editor would round it to 2 decimals).
    ke.bias_table.type_value("bias", 0, "0.0123")
    wait_idle(w, qtbot)
    layer = w.session.document.pipeline.layers[0]
    assert layer.params["bias"][0] == np.float32(0.0123)
    assert ke.bias_table.item(0, 0).text() == "0.012300"
    x = to_tensor(w.session.preview.image, "gray")
    expected = F.conv2d(x, torch.from_numpy(seed_sharpen()), torch.tensor([0.0123]),
                        padding=1)[0].numpy()
    np.testing.assert_allclose(w.session.results[1].values, expected, rtol=0, atol=1e-6)
    # Not a number: refused with a message, the value and the undo stack stay.
    steps = w.session.document.undo_stack.count()
    ke.bias_table.type_value("bias", 0, "abc")
    wait_idle(w, qtbot)
    assert w.session.document.pipeline.layers[0].params["bias"][0] == np.float32(0.0123)
    assert ke.bias_table.item(0, 0).text() == "0.012300"
    assert w.session.document.undo_stack.count() == steps
    assert "not a finite number" in w.statusBar().currentMessage()


def test_prelu_slopes_and_batchnorm_statistics_are_edited_in_the_form(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.controller.on_add_layer("Conv2d")
    w.session.document.set_arg(1, "out_channels", 3)
    w.controller.on_add_layer("PReLU")
    w.session.document.set_arg(2, "num_parameters", 3)
    wait_idle(w, qtbot)
    form = w.param_form
    assert w.session.layer == 2 and form.values_group.isVisibleTo(form)
    assert form.values_table.names == ["weight"] and form.values_table.rowCount() == 3
    assert [form.values_table.item(r, 0).text() for r in range(3)] == ["0.250000"] * 3
    form.values_table.type_value("weight", 1, "-0.5")
    wait_idle(w, qtbot)
    slopes = w.session.document.pipeline.layers[2].params["weight"]
    np.testing.assert_array_equal(slopes, np.array([0.25, -0.5, 0.25], np.float32))
    conv_out = torch.from_numpy(w.session.results[2].values).unsqueeze(0)
    expected = F.prelu(conv_out, torch.tensor(slopes))[0].numpy()
    np.testing.assert_array_equal(w.session.results[3].values, expected)
    assert (conv_out[0, 1] < 0).any()  # the edited slope is really in use
    w.session.document.undo_stack.undo()
    wait_idle(w, qtbot)
    assert form.values_table.item(1, 0).text() == "0.250000"

    w.controller.on_add_layer("BatchNorm2d")
    wait_idle(w, qtbot)
    assert form.values_table.names == ["weight", "bias", "running_mean", "running_var"]
    form.values_table.type_value("running_mean", 0, "0.1")
    form.values_table.type_value("running_var", 0, "4")
    wait_idle(w, qtbot)
    bn = w.session.document.pipeline.layers[3]
    x = torch.from_numpy(w.session.results[3].values)
    expected = (x[0] - 0.1) / torch.sqrt(torch.tensor(4.0) + 1e-5)
    np.testing.assert_allclose(w.session.results[4].values[0], expected.numpy(), rtol=0,
                               atol=1e-6)
    assert bn.params["running_var"][0] == np.float32(4)
    # A conv shows its bias in the kernel editor, not twice: no learned-values table.
    w.stack.select_layer(1)
    assert not form.values_group.isVisibleTo(form)


def test_spinning_one_cell_is_one_undo_step(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    stack = w.session.document.undo_stack
    steps = stack.count()
    cell = w.kernel_editor.cells[0][1]
    for _ in range(6):
        cell.stepBy(1)  # what the wheel or the arrow keys do
    assert stack.count() == steps + 1
    assert w.session.document.pipeline.layers[0].params["weight"][0, 0, 0, 1] == pytest.approx(
        -1 / 9 + 0.6, abs=1e-6)
    w.kernel_editor.cells[0][2].stepBy(1)  # another cell: a new step
    assert stack.count() == steps + 2
    stack.undo()
    stack.undo()
    np.testing.assert_array_equal(w.session.document.pipeline.layers[0].params["weight"],
                                  seed_sharpen())
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)


# --- the stack: reorder, remove, duplicate, enable, rename -----------------------------------


def test_reorder_with_shortcuts_and_drag_then_undo_redo(main_window, qtbot):
    w = main_window
    names = lambda: [layer.display_name(i) for i, layer in  # noqa: E731
                     enumerate(w.session.document.pipeline.layers)]
    assert names() == ["sharpen", "relu", "maxpool"]
    w.stack.select_layer(1)
    w.actions["move_down"].trigger()
    assert names() == ["sharpen", "maxpool", "relu"] and w.session.layer == 2
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)
    # Alt+Up as typed in the list.
    w.activateWindow()
    w.stack.view.setFocus()
    QTest.keyClick(w.stack.view, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    assert names() == ["sharpen", "relu", "maxpool"] and w.session.layer == 1
    # Drag the max-pool row to the top.
    model = w.stack.model
    mime = model.mimeData([model.index(2, 0)])
    assert model.dropMimeData(mime, Qt.DropAction.MoveAction, 0, 0, QModelIndex())
    assert names() == ["maxpool", "sharpen", "relu"] and w.session.layer == 0
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)
    stack = w.session.document.undo_stack
    stack.undo()
    stack.undo()
    stack.undo()
    assert names() == ["sharpen", "relu", "maxpool"]
    stack.redo()
    assert names() == ["sharpen", "maxpool", "relu"]
    wait_idle(w, qtbot)
    assert_shows_engine_result(w)


def test_drop_on_a_row_and_at_the_end(main_window):
    w = main_window
    model = w.stack.model
    names = lambda: [layer.display_name(i) for i, layer in  # noqa: E731
                     enumerate(w.session.document.pipeline.layers)]
    model.dropMimeData(model.mimeData([model.index(0, 0)]), Qt.DropAction.MoveAction, -1, -1,
                       QModelIndex())
    assert names() == ["relu", "maxpool", "sharpen"]
    model.dropMimeData(model.mimeData([model.index(2, 0)]), Qt.DropAction.MoveAction, -1, -1,
                       model.index(1, 0))
    assert names() == ["relu", "sharpen", "maxpool"]


def test_remove_duplicate_enable_rename(main_window, qtbot):
    w = main_window
    model = w.stack.model
    w.stack.select_layer(1)
    w.actions["duplicate"].trigger()
    assert [layer.type for layer in w.session.document.pipeline.layers] == ["Conv2d", "ReLU", "ReLU",
                                                                    "MaxPool2d"]
    assert w.session.layer == 2
    w.actions["remove"].trigger()
    assert len(w.session.document.pipeline.layers) == 3
    # The checkbox switches a layer off: the stack skips it.
    assert model.setData(model.index(1, 0), Qt.CheckState.Unchecked.value,
                         Qt.ItemDataRole.CheckStateRole)
    assert not w.session.document.pipeline.layers[1].enabled
    assert model.data(model.index(1, 2)) == "off"
    wait_idle(w, qtbot)
    assert sorted(w.session.results) == [0, 1, 2]
    assert_shows_engine_result(w)
    w.stack.select_layer(1)
    w.actions["toggle"].trigger()  # Space
    assert w.session.document.pipeline.layers[1].enabled
    # Rename by editing the name cell (double-click / F2 open this editor).
    assert model.setData(model.index(2, 0), "pool", Qt.ItemDataRole.EditRole)
    assert w.session.document.pipeline.layers[2].name == "pool"
    assert model.data(model.index(2, 0)) == "pool"
    wait_idle(w, qtbot)
    assert w.session.results[3].result.name == "pool"
    # Delete from the keyboard in the list.
    w.activateWindow()
    w.stack.view.setFocus()
    w.stack.select_layer(2)
    QTest.keyClick(w.stack.view, Qt.Key.Key_Delete)
    assert [layer.type for layer in w.session.document.pipeline.layers] == ["Conv2d", "ReLU"]
    for _ in range(4):
        w.session.document.undo_stack.undo()
    assert [layer.display_name(i) for i, layer in enumerate(w.session.document.pipeline.layers)] == [
        "sharpen", "relu", "maxpool"]


def test_layer_rows_show_output_shapes(main_window):
    model = main_window.stack.model
    assert [model.data(model.index(r, 2)) for r in range(3)] == [
        "1 × 512 × 512", "1 × 512 × 512", "1 × 256 × 256"]
    assert model.data(model.index(0, 1)) == "Conv2d"
    assert model.data(model.index(0, 0), Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked


# --- bursts ----------------------------------------------------------------------------------


def test_a_burst_of_kernel_edits_runs_far_fewer_pipelines(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    runs = w.runner.runs_started
    for k in range(100):
        w.kernel_editor.set_cell(1, 1, 1.0 + k / 100)
    wait_idle(w, qtbot)
    assert w.runner.runs_started - runs < 100
    assert w.session.document.pipeline.layers[0].params["weight"][0, 0, 1, 1] == np.float32(1.99)
    assert_shows_engine_result(w)


def test_a_burst_of_form_edits_ends_on_the_last(main_window, qtbot):
    w = main_window
    w.stack.select_layer(2)
    runs = w.runner.runs_started
    steps = w.session.document.undo_stack.count()
    box = w.param_form.editors["kernel_size"].h
    for k in range(100):
        box.setValue(2 + k % 5)
        qtbot.wait(0) if k % 10 == 0 else None  # let some results arrive in between
    wait_idle(w, qtbot)
    assert w.runner.runs_started - runs < 100
    assert w.session.document.pipeline.layers[2].args["kernel_size"] == 2 + 99 % 5
    assert w.session.document.undo_stack.count() == steps + 1  # one field: one undo step
    assert_shows_engine_result(w)


# --- the document on its own -----------------------------------------------------------------


def test_document_helpers():
    conv = new_layer("Conv2d", (1, 8, 8), kernel_size=3, padding=1, bias=False)
    conv = conv.with_param("weight", seed_sharpen())
    rgb, note = adapt_in_channels(conv, 3)
    assert rgb.args["in_channels"] == 3 and "split" in note
    np.testing.assert_allclose(rgb.params["weight"].sum(axis=1), seed_sharpen()[:, 0],
                               rtol=1e-6)
    back, note = adapt_in_channels(rgb, 1)
    np.testing.assert_allclose(back.params["weight"], seed_sharpen(), rtol=1e-6)
    bigger, note = fit_params(conv.with_args(kernel_size=5, padding=2))
    assert bigger.params["weight"].shape == (1, 1, 5, 5) and note
    np.testing.assert_array_equal(bigger.params["weight"][0, 0, 1:4, 1:4], seed_sharpen()[0, 0])
    assert validate(Pipeline(InputSpec("gray"), (conv,)), (8, 8)).ok
    doc = Document(Pipeline(InputSpec("gray"), (conv,)))
    assert not doc.edit(doc.pipeline, "nothing")
    assert doc.undo_stack.count() == 0


def test_list_and_feature_view_follow_each_other(main_window, qtbot):
    w = main_window
    w.stack.select_layer(2)
    assert w.session.stage == 3
    w.stage_panel.stagePicked.emit(2)  # the person picks stage 2 in the feature view
    assert w.session.layer == 1
    w.stack.select_layer(0)
    assert w.session.stage == 1
    # Disabled layers have no stage: later layers' stages shift.
    w.session.document.set_enabled(1, False)
    w.stack.select_layer(2)
    assert w.session.stage == 2
    wait_idle(w, qtbot)


def test_rename_in_place_keeps_typed_spaces(main_window, qtbot):
    w = main_window
    w.activateWindow()
    w.stack.select_layer(1)
    w.actions["rename"].trigger()
    editor = w.stack.view.focusWidget()
    assert editor is not None and editor is not w.stack.view
    editor.selectAll()
    QTest.keyClicks(editor, "my relu")
    QTest.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.session.document.pipeline.layers[1].name == "my relu")
    assert w.session.document.pipeline.layers[1].enabled  # Space typed text, it did not toggle


def test_ctrl_z_in_a_parameter_field_undoes_the_last_edit(main_window, qtbot):
    """The cursor sits in the field after typing a value; Ctrl+Z there is the window's undo."""
    w = main_window
    w.activateWindow()
    w.stack.select_layer(0)
    editor = w.param_form.editors["padding"]
    w.session.document.set_arg(0, "padding", 2)
    wait_idle(w, qtbot)
    assert w.session.pipeline.layers[0].args["padding"] == 2
    field = editor.findChild(QLineEdit)
    field.setFocus()
    qtbot.waitUntil(field.hasFocus, timeout=3000)
    QTest.keyClick(field, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    wait_idle(w, qtbot)
    assert w.session.pipeline.layers[0].args["padding"] == 1
    QTest.keyClick(field, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    wait_idle(w, qtbot)
    assert w.session.pipeline.layers[0].args["padding"] == 2


def test_pool_stride_auto_shows_the_stride_torch_uses(main_window, qtbot):
    w = main_window
    w.stack.select_layer(2)  # MaxPool2d(2), stride null: torch uses the kernel size
    stride = w.param_form.editors["stride"]
    assert stride.none.isChecked() and stride.none.text() == "auto (= 2)"
    assert stride.inner.value() in (2, [2, 2]) and not stride.inner.isEnabled()
    w.session.document.set_arg(2, "kernel_size", 3)
    wait_idle(w, qtbot)
    assert stride.none.text() == "auto (= 3)" and stride.inner.value() in (3, [3, 3])
    assert w.session.results[3].result.shape == (1, 170, 170)  # floor((512 - 3) / 3) + 1
    stride.none.setChecked(False)  # an explicit stride starts from the one torch used
    wait_idle(w, qtbot)
    assert w.session.pipeline.layers[2].args["stride"] in (3, [3, 3])


def test_kernel_tab_follows_the_layer_and_comes_back_for_a_conv(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.tabs.setCurrentIndex(1)  # the person works in the Kernel tab
    w.stack.select_layer(1)  # ReLU: nothing to show there
    assert w.tabs.currentIndex() == 0 and not w.tabs.isTabEnabled(1)
    w.stack.select_layer(0)  # the Conv2d again: back where the person was
    assert w.tabs.currentIndex() == 1 and w.tabs.isTabEnabled(1)
    w.tabs.setCurrentIndex(0)  # chose Parameters on a Conv2d: stays there
    w.stack.select_layer(2)
    w.stack.select_layer(0)
    assert w.tabs.currentIndex() == 0


def test_clicking_a_channel_tile_moves_the_kernel_editor_to_that_kernel(main_window, qtbot):
    w = main_window
    w.session.document.set_arg(0, "out_channels", 4)
    wait_idle(w, qtbot)
    w.stack.select_layer(0)
    assert w.session.stage == 1
    w.stage_panel.select_channel(3)  # what a click on tile 3 of the grid does
    assert w.session.channel == 3
    assert w.kernel_editor.current_slice() == (3, 0)
    assert w.session.kernel_slice == (3, 0)
    weight = w.session.pipeline.layers[0]
    shown = [[c.value() for c in row] for row in w.kernel_editor.cells]
    from layerlab.core.edits import materialize

    np.testing.assert_allclose(shown, materialize(weight)["weight"][3, 0], atol=5e-7)


def test_big_kernels_show_readable_cells_and_keep_exact_values(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    w.session.document.set_arg(0, "kernel_size", 5)
    wait_idle(w, qtbot)
    w.kernel_editor.apply_preset("gaussian 5")
    w.kernel_editor.cellEdited.emit(0, "weight", (0, 0, 2, 2), -0.249123)
    wait_idle(w, qtbot)
    cell = w.kernel_editor.cells[2][2]
    assert cell.text() == "-0.2491"  # as many significant digits as fit a 5x5 cell
    assert w.kernel_editor.cells[0][0].text() == "0.00391"  # gaussian 5's corner, 1/256
    fm = cell.fontMetrics()
    assert fm.horizontalAdvance(cell.text()) + 6 <= cell.width()
    assert "-0.249123" in cell.toolTip()  # the exact value on hover
    steps = w.session.document.undo_stack.count()
    cell.setFocus()
    cell.interpretText()  # leaving the field untouched changes nothing
    cell.clearFocus()
    wait_idle(w, qtbot)
    assert w.session.document.undo_stack.count() == steps
    assert w.session.pipeline.layers[0].params["weight"][0, 0, 2, 2] == np.float32(-0.249123)


def test_a_hand_built_stack_has_one_name_per_layer_everywhere(main_window, qtbot, tmp_path):
    w = main_window
    w.actions["new_pipeline"].trigger()
    for op in ("Conv2d", "MaxPool2d", "Conv2d"):
        w.controller.on_add_layer(op)
        wait_idle(w, qtbot)
    model = w.stack.model
    listed = [model.data(model.index(r, 0)) for r in range(model.rowCount())]
    assert listed == ["conv2d", "maxpool2d", "conv2d-2"]
    assert [w.session.results[i].result.name for i in (1, 2, 3)] == listed
    assert [w.stage_panel.strip.label(i).split("\n")[0] for i in (1, 2, 3)] == \
        ["1 conv2d", "2 maxpool2d", "3 conv2d-2"]
    w.session.select(stage=3)
    assert w.stage_panel.header.title.text().startswith("stage 3 · conv2d-2")
    manifest = export.export_run(w.session.loaded, w.session.pipeline, tmp_path / "out")
    assert [s["name"] for s in manifest["stages"]] == ["input", *listed]


def test_an_impossible_kernel_size_stays_visible_in_red_with_the_reason(main_window, qtbot):
    w = main_window
    w.stack.select_layer(0)
    ks = w.param_form.editors["kernel_size"]
    assert "Valid: 1 to" in ks.h.toolTip()
    ks.h.lineEdit().selectAll()
    QTest.keyClicks(ks.h.lineEdit(), "0")
    QTest.keyClick(ks.h.lineEdit(), Qt.Key.Key_Return)
    wait_idle(w, qtbot)
    assert ks.h.value() == 0  # not snapped back to 3
    assert w.session.pipeline.layers[0].args["kernel_size"] in (0, [0, 0])
    assert ks.property("error") is True
    assert "kernel_size must be at least 1, not 0" in w.param_form.error.text()


def test_imagenet_normalisation_is_its_own_stage_and_follows_the_input_mode(main_window,
                                                                           qtbot):
    from torchvision.transforms import Normalize

    w = main_window
    w.mode_box.setCurrentIndex(w.mode_box.findData("rgb"))
    w.mode_box.activated.emit(w.mode_box.currentIndex())
    wait_idle(w, qtbot)
    box = w.normalize_box
    box.setCurrentIndex(box.findData("ImageNet"))
    box.activated.emit(box.currentIndex())
    wait_idle(w, qtbot)
    results = w.session.results
    assert [results[i].result.name for i in sorted(results)] == [
        "input", "normalize", "sharpen", "relu", "maxpool"]
    x = to_tensor(w.session.preview.image, "rgb")
    want = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(x[0])
    np.testing.assert_array_equal(results[1].values, want.numpy())
    np.testing.assert_array_equal(results[0].values, x[0].numpy())  # the photo stays
    w.stack.select_layer(1)
    w.stack.select_layer(0)
    assert w.session.stage == 2  # the conv is stage 2 now
    w.stage_panel.stagePicked.emit(3)
    assert w.session.layer == 1
    # gray: the preset follows (the mean of ImageNet's numbers)
    w.mode_box.setCurrentIndex(w.mode_box.findData("gray"))
    w.mode_box.activated.emit(w.mode_box.currentIndex())
    wait_idle(w, qtbot)
    norm = w.session.pipeline.input.normalize
    assert norm.mean == pytest.approx((np.mean([0.485, 0.456, 0.406]),))
    assert box.currentData() == "ImageNet"
    w.session.document.undo_stack.undo()
    w.session.document.undo_stack.undo()
    wait_idle(w, qtbot)
    assert w.session.pipeline.input.normalize is None and box.currentData() == "none"
    assert 1 in w.session.results and w.session.results[1].result.name == "sharpen"


def test_a_transposed_conv_kernel_is_edited_as_out_by_in_slices(main_window, qtbot):
    """ConvTranspose2d stores its weight as (in, out/groups, kh, kw); the editor still picks
    "output channel" then "input channel", and a typed cell lands at weight[in, out]."""
    w = main_window
    w.stack.select_layer(0)
    w.controller.on_add_layer("ConvTranspose2d")
    w.session.document.set_arg(1, "out_channels", 3)
    w.session.document.set_arg(1, "stride", 2)
    wait_idle(w, qtbot)
    layer = w.session.document.pipeline.layers[1]
    assert layer.args["in_channels"] == 1
    ke = w.kernel_editor
    assert ke.layer_index == 1 and ke.out_box.maximum() == 2 and ke.in_box.maximum() == 0
    init_weight = Engine("cpu").build_module(layer).weight.detach().numpy().copy()
    assert init_weight.shape == (1, 3, 3, 3)
    ke.out_box.setValue(2)
    assert ke.cells[0][1].value() == pytest.approx(float(init_weight[0, 2, 0, 1]), abs=1e-7)
    ke.set_cell(0, 1, 0.5)
    wait_idle(w, qtbot)
    weight = w.session.document.pipeline.layers[1].params["weight"]
    init_weight[0, 2, 0, 1] = 0.5
    np.testing.assert_array_equal(weight, init_weight)
    # A preset on the shown slice goes to weight[0, 2] too, and torch computes the rest.
    ke.apply_preset("tutorial sharpen")
    wait_idle(w, qtbot)
    weight = w.session.document.pipeline.layers[1].params["weight"]
    np.testing.assert_array_equal(weight[0, 2], preset("tutorial sharpen").numpy())
    np.testing.assert_array_equal(weight[0, :2], init_weight[0, :2])
    x = F.conv2d(preview_tensor(w), torch.from_numpy(seed_sharpen()), padding=1)
    expected = F.conv_transpose2d(x, torch.tensor(weight), stride=2)[0].numpy()
    np.testing.assert_allclose(w.session.results[2].values, expected, rtol=0, atol=2e-5)


def test_a_kernel_value_typed_does_not_repaint_the_layer_list(main_window, qtbot):
    from PySide6.QtCore import QEvent, QObject

    w = main_window
    w.stack.select_layer(0)
    wait_idle(w, qtbot)

    class Paints(QObject):
        count = 0

        def eventFilter(self, obj, event):  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                self.count += 1
            return False

    paints = Paints()
    w.stack.view.viewport().installEventFilter(paints)
    qtbot.wait(50)
    paints.count = 0
    w.kernel_editor.cellEdited.emit(0, "weight", (0, 0, 1, 1), 0.75)
    wait_idle(w, qtbot)
    qtbot.wait(50)
    assert paints.count == 0  # the rows show names, types and shapes: none changed
    w.session.document.set_enabled(0, False)
    wait_idle(w, qtbot)
    qtbot.waitUntil(lambda: paints.count > 0, timeout=2000)  # "off" is shown
    w.stack.view.viewport().removeEventFilter(paints)

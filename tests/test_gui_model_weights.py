"""A torchvision model's weights edited in the window: the kernel editor shows a Conv2d of a
ResNet by its module path, a typed cell changes what the model computes exactly as the same
edit made in torch does, Undo gives the opened weights back exactly, and the weights save as
a .safetensors state_dict that torchvision's resnet18 loads strictly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gui_helpers import stage_output, wait_idle
from PySide6.QtWidgets import QFileDialog
from safetensors.torch import load_file
from torchvision import models as tvm

from layerlab.core import models as M
from layerlab.core.imageio import to_tensor

EDITED = "layer1.0.conv1"
LATER = ("layer2.0.conv1", "fc")  # a later stage behind a residual addition, and the last
CELL = (5, 3, 1, 2)  # weight[out, in, y, x]
VALUE = 0.75


def torch_resnet18(edit: float | None = None) -> torch.nn.Module:
    """torchvision's resnet18 with seed 0's random weights (as File > Open model makes
    them), the cell set in torch itself when ``edit`` is given."""
    torch.manual_seed(0)
    model = tvm.resnet18().eval()
    if edit is not None:
        with torch.no_grad():
            model.get_submodule(EDITED).weight[CELL] = edit
    return model


def outputs_of(model: torch.nn.Module, x: torch.Tensor, paths) -> dict[str, np.ndarray]:
    """The outputs of the modules at ``paths`` (their first call) for input ``x``."""
    seen: dict[str, np.ndarray] = {}

    def keeper(path):
        def keep(_module, _args, out) -> None:  # returns None: the output stays as it is
            seen.setdefault(path, out[0].detach().clone().numpy())
        return keep

    hooks = [model.get_submodule(p).register_forward_hook(keeper(p)) for p in paths]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def stage_values(window, paths) -> dict[str, np.ndarray]:
    s = window.session
    by_name = {v.result.name: v for v in s.results.values()}
    return {p: stage_output(by_name[p]).copy() for p in paths}


def stage_index(window, name: str) -> int:
    return next(i for i, v in window.session.results.items() if v.result.name == name)


@pytest.fixture
def resnet_window(main_window, qtbot):
    w = main_window
    w.controller.on_open_model(M.ModelSpec("resnet18"))
    qtbot.waitUntil(lambda: w.session.model_weights is not None and not w.runner.busy,
                    timeout=60000)
    wait_idle(w, qtbot)
    yield w
    s = w.session  # the window closes without asking
    s.parked_model = None
    s.model_saved_edits = s.model.edits if s.model is not None else ()


def test_a_typed_kernel_cell_edits_the_model_like_torch_and_undo_is_exact(resnet_window,
                                                                         qtbot, tmp_path,
                                                                         monkeypatch):
    w = resnet_window
    s = w.session
    paths = (EDITED, *LATER)
    _, xn = M.preprocess(M.plan_model("resnet18"), to_tensor(s.preview.image, "rgb"))
    plain = outputs_of(torch_resnet18(), xn, paths)
    edited = outputs_of(torch_resnet18(VALUE), xn, paths)
    before = stage_values(w, paths)
    for p in paths:
        np.testing.assert_allclose(before[p], plain[p], rtol=0, atol=1e-5)

    # the stage's module in the kernel editor, titled by its path, with torch's values
    s.select(stage=stage_index(w, EDITED))
    k = w.kernel_editor
    assert not k.content.isHidden() and k.source.text() == EDITED
    assert w.tabs.isTabEnabled(1)
    k.set_slice(CELL[0], CELL[1])
    weight = torch_resnet18().get_submodule(EDITED).weight.detach().numpy()
    shown = np.array([[c.value() for c in row] for row in k.cells], np.float32)
    np.testing.assert_array_equal(shown, weight[CELL[0], CELL[1]])
    assert not k.init_group.isVisible()  # a model's module has no seeded init

    k.set_cell(CELL[2], CELL[3], VALUE)
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    assert s.model_undo.count() == 1 and s.model_edits_unsaved and w.isWindowModified()
    after = stage_values(w, paths)
    for p in paths:
        np.testing.assert_allclose(after[p], edited[p], rtol=0, atol=1e-5)
    assert not np.allclose(after[EDITED], before[EDITED], atol=1e-3)  # the edit shows
    assert k.cells[CELL[2]][CELL[3]].value() == VALUE

    # Undo: the opened weights again, exactly
    w.actions["undo"].trigger()
    qtbot.waitUntil(lambda: not s.model.edits, timeout=5000)
    wait_idle(w, qtbot)
    undone = stage_values(w, paths)
    for p in paths:
        np.testing.assert_array_equal(undone[p], before[p])
    assert np.float32(k.cells[CELL[2]][CELL[3]].value()) == weight[CELL]
    assert not s.model_edits_unsaved

    # Redo, then File > Save model weights: torchvision's resnet18 loads it strictly
    w.actions["redo"].trigger()
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    target = tmp_path / "edited"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "")))
    w.actions["save_model_weights"].trigger()
    saved = tmp_path / "edited.safetensors"
    assert saved.is_file() and not s.model_edits_unsaved and not w.isWindowModified()
    loaded = tvm.resnet18()
    loaded.load_state_dict(load_file(saved), strict=True)
    loaded.eval()
    assert float(loaded.get_submodule(EDITED).weight.detach()[CELL]) == VALUE
    again = outputs_of(loaded, xn, paths)
    redone = stage_values(w, paths)
    for p in paths:
        np.testing.assert_allclose(again[p], edited[p], rtol=0, atol=1e-5)
        np.testing.assert_allclose(redone[p], edited[p], rtol=0, atol=1e-5)

    # Open model with that file: the edited weights, and nothing is asked (they are saved)
    monkeypatch.setattr(w, "settle_model_edits", lambda doing: pytest.fail("asked"))
    w.controller.on_open_model(M.ModelSpec("resnet18", str(saved)))
    qtbot.waitUntil(lambda: s.model.weights == str(saved) and s.model_weights is not None
                    and not w.runner.busy, timeout=60000)
    wait_idle(w, qtbot)
    reopened = stage_values(w, paths)
    for p in paths:
        np.testing.assert_allclose(reopened[p], edited[p], rtol=0, atol=1e-5)


def test_bad_values_presets_reset_and_unsaved_edits(resnet_window, qtbot, monkeypatch):
    w = resnet_window
    s = w.session
    k = w.kernel_editor
    conv1 = stage_index(w, "conv1")
    s.select(stage=conv1)
    assert k.source.text() == "conv1"
    # NaN cannot be typed into a cell; one arriving anyway is refused with a message and
    # changes nothing (as a stack's value table refuses it)
    k.cellEdited.emit(conv1, "weight", (0, 0, 0, 0), math.nan)
    assert not s.model.edits and s.model_undo.count() == 0
    assert "not a finite" in w.statusBar().currentMessage()

    # a preset on one slice: the cells that changed, one undo step
    k.set_slice(2, 1)
    k.apply_preset("identity")
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    assert s.model_undo.count() == 1
    shown = np.array([[c.value() for c in row] for row in k.cells])
    expected = np.zeros((7, 7))
    expected[3, 3] = 1.0
    np.testing.assert_array_equal(shown, expected)
    torch_model = torch_resnet18()
    with torch.no_grad():
        torch_model.conv1.weight[2, 1] = torch.from_numpy(expected.astype(np.float32))
    _, xn = M.preprocess(M.plan_model("resnet18"), to_tensor(s.preview.image, "rgb"))
    ref = outputs_of(torch_model, xn, ["conv1"])
    np.testing.assert_allclose(stage_values(w, ["conv1"])["conv1"], ref["conv1"], rtol=0,
                               atol=1e-5)

    # another model over unsaved edits asks; Cancel keeps everything
    asked = []
    monkeypatch.setattr(w, "settle_model_edits", lambda doing: asked.append(doing) or False)
    w.controller.on_open_model(M.ModelSpec("resnet18", seed=1))
    assert asked == ["open resnet18"] and s.model.seed == 0 and s.model.edits
    # quitting asks too; Cancel keeps the window
    w.close()
    assert asked[-1] == "quit" and w.isVisible()

    # an edit of the stack brings the stack back; the weight edits are kept, and opening
    # the same model again brings them back with their history
    edits = s.model.edits
    w.session.document.set_arg(0, "out_channels", 2)
    qtbot.waitUntil(lambda: s.model is None, timeout=10000)
    assert "weight edits of resnet18 are kept" in w.banner.text()
    wait_idle(w, qtbot)
    w.close()
    assert asked[-1] == "quit" and w.isVisible()  # still unsaved: quitting asks
    w.controller.on_open_model(M.ModelSpec("resnet18"))
    assert s.model.edits == edits and s.model_undo.count() == 1 and len(asked) == 3
    qtbot.waitUntil(lambda: s.model_weights is not None and not w.runner.busy, timeout=60000)
    wait_idle(w, qtbot)
    np.testing.assert_allclose(stage_values(w, ["conv1"])["conv1"], ref["conv1"], rtol=0,
                               atol=1e-5)
    s.select(stage=conv1)

    # Reset weights: the opened ones, one undo step (undoable)
    w.actions["reset_model_weights"].trigger()
    qtbot.waitUntil(lambda: not s.model.edits, timeout=5000)
    wait_idle(w, qtbot)
    assert s.model_undo.count() == 2 and not s.model_edits_unsaved
    w.actions["undo"].trigger()
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    np.testing.assert_allclose(stage_values(w, ["conv1"])["conv1"], ref["conv1"], rtol=0,
                               atol=1e-5)


def test_quitting_over_unsaved_edits_offers_to_save_them(resnet_window, qtbot, tmp_path,
                                                          monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    w = resnet_window
    s = w.session
    s.select(stage=stage_index(w, EDITED))
    w.kernel_editor.set_slice(CELL[0], CELL[1])
    w.kernel_editor.set_cell(CELL[2], CELL[3], VALUE)
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    offered = []

    def answer(button):
        def question(_parent, _title, text, buttons, _default):
            offered.append((text, buttons))
            return button
        return staticmethod(question)

    # Save, then the file dialog is cancelled: nothing is saved and the window stays
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Save))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    w.close()
    assert w.isVisible() and s.model_edits_unsaved
    text, buttons = offered[-1]
    assert text == ("The weights of resnet18 have edits that are not saved. Save them "
                    "before you quit?")
    assert buttons & QMessageBox.StandardButton.Save and buttons & QMessageBox.StandardButton.Discard

    # parked behind the stack (an edit of the stack shows it): no Save, it says how
    spec = s.model
    w.session.document.set_arg(0, "out_channels", 2)
    qtbot.waitUntil(lambda: s.model is None, timeout=10000)
    wait_idle(w, qtbot)
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    w.close()
    assert w.isVisible()
    text, buttons = offered[-1]
    assert not buttons & QMessageBox.StandardButton.Save
    assert text == ("The weights of resnet18 have edits that are not saved (File > Open "
                    "model… resnet18 again shows them, to save). Discard them and quit?")
    w.controller.on_open_model(spec.opened_as)  # the same model again: its edits come back
    qtbot.waitUntil(lambda: s.model is not None and s.model_weights is not None
                    and not w.runner.busy, timeout=60000)
    wait_idle(w, qtbot)
    assert s.model_edits_unsaved

    # Save to a file: the window closes, and the file holds the edited weights
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Save))
    target = tmp_path / "kept"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "")))
    w.close()
    assert not w.isVisible() and not s.model_edits_unsaved
    loaded = load_file(tmp_path / "kept.safetensors")
    assert float(loaded[EDITED + ".weight"][CELL]) == VALUE
    assert torch.equal(loaded["fc.weight"], torch_resnet18().fc.weight.detach())


def test_alt_click_explains_a_model_stage_from_the_modules_actual_input(resnet_window, qtbot):
    w = resnet_window
    s = w.session
    w.show_dock(w.explain_dock)
    panel = w.explain_panel
    _, xn = M.preprocess(M.plan_model("resnet18"), to_tensor(s.preview.image, "rgb"))
    model = torch_resnet18()
    inputs: dict[str, torch.Tensor] = {}

    def keeper(path):
        def keep(_module, args) -> None:
            inputs.setdefault(path, args[0].detach().clone())
        return keep

    for p in ("layer2.0.downsample.0", "maxpool", "fc"):
        model.get_submodule(p).register_forward_pre_hook(keeper(p))
    with torch.no_grad():
        model(xn)

    # a ResNet's downsample reads the block's input, not the previous stage (layer2.0.bn2)
    stage = stage_index(w, "layer2.0.downsample.0")
    channel, y, x = 7, 3, 5
    w.controller.on_explain(stage, channel, x, y)
    qtbot.waitUntil(lambda: panel.explanation is not None
                    and panel.explanation.channel == channel, timeout=30000)
    e = panel.explanation
    conv = model.layer2[0].downsample[0]
    ref = torch.nn.functional.conv2d(inputs["layer2.0.downsample.0"].double(),
                                     conv.weight.detach().double(), stride=conv.stride)
    assert e.kind == "conv" and e.layer_type == "Conv2d"
    assert abs(e.total - float(ref[0, channel, y, x])) < 1e-9
    assert abs(e.value - float(stage_output(s.results[stage])[channel, y, x])) < 1e-5
    assert "layer2.0.downsample.0" in panel.title.text()

    # a pool: its window's winner; the classifier: a Linear over the flattened pool
    stage = stage_index(w, "maxpool")
    w.controller.on_explain(stage, 2, 4, 6)
    qtbot.waitUntil(lambda: panel.explanation is not None
                    and panel.explanation.kind == "pool", timeout=30000)
    win = inputs["maxpool"][0, 2]
    padded = torch.nn.functional.pad(win, (1, 1, 1, 1), value=-math.inf)
    assert panel.explanation.total == float(padded[12:15, 8:11].max())
    stage = stage_index(w, "fc")
    w.controller.on_explain(stage, 0, 42, 0)
    qtbot.waitUntil(lambda: panel.explanation is not None
                    and panel.explanation.kind == "linear", timeout=30000)
    fc = model.fc
    expected = (inputs["fc"][0].double() @ fc.weight.detach()[42].double()
                + float(fc.bias.detach()[42]))
    assert abs(panel.explanation.total - float(expected)) < 1e-9


def test_a_convs_bias_edits_in_its_table_and_nan_is_refused_there(main_window, qtbot):
    w = main_window
    s = w.session
    w.controller.on_open_model(M.ModelSpec("squeezenet1_1", seed=3))
    qtbot.waitUntil(lambda: s.model_weights is not None and not w.runner.busy, timeout=60000)
    wait_idle(w, qtbot)
    s.select(stage=stage_index(w, "features.0"))
    k = w.kernel_editor
    assert k.source.text() == "features.0" and not k.bias_group.isHidden()
    torch.manual_seed(3)
    model = tvm.squeezenet1_1().eval()
    table = k.bias_table
    original = model.features[0].bias.detach().clone()
    assert [float(table.item(r, 0).text()) for r in range(64)] == pytest.approx(
        original.tolist(), abs=1e-7)
    before = stage_values(w, ["features.0", "classifier.1"])

    table.type_value("bias", 3, "nan")  # refused as the stack's value table refuses it
    assert not s.model.edits and s.model_undo.count() == 0
    assert "not a finite number" in w.statusBar().currentMessage()
    table.type_value("bias", 3, "0.5")
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    wait_idle(w, qtbot)
    with torch.no_grad():
        model.features[0].bias[3] = 0.5
    _, xn = M.preprocess(M.plan_model("squeezenet1_1"), to_tensor(s.preview.image, "rgb"))
    ref = outputs_of(model, xn, ["features.0", "classifier.1"])
    got = stage_values(w, ["features.0", "classifier.1"])
    for p in ref:
        np.testing.assert_allclose(got[p], ref[p], rtol=0, atol=1e-5)
    assert float(table.item(3, 0).text()) == 0.5
    w.actions["undo"].trigger()
    qtbot.waitUntil(lambda: not s.model.edits, timeout=5000)
    wait_idle(w, qtbot)
    assert float(table.item(3, 0).text()) == pytest.approx(float(original[3]), abs=1e-7)
    undone = stage_values(w, ["features.0", "classifier.1"])
    for p in before:
        np.testing.assert_array_equal(undone[p], before[p])


def test_the_editors_show_the_model_not_the_stack_behind_it(resnet_window, qtbot):
    """In the model view neither editor shows the stack's layer: the form says the model is
    shown, a stage without a kernel says so in the Kernel tab, and a weight edit leaves the
    panels where the person put them (the Layers dock stays in front of the Model tree)."""
    w = resnet_window
    s, k = w.session, w.kernel_editor
    assert "resnet18 is shown" in w.param_form.title.text()
    # File > Save model weights while a model is shown; Reset once it has edits
    assert w.actions["save_model_weights"].isEnabled()
    assert not w.actions["reset_model_weights"].isEnabled()
    s.select(stage=stage_index(w, "bn1"))
    wait_idle(w, qtbot)
    assert not k.shows_stack_layer and k.content.isHidden()
    assert "bn1 has no kernel" in k.placeholder.text()

    s.select(stage=stage_index(w, EDITED))
    wait_idle(w, qtbot)
    assert k.source.text() == EDITED and not k.shows_stack_layer
    w.dock.raise_()  # the Layers dock (the kernel editor) in front
    qtbot.waitUntil(lambda: not w.dock.visibleRegion().isEmpty(), timeout=3000)
    k.set_cell(1, 1, 0.5)
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    # (marked saved at once: a failing check must not leave the window asking on close)
    s.model_saved_edits = s.model.edits
    wait_idle(w, qtbot)
    assert not w.dock.visibleRegion().isEmpty()  # not flipped to the Model tree
    assert w.actions["reset_model_weights"].isEnabled()
    assert w.model_dock.visibleRegion().isEmpty()

    # an edit of the stack brings the stack back, and the editors show its layer again
    w.session.document.set_arg(0, "padding", 2)
    wait_idle(w, qtbot)
    assert s.model is None
    assert "resnet18 is shown" not in w.param_form.title.text()
    assert k.shows_stack_layer and w.param_form.layer_index == 0
    assert not w.actions["save_model_weights"].isEnabled()


def test_export_all_stages_of_the_model_view_writes_the_model_with_its_edits(
        resnet_window, qtbot, tmp_path):
    """File > Export > Export all stages while resnet18 is shown: every stage of the model
    (with its weight edit), as ``layerlab export --model`` lays them out; the edited conv's
    pictures are torch's own outputs of the edited model, per the uint8 formula."""
    import json

    from PIL import Image

    from layerlab.core import export

    w = resnet_window
    s = w.session
    s.select(stage=stage_index(w, EDITED))
    wait_idle(w, qtbot)
    w.kernel_editor.set_slice(CELL[0], CELL[1])
    w.kernel_editor.set_cell(CELL[2], CELL[3], VALUE)
    qtbot.waitUntil(lambda: bool(s.model.edits), timeout=5000)
    # (marked saved at once: a failing check must not leave the window asking on close)
    s.model_saved_edits = s.model.edits
    wait_idle(w, qtbot)
    job = w.exporter.export_all(tmp_path / "out", show_progress=False)
    assert job is not None
    qtbot.waitUntil(lambda: w.exporter.job is None, timeout=120000)
    assert w.exporter.last_error is None, w.exporter.last_error
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["name"] == "resnet18" and manifest["pipeline"] is None
    assert len(manifest["stages"]) == len(s.results) == 62
    index = stage_index(w, EDITED)
    _, xn = M.preprocess(M.plan_model("resnet18"), to_tensor(s.loaded.image, "rgb"))
    want = outputs_of(torch_resnet18(VALUE), xn, [EDITED])[EDITED][CELL[0]]
    folder = tmp_path / "out" / export.stage_dir_name(index, EDITED)
    written = np.asarray(Image.open(folder / export.channel_file_name(CELL[0])))
    lo, hi = want.min(), want.max()
    u8 = np.floor(np.clip((want - lo) / (hi - lo) * np.float32(255) + np.float32(0.5),
                          0, 255)).astype(np.uint8)
    # the export runs NCHW, torch here too: equal but for a value on a rounding boundary
    assert np.mean(written != u8) < 1e-3 and np.abs(written.astype(int) - u8).max() <= 1

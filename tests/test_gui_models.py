"""File > Open model in the window: the dialog, the model's stages in the strip and panel
(computed in the worker thread), a file that does not fit, and the stack coming back."""

from __future__ import annotations

import torch
from gui_helpers import wait_idle
from PySide6.QtWidgets import QDialogButtonBox
from torchvision import models as tvm

from layerlab.core import models as M
from layerlab.core.imageio import to_tensor


def test_open_model_shows_every_stage_by_module_path(main_window, qtbot, tmp_path):
    w = main_window
    torch.manual_seed(1)
    model = tvm.squeezenet1_1().eval()
    path = tmp_path / "sq.pt"
    torch.save(model.state_dict(), path)

    dialog = w.files.open_model_dialog()
    dialog.names.setCurrentText("squeezenet1_1")
    dialog.from_file.setChecked(True)
    dialog.path.setText(str(path))
    assert dialog.spec() == M.ModelSpec("squeezenet1_1", str(path), 0)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Open).click()
    qtbot.waitUntil(lambda: w.session.model is not None and len(w.session.results) > 60
                    and not w.runner.busy, timeout=60000)
    wait_idle(w, qtbot)

    plan = M.plan_model("squeezenet1_1")
    s = w.session
    assert [s.results[i].result.name for i in sorted(s.results)] == [st.name for st in
                                                                      plan.stages]
    x = to_tensor(s.preview.image, "rgb")
    opened = M.open_model("squeezenet1_1", weights=path)
    _, xn = M.preprocess(opened, x)
    with torch.no_grad():
        ref = model(xn)
    last = s.results[max(s.results)]
    torch.testing.assert_close(torch.from_numpy(last.values), ref[0], rtol=0, atol=1e-5)
    assert last.rendered is not None  # drawn in the worker like any stage
    assert w.statusBar().currentMessage() == \
        f"Opened squeezenet1_1 (weights sq.pt): {len(plan.stages) - 1} stages"
    # the last stage's predictions: softmax top-5 with ImageNet's names, as torch ranks them
    s.select(stage=max(s.results))
    qtbot.waitUntil(lambda: w.stage_panel.predictions.isVisible(), timeout=10000)
    probs = torch.softmax(ref[0].double(), 0)
    top = torch.topk(probs, 5)
    names = tvm.SqueezeNet1_1_Weights.IMAGENET1K_V1.meta["categories"]
    view = w.stage_panel.predictions
    assert [view.label(k).split("  ")[0] for k in range(5)] == [names[i] for i in top.indices]
    torch.testing.assert_close(torch.from_numpy(view.bar_widths()), top.values, rtol=0,
                               atol=1e-6)
    # the module tree lists the stages by path; a click shows that stage
    assert w.model_dock.isVisible() and w.model_dock.windowTitle() == "Model: squeezenet1_1"
    tree = w.model_tree.tree
    fire = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                if tree.topLevelItem(i).text(0) == "features")
    item = next(fire.child(i) for i in range(fire.childCount()) if fire.child(i).text(0) == "3")
    assert item.text(1) == "Fire"  # a container that concatenates is a stage of its own
    squeeze = item.child(0)
    assert (squeeze.text(0), squeeze.text(1)) == ("squeeze", "Conv2d")
    before = w.session.layer
    tree.itemClicked.emit(squeeze, 0)
    index = [st.name for st in plan.stages].index("features.3.squeeze")
    assert s.stage == index and w.session.layer == before  # no stack layer is picked

    # an edit of the stack brings the stack back
    w.session.document.set_arg(0, "out_channels", 2)
    qtbot.waitUntil(lambda: s.model is None, timeout=10000)
    assert not w.model_dock.isVisible()
    wait_idle(w, qtbot)
    assert s.results[1].result.name == w.session.pipeline.stage_names()[1]


def test_a_file_that_does_not_fit_is_one_message_and_the_stack_stays(main_window, qtbot,
                                                                       tmp_path):
    w = main_window
    names = w.session.pipeline.stage_names()
    torch.save({"features.0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    w.controller.on_open_model(M.ModelSpec("squeezenet1_1", str(tmp_path / "bad.pt")))
    qtbot.waitUntil(lambda: w.session.model is None and not w.runner.busy
                    and len(w.session.results) == len(names), timeout=30000)
    wait_idle(w, qtbot)
    assert "Could not open the model: bad.pt: features.0.weight has shape [2, 2]" in \
        w.banner.text()
    assert [w.session.results[i].result.name for i in sorted(w.session.results)] == names


def test_the_dialog_says_where_trained_weights_are_looked_for(main_window, tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    dialog = main_window.files.open_model_dialog()
    dialog.names.setCurrentText("resnet18")
    dialog.trained.setChecked(True)
    assert "resnet18-f37072fd.pth in " in dialog.hub_note.text()
    assert "not on this computer" in dialog.hub_note.text()
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Open).isEnabled()
    dialog.random.setChecked(True)
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Open).isEnabled()
    assert dialog.spec() == M.ModelSpec("resnet18", None, 0)
    dialog.reject()

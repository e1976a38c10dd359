"""File > Open model… as an editable stack: AlexNet with seeded weights saved to a file by the
test and loaded back becomes the window's stack; every stage against torchvision's own model
(forward hooks on the same photo after torchvision's own preset), the predictions, a
kernel-cell edit and its undo, the undo history's memory, Save and reopen through the
safetensors file, a budget too small for the stack, and undoing the whole opening."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch
from gui_helpers import stage_output, wait_idle
from PySide6.QtWidgets import QDialogButtonBox
from torchvision import models as tvm

from layerlab.core import models as M
from layerlab.core.imageio import to_tensor
from layerlab.core.pipeline import Pipeline

# Within 1e-5, relative where the values are above 1: the engine's channels-last convolutions
# add the same products in another order than torchvision's NCHW ones (AlexNet's activations
# reach 6 here, and 1e-5 of 6 is a few float32 steps).
TOL = 1e-5


def seeded_alexnet(seed: int) -> torch.nn.Module:
    """AlexNet with seeded random tensors, weights normal with std 1/sqrt(fan-in) (so the
    activations stay of order one), biases small; filled directly (torch's own init of 61 M
    weights takes seconds)."""
    with torch.device("meta"):
        model = tvm.alexnet()
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.normal_(0, 1 / math.sqrt(p[0].numel()), generator=g)
            else:
                p.uniform_(-0.1, 0.1, generator=g)
    return model.eval()


def reference_stages(model: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """torchvision's preset on ``image``, then every leaf module's output by path."""
    preset = tvm.AlexNet_Weights.IMAGENET1K_V1.transforms()
    x = preset(image)  # (1, 3, 224, 224)
    outputs = {"normalize": x}
    # cloned: the ReLUs work in place on the output before them
    hooks = [m.register_forward_hook(lambda _m, _a, out, p=path: outputs.__setitem__(
        p, out.clone()))
             for path, m in model.named_modules() if path and not list(m.children())]
    with torch.no_grad():
        outputs["output"] = model(x)
    for h in hooks:
        h.remove()
    outputs["flatten"] = torch.flatten(outputs["avgpool"], 1)
    return outputs


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    model = seeded_alexnet(7)
    path = tmp_path_factory.mktemp("alexnet") / "alexnet-seeded.pt"
    torch.save(model.state_dict(), path)
    return model, path


def open_as_stack(w, qtbot, name: str, path=None) -> None:
    dialog = w.files.open_model_dialog()
    dialog.names.setCurrentText(name)
    if path is not None:
        dialog.from_file.setChecked(True)
        dialog.path.setText(str(path))
    assert dialog.stack_box.isEnabled() and dialog.as_stack()  # a chain: a stack by default
    dialog.buttons.button(QDialogButtonBox.StandardButton.Open).click()


def test_alexnet_opens_as_a_stack_equal_to_torchvision_stage_by_stage(
        main_window, qtbot, alexnet_file, tmp_path):
    w, (model, path) = main_window, alexnet_file
    s, doc = w.session, w.session.document
    before, steps_before = doc.pipeline, doc.undo_stack.count()
    messages, progress = [], []
    w.statusBar().messageChanged.connect(messages.append)
    shown = w.set_progress
    w.set_progress = lambda text, tip="": (progress.append(text), shown(text, tip))
    open_as_stack(w, qtbot, "alexnet", path)
    assert w.model_stack.busy  # built off the GUI thread: the dialog's click has returned
    qtbot.waitUntil(lambda: doc.title == "alexnet" and not w.model_stack.busy, timeout=120000)
    wait_idle(w, qtbot, timeout=120000)
    qtbot.waitUntil(lambda: len(s.results) == len(s.pipeline.stage_names()), timeout=60000)
    assert s.model is None  # the stack itself, not the model view
    assert doc.undo_stack.count() == steps_before + 1
    # AlexNet's 21 modules and the Flatten its forward does
    assert "Opened alexnet (file alexnet-seeded.pt) as an editable stack: 22 layers" in messages
    assert "building alexnet: layer 21/21" in progress  # one step per module
    p = s.pipeline
    assert p.stage_names()[:4] == ["input", "normalize", "features.0", "features.1"]
    assert p.classes == tuple(tvm.AlexNet_Weights.IMAGENET1K_V1.meta["categories"])
    ref = reference_stages(model, to_tensor(s.preview.image, "rgb"))
    for index, name in enumerate(p.stage_names()[1:], start=1):
        got = torch.from_numpy(stage_output(s.results[index]))
        torch.testing.assert_close(got, ref[name][0], rtol=TOL, atol=TOL, msg=name)
    torch.testing.assert_close(torch.from_numpy(stage_output(s.results[max(s.results)])),
                               ref["output"][0], rtol=TOL, atol=TOL)

    # The predictions under the last stage: ImageNet's names, ranked as torch ranks them.
    s.select(stage=max(s.results))
    qtbot.waitUntil(lambda: w.stage_panel.predictions.isVisible(), timeout=10000)
    top = torch.topk(torch.softmax(ref["output"][0].double(), 0), 5)
    view = w.stage_panel.predictions
    assert [view.label(k).split("  ")[0] for k in range(5)] == [p.classes[i]
                                                                 for i in top.indices]

    # One kernel cell of features.3 (192 x 64 x 5 x 5), typed in the kernel editor.
    conv = [layer.name for layer in p.layers].index("features.3")
    w.stack.select_layer(conv)
    qtbot.waitUntil(lambda: w.kernel_editor.layer_index == conv, timeout=5000)
    w.kernel_editor.set_slice(5, 9)
    original = {(i, k): arr for i, layer in enumerate(p.layers)
                for k, arr in layer.params.items()}
    old_value = float(p.layers[conv].params["weight"][5, 9, 2, 1])
    w.kernel_editor.set_cell(2, 1, 0.75)
    edited = s.pipeline
    changed = edited.layers[conv].params["weight"]
    assert changed[5, 9, 2, 1] == np.float32(0.75) and old_value != 0.75
    mask = np.ones(changed.shape, bool)
    mask[5, 9, 2, 1] = False
    np.testing.assert_array_equal(changed[mask], original[(conv, "weight")][mask])
    # every other tensor (61 M weights) is the very same array: nothing else was copied
    assert all(edited.layers[i].params[k] is arr for (i, k), arr in original.items()
               if (i, k) != (conv, "weight"))
    wait_idle(w, qtbot, timeout=60000)
    ref_stage = s.stage_of_layer(conv)
    with torch.no_grad():
        model.features[3].weight[5, 9, 2, 1] = 0.75
        ref = reference_stages(model, to_tensor(s.preview.image, "rgb"))
        model.features[3].weight[5, 9, 2, 1] = old_value
    torch.testing.assert_close(torch.from_numpy(stage_output(s.results[ref_stage])),
                               ref["features.3"][0], rtol=TOL, atol=TOL)
    doc.undo_stack.undo()
    restored = s.pipeline.layers[conv].params["weight"]
    assert restored.tobytes() == original[(conv, "weight")].tobytes()  # every bit
    assert all(s.pipeline.layers[i].params[k] is arr for (i, k), arr in original.items()
               if (i, k) != (conv, "weight"))
    doc.undo_stack.redo()
    assert s.pipeline.layers[conv].params["weight"].tobytes() == changed.tobytes()

    # Twenty more edits of other cells: the history keeps the cells, not twenty copies of
    # the 1.2 MB kernel (a weak reference to each version says which are still alive).
    versions = []
    for k in range(20):
        doc.set_param_value(conv, "weight", (k, 0, 0, 0), float(k) / 8)
        versions.append(weakref.ref(s.pipeline.layers[conv].params["weight"]))
    wait_idle(w, qtbot, timeout=60000)
    alive = sum(ref() is not None for ref in versions)
    assert alive <= 3, alive  # the newest, and what the last run and the engine hold
    for _ in range(20):
        doc.undo_stack.undo()
    assert s.pipeline.layers[conv].params["weight"].tobytes() == changed.tobytes()

    # Save: the weights go to the safetensors file beside a small pipeline file.
    target = tmp_path / "my-alexnet.layerlab.json"
    assert w.files.save_pipeline_to(str(target))
    beside = tmp_path / "my-alexnet.safetensors"
    assert beside.stat().st_size > 61_000_000 * 4 and target.stat().st_size < 60_000
    assert w.statusBar().currentMessage() == (
        "Saved my-alexnet.layerlab.json and its tensors beside it, my-alexnet.safetensors")
    again = Pipeline.load(target)
    assert again.classes == p.classes and again.input == p.input
    assert [la.key for la in again.layers] == [la.key for la in s.pipeline.layers]

    # Undo back to the opening, then the opening itself: the previous stack comes back.
    while doc.undo_stack.index() > steps_before:
        doc.undo_stack.undo()
    assert doc.pipeline is before and doc.title != "alexnet"


def test_a_budget_too_small_for_the_stack_is_one_message_and_the_stack_stays(
        main_window, qtbot):
    w = main_window
    doc = w.session.document
    before, steps = doc.pipeline, doc.undo_stack.count()
    w.set_memory_budget(1)
    open_as_stack(w, qtbot, "vgg11")
    qtbot.waitUntil(lambda: not w.model_stack.busy, timeout=60000)
    plan = M.plan_model("vgg11")
    need = 2 * 132_863_336 * 4 + plan.outputs_bytes  # its weights, twice, and its outputs
    assert M.stack_need_bytes(plan) == need > 1024**3
    text = w.banner.text()
    assert text.startswith("Could not open vgg11 as a stack: vgg11 as an editable stack needs "
                           "about 1.1 GB")
    assert "more than the memory budget of 1.0 GB" in text
    assert doc.pipeline is before and doc.undo_stack.count() == steps


def test_only_chain_models_offer_the_stack(main_window):
    dialog = main_window.files.open_model_dialog()
    dialog.names.setCurrentText("resnet18")
    assert not dialog.stack_box.isEnabled() and not dialog.as_stack()
    assert not dialog.stack_box.isChecked()  # it does not say what will not happen
    dialog.names.setCurrentText("vgg16_bn")
    assert dialog.as_stack() and dialog.stack_box.isChecked()
    dialog.stack_box.click()  # the model view instead
    assert not dialog.as_stack()
    dialog.names.setCurrentText("resnet18")
    dialog.names.setCurrentText("alexnet")
    assert not dialog.as_stack()  # the person's choice is kept
    dialog.reject()

"""Animate a parameter from the window: the dialog's choices become the headless sweep, run
off the GUI thread; frames equal torch called directly; bad values stay in the dialog."""

from __future__ import annotations

import json
import threading

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import functional as tvf

from layerlab.core import resources
from layerlab.core.sweep_output import LABEL_HEIGHT
from layerlab.qt.sweep_dialog import SweepDialog

SHARPEN = torch.tensor(json.loads(resources.example_pipeline("sharpen-relu-maxpool")
                                  .read_text())["layers"][0]["params"]["weight"])


def to_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    lo32, hi32 = np.float32(lo), np.float32(hi)
    y = (x - lo32) / (hi32 - lo32) * np.float32(255) + np.float32(0.5)
    return np.floor(np.clip(y, 0, 255)).astype(np.uint8)


def test_the_dialog_writes_the_sweep_in_a_thread(main_window, qtbot, tmp_path):
    w = main_window
    assert w.animator.action in w.export_menu.actions()
    w.session.select(layer=0)
    dialog = SweepDialog(w.session, w, str(tmp_path))
    qtbot.addWidget(dialog)
    assert dialog.layer_box.currentData() == 0
    assert dialog.param_box.currentText() == "kernel_size"
    assert dialog.values.text() == "1,3,5,7"  # suggested for kernel_size
    items = [dialog.param_box.itemText(i) for i in range(dialog.param_box.count())]
    assert {"stride", "dilation", "weight[0,0,1,1]", "weight*"} <= set(items)
    dialog.param_box.setCurrentText("weight*")
    assert dialog.values.text() == "0..2:5"
    dialog.param_box.setCurrentText("dilation")
    assert dialog.values.text() == "1..4"
    dialog.values.setText("1..3")
    out = tmp_path / "d.gif"
    dialog.out.setText(str(out))
    target, values, stage, path, fmt = dialog.check()
    assert (target.name, values, stage, fmt) == ("dilation", [1, 2, 3], 1, "gif")

    done = {}
    job = w.animator.start(target, values, stage, path, fmt=fmt, duration_ms=200,
                           show_progress=False)
    job.succeeded.connect(lambda p: done.update(path=p, ident=job.thread_ident))
    qtbot.waitUntil(lambda: w.animator.job is None, timeout=60000)
    assert done["path"] == str(out)
    assert done["ident"] != threading.get_ident()  # computed off the GUI thread

    x = tvf.to_tensor(w.session.preview.image.convert("L")).unsqueeze(0)
    stages = [F.conv2d(x, SHARPEN, padding=1, dilation=d)[0, 0].numpy() for d in (1, 2, 3)]
    lo, hi = min(s.min() for s in stages), max(s.max() for s in stages)
    with Image.open(out) as im:
        assert im.n_frames == 3 and im.info["duration"] == 200
        for k, s in enumerate(stages):
            im.seek(k)
            frame = np.asarray(im.convert("L"))
            h, wd = s.shape
            y0 = LABEL_HEIGHT + (frame.shape[0] - LABEL_HEIGHT - h) // 2
            x0 = (frame.shape[1] - wd) // 2
            np.testing.assert_array_equal(frame[y0:y0 + h, x0:x0 + wd], to_u8(s, lo, hi))
    assert "wrote 3 frames" in w.animator.last_message


def test_a_bad_value_stays_in_the_dialog(main_window, qtbot, tmp_path):
    w = main_window
    tmp_path = tmp_path / "out"  # (the window's settings file lives in tmp_path)
    tmp_path.mkdir()
    dialog = SweepDialog(w.session, w, str(tmp_path))
    qtbot.addWidget(dialog)
    dialog.param_box.setCurrentText("stride")
    dialog.values.setText("1,0")
    dialog.out.setText(str(tmp_path / "s.gif"))
    dialog._try_accept()
    assert dialog.request is None and dialog.result() == 0
    assert "stride = 0" in dialog.error_label.text()
    assert "at least 1" in dialog.error_label.text()
    dialog.values.setText("1,2")
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("frames"))
    assert dialog.out.text() == str(tmp_path / "s")  # the name follows the format
    dialog._try_accept()
    assert dialog.request is not None and dialog.request[4] == "frames"
    assert list(tmp_path.iterdir()) == []  # checking writes nothing

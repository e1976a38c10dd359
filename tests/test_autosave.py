"""Autosave: the session's stack (megabytes of weights) is encoded and written off the GUI
thread, the newest state wins, and quitting keeps exactly the last one."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from gui_helpers import wait_idle
from PySide6.QtCore import QTimer

from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.qt import persistence
from layerlab.qt.persistence import pipeline_json


def test_the_sliced_encoding_is_exactly_the_pipeline_files_json():
    rng = np.random.default_rng(3)
    conv = new_layer("Conv2d", (3, 8, 8), out_channels=4, kernel_size=3, padding=1)
    conv = conv.with_param("weight", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    big = new_layer("Linear", (12,), in_features=12, out_features=3 * persistence.JSON_SLICE + 5)
    bias = rng.standard_normal(3 * persistence.JSON_SLICE + 5).astype(np.float32)
    bias[[0, 7, -1]] = [np.nan, np.inf, -0.0]
    big = big.with_param("bias", bias)
    pipeline = Pipeline(InputSpec("rgb", resize=[2, 2]),
                        (conv, new_layer("Flatten"), big, new_layer("ReLU")))
    expected = json.dumps(pipeline.to_dict(), separators=(",", ":"))
    assert pipeline_json(pipeline) == expected


def big_stack(features: int, outputs: int, seed: int) -> Pipeline:
    side = int(round(features ** 0.5))
    linear = new_layer("Linear", (features,), in_features=features, out_features=outputs)
    rng = np.random.default_rng(seed)
    linear = linear.with_param("weight", rng.standard_normal((outputs, features),
                                                             dtype=np.float32))
    return Pipeline(InputSpec("gray", resize=(side, side)),
                    (new_layer("Flatten"), linear))


@pytest.mark.parametrize("features, outputs", [
    (1024, 256),
    pytest.param(4096, 3000, marks=pytest.mark.slow),  # ~12 M weights: 49 MB of float32
])
def test_autosave_of_big_weights_runs_off_the_gui_thread_and_restores_exactly(
        make_window, settings, qtbot, monkeypatch, features, outputs):
    w = make_window(settings)
    gui_thread = threading.current_thread()
    ticks = {"count": 0, "last": time.perf_counter(), "longest": 0.0}

    def heartbeat() -> None:
        now = time.perf_counter()
        ticks["longest"] = max(ticks["longest"], now - ticks["last"])
        ticks["last"] = now
        ticks["count"] += 1

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(heartbeat)
    calls = []
    real_encode = persistence.pipeline_json

    def spy(pipeline):
        # The GUI thread must keep running while this encodes: wait for three heartbeats
        # (with the encoding on the GUI thread they could never come).
        # (At the close the GUI thread waits for the writer on purpose: not then.)
        seen = ticks["count"]
        deadline = time.monotonic() + 30
        while (not w.controller.closing and ticks["count"] < seen + 3
               and time.monotonic() < deadline):
            time.sleep(0.005)
        calls.append((threading.current_thread(), w.controller.closing,
                      ticks["count"] - seen))
        return real_encode(pipeline)

    monkeypatch.setattr(persistence, "pipeline_json", spy)
    doc = w.session.document
    stack = big_stack(features, outputs, 0)  # (drawing the random weights takes a while)
    timer.start()
    doc.edit(stack, "Big weights")
    wait_idle(w, qtbot, timeout=120000)
    qtbot.waitUntil(lambda: bool(calls), timeout=120000)
    # An edit of one weight while the first state may still be written: the newest wins.
    last = doc.pipeline.layers[1].params["weight"].copy()
    last[7, 11] = 0.5
    doc.set_param(1, "weight", last, "Edit a weight")
    wait_idle(w, qtbot, timeout=120000)
    expected = doc.pipeline
    w.close()  # saves and waits for the newest state to be written
    timer.stop()
    assert not [t for t in threading.enumerate() if t.name == "layerlab-autosave"]  # ended
    print(f"GUI heartbeat: {ticks['count']} ticks, longest gap {ticks['longest'] * 1000:.0f} ms")

    assert calls and all(thread is not gui_thread for thread, _, _ in calls)
    while_open = [beats for _, closing, beats in calls if not closing]
    assert while_open and min(while_open) >= 3  # the GUI thread ran while it encoded
    again = make_window(settings)
    restored = again.session.document.pipeline
    assert restored.input == expected.input
    assert [layer.type for layer in restored.layers] == ["Flatten", "Linear"]
    np.testing.assert_array_equal(restored.layers[1].params["weight"], last)
    assert restored.layers[1].key == expected.layers[1].key  # every bit of every weight
    assert again.session.document.modified


def test_the_writer_writes_the_newest_then_its_thread_ends(tmp_path):
    first, _ = persistence.default_pipeline()
    writer_cls = persistence.AutosaveWriter
    second = first.replace_layer(0, first.layers[0].with_args(padding=0))
    writer = writer_cls(tmp_path / "session.json")
    writer.submit(first)
    writer.submit(second)  # latest wins
    writer.close()
    assert not [t for t in threading.enumerate() if t.name == "layerlab-autosave"]
    text = (tmp_path / "session.json").read_text()
    assert text == pipeline_json(second) + "\n"
    assert Pipeline.from_json(text).layers[0].args["padding"] == 0 != first.layers[0].args["padding"]
    writer.submit(first)  # a closed writer starts again when asked to
    writer.close()
    assert (tmp_path / "session.json").read_text() == pipeline_json(first) + "\n"

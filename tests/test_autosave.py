"""Autosave: the session's stack (megabytes of weights) is encoded and written off the GUI
thread, the newest state wins, and quitting keeps exactly the last one."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import numpy as np
import pytest
from gui_helpers import wait_idle
from PySide6.QtCore import QTimer

from layerlab.core.pipeline import InputSpec, Pipeline, PipelineError, new_layer
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
    real_encode = persistence.session_json

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

    monkeypatch.setattr(persistence, "session_json", spy)
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


def test_big_tensors_go_to_files_of_their_own_and_a_re_save_writes_only_the_changed_one(
        tmp_path):
    rng = np.random.default_rng(5)
    a = new_layer("Linear", (1000,), in_features=1000, out_features=300).with_param(
        "weight", rng.standard_normal((300, 1000), dtype=np.float32))
    b = new_layer("Linear", (300,), in_features=300, out_features=400).with_param(
        "weight", rng.standard_normal((400, 300), dtype=np.float32))
    small = new_layer("Linear", (400,), in_features=400, out_features=3).with_param(
        "weight", rng.standard_normal((3, 400), dtype=np.float32))
    stack = Pipeline(InputSpec("gray", resize=(40, 25)), (new_layer("Flatten"), a, b, small))
    path = tmp_path / "s-session.layerlab.json"
    folder = tmp_path / "s-session-tensors"
    writer = persistence.AutosaveWriter(path)
    writer.submit(stack)
    writer.flush()

    def named(arr):  # the file of a tensor: the sha256 of its float32 bytes
        return folder / (hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
                         + ".safetensors")

    wa, wb = a.params["weight"], b.params["weight"]
    assert sorted(folder.iterdir()) == sorted([named(wa), named(wb)])
    assert path.stat().st_size < 40_000  # the small Linear inline; 420 000 weights are not
    assert json.loads(path.read_text())["pipeline"]["layers"][3]["params"]["weight"] == \
        small.params["weight"].tolist()
    kept = named(wa).stat()

    edited = np.array(wb)
    edited[7, 11] = 0.5
    after = stack.replace_layer(2, b.with_param("weight", edited))
    writer.submit(after)
    writer.close()
    assert sorted(folder.iterdir()) == sorted([named(wa), named(edited)])  # the old b is gone
    again = named(wa).stat()
    assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # not rewritten

    restored = persistence.read_session(path, path.read_text())
    for mine, theirs in zip(restored.layers, after.layers, strict=True):
        assert mine.key == theirs.key and mine.name == theirs.name
    np.testing.assert_array_equal(restored.layers[2].params["weight"], edited)
    assert restored.input == after.input

    # A tensor file changed behind the session's back is refused, not used.
    raw = bytearray(named(edited).read_bytes())
    raw[-4:] = np.float32(9.0).tobytes()
    named(edited).write_bytes(bytes(raw))
    with pytest.raises(PipelineError, match="changed since it was saved"):
        persistence.read_session(path, path.read_text())
    named(edited).write_bytes(bytes(raw[:-1000]))  # cut short
    with pytest.raises(PipelineError, match="truncated or damaged"):
        persistence.read_session(path, path.read_text())

    # A stack without big tensors again: a plain pipeline file, and the folder is emptied.
    plain = Pipeline(InputSpec("gray"), (new_layer("ReLU"),))
    persistence.write_session(path, plain)
    assert path.read_text() == pipeline_json(plain) + "\n" and not list(folder.iterdir())

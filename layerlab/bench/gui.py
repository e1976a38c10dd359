"""``python -m layerlab.bench.gui N``: the window-level measurement of ``layerlab bench``,
in a process of its own (offscreen); prints the N latencies in ms as JSON."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, QEventLoop, QTimer

from ..core.engine import Engine
from ..qt.app import ensure_app, make_settings
from . import RESOURCES, four_stage_pipeline


def _wait_for_run(window, timeout_ms: int = 30000) -> None:
    """Spin the event loop until the newest run has finished and been shown."""
    if not window.runner.busy:
        return
    loop = QEventLoop()
    window.runner.busyChanged.connect(lambda busy: None if busy else loop.quit())
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def _wait_for_pixels(window, stage: int, timeout_ms: int = 30000) -> None:
    """Spin the event loop until the view shows ``stage`` of the newest run (its histogram
    and statistics may still be on their way: they follow the pictures)."""
    def shown() -> bool:
        view = window.session.results.get(stage)
        return view is not None and view.generation == window.runner.generation

    if shown():
        return
    loop = QEventLoop()

    def check(_index: int) -> None:
        if shown():
            loop.quit()

    window.session.stageChanged.connect(check)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    window.session.stageChanged.disconnect(check)


def _show_stage(window, stage: int, timeout_s: float = 30.0) -> None:
    """Select ``stage``, as a person does to watch it, and wait until it and the stage before
    it are drawn in full (the window draws only what it shows)."""
    window.session.select(stage=stage)
    deadline = time.perf_counter() + timeout_s

    def drawn(index: int) -> bool:
        view = window.session.results.get(index)
        return view is not None and view.full and view.rendered.has_stats

    while not (drawn(stage) and drawn(stage - 1) and not window.runner.busy):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"stage {stage} was not drawn in full")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)


def _expected_corner(window, layer_index: int) -> float:
    """Output (channel 0, y 1, x 1) of the edited conv, from torch directly."""
    import torch

    stage_in = window.session.results[layer_index].result.output[0].numpy()
    layer = window.session.pipeline.layers[layer_index]
    w = torch.from_numpy(np.array(layer.params["weight"]))
    b = Engine("cpu").build_module(layer).bias
    patch = torch.from_numpy(stage_in[:, 0:3, 0:3].copy())
    return float((patch * w[0]).sum() + b[0])


def gui_edit_latency(repeats: int) -> list[float]:
    """Milliseconds from a kernel-cell edit to the view holding the new pixels."""
    app = ensure_app()
    from ..qt.main_window import MainWindow
    from ..worker import RunController

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = four_stage_pipeline()
        path = Path(tmp) / "four-stage.layerlab.json"
        pipeline.save(path)
        # The runner as the app makes it (``run_app``): torch leaves a core for the GUI.
        window = MainWindow(make_settings(Path(tmp) / "settings"),
                            RunController(set_threads=True))
        window.resize(1366, 768)
        window.show()
        window.start(image=str(RESOURCES / "samples" / "astronaut.jpg"), pipeline=str(path))
        _wait_for_run(window)
        from ..core.render_cpu import compile_kernels

        compile_kernels(wait=True)  # started by the first run; a person's edits come later
        last = len(pipeline.layers) - 1
        _show_stage(window, len(pipeline.layers))  # the edited conv's output
        samples = []
        for k in range(repeats + 3):
            generation_before = window.runner.generation
            t = time.perf_counter()
            # What typing into kernel cell (0, 0, 1, 1) sends: the editor's intent.
            window.kernel_editor.cellEdited.emit(last, "weight", (0, 0, 1, 1), 0.01 * (k + 1))
            _wait_for_pixels(window, len(pipeline.layers))
            elapsed = (time.perf_counter() - t) * 1000
            view = window.session.results.get(len(pipeline.layers))
            if view is None or view.generation <= generation_before:
                raise RuntimeError("the edit did not reach the view")
            if not np.isclose(view.values[0, 1, 1], _expected_corner(window, last), atol=1e-5):
                raise RuntimeError("the view does not show the edited kernel's result")
            if k >= 3:  # the first edits warm up caches and allocators
                samples.append(elapsed)
        floor = edit_floor(window, last, repeats)
        window.close()
        app.processEvents()
    return samples, floor


def edit_floor(window, layer_index: int, repeats: int) -> list[float]:
    """The floor of the same edit, in milliseconds: plain torch recomputing only the edited
    conv (channels_last, inference mode) on the stage before it, then one pyqtgraph
    ``setImage`` (explicit levels) of the uint8 mosaic of its channels, as the view shows."""
    import pyqtgraph as pg
    import torch

    from ..core import render

    stage_in = window.session.results[layer_index].result.output[0].contiguous()
    x = stage_in.unsqueeze(0).contiguous(memory_format=torch.channels_last)
    conv = Engine("cpu").build_module(window.session.pipeline.layers[layer_index])
    item = pg.ImageItem(axisOrder="row-major")
    samples = []
    for k in range(repeats + 3):
        t = time.perf_counter()
        with torch.no_grad():
            conv.weight[0, 0, 1, 1] = 0.01 * (k + 1)
        with torch.inference_mode():
            y = conv(x)[0]
        grid = render.make_grid(render.to_uint8(y, "channel"))
        item.setImage(grid, levels=(0, 255), autoLevels=False)
        if k >= 3:
            samples.append((time.perf_counter() - t) * 1000)
    return samples


if __name__ == "__main__":
    edits, floor = gui_edit_latency(int(sys.argv[1]))
    print(json.dumps({"samples": edits, "floor": floor}))

"""Soak test: the real window under a long random stream of edits.

    python tests/soak.py --minutes 30 [--seed N] [--interval 10] [--show]

Opens the LayerLab window (offscreen unless ``--show``) with the sample photo and the default
stack, in throw-away settings, and edits it the way a busy person does, as fast as the event
loop allows: add, remove, reorder and toggle layers, change arguments, type kernel cells,
undo and redo, switch the input mode, the normalisation, the colormap, the histogram bins and
the stage shown, and now and then wait for the run to finish. Every ``--interval`` seconds it
prints a row: resident memory (raw, and after glibc's malloc_trim: what is in use), QObjects
under the window, Python and OS threads, edits, runs started, undo steps, layers.
At the end it checks the pictures against a fresh engine, closes the window (joining its
threads) and prints a verdict on memory and thread growth. Exit status 0 when nothing grew,
nothing raised and no Qt warning was printed; 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

# Soak samples settle after the first runs: growth is measured from this many seconds in.
WARM_UP_S = 20.0
MAX_LAYERS = 8
RSS_GROWTH_LIMIT_MB = 100.0
IGNORED_QT_WARNINGS = ("propagateSizeHints", "QFont::setPointSize")

ADDABLE = ("Conv2d", "Conv2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "MaxPool2d",
           "AvgPool2d", "BatchNorm2d", "ZeroPad2d", "GELU", "Dropout")
# (layer type, argument) -> values a person might pick; kept small so a run stays quick
ARG_CHOICES: dict[tuple[str, str], tuple] = {
    ("Conv2d", "kernel_size"): (1, 3, 5, [3, 1]),
    ("Conv2d", "padding"): (0, 1, 2),
    ("Conv2d", "stride"): (1, 2),
    ("Conv2d", "out_channels"): (1, 2, 4, 8),
    ("Conv2d", "dilation"): (1, 2),
    ("Conv2d", "bias"): (True, False),
    ("MaxPool2d", "kernel_size"): (1, 2, 3),
    ("MaxPool2d", "stride"): (None, 1, 2),
    ("MaxPool2d", "ceil_mode"): (True, False),
    ("AvgPool2d", "kernel_size"): (1, 2, 3),
    ("AvgPool2d", "padding"): (0, 1),
    ("LeakyReLU", "negative_slope"): (0.01, 0.1, 0.3),
    ("ZeroPad2d", "padding"): (0, 1, 3),
}


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def trimmed_rss_mb() -> float | None:
    """RSS after handing freed heap back to the OS (glibc ``malloc_trim``); None elsewhere.

    glibc keeps freed blocks in its arenas (the worker thread gets its own), so raw RSS rises
    with the largest stacks seen and never falls; after a trim it shows what is still in use.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return rss_mb()


def os_threads() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


@dataclass
class Sample:
    seconds: float
    rss_mb: float
    live_mb: float | None  # RSS after malloc_trim (what is really in use), where available
    qobjects: int
    py_threads: int
    os_threads: int
    edits: int
    runs: int
    undo: int
    layers: int


class Soak:
    def __init__(self, window, app, seed: int):
        self.w = window
        self.app = app
        self.rng = random.Random(seed)
        self.edits = 0
        self.action_counts: dict[str, int] = {}
        self.errors: list[str] = []

    # --- the random user ---
    def step(self) -> None:
        actions = [(self.add, 3), (self.remove, 2), (self.move, 2), (self.toggle, 1),
                   (self.arg, 6), (self.cell, 8), (self.undo, 3), (self.redo, 2),
                   (self.mode, 1), (self.render, 2), (self.select_stage, 2), (self.wait, 1)]
        action = self.rng.choices([a for a, _ in actions], [n for _, n in actions])[0]
        name = action.__name__
        try:
            action()
        except Exception as e:  # a soak reports what broke and carries on
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
        self.action_counts[name] = self.action_counts.get(name, 0) + 1
        self.edits += 1

    def _layers(self):
        return self.w.session.document.pipeline.layers

    def _pick(self) -> int | None:
        n = len(self._layers())
        if n == 0:
            return None
        i = self.rng.randrange(n)
        self.w.stack.select_layer(i)
        return i

    def add(self) -> None:
        if len(self._layers()) >= MAX_LAYERS:
            return self.remove()
        self._pick()
        self.w.controller.on_add_layer(self.rng.choice(ADDABLE))

    def remove(self) -> None:
        if len(self._layers()) > 1 and self._pick() is not None:
            self.w.controller.on_remove_layer()

    def move(self) -> None:
        if self._pick() is not None:
            self.w.controller.on_move_layer(self.rng.choice((-1, 1)))

    def toggle(self) -> None:
        if self._pick() is not None:
            self.w.controller.on_toggle_layer()

    def arg(self) -> None:
        i = self._pick()
        if i is None:
            return
        layer = self._layers()[i]
        options = [(a, v) for (t, a), v in ARG_CHOICES.items() if t == layer.type]
        if not options:
            return self.cell()
        name, values = self.rng.choice(options)
        self.w.session.document.set_arg(i, name, self.rng.choice(values))

    def cell(self) -> None:
        convs = [i for i, layer in enumerate(self._layers()) if layer.type == "Conv2d"]
        if not convs:
            return self.add()
        i = self.rng.choice(convs)
        self.w.stack.select_layer(i)
        editor = self.w.kernel_editor
        if editor.layer_index != i or not editor.cells:
            return
        y = self.rng.randrange(len(editor.cells))
        x = self.rng.randrange(len(editor.cells[y]))
        # a drag: a few values in a row on the same cell
        for _ in range(self.rng.randint(1, 6)):
            editor.set_cell(y, x, round(self.rng.uniform(-2, 2), 3))
            self.app.processEvents()

    def undo(self) -> None:
        self.w.session.document.undo_stack.undo()

    def redo(self) -> None:
        self.w.session.document.undo_stack.redo()

    def mode(self) -> None:
        box = self.w.mode_box
        box.setCurrentIndex(1 - box.currentIndex())
        box.activated.emit(box.currentIndex())

    def render(self) -> None:
        panel = self.w.stage_panel
        box = self.rng.choice((panel.controls.normalize_box, panel.controls.colormap_box, None))
        if box is None:
            panel.controls.bins_box.setValue(self.rng.choice((16, 32, 64, 128, 256)))
        else:
            box.setCurrentIndex(self.rng.randrange(box.count()))

    def select_stage(self) -> None:
        stages = len(self.w.session.document.pipeline.enabled_layers()) + 1
        self.w.session.select(stage=self.rng.randrange(stages))

    def wait(self) -> None:
        self.wait_idle(10.0)

    def spin(self, seconds: float) -> None:
        """Run the event loop for a while (timers fire, deferred deletes happen)."""
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def wait_idle(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.w.runner.busy and time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.002)
        self.app.processEvents()
        return not self.w.runner.busy

    # --- checking ---
    def sample(self, t0: float) -> Sample:
        w = self.w
        from PySide6.QtCore import QObject

        raw = rss_mb()
        return Sample(time.monotonic() - t0, raw, trimmed_rss_mb(),
                      len(w.findChildren(QObject)), threading.active_count(), os_threads(),
                      self.edits, w.runner.runs_started, w.session.document.undo_stack.count(),
                      len(w.session.document.pipeline.layers))

    def final_check(self) -> str:
        """Do the pictures equal a fresh engine's run of the document's pipeline?"""
        import numpy as np

        from layerlab.core.engine import Engine
        from layerlab.core.imageio import to_tensor

        w = self.w
        for _ in range(100):  # until edits still on their way (editor timers) have landed
            if not self.wait_idle(60.0):
                return "the last run did not finish within 60 s"
            generation = w.runner.generation
            self.spin(0.2)
            if not w.runner.busy and w.runner.generation == generation:
                break
        if w.session.validation is None or not w.session.validation.ok:  # shown as such; nothing to compare
            return f"ok (the final stack has an error: {w.session.validation.error if w.session.validation else ''})"
        w.controller.on_run_or_stop()  # a fresh run of the current stack, so the comparison is current
        if not self.wait_idle(60.0):
            return "the last run did not finish within 60 s"
        stale = [i for i, v in w.session.results.items() if v.generation != w.runner.generation]
        if stale:
            return f"stages {stale} are not from the last run"
        x = to_tensor(w.session.preview.image, w.session.document.pipeline.input.mode)
        results = Engine(w.session.device).run_all(w.session.document.pipeline, x)
        for r in results:
            view = w.session.results.get(r.index)
            if view is None:
                return f"stage {r.index} is missing"
            if r.error or view.result.error:
                if r.error != view.result.error:
                    return f"stage {r.index}: error {view.result.error!r} != {r.error!r}"
                continue
            want = r.output[0].cpu().numpy()
            # the stage tensor the worker kept and drew (in full or as a thumbnail)
            got = None if view.result.output is None else view.result.output[0].cpu().numpy()
            if got is None or got.shape != want.shape:
                return f"stage {r.index} ({r.name}) is missing or has another shape"
            if not np.allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True):
                both = np.isfinite(got) & np.isfinite(want)
                diff = float(np.abs(got - want)[both].max(initial=0))
                nan = int((np.isnan(got) != np.isnan(want)).sum())
                return (f"stage {r.index} ({r.name}) differs from a fresh engine by up to "
                        f"{diff:.3g} (values up to {float(np.abs(want[both]).max(initial=0)):.3g}"
                        f"; {nan} NaN mismatches)")
        return "ok"


def _slope(samples: list[Sample], attr: str) -> float:
    """Least-squares growth per minute of ``attr`` over ``samples``."""
    if len(samples) < 2:
        return 0.0
    xs = [s.seconds / 60 for s in samples]
    ys = [getattr(s, attr) for s in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/soak.py",
                                     description="Random edits in the real window for a while; "
                                                 "memory and thread counts sampled.")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--edits", type=int, default=None,
                        help="stop after this many edits (with --seed: a repeatable sequence)")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="seconds between samples (default 10)")
    parser.add_argument("--show", action="store_true",
                        help="show the window on the screen instead of offscreen")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device the window runs on (default: its usual choice)")
    args = parser.parse_args(argv)
    if not args.show:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from PySide6.QtCore import QEventLoop, QTimer, QtMsgType, qInstallMessageHandler

    from layerlab.qt.app import ensure_app, make_settings
    from layerlab.qt.main_window import MainWindow
    from layerlab.worker import RunController, configure_threads

    qt_warnings: list[str] = []

    def on_message(kind, _context, text: str) -> None:
        if kind != QtMsgType.QtDebugMsg and not any(s in text for s in IGNORED_QT_WARNINGS):
            qt_warnings.append(text)
            print(f"Qt: {text}", file=sys.stderr)

    hook_errors: list[str] = []
    previous_hook = sys.excepthook

    def on_exception(kind, value, tb) -> None:  # exceptions raised inside Qt slots
        hook_errors.append(f"{kind.__name__}: {value}")
        previous_hook(kind, value, tb)

    previous_handler = qInstallMessageHandler(on_message)
    sys.excepthook = on_exception
    app = ensure_app()
    configure_threads()
    settings_dir = tempfile.mkdtemp(prefix="layerlab-soak-")
    settings = make_settings(settings_dir)
    if args.device:
        settings.setValue("prefs/device", args.device)
    window = MainWindow(settings, RunController())
    window.resize(1280, 760)
    window.show()
    window.start()
    soak = Soak(window, app, args.seed)
    soak.wait_idle(60.0)

    print(f"soak: {args.minutes:g} min, seed {args.seed}, device {window.session.device}, "
          f"{'on screen' if args.show else 'offscreen'}; a sample every {args.interval:g} s")
    header = (f"{'time':>7} {'RSS MB':>8} {'in use':>8} {'QObjects':>8} {'py thr':>6} "
              f"{'OS thr':>6} {'edits':>7} {'runs':>6} {'undo':>5} {'layers':>6}")
    print(header)
    print("-" * len(header))

    def show(s: Sample) -> None:
        live = f"{s.live_mb:8.1f}" if s.live_mb is not None else f"{'-':>8}"
        print(f"{s.seconds:7.0f} {s.rss_mb:8.1f} {live} {s.qobjects:8d} {s.py_threads:6d} "
              f"{s.os_threads:6d} {s.edits:7d} {s.runs:6d} {s.undo:5d} {s.layers:6d}",
              flush=True)

    t0 = time.monotonic()
    samples = [soak.sample(t0)]
    show(samples[0])
    deadline = t0 + args.minutes * 60
    next_sample = [t0 + args.interval]

    def tick() -> None:
        now = time.monotonic()
        if now >= deadline or (args.edits is not None and soak.edits >= args.edits):
            timer.stop()
            loop.quit()
            return
        soak.step()
        if now >= next_sample[0]:
            samples.append(soak.sample(t0))
            show(samples[-1])
            next_sample[0] += args.interval

    # The edits run inside a real event loop, one per turn, as a person's do: widgets the
    # window replaces are only deleted (deleteLater) when control returns to a running loop.
    # A local loop, not app.exec(): quitting the application would close the window.
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(tick)
    timer.start()
    loop.exec()
    verdict = soak.final_check()
    samples.append(soak.sample(t0))
    show(samples[-1])

    worker = window.runner._thread
    window.close()
    app.processEvents()
    joined = worker is None or worker.isFinished()
    shutil.rmtree(settings_dir, ignore_errors=True)
    sys.excepthook = previous_hook
    qInstallMessageHandler(previous_handler)

    # --- verdict ---
    warm = [s for s in samples if s.seconds >= min(WARM_UP_S, samples[-1].seconds / 2)]
    base = warm[0] if warm else samples[0]
    last = samples[-1]
    # Judge what is in use (after a trim) where it can be measured, else the raw RSS.
    measure = "live_mb" if last.live_mb is not None else "rss_mb"
    growth = getattr(last, measure) - getattr(base, measure)
    peak = max(s.rss_mb for s in samples)
    slope = _slope(warm, measure)
    qobject_growth = last.qobjects - base.qobjects
    thread_growth = last.os_threads - base.os_threads
    py_thread_growth = last.py_threads - base.py_threads
    minutes = last.seconds / 60
    print()
    print(f"edits {last.edits} ({last.edits / max(last.seconds, 1e-9):.0f}/s), runs started "
          f"{last.runs} ({last.runs / max(last.edits, 1):.2f} per edit); actions: "
          + ", ".join(f"{k} {v}" for k, v in sorted(soak.action_counts.items())))
    print(f"RSS: start {samples[0].rss_mb:.1f} MB, after warm-up {base.rss_mb:.1f} MB, end "
          f"{last.rss_mb:.1f} MB, peak {peak:.1f} MB (raw, {last.rss_mb - base.rss_mb:+.1f} "
          f"MB after warm-up)")
    if measure == "live_mb":
        print(f"in use (RSS after malloc_trim): after warm-up {base.live_mb:.1f} MB, end "
              f"{last.live_mb:.1f} MB: {growth:+.1f} MB over "
              f"{minutes - base.seconds / 60:.1f} min (trend {slope:+.2f} MB/min)")
    print(f"QObjects under the window: {base.qobjects} -> {last.qobjects}")
    print(f"threads: Python {base.py_threads} -> {last.py_threads}, OS {base.os_threads} -> "
          f"{last.os_threads}; worker joined on close: {'yes' if joined else 'NO'}")
    print(f"final pictures vs a fresh engine: {verdict}")
    problems = []
    if growth > RSS_GROWTH_LIMIT_MB:
        problems.append(f"memory grew {growth:.0f} MB after warm-up")
    if qobject_growth > 500:
        problems.append(f"{qobject_growth} more QObjects under the window")
    if thread_growth > 0 or py_thread_growth > 0:
        problems.append(f"threads grew (OS {thread_growth:+d}, Python {py_thread_growth:+d})")
    if not joined:
        problems.append("the worker thread was still running after close")
    if not verdict.startswith("ok"):
        problems.append(f"final check: {verdict}")
    errors = soak.errors + hook_errors
    if errors:
        problems.append(f"{len(errors)} exception(s), first: {errors[0]}")
    if qt_warnings:
        problems.append(f"{len(qt_warnings)} Qt warning(s), first: {qt_warnings[0]}")
    what = "in use" if measure == "live_mb" else "RSS"
    print("verdict: " + (f"OK - memory {what} {growth:+.0f} MB after warm-up (limit "
                         f"{RSS_GROWTH_LIMIT_MB:.0f}), threads flat, no errors, no Qt warnings"
                         if not problems else "PROBLEMS - " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())

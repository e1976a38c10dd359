"""Start the LayerLab window: ``run_app()`` is what the ``layerlab`` command calls.

Environment hooks (used by the benchmark and by scripts):

``LAYERLAB_SETTINGS_DIR``
    keep settings in ``<dir>/layerlab.ini`` instead of the user's settings;
``LAYERLAB_EXIT_AFTER_FIRST_RESULT``
    print ``window-shown <unix time>`` when the window is first painted, close the window as
    soon as the first run has finished and print ``first-result <unix time>`` (start-up
    timing).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import QApplication

ORGANIZATION = "LayerLab"
APPLICATION = "LayerLab"
GC_RESUME_MS = 60000  # the collector comes back by then even if no run ever finishes


def make_settings(directory: str | os.PathLike[str] | None = None) -> QSettings:
    """Settings in ``directory`` (an INI file) or, by default, the platform's usual place."""
    directory = directory or os.environ.get("LAYERLAB_SETTINGS_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(directory) / "layerlab.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION,
                     APPLICATION)


def ensure_app(argv: list[str] | None = None) -> QApplication:
    # Wayland and X11 desktops match the window to resources/linux/layerlab.desktop by this.
    QGuiApplication.setDesktopFileName("layerlab")
    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName(ORGANIZATION)
        QCoreApplication.setApplicationName(APPLICATION)
        app = QApplication(argv if argv is not None else [sys.argv[0]])
        app.setStyle("Fusion")
    from .files import ICON

    if ICON.exists():
        app.setWindowIcon(QIcon(str(ICON)))
    return app  # type: ignore[return-value]


def plain_imports() -> None:
    """Give the process Python's own ``import`` back from PySide6's.

    PySide6 wraps ``builtins.__import__`` for its opt-in ``from __feature__ import
    snake_case``; the wrapper reads the source of every module imported after it (to see
    whether it mentions PySide6), which makes torch's import about a fifth slower. LayerLab
    selects no such feature. The wrapper's own inner import (PySide6's lazy classes) stays.
    """
    import builtins

    inner = getattr(builtins, "__orig_import__", None)
    if inner is not None and builtins.__import__ is getattr(builtins, "__feature_import__", None):
        builtins.__import__ = inner


def resume_gc_after_first_run(runner) -> None:
    """Turn Python's cycle collector back on once ``runner`` has finished its first run.

    The app starts with it off: the start (PySide6, pyqtgraph, torch's import in the worker)
    makes a great many long-lived objects and little cyclic garbage, and the collector's
    repeated passes over them took about a tenth of the time to the first feature maps. One
    full pass, after the first maps are shown, frees that garbage and files the rest away as
    old, so the collector's later passes stay short.
    """
    runner.runFinished.connect(lambda _summary: QTimer.singleShot(0, _resume_gc),
                               Qt.ConnectionType.SingleShotConnection)
    QTimer.singleShot(GC_RESUME_MS, _resume_gc)


def _resume_gc() -> None:
    if not gc.isenabled():
        gc.enable()
        gc.collect()


def run_app(image: str | None = None, pipeline: str | None = None) -> int:
    """Open the window (with ``image`` and ``pipeline`` if given) and run the event loop."""
    plain_imports()
    gc.disable()  # until the first run has finished (resume_gc_after_first_run)
    app = ensure_app()
    from ..worker import RunController
    from .main_window import MainWindow

    window = MainWindow(make_settings(), RunController(set_threads=True))
    resume_gc_after_first_run(window.runner)
    if os.environ.get("LAYERLAB_EXIT_AFTER_FIRST_RESULT"):
        def first_result(_summary: object) -> None:
            print(f"first-result {time.time():.6f}", flush=True)
            QTimer.singleShot(0, window.close)

        window.runner.runFinished.connect(first_result)
        window.installEventFilter(_FirstPaint(window))
    window.show()
    window.start(image=image, pipeline=pipeline)
    return int(app.exec())


class _FirstPaint(QObject):
    """Prints ``window-shown <unix time>`` at the window's first paint, then removes itself."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint:
            print(f"window-shown {time.time():.6f}", flush=True)
            obj.removeEventFilter(self)
        return False


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(run_app(*(sys.argv[1:3])))

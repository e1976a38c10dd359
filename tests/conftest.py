"""Shared fixtures. GUI tests run offscreen and never touch the user's settings."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from PIL import Image  # noqa: E402

# Property tests draw the same examples on every run, so CI cannot flake on an unlucky draw;
# LAYERLAB_HYPOTHESIS=explore draws fresh ones for hunting new bugs by hand.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("LAYERLAB_HYPOTHESIS", "repeatable"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_qt_settings(tmp_path_factory):
    """Any QSettings() made without a path lands in a temporary folder, not the user's."""
    try:
        from PySide6.QtCore import QCoreApplication, QSettings
    except ImportError:  # headless-only environments: nothing to isolate
        yield
        return
    root = tmp_path_factory.mktemp("qsettings")
    QCoreApplication.setOrganizationName("LayerLab-tests")
    QCoreApplication.setApplicationName("LayerLab-tests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(root))
        QSettings.setPath(QSettings.Format.NativeFormat, scope, str(root))
    yield


@pytest.fixture
def settings(tmp_path):
    """A fresh settings file for one window (pass the same object to restart with it)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "layerlab-settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_window(qtbot, tmp_path):  # (tmp_path: removed only after the windows close and save)
    """Factory: ``make_window(settings)`` opens a started window and waits for its first run."""
    from layerlab.qt.main_window import MainWindow
    from layerlab.worker import RunController

    windows = []

    def make(settings, *, image=None, pipeline=None, wait=True):
        window = MainWindow(settings, RunController(synchronous=False))
        qtbot.addWidget(window)
        window.resize(1280, 760)
        window.show()
        window.start(image=image, pipeline=pipeline)
        if wait:
            qtbot.waitUntil(lambda: bool(window.session.results) and not window.runner.busy,
                            timeout=30000)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def main_window(make_window, settings):
    """The window as a person first sees it: the sample photo through the default stack."""
    return make_window(settings)


@pytest.fixture
def photo(tmp_path) -> Path:
    """A small RGB photo-like PNG (smooth gradients and an edge), 64 x 48."""
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.uint8)
    rgb[20:30, 10:40] = 255
    path = tmp_path / "photo.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path


def pytest_collection_modifyitems(config, items):
    # The offscreen platform cannot apply a window's minimum size and says so each time a
    # layout changes one; real platforms (and xvfb) do not warn. Every other Qt warning
    # still fails the test.
    ignore = pytest.mark.qt_log_ignore(r"^This plugin does not support propagateSizeHints\(\)")
    for item in items:
        item.add_marker(ignore)

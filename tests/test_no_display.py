"""`layerlab` without a display: one clear line and status 2 instead of Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerlab.cli import no_display

ROOT = Path(__file__).resolve().parent.parent

MESSAGE = ("layerlab: error: cannot open the window: there is no display (DISPLAY and "
           "WAYLAND_DISPLAY are not set); the headless commands export, code, info and bench "
           "work without one (see 'layerlab --help')\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland systems")
def test_no_display_is_one_line_and_status_2(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH")}
    env["PYTHONPATH"] = str(ROOT)
    env["LAYERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    proc = subprocess.run([sys.executable, "-m", "layerlab"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", MESSAGE)
    assert not (tmp_path / "settings").exists()  # refused before Qt started


def test_which_environments_have_a_display():
    linux = "linux"
    assert no_display({}, linux) == ("there is no display (DISPLAY and WAYLAND_DISPLAY are "
                                     "not set)")
    assert no_display({"DISPLAY": ":0"}, linux) is None
    assert no_display({"WAYLAND_DISPLAY": "wayland-0"}, linux) is None
    assert no_display({"QT_QPA_PLATFORM": "offscreen"}, linux) is None
    assert no_display({"QT_QPA_PLATFORM": "vnc:size=800x600"}, linux) is None
    assert no_display({"QT_QPA_PLATFORM": "xcb"}, linux) == ("there is no display (DISPLAY is "
                                                             "not set)")
    assert no_display({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "w"}, linux) is not None
    assert no_display({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":1"}, linux) is None
    assert no_display({}, "win32") is None and no_display({}, "darwin") is None

"""What a desktop and a packager see: the .desktop entry, the icon, one version, the licence."""

from __future__ import annotations

import configparser
import subprocess
import sys
import tomllib
from pathlib import Path

from layerlab import __version__, cli

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_desktop_entry_starts_the_gui_script_with_the_shipped_icon():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(ROOT / "resources" / "linux" / "layerlab.desktop", encoding="utf-8")
    d = entry["Desktop Entry"]
    assert d["Type"] == "Application" and d["Name"] == "LayerLab"
    assert d["Terminal"] == "false" and d["Categories"].endswith(";")
    command = d["Exec"].split()[0]
    assert command in PYPROJECT["project"]["gui-scripts"]
    assert d["TryExec"] == command
    # Icon is a theme name: the SVG installed as hicolor/scalable/apps/layerlab.svg
    assert d["Icon"] == "layerlab"
    svg = (ROOT / "resources" / "icons" / "layerlab.svg").read_text("utf-8")
    assert "<svg" in svg
    assert d["StartupWMClass"] == "layerlab"
    assert "layerlab.resources" in PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "linux/*" in PYPROJECT["tool"]["setuptools"]["package-data"]["layerlab.resources"]


def test_the_version_is_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "layerlab.__version__"}
    proc = subprocess.run([sys.executable, "-m", "layerlab", "--version"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert (proc.returncode, proc.stdout) == (0, f"layerlab {__version__}\n")


def test_gui_entry_point_always_opens_the_window(monkeypatch):
    scripts = PYPROJECT["project"]
    assert scripts["scripts"]["layerlab"] == "layerlab.cli:main"
    assert scripts["gui-scripts"]["layerlab-gui"] == "layerlab.cli:gui_main"
    seen = []
    monkeypatch.setattr(cli, "_cmd_window", lambda argv: seen.append(list(argv)) or 0)
    monkeypatch.setattr(sys, "argv", ["layerlab-gui", "export"])
    assert cli.gui_main() == 0
    assert seen == [["export"]]  # an image called "export", not the sub-command


def test_licence_is_mit_as_pyproject_says():
    assert PYPROJECT["project"]["license"] == {"text": "MIT"}
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert text.startswith("MIT License\n") and "THE SOFTWARE IS PROVIDED \"AS IS\"" in text


def test_the_application_names_its_desktop_file(qapp):
    from PySide6.QtGui import QGuiApplication

    from layerlab.qt.app import ensure_app

    ensure_app()
    assert QGuiApplication.desktopFileName() == "layerlab"

"""The files that ship with LayerLab: sample photos, example pipelines, the icon.

In an installed LayerLab they are the package data of ``layerlab.resources`` (pyproject maps
the top-level ``resources/`` folder onto that package, so a wheel carries them); in a source
checkout run without installing, they are that folder beside the package. Wheels install
unzipped, so the files are plain paths either way.
"""

from __future__ import annotations

from importlib import resources as _resources
from pathlib import Path

__all__ = ["example_pipeline", "example_pipelines", "icon", "root", "sample", "samples"]


def root() -> Path:
    """The resources folder (with ``samples/``, ``pipelines/`` and ``icons/``)."""
    try:
        return Path(str(_resources.files("layerlab.resources")))
    except ModuleNotFoundError:  # a checkout on sys.path, not installed
        return Path(__file__).resolve().parents[2] / "resources"


def _named(folder: str, name: str) -> Path:
    path = root() / folder / name
    if not path.is_file():
        have = ", ".join(p.name for p in _listing(folder)) or "none"
        raise FileNotFoundError(f"no bundled {folder[:-1]} {name!r} (available: {have})")
    return path


def _listing(folder: str, pattern: str = "*") -> list[Path]:
    return sorted(p for p in (root() / folder).glob(pattern) if p.is_file())


def sample(name: str) -> Path:
    """A bundled sample image, e.g. ``sample("camera.png")``."""
    return _named("samples", name)


def samples() -> list[Path]:
    return [p for p in _listing("samples") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]


def example_pipeline(name: str) -> Path:
    """A bundled pipeline by file name or stem (``"conv-sharpen-gray"``)."""
    if not name.endswith(".json"):
        name += ".layerlab.json"
    return _named("pipelines", name)


def example_pipelines() -> list[Path]:
    return _listing("pipelines", "*.layerlab.json")


def icon(name: str = "layerlab.png") -> Path:
    return _named("icons", name)

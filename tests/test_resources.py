"""The bundled files, found through layerlab.core.resources (checkout or installed)."""

from __future__ import annotations

import pytest

from layerlab.bench import RESOURCES
from layerlab.core import resources
from layerlab.core.imageio import load_image
from layerlab.core.pipeline import Pipeline


def test_bundled_files_are_found_and_readable():
    assert resources.sample("camera.png").is_file()
    assert load_image(resources.sample("camera.png")).size == (512, 512)
    names = [p.name for p in resources.example_pipelines()]
    assert "conv-sharpen-gray.layerlab.json" in names and "cifar10-tutorial.layerlab.json" in names
    for path in resources.example_pipelines():
        Pipeline.load(path)  # every example opens
    assert resources.example_pipeline("conv-sharpen-gray") == resources.example_pipeline(
        "conv-sharpen-gray.layerlab.json")
    assert resources.icon().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in resources.samples()} == {"astronaut.jpg", "camera.png", "digit-7.png",
                                                     "chelsea.jpg"}
    assert RESOURCES == resources.root()


def test_a_missing_file_names_what_there_is():
    with pytest.raises(FileNotFoundError,
                       match=r"no bundled sample 'nope.png' \(available: .*camera.png"):
        resources.sample("nope.png")

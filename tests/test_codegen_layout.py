"""The generated script reads network first: build_model, then main, then the image loader;
it imports nothing it does not use (resize only when the pipeline resizes)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from layerlab.core.codegen import generate_script
from layerlab.core.pipeline import Pipeline

PIPELINES = Path(__file__).resolve().parent.parent / "resources" / "pipelines"
EXAMPLES = sorted(PIPELINES.glob("*.layerlab.json"))


def _unused_imports(src: str) -> set[str]:
    tree = ast.parse(src)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {a.asname or a.name for a in node.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return imported - used


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_every_import_is_used(path):
    pipeline = Pipeline.load(path)
    src = generate_script(pipeline)
    assert _unused_imports(src) == set()
    has_resize = "from torchvision.transforms.functional import resize" in src
    assert has_resize == bool(pipeline.input.resize)


def test_the_network_comes_before_the_loader():
    src = generate_script(Pipeline.load(PIPELINES / "conv-sharpen-gray.layerlab.json"))
    tree = ast.parse(src)
    defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert defs == ["build_model", "main", "load_image", "to_8bit"]
    assert src.rstrip().endswith('if __name__ == "__main__":\n    sys.exit(main())')

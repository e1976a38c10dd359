"""The layering rule: layerlab.core and the headless commands never import Qt."""

import ast
import subprocess
import sys
from pathlib import Path

import layerlab

PACKAGE = Path(layerlab.__file__).resolve().parent
QT_MODULES = ("PySide6", "pyqtgraph", "superqt", "qtpy")


def test_core_sources_have_no_qt_imports():
    offenders = []
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in QT_MODULES]
    assert offenders == []


def test_importing_core_cli_and_bench_loads_no_qt():
    core = sorted(p.stem for p in (PACKAGE / "core").glob("*.py") if p.stem != "__init__")
    assert {"engine", "pipeline", "specs", "kernels"} <= set(core)
    imports = "; ".join(f"import layerlab.core.{m}" for m in core)
    code = (f"import sys; {imports}; import layerlab.cli, layerlab.bench; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]; "
            f"print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

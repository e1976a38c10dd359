"""The wheel carries everything LayerLab needs: built, installed into a fresh environment (not
editable) and run from a folder outside the checkout, it exports the bundled sample with a
bundled pipeline exactly as the checkout does.

About 15 s; runs by default (marker ``wheel``, deselect with ``-m "not wheel"``).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from layerlab import __version__
from layerlab.core.export import export_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE, PIPELINE = "camera.png", "conv-sharpen-gray.layerlab.json"

pytestmark = pytest.mark.wheel


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 300) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:3]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, layerlab command, environment, a working folder) of a fresh venv with the
    wheel installed; dependencies come from this interpreter through a .pth file."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy, so the checkout gets no build/ or egg-info folders.
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("layerlab", "resources"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", tmp / "dist", src], tmp, env)
    (wheel,) = (tmp / "dist").glob("layerlab-*.whl")

    env_dir = tmp / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], tmp, env).strip())
    (purelib / "_layerlab_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps",
          "--no-index", "-q", wheel], tmp, env)
    work = tmp / "elsewhere"
    work.mkdir()
    return python, bindir / "layerlab", env, work, wheel, purelib


def test_the_wheel_ships_every_module_and_resource(installed):
    *_, wheel, _purelib = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "layerlab").rglob("*.py")}
    assert modules <= names, f"not in the wheel: {sorted(modules - names)}"
    data = {f"layerlab/resources/{p.relative_to(ROOT / 'resources').as_posix()}"
            for p in (ROOT / "resources").rglob("*") if p.is_file() and p.suffix != ".pyc"
            and "__pycache__" not in p.parts}
    assert data <= names, f"not in the wheel: {sorted(data - names)}"


def test_installed_export_equals_the_checkout(installed, tmp_path):
    python, layerlab, env, work, _wheel, purelib = installed
    where = _run([python, "-c", "import layerlab; from layerlab.core import resources as r; "
                  f"print(layerlab.__file__); print(r.sample({SAMPLE!r})); "
                  f"print(r.example_pipeline({PIPELINE!r}))"], work, env).splitlines()
    package, sample, pipeline = (Path(p) for p in where)
    for p in (package, sample, pipeline):  # the installed copies, not the checkout's
        assert p.is_relative_to(purelib), p
    _run([layerlab, "export", sample, "--pipeline", pipeline, "--out", "out", "--raw",
          "--device", "cpu", "-q"], work, env)
    ref = tmp_path / "ref"
    export_run(ROOT / "resources" / "samples" / SAMPLE,
               ROOT / "resources" / "pipelines" / PIPELINE, ref, device="cpu", raw=True)
    got = json.loads((work / "out" / "manifest.json").read_text())
    want = json.loads((ref / "manifest.json").read_text())
    assert Path(got.pop("image")) == sample and Path(want.pop("image")).name == SAMPLE
    assert got == want
    files = sorted(p.relative_to(ref) for p in ref.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(work / "out") for p in (work / "out").rglob("*")
                           if p.is_file())
    for rel in files:
        if rel.name != "manifest.json":
            assert (work / "out" / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_installed_bench_runs(installed):
    _python, layerlab, env, work, *_ = installed
    out = _run([layerlab, "bench", "--quick", "--only", "seed-sharpen-512", "--json"], work,
               env)
    (row,) = json.loads(out)["scenarios"]
    assert row["name"] == "seed-sharpen-512" and row["layerlab_ms"] > 0
    assert row["max_abs_diff"] == 0.0  # the installed engine gives torch's numbers exactly


def test_the_wheel_carries_the_version_the_licence_and_both_commands(installed):
    python, layerlab, env, work, wheel, _purelib = installed
    zf = zipfile.ZipFile(wheel)
    info = f"layerlab-{__version__}.dist-info"
    metadata = zf.read(f"{info}/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    assert any(n.startswith(f"{info}/") and n.endswith("LICENSE") for n in zf.namelist())
    entry_points = zf.read(f"{info}/entry_points.txt").decode()
    assert "[console_scripts]\nlayerlab = layerlab.cli:main" in entry_points
    assert "[gui_scripts]\nlayerlab-gui = layerlab.cli:gui_main" in entry_points
    assert "layerlab/resources/linux/layerlab.desktop" in zf.namelist()
    assert _run([layerlab, "--version"], work, env) == f"layerlab {__version__}\n"
    assert (layerlab.parent / "layerlab-gui").exists() or os.name == "nt"

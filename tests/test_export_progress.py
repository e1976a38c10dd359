"""`layerlab export` progress: one callback per file written, a tqdm bar with an ETA on a
terminal (or with --progress), nothing when stderr is not a terminal, nothing with --quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerlab.core.export import export_run

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / "resources" / "samples" / "camera.png"
EDGES = ROOT / "resources" / "pipelines" / "edge-detection.layerlab.json"


def test_file_progress_counts_every_file_once(tmp_path):
    calls = []
    out = tmp_path / "out"
    export_run(CAMERA, EDGES, out, device="cpu", raw=True, histograms=True,
               file_progress=lambda done, total, path: calls.append((done, total, path)))
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(c[2] for c in calls) == written
    assert [c[0] for c in calls] == list(range(1, len(written) + 1))
    assert {c[1] for c in calls} == {len(written)}  # the total is known from the start
    assert calls[-1][2] == "manifest.json"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TQDM_DISABLE", None)
    return env


def _export(tmp_path: Path, *extra: str, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layerlab", "export", str(CAMERA), "--pipeline",
                           str(EDGES), "--out", str(tmp_path / "out"), "--device", "cpu",
                           *extra], stdout=subprocess.PIPE, stderr=stderr, text=True,
                          env=_env(), timeout=240)


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    proc = _export(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("wrote 4 stages (11 files and manifest.json)")


def test_progress_forces_the_bar_and_quiet_silences_it(tmp_path):
    proc = _export(tmp_path, "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "12/12" in proc.stderr and "file/s" in proc.stderr  # per file, with the rate
    # labelled with the stage being written (redrawn at most every 0.2 s), then the summary
    assert "stage 0 of 3: input" in proc.stderr and "wrote 4 stages in" in proc.stderr
    proc = _export(tmp_path, "--progress", "--quiet", "--overwrite")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a pseudo-terminal")
def test_bar_with_eta_on_a_terminal(tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc = _export(tmp_path, stderr=follower)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the other end is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert "12/12" in text and "<" in text  # tqdm's [elapsed<remaining, rate]

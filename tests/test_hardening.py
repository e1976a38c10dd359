"""Hardening of the headless commands and the core loaders they share with the window:
dangerous output folders, special files (FIFOs, devices), temporary files, signals, huge
numbers, control characters, long names and full disks, odd images, bench arguments and
messages. Every failure is one line on stderr, exit status 2, and nothing written.

Nothing here writes to a device: FIFOs are made in temporary folders, /dev/zero and
/dev/urandom are only read, and /dev/full is only ever a subprocess's standard output."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from layerlab import cli
from layerlab.core import imageio, safeio
from layerlab.core.export import export_run, npy_chunks
from layerlab.core.imageio import ImageLoadError, load_image
from layerlab.core.pipeline import Pipeline, PipelineError

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = ROOT / "resources" / "pipelines"
SHARPEN = PIPELINES / "conv-sharpen-gray.layerlab.json"
DEFAULT = PIPELINES / "sharpen-relu-maxpool.layerlab.json"
TIMEOUT = 120  # a regression fails instead of hanging


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> None:
    assert rc == 2, err
    assert out == ""
    assert err.startswith("layerlab: error: ") and err.endswith("\n") and err.count("\n") == 1
    for n in needles:
        assert n in err, err


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def doc(*layers, mode: str = "gray") -> dict:
    return {"format": "layerlab.pipeline", "version": 1, "input": {"mode": mode},
            "layers": list(layers)}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def tiny_image(path: Path, size=(6, 4)) -> Path:
    Image.new("L", size, 128).save(path)
    return path


def layerlab(*argv, timeout=TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """``python -m layerlab ARGV`` in a subprocess (text mode unless told otherwise)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kw.setdefault("capture_output", "stdout" not in kw)
    if "stdout" in kw:
        kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "layerlab", *map(str, argv)], env=env,
                          text=True, timeout=timeout, **kw)


# --- 1. data loss: dangerous --out, --overwrite, code -o over its input ---------------------

@pytest.mark.parametrize("where", ["empty", "dot", "dot-slash", "up-and-back", "cwd-absolute",
                                   "parent-of-image", "parent-of-pipeline", "home",
                                   "above-home", "root"])
def test_a_dangerous_out_is_refused_even_with_overwrite(where, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    image = tiny_image(work / "sub" / "tiny.png")
    pipe = work / "stack.layerlab.json"
    pipe.write_text(SHARPEN.read_text())
    (work / "precious.txt").write_text("keep me")
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    out, words = {
        "empty": ("", "the export folder name (--out) is empty"),
        "dot": (".", "it is the current folder"),
        "dot-slash": ("./", "it is the current folder"),
        "up-and-back": ("sub/..", "it is the current folder"),
        "cwd-absolute": (str(work), "it is the current folder"),
        "parent-of-image": ("sub", "the folder holding tiny.png"),
        "parent-of-pipeline": (str(tmp_path), "a folder above the current folder"),
        "home": (str(home), "it is the home folder"),
        "above-home": (str(home.parent), "a folder above the home folder"),
        "root": ("/", "it is the root folder"),
    }[where]
    before = listing(tmp_path)
    rc, stdout, err = run(capsys, "export", image, "--pipeline", pipe, "--out", out,
                          "--overwrite")
    assert_one_line_error(rc, stdout, err, words)
    assert listing(tmp_path) == before
    assert (work / "precious.txt").read_text() == "keep me"


def test_out_holding_the_pipeline_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    pipe = box / "stack.layerlab.json"
    pipe.write_text(SHARPEN.read_text())
    image = tiny_image(tmp_path / "tiny.png")
    rc, out, err = run(capsys, "export", image, "--pipeline", pipe, "--out", box, "--overwrite")
    assert_one_line_error(rc, out, err, "refusing to export into", "stack.layerlab.json")
    assert pipe.read_text() == SHARPEN.read_text()


def test_overwrite_replaces_only_a_folder_layerlab_exported(tmp_path, capsys):
    image = tiny_image(tmp_path / "tiny.png")
    export = tmp_path / "export"
    assert run(capsys, "export", image, "--pipeline", SHARPEN, "--out", export,
               "--quiet")[0] == 0
    first = listing(export)

    (export / "notes.txt").write_text("mine")  # the user adds a file: no longer replaceable
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out", export,
                       "--overwrite")
    assert_one_line_error(rc, out, err, "--overwrite replaces only a folder LayerLab exported",
                          "it also holds 'notes.txt', which LayerLab did not write")
    assert (export / "notes.txt").read_text() == "mine"
    (export / "notes.txt").unlink()

    rc, _, err = run(capsys, "export", image, "--pipeline", DEFAULT, "--out", export,
                     "--overwrite", "--quiet")
    assert rc == 0, err
    assert listing(export) != first and (export / "03-maxpool" / "grid.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "tiny.png"]

    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text('{"stages": []}')
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out", fake,
                       "--overwrite")
    assert_one_line_error(rc, out, err, "its manifest.json is not a LayerLab export manifest")
    assert listing(fake) == ["manifest.json"]


@pytest.mark.parametrize("how", ["same-path", "relative", "hard-link", "symlink"])
def test_code_never_overwrites_its_own_pipeline(how, tmp_path, capsys, monkeypatch):
    pipe = tmp_path / "stack.layerlab.json"
    pipe.write_text(SHARPEN.read_text())
    monkeypatch.chdir(tmp_path)
    target = {"same-path": pipe, "relative": Path("./stack.layerlab.json"),
              "hard-link": tmp_path / "hard.json", "symlink": tmp_path / "soft.json"}[how]
    if how == "hard-link":
        os.link(pipe, target)
    if how == "symlink":
        target.symlink_to(pipe)
    before = listing(tmp_path)
    rc, out, err = run(capsys, "code", pipe, "-o", target)
    assert_one_line_error(rc, out, err, "is the pipeline file being read")
    assert pipe.read_text() == SHARPEN.read_text() and listing(tmp_path) == before


# --- 2. special files: FIFOs and devices -------------------------------------------------------

def test_a_fifo_without_a_writer_never_hangs_as_pipeline_or_image(tmp_path):
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    p = layerlab("info", fifo, "--size", "8x8")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("layerlab: error: stream: cannot read the file: nothing arrived from "
                        "it (a FIFO or pipe without a writer)\n")
    p = layerlab("export", fifo, "--pipeline", SHARPEN, "--out", tmp_path / "out")
    assert p.returncode == 2
    assert p.stderr == ("layerlab: error: cannot open 'stream': nothing arrived from it (a "
                        "FIFO or pipe without a writer)\n")
    assert time.monotonic() - t0 < TIMEOUT
    assert sorted(x.name for x in tmp_path.iterdir()) == ["stream"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_core_loaders_refuse_a_writerless_fifo_at_once(tmp_path):
    fifo = tmp_path / "stream.layerlab.json"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    with pytest.raises(PipelineError, match="nothing arrived from it"):
        Pipeline.load(fifo)
    with pytest.raises(ImageLoadError, match="nothing arrived from it"):
        load_image(fifo)
    assert time.monotonic() - t0 < 5


def test_a_process_substitution_pipeline_still_works(tmp_path):
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m layerlab info <(cat "{SHARPEN}") '
                        f'--size 8x8'], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    assert "1 stage(s) after the input, input gray" in p.stdout and "1 x 8 x 8" in p.stdout


def test_a_stalled_writer_is_given_up_on(tmp_path):
    fifo = tmp_path / "slow"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # holds the FIFO open, sends nothing
    try:
        t0 = time.monotonic()
        with pytest.raises(safeio.FileProblem, match="nothing arrived from it for 1 s"):
            safeio.read_capped(fifo, 1000, idle_s=0.6)
        assert time.monotonic() - t0 < 5
    finally:
        os.close(writer)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_devices_are_read_only_up_to_the_cap(device, tmp_path):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    # The child's own peak: VmHWM of its fresh memory map (ru_maxrss would also count the
    # peak of this test process, which a fork hands down to the child).
    code = ("import resource,sys\nfrom layerlab import cli\nrc = cli.main(sys.argv[1:])\n"
            "try:\n    peak = next(int(line.split()[1]) for line in open('/proc/self/status')"
            " if line.startswith('VmHWM'))\n"
            "except (OSError, StopIteration):\n"
            "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(peak // 1024, file=sys.stderr)\nsys.exit(rc)")
    for argv, words in ((["info", device], "it holds more than the 64.0 MB a pipeline file "
                                           "may be (reading stopped there)"),
                        (["info", SHARPEN, "--image", device],
                         "it is not a regular file and holds more than the 256.0 MB")):
        p = subprocess.run([sys.executable, "-c", code, *map(str, argv)],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                           text=True, timeout=TIMEOUT)
        err, peak_mb = p.stderr.rsplit("\n", 2)[:2]
        assert p.returncode == 2 and words in err, p.stderr
        assert int(peak_mb) < 2048  # the cap, not the whole machine's memory


def test_script_to_a_fifo_is_written_into_it_and_the_fifo_kept(tmp_path, capsys):
    fifo = tmp_path / "script-pipe"
    os.mkfifo(fifo)
    rc, out, err = run(capsys, "code", SHARPEN, "-o", fifo)  # nobody reads: refused at once
    assert_one_line_error(rc, out, err, "nothing is reading from it")
    got: list[bytes] = []
    reader_ready = threading.Event()

    def read():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        reader_ready.set()
        os.set_blocking(fd, True)
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # pragma: no cover
                continue
            if not chunk and chunks:
                break
            if not chunk:
                time.sleep(0.01)
                continue
            chunks.append(chunk)
        os.close(fd)
        got.append(b"".join(chunks))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    reader_ready.wait(5)
    rc, out, err = run(capsys, "code", SHARPEN, "-o", fifo)
    assert rc == 0, err
    t.join(10)
    assert got and got[0].startswith(b"#!/usr/bin/env python3")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # never replaced by a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script-pipe"]


def test_a_device_given_to_o_is_written_to_never_replaced(tmp_path, capsys):
    node = tmp_path / "null"  # a null device node of our own, outside /dev
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError:
        pytest.skip("cannot make a device node here")
    rc, out, err = run(capsys, "code", SHARPEN, "-o", node)
    assert rc == 0 and out == "" and err == ""
    st = os.stat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert listing(tmp_path) == ["null"]
    safeio.write_file(node, b"x" * 3_000_000)  # the core writer, big enough for chunks
    assert stat.S_ISCHR(os.stat(node).st_mode) and listing(tmp_path) == ["null"]


# --- 3. temporary files --------------------------------------------------------------------------

def test_atomic_writes_never_follow_a_planted_symlink(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("unrelated")
    out = tmp_path / "script.py"
    # the names the old writer used (pid-based) and a few more guesses
    for pid in {os.getpid(), os.getppid(), 1, 2}:
        (tmp_path / f".{out.name}.tmp-{pid}").symlink_to(victim)
    rc, _, err = run(capsys, "code", SHARPEN, "-o", out)
    assert rc == 0, err
    assert victim.read_text() == "unrelated"
    assert out.is_file() and not out.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".layerlab-")]


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "p.layerlab.json"
    target.write_text("old")
    monkeypatch.setattr(safeio, "_os_write", full)
    with pytest.raises(safeio.FileProblem, match=r"the disk is full \(no space left in "):
        Pipeline.load(SHARPEN).save(target)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.layerlab.json"]


def test_saved_files_get_ordinary_permissions(tmp_path):
    target = tmp_path / "p.layerlab.json"
    Pipeline.load(SHARPEN).save(target)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask
    os.chmod(target, 0o640)
    Pipeline.load(SHARPEN).save(target)  # replacing keeps the file's own mode
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


# --- 4. signals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_during_an_export_leaves_nothing(sig, tmp_path):
    rng = np.random.default_rng(0)
    image = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (1200, 1200), dtype=np.uint8)).save(image)
    pipe = write_json(tmp_path / "wide.layerlab.json", doc(
        {"type": "Conv2d", "name": "wide",
         "args": {"in_channels": 1, "out_channels": 64, "kernel_size": 3, "padding": 1}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "layerlab", "export", str(image),
                             "--pipeline", str(pipe), "--out", str(tmp_path / "out"), "--raw"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".out.export-")]
            if hidden and any(hidden[0].iterdir()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:  # pragma: no cover - only on a regression
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert err == f"layerlab: stopped by {signal.Signals(sig).name}; nothing was left " \
                  f"half-written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "wide.layerlab.json"]


def test_the_signal_guard_restores_handlers_and_skips_other_threads():
    outer = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with safeio.cleanup_on_signals():
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            with pytest.raises(safeio.Terminated) as exc:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            assert exc.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        seen = []
        t = threading.Thread(target=lambda: seen.append(_guard_in_thread()))
        t.start()
        t.join()
        assert seen == [signal.SIG_DFL]
    finally:
        signal.signal(signal.SIGTERM, outer)


def test_library_use_cleans_up_then_ends_by_the_signal(tmp_path):
    # Outside the command line (the window, a script calling export_run), the signal is
    # delivered again after the cleanup, so the process ends as it would have.
    image = tiny_image(tmp_path / "tiny.png", (64, 64))
    code = ("import os, signal, sys\n"
            "from layerlab.core import export\n"
            "real = export._write_stage\n"
            "def stage(*a, **kw):\n"
            "    out = real(*a, **kw)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return out\n"
            "export._write_stage = stage\n"
            "export.export_run(sys.argv[1], sys.argv[2], sys.argv[3], device='cpu')\n"
            "print('survived')\n")
    p = subprocess.run([sys.executable, "-c", code, str(image), str(SHARPEN),
                        str(tmp_path / "out")], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == -signal.SIGTERM and "survived" not in p.stdout, p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["tiny.png"]


def _guard_in_thread():
    with safeio.cleanup_on_signals():  # signal handlers belong to the main thread
        return signal.getsignal(signal.SIGTERM)


# --- 5. numbers ----------------------------------------------------------------------------------

BIG = int("9" * 400)
CONV = {"type": "Conv2d", "name": "c",
        "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": False}}
NUMBERS = {
    "params-400-digits": ({**CONV, "params": {"weight": [[[[BIG]]]]}},
                          "layer 0 ('c'): params.weight: holds an integer too large for any "
                          "float"),
    "int-argument": ({"type": "MaxPool2d", "name": "m", "args": {"kernel_size": BIG}},
                     "layer 0 ('m'): args.kernel_size: kernel_size must be at most 256, not an "
                     "integer of 400 digits"),
    "leaky-slope": ({"type": "LeakyReLU", "name": "l", "args": {"negative_slope": BIG}},
                    "layer 0 ('l'): args.negative_slope: negative_slope must be a number from "
                    "-10 to 10, not an integer of 400 digits"),
    "upsample-scale": ({"type": "Upsample", "name": "u", "args": {"scale_factor": -BIG}},
                       "layer 0 ('u'): args.scale_factor: scale_factor must be a number from "
                       "0.01 to 64, not an integer of 400 digits"),
    "init-mean": ({**CONV, "init": {"scheme": "normal", "mean": BIG}},
                  "layer 0 ('c'): init: init mean must be a number from -1e+06 to 1e+06, not "
                  "an integer of 400 digits"),
    "init-value": ({**CONV, "init": {"scheme": "constant", "value": 1e300}},
                   "layer 0 ('c'): init: init value must be a number from -1e+06 to 1e+06, "
                   "not 1e+300"),
    "layernorm-huge": ({"type": "LayerNorm", "name": "n",
                        "args": {"normalized_shape": [16777216] * 3}},
                       "layer 0 ('n'): args.normalized_shape: normalized_shape [16777216, "
                       "16777216, 16777216] covers 4,722,366,482,869,645,213,696 values, more "
                       "than the 4,294,967,296 a LayerNorm may normalise over"),
}


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_huge_numbers_are_range_checked_at_load(kind, tmp_path, capsys):
    layer, message = NUMBERS[kind]
    path = write_json(tmp_path / "n.layerlab.json", doc(layer))
    with pytest.raises(PipelineError) as exc:
        Pipeline.load(path)
    assert str(exc.value).startswith(f"n.layerlab.json: {message}")
    for argv in (["info", path, "--size", "8x8"], ["code", path]):
        rc, out, err = run(capsys, *argv)
        assert_one_line_error(rc, out, err)
        assert err.startswith(f"layerlab: error: n.layerlab.json: {message}")


# --- 6. text ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("trailing newline\n", "without control characters (it holds '\\n')"),
    ("a\ud800b", "can be written as UTF-8 (it holds the lone surrogate '\\ud800')"),
    ("del\x7f", "without control characters (it holds '\\x7f')"),
    ("csi\x9b31m", "without control characters (it holds '\\x9b')"),
])
def test_names_that_break_tables_or_utf8_are_refused(name, words, tmp_path, capsys):
    path = tmp_path / "t.layerlab.json"
    path.write_text(json.dumps(doc({"type": "ReLU", "name": name})))  # \ud800 as JSON escape
    rc, out, err = run(capsys, "info", path, "--size", "4x4")
    assert_one_line_error(rc, out, err, "t.layerlab.json: layer 0: name:", words)


def test_escape_sequences_from_a_file_never_reach_the_terminal(tmp_path, capsys):
    path = write_json(tmp_path / "e.layerlab.json",
                      {**doc({"type": "ReLU"}), "\x1b]0;owned\x07\x1b[2J": 1})
    rc, out, err = run(capsys, "info", path)
    assert_one_line_error(rc, out, err, "unknown top-level field(s)", "\\x1b]0;owned\\x07")
    assert "\x1b" not in err and "\x07" not in err
    layer_key = write_json(tmp_path / "k.layerlab.json",
                           doc({"type": "ReLU", "args": {"\x1b[31mred": 1}}))
    rc, out, err = run(capsys, "code", layer_key)
    assert_one_line_error(rc, out, err, "\\x1b[31mred")
    assert "\x1b" not in err


def test_info_escapes_odd_names_and_file_names(tmp_path, capsys):
    path = write_json(tmp_path / "odd\x1b[0m.layerlab.json",
                      doc({"type": "ReLU", "name": "\u202eevil"}, {"type": "ReLU"}))
    rc, out, err = run(capsys, "info", path, "--size", "4x4")
    assert rc == 0, err
    assert "\x1b" not in out and "\u202e" not in out
    assert out.startswith("odd\\x1b[0m.layerlab.json: 2 stage(s)")
    rows = out.splitlines()
    assert "\\u202eevil" in rows[5] and rows[5].index("ReLU") == rows[6].index("ReLU")
    assert cli.terminal_text("a\ud800b\tc") == "a\\ud800b\\tc"


# --- 7. long names, full stdout, closed pipe -------------------------------------------------------

def test_names_too_long_for_the_file_system_are_one_line(tmp_path, capsys):
    image = tiny_image(tmp_path / "tiny.png")
    long = tmp_path / ("x" * 256)
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out", long)
    assert_one_line_error(rc, out, err, "the name is too long (256 bytes; a file or folder "
                                        "name may have at most 255)")
    rc, out, err = run(capsys, "code", SHARPEN, "-o", long)
    assert_one_line_error(rc, out, err, "the name is too long (256 bytes")
    fits = tmp_path / ("y" * 250)  # fits, though the hidden folder's name would not
    rc, _, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out", fits, "--quiet")
    assert rc == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.png", fits.name]


@pytest.mark.parametrize("argv", [["code", SHARPEN], ["info", SHARPEN, "--size", "8x8"]])
def test_a_full_stdout_is_one_error_line(argv, tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:  # opened as stdout only: nothing replaces it
        p = layerlab(*argv, stdout=full)
    assert p.returncode == 2
    assert p.stderr == ("layerlab: error: cannot write to the standard output: the disk is "
                        "full (no space left)\n")


def test_a_closed_pipe_ends_quietly(tmp_path):
    pipe = write_json(tmp_path / "long.layerlab.json", doc(*[{"type": "ReLU"}] * 900))
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written
    try:
        p = layerlab("code", pipe, stdout=w)
    finally:
        os.close(w)
    assert p.returncode == 141 and p.stderr == ""


# --- 9. images -------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_orientation(path: Path, tiff_type: int, value4: bytes) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.arange(96, dtype=np.uint8).reshape(8, 12)).save(buf, "PNG")
    png = buf.getvalue()
    tiff = (b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHI", 0x0112, tiff_type, 1)
            + value4 + struct.pack(">I", 0))
    path.write_bytes(png[:33] + _png_chunk(b"eXIf", tiff) + png[33:])
    return path


@pytest.mark.parametrize("kind, value4, note", [
    (7, b"\x06\x00\x00\x00", "EXIF orientation b'\\x06' is not a number from 1 to 8: ignored"),
    (11, struct.pack(">f", 6.5), "EXIF orientation 6.5 is not a number from 1 to 8: ignored"),
    (3, struct.pack(">HH", 9, 0), "EXIF orientation 9 is not a number from 1 to 8: ignored"),
])
def test_a_bad_exif_orientation_is_ignored_and_said(kind, value4, note, tmp_path, capsys):
    path = _png_with_orientation(tmp_path / "odd.png", kind, value4)
    loaded = load_image(path)
    assert loaded.size == (12, 8) and note in loaded.notes
    assert np.array_equal(np.asarray(loaded.image), np.arange(96).reshape(8, 12))
    rc, out, err = run(capsys, "info", SHARPEN, "--image", path)
    assert rc == 0 and "input size 8 x 12" in out, err


def test_a_float_orientation_is_applied_as_pillow_applies_it(tmp_path):
    path = _png_with_orientation(tmp_path / "float.png", 11, struct.pack(">f", 6.0))
    loaded = load_image(path)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert loaded.size == (8, 12) and np.array_equal(np.asarray(loaded.image), expected)


def _jpeg_declaring(path: Path, w: int, h: int) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(data))
    return path


def test_a_tiny_jpeg_declaring_9000x9000_is_counted_before_decoding(tmp_path, capsys,
                                                                    monkeypatch):
    path = _jpeg_declaring(tmp_path / "tiny.jpg", 9000, 9000)
    assert path.stat().st_size < 1000
    t0 = time.monotonic()
    with pytest.raises(ImageLoadError) as exc:
        load_image(path, memory_budget=1 << 30)
    assert str(exc.value) == ("cannot open 'tiny.jpg': decoding its 9000x9000 pixels needs "
                              "about 1.6 GB, more than the 1.0 GB memory budget")
    assert time.monotonic() - t0 < 2  # refused from the header, nothing decoded
    # the default budget follows the memory the machine has to spare
    monkeypatch.setattr(imageio, "available_memory", lambda: 1 << 30)
    assert imageio.default_memory_budget() == 3 << 28
    rc, out, err = run(capsys, "info", SHARPEN, "--image", path)
    assert_one_line_error(rc, out, err, "needs about 1.6 GB, more than the 768.0 MB memory "
                                        "budget")
    rc, out, err = run(capsys, "export", path, "--pipeline", SHARPEN, "--out",
                       tmp_path / "out")
    assert_one_line_error(rc, out, err, "memory budget")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.jpg"]


def _tiff(path: Path, bits: int, sample_format: int, samples: int = 1,
          compression: int = 1) -> Path:
    w = h = 2
    data = bytes(w * h * samples * bits // 8)
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, bits), (259, 3, 1, compression),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, samples), (278, 3, 1, h),
               (279, 4, 1, len(data)), (339, 3, 1, sample_format)]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = offset if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    path.write_bytes(out + struct.pack("<I", 0) + data)
    return path


def test_unsupported_tiffs_and_big_icc_profiles_are_not_called_damaged(tmp_path, capsys):
    half = _tiff(tmp_path / "half.tif", 16, 3)
    with pytest.raises(ImageLoadError) as exc:
        load_image(half)
    assert str(exc.value) == ("cannot open 'half.tif': it is a TIFF with 1 sample(s) per "
                              "pixel of 16-bit floating point, a pixel layout Pillow does not "
                              "support (the file itself looks intact)")
    assert "damaged" not in str(exc.value)
    j2k = _tiff(tmp_path / "j2k.tif", 8, 1, compression=34712)
    with pytest.raises(ImageLoadError) as exc:
        load_image(j2k)
    assert str(exc.value) == ("cannot open 'j2k.tif': it is a TIFF compressed with JPEG 2000 "
                              "(compression 34712), which Pillow does not support (the file "
                              "itself looks intact)")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    png = buf.getvalue()
    icc = tmp_path / "profiled.png"
    icc.write_bytes(png[:33] + _png_chunk(b"iCCP", b"big\x00\x00" + zlib.compress(
        bytes(4 << 20))) + png[33:])
    rc, out, err = run(capsys, "info", SHARPEN, "--image", icc)
    assert_one_line_error(rc, out, err, "'profiled.png': it holds a compressed metadata block "
                                        "(an ICC colour profile, text or EXIF) too large")
    assert "damaged" not in err


def test_to_tensor_is_still_exactly_totensor():
    from torchvision.transforms import ToTensor

    rng = np.random.default_rng(3)
    for mode, shape in (("RGB", (5, 7, 3)), ("L", (5, 7))):
        im = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
        ours = imageio.to_tensor(im, "rgb" if mode == "RGB" else "gray")
        assert ours.is_contiguous()
        assert np.array_equal(ours.numpy(), ToTensor()(im).unsqueeze(0).numpy())


# --- 10. bench arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--threads", "x"], "argument --threads: must be a whole number, not 'x'"),
    (["--threads", "0"], "argument --threads: must be from 1 to 1024, not 0"),
    (["--only", "nosuch"], "unknown scenario 'nosuch' for --only (known: seed-sharpen-512,"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bench_argument_errors_are_one_line(argv, words, capsys):
    rc, out, err = run(capsys, "bench", *argv)
    assert_one_line_error(rc, out, err, words)


# --- 11. messages ---------------------------------------------------------------------------------

def test_export_shape_errors_name_the_pipeline_file_and_the_input_once(tmp_path, capsys):
    image = tiny_image(tmp_path / "dot.png", (1, 1))
    rc, out, err = run(capsys, "export", image, "--pipeline", DEFAULT, "--out",
                       tmp_path / "out")
    assert_one_line_error(rc, out, err)
    assert err.startswith("layerlab: error: sharpen-relu-maxpool.layerlab.json: layer 2 "
                          "('maxpool'): kernel_size:")
    assert err.count("(input") == 1 and err.rstrip().endswith("(input 1 x 1 x 1)")
    flat = write_json(tmp_path / "flat.layerlab.json", doc(
        {"type": "Flatten"}, {"type": "Linear", "args": {"in_features": 5}}))
    rc, out, err = run(capsys, "info", flat, "--size", "2x2")
    assert err == ("layerlab: error: flat.layerlab.json: layer 1: in_features: in_features is "
                   "5 but the input's last dimension is 4 (input 4)\n")


def test_a_full_disk_during_raw_says_so_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    image = tiny_image(tmp_path / "tiny.png", (300, 200))
    written = {"n": 0}
    real = safeio._os_write

    def filling(fd, data):
        if len(data) > 1000 or written["n"] > 4000:
            written["n"] += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        return real(fd, data)

    monkeypatch.setattr(safeio, "_os_write", filling)
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out",
                       tmp_path / "out", "--raw")
    assert_one_line_error(rc, out, err, f"cannot write the export {tmp_path / 'out'}: the disk "
                                        f"is full (no space left in {tmp_path})")
    assert "requested" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.png"]


def test_raw_arrays_are_byte_for_byte_np_save(tmp_path):
    arr = np.random.default_rng(0).standard_normal((3, 5, 7)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, arr)
    assert b"".join(bytes(c) for c in npy_chunks(arr)) == buf.getvalue()
    image = tiny_image(tmp_path / "tiny.png")
    m = export_run(image, SHARPEN, tmp_path / "out", device="cpu", raw=True)
    raw = np.load(tmp_path / "out" / m["stages"][1]["raw"])
    assert raw.shape == (1, 4, 6) and raw.dtype == np.float32


def test_library_warnings_become_one_clean_line(capsys, monkeypatch):
    from layerlab.core import codegen

    real = codegen.generate_script

    def chatty(*a, **kw):
        warnings.warn("something torch says\nover two lines", UserWarning, stacklevel=1)
        warnings.warn("something torch says\nover two lines", UserWarning, stacklevel=1)
        return real(*a, **kw)

    monkeypatch.setattr(codegen, "generate_script", chatty)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        rc, out, err = run(capsys, "code", SHARPEN)
    assert rc == 0 and out.startswith("#!/usr/bin/env python3")
    assert err == "layerlab: warning: something torch says over two lines (UserWarning)\n"

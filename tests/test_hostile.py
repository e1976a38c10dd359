"""Headless LayerLab under bad input and abuse: the commands answer every hostile image and
pipeline with one line on stderr and exit status 2, write nothing, never write outside the
chosen folder, keep user text out of generated code, and the source never unpickles or turns
a type name into a class outside the allow-list."""

from __future__ import annotations

import ast
import io
import json
import os
import struct
import subprocess
import sys
import tokenize
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerlab import cli
from layerlab.core.pipeline import MAX_FILE_BYTES, Pipeline, PipelineError
from layerlab.core.specs import OPS, SpecError, get_op

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "layerlab"
PIPELINES = ROOT / "resources" / "pipelines"
SHARPEN = PIPELINES / "conv-sharpen-gray.layerlab.json"
DEFAULT = PIPELINES / "sharpen-relu-maxpool.layerlab.json"


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
    """Every path under ``root``, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def doc(*layers, mode: str = "gray") -> dict:
    return {"format": "layerlab.pipeline", "version": 1, "input": {"mode": mode},
            "layers": list(layers)}


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


# --- hostile images through the commands -----------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encoded(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    rgb = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buf, fmt, **kw)
    return buf.getvalue()


def _bomb_png() -> bytes:
    data = bytearray(_encoded("PNG"))
    data[16:24] = struct.pack(">II", 100_000, 100_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _text_bomb_png() -> bytes:
    """A valid PNG with a zTXt chunk that inflates to 200 MB."""
    png = _encoded("PNG")
    text = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (200 << 20)))
    return png[:33] + text + png[33:]


def _make_image(kind: str, tmp: Path) -> tuple[Path, str]:
    """A hostile image file and words its error must contain (besides its name)."""
    if kind == "zero-byte":
        p = tmp / "empty.png"
        p.write_bytes(b"")
        return p, "the file is empty (0 bytes)"
    if kind == "truncated-jpeg":
        p = tmp / "cut.jpg"
        data = _encoded("JPEG")
        p.write_bytes(data[: len(data) // 2])
        return p, "truncated"
    if kind == "truncated-png":
        p = tmp / "cut.png"
        data = _encoded("PNG")
        p.write_bytes(data[: len(data) // 2])
        return p, "truncated"
    if kind == "truncated-webp":
        p = tmp / "cut.webp"
        data = _encoded("WEBP")
        p.write_bytes(data[: len(data) // 2])
        return p, "cannot open 'cut.webp'"
    if kind == "text-named-png":
        p = tmp / "notes.png"
        p.write_text("not a picture\n")
        return p, "it is not an image Pillow can read"
    if kind == "svg":
        p = tmp / "logo.svg"
        p.write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        return p, "it is not an image Pillow can read"
    if kind == "decompression-bomb":
        p = tmp / "bomb.png"
        p.write_bytes(_bomb_png())
        return p, "it declares 100000x100000 pixels, more than the"
    if kind == "text-chunk-bomb":
        p = tmp / "chatty.png"
        p.write_bytes(_text_bomb_png())
        return p, "too large"
    if kind == "zero-size-png":
        p = tmp / "nothing.png"
        ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b""))
        return p, "cannot open 'nothing.png'"
    if kind == "missing":
        return tmp / "gone.png", "the file does not exist"
    if kind == "directory":
        (tmp / "photos.png").mkdir()
        return tmp / "photos.png", "it is a directory"
    raise AssertionError(kind)


HOSTILE_IMAGES = ["zero-byte", "truncated-jpeg", "truncated-png", "truncated-webp",
                  "text-named-png", "svg", "decompression-bomb", "text-chunk-bomb",
                  "zero-size-png", "missing", "directory"]


@pytest.mark.parametrize("kind", HOSTILE_IMAGES)
def test_export_refuses_a_hostile_image_in_one_line_and_writes_nothing(kind, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    image, words = _make_image(kind, src)
    before = listing(tmp_path)
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out",
                       tmp_path / "out")
    assert_one_line_error(rc, out, err, f"'{image.name}'", words)
    assert listing(tmp_path) == before  # no output folder, no hidden temporary one


@pytest.mark.parametrize("kind", ["zero-byte", "truncated-png", "decompression-bomb",
                                  "missing", "directory"])
def test_info_refuses_a_hostile_image_in_one_line(kind, tmp_path, capsys):
    image, words = _make_image(kind, tmp_path)
    rc, out, err = run(capsys, "info", SHARPEN, "--image", image)
    assert_one_line_error(rc, out, err, f"'{image.name}'", words)


def _odd_image(kind: str, tmp: Path) -> tuple[Path, tuple[int, ...]]:
    """An unusual but valid image and the gray stage-0 shape export must write for it."""
    rng = np.random.default_rng(1)
    if kind == "16-bit-gray":
        p = tmp / "deep.png"
        Image.fromarray(rng.integers(0, 65536, (30, 40)).astype(np.uint16)).save(p)
        return p, (1, 30, 40)
    if kind == "cmyk-jpeg":
        p = tmp / "print.jpg"
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert(
            "CMYK").save(p)
        return p, (1, 30, 40)
    if kind == "animated-gif":
        p = tmp / "blink.gif"
        frames = [Image.new("RGB", (40, 30), c) for c in ("red", "lime", "blue")]
        frames[0].save(p, save_all=True, append_images=frames[1:], duration=50)
        return p, (1, 30, 40)
    if kind == "exif-rotated":
        p = tmp / "phone.jpg"
        im = Image.fromarray(rng.integers(0, 256, (60, 40), dtype=np.uint8))
        exif = im.getexif()
        exif[0x0112] = 8
        im.save(p, exif=exif)
        return p, (1, 40, 60)
    if kind == "one-pixel":
        p = tmp / "dot.png"
        Image.new("L", (1, 1), 9).save(p)
        return p, (1, 1, 1)
    if kind == "strip":
        p = tmp / "strip.png"
        Image.fromarray(rng.integers(0, 256, (20, 20000), dtype=np.uint8)).save(p)
        return p, (1, 20, 20000)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["16-bit-gray", "cmyk-jpeg", "animated-gif", "exif-rotated",
                                  "one-pixel", "strip"])
def test_export_handles_unusual_images_at_their_upright_full_size(kind, tmp_path, capsys):
    image, shape = _odd_image(kind, tmp_path)
    rc, _, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out",
                     tmp_path / "out", "--raw", "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [s["shape"] for s in manifest["stages"]] == [list(shape), list(shape)]
    raw = np.load(tmp_path / "out" / manifest["stages"][0]["raw"])
    assert raw.shape == shape and raw.dtype == np.float32


def test_export_of_a_one_pixel_image_through_a_pool_names_the_layer(tmp_path, capsys):
    image, _ = _odd_image("one-pixel", tmp_path)
    before = listing(tmp_path)
    rc, out, err = run(capsys, "export", image, "--pipeline", DEFAULT, "--out",
                       tmp_path / "out")
    assert_one_line_error(rc, out, err, "layer 2 ('maxpool')", "kernel_size", "1 x 1 x 1")
    assert listing(tmp_path) == before


# --- hostile pipeline files through info and code --------------------------------------------

CONV = {"type": "Conv2d", "name": "c",
        "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 1}}

# name -> (file content: JSON-able, bytes or a callable(path)), words the error must contain)
HOSTILE_PIPELINES: dict[str, tuple[object, tuple[str, ...]]] = {
    "empty-file": (b"", ("not valid JSON",)),
    "not-an-object": ([CONV], ("must be a JSON object, not list",)),
    "wrong-format": ({**doc(), "format": "onnx"}, ("format must be 'layerlab.pipeline'",)),
    "version-2": ({**doc(), "version": 2}, ("version 2 is not supported",)),
    "Module": (doc({"type": "Module"}), ("layer 0", "type", "unknown layer type 'Module'")),
    "dunder": (doc({"type": "__subclasses__"}), ("unknown layer type '__subclasses__'",)),
    "dotted": (doc({"type": "torch.nn.modules.conv.Conv2d"}), ("unknown layer type",)),
    "trailing-space": (doc({"type": "Conv2d "}), ("unknown layer type 'Conv2d '",)),
    "strings-for-numbers": (doc({**CONV, "args": {**CONV["args"], "stride": "2"}}),
                            ("layer 0 ('c')", "args.stride")),
    "params-wrong-shape": (doc({**CONV, "params": {"weight": [[[[1.0]]]]}}),
                           ("layer 0 ('c')", "params.weight", "expected [1, 1, 3, 3]")),
    "params-ragged": (doc({**CONV, "params": {"weight": [[[[1, 2, 3], [4, 5], [6]]]]}}),
                      ("params.weight", "regular shape")),
    "nul-in-name": (doc({"type": "ReLU", "name": "a\x00b"}), ("layer 0", "name")),
    "10000-layers": (doc(*[{"type": "ReLU"}] * 10000), ("10000 layers",)),
    "non-utf8": (b'{"format": "layerlab.pipeline", "version": 1, "layers": '
                 b'[{"type": "ReLU", "name": "\xff\xfe"}]}', ("not UTF-8",)),
    "huge-integer": ('{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": '
                     '"MaxPool2d", "args": {"kernel_size": 1' + "0" * 5000 + "}}]}",
                     ("not valid JSON", "5001-digit integer")),
    "duplicate-key": ('{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": '
                      '"MaxPool2d", "args": {"kernel_size": 2, "kernel_size": 3}}]}',
                      ("'kernel_size' appears twice",)),
    "nested-too-deep": ('{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": '
                        '"ReLU", "params": {"weight": ' + "[" * 100_000 + "]" * 100_000
                        + "}}]}", ("nested too deeply",)),
    "infinite-size": ('{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": '
                      '"MaxPool2d", "args": {"kernel_size": Infinity}}]}',
                      ("args.kernel_size", "integer")),
    "over-the-size-limit": (lambda p: os.truncate(p, MAX_FILE_BYTES + 1), ("larger than",)),
    "a-directory": (lambda p: (p.unlink(), p.mkdir()), ("directory",)),
}


def _write_hostile_pipeline(kind: str, tmp: Path) -> tuple[Path, tuple[str, ...]]:
    content, words = HOSTILE_PIPELINES[kind]
    path = tmp / f"{kind}.layerlab.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif callable(content):
        path.write_bytes(b"")
        content(path)
    else:
        write_json(path, content)
    return path, words


@pytest.mark.parametrize("command", ["info", "code"])
@pytest.mark.parametrize("kind", list(HOSTILE_PIPELINES))
def test_info_and_code_refuse_a_hostile_pipeline_in_one_line(command, kind, tmp_path, capsys):
    path, words = _write_hostile_pipeline(kind, tmp_path)
    before = listing(tmp_path)
    argv = ["info", path, "--size", "8x8"] if command == "info" else \
        ["code", path, "-o", tmp_path / "script.py"]
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err, path.name, *words)
    assert listing(tmp_path) == before


def test_the_same_pipelines_are_refused_by_the_loader_without_a_traceback(tmp_path):
    for kind in HOSTILE_PIPELINES:
        path, _ = _write_hostile_pipeline(kind, tmp_path)
        with pytest.raises(PipelineError) as exc:
            Pipeline.load(path)
        assert str(exc.value).startswith(path.name + ": ")


def test_nan_weights_warn_in_info_and_stay_nan_in_the_script(tmp_path, capsys):
    weight = [[[[0.0, float("nan"), 0.0], [0.0, float("inf"), 0.0], [0.0, float("-inf"), 0.0]]]]
    path = write_json(tmp_path / "nan.layerlab.json",
                      doc({**CONV, "args": {**CONV["args"], "bias": False},
                           "params": {"weight": weight}}))
    rc, out, err = run(capsys, "info", path, "--size", "4x4")
    assert rc == 0 and "1 x 4 x 4" in out
    assert err == ("layerlab: warning: layer 0 (c): params.weight has 3 NaN/inf value(s); "
                   "outputs will contain NaN/inf\n")
    rc, script, err = run(capsys, "code", path)
    assert rc == 0 and err == ""
    compile(script, "nan.py", "exec")
    assert 'float("nan")' in script and '-float("inf")' in script


# --- exports stay inside the chosen folder -----------------------------------------------------

HOSTILE_NAMES = ["../../x", "/abs", "/", "con", "CON.txt", "aux", "nul", "com1", "LPT1",
                 "...", "~", "~root", "$HOME", "%APPDATA%", "a/../../b", "\\\\server\\share",
                 "C:", "C:\\Windows", "．．／．．／x", "\u202eexe.png", "-rf", "*", "?", "x" * 64]


def test_hostile_layer_names_never_write_outside_the_folder(tmp_path, capsys):
    path = write_json(tmp_path / "names.layerlab.json",
                      doc(*[{"type": "ReLU", "name": n} for n in HOSTILE_NAMES]))
    box = tmp_path / "box"
    box.mkdir()
    out = box / "out"
    image = tmp_path / "tiny.png"
    Image.new("L", (6, 4), 128).save(image)
    outside_before = sorted(p for p in tmp_path.parent.iterdir())
    rc, _, err = run(capsys, "export", image, "--pipeline", path, "--out", out, "--raw",
                     "--quiet")
    assert rc == 0, err
    assert sorted(p for p in tmp_path.parent.iterdir()) == outside_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["box", "names.layerlab.json",
                                                          "tiny.png"]
    assert [p.name for p in box.iterdir()] == ["out"]
    root = out.resolve()
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            assert not p.is_symlink() and root in p.resolve().parents
    manifest = json.loads((out / "manifest.json").read_text())
    dirs = [s["grid"].split("/")[0] for s in manifest["stages"]]
    assert len(set(dirs)) == len(dirs)  # no two stages share (or overwrite) a folder
    for i, d in enumerate(dirs):
        # every folder starts with its stage number: never a device name (con, nul, com1),
        # never a dot or a dash, never a separator
        assert d.startswith(f"{i:02d}-") and "/" not in d and "\\" not in d and ".." not in d
    assert [s["name"] for s in manifest["stages"][1:]] == HOSTILE_NAMES  # kept as data


def test_names_with_control_characters_are_refused_at_load(tmp_path, capsys):
    for bad in ["a\x00b", "tab\there", "line\nbreak", "\x1b[31mred"]:
        path = write_json(tmp_path / "ctl.layerlab.json", doc({"type": "ReLU", "name": bad}))
        rc, out, err = run(capsys, "export", tmp_path / "none.png", "--pipeline", path,
                           "--out", tmp_path / "out")
        assert_one_line_error(rc, out, err, "ctl.layerlab.json: layer 0: name:",
                              "without control characters")
        assert not (tmp_path / "out").exists()


def test_out_as_a_symlink_is_refused_and_its_target_untouched(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere, target_is_directory=True)
    image = tmp_path / "tiny.png"
    Image.new("L", (6, 4), 128).save(image)
    before = listing(tmp_path)
    rc, out, err = run(capsys, "export", image, "--pipeline", SHARPEN, "--out",
                       tmp_path / "link", "--overwrite")
    assert_one_line_error(rc, out, err, "link")
    assert listing(tmp_path) == before and list(elsewhere.iterdir()) == []


# --- user text stays out of generated code ---------------------------------------------------

PAYLOAD = "__import__('pathlib').Path('PWNED').touch()"
CODE_NAMES = [f'x"); {PAYLOAD}; ("', f"x'''; {PAYLOAD}; '''", f'"""\n{PAYLOAD}\n"""',
              f"\\\u2028{PAYLOAD}", f"# \u0085{PAYLOAD}", f"\\\\\n{PAYLOAD}"]


def test_hostile_names_in_generated_scripts_are_inert(tmp_path):
    # Newlines and other control characters (NEL, U+0085, is a C1 control) are refused at
    # load; everything else must land in comments or strings only.
    names = [n.replace("\n", " ").replace("\u0085", " ") for n in CODE_NAMES]
    path = write_json(tmp_path / "inject.layerlab.json",
                      doc(*[{"type": "ReLU", "name": n} for n in names]))
    odd_file = tmp_path / f"evil\n{PAYLOAD}\n.layerlab.json"  # a newline in a file name
    odd_file.write_text(path.read_text())
    rc = cli.main(["code", str(odd_file), "-o", str(tmp_path / "script.py")])
    assert rc == 0
    script = (tmp_path / "script.py").read_text()
    compile(script, "script.py", "exec")
    for tok in tokenize.generate_tokens(io.StringIO(script).readline):
        if "PWNED" in tok.string:
            assert tok.type in (tokenize.COMMENT, tokenize.STRING), tok
    image = tmp_path / "tiny.png"
    Image.new("L", (6, 4), 128).save(image)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(image), "--out",
                           str(run_dir / "out.npy")], cwd=run_dir, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["out.npy"]
    assert not (tmp_path / "PWNED").exists()


# --- security: no unpickling, type names only through the allow-list ---------------------------


def _sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    return files


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "not a constant"
    return None


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal",
                  "shelve", "yaml"}


def test_no_unpickling_anywhere_in_the_package():
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            problems += [f"{rel}:{node.lineno} imports {n}" for n in names if n in UNSAFE_MODULES]
        for call in _calls(tree):
            func = _dotted(call.func)
            if func.endswith("torch.load") or func == "load" and "torch" in path.read_text():
                if _keyword(call, "weights_only") is not True:
                    problems.append(f"{rel}:{call.lineno} torch.load without weights_only=True")
            if func in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") not in (
                    None, False):
                problems.append(f"{rel}:{call.lineno} np.load with allow_pickle")
            if func in ("eval", "exec", "__import__", "compile", "importlib.import_module"):
                problems.append(f"{rel}:{call.lineno} calls {func}()")
            if func in ("torch.hub.load", "torch.jit.load"):
                problems.append(f"{rel}:{call.lineno} calls {func}()")
    assert problems == []


def test_text_search_agrees_no_pickle_or_unsafe_torch_load():
    for path in _sources():
        text = path.read_text()
        assert "pickle" not in text.replace("allow_pickle=False", ""), path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (path, line)


def test_only_the_spec_module_turns_a_name_into_a_torch_class():
    """``getattr(nn, <variable>)`` is the one dynamic lookup, and only in the op spec
    (``OpSpec.module_class``, reached through the allow-list in specs.py)."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree):
            if _dotted(call.func) == "getattr" and call.args:
                target = _dotted(call.args[0])
                dynamic = len(call.args) > 1 and not isinstance(call.args[1], ast.Constant)
                if target in ("nn", "torch.nn", "torch", "F", "torch.nn.functional") and dynamic:
                    found.append(path.relative_to(ROOT).as_posix())
    assert found == ["layerlab/core/opspec.py"]


NOT_ALLOWED = ["__import__", "os.system", "Conv2d ", " Conv2d", "conv2d", "CONV2D",
               "Conv2d\x00", "Conv2d\u200b", "Ｃｏｎｖ２ｄ", "nn.Conv2d", "torch.nn.Conv2d",
               "Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "identity",
               "__builtins__", "__class__", "__subclasses__", "__init__", "eval", "exec",
               "functional", "modules", "init", "utils", "Parameter", "Conv2d.__class__",
               "", None, True, 2, 2.0, ["Conv2d"], {"name": "Conv2d"}]


@pytest.mark.parametrize("type_name", NOT_ALLOWED, ids=repr)
def test_type_names_resolve_only_through_the_allow_list(type_name):
    with pytest.raises(SpecError, match="unknown layer type"):
        get_op(type_name)
    with pytest.raises(PipelineError) as exc:
        Pipeline.from_dict(doc({"type": type_name, "name": "t"}), source="p.json")
    assert exc.value.field == "type" and exc.value.index == 0


def test_the_allow_list_holds_only_plain_layer_classes():
    from torch import nn

    containers = {"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList",
                  "ParameterDict", "Container"}
    for name, op in OPS.items():
        assert name.isidentifier() and not name.startswith("_") and name not in containers
        cls = op.module_class
        assert cls is getattr(nn, name)
        assert issubclass(cls, nn.Module) and cls.__module__.startswith("torch.nn.modules.")

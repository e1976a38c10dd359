"""The ``layerlab`` command.

``layerlab [IMAGE] [--pipeline P]`` opens the window. The sub-commands ``export``, ``code``,
``info``, ``sweep`` and ``bench`` run headless: this module and everything they import stay
free of Qt (the window's modules are imported lazily, only when the window is asked for).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cli_export import (  # noqa: F401
    _METHODS,
    _cmd_export,
    _export_parser,
    _isatty,
    _with_weights,
    with_labels,
)
from .cli_sweep import _cmd_sweep
from .console import (  # noqa: F401 - UsageError, _Parser, say, warn: used here and by tests
    PROG,
    UsageError,
    _error_line,
    _flush_stdout,
    _fmt,
    _one_line,
    _Parser,
    _silence_stdout,
    _StdoutClosed,
    _StdoutFailed,
    say,
    terminal_text,
    warn,
)

HEADLESS = ("export", "code", "info", "sweep", "bench")
DEFAULT_INFO_SIZE = (224, 224)


def _window_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, usage="%(prog)s [IMAGE] [--pipeline P]\n"
                "       %(prog)s {export,code,info,sweep,bench} ...",
                **_fmt("See what neural-network layers do to an image.\n\n"
                       "Without a command, opens the window (with IMAGE and the stack P if "
                       "given).\nHeadless commands (no window, no Qt):\n"
                       "  export   run a stack on an image and write every stage as PNGs, "
                       "raw arrays and a manifest\n"
                       "  code     print a standalone PyTorch script that rebuilds a stack\n"
                       "  info     print a stack's stages: shapes, parameter counts, "
                       "formulas\n"
                       "  sweep    animate one stage while a parameter runs over values "
                       "(GIF, APNG, PNGs)\n"
                       "  bench    time LayerLab against plain torch baselines\n"
                       "Run 'layerlab COMMAND --help' for each command's options.",
                       "layerlab photo.jpg --pipeline resources/pipelines/edge-detection"
                       ".layerlab.json"))
    p.add_argument("image", nargs="?", help="image to open (any format Pillow reads)")
    p.add_argument("--pipeline", metavar="P", help="layer stack to open (*.layerlab.json)")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return p


def _code_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} code", **_fmt(
        "Print a standalone PyTorch script (torch, torchvision, pillow, numpy) that rebuilds\n"
        "the stack P as an nn.Sequential with its exact weights. Run it as\n"
        "  python script.py IMAGE [--out output.npy]\n"
        "to save the last stage as float32 .npy (the layout of 'layerlab export --raw').\n"
        "A stack of more than 16 MB of weights (AlexNet, VGG) needs -o FILE.py: its tensors\n"
        "go to FILE-tensors.safetensors beside the script, which reads them with numpy.",
        "layerlab code resources/pipelines/cifar10-tutorial.layerlab.json -o cifar10.py"))
    p.add_argument("pipeline", metavar="P", help="the stack (*.layerlab.json)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the script to FILE instead of printing it")
    p.add_argument("--weights", metavar="FILE",
                   help="a state_dict (.pt/.pth read with weights_only=True, or .safetensors) "
                   "applied onto the stack: keys by layer name, nn.Sequential index or order; "
                   "unmatched keys and layers without a tensor are listed, a shape mismatch "
                   "is an error")
    return p


def _info_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} info", **_fmt(
        "Print the stages of the stack P: output shape, parameter count and the output-size\n"
        "formula with the numbers filled in. The input size is IMAGE's size, --size, the\n"
        "stack's input.resize, or else 224 x 224 (the header says which).",
        "layerlab info resources/pipelines/cifar10-tutorial.layerlab.json --size 32x32"))
    p.add_argument("pipeline", metavar="P", nargs="?", help="the stack (*.layerlab.json)")
    p.add_argument("--model", metavar="NAME",
                   help="a torchvision classification model instead of a stack (resnet18, "
                   "vgg16, ...): every module's output shape, in execution order, by module "
                   "path")
    p.add_argument("--stages", metavar="PATTERN",
                   help="with --model: only the stages whose module path matches, e.g. "
                   "'layer*.conv1'")
    p.add_argument("--seed", type=int, default=0,
                   help="with --model and no --weights: the seed of its random weights")
    p.add_argument("--weights", metavar="FILE",
                   help="a state_dict (.pt/.pth read with weights_only=True, or .safetensors) "
                   "applied onto the stack: keys by layer name, nn.Sequential index or order; "
                   "unmatched keys and layers without a tensor are listed, a shape mismatch "
                   "is an error. With --model: a state_dict of the model, or 'trained' for "
                   "torchvision's file in torch's hub cache")
    p.add_argument("--labels", metavar="FILE",
                   help="class names (one per line, or a .json list) instead of the "
                   "pipeline's classes")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", metavar="IMAGE", help="take the input size from this image")
    src.add_argument("--size", metavar="HxW", type=_parse_size,
                     help="input height x width, e.g. 480x640")
    return p


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").replace("*", "x").split("x")
    try:
        h, w = (int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 480x640, not {text!r}") from None
    if not (1 <= h <= 65536 and 1 <= w <= 65536):
        raise argparse.ArgumentTypeError(f"size {h}x{w} is out of range (1 to 65536)")
    return h, w


# --- commands --------------------------------------------------------------------------------

def _cmd_code(argv: Sequence[str]) -> int:
    args = _code_parser().parse_args(argv)
    from .core import safeio
    from .core.codegen import INLINE_MAX_BYTES, generate_script, script_tensors
    from .core.pipeline import Pipeline, PipelineError
    from .core.tensorfile import encode, tensor_file_name

    if args.output is not None:
        _check_script_target(args.output, args.pipeline)
    try:
        pipeline = Pipeline.load(args.pipeline)
    except PipelineError as e:
        raise UsageError(str(e)) from None
    pipeline, _ = _with_weights(pipeline, args.weights)
    big = pipeline.tensor_bytes() > INLINE_MAX_BYTES
    if big and args.output is None:
        raise UsageError(f"the stack holds {safeio.human_bytes(pipeline.tensor_bytes())} of "
                         f"weights, too many to print as numbers; give -o FILE.py (they go "
                         f"to FILE-tensors.safetensors beside it)")
    out = Path(args.output) if args.output is not None else None
    beside = out.with_name(f"{out.stem}-tensors.safetensors") if big else None
    if beside is not None and beside.resolve() == Path(args.pipeline).with_name(
            tensor_file_name(args.pipeline)).resolve():
        raise UsageError(f"{beside.name} is the pipeline's own tensors file; choose another "
                         f"name for the script")
    script = generate_script(pipeline, source=Path(args.pipeline).name,
                             tensors=beside.name if beside else None)
    if out is None:
        say(script, end="")
        return 0
    try:
        if beside is not None:  # the tensors first: the script never names a missing file
            safeio.write_file(beside, encode(script_tensors(pipeline)))
        safeio.write_file(out, script.encode("utf-8"))
    except OSError as e:
        raise UsageError(f"cannot write {out}: {safeio.reason_for(e, writing=True)}") from None
    return 0


def _check_script_target(output: str, pipeline: str) -> None:
    """``-o``: a file name that fits, in an existing folder, never the pipeline itself."""
    from .core import safeio

    out = Path(output)
    if not str(output).strip():
        raise UsageError("the script file name (-o) is empty")
    try:
        safeio.check_name_length(out)
    except safeio.FileProblem as e:
        raise UsageError(f"cannot write the script to {_short(output)}: {e}") from None
    try:
        if out.is_dir():
            raise UsageError(f"{out} is a folder; give a file name for the script")
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {out}: the folder {out.parent} does not exist")
        same = out.exists() and Path(pipeline).exists() and os.path.samefile(out, pipeline)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {safeio.reason_for(e, writing=True)}") from None
    if same or os.path.realpath(out) == os.path.realpath(pipeline):
        raise UsageError(f"-o {out} is the pipeline file being read; writing the script there "
                         f"would destroy it; choose another file name")


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:40] + "..." + text[-12:]


def _cmd_info(argv: Sequence[str]) -> int:
    args = _info_parser().parse_args(argv)
    if args.model is not None:
        if args.pipeline is not None:
            raise UsageError("give a stack P or --model NAME, not both")
        from .cli_model import cmd_info

        return cmd_info(args)
    if args.pipeline is None:
        raise UsageError("give a stack P (*.layerlab.json) or --model NAME")
    if args.stages is not None:
        raise UsageError("--stages selects stages of a --model")
    from .core.analysis import analyze, nonfinite_warnings
    from .core.pipeline import Pipeline, PipelineError

    try:
        pipeline = Pipeline.load(args.pipeline)
    except PipelineError as e:
        raise UsageError(str(e)) from None
    pipeline, mapping = _with_weights(pipeline, args.weights)
    pipeline = with_labels(pipeline, args.labels)
    if args.image:
        from .core.imageio import ImageLoadError, load_image

        try:
            loaded = load_image(args.image)
        except ImageLoadError as e:
            raise UsageError(str(e)) from None
        w, h = loaded.size
        origin = f"the size of {terminal_text(Path(args.image).name)}"
    elif args.size:
        h, w = args.size
        origin = "--size"
    elif pipeline.input.fixed_hw:
        h, w = pipeline.input.fixed_hw
        origin = ("the pipeline's input.center_crop" if pipeline.input.center_crop
                  else "the pipeline's input.resize")
    else:
        h, w = DEFAULT_INFO_SIZE
        origin = "default; pass --image or --size for another"
    analysis = analyze(pipeline, (h, w))
    if not analysis.ok:
        raise UsageError(f"{Path(args.pipeline).name}: {analysis.first_error.exception()}")
    for warning in nonfinite_warnings(pipeline):
        warn(warning)

    text = format_info(pipeline, analysis, Path(args.pipeline).name, origin)
    if mapping is not None:
        text += (f"\nweights: {len(mapping.applied_keys)} tensor(s) from "
                 f"{terminal_text(mapping.source)} onto {len(mapping.layers)} layer(s), "
                 f"matched by {_METHODS[mapping.method]}")
    if pipeline.classes:
        n = len(pipeline.classes)
        last = analysis.stages[-1].shape
        shown = ", ".join(terminal_text(c) for c in pipeline.classes[:10])
        text += (f"\nclasses: {n} ({shown}{', ...' if n > 10 else ''})"
                 + ("" if tuple(last) == (n,) else
                    f"; the output has shape {tuple(last)}, so they are not used"))
    say(text)
    return 0


def format_info(pipeline, analysis, source: str, origin: str) -> str:
    """The ``layerlab info`` text: a header, one row per stage, totals and memory."""
    from .core.pipeline import format_bytes
    from .core.specs import shape_text

    h, w = analysis.image_hw
    stages = analysis.stages
    mode = "gray" if pipeline.input.mode == "gray" else "rgb"
    inp = pipeline.input
    steps = []
    if isinstance(inp.resize, int):
        rh, rw = inp.output_hw((h, w)) if inp.center_crop is None else \
            type(inp)(inp.mode, inp.resize).output_hw((h, w))
        steps.append(f"shorter side resized to {inp.resize} ({rh} x {rw})")
    elif inp.resize and tuple(inp.resize) != (h, w):
        steps.append(f"resized to {inp.resize[0]} x {inp.resize[1]}")
    if inp.center_crop:
        steps.append(f"center crop {inp.center_crop[0]} x {inp.center_crop[1]}")
    lines = [f"{terminal_text(source)}: {len(stages) - 1} stage(s) after the input, "
             f"input {mode}",
             f"input size {h} x {w} ({origin})"
             + (", " + ", then ".join(steps) + " by the pipeline" if steps else "")]
    if inp.normalize is not None:
        from .core.preprocess import preset_of

        preset = preset_of(inp.normalize, inp.channels)
        lines.append(f"normalized: {inp.normalize.text()}"
                     + (f" (preset {preset})" if preset else ""))
    headers = ("stage", "layer", "name", "type", "output", "params", "formula")
    rows = []
    for k, s in enumerate(stages):
        formula = "; ".join(s.formula.splitlines())
        rows.append((str(k), "-" if s.index < 0 else str(s.index), terminal_text(s.stage_name),
                     s.type, shape_text(s.shape), f"{s.parameter_count:,}", formula))
    widths = [max(len(r[i]) for r in (*rows, headers)) for i in range(len(headers) - 1)]
    right = {0, 1, 5}

    def line(cells):
        parts = [c.rjust(wd) if i in right else c.ljust(wd)
                 for i, (c, wd) in enumerate(zip(cells[:-1], widths, strict=True))]
        return ("  ".join(parts) + "  " + cells[-1]).rstrip()

    lines += ["", line(headers)] + [line(r) for r in rows]
    disabled = [f"{i} ({terminal_text(layer.display_name(i))})"
                for i, layer in enumerate(pipeline.layers)
                if not layer.enabled]
    total_params = sum(s.parameter_count for s in stages)
    last = stages[-1]
    mem = analysis.memory
    lines += ["", f"output {shape_text(last.shape)}; {total_params:,} parameters "
              f"({format_bytes(4 * total_params)} as float32)",
              f"memory: {format_bytes(mem.kept)} with every stage kept (the window), "
              f"{format_bytes(mem.peak)} at most at once in one pass (export)"]
    if disabled:
        lines.append("disabled (not run): layer " + ", ".join(disabled))
    return "\n".join(lines)


def _cmd_bench(argv: Sequence[str]) -> int:
    try:
        from . import bench
    except ImportError as e:  # pragma: no cover - bench ships with LayerLab
        raise UsageError(f"the benchmark is not available: {e}") from None
    return int(bench.main(list(argv)) or 0)


def _cmd_window(argv: Sequence[str]) -> int:
    args = _window_parser().parse_args(argv)
    for path, what in ((args.image, "image"), (args.pipeline, "pipeline")):
        if path is not None and not os.path.exists(path):
            raise UsageError(f"the {what} file {path} does not exist")
    missing = no_display(os.environ)
    if missing:
        raise UsageError(f"cannot open the window: {missing}; the headless commands export, "
                         f"code, info and bench work without one (see '{PROG} --help')")
    try:
        from .qt import app
    except ImportError as e:
        raise UsageError(f"the window cannot start: {e} (the headless commands "
                         f"export, code, info and bench still work)") from None
    return int(app.run_app(image=args.image, pipeline=args.pipeline) or 0)


def no_display(environ, platform: str = sys.platform) -> str | None:
    """Why Qt would find no display to open a window on (Linux and other X11/Wayland
    systems), or None. Qt itself aborts there with a misleading message about xcb plugins."""
    if platform.startswith(("win", "darwin", "cygwin")):
        return None
    wanted = [p.strip().split(":")[0] for p in environ.get("QT_QPA_PLATFORM", "").split(";")]
    wanted = [p for p in wanted if p] or ["xcb", "wayland"]
    if any(p not in ("xcb", "wayland", "wayland-egl") for p in wanted):
        return None  # offscreen, minimal, vnc, eglfs, ...: no display server needed
    if "xcb" in wanted and environ.get("DISPLAY"):
        return None
    if any(p.startswith("wayland") for p in wanted) and environ.get("WAYLAND_DISPLAY"):
        return None
    names = " and ".join(n for n, p in (("DISPLAY", "xcb"), ("WAYLAND_DISPLAY", "wayland"))
                         if any(w.startswith(p) for w in wanted))
    return f"there is no display ({names} {'is' if ' and ' not in names else 'are'} not set)"


COMMANDS = {"export": _cmd_export, "code": _cmd_code, "info": _cmd_info, "sweep": _cmd_sweep,
            "bench": _cmd_bench}


def gui_main() -> int:
    """Entry point of ``layerlab-gui`` (a GUI script: no console window on Windows): always
    the window, ``layerlab-gui [IMAGE] [--pipeline P]``."""
    return main(window=True)


def main(argv: Sequence[str] | None = None, *, window: bool = False) -> int:
    """Entry point of ``layerlab``; returns the exit status (``window``: never a sub-command).

    0 ok; 2 bad input or a failed write (one line on stderr, nothing written); 141 when
    standard output is a pipe closed by its reader (quiet, as a C tool killed by SIGPIPE);
    130 on Ctrl+C; 128 + N when signal N (SIGTERM, SIGHUP, ...) stopped it (its temporary
    files removed).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    from .core.safeio import Terminated, cleanup_on_signals

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # pragma: no cover - replaced streams
            pass
    try:
        headless = not window and bool(argv) and argv[0] in COMMANDS
        # The headless commands turn SIGTERM, SIGHUP, ... into cleanup and status 128 + N;
        # the window keeps the default handlers (its own saves redeliver the signal).
        guard = cleanup_on_signals(redeliver=False) if headless else contextlib.nullcontext()
        with guard, _clean_warnings():
            try:
                if headless:
                    rc = COMMANDS[argv[0]](argv[1:])
                else:
                    rc = _cmd_window(argv)
            except SystemExit as e:  # --help and --version end here
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            _flush_stdout()
            return rc
    except UsageError as e:
        _error_line(str(e))
        return 2
    except _StdoutClosed:
        _silence_stdout()
        return 141
    except _StdoutFailed as e:
        _silence_stdout()
        _error_line(f"cannot write to the standard output: {e}")
        return 2
    except KeyboardInterrupt:
        _error_line("interrupted", prefix=f"{PROG}: ")
        return 130
    except Terminated as e:
        _error_line(f"stopped by {e.name}; nothing was left half-written", prefix=f"{PROG}: ")
        return 128 + e.signum


class _clean_warnings:
    """torch/numpy/Pillow warnings become one ``layerlab: warning:`` line each (no source
    lines, each text once)."""

    def __enter__(self):
        import warnings

        self._seen: set[str] = set()
        self._old = warnings.showwarning
        warnings.showwarning = self._show
        return self

    def _show(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = _one_line(str(message))
        if text not in self._seen:
            self._seen.add(text)
            warn(f"{text} ({category.__name__})")

    def __exit__(self, *exc) -> None:
        import warnings

        warnings.showwarning = self._old


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``layerlab sweep``: one frame per value of a parameter, as an animated GIF, an animated PNG
or a folder of PNGs (headless, no Qt)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .cli_export import _with_weights
from .console import PROG, UsageError, _fmt, _Parser, say, terminal_text, warn


def _sweep_parser() -> argparse.ArgumentParser:
    from .core.render import COLORMAPS, NORMALIZE_MODES
    from .core.sweep_output import FORMATS, RANGES

    p = _Parser(prog=f"{PROG} sweep", **_fmt(
        "Run the stack P on IMAGE once per value of one parameter and write the chosen stage\n"
        "of every run as one frame, with the value printed on it:\n"
        "  F.gif            an animated GIF\n"
        "  F.png / F.apng   an animated PNG\n"
        "  DIR (no suffix)  a folder: frame-000.png, ... and sweep.json\n"
        "--param is a constructor argument of the layer (kernel_size, stride, padding,\n"
        "dilation, negative_slope, ...), one value of its tensor (weight[0,0,1,1], bias[0]),\n"
        "its whole tensor scaled (weight*: a preset's strength) or the input size\n"
        "(input.resize: N for the shorter side, or HxW). --values lists\n"
        "values separated by commas; A..B is every whole number from A to B, A..B:N is N\n"
        "evenly spaced numbers; pairs are HxW (3x5). Changing kernel_size keeps the kernel\n"
        "centred in the new size, as the window does. By default all frames share one range\n"
        "per channel (--range shared), so a value keeps its grey from frame to frame.",
        "layerlab sweep resources/samples/camera.png --pipeline "
        "resources/pipelines/conv-sharpen-gray.layerlab.json --layer 0 --param dilation "
        "--values 1..4 --out dilation.gif"))
    p.add_argument("image", metavar="IMAGE", help="the image file")
    p.add_argument("--pipeline", metavar="P", required=True, help="the stack (*.layerlab.json)")
    p.add_argument("--layer", metavar="N",
                   help="the layer whose parameter changes: its index (as 'layerlab info' "
                   "lists it) or its name; not needed for input.resize")
    p.add_argument("--param", metavar="NAME", required=True,
                   help="the argument, a tensor cell (weight[0,0,1,1]), a tensor's scale (weight*) "
                   "or input.resize")
    p.add_argument("--values", metavar="V1,V2,...", required=True,
                   help="the values, one frame each (A..B and A..B:N ranges allowed)")
    p.add_argument("--out", metavar="F", required=True,
                   help="F.gif, F.png (animated PNG) or a folder name without a suffix")
    p.add_argument("--stage", metavar="S",
                   help="the stage shown: its number, its name, 'input' or 'last' (default: "
                   "the layer's output; the last stage for input.resize)")
    p.add_argument("--format", choices=FORMATS,
                   help="override the format the --out name implies")
    p.add_argument("--duration", metavar="MS", type=_int_range(10, 60000), default=500,
                   help="how long each frame shows, in milliseconds (default 500)")
    p.add_argument("--loop", metavar="N", type=_int_range(0, 65535), default=0,
                   help="how often the animation plays (0, the default: forever)")
    p.add_argument("--range", choices=RANGES, default="shared", dest="levels",
                   help="shared (default): one range per channel over all frames, so the "
                   "animation does not flicker; frame: each frame its own range")
    p.add_argument("--normalize", choices=NORMALIZE_MODES, default="channel",
                   help="how values become grey levels, as in 'layerlab export' (default "
                   "channel)")
    p.add_argument("--colormap", choices=COLORMAPS, default="gray",
                   help="the colours (default gray)")
    p.add_argument("--channel", metavar="K", type=_int_range(0, 1 << 20),
                   help="show only channel K (default: all channels tiled)")
    p.add_argument("--zoom", metavar="N", type=_int_range(1, 16), default=1,
                   help="enlarge each pixel N times (nearest neighbour; for small stages)")
    p.add_argument("--weights", metavar="FILE",
                   help="a state_dict (.pt/.pth read with weights_only=True, or .safetensors) "
                   "applied onto the stack first")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where torch runs (default auto)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    return p


def _int_range(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo} to {hi}, not {n}")
        return n
    return parse


def _cmd_sweep(argv: Sequence[str]) -> int:
    args = _sweep_parser().parse_args(argv)
    from .core import sweep, sweep_output
    from .core.analysis import nonfinite_warnings
    from .core.engine import Engine, RunError, resolve_device
    from .core.imageio import ImageLoadError, load_image, to_tensor
    from .core.pipeline import Pipeline, PipelineError

    try:
        fmt = sweep_output.format_for(args.out, args.format)
        pipeline = Pipeline.load(args.pipeline)
    except (sweep.SweepError, PipelineError) as e:
        raise UsageError(str(e)) from None
    pipeline, _ = _with_weights(pipeline, args.weights)
    for w in nonfinite_warnings(pipeline):
        warn(w)
    try:
        target = sweep.parse_target(pipeline, args.layer, args.param)
        values = sweep.parse_values(pipeline, target, args.values)
        stage = sweep.resolve_stage(pipeline, target, args.stage)
        loaded = load_image(args.image)
        image = to_tensor(loaded.image, pipeline.input.mode)
        engine = Engine(resolve_device(args.device).type, channels_last=False,
                        memory_budget=1 << 62)  # the sweep checks each value's memory
        out, images = sweep_output.export_sweep(
            pipeline, image, target, values, stage, args.out, fmt=fmt,
            normalize=args.normalize, colormap=args.colormap, levels=args.levels,
            channel=args.channel, zoom=args.zoom, duration_ms=args.duration, loop=args.loop,
            engine=engine, record={"image": Path(args.image).name,
                                   "pipeline": Path(args.pipeline).name},
            protect=[args.image, args.pipeline])
    except (sweep.SweepError, ImageLoadError, RunError) as e:
        raise UsageError(str(e)) from None
    if not args.quiet:
        w, h = images[0].size
        name = pipeline.stage_names()[stage]
        say(f"wrote {len(images)} frames of stage {stage} ({terminal_text(name)}), "
            f"{w} x {h}, to {terminal_text(out.name)} ({fmt})")
    return 0

"""``layerlab export``: its arguments, one image with a progress bar or a batch of images,
and ``--weights`` (shared with ``code`` and ``info``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .console import PROG, UsageError, _fmt, _Parser, say, terminal_text, warn


def _export_parser() -> argparse.ArgumentParser:
    from .core.render import COLORMAPS, NORMALIZE_MODES

    p = _Parser(prog=f"{PROG} export", **_fmt(
        "Run the stack P on the full-size IMAGE and write, per stage (stage 0 is the input):\n"
        "  DIR/NN-<name>/ch-KKK.png  every channel\n"
        "  DIR/NN-<name>/grid.png    all channels tiled\n"
        "  DIR/NN-<name>.npy         with --raw: float32 C x H x W, exactly what torch "
        "computed\n"
        "  DIR/NN-<name>/histogram.csv  with --histograms: bin edges, stage and channel "
        "counts\n"
        "  DIR/manifest.json         image, pipeline, device, versions, and per stage its "
        "shape,\n"
        "                            statistics, levels (lo, hi per channel) and file "
        "names\n"
        "DIR is written completely or not at all; an existing non-empty DIR is refused\n"
        "unless --overwrite is given and DIR is an earlier LayerLab export. The current\n"
        "folder, the home folder, / and folders holding IMAGE or P are always refused.\n\n"
        "Several images, a folder or a glob make a batch: DIR/<image>/ per image (the layout\n"
        "above) and DIR/manifest.json listing them; decoding, torch and PNG encoding overlap,\n"
        "and --shard i/n exports one of n disjoint parts (one per machine or job).",
        "layerlab export resources/samples/camera.png --pipeline "
        "resources/pipelines/conv-sharpen-gray.layerlab.json --out sharpened --raw"))
    p.add_argument("image", metavar="IMAGE", nargs="+",
                   help="the image file; or several, folders (their image files) or quoted "
                   "globs ('photos/*.jpg'): a batch, one sub-folder per image")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pipeline", metavar="P", help="the stack (*.layerlab.json)")
    source.add_argument("--model", metavar="NAME",
                        help="a torchvision classification model instead of a stack (resnet18, "
                        "vgg16, ...): its modules' outputs in execution order, named by module "
                        "path; --weights is then a state_dict file, or 'trained' for "
                        "torchvision's file in torch's hub cache (never downloaded)")
    p.add_argument("--out", metavar="DIR", required=True, help="the folder to create")
    p.add_argument("--weights", metavar="FILE",
                   help="a state_dict (.pt/.pth read with weights_only=True, or .safetensors) "
                   "applied onto the stack: keys by layer name, nn.Sequential index or order; "
                   "unmatched keys and layers without a tensor are listed, a shape mismatch "
                   "is an error")
    p.add_argument("--stages", metavar="PATTERN",
                   help="with --model: only the stages whose module path matches, e.g. "
                   "'layer*.conv1' (fnmatch; several comma-separated); the input and "
                   "normalize stages are always written")
    p.add_argument("--seed", type=int, default=0,
                   help="with --model and no --weights: the seed of its random weights "
                   "(default 0)")
    p.add_argument("--labels", metavar="FILE",
                   help="class names for a classifier's predictions.json: one per line, or a "
                   ".json list (instead of the pipeline's classes)")
    p.add_argument("--gradcam", metavar="CLASS", nargs="?", const="", default=None,
                   help="also write gradcam.png and gradcam.npy: the Grad-CAM heat map of "
                   "CLASS (an index or a class name; default the top class) at the last conv "
                   "stage (--gradcam-stage N for another)")
    p.add_argument("--gradcam-stage", metavar="N", type=int, default=None,
                   help="the stage Grad-CAM weighs (a stage with feature maps)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where torch runs (auto: CUDA when available; default auto)")
    p.add_argument("--raw", action="store_true", help="also write each stage as float32 .npy")
    p.add_argument("--normalize", choices=NORMALIZE_MODES, default="channel",
                   help="how values become gray levels: each channel's min..max (channel, "
                   "the default), the stage's min..max (stage), [0, 1] clipped (fixed), or "
                   "-max|x|..max|x| with 0 at mid-grey (symmetric)")
    p.add_argument("--colormap", choices=COLORMAPS, default="gray",
                   help="gray writes 8-bit gray PNGs, the others RGB (default gray)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DIR if it is an earlier LayerLab export (its manifest.json "
                   "lists everything in it)")
    p.add_argument("--histograms", action="store_true",
                   help="also write each stage's histogram as NN-<name>/histogram.csv (bin "
                   "edges, the stage's and every channel's counts)")
    p.add_argument("--bins", metavar="N", type=_parse_bins, default=64,
                   help="histogram bins for --histograms (1 to 65536, default 64)")
    p.add_argument("--png-level", type=_png_level, default=None, metavar="0-9",
                   help=f"zlib compression level of the PNGs (default {PNG_DEFAULT_LEVEL}: "
                   "fast, ~20%% larger than level 6; the pixels are the same at every level)")
    p.add_argument("--jobs", "-j", type=_jobs, default=None, metavar="N",
                   help="threads encoding PNGs (default: one per core)")
    p.add_argument("--shard", metavar="i/n", type=_shard,
                   help="export only the i-th of n equal parts of the images (1 <= i <= n; "
                   "every n-th image of the ordered list, starting with the i-th): n jobs "
                   "with the same arguments export disjoint parts that make the whole")
    p.add_argument("--progress", action="store_true",
                   help="show the progress bar even when stderr is not a terminal")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print nothing on success (no progress bar either)")
    return p


def _parse_bins(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bins must be a whole number, not {text!r}") from None
    if not 1 <= n <= 65536:
        raise argparse.ArgumentTypeError(f"bins must be 1 to 65536, not {n}")
    return n


PNG_DEFAULT_LEVEL = 1  # layerlab.core.png.DEFAULT_LEVEL (not imported: --help stays light)


def _png_level(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 9, not "
                                         f"{text!r}") from None
    if not 0 <= n <= 9:
        raise argparse.ArgumentTypeError(f"must be from 0 to 9, not {n}")
    return n


def _jobs(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"must be from 1 to 256, not {n}")
    return n


def _shard(text: str) -> tuple[int, int]:
    from .core.batch import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--shard ")) from None


def _cmd_export(argv: Sequence[str]) -> int:
    args = _export_parser().parse_args(argv)
    if args.model is None and args.stages is not None:
        raise UsageError("--stages selects stages of a --model")
    if args.model is not None:
        return _export_model(args)
    from .core.analysis import nonfinite_warnings
    from .core.batch import is_pattern
    from .core.export import ExportError
    from .core.pipeline import Pipeline, PipelineError

    try:
        pipeline = Pipeline.load(args.pipeline)
    except PipelineError as e:
        raise UsageError(str(e)) from None
    pipeline, mapping = _with_weights(pipeline, args.weights)
    pipeline = with_labels(pipeline, args.labels)
    for w in nonfinite_warnings(pipeline):
        warn(w)
    single = (len(args.image) == 1 and args.shard is None and not os.path.isdir(args.image[0])
              and (os.path.lexists(args.image[0]) or not is_pattern(args.image[0])))
    options = {"device": args.device, "raw": args.raw, "normalize": args.normalize,
               "colormap": args.colormap, "overwrite": args.overwrite,
               "pipeline_path": args.pipeline, "jobs": args.jobs}
    if args.png_level is not None:
        options["png_level"] = args.png_level
    import time
    t0 = time.perf_counter()
    try:
        if single:
            manifest = _export_one(args, pipeline, options, mapping)
        else:
            if args.histograms or mapping is not None or args.gradcam is not None:
                raise UsageError("--histograms, --weights and --gradcam work on one image at "
                                 "a time")
            manifest = _export_many(args, pipeline, options)
    except ExportError as e:
        raise UsageError(str(e)) from None
    if not args.quiet:
        seconds = time.perf_counter() - t0
        if single:
            files = sum(len(s["images"]) + 1 + (s["raw"] is not None)
                        + (s.get("histogram") is not None) for s in manifest["stages"])
            say(f"wrote {len(manifest['stages'])} stages ({files} files and manifest.json) "
                f"to {terminal_text(args.out)} on {manifest['device']} in {seconds:.2f} s")
        else:
            n = len(manifest["images"])
            part = (f" (shard {manifest['shard']['index']}/{manifest['shard']['count']})"
                    if manifest["shard"] else "")
            rate = f", {n / seconds:.2f} images/s" if seconds > 0 and n else ""
            say(f"wrote {n} image export(s){part} and manifest.json to "
                f"{terminal_text(args.out)} on {manifest['device']} in {seconds:.2f} s{rate}")
    return 0


def _export_model(args) -> int:
    from .cli_model import cmd_export

    options = {"device": args.device, "raw": args.raw, "normalize": args.normalize,
               "colormap": args.colormap, "overwrite": args.overwrite, "jobs": args.jobs}
    if args.png_level is not None:
        options["png_level"] = args.png_level
    bar = _ProgressBar(enabled=not args.quiet and (args.progress or _isatty(sys.stderr)))
    return cmd_export(args, options, bar)


def _export_one(args, pipeline, options: dict, mapping) -> dict:
    """One image: a progress bar of files written (tqdm) on a terminal, or with --progress."""
    from .core.export import ExportError, export_run
    from .core.export_extras import GradCamOption

    gradcam = None
    if args.gradcam is not None:
        gradcam = GradCamOption(args.gradcam or None, args.gradcam_stage)
    elif args.gradcam_stage is not None:
        raise UsageError("--gradcam-stage goes with --gradcam")
    bar = _ProgressBar(enabled=not args.quiet and (args.progress or _isatty(sys.stderr)))
    try:
        return export_run(args.image[0], pipeline, args.out, progress=bar.stage,
                          file_progress=bar.file, histograms=args.histograms, bins=args.bins,
                          gradcam=gradcam,
                          weights=None if mapping is None
                          else mapping.to_manifest(file=args.weights), **options)
    except ExportError:
        bar.close(keep=False)  # the error line stands alone
        raise
    finally:
        bar.close()


def _export_many(args, pipeline, options: dict) -> dict:
    """A batch: one line per image on stderr (unless --quiet), also when not a terminal, so
    a job runner's log shows how far a long shard got."""
    from .core.batch import export_batch

    def progress(done: int, total: int, text: str) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {terminal_text(text)}", file=sys.stderr, flush=True)

    return export_batch(args.image, pipeline, args.out, shard_of=args.shard,
                        progress=progress, **options)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _ProgressBar:
    """``layerlab export``'s progress on stderr: one bar of files written, with the rate and
    the time left (tqdm), labelled with the stage being written. Does nothing when disabled."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._label = ""

    def stage(self, done: int, total: int, text: str) -> None:
        self._label = terminal_text(text)[:40]
        if self._bar is not None:
            self._bar.set_description_str(self._label, refresh=False)

    def file(self, done: int, total: int, path: str) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True,
                             desc=self._label, leave=True, mininterval=0.2)
        self._bar.update(done - self._bar.n)

    def close(self, keep: bool = True) -> None:
        if self._bar is not None:
            self._bar.leave = keep
            self._bar.close()
            self._bar = None


_METHODS = {"name": "layer name", "index": "nn.Sequential index", "order": "order and shape"}


def with_labels(pipeline, path: str | None):
    """``--labels FILE``: the pipeline with the file's class names."""
    if path is None:
        return pipeline
    from dataclasses import replace

    from .core.predictions import LabelsError, read_labels

    try:
        return replace(pipeline, classes=read_labels(path))
    except LabelsError as e:
        raise UsageError(f"--labels {e}") from None


def _with_weights(pipeline, path: str | None):
    """``--weights``: the pipeline with the file's tensors, and the mapping (None without
    the option). Unmatched keys and layers left without a tensor are warnings; an unreadable
    file or a shape mismatch is an error (nothing written)."""
    if path is None:
        return pipeline, None
    from .core.weights import WeightsError, apply_weights, match_state_dict, read_state_dict

    try:
        state = read_state_dict(path)
        mapping = match_state_dict(pipeline, state, source=Path(path).name)
        loaded = apply_weights(pipeline, mapping)
    except WeightsError as e:
        raise UsageError(f"--weights {e}") from None
    for line in mapping.problems():
        warn(line)
    return loaded, mapping

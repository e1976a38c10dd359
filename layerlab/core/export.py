"""Export a run: per-stage PNGs, a mosaic, raw arrays and a manifest (``layerlab export``).

Layout of an export folder ``DIR`` (stage 0 is the input; ``NN`` is the stage index, two digits
or more; ``<name>`` the stage name made safe for a file name)::

    DIR/manifest.json
    DIR/NN-<name>/ch-KKK.png     one per channel (KKK: channel index, three digits or more)
    DIR/NN-<name>/grid.png       all channels tiled row-major, 2-pixel black gutters
    DIR/NN-<name>.npy            with raw=True: float32, the stage exactly as torch computed
                                 it (C x H x W; (N,) after Flatten/Linear)
    DIR/NN-<name>/histogram.csv  with histograms=True: see :mod:`layerlab.core.histcsv`

``manifest.json`` records the format and versions, and per stage the normalisation, the
colormap and each channel's ``levels`` [lo, hi] the pixels were mapped with; it is standard
JSON (anything not finite is null).

PNG pixels follow :mod:`layerlab.core.render`: ``to_uint8(stage, normalize)`` (levels from the
whole stage, so ``stage``/``symmetric`` compare channels), written as 8-bit gray for the
``gray`` colormap and as RGB through the colormap's table otherwise.

A vector stage (N,) has no channels: ``images`` is empty and ``grid.png`` is a heat strip, the
N values row-major in rows of ``ncols = max(min(N, 64), ceil(sqrt(N)))`` cells, each value a
square of ``cell = clip(512 // max(rows, ncols), 1, 8)`` pixels, normalised like a
one-channel stage; cells after the last value are black. A 2-D stage (A, B) is written as one
A x B image ``ch-000.png``.

Everything is written into a hidden sibling folder first and renamed to ``DIR`` at the end, so
a failed or cancelled export leaves nothing behind and ``DIR`` is never half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from . import export_extras, histcsv, png, render, safeio, tensorfile
from .analysis import OverBudget, analyze, check_memory
from .engine import Engine, RunError, resolve_device
from .imageio import ImageLoadError, LoadedImage, load_image, to_tensor
from .outdir import (  # noqa: F401 - check_target, not_an_export: public here too
    ExportError,
    check_target,
    commit,
    make_temp_dir,
    not_an_export,
)
from .pipeline import DEFAULT_MEMORY_BUDGET, Pipeline, PipelineError
from .stage_images import (  # noqa: F401 - the names callers use, as exported here
    GUTTER,
    StageImages,
    _channel_maker,
    _grid,
    _mosaic,
    check_options,
    stage_images,
    stage_uint8,
    vector_strip,
)

PNG_COMPRESS_LEVEL = png.DEFAULT_LEVEL  # zlib level; see layerlab.core.png for the choice
NAME_MAX = 40  # characters kept of a stage name in file names

ProgressFn = Callable[[int, int, str], None]
# file_progress(done, total, path): after each file of an export is written (path relative
# to the export folder; the last one is manifest.json).
FileProgressFn = Callable[[int, int, str], None]
MANIFEST_FORMAT = "layerlab.export"
MANIFEST_VERSION = 1
CancelFn = Callable[[], bool]


class ExportCancelled(ExportError):
    """The export was cancelled; nothing was written."""


# --- names ----------------------------------------------------------------------------------

def safe_name(name: str, fallback: str = "stage") -> str:
    """``name`` as a safe file-name part: letters, digits, ``-``, ``_`` and single dots only.

    Separators, ``..``, control and other characters become ``_``; the result never starts or
    ends with a dot, dash or underscore and has at most :data:`NAME_MAX` characters.
    """
    text = unicodedata.normalize("NFC", str(name))
    kept = "".join(ch if (ch.isalnum() or ch in "-_.") else "_" for ch in text)
    kept = re.sub(r"\.{2,}", ".", kept)
    kept = re.sub(r"_{2,}", "_", kept)
    kept = kept.strip("._-")[:NAME_MAX].rstrip("._-")
    return kept or fallback


def stage_dir_name(index: int, name: str) -> str:
    """``NN-<name>``: the stage index (two digits or more) and the safe name."""
    return f"{index:02d}-{safe_name(name)}"


def channel_file_name(channel: int) -> str:
    return f"ch-{channel:03d}.png"


# --- PNG helpers (also used by the window's "export channel / grid" actions) -----------------

def encode_png(image: np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of a uint8 (H, W) gray or (H, W, 3) RGB array (zlib ``level`` 0 to 9)."""
    return png.encode(image, level)


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG atomically (temporary file + rename). Returns the path."""
    p = Path(path)
    try:
        safeio.write_file(p, encode_png(image))
    except OSError as e:
        raise ExportError(f"cannot write {p}: {safeio.reason_for(e, writing=True)}") from None
    return p


def export_stage_images(output: torch.Tensor, directory: str | os.PathLike, *,
                        normalize: str = "channel", colormap: str = "gray",
                        channels: bool = True, grid: bool = True,
                        cancel: CancelFn | None = None,
                        writer: png.ParallelWriter | None = None) -> dict[str, Any]:
    """Write one stage's ``ch-KKK.png`` files and ``grid.png`` into ``directory``.

    Returns ``{"images": [file names], "grid": file name or None, "levels": (C, 2) array}``
    (the levels the pixels were mapped with). The folder must exist. With a ``writer`` the
    files are queued on its threads (the grid first: it is the largest) and are on disk once
    ``writer.wait()`` returns; without one they are written here.
    """
    d = Path(directory)
    if writer is None:
        writer = png.ParallelWriter(PNG_COMPRESS_LEVEL, workers=0, write=_write_file)
    check_options(normalize, colormap)
    t = output.detach()
    vector = t.dim() == 2
    if vector or t.dim() not in (3, 4):
        imgs = stage_images(output, normalize, colormap)  # vectors; other shapes raise
        u8, levels = imgs.channels, imgs.levels

        def make_grid() -> np.ndarray:
            return imgs.grid
    else:
        t4 = t if t.dim() == 4 else t.reshape(1, *t.shape[-2:])
        u8, levels = stage_uint8(t4, normalize), render.levels(t4, normalize)

        def make_grid() -> np.ndarray:
            return _grid(u8, colormap)
    names: list[str] = []
    grid_name = None
    pixel = 1 if colormap == "gray" else 3
    if grid:
        grid_name = "grid.png"
        writer.submit(d / grid_name, make_grid, 2 * u8.size * pixel)
    if channels and not vector:
        for k in range(u8.shape[0]):
            if cancel is not None and cancel():
                raise ExportCancelled("export cancelled")
            name = channel_file_name(k)
            writer.submit(d / name, _channel_maker(u8, k, colormap), u8[k].size * pixel)
            names.append(name)
    return {"images": names, "grid": grid_name, "levels": levels}


def export_channel_png(output: torch.Tensor, channel: int, path: str | os.PathLike, *,
                       normalize: str = "channel", colormap: str = "gray") -> Path:
    """Save one channel of a stage (normalised with the whole stage's levels) as a PNG."""
    imgs = stage_images(output, normalize, colormap)
    if imgs.vector:
        return save_png(imgs.grid, path)
    if not 0 <= channel < imgs.channels.shape[0]:
        raise ExportError(f"channel {channel} does not exist (the stage has "
                          f"{imgs.channels.shape[0]})")
    return save_png(imgs.channel_image(channel), path)


def export_grid_png(output: torch.Tensor, path: str | os.PathLike, *,
                    normalize: str = "channel", colormap: str = "gray") -> Path:
    """Save a stage's mosaic (or a vector's heat strip) as a PNG."""
    return save_png(stage_images(output, normalize, colormap).grid, path)


# --- the whole run ---------------------------------------------------------------------------

def export_run(image_path: str | os.PathLike | LoadedImage, pipeline: Pipeline | str | os.PathLike,
               out_dir: str | os.PathLike, *, device: str = "auto", raw: bool = False,
               normalize: str = "channel", colormap: str = "gray", overwrite: bool = False,
               progress: ProgressFn | None = None,
               cancel: CancelFn | None = None,
               pipeline_path: str | os.PathLike | None = None,
               png_level: int = PNG_COMPRESS_LEVEL, jobs: int | None = None,
               histograms: bool = False, bins: int = histcsv.DEFAULT_BINS,
               file_progress: FileProgressFn | None = None,
               weights: dict[str, Any] | None = None,
               gradcam: export_extras.GradCamOption | None = None) -> dict[str, Any]:
    """Run ``pipeline`` on the full-size image and write the export folder ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). Raises
    :class:`ExportError` (one-line message) for bad input, an existing non-empty ``out_dir``
    without ``overwrite``, an ``out_dir`` that is not a LayerLab export with ``overwrite``, a
    dangerous ``out_dir`` (see :func:`check_target`), an unwritable location or a failing
    stage, and :class:`ExportCancelled` when ``cancel()`` returns true; in every such case
    nothing is left on disk. ``progress(done, total, text)`` is called as stages are written,
    ``file_progress(done, total, path)`` after every file. With ``histograms`` each stage
    folder also gets ``histogram.csv`` (``bins`` bins, see :mod:`layerlab.core.histcsv`).
    ``weights`` (``WeightsMapping.to_manifest()``) records which file and keys were applied
    onto the pipeline; the manifest's ``"weights"`` is null without it. A classifier's
    export also has ``predictions.json``; ``gradcam`` adds ``gradcam.png`` / ``.npy``.
    ``pipeline_path`` is the file a ready :class:`Pipeline` came from: messages name it and
    ``out_dir`` may not contain it. A terminating signal (SIGTERM, SIGHUP, ...) in the main
    thread removes the unfinished folder and raises :class:`safeio.Terminated`.
    ``png_level`` is the zlib level of the PNGs (0 to 9; pixels are the same at every level)
    and ``jobs`` the number of threads encoding them (default: one per core; 0 encodes in
    the calling thread).
    """
    check_options(normalize, colormap)
    _check_png_options(png_level, jobs)
    if histograms and not 1 <= int(bins) <= histcsv.MAX_BINS:
        raise ExportError(f"bins must be 1 to {histcsv.MAX_BINS}, not {bins}")
    if not isinstance(pipeline, Pipeline) and pipeline_path is None:
        pipeline_path = pipeline
    source = Path(pipeline_path).name if pipeline_path is not None else None
    try:
        if not isinstance(pipeline, Pipeline):
            pipeline = Pipeline.load(pipeline)
        protect = [p for p in (_image_file(image_path), pipeline_path) if p is not None]
        target = check_target(out_dir, overwrite, protect)
        loaded, image_label = _load(image_path)
        x, shapes = prepare(pipeline, loaded, source)
        dev = resolve_device(device)
    except (PipelineError, ImageLoadError, RunError) as e:
        raise ExportError(str(e)) from None

    with safeio.cleanup_on_signals():
        tmp = make_temp_dir(target)
        extras = Extras(int(bins) if histograms else 0, file_progress, root=tmp)
        extras.total = (sum(_files_of(s.shape, raw, extras.bins > 0) for s in shapes) + 1
                        + pipeline_files(pipeline) + export_extras.predicts(shapes)
                        + (2 if gradcam is not None else 0))
        with removed_on_failure(tmp, target):
            with png.ParallelWriter(png_level, jobs, write=extras.write) as writer:
                engine = export_engine(dev)
                t0 = time.perf_counter()
                manifest = write_export(tmp, pipeline, x, shapes, engine, image_label, writer,
                                        raw=raw, normalize=normalize, colormap=colormap,
                                        progress=progress, cancel=cancel, extras=extras,
                                        weights=weights, gradcam=gradcam)
                writer.wait(cancel)
                _check_cancel(cancel)
                extras.wrote("manifest.json")  # reported last: every PNG is on disk now
            commit(tmp, target, overwrite)
        if progress is not None:
            total = len(shapes) + 1
            progress(total, total, f"wrote {len(shapes)} stages in "
                                   f"{time.perf_counter() - t0:.2f} s")
        return manifest


def _check_png_options(png_level: int, jobs: int | None) -> None:
    try:
        png.check_level(png_level)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int)
                             or not 0 <= jobs <= 256):
        raise ExportError(f"jobs must be a whole number from 0 to 256, not {jobs!r}")


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise ExportCancelled("export cancelled")


@contextlib.contextmanager
def removed_on_failure(tmp: Path, target: Path):
    """Any failure inside removes the unfinished folder ``tmp`` and is raised as
    :func:`export_failure` says (one ExportError line for a failed write)."""
    try:
        yield
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = export_failure(e, target)
        if failure is e:
            raise
        raise failure from None


def export_failure(e: BaseException, target: Path) -> BaseException:
    """The exception to raise for ``e`` once the unfinished folder is removed: ours and
    interruptions as they are, a failed write or out-of-memory as a one-line ExportError."""
    if isinstance(e, ExportError | KeyboardInterrupt | safeio.Terminated):
        return e
    if isinstance(e, png.Aborted):
        return ExportCancelled("export cancelled")
    if isinstance(e, OSError):
        reason = safeio.reason_for(e, writing=True, where=target.parent)
        return ExportError(f"cannot write the export {target}: {reason}")
    if isinstance(e, torch.cuda.OutOfMemoryError | MemoryError):
        return ExportError("out of memory while exporting; try --device cpu or a smaller "
                           "image")
    return e


def prepare(pipeline: Pipeline, loaded: LoadedImage, source: str | None = None
            ) -> tuple[torch.Tensor, list]:
    """The input tensor of ``loaded`` and the stage shapes, after the memory check."""
    x = to_tensor(loaded.image, pipeline.input.mode)
    hw = (int(x.shape[-2]), int(x.shape[-1]))
    try:
        shapes = _check_peak_memory(pipeline, hw)
    except PipelineError as e:  # the shape error names the pipeline file
        if source and not e.source and not isinstance(e, OverBudget):
            raise ExportError(f"{source}: {e}") from None
        raise
    return x, shapes


def export_engine(dev: torch.device) -> Engine:
    # NCHW, as the tutorials run: exports carry torch's exact numbers, bit for bit, while
    # the window's live preview uses the faster channels_last layout (within ~1e-6).
    return Engine(str(dev.type), channels_last=False, memory_budget=1 << 62)  # peak checked


def _image_file(image: str | os.PathLike | LoadedImage) -> str | os.PathLike | None:
    if isinstance(image, LoadedImage):
        return image.path
    return image


@dataclass
class Extras:
    """Histogram CSVs (``bins`` > 0) and the per-file progress of one export (files are
    written on several threads, so the count is locked)."""

    bins: int = 0
    file_progress: FileProgressFn | None = None
    root: Path | None = None  # the folder paths are reported relative to
    total: int = 0
    done: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def write(self, path: Path, data) -> None:
        _write_file(path, data)
        self.wrote(path.relative_to(self.root).as_posix() if self.root else path.name)

    def wrote(self, name: str) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        if self.file_progress is not None:
            self.file_progress(done, self.total, name)


def _files_of(shape, raw: bool, histograms: bool) -> int:
    """How many files an export writes for a stage of ``shape`` (without the batch)."""
    images = int(shape[0]) if len(shape) == 3 else (1 if len(shape) == 2 else 0)
    return images + 1 + int(raw) + int(histograms)


def write_export(folder: Path, pipeline: Pipeline, x: torch.Tensor, shapes, engine: Engine,
                 image_label: str, writer: png.ParallelWriter, *, raw: bool, normalize: str,
                 colormap: str, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None, extras: Extras | None = None,
                 weights: dict[str, Any] | None = None,
                 gradcam: export_extras.GradCamOption | None = None) -> dict[str, Any]:
    """Run the stack and write one image's export (stages, the classifier's
    ``predictions.json``, with ``gradcam`` its Grad-CAM, and manifest.json) into the
    existing empty ``folder``; PNGs are queued on ``writer`` (on disk after its ``wait``).
    Returns the manifest."""
    total = len(shapes) + 1  # every stage, then the manifest and the final rename
    stages: list[dict[str, Any]] = []
    write = extras.write if extras is not None else _write_file
    last_vector = input_stage = None
    for result in engine.run(pipeline, x, cache=False, cancel=cancel):
        if result.index == 0 and gradcam is not None:
            input_stage = result.output  # the picture the heat map is drawn on
        if result.output is not None and result.output.dim() == 2:
            last_vector = (result.index, result.name,
                           result.output[0].detach().to("cpu", torch.float32).numpy())
        else:
            last_vector = None
        _check_cancel(cancel)
        if result.error:
            raise ExportError(result.error)
        if progress is not None:
            progress(result.index, total, f"stage {result.index} of {len(shapes) - 1}: "
                                          f"{result.name}")
        stages.append(_write_stage(folder, result, raw, normalize, colormap, cancel, writer,
                                   extras))
        del result  # let the engine free this stage once the next one is computed
        writer.wait_below(png.MAX_PENDING_BYTES // 4, cancel)  # bounded memory, see there
    _check_cancel(cancel)
    if len(stages) != len(shapes):  # pragma: no cover - the engine stops only on cancel
        raise ExportError(f"the run stopped after {len(stages)} of {len(shapes)} stages")
    predictions = gradcam_record = None
    if last_vector is not None:
        predictions = export_extras.write_predictions(folder, pipeline, *last_vector, write)
    if gradcam is not None:
        if last_vector is None:
            raise ExportError("Grad-CAM (--gradcam) needs a stack whose last stage is a "
                              "vector of class scores")
        try:
            gradcam_record = export_extras.write_gradcam(
                folder, pipeline, x, input_stage, gradcam, len(last_vector[2]),
                engine.device.type, write)
        except export_extras.GradCamExportError as e:
            raise ExportError(str(e)) from None
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "layerlab_version": __version__,
        "torch_version": str(torch.__version__),
        "image": image_label,
        "pipeline": _pipeline_record(folder, pipeline, extras),
        "weights": weights,
        "device": str(engine.device),
        "normalize": normalize,
        "colormap": colormap,
        "stages": stages,
        "predictions": predictions,
        "gradcam": gradcam_record,
    }
    # Standard JSON only: anything not finite (stats, NaN/inf weights in the embedded
    # pipeline) is written as null.
    _write_file(folder / "manifest.json",
                (json.dumps(json_safe(manifest), indent=1, allow_nan=False)
                 + "\n").encode("utf-8"))
    return manifest


PIPELINE_TENSORS = "pipeline.safetensors"


def pipeline_files(pipeline: Pipeline) -> int:
    """Files an export writes for the pipeline itself: its tensors file when they are big."""
    return int(pipeline.tensor_bytes() > tensorfile.EXTERNAL_THRESHOLD_BYTES)


def _pipeline_record(folder: Path, pipeline: Pipeline, extras: Extras | None) -> dict:
    """The manifest's ``"pipeline"``: inline, or with big tensors in ``pipeline.safetensors``
    beside the manifest (as Save keeps them beside a pipeline file)."""
    if not pipeline_files(pipeline):
        return pipeline.to_dict()
    record, data = pipeline.to_dict_with_tensors(PIPELINE_TENSORS)
    _write_file(folder / PIPELINE_TENSORS, data)
    if extras is not None:
        extras.wrote(PIPELINE_TENSORS)
    return record


def _write_stage(tmp: Path, result, raw: bool, normalize: str, colormap: str,
                 cancel: CancelFn | None, writer: png.ParallelWriter | None = None,
                 extras: Extras | None = None) -> dict[str, Any]:
    extras = extras or Extras(root=tmp)
    folder = stage_dir_name(result.index, result.name)
    (tmp / folder).mkdir()
    out = result.output
    files = export_stage_images(out, tmp / folder, normalize=normalize, colormap=colormap,
                                cancel=cancel, writer=writer)
    raw_name = None
    if raw:
        raw_name = f"{folder}.npy"
        arr = np.ascontiguousarray(out[0].detach().to("cpu", torch.float32).numpy())
        _write_file(tmp / raw_name, npy_chunks(arr))
        extras.wrote(raw_name)
    hist_name = None
    if extras.bins:
        hist_name = f"{folder}/{histcsv.HISTOGRAM_FILE}"
        _write_file(tmp / hist_name, histcsv.histogram_csv(out, extras.bins).encode("ascii"))
        extras.wrote(hist_name)
    st = render.stats(out)
    stats = {k: _json_float(st[k]) for k in ("min", "max", "mean", "std")}
    if stats["min"] is None:  # no finite value at all: no spread either
        stats["std"] = None
    return {
        "index": result.index,
        "name": result.name,
        "type": result.type,
        "shape": [int(d) for d in result.shape],
        "stats": stats,
        "normalize": normalize,
        "colormap": colormap,
        "levels": [[_json_float(lo), _json_float(hi)] for lo, hi in files["levels"]],
        "grid": f"{folder}/{files['grid']}",
        "images": [f"{folder}/{n}" for n in files["images"]],
        "raw": raw_name,
        "histogram": hist_name,
    }


def _json_float(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def json_safe(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, inf) replaced by None, so
    ``json.dumps(..., allow_nan=False)`` writes standard JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return json_safe(value.tolist())
    return value


def _load(image: str | os.PathLike | LoadedImage) -> tuple[LoadedImage, str]:
    if isinstance(image, LoadedImage):
        preview = image.source_size is not None and image.source_size != image.size
        if preview and image.path:  # the window shows a preview; exports use the full image
            return load_image(image.path), os.fspath(image.path)
        return image, os.fspath(image.path) if image.path else "(image in memory)"
    return load_image(image), os.fspath(image)


def _check_peak_memory(pipeline: Pipeline, hw: tuple[int, int]) -> list:
    """The stage shapes, after refusing a stack whose one-pass peak (the input, the current
    stage's input and output, the modules' weights) is over the budget."""
    analysis = analyze(pipeline, hw)
    shapes = analysis.stage_shapes()  # raises the first broken layer, located
    check_memory(analysis, DEFAULT_MEMORY_BUDGET, cached=False)
    return shapes


def npy_chunks(arr: np.ndarray):
    """The bytes of ``np.save(f, arr)`` for a C-contiguous array, as chunks (no copy)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    yield header.getvalue()
    if arr.size:
        yield memoryview(np.ascontiguousarray(arr)).cast("B")


def _write_file(path: Path, data) -> None:
    safeio.write_new_file(path, data)

"""``layerlab export --model``: a torchvision model's stages in the export layout of a stack.

The folder is the one :mod:`layerlab.core.export` writes (``NN-<name>/ch-KKK.png``,
``grid.png``, ``NN-<name>.npy`` with ``raw``, ``histogram.csv``, ``manifest.json``), stage
``NN`` numbered as in the model's full stage list (a ``stages`` pattern leaves gaps, so a
stage keeps its number whatever is selected). The manifest's ``"pipeline"`` is null and
``"model"`` says what ran: the name, the weights, the preprocessing and the pattern; each
stage also has its module ``"path"``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from .. import __version__
from . import histcsv, png, safeio
from .engine import RunError, resolve_device
from .export import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    PNG_COMPRESS_LEVEL,
    CancelFn,
    ExportCancelled,
    ExportError,
    Extras,
    FileProgressFn,
    ProgressFn,
    _files_of,
    _load,
    _write_file,
    _write_stage,
    check_options,
    check_target,
    commit,
    json_safe,
    make_temp_dir,
    removed_on_failure,
)
from .imageio import ImageLoadError, LoadedImage, to_tensor
from .models import ModelError, OpenedModel, run_model, select_stages

__all__ = ["export_model", "model_manifest"]


def model_manifest(opened: OpenedModel, stages: str | Sequence[str] | None) -> dict[str, Any]:
    """The manifest's ``"model"`` record."""
    return {"name": opened.name, "source": "torchvision", "weights": opened.weights,
            "seed": opened.seed, "parameters": opened.parameter_count,
            "input": {**opened.input_spec.to_dict(), "interpolation": opened.interpolation},
            "stages": stages if stages is None or isinstance(stages, str) else list(stages)}


def export_model(image_path: str | os.PathLike | LoadedImage, opened: OpenedModel,
                 out_dir: str | os.PathLike, *, stages: str | Sequence[str] | None = None,
                 device: str = "auto", raw: bool = False, normalize: str = "channel",
                 colormap: str = "gray", overwrite: bool = False,
                 progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                 png_level: int = PNG_COMPRESS_LEVEL, jobs: int | None = None,
                 histograms: bool = False, bins: int = histcsv.DEFAULT_BINS,
                 file_progress: FileProgressFn | None = None) -> dict[str, Any]:
    """Run ``opened`` on the image and write the export folder ``out_dir`` (written
    completely or not at all, as :func:`layerlab.core.export.export_run`). Returns the
    manifest. Raises :class:`ExportError` with one line for bad input and failures."""
    check_options(normalize, colormap)
    try:
        png.check_level(png_level)
    except ValueError as e:
        raise ExportError(str(e)) from None
    if histograms and not 1 <= int(bins) <= histcsv.MAX_BINS:
        raise ExportError(f"bins must be 1 to {histcsv.MAX_BINS}, not {bins}")
    try:
        kept = select_stages(opened.plan, stages)
        protect = [p for p in (_image_file(image_path),) if p is not None]
        target = check_target(out_dir, overwrite, protect)
        loaded, image_label = _load(image_path)
        x = to_tensor(loaded.image, "rgb")
        dev = resolve_device(device)
    except (ModelError, ImageLoadError, RunError) as e:
        raise ExportError(str(e)) from None

    with safeio.cleanup_on_signals():
        tmp = make_temp_dir(target)
        extras = Extras(int(bins) if histograms else 0, file_progress, root=tmp)
        extras.total = sum(_files_of(s.shape, raw, extras.bins > 0) for s in kept) + 1
        with removed_on_failure(tmp, target):
            with png.ParallelWriter(png_level, jobs, write=extras.write) as writer:
                t0 = time.perf_counter()
                results = run_model(opened, x, stages=stages, cancel=cancel, device=dev)
                _check_cancel(cancel)
                paths = {s.index: s.path for s in kept}
                written = []
                total = len(results) + 1
                while results:
                    result = results.pop(0)  # each stage is freed once written
                    if result.error:
                        raise ExportError(f"stage {result.index} ({result.name}): "
                                          f"{result.error}")
                    if progress is not None:
                        progress(len(written) + 1, total, f"stage {result.index}: "
                                                          f"{result.name}")
                    entry = _write_stage(tmp, result, raw, normalize, colormap, cancel,
                                         writer, extras)
                    written.append({**entry, "path": paths.get(result.index, "")})
                    del result
                    writer.wait_below(png.MAX_PENDING_BYTES // 4, cancel)
                if len(written) != len(kept):  # pragma: no cover - run_model stops on cancel
                    raise ExportError(f"the run stopped after {len(written)} of {len(kept)} "
                                      f"stages")
                manifest = {
                    "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                    "layerlab_version": __version__, "torch_version": str(torch.__version__),
                    "image": image_label, "pipeline": None,
                    "model": model_manifest(opened, stages),
                    "weights": None if opened.report is None else opened.report.to_manifest(),
                    "device": str(dev), "normalize": normalize, "colormap": colormap,
                    "stages": written,
                }
                _write_file(tmp / "manifest.json",
                            (json.dumps(json_safe(manifest), indent=1, allow_nan=False)
                             + "\n").encode("utf-8"))
                writer.wait(cancel)
                _check_cancel(cancel)
                extras.wrote("manifest.json")
            commit(tmp, target, overwrite)
        if progress is not None:
            progress(total, total, f"wrote {len(written)} stages in "
                                   f"{time.perf_counter() - t0:.2f} s")
        return manifest


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise ExportCancelled("export cancelled")


def _image_file(image: str | os.PathLike | LoadedImage) -> str | os.PathLike | None:
    return image.path if isinstance(image, LoadedImage) else image

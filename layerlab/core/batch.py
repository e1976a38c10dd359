"""Batch export: several images, a folder or a glob through one stack (``layerlab export``).

Layout of a batch export folder ``DIR``::

    DIR/manifest.json          {"format": "layerlab.batch", "version": 1, "pipeline",
                                "device", "shard": {"index", "count"} or null,
                                "images": [{"image", "folder", "manifest"}]}
    DIR/<image>/...            one image's export, exactly the layout (and manifest.json) of
                               a single-image export (see :mod:`layerlab.core.export`)

``<image>`` is the image's file name without its suffix, made safe (``safe_name``); names
that collide get ``-2``, ``-3``, ... in the order of the full image list, so an image keeps
its folder name whichever shard it falls in.

The work overlaps: the next image is decoded on a thread while the current one runs through
the stack, and PNGs are encoded on a pool of threads while later stages and images compute
(the queue of pixels waiting to be encoded is bounded, so memory stays bounded).

Shards: ``--shard i/n`` (1 <= i <= n) keeps every n-th image of the full, ordered list,
starting with the i-th, so n machines given the same arguments export disjoint parts that
together are the whole list.

The whole batch is built in a hidden folder beside ``DIR`` and renamed at the end, as a
single export is: a failure, a bad image, Ctrl+C or a terminating signal leaves nothing.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import png, safeio
from .engine import RunError, resolve_device
from .export import (
    CancelFn,
    ExportCancelled,
    _check_cancel,
    _check_png_options,
    _write_file,
    check_options,
    export_engine,
    prepare,
    removed_on_failure,
    safe_name,
    write_export,
)
from .imageio import ImageLoadError, load_image
from .outdir import ExportError, check_target, commit, make_temp_dir
from .pipeline import Pipeline, PipelineError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".ico")
MAX_SHARDS = 1_000_000
BATCH_FORMAT = "layerlab.batch"

# (images done, images in this batch, text)
ImageProgressFn = Callable[[int, int, str], None]


def is_pattern(text: str) -> bool:
    return glob.has_magic(text)


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The images named by ``inputs``, in a fixed order: a file as given, a folder's image
    files (by suffix, not hidden, not in sub-folders) sorted by name, a glob's matching files
    sorted. An image named twice is kept once (its first place). Raises ExportError when an
    input is missing or matches nothing, or when there is no image at all."""
    found: list[Path] = []
    seen: set[str] = set()

    def add(p: Path) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            found.append(p)

    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES
                           and not q.name.startswith(".") and q.is_file())
            if not files:
                raise ExportError(f"cannot export {p.name!r}: it is a directory and holds no "
                                  f"image files (by suffix: {', '.join(IMAGE_SUFFIXES[:7])}, "
                                  f"...)")
            for q in files:
                add(q)
        elif p.exists() or p.is_symlink():
            add(p)
        elif is_pattern(text):
            files = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
            if not files:
                raise ExportError(f"no file matches {text!r}")
            for q in files:
                add(q)
        else:
            raise ExportError(f"cannot open {p.name!r}: the file does not exist ({p})")
    if not found:
        raise ExportError("no images to export")
    return found


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` as (i, n) with 1 <= i <= n; ValueError with the reason otherwise."""
    parts = str(text).strip().split("/")
    if len(parts) != 2:
        raise ValueError(f"--shard must look like i/n (for example 2/8), not {text!r}")
    try:
        i, n = (int(v) for v in parts)
    except ValueError:
        raise ValueError(f"--shard must be two whole numbers i/n (for example 2/8), not "
                         f"{text!r}") from None
    if not 1 <= n <= MAX_SHARDS:
        raise ValueError(f"the shard count n in {text} must be from 1 to {MAX_SHARDS}")
    if not 1 <= i <= n:
        raise ValueError(f"the shard number i in {text} must be from 1 to {n} "
                         f"(shards are numbered 1 to n)")
    return i, n


def shard(items: Sequence, index: int, count: int) -> list:
    """The ``index``-th of ``count`` disjoint parts (1-based): items index-1, index-1+count,
    ...; the parts for 1..count together are ``items`` exactly."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return list(items[index - 1::count])


def folder_names(images: Sequence[Path]) -> list[str]:
    """A distinct, safe sub-folder name per image (see the module docstring)."""
    names: list[str] = []
    used: set[str] = {"manifest.json"}
    for p in images:
        base = safe_name(p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name, "image")
        name, k = base, 1
        while name.lower() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        names.append(name)
    return names


def export_batch(images: Sequence[str | os.PathLike], pipeline: Pipeline, out_dir,
                 *, device: str = "auto", raw: bool = False, normalize: str = "channel",
                 colormap: str = "gray", overwrite: bool = False,
                 shard_of: tuple[int, int] | None = None,
                 progress: ImageProgressFn | None = None, cancel: CancelFn | None = None,
                 pipeline_path: str | os.PathLike | None = None,
                 png_level: int = png.DEFAULT_LEVEL, jobs: int | None = None
                 ) -> dict[str, Any]:
    """Export every image of ``images`` (files, folders, globs; see :func:`collect_images`),
    or the shard ``shard_of = (i, n)`` of them, into the batch folder ``out_dir``.

    Returns the batch manifest. Errors are :class:`ExportError`, one line naming the image;
    nothing is left on disk after any error, a cancel or a terminating signal.
    ``progress(done, total, text)`` is called after each image is computed and queued.
    """
    check_options(normalize, colormap)
    _check_png_options(png_level, jobs)
    all_images = collect_images(images)
    names = folder_names(all_images)
    pairs = list(zip(all_images, names, strict=True))
    if shard_of is not None:
        pairs = shard(pairs, *shard_of)
    source = Path(pipeline_path).name if pipeline_path is not None else None
    protect = [p for p, _ in pairs] + ([pipeline_path] if pipeline_path is not None else [])
    target = check_target(out_dir, overwrite, protect)
    try:
        dev = resolve_device(device)
    except RunError as e:
        raise ExportError(str(e)) from None

    with safeio.cleanup_on_signals():
        tmp = make_temp_dir(target)
        with removed_on_failure(tmp, target):
            with png.ParallelWriter(png_level, jobs) as writer, \
                    ThreadPoolExecutor(1, thread_name_prefix="layerlab-decode") as decoder:
                entries = _export_all(pairs, pipeline, source, dev, tmp, writer, decoder,
                                      raw, normalize, colormap, progress, cancel)
                writer.wait(cancel)
                _check_cancel(cancel)
            manifest = {"format": BATCH_FORMAT, "version": 1,
                        "pipeline": pipeline.to_dict(), "device": str(dev),
                        "shard": None if shard_of is None else
                        {"index": shard_of[0], "count": shard_of[1]},
                        "images": entries}
            _write_file(tmp / "manifest.json",
                        (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))
            commit(tmp, target, overwrite)
    return manifest


def _decode(path: Path):
    try:
        return load_image(path), None
    except ImageLoadError as e:
        return None, str(e)


def _export_all(pairs, pipeline, source, dev, tmp: Path, writer, decoder, raw, normalize,
                colormap, progress, cancel) -> list[dict[str, Any]]:
    engine = export_engine(dev)
    entries: list[dict[str, Any]] = []
    ahead: Future | None = decoder.submit(_decode, pairs[0][0]) if pairs else None
    for k, (path, name) in enumerate(pairs):
        _check_cancel(cancel)
        t0 = time.perf_counter()
        loaded, error = ahead.result()
        # Decode the next image while this one computes and encodes.
        ahead = decoder.submit(_decode, pairs[k + 1][0]) if k + 1 < len(pairs) else None
        if error is not None:
            raise ExportError(error)
        label = os.fspath(path)
        try:
            x, shapes = prepare(pipeline, loaded, source)
        except (PipelineError, RunError) as e:
            raise ExportError(f"{label}: {e}") from None
        del loaded
        (tmp / name).mkdir()
        try:
            write_export(tmp / name, pipeline, x, shapes, engine, label, writer, raw=raw,
                         normalize=normalize, colormap=colormap, cancel=cancel)
        except ExportCancelled:
            raise
        except ExportError as e:
            raise ExportError(f"{label}: {e}") from None
        del x
        entries.append({"image": label, "folder": name, "manifest": f"{name}/manifest.json"})
        if progress is not None:
            progress(k + 1, len(pairs), f"{path.name} ({time.perf_counter() - t0:.2f} s)")
    return entries


def is_batch_manifest(data: object) -> bool:
    return isinstance(data, dict) and data.get("format") == BATCH_FORMAT \
        and isinstance(data.get("images"), list)

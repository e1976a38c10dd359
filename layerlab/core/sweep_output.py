"""A sweep's frames as pictures with their value printed on them, written as an animated GIF,
an animated PNG (APNG) or a folder of PNGs.

Layout of every frame (all frames of one sweep have the same size)::

    +--------------------------------+
    | stride = 2                     |  LABEL_HEIGHT rows: the value, in the colormap's
    +--------------------------------+  lightest colour on its darkest
    |        the stage picture       |  the stage (all channels tiled as in an export's
    |  (centred; the rest is dark)   |  grid.png, or one channel), zoomed, centred
    +--------------------------------+

Each frame is an 8-bit index image: the stage's normalised values (``render``'s formula)
are the indices and the colormap's 256-entry table is the palette (plain 8-bit gray for the
``gray`` colormap). So GIF's 256-colour limit loses nothing: every format decodes to exactly
``lut[u8]``. Gutters, padding and the label's background use the colormap's darkest entry,
the label's text its lightest (drawn without antialiasing, so it adds no colours).

Levels are ``shared`` by default: one (lo, hi) per channel over all frames, so a value has
the same colour in every frame and the animation shows the change, not each frame's own
contrast (``frame``: each frame stretched on its own, which flickers as its range moves).

Formats, by the output name: ``.gif`` an animated GIF; ``.png`` or ``.apng`` an animated
PNG; a name without a suffix a folder with ``frame-000.png``, ... and ``sweep.json`` (the
parameter, the values and the file of each). Files are written atomically, the folder in a
hidden sibling renamed at the end: a failed sweep leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import render, safeio
from .stage_images import GUTTER, vector_strip
from .sweep import SweepError, SweepFrame, shared_levels

__all__ = ["FORMATS", "LABEL_HEIGHT", "RANGES", "SweepPicture", "check_output", "export_sweep",
           "format_for", "frame_pictures", "image_origin", "sweep_images", "write_sweep"]

FORMATS = ("gif", "apng", "frames")
RANGES = ("shared", "frame")
LABEL_HEIGHT = 16
LABEL_PAD = 4
MAX_ZOOM = 16
MAX_FRAME_PIXELS = 64 * 1024 * 1024


def format_for(out: str | os.PathLike, fmt: str | None = None) -> str:
    """The format the output name (or ``fmt``) asks for (see the module docstring)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise SweepError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix == ".gif":
        return "gif"
    if suffix in (".png", ".apng"):
        return "apng"
    if suffix == "":
        return "frames"
    raise SweepError(f"cannot tell the format from {Path(out).name!r}: end the name with .gif "
                     f"or .png (animated PNG), give a folder name without a suffix (one PNG "
                     f"per frame), or pass --format")


@dataclass(frozen=True)
class SweepPicture:
    """One frame's stage picture before the label: ``indices`` (H, W) uint8, palette indices
    (the normalised values) of the colormap."""

    indices: np.ndarray
    label: str


def dark_light(colormap: str) -> tuple[int, int]:
    """The indices of the colormap's darkest and lightest entries (by luma)."""
    lut = render.colormap_lut(colormap).astype(np.float64)
    luma = lut @ np.array([0.299, 0.587, 0.114])
    return int(np.argmin(luma)), int(np.argmax(luma))


def frame_pictures(frames: list[SweepFrame], *, normalize: str = "channel",
                   colormap: str = "gray", levels: str = "shared",
                   channel: int | None = None, zoom: int = 1) -> list[SweepPicture]:
    """The stage picture of each frame, normalised with shared or per-frame levels."""
    if normalize not in render.NORMALIZE_MODES:
        raise SweepError(f"normalize must be one of {', '.join(render.NORMALIZE_MODES)}, "
                         f"not {normalize!r}")
    if colormap not in render.COLORMAPS:
        raise SweepError(f"colormap must be one of {', '.join(render.COLORMAPS)}, "
                         f"not {colormap!r}")
    if levels not in RANGES:
        raise SweepError(f"range must be one of {', '.join(RANGES)}, not {levels!r}")
    if not 1 <= int(zoom) <= MAX_ZOOM:
        raise SweepError(f"zoom must be from 1 to {MAX_ZOOM}, not {zoom}")
    if channel is not None:
        for f in frames:
            c = f.output.shape[1] if f.output.dim() == 4 else 1
            if not 0 <= channel < c:
                raise SweepError(f"at {f.label}: the stage has {c} channel(s); --channel "
                                 f"{channel} is not one of them")
    dark, _ = dark_light(colormap)
    shared = shared_levels(frames, normalize) if levels == "shared" else None
    out = []
    for f in frames:
        if shared is not None:
            u8 = render.to_uint8_with_levels(f.output, shared, normalize)
        else:
            u8 = render.to_uint8(f.output, normalize)
        if f.output.dim() == 2:  # a vector: the export's heat strip
            img = vector_strip(u8[0, 0], "gray")
        elif channel is not None:
            img = u8[channel]
        else:
            img = tiled(u8, dark)
        if zoom > 1:
            img = np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)
        out.append(SweepPicture(np.ascontiguousarray(img), f.label))
    return out


def tiled(u8: np.ndarray, fill: int) -> np.ndarray:
    """All channels tiled row-major with GUTTER-pixel gutters (an export's grid.png layout)."""
    c, h, w = u8.shape
    if c == 1:
        return u8[0]
    out = np.full(render.grid_shape(c, h, w, padding=GUTTER), fill, np.uint8)
    for k, (y, x) in enumerate(render.grid_layout(c, h, w, padding=GUTTER)):
        out[y:y + h, x:x + w] = u8[k]
    return out


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_width(text: str) -> int:
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=_font())
    return int(box[2] - min(0, box[0]))


def image_origin(canvas_hw: tuple[int, int], picture_hw: tuple[int, int]) -> tuple[int, int]:
    """Where (y, x) a frame's picture sits on the canvas below the label: centred."""
    return (LABEL_HEIGHT + (canvas_hw[0] - LABEL_HEIGHT - picture_hw[0]) // 2,
            (canvas_hw[1] - picture_hw[1]) // 2)


def sweep_images(pictures: list[SweepPicture], colormap: str = "gray") -> list[Image.Image]:
    """The labelled frames as Pillow images (mode ``L`` for gray, else ``P`` with the
    colormap as palette), all of one size."""
    dark, light = dark_light(colormap)
    h = LABEL_HEIGHT + max(p.indices.shape[0] for p in pictures)
    w = max(max(p.indices.shape[1] for p in pictures),
            max(_text_width(p.label) for p in pictures) + 2 * LABEL_PAD)
    if h * w > MAX_FRAME_PIXELS:
        raise SweepError(f"a frame would be {h} x {w} pixels, more than the "
                         f"{MAX_FRAME_PIXELS >> 20} M pixels a frame may have; lower --zoom, "
                         f"pick one --channel or use a smaller image")
    palette = None if colormap == "gray" else render.colormap_lut(colormap).tobytes()
    images = []
    for p in pictures:
        canvas = np.full((h, w), dark, np.uint8)
        y, x = image_origin((h, w), p.indices.shape)
        canvas[y:y + p.indices.shape[0], x:x + p.indices.shape[1]] = p.indices
        label = Image.new("1", (w, LABEL_HEIGHT), 0)
        draw = ImageDraw.Draw(label)
        draw.fontmode = "1"  # no antialiasing: the text adds no colours to the palette
        draw.text((LABEL_PAD, 2), p.label, fill=1, font=_font())
        mask = np.asarray(label, dtype=bool)
        band = canvas[:LABEL_HEIGHT]
        band[mask] = light
        band[~mask] = dark
        im = Image.fromarray(canvas, "L")
        if palette is not None:
            im = Image.frombytes("P", (w, h), canvas.tobytes())
            im.putpalette(palette)
        images.append(im)
    return images


def _encode(images: list[Image.Image], fmt: str, duration_ms: int, loop: int) -> bytes:
    buf = io.BytesIO()
    kw: dict[str, Any] = {"save_all": True, "append_images": images[1:],
                          "duration": duration_ms, "loop": loop}
    if fmt == "gif":
        images[0].save(buf, format="GIF", optimize=False, **kw)
    else:
        images[0].save(buf, format="PNG", **kw)
    return buf.getvalue()


def write_sweep(images: list[Image.Image], out: str | os.PathLike, fmt: str, *,
                duration_ms: int = 500, loop: int = 0,
                record: dict[str, Any] | None = None,
                protect: list[str | os.PathLike] = ()) -> Path:
    """Write the frames to ``out`` in ``fmt`` (atomically; see the module docstring).

    ``record`` is what ``sweep.json`` says beside a folder of frames; ``protect`` are the
    input files, which ``out`` may never be or hold."""
    if not images:
        raise SweepError("there are no frames to write")
    if not 10 <= int(duration_ms) <= 60000:
        raise SweepError(f"the frame duration must be 10 to 60000 ms, not {duration_ms}")
    target = check_output(out, fmt, protect)
    if fmt == "frames":
        return _write_folder(images, target, record or {})
    data = _encode(images, fmt, int(duration_ms), int(loop))
    try:
        safeio.write_file(target, data)
    except OSError as e:
        raise SweepError(f"cannot write {target}: {safeio.reason_for(e, writing=True)}") from None
    return target


def check_output(out: str | os.PathLike, fmt: str, protect: list[str | os.PathLike] = ()
                 ) -> Path:
    """The absolute output path, or :class:`SweepError` when it cannot be written: an empty
    name, an input of the sweep, a missing folder, a folder where a file is meant, or an
    existing non-empty folder for ``frames``."""
    if not os.fspath(out).strip():
        raise SweepError("the output name (--out) is empty")
    target = Path(os.path.abspath(os.fspath(out)))
    real = os.path.realpath(target)
    for p in protect:
        if real == os.path.realpath(os.fspath(p)):
            raise SweepError(f"--out {Path(out).name} is an input of the sweep; writing there "
                             f"would destroy it; choose another name")
    try:
        safeio.check_name_length(target)
        if not target.parent.is_dir():
            raise SweepError(f"cannot write {target}: the folder {target.parent} does not "
                             f"exist")
        if fmt != "frames" and target.is_dir():
            raise SweepError(f"{target} is a folder; give a file name ending in .gif or .png")
        if fmt == "frames" and target.exists():
            if not target.is_dir() or target.is_symlink():
                raise SweepError(f"{target} exists and is not a folder; choose another --out")
            if any(target.iterdir()):
                raise SweepError(f"{target} already exists and is not empty; choose a new "
                                 f"folder")
    except safeio.FileProblem as e:
        raise SweepError(f"cannot write {Path(out).name}: {e}") from None
    except OSError as e:
        raise SweepError(f"cannot use {target}: {safeio.reason_for(e)}") from None
    return target


def frame_file_name(k: int) -> str:
    return f"frame-{k:03d}.png"


def _write_folder(images: list[Image.Image], target: Path, record: dict[str, Any]) -> Path:
    try:
        tmp = safeio.make_temp_dir(target, "sweep")
    except safeio.FileProblem as e:
        raise SweepError(f"cannot write in {target.parent}: {e}") from None
    try:
        names = []
        for k, im in enumerate(images):
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            names.append(frame_file_name(k))
            safeio.write_new_file(tmp / names[-1], buf.getvalue())
        info = {"format": "layerlab.sweep", "version": 1, **record, "frames": names}
        safeio.write_new_file(tmp / "sweep.json", (json.dumps(info, indent=1) + "\n").encode())
        with safeio.critical():
            if target.is_dir():
                target.rmdir()  # empty (checked above)
            os.rename(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise SweepError(f"cannot write {target}: "
                             f"{safeio.reason_for(e, writing=True)}") from None
        raise
    return target


def export_sweep(pipeline, image, target, values: list, stage: int, out: str | os.PathLike, *,
                 fmt: str | None = None, normalize: str = "channel", colormap: str = "gray",
                 levels: str = "shared", channel: int | None = None, zoom: int = 1,
                 duration_ms: int = 500, loop: int = 0, engine=None,
                 record: dict[str, Any] | None = None,
                 protect: list[str | os.PathLike] = (), progress=None, cancel=None
                 ) -> tuple[Path, list[Image.Image]]:
    """Run the sweep (:func:`layerlab.core.sweep.run_sweep`), draw its frames and write them:
    the whole of ``layerlab sweep`` and of the window's "Animate parameter", in one call.
    Returns the path written and the frames. Raises :class:`SweepError` (nothing written)."""
    from .sweep import run_sweep, value_text

    fmt = format_for(out, fmt)
    check_output(out, fmt, protect)  # before the work, not only after it
    frames = run_sweep(pipeline, image, target, values, stage, engine=engine,
                       progress=progress, cancel=cancel)
    pictures = frame_pictures(frames, normalize=normalize, colormap=colormap, levels=levels,
                              channel=channel, zoom=zoom)
    images = sweep_images(pictures, colormap)
    info = {"layer": target.layer, "param": target.label, "stage": stage,
            "values": [value_text(v) for v in values], "range": levels,
            "normalize": normalize, "colormap": colormap, **(record or {})}
    if cancel is not None and cancel():
        from .sweep import SweepCancelled

        raise SweepCancelled("sweep cancelled")
    path = write_sweep(images, out, fmt, duration_ms=duration_ms, loop=loop, record=info,
                       protect=protect)
    return path, images

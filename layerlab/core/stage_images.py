"""One stage as the pictures an export writes: uint8 channels (with the levels they were
mapped with), the mosaic of all channels, or a vector's heat strip (layout: see
:mod:`layerlab.core.export`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import render
from .outdir import ExportError

GUTTER = 2  # pixels between grid tiles
VECTOR_MAX_COLS = 64
VECTOR_SIDE = 512


def check_options(normalize: str, colormap: str) -> None:
    if normalize not in render.NORMALIZE_MODES:
        raise ExportError(f"normalize must be one of {', '.join(render.NORMALIZE_MODES)}, "
                          f"not {normalize!r}")
    if colormap not in render.COLORMAPS:
        raise ExportError(f"colormap must be one of {', '.join(render.COLORMAPS)}, "
                          f"not {colormap!r}")


@dataclass(frozen=True)
class StageImages:
    """What the PNGs of one stage show, as uint8 arrays ready to encode.

    ``channels`` is (C, H, W) uint8 (empty for vector stages); ``grid`` is (H', W') for the
    gray colormap and (H', W', 3) otherwise.
    """

    channels: np.ndarray
    grid: np.ndarray
    colormap: str
    vector: bool
    levels: np.ndarray | None = None  # (C, 2) float64 (lo, hi) per channel ((1, 2) vector)

    def channel_image(self, k: int) -> np.ndarray:
        u8 = self.channels[k]
        return u8 if self.colormap == "gray" else render.apply_colormap(u8, self.colormap)


def stage_images(output: torch.Tensor, normalize: str = "channel",
                 colormap: str = "gray") -> StageImages:
    """Normalise a stage output ((1, C, H, W), (1, A, B) or a (1, N) vector) for export."""
    check_options(normalize, colormap)
    t = output.detach()
    if t.dim() == 4 or t.dim() == 3:  # (1, C, H, W), or a 2-D stage (1, A, B) as one channel
        u8, lv = render.to_uint8_levels(t if t.dim() == 4 else t.reshape(1, *t.shape[-2:]),
                                        normalize)
        return StageImages(u8, _grid(u8, colormap), colormap, False, lv)
    if t.dim() == 2:  # (1, N)
        values, lv = render.to_uint8_levels(t.reshape(1, 1, -1), normalize)
        return StageImages(np.zeros((0, 0, 0), np.uint8), vector_strip(values[0, 0], colormap),
                           colormap, True, lv)
    raise ValueError(f"cannot export a stage of shape {tuple(t.shape)}")


def vector_strip(values_u8: np.ndarray, colormap: str = "gray") -> np.ndarray:
    """The heat strip of a vector stage (see the module docstring for the layout)."""
    v = np.asarray(values_u8, dtype=np.uint8).reshape(-1)
    n = max(1, v.size)
    ncols = max(min(n, VECTOR_MAX_COLS), math.ceil(math.sqrt(n)))
    rows = math.ceil(n / ncols)
    cell = max(1, min(8, VECTOR_SIDE // max(rows, ncols)))
    cells = np.zeros(rows * ncols, np.uint8)
    cells[: v.size] = v
    img = np.repeat(np.repeat(cells.reshape(rows, ncols), cell, axis=0), cell, axis=1)
    if colormap == "gray":
        return img
    rgb = render.apply_colormap(img, colormap)
    filled = np.zeros(rows * ncols, bool)
    filled[: v.size] = True
    mask = np.repeat(np.repeat(filled.reshape(rows, ncols), cell, axis=0), cell, axis=1)
    rgb[~mask] = 0
    return rgb


def _mosaic(u8: np.ndarray) -> np.ndarray:
    """``render.make_grid(u8, padding=GUTTER)``, built in its final array (one allocation,
    no cropped copy: a 12 MP, 16-channel stage makes a 192 MB mosaic)."""
    c, h, w = u8.shape
    if c == 1:
        return u8[0]
    out = np.zeros(render.grid_shape(c, h, w, padding=GUTTER), np.uint8)
    for k, (y, x) in enumerate(render.grid_layout(c, h, w, padding=GUTTER)):
        out[y:y + h, x:x + w] = u8[k]
    return out


def _grid(u8: np.ndarray, colormap: str) -> np.ndarray:
    c, h, w = u8.shape
    gray = _mosaic(u8)
    if colormap == "gray":
        return gray
    rgb = render.apply_colormap(gray, colormap)
    if c > 1:
        # Gutters and empty tiles hold no data: black, not the colormap's colour for 0.
        rows_gutter = (np.arange(gray.shape[0]) % (h + GUTTER)) >= h
        cols_gutter = (np.arange(gray.shape[1]) % (w + GUTTER)) >= w
        rgb[rows_gutter] = 0
        rgb[:, cols_gutter] = 0
        ncols = math.ceil(math.sqrt(c))
        rows = math.ceil(c / ncols)
        for i in range(c, rows * ncols):
            y0, x0 = (i // ncols) * (h + GUTTER), (i % ncols) * (w + GUTTER)
            rgb[y0:y0 + h, x0:x0 + w] = 0
    return rgb


U8_CHUNK_BYTES = 128 << 20  # float32 values normalised at a time


def stage_uint8(t: torch.Tensor, normalize: str) -> np.ndarray:
    """``render.to_uint8(t, normalize)`` for a (1, C, H, W) stage, a few channels at a time
    when that gives the same bytes (``channel`` and ``fixed`` levels are per channel or
    none, and every channel's span is finite in float32), so a 12 MP, 16-channel stage
    needs 128 MB of temporaries instead of another 768 MB."""
    c = t.shape[1]
    step = max(1, U8_CHUNK_BYTES // max(1, t[0, 0].numel() * t.element_size()))
    if normalize not in ("channel", "fixed") or c <= step or t.is_floating_point() is False:
        return render.to_uint8(t, normalize)
    if not bool(torch.isfinite(t.amax() - t.amin())):  # NaN, inf or a float32 overflow
        return render.to_uint8(t, normalize)
    out = np.empty(tuple(t.shape[1:]), np.uint8)
    for k in range(0, c, step):
        out[k:k + step] = render.to_uint8(t[:, k:k + step], normalize)
    return out


def _channel_maker(u8: np.ndarray, k: int, colormap: str) -> Callable[[], np.ndarray]:
    if colormap == "gray":
        return lambda: u8[k]
    return lambda: render.apply_colormap(u8[k], colormap)



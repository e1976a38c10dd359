"""What the window draws of each stage: the full view of the stages it shows, a thumbnail of
every other one.

The full view is everything the feature view, the pointer and the histogram read: the mosaic
(``render.render_stage``), the exact float values, and later the histograms and statistics
(``render.add_stats``). Drawing it for every stage of a torchvision model costs several times
the forward pass, while the window shows one stage large and the rest as small thumbnails in
its strip. A thumbnail is made from a downsampled tensor instead:

* each channel keeps the levels of the full view (its exact min/max, per the normalisation),
* its tile is reduced by an integer ``factor`` with area averaging (``f x f`` blocks, the
  last partial block averaging the pixels it has), so the mosaic is about twice the strip's
  thumbnail size,
* then it goes through the same uint8 mapping and mosaic layout (one pixel between tiles).

Because the mapping is affine between the levels, a thumbnail pixel is within 1 (2 for the
``fixed`` normalisation, which truncates) of the mean of the full view's pixels it stands for;
with ``factor == 1`` it is the full mosaic itself. Vector stages (a classifier's scores) are
small and always drawn in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import render
from .colormaps import colormap_lut
from .render_cpu import Matrix, check_mode, levels_t
from .tensor_stats import as_chw, finite_minmax

# (height, width) the reduced mosaic aims at: twice the strip's 64 x 96 thumbnails.
THUMB_BOX = (128, 192)


@dataclass(frozen=True)
class Thumbnail:
    """A stage's mosaic made small: normalised uint8 values before any colormap."""

    mode: str
    colormap: str
    channels_u8: np.ndarray  # (C, h, w): each channel reduced by ``factor``, then mapped
    grid_u8: np.ndarray  # their mosaic, the full view's columns, ``padding`` between tiles
    grid_ncols: int
    padding: int
    factor: int  # full-view pixels per thumbnail pixel, along each axis
    levels: np.ndarray  # (C, 2) float64: the full view's (lo, hi) of each channel

    @property
    def num_channels(self) -> int:
        return int(self.channels_u8.shape[0])

    @property
    def lut(self) -> np.ndarray:
        return colormap_lut(self.colormap)


def stage_tensor(output: torch.Tensor) -> torch.Tensor:
    """The part of a stage's (1, ...) output the window shows: (C, H, W), or (N,) for a
    vector; a Flatten(start_dim=2) result (A x B) is one channel."""
    out = output[0]
    return out.unsqueeze(0) if out.dim() == 2 else out


def is_vector(shown: torch.Tensor) -> bool:
    return shown.dim() == 1


def needs_full(index: int, shown: torch.Tensor, stages: frozenset[int] | None) -> bool:
    """Whether stage ``index`` gets its full view: it is one of the ``stages`` shown (None:
    all of them), or a vector (cheap, and the predictions read the last one)."""
    return stages is None or index in stages or is_vector(shown)


def reduction_factor(c: int, h: int, w: int, box: tuple[int, int] = THUMB_BOX) -> int:
    """The integer factor that brings the full mosaic of c tiles of h x w down to about
    ``box`` (never below it along the limiting side)."""
    gh, gw = render.grid_shape(c, h, w)
    return max(1, gh // box[0], gw // box[1])


def full_view(shown: torch.Tensor, mode: str, colormap: str, bins: int
              ) -> tuple[render.RenderedStage, np.ndarray]:
    """The pictures of the full view (histograms and statistics come with ``add_stats``) and
    the exact float32 values the pointer reads."""
    rendered = render.render_stage(shown, mode, colormap, bins=bins, stats=False)
    values = shown.detach().to("cpu", torch.float32).numpy()
    return rendered, values


def thumbnail(shown: torch.Tensor, mode: str, colormap: str, *,
              box: tuple[int, int] = THUMB_BOX) -> Thumbnail:
    """A (C, H, W) stage's thumbnail from its tensor (see the module docstring)."""
    check_mode(mode)
    colormap_lut(colormap)
    x = as_chw(shown.detach())
    c, h, w = x.shape
    if x.numel() == 0:
        return thumbnail_of(render.render_stage(x, mode, colormap, stats=False), box=box)
    lo, hi, finite = _levels(x, mode)
    factor = reduction_factor(c, h, w, box)
    if factor == 1:  # already small: the full mosaic itself
        u8 = render._map_u8(x.contiguous(), lo, hi, mode, finite)
    else:
        small = x
        if not finite:  # NaN and -inf show as lo, +inf as hi: average those
            small = _finite_as_shown(x, lo, hi)
        if mode == "fixed":
            small = small.clamp(0.0, 1.0)  # the mapping clips first, so must the average
        u8 = render._map_u8(block_means(small, factor), lo, hi, mode, True)
    lv = torch.stack([lo, hi], 1).cpu().double().numpy()
    return _assemble(mode, colormap, u8.cpu().numpy(), factor, lv)


def thumbnail_of(rendered: render.RenderedStage, *, box: tuple[int, int] = THUMB_BOX
                 ) -> Thumbnail:
    """The thumbnail of a stage whose full view is drawn: its pixels area-averaged (rounded
    half up), the same reduction as :func:`thumbnail` applies to the tensor."""
    c, h, w = rendered.channels_u8.shape
    factor = reduction_factor(c, h, w, box) if rendered.channels_u8.size else 1
    if factor == 1:
        u8 = rendered.channels_u8
    else:
        px = torch.from_numpy(rendered.channels_u8).to(torch.float32)
        u8 = block_means(px, factor).add_(0.5).floor_().to(torch.uint8).numpy()
    return _assemble(rendered.mode, rendered.colormap, u8, factor, rendered.levels)


def block_means(x: torch.Tensor, f: int) -> torch.Tensor:
    """(C, H, W) -> contiguous (C, ceil(H/f), ceil(W/f)): the mean of each f x f block, the
    last blocks of a row or column averaging the pixels they have (``avg_pool2d`` with
    ``ceil_mode``, which is several times slower on channels_last data)."""
    c, h, w = x.shape
    hwc = x.permute(1, 2, 0)
    if c >= 8 and hwc.is_contiguous() and not x.is_contiguous():  # channels_last
        sums = _block_sums(_block_sums(hwc, 0, f), 1, f).permute(2, 0, 1)
    else:
        return torch.nn.functional.avg_pool2d(x[None], f, f, ceil_mode=True)[0].contiguous()
    rows = torch.full((sums.shape[1], 1), float(f), dtype=x.dtype, device=x.device)
    cols = torch.full((sums.shape[2],), float(f), dtype=x.dtype, device=x.device)
    rows[-1] = h - (h - 1) // f * f
    cols[-1] = w - (w - 1) // f * f
    return sums.div(rows * cols).contiguous()


def _block_sums(t: torch.Tensor, dim: int, f: int) -> torch.Tensor:
    """Sums of runs of ``f`` along ``dim`` (the last run may be shorter)."""
    n = t.shape[dim]
    k = n // f
    parts = []
    if k:
        parts.append(t.narrow(dim, 0, k * f).unflatten(dim, (k, f)).sum(dim + 1))
    if n > k * f:
        parts.append(t.narrow(dim, k * f, n - k * f).sum(dim, keepdim=True))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _assemble(mode: str, colormap: str, channels: np.ndarray, factor: int,
              levels: np.ndarray) -> Thumbnail:
    padding = 2 if factor == 1 else 1  # the full view's gutters, or one pixel
    _, cols = render._grid_dims(channels.shape[0], None)
    grid = render.make_grid(channels, cols, padding)
    return Thumbnail(mode, colormap, channels, grid, cols, padding, factor, levels)


def _levels(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(lo, hi) per channel exactly as render_stage maps with, and whether x is finite."""
    if x.device.type == "cpu":
        mat = Matrix(x)  # channels_last is reduced in place, as render_stage does
        ch_lo, ch_hi = mat.reduce(mat.t, "amin"), mat.reduce(mat.t, "amax")
        finite = bool(torch.isfinite(ch_lo).all() & torch.isfinite(ch_hi).all())
        if not finite:
            ch_lo, ch_hi, finite = finite_minmax(x.contiguous().reshape(x.shape[0], -1))
    else:
        ch_lo, ch_hi, finite = finite_minmax(x.contiguous().reshape(x.shape[0], -1))
    lo, hi = levels_t(x, mode, ch_lo, ch_hi)
    return lo, hi, finite


def _finite_as_shown(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """x with NaN and -inf replaced by its channel's lo and +inf by its hi (how the full view
    shows them: 0 and 255)."""
    lo3, hi3 = lo.reshape(-1, 1, 1).to(x.dtype), hi.reshape(-1, 1, 1).to(x.dtype)
    y = torch.where(torch.isnan(x) | (x == -torch.inf), lo3, x)
    return torch.where(y == torch.inf, hi3, y)

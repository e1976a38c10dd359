"""Stage tensors -> uint8 images, mosaics, histograms and statistics.

Heavy work runs in torch on the tensor's own device; only small arrays (uint8 images, counts,
a handful of floats) are copied out. Nothing here imports Qt.

Normalisation modes (how a float channel becomes uint8):

``channel``
    each channel is stretched over its own finite [min, max];
``stage``
    every channel uses the finite [min, max] of the whole stage, so channels compare;
``fixed``
    clip to [0, 1], then exactly what ``torchvision.transforms.ToPILImage`` shows:
    ``(x.clamp(0, 1) * 255)`` cast to uint8, i.e. truncated (the ToTensor round trip);
``symmetric``
    zero sits at mid-grey: ``m = max|x|`` over the stage and [-m, m] is stretched, which is
    ``0.5 + 0.5 * x / m`` on a 0..1 scale (``m == 0`` is treated as ``m == 1``).

For ``channel``, ``stage`` and ``symmetric`` the mapping with levels (lo, hi) is, evaluated
step by step in float32 (float64 for float64 tensors)::

    u8 = floor((x - lo) / (hi - lo) * 255 + 0.5)    (clipped to 0..255)

i.e. round-half-up of the linear stretch, with ``hi == lo`` giving 0 everywhere. NaN shows
as 0, +inf as 255 and -inf as 0; levels only ever come from finite values.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from .colormaps import COLORMAPS, apply_colormap, colormap_lut
from .render_cpu import (
    NORMALIZE_MODES,
    Matrix,
    StatsCancelled,
    check_mode,
    levels_t,
    pixels_cpu,
    stats_cpu,
)
from .tensor_stats import (
    STAT_KEYS,
    as_chw,
    bin_edges,
    channel_stats,
    finite_minmax,
    histogram,
    histogram_rows,
    stage_stats,
    stats,
    stats_dict,
)

__all__ = [
    "COLORMAPS",
    "NORMALIZE_MODES",
    "RenderedStage",
    "apply_colormap",
    "channel_at",
    "colormap_lut",
    "grid_layout",
    "grid_shape",
    "histogram",
    "levels",
    "make_grid",
    "render_stage",
    "stats",
    "to_uint8",
    "to_uint8_levels",
    "to_uint8_with_levels",
]

NormalizeMode = Literal["channel", "stage", "fixed", "symmetric"]

# --------------------------------------------------------------------------- normalisation


def _map_u8(
    x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, mode: str, finite: bool = False
) -> torch.Tensor:
    """uint8 (C, H, W) on x's device, per the module docstring; ``finite`` skips NaN cleanup."""
    if mode == "fixed":
        # ToPILImage: (pic * 255).astype(uint8) on the clipped values; the cast truncates.
        y = x.clamp(0.0, 1.0).mul_(255)
        return (y if finite else y.nan_to_num_(nan=0.0)).to(torch.uint8)
    lo = lo.reshape(-1, 1, 1)
    span = hi.reshape(-1, 1, 1) - lo
    if not bool(torch.isfinite(span).all()):
        # hi - lo overflowed float32; the same formula in float64 stays finite.
        x, lo = x.double(), lo.double()
        span = hi.double().reshape(-1, 1, 1) - lo
    flat = span == 0
    y = (x - lo).div_(torch.where(flat, 1.0, span)).mul_(255).add_(0.5).clamp_(0.0, 255.0)
    # x >= lo, so y >= 0.5 and the truncating cast to uint8 is the floor of the formula.
    if not finite:
        y.nan_to_num_(nan=0.0)
        if bool(flat.any()):
            y.masked_fill_(flat.expand_as(y), 0.0)  # +inf in a constant channel stays 0
    return y.to(torch.uint8)


def levels(tensor: torch.Tensor, mode: NormalizeMode = "channel") -> np.ndarray:
    """The (lo, hi) each channel is mapped with, as a float64 array of shape (C, 2)."""
    x = as_chw(tensor)
    lo, hi = levels_t(x, mode)
    return torch.stack([lo, hi], dim=1).cpu().double().numpy()


def to_uint8(tensor: torch.Tensor, mode: NormalizeMode = "channel") -> np.ndarray:
    """Normalise a (C, H, W) tensor (or (1, C, H, W)) to uint8 (C, H, W) on its device."""
    return to_uint8_levels(tensor, mode)[0]


def to_uint8_levels(tensor: torch.Tensor, mode: NormalizeMode = "channel"
                    ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`to_uint8` and the (C, 2) float64 (lo, hi) each channel was mapped with
    (what :func:`levels` gives), from one pass over the data."""
    x = as_chw(tensor)
    c = x.shape[0]
    check_mode(mode)
    ch_lo, ch_hi, finite = finite_minmax(x.reshape(c, -1))
    lo, hi = levels_t(x, mode, ch_lo, ch_hi)
    u8 = _map_u8(x, lo, hi, mode, finite).cpu().numpy()
    return u8, torch.stack([lo, hi], dim=1).cpu().double().numpy()


def to_uint8_with_levels(tensor: torch.Tensor, lv: np.ndarray,
                         mode: NormalizeMode = "channel") -> np.ndarray:
    """:func:`to_uint8` with given (C, 2) levels instead of the tensor's own, e.g. one
    range shared by the frames of an animation (a (1, 2) row applies to every channel)."""
    x = as_chw(tensor)
    check_mode(mode)
    lv_t = torch.as_tensor(np.asarray(lv, np.float64), dtype=x.dtype if x.is_floating_point()
                           else torch.float32, device=x.device)
    lv_t = lv_t.expand(x.shape[0], 2) if lv_t.shape[0] == 1 else lv_t
    if lv_t.shape != (x.shape[0], 2):
        raise ValueError(f"levels must be (C, 2) for {x.shape[0]} channels, not "
                         f"{tuple(lv_t.shape)}")
    return _map_u8(x, lv_t[:, 0], lv_t[:, 1], mode).cpu().numpy()


# --------------------------------------------------------------------------- mosaics


def _grid_dims(c: int, ncols: int | None) -> tuple[int, int]:
    if c < 1:
        raise ValueError("a grid needs at least one channel")
    ncols = math.ceil(math.sqrt(c)) if ncols is None else max(1, min(int(ncols), c))
    return math.ceil(c / ncols), ncols


def grid_shape(
    c: int, h: int, w: int, ncols: int | None = None, padding: int = 2
) -> tuple[int, int]:
    """(height, width) of the mosaic of ``c`` tiles of h x w, padding only between tiles."""
    rows, cols = _grid_dims(c, ncols)
    return rows * (h + padding) - padding, cols * (w + padding) - padding


def grid_layout(
    c: int, h: int, w: int, ncols: int | None = None, padding: int = 2
) -> list[tuple[int, int]]:
    """Top-left (y, x) of each channel's tile in :func:`make_grid`'s mosaic, row-major."""
    _, cols = _grid_dims(c, ncols)
    return [((i // cols) * (h + padding), (i % cols) * (w + padding)) for i in range(c)]


@functools.lru_cache(maxsize=64)
def _mosaic_plan(c: int, h: int, w: int, ncols: int, padding: int) -> tuple:
    """The mosaic's (height, width), its tile corners as a tuple and as the int64 ``top``
    and ``left`` arrays the kernels take (shared: never written); kept, since a stage is
    drawn again and again at the same size."""
    origins = tuple(grid_layout(c, h, w, ncols, padding))
    top, left = np.array(origins, np.int64).reshape(c, 2).T.copy()
    return grid_shape(c, h, w, ncols, padding), origins, top, left


def channel_at(
    y: int, x: int, c: int, h: int, w: int, ncols: int | None = None, padding: int = 2
) -> int | None:
    """The channel whose tile holds mosaic pixel (y, x), or None for padding/outside."""
    _, cols = _grid_dims(c, ncols)
    if y < 0 or x < 0:
        return None
    r, ry = divmod(int(y), h + padding)
    q, rx = divmod(int(x), w + padding)
    i = r * cols + q
    if ry >= h or rx >= w or q >= cols or i >= c:
        return None
    return i


def make_grid(
    images: np.ndarray,
    ncols: int | None = None,
    padding: int = 2,
    pad_value: int | tuple[int, int, int] = 0,
) -> np.ndarray:
    """Tile (C, H, W) or (C, H, W, 3) uint8 images row-major into one (H', W'[, 3]) mosaic.

    ``ncols`` defaults to ``ceil(sqrt(C))``; padding lies only between tiles, so one channel
    gives the image itself.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] != 3):
        raise ValueError(f"make_grid expects (C, H, W) or (C, H, W, 3), got {images.shape}")
    c, h, w = images.shape[:3]
    rows, cols = _grid_dims(c, ncols)
    if c == 1:
        return np.ascontiguousarray(images[0])
    # The mosaic itself, written once: each row of tiles is a strided (h, n, w) view of it.
    out = np.empty(grid_shape(c, h, w, cols, padding) + images.shape[3:], dtype=images.dtype)
    out[...] = pad_value
    for r in range(rows):
        band = out[r * (h + padding) : r * (h + padding) + h]
        n = min(cols, c - r * cols)
        tiles = np.lib.stride_tricks.as_strided(
            band, (h, n, w) + band.shape[2:],
            (band.strides[0], (w + padding) * band.strides[1]) + band.strides[1:],
            writeable=True)
        tiles[...] = images[r * cols : r * cols + n].swapaxes(0, 1)
    return out


class ChannelPictures:
    """A stage's (C, H, W) uint8 channel pictures: given, or cut from its mosaic the first
    time all of them are asked for (the strip's thumbnail, made after the pixels are shown);
    one channel is its tile of the mosaic, no copy. The view shows the mosaic itself.
    Renders that differ only in their numbers share one (``add_stats``)."""

    __hash__ = None  # type: ignore[assignment]  # mutable cache, compared by value

    def __init__(self, shape: tuple[int, int, int], array: np.ndarray | None = None,
                 mosaic: np.ndarray | None = None,
                 origins: list[tuple[int, int]] | None = None):
        self.shape = shape
        self._array = array
        self._mosaic, self._origins = mosaic, origins
        self._lock = threading.Lock()  # the worker and the GUI thread may both ask

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            with self._lock:
                if self._array is None:
                    self._array = self._cut()
        return self._array

    def channel(self, k: int) -> np.ndarray:
        """Channel ``k``'s (H, W) picture: a view of the array or of its tile."""
        return self._array[k] if self._array is not None else self._tile(k)

    def _tile(self, k: int) -> np.ndarray:
        _, h, w = self.shape
        y, x = self._origins[k]
        return self._mosaic[y : y + h, x : x + w]

    def _cut(self) -> np.ndarray:
        if self.shape[0] == 1:
            return self._mosaic[None]  # one channel: the mosaic is its picture
        out = np.empty(self.shape, np.uint8)
        for k in range(self.shape[0]):
            out[k] = self._tile(k)
        return out

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ChannelPictures) and self.shape == other.shape
                and np.array_equal(self.array, other.array))


@dataclass(frozen=True)
class RenderedStage:
    """Everything the feature view, histogram view and exporter show for one stage.

    ``channels_u8`` (from ``channels``) and ``grid_u8`` hold normalised values (0..255)
    before any colormap;
    ``grid`` (made on first use) is the mosaic as shown: ``grid_u8`` itself for the gray
    colormap, else (H', W', 3) through the colormap (gutters take the colour of the pad value).
    """

    shape: tuple[int, ...]  # the tensor's shape as given
    mode: str
    colormap: str
    channels: ChannelPictures  # the (C, H, W) pictures of ``channels_u8``
    grid_u8: np.ndarray  # (H', W') uint8 mosaic of channels_u8
    grid_origins: list[tuple[int, int]]  # top-left (y, x) of each channel's tile
    grid_ncols: int
    padding: int
    levels: np.ndarray  # (C, 2) float64: the (lo, hi) each channel was mapped with
    # Histograms and statistics; None in a render made with ``stats=False`` until
    # :func:`add_stats` fills them in (the window shows the pixels first).
    hist_counts: np.ndarray | None = None  # (bins,) int64
    hist_edges: np.ndarray | None = None  # (bins + 1,) float64
    channel_hist: np.ndarray | None = None  # (C, bins) int64, same edges
    stats: dict[str, float | int] | None = None
    channel_stats: dict[str, np.ndarray] | None = None  # key -> (C,) array, as in stats()
    vector: np.ndarray | None = None  # float32 values of a (1, N) stage
    # What add_stats needs from the pixel pass: (per-channel min, max, bins).
    pending: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def has_stats(self) -> bool:
        return self.stats is not None

    @property
    def channels_u8(self) -> np.ndarray:
        """(C, H, W) uint8: each channel's picture (its tile of ``grid_u8``)."""
        return self.channels.array

    def channel_u8(self, index: int) -> np.ndarray:
        """Channel ``index``'s (H, W) uint8 picture, without cutting every channel."""
        return self.channels.channel(index)

    @property
    def num_channels(self) -> int:
        return self.channels.shape[0]

    @property
    def tile_size(self) -> tuple[int, int]:
        return self.channels.shape[1], self.channels.shape[2]

    @functools.cached_property
    def grid(self) -> np.ndarray:
        """(H', W') or (H', W', 3) uint8: the mosaic as shown, made on first use.

        The window shows ``grid_u8`` through ``lut``; the RGB mosaic costs as much as the rest
        of a render, so only callers that want it pay for it.
        """
        if self.colormap == "gray":
            return self.grid_u8
        return apply_colormap(self.grid_u8, self.colormap)

    @property
    def lut(self) -> np.ndarray:
        return colormap_lut(self.colormap)

    def channel_image(self, index: int) -> np.ndarray:
        """Channel ``index`` as shown: (H, W) uint8 for gray, else (H, W, 3) through the colormap."""
        u8 = self.channel_u8(index)
        return u8 if self.colormap == "gray" else apply_colormap(u8, self.colormap)

    def channel_at(self, y: int, x: int) -> int | None:
        """The channel under mosaic pixel (y, x), or None."""
        h, w = self.tile_size
        return channel_at(y, x, self.num_channels, h, w, self.grid_ncols, self.padding)


def render_stage(
    tensor: torch.Tensor,
    mode: NormalizeMode = "channel",
    colormap: str = "gray",
    bins: int = 64,
    *,
    ncols: int | None = None,
    padding: int = 2,
    pad_value: int = 0,
    stats: bool = True,
) -> RenderedStage:
    """Precompute a stage's images, mosaic, histograms and statistics.

    Accepts (1, C, H, W), (C, H, W), or a (1, N) / (N,) vector (shown as one 1 x N channel).
    With ``stats=False`` only the pictures are made where that is quicker (finite data on the
    CPU); ``add_stats(rendered, tensor)`` then gives exactly ``render_stage(tensor)``.
    """
    check_mode(mode)
    colormap_lut(colormap)  # fail on a bad name before any work
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    if padding < 0:
        raise ValueError(f"padding must be at least 0, not {padding}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value is a grey level, 0 to 255, not {pad_value}")
    src = torch.as_tensor(tensor)
    shape = tuple(int(s) for s in src.shape)
    is_vector = src.ndim in (1, 2)
    x = as_chw(src)
    c, h, w = x.shape
    _, cols = _grid_dims(c, ncols)
    shape_u8, origins, top, left = _mosaic_plan(c, h, w, cols, padding)
    grid = (shape_u8, top, left, pad_value)
    pixels = pixels_cpu(x, mode, grid) if x.device.type == "cpu" else None
    grid_u8 = None
    numbers: dict = {}
    pending = None
    if pixels is None:
        lv, channels_u8, edges, ch_hist_np, st_row, ch_rows = _render_any(x, mode, bins)
        numbers = _numbers(x, edges, ch_hist_np, st_row, ch_rows)
    else:
        mat, ch_lo, ch_hi, lv, channels_u8, grid_u8 = pixels
        if stats:
            numbers = _numbers(x, *stats_cpu(x, mat or Matrix(x), ch_lo, ch_hi, bins))
        else:
            pending = (ch_lo, ch_hi, bins)

    if grid_u8 is None:
        grid_u8 = make_grid(channels_u8, cols, padding, pad_value)
    vector = x.reshape(-1).to(torch.float32).cpu().numpy() if is_vector else None
    return RenderedStage(
        shape=shape,
        mode=mode,
        colormap=colormap,
        channels=ChannelPictures((c, h, w), channels_u8, grid_u8, origins),
        grid_u8=grid_u8,
        grid_origins=list(origins),
        grid_ncols=cols,
        padding=padding,
        levels=lv,
        vector=vector,
        pending=pending,
        **numbers,
    )


def add_stats(rendered: RenderedStage, tensor: torch.Tensor,
              cancel: Callable[[], bool] | None = None) -> RenderedStage | None:
    """``rendered`` (from ``render_stage(tensor, ..., stats=False)``) with its histograms and
    statistics: equal to ``render_stage(tensor, ...)`` in every field.

    ``cancel`` is asked between the passes over the data: None comes back once it says True
    (the numbers of a stage a newer edit replaces are not worth finishing).
    """
    if rendered.has_stats:
        return rendered
    ch_lo, ch_hi, bins = rendered.pending
    x = as_chw(torch.as_tensor(tensor))
    try:
        numbers = _numbers(x, *stats_cpu(x, Matrix(x), ch_lo, ch_hi, bins, cancel))
    except StatsCancelled:
        return None
    return replace(rendered, pending=None, **numbers)


def _numbers(x: torch.Tensor, edges: np.ndarray, ch_hist_np: np.ndarray, st_row: np.ndarray,
             ch_rows: np.ndarray) -> dict:
    """RenderedStage's histogram and statistics fields from the rows the passes compute."""
    c, h, w = x.shape
    channel_stats = {k: ch_rows[i].copy() for i, k in enumerate(STAT_KEYS)}
    channel_stats["zero_fraction"] = ch_rows[4] / max(h * w, 1)
    for k in ("nan_count", "inf_count"):
        channel_stats[k] = channel_stats[k].astype(np.int64)
    return dict(hist_counts=ch_hist_np.sum(axis=0), hist_edges=edges.astype(np.float64),
                channel_hist=ch_hist_np, stats=stats_dict(st_row, x.numel()),
                channel_stats=channel_stats)


_Parts = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _render_any(x: torch.Tensor, mode: str, bins: int) -> _Parts:
    """render_stage's numbers on any device and for any data (NaN, inf, empty).

    Returns levels (C, 2), uint8 channels (C, H, W), edges, per-channel counts (C, bins)
    int64, stage stats row (7,) and channel stats rows (7, C), all numpy.
    """
    c, h, w = x.shape
    # Per-channel reductions want each channel contiguous; engine outputs are channels_last.
    xc = x.contiguous()
    flat = xc.reshape(c, -1)

    ch_lo, ch_hi, finite = finite_minmax(flat)
    lo, hi = levels_t(xc, mode, ch_lo, ch_hi)
    u8 = _map_u8(xc, lo, hi, mode, finite)

    if x.numel():
        lo_v, hi_v = ch_lo.min(), ch_hi.max()
        pair = torch.stack([lo_v, hi_v]).cpu()
        edges = bin_edges(pair[0].item(), pair[1].item(), bins, None,
                           np.float64 if x.dtype == torch.float64 else np.float32)  # fmt: skip
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
    ch_hist = histogram_rows(flat, edges, all_in=finite)
    ch_st = channel_stats(flat, ch_lo, ch_hi, finite)
    # Stage mean and std over the tensor as laid out, like stats() and torch itself.
    st = stage_stats(x, ch_lo, ch_hi, finite, zeros=ch_st[4].sum() if flat.shape[1] else None)

    # One transfer for all small results, one for the images.
    lv_t = torch.stack([lo, hi], 1).reshape(-1).to(torch.float64)
    small = torch.cat([lv_t, st, ch_st.reshape(-1)]).cpu().numpy()
    ch_hist_np = ch_hist.cpu().numpy().astype(np.int64, copy=False)
    lv = small[: 2 * c].reshape(c, 2)
    return (
        lv,
        u8.cpu().numpy(),
        edges,
        ch_hist_np,
        small[2 * c : 2 * c + 7],
        small[2 * c + 7 :].reshape(7, c),
    )

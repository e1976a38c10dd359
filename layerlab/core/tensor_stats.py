"""Exact histograms and statistics of stage tensors, computed in torch on the tensor's device.

Only finite values are counted; NaN and inf are reported as counts of their own. Histogram
edges are numpy's, so counts equal ``np.histogram`` on the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def as_float(t: torch.Tensor) -> torch.Tensor:
    """The tensor as float32/float64, detached, in any shape."""
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t


def as_chw(t: torch.Tensor) -> torch.Tensor:
    t = as_float(torch.as_tensor(t))
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        return t[0]
    if t.ndim == 3:
        return t
    if t.ndim == 2:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one vector, got shape {tuple(t.shape)}")
        return t.reshape(1, 1, -1)
    if t.ndim == 1:
        return t.reshape(1, 1, -1)
    raise ValueError(f"cannot show a tensor of shape {tuple(t.shape)}")


def finite_minmax(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Per-row finite (min, max) of a 2-D tensor; rows without finite values give (0, 0)."""
    if flat.shape[1] == 0:
        z = flat.new_zeros(flat.shape[0])
        return z, z.clone(), True
    lo, hi = flat.amin(dim=1), flat.amax(dim=1)  # far faster than aminmax(dim=1) on CPU
    # NaN and inf propagate through amin/amax, so finite extremes mean every value is finite.
    if bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
        return lo, hi, True
    finite = torch.isfinite(flat)
    lo = torch.where(finite, flat, math.inf).amin(dim=1)
    hi = torch.where(finite, flat, -math.inf).amax(dim=1)
    empty = ~torch.isfinite(lo)
    lo = torch.where(empty, 0.0, lo)
    hi = torch.where(empty, 0.0, hi)
    return lo, hi, False


def bin_edges(lo, hi, bins: int, value_range, dtype: np.dtype) -> np.ndarray:
    # Let numpy compute the edges from a two-element array with the data's extremes and dtype:
    # np.histogram derives them from exactly these values, so the edges are the same bits.
    probe = np.array([lo, hi], dtype=dtype)
    try:
        # a span beyond float32 overflows on the way to numpy's refusal: no warning for that
        with np.errstate(over="ignore", invalid="ignore"):
            return np.histogram_bin_edges(probe, bins=bins, range=value_range)
    except ValueError:
        # float32 cannot hold `bins` distinct edges over this range (numpy refuses too);
        # float64 edges still give a usable picture.
        wide = probe.astype(np.float64)
        try:
            return np.histogram_bin_edges(wide, bins=bins, range=value_range)
        except ValueError:
            if value_range is not None or wide[0] != wide[1]:
                raise
            # A constant stage beyond 2**52: numpy's lo - 0.5 .. hi + 0.5 is one value even
            # in float64; widen by a relative step instead.
            half = abs(float(wide[0])) * 2.0**-20
            return np.histogram_bin_edges(wide, bins=bins, range=(wide[0] - half, wide[1] + half))


def bin_tolerance(edges: np.ndarray) -> tuple[float, float, float]:
    """(first edge, bins per unit, tol) for placing values in ``edges`` by scaling: t =
    (x - first) * scale lies within tol (in bins) of the value's position against the real
    edges. tol bounds the rounding of x - first and of the product, the rounding of each
    edge to its type, and how far the edges stray from even spacing (in a range only a few
    subnormal steps wide, the rounded step adds up across the bins)."""
    bins = len(edges) - 1
    first, last = float(edges[0]), float(edges[-1])
    scale = bins / (last - first)
    eps = float(np.finfo(edges.dtype).eps)
    spacing = float(np.spacing(np.array(max(abs(first), abs(last)), edges.dtype)))
    even = np.linspace(first, last, bins + 1)
    stray = float(np.abs(edges.astype(np.float64) - even).max()) * scale
    return first, scale, 8.0 * (bins * eps + spacing * scale) + 2.0 * stray


def histogram_rows(flat: torch.Tensor, edges: np.ndarray, all_in: bool) -> torch.Tensor:
    """(rows, bins) int64 counts on the device; bins are [e_i, e_i+1) with the last closed.

    The bin is decided by comparisons with ``edges`` only (what np.histogram's corrected
    arithmetic amounts to). Most values sit far from any edge, where ``floor`` of the scaled
    value is provably that bin; the few within rounding distance of an edge are placed by an
    exact search. Counting is one bincount.
    """
    bins = len(edges) - 1
    rows = flat.shape[0]
    first, scale, tol = bin_tolerance(edges)
    # float64 for float64 edges, and where a range of subnormal width makes the scale itself
    # overflow float32 (the edges are exact in float64 too)
    wide = edges.dtype == np.float64 or not scale < float(np.finfo(np.float32).max) / 2
    work = flat.double() if wide else flat
    t = (work - first).mul_(scale)
    if tol >= 0.1:
        near = torch.ones_like(t, dtype=torch.bool)  # edges too coarse: search everything
        idx = torch.full_like(t, bins, dtype=torch.int32)
    else:
        outside = None if all_in else ~((t >= 0) & (t < bins))  # also NaN and inf
        # Shifted by tol, the truncation is the bin of every value farther than tol from an
        # edge, and frac(t + tol) < 2 tol flags the values within tol of edge trunc(t + tol).
        idx = t.add_(tol).to(torch.int32)
        near = t.frac_() < 2 * tol
        if outside is None:
            # At the outer edges both candidates are the same end bin: no search needed.
            near &= (idx > 0) & (idx < bins)
            idx.clamp_(max=bins - 1)
        else:
            idx.masked_fill_(outside, bins)
        idx.masked_fill_(near, bins)  # bin `bins` is the discard pile
    if rows > 1:
        offsets = torch.arange(0, rows * (bins + 1), bins + 1, device=flat.device)
        idx += offsets.to(torch.int32).unsqueeze(1)
    counts = torch.bincount(idx.reshape(-1), minlength=rows * (bins + 1))
    where = near.nonzero()
    if where.shape[0]:
        xs = work[where[:, 0], where[:, 1]]
        e = torch.as_tensor(edges, device=flat.device)
        if e.dtype != xs.dtype:
            e = e.to(xs.dtype)
        # bucketize(right=True) - 1 is the i with e[i] <= x < e[i+1]; x == e[-1] -> last bin.
        sub = (torch.bucketize(xs, e, right=True) - 1).clamp_(0, bins - 1)
        sub.masked_fill_(~((xs >= e[0]) & (xs <= e[-1])), bins)
        sub += where[:, 0] * (bins + 1)
        counts += torch.bincount(sub, minlength=rows * (bins + 1))
    return counts.reshape(rows, bins + 1)[:, :bins]


def histogram(
    tensor: torch.Tensor,
    bins: int = 64,
    value_range: tuple[float, float] | None = None,
    *,
    per_channel: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges equal to ``np.histogram(values, bins, range=value_range)``.

    Bins are half-open ``[e_i, e_i+1)`` except the last, which includes its right edge; values
    outside the range and NaN are not counted. Without ``value_range`` the finite min/max of the
    whole tensor are used (numpy would refuse non-finite data; here it is skipped). With
    ``per_channel`` the counts are (C, bins), all channels sharing the stage's edges.
    Returns ``(counts int64, edges float64)``.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    x = as_chw(tensor) if per_channel else as_float(torch.as_tensor(tensor)).reshape(1, -1)
    flat = x.reshape(x.shape[0], -1)
    dtype = np.float64 if flat.dtype == torch.float64 else np.float32
    if flat.numel() == 0:
        lo_v, hi_v, finite = 0.0, 1.0, True
    else:
        lo, hi, finite = finite_minmax(flat)
        pair = torch.stack([lo.min(), hi.max()]).cpu()
        lo_v, hi_v = pair[0].item(), pair[1].item()
    edges = bin_edges(lo_v, hi_v, bins, value_range, dtype)
    counts = histogram_rows(flat, edges, all_in=finite and value_range is None)
    counts_np = counts.cpu().numpy().astype(np.int64, copy=False)
    if not per_channel:
        counts_np = counts_np[0]
    return counts_np, edges.astype(np.float64)


# --------------------------------------------------------------------------- statistics

STAT_KEYS = ("min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count")


def stage_stats(x: torch.Tensor, ch_lo, ch_hi, all_finite: bool, zeros=None,
                between: Callable[[], None] | None = None) -> torch.Tensor:
    """float64 [min, max, mean, std, zero count, nan count, inf count] on the device;
    ``between`` is called between the passes over the data (it may raise to stop)."""
    if all_finite:
        vals = x
        nan = inf = torch.zeros((), dtype=torch.int64, device=x.device)
    else:
        vals = x[torch.isfinite(x)]
        nan = torch.isnan(x).sum()
        inf = torch.isinf(x).sum()
    if vals.numel() == 0:
        mn = mx = mean = x.new_full((), math.nan)
    elif all_finite:
        mn, mx, mean = ch_lo.min(), ch_hi.max(), vals.mean()
    else:
        mn, mx, mean = vals.min(), vals.max(), vals.mean()
    if between is not None:
        between()
    std = vals.std() if vals.numel() > 1 else x.new_zeros(())
    if zeros is None:
        zeros = x.numel() - torch.count_nonzero(x)
    parts = (mn, mx, mean, std, zeros, nan, inf)
    return torch.stack([p.to(torch.float64) for p in parts])


def channel_stats(flat: torch.Tensor, ch_lo, ch_hi, all_finite: bool) -> torch.Tensor:
    """float64 (7, C) rows as in stage_stats, on the device."""
    c, n = flat.shape
    if n == 0:
        return torch.full((7, c), math.nan, dtype=torch.float64, device=flat.device)
    zeros = n - torch.count_nonzero(flat, dim=1)
    if all_finite:
        mean = flat.mean(dim=1)
        # Two-pass sum of squares: several times faster than torch.std(dim=1) on CPU.
        dev = (flat - mean[:, None]).square_().sum(dim=1)
        std = dev.div_(n - 1).sqrt_() if n > 1 else flat.new_zeros(c)
        nan = inf = torch.zeros(c, dtype=torch.int64, device=flat.device)
    else:
        finite = torch.isfinite(flat)
        cnt = finite.sum(dim=1).to(flat.dtype)
        mean = torch.where(finite, flat, 0.0).sum(dim=1) / cnt
        dev = torch.where(finite, flat - mean[:, None], 0.0)
        std = (dev.square().sum(dim=1) / (cnt - 1)).sqrt()
        std = torch.where(cnt > 1, std, 0.0)
        nan = torch.isnan(flat).sum(dim=1)
        inf = torch.isinf(flat).sum(dim=1)
        empty = cnt == 0
        ch_lo = torch.where(empty, math.nan, ch_lo)
        ch_hi = torch.where(empty, math.nan, ch_hi)
    parts = (ch_lo, ch_hi, mean, std, zeros, nan, inf)
    return torch.stack([p.to(torch.float64) for p in parts])


def stats_dict(row: np.ndarray, n: int) -> dict[str, float | int]:
    return {
        "min": float(row[0]),
        "max": float(row[1]),
        "mean": float(row[2]),
        "std": float(row[3]),
        "zero_fraction": float(row[4]) / n if n else 0.0,
        "nan_count": int(row[5]),
        "inf_count": int(row[6]),
    }


def stats(tensor: torch.Tensor) -> dict[str, float | int]:
    """min, max, mean, std, zero_fraction (python floats), nan_count, inf_count (ints).

    min/max/mean/std are over the finite values; for an all-finite tensor they are exactly
    ``t.min()``, ``t.max()``, ``t.mean()`` and ``t.std()`` (unbiased, correction 1), whatever
    the memory layout (reduced in memory order, as torch does). std of fewer than two values
    is 0.0; a tensor with no finite value gives NaN for the other three.
    """
    x = as_float(torch.as_tensor(tensor))
    if x.numel() == 0:
        return {"min": math.nan, "max": math.nan, "mean": math.nan, "std": 0.0,
                "zero_fraction": 0.0, "nan_count": 0, "inf_count": 0}  # fmt: skip
    lo, hi = x.amin().reshape(1), x.amax().reshape(1)
    finite = bool(torch.isfinite(lo).all() & torch.isfinite(hi).all())
    if not finite:
        x = x.reshape(1, -1)
        lo, hi, finite = finite_minmax(x)
    return stats_dict(stage_stats(x, lo, hi, finite).cpu().numpy(), x.numel())


# --------------------------------------------------------------------------- a whole stage

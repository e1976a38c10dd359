"""A/B comparison of one stage: the difference A - B, its statistics, and its picture with a
diverging colormap centred at 0 (the window's Compare view). No Qt.

A and B are the same stage (by number) of two runs: two stacks on one image, or one stack on
two images. Their values must have the same shape; otherwise :class:`ShapeMismatch` says
which shapes met, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import render
from .specs import shape_text

__all__ = ["DIFF_COLORMAP", "Comparison", "Difference", "ShapeMismatch", "compare_stage",
           "difference", "pair_images"]

DIFF_COLORMAP = "RdBu"  # red where A < B, white at 0, blue where A > B


class ShapeMismatch(ValueError):
    """A and B have different shapes; the message names both."""


@dataclass(frozen=True)
class Difference:
    """``values`` = A - B in float32 (what torch gives for the two float32 tensors);
    ``stats`` over its finite values in float64: min, max, mean, std (with Bessel's
    correction, as every statistic LayerLab shows), max_abs, and the count of values."""

    values: np.ndarray
    stats: dict[str, float]

    @property
    def identical(self) -> bool:
        return self.stats["max_abs"] == 0.0

    def image(self, colormap: str = DIFF_COLORMAP) -> tuple[np.ndarray, float]:
        """The difference as an RGB picture and the half-range ``m`` it shows: the
        ``symmetric`` normalisation, so -m..m spans the colormap and 0 sits at its centre
        (``m = max|A - B|``; 1 when A equals B)."""
        v = torch.from_numpy(np.ascontiguousarray(self.values, dtype=np.float32))
        v = v.reshape(1, *v.shape[-2:]) if v.dim() >= 2 else v.reshape(1, 1, -1)
        u8 = render.to_uint8(v, "symmetric")[0]
        m = self.stats["max_abs"]
        return render.apply_colormap(u8, colormap), (m if m > 0 else 1.0)


def difference(a: np.ndarray, b: np.ndarray, *, what: str = "the stage") -> Difference:
    """A - B of two arrays of one shape (a stage, or one channel of it)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ShapeMismatch(f"A and B differ in shape at {what}: A is {shape_text(a.shape)}, "
                            f"B is {shape_text(b.shape)}; the difference needs one shape "
                            f"(compare a stage where both stacks agree)")
    d = a - b
    finite = d[np.isfinite(d)].astype(np.float64)
    if finite.size == 0:
        nan = float("nan")
        stats = {"min": nan, "max": nan, "mean": nan, "std": nan, "max_abs": nan}
    else:
        stats = {"min": float(finite.min()), "max": float(finite.max()),
                 "mean": float(finite.mean()),
                 "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                 "max_abs": float(np.abs(finite).max())}
    stats["count"] = int(d.size)
    return Difference(d, stats)


def pair_images(a: np.ndarray, b: np.ndarray, colormap: str = "gray"
                ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """A and B (2-D, one channel) as RGB pictures with one shared range: the lowest and
    highest finite value of the two, so one grey means one value in both pictures."""
    both = np.concatenate([np.ravel(a), np.ravel(b)]).astype(np.float32)
    finite = both[np.isfinite(both)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lv = np.array([[lo, hi]])
    out = []
    for x in (a, b):
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        t = t.reshape(1, *t.shape[-2:]) if t.dim() >= 2 else t.reshape(1, 1, -1)
        u8 = render.to_uint8_with_levels(t, lv, "stage")[0]
        out.append(render.apply_colormap(u8, colormap))
    return out[0], out[1], (lo, hi)


@dataclass(frozen=True)
class Comparison:
    """What the Compare view shows for one stage: the difference of the channel shown (None
    when the shapes differ, ``problem`` then says why) and the RGB pictures by name
    ("A", "B", "A - B")."""

    what: str
    difference: Difference | None
    pictures: dict[str, np.ndarray]
    problem: str | None = None


def compare_stage(a: np.ndarray, b: np.ndarray, *, what: str, channel: int = 0,
                  colormap: str = "gray") -> Comparison:
    """A and B of one stage ((C, H, W) or a vector): channel ``channel`` of each, A - B and
    the pictures; when the stage shapes differ, each picture alone in its own range."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        try:
            difference(a, b, what=what)
        except ShapeMismatch as e:
            problem = str(e)
        alone = {}
        for key, x in (("A", a), ("B", b)):
            x2 = x[min(channel, x.shape[0] - 1)] if x.ndim == 3 else x
            alone[key] = pair_images(x2, x2, colormap)[0]
        return Comparison(what, None, alone, problem)
    if a.ndim == 3:
        if not 0 <= channel < a.shape[0]:
            return Comparison(what, None, {}, f"channel {channel} is not in {what}")
        a, b = a[channel], b[channel]
        what += f", channel {channel}"
    d = difference(a, b, what=what)
    pa, pb, _ = pair_images(a, b, colormap)
    return Comparison(what, d, {"A": pa, "B": pb, "A - B": d.image(DIFF_COLORMAP)[0]})

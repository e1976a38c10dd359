"""How numbers, shapes and formulas are written in the window (no widgets here)."""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from ..core import specs

shape_text = partial(specs.shape_text, sep=" × ")  # the core's, written with × in the window


def size_text(size: tuple[int, int]) -> str:
    """An image size as (width, height): ``4000×3000``."""
    return f"{size[0]}×{size[1]}"


def format_value(v: float) -> str:
    """A float32 value, exact: the shortest text that reads back as the same float32.

    At least six decimals for ordinary magnitudes (``-0.031250``), scientific notation for
    very large or very small ones.
    """
    f = np.float32(v)
    if not np.isfinite(f):
        return "nan" if np.isnan(f) else ("inf" if f > 0 else "-inf")
    a = abs(float(f))
    if a != 0 and (a >= 1e6 or a < 1e-4):
        return np.format_float_scientific(f, unique=True, trim="-")
    text = np.format_float_positional(f, unique=True, trim="-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return f"{float(f):.6f}" if decimals < 6 else text


def format_decimal(v: float) -> str:
    """An editable number: up to six decimals, trailing zeros dropped (``-0.111111``, ``2``)."""
    if v == 0:
        return "0"
    if abs(v) >= 1e-4 and abs(v) < 1e6:
        text = f"{v:.6f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else f"{v:.6g}"
    return f"{v:.6g}"


def format_stat(v: float) -> str:
    """A statistic: six significant digits; NaN/inf spelled out."""
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.6g}"

"""Colormaps: (256, 3) uint8 lookup tables and their fast application to uint8 images.

The tables are the published ones, taken from the ``cmap`` library (pure Python, no GUI):
each entry is ``cmap``'s 256-entry float table rounded to the nearest 8-bit value,
``round(v * 255)``. ``gray`` is the identity ramp (entry k is (k, k, k)), so gray images are
the normalised values themselves. Tables are built on first use.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

COLORMAPS = ("gray", "viridis", "magma", "inferno", "cividis", "turbo", "coolwarm", "RdBu")

# LayerLab's name -> the fully namespaced name in cmap's catalogue (no ambiguity, no warning).
CMAP_NAMES: dict[str, str] = {
    "viridis": "bids:viridis",
    "magma": "bids:magma",
    "inferno": "bids:inferno",
    "cividis": "cividis:cividis",
    "turbo": "google:turbo",
    "coolwarm": "matplotlib:coolwarm",  # Moreland's diverging map, blue (low) to red (high)
    "RdBu": "colorbrewer:RdBu",  # ColorBrewer's diverging map, red (low) to blue (high)
}

_LUTS: dict[str, np.ndarray] = {}
_PALETTES: dict[str, bytes] = {}
_LOCK = threading.Lock()


def _build_lut(name: str) -> np.ndarray:
    if name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        return np.stack([ramp, ramp, ramp], axis=1)
    from cmap import Colormap

    rgba = np.asarray(Colormap(CMAP_NAMES[name]).lut(256), dtype=np.float64)
    return np.round(rgba[:, :3] * 255.0).clip(0, 255).astype(np.uint8)


def colormap_lut(name: str) -> np.ndarray:
    """The read-only (256, 3) uint8 lookup table of a colormap."""
    lut = _LUTS.get(name)
    if lut is not None:
        return lut
    if name not in COLORMAPS:
        raise ValueError(
            f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}"
        )
    with _LOCK:
        lut = _LUTS.get(name)
        if lut is None:
            lut = _build_lut(name)
            lut.setflags(write=False)
            _PALETTES[name] = lut.tobytes()
            _LUTS[name] = lut
    return lut


def apply_colormap(u8: np.ndarray, name: str) -> np.ndarray:
    """Map uint8 values of any shape to RGB: returns a new array of shape ``u8.shape + (3,)``."""
    lut = colormap_lut(name)
    u8 = np.asarray(u8)
    if u8.dtype != np.uint8:
        raise ValueError(f"apply_colormap expects uint8 values, got {u8.dtype}")
    if u8.ndim == 0 or u8.size == 0:
        return lut.take(u8, axis=0)
    # Pillow's palette expansion is several times faster than numpy fancy indexing.
    flat = np.ascontiguousarray(u8).reshape(-1, u8.shape[-1])
    im = Image.frombuffer("P", (flat.shape[1], flat.shape[0]), flat, "raw", "P", 0, 1)
    im.putpalette(_PALETTES[name])
    return np.array(im.convert("RGB")).reshape(*u8.shape, 3)

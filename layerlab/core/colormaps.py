"""Colormaps: (256, 3) uint8 lookup tables and their fast application to uint8 images."""

from __future__ import annotations

import numpy as np
from PIL import Image

COLORMAPS = ("gray", "viridis", "magma", "coolwarm")

# Ten evenly spaced anchor colours of each map (viridis and magma as sampled from matplotlib's
# tables, coolwarm from Moreland's diverging map), linearly interpolated to 256 entries.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "viridis": (
        "440154", "482878", "3e4a89", "31688e", "26828e",
        "1f9e89", "35b779", "6dcd59", "b4de2c", "fde725",
    ),
    "magma": (
        "000004", "180f3e", "451077", "721f81", "9f2f7f",
        "cd4071", "f1605d", "fd9567", "fec98d", "fcfdbf",
    ),
    "coolwarm": (
        "3b4cc0", "6282ea", "8db0fe", "b8d0f9", "dddddd",
        "f5c4ad", "f49a7b", "de604d", "b40426",
    ),
}  # fmt: skip


def _build_lut(name: str) -> np.ndarray:
    if name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        return np.stack([ramp, ramp, ramp], axis=1)
    colours = np.array([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in _ANCHORS[name]])
    at = np.linspace(0.0, 255.0, len(colours))
    x = np.arange(256, dtype=np.float64)
    lut = np.stack([np.interp(x, at, colours[:, k]) for k in range(3)], axis=1)
    return np.round(lut).astype(np.uint8)


_LUTS = {name: _build_lut(name) for name in COLORMAPS}
for _lut in _LUTS.values():
    _lut.setflags(write=False)
_PALETTES = {name: lut.tobytes() for name, lut in _LUTS.items()}


def colormap_lut(name: str) -> np.ndarray:
    """The read-only (256, 3) uint8 lookup table of a colormap."""
    try:
        return _LUTS[name]
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}"
        ) from None


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

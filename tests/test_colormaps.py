"""Colormaps: LayerLab's tables against the published ones in ``cmap``, gray as the identity,
and gray exports whose pixels are unchanged since the tables came from hand-placed anchors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from cmap import Colormap
from PIL import Image

from layerlab.core import colormaps, render
from layerlab.core.export import export_run

ROOT = Path(__file__).resolve().parent.parent
CAMERA = ROOT / "resources" / "samples" / "camera.png"
PIPELINES = ROOT / "resources" / "pipelines"

# The catalogue entries each name stands for (written out here, not read from LayerLab).
PUBLISHED = {
    "viridis": "bids:viridis",
    "magma": "bids:magma",
    "inferno": "bids:inferno",
    "cividis": "cividis:cividis",
    "turbo": "google:turbo",
    "coolwarm": "matplotlib:coolwarm",
    "RdBu": "colorbrewer:RdBu",
}


def test_every_offered_map_is_checked():
    assert set(colormaps.COLORMAPS) == {"gray", *PUBLISHED}
    assert render.COLORMAPS is colormaps.COLORMAPS  # the window's box lists render.COLORMAPS


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_tables_are_cmaps_tables_to_the_nearest_8_bit_value(name):
    reference = np.asarray(Colormap(PUBLISHED[name]).lut(256))[:, :3] * 255
    lut = render.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    assert np.abs(lut - reference).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(lut, np.round(reference).astype(np.uint8))


def test_known_entries_of_the_published_tables():
    # matplotlib's _cm_listed viridis rows 0, 128, 255 and the ColorBrewer RdBu end colours
    # (#67001f, #053061), scaled to 8 bits.
    assert render.colormap_lut("viridis")[[0, 128, 255]].tolist() == [
        [68, 1, 84], [33, 145, 140], [253, 231, 37]]
    assert render.colormap_lut("RdBu")[[0, 255]].tolist() == [[103, 0, 31], [5, 48, 97]]
    assert render.colormap_lut("inferno")[0].tolist() == [0, 0, 4]


def test_gray_is_the_identity_ramp():
    lut = render.colormap_lut("gray")
    np.testing.assert_array_equal(lut, np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1))
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(render.apply_colormap(u8, "gray")[..., 1], u8)


def test_apply_colormap_is_the_table_lookup():
    u8 = np.random.default_rng(0).integers(0, 256, (3, 17, 5), dtype=np.uint8)
    for name in colormaps.COLORMAPS:
        np.testing.assert_array_equal(render.apply_colormap(u8, name),
                                      render.colormap_lut(name)[u8])
    with pytest.raises(ValueError, match="unknown colormap"):
        render.colormap_lut("jet")


# sha256 over (file name, shape, pixels) of every PNG of these gray exports, recorded with the
# LayerLab that built its colormaps from hand-placed anchors. Max pooling is exact, so the
# numbers (and these pixels) do not depend on the CPU or the torch build.
GRAY_EXPORTS = {
    ("maxpool-3x3-rgb", "channel"):
        "f372804d6123ac9a80e97d470acfdb0d62022819d8475fc2bc7834ff58ef3f22",
    ("maxpool-3x3-rgb", "fixed"):
        "9b15623d77ec6bf686e763044454a491e38f3813d423f4526a19c67c0be2ca6f",
}


@pytest.mark.parametrize(("pipeline", "normalize"), sorted(GRAY_EXPORTS))
def test_gray_export_pixels_are_unchanged(pipeline, normalize, tmp_path):
    out = tmp_path / "export"
    manifest = export_run(CAMERA, PIPELINES / f"{pipeline}.layerlab.json", out, device="cpu",
                          normalize=normalize)
    h = hashlib.sha256()
    for stage in manifest["stages"]:
        for name in [*stage["images"], stage["grid"]]:
            a = np.asarray(Image.open(out / name))
            h.update(name.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    assert h.hexdigest() == GRAY_EXPORTS[(pipeline, normalize)]

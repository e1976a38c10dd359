"""render: normalisation, colormaps, mosaics, histograms and statistics against independent
numpy formulas, torchvision's ToPILImage and np.histogram, on real photos pushed through
real layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms

from layerlab.core import render
from layerlab.core.render import (
    COLORMAPS,
    NORMALIZE_MODES,
    apply_colormap,
    channel_at,
    colormap_lut,
    grid_layout,
    grid_shape,
    histogram,
    levels,
    make_grid,
    render_stage,
    stats,
    to_uint8,
)

skdata = pytest.importorskip("skimage.data")

F32 = np.float32


# --------------------------------------------------------------------------- real stages


@pytest.fixture(scope="module")
def camera_t() -> torch.Tensor:
    """The tutorials' input: the camera photo as ToTensor gives it, (1, 1, 512, 512)."""
    return torch.from_numpy(skdata.camera()).float().div(255)[None, None]


@pytest.fixture(scope="module")
def astronaut_t() -> torch.Tensor:
    return torch.from_numpy(skdata.astronaut()).permute(2, 0, 1).float().div(255)[None]


@pytest.fixture(scope="module")
def sharpened(camera_t) -> torch.Tensor:
    """The tutorial sharpen kernel (ones(3,3)/-9, centre 1) on the gray photo: values below 0."""
    k = torch.ones(3, 3) / -9
    k[1, 1] = 1
    return F.conv2d(camera_t, k[None, None], padding=1)


@pytest.fixture(scope="module")
def features(astronaut_t) -> torch.Tensor:
    """16 seeded random 3x3 filters + ReLU + 2x2 max-pool: a typical (1, 16, 256, 256) stage."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 3, 3, 3, generator=g) * 0.3
    return F.max_pool2d(F.relu(F.conv2d(astronaut_t, w, padding=1)), 2)


@pytest.fixture(scope="module")
def signed(astronaut_t) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 3, 5, 5, generator=g)
    return F.conv2d(astronaut_t, w)[:, :, ::3, ::3].contiguous()


def np_minmax_u8(x: np.ndarray, lo, hi) -> np.ndarray:
    """The documented mapping, written independently in numpy float32 arithmetic."""
    lo = np.asarray(lo, F32).reshape(-1, 1, 1)
    hi = np.asarray(hi, F32).reshape(-1, 1, 1)
    span = hi - lo
    with np.errstate(invalid="ignore"):
        y = np.floor((x - lo) / np.where(span == 0, F32(1), span) * F32(255) + F32(0.5))
    y = np.where(span == 0, F32(0), y)
    return np.nan_to_num(np.clip(y, 0, 255), nan=0).astype(np.uint8)


# --------------------------------------------------------------------------- normalisation


def test_channel_mode_matches_numpy_formula(features, signed, sharpened):
    for t in (features, signed, sharpened):
        x = t[0].numpy()
        lo = x.reshape(len(x), -1).min(1)
        hi = x.reshape(len(x), -1).max(1)
        got = to_uint8(t, "channel")
        assert got.dtype == np.uint8 and got.shape == x.shape
        assert np.array_equal(got, np_minmax_u8(x, lo, hi))
        assert np.array_equal(levels(t, "channel"), np.stack([lo, hi], 1).astype(np.float64))
        # each channel spans the full 0..255 range
        assert (got.reshape(len(x), -1).min(1) == 0).all()
        assert (got.reshape(len(x), -1).max(1) == 255).all()


def test_stage_mode_matches_numpy_formula(features, signed):
    for t in (features, signed):
        x = t[0].numpy()
        lo, hi = x.min(), x.max()
        got = to_uint8(t, "stage")
        assert np.array_equal(got, np_minmax_u8(x, [lo] * len(x), [hi] * len(x)))
        lv = levels(t, "stage")
        assert lv.shape == (len(x), 2)
        assert (lv[:, 0] == lo).all() and (lv[:, 1] == hi).all()


def test_sharpen_stage_exact_values(sharpened):
    x = sharpened[0, 0].numpy()
    lo, hi = x.min(), x.max()
    assert lo < 0 < hi  # the sharpen kernel overshoots on both sides of edges
    u8 = to_uint8(sharpened, "channel")[0]
    i, j = 100, 200
    want = math.floor(float((x[i, j] - lo) / (hi - lo) * F32(255) + F32(0.5)))
    assert u8[i, j] == want


@pytest.mark.parametrize("channels", [1, 3])
def test_fixed_mode_is_exactly_topilimage(astronaut_t, signed, channels):
    for t in (astronaut_t[:, :channels], signed[:, :channels] / 40):
        got = to_uint8(t, "fixed")
        pil = transforms.ToPILImage()(t[0].clamp(0, 1))
        want = np.asarray(pil)
        want = want[None] if want.ndim == 2 else np.moveaxis(want, -1, 0)
        assert np.array_equal(got, want)
        assert np.array_equal(levels(t, "fixed"), np.tile([0.0, 1.0], (channels, 1)))


def test_fixed_mode_truncates_like_topilimage():
    t = torch.tensor([[[0.0, 0.5, 1.0, 1.5, -0.2, 0.999, 0.0019608]]])
    assert to_uint8(t, "fixed")[0, 0].tolist() == [0, 127, 255, 255, 0, 254, 0]


def test_symmetric_mode(signed):
    x = signed[0].numpy()
    m = np.abs(x).max()
    got = to_uint8(signed, "symmetric")
    assert np.array_equal(got, np_minmax_u8(x, [-m] * len(x), [m] * len(x)))
    lv = levels(signed, "symmetric")
    assert (lv[:, 0] == -m).all() and (lv[:, 1] == m).all()
    # zero is mid-grey; +-m are the ends
    z = torch.tensor([[[0.0, -2.0, 2.0, 1.0]]])
    assert to_uint8(z, "symmetric")[0, 0].tolist() == [128, 0, 255, 191]
    assert (to_uint8(torch.zeros(2, 3, 3), "symmetric") == 128).all()


def test_constant_channels_are_zero_and_levels_equal():
    t = torch.zeros(1, 3, 4, 5)
    t[0, 1] = 0.7
    t[0, 2, 0, 0] = 1.0
    for mode in ("channel", "stage"):
        got = to_uint8(t, mode)
        assert got.shape == (3, 4, 5)
    ch = to_uint8(t, "channel")
    assert (ch[0] == 0).all() and (ch[1] == 0).all()
    assert ch[2, 0, 0] == 255 and (ch[2].reshape(-1)[1:] == 0).all()
    assert levels(t, "channel")[1].tolist() == [pytest.approx(0.7), pytest.approx(0.7)]
    st = to_uint8(t, "stage")
    assert (st[1] == np.floor(F32(0.7) / F32(1) * F32(255) + F32(0.5))).all()  # 179


def test_non_finite_values():
    t = torch.tensor([[[float("nan"), float("inf"), -float("inf"), 0.0, 1.0, 2.0]]])
    assert to_uint8(t, "channel")[0, 0].tolist() == [0, 255, 0, 0, 128, 255]
    assert levels(t, "channel").tolist() == [[0.0, 2.0]]
    assert to_uint8(t, "fixed")[0, 0].tolist() == [0, 255, 0, 0, 255, 255]
    all_nan = torch.full((1, 2, 2), float("nan"))
    assert (to_uint8(all_nan, "channel") == 0).all()
    assert levels(all_nan, "stage").tolist() == [[0.0, 0.0]]


def test_float32_overflowing_span_falls_back_to_float64():
    t = torch.tensor([[[-3e38, 0.0, 3e38]]])
    assert to_uint8(t, "channel")[0, 0].tolist() == [0, 128, 255]


def test_other_dtypes_and_shapes(features):
    half = features.half()
    assert to_uint8(half, "channel").shape == (16, 256, 256)
    assert to_uint8(features.double(), "stage").shape == (16, 256, 256)
    assert np.array_equal(to_uint8(features[0], "channel"), to_uint8(features, "channel"))
    with pytest.raises(ValueError, match="batch of one"):
        to_uint8(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="unknown normalisation"):
        to_uint8(features, "minmax")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- colormaps


def test_colormap_tables():
    assert COLORMAPS == ("gray", "viridis", "magma", "inferno", "cividis", "turbo", "coolwarm",
                         "RdBu")
    for name in COLORMAPS:
        lut = colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
        assert not lut.flags.writeable
    gray = colormap_lut("gray")
    assert (gray == np.arange(256)[:, None]).all()
    assert colormap_lut("viridis")[0].tolist() == [68, 1, 84]
    assert colormap_lut("viridis")[255].tolist() == [253, 231, 37]
    assert colormap_lut("magma")[0].tolist() == [0, 0, 4]
    assert colormap_lut("magma")[255].tolist() == [252, 253, 191]
    # sequential maps get brighter steadily (Rec. 601 luma; 8-bit rounding may wobble by <1)
    for name in ("viridis", "magma"):
        luma = colormap_lut(name).astype(float) @ [0.299, 0.587, 0.114]
        assert (np.diff(luma) > -0.5).all()
        assert (luma[8:] - luma[:-8] > 2).all()
    cw = colormap_lut("coolwarm").astype(int)
    assert cw[0, 2] > cw[0, 0] and cw[255, 0] > cw[255, 2]  # blue end, red end
    mid = cw[127:129]
    assert (mid.max(1) - mid.min(1) <= 6).all()  # near-neutral grey in the middle
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_lut("jet")


def test_apply_colormap(features):
    u8 = to_uint8(features, "channel")
    for name in COLORMAPS:
        rgb = apply_colormap(u8, name)
        assert rgb.shape == (*u8.shape, 3) and rgb.dtype == np.uint8
        assert np.array_equal(rgb, colormap_lut(name)[u8])
    with pytest.raises(ValueError, match="uint8"):
        apply_colormap(u8.astype(np.int32), "gray")


# --------------------------------------------------------------------------- mosaics


@pytest.mark.parametrize(
    ("c", "ncols", "rows", "cols"),
    [(1, None, 1, 1), (3, None, 2, 2), (2, None, 1, 2), (16, None, 4, 4), (10, None, 3, 4), (6, 6, 1, 6),
     (7, 3, 3, 3), (5, 99, 1, 5)],
)  # fmt: skip
def test_make_grid_layout(c, ncols, rows, cols):
    h, w, p = 5, 7, 2
    rng = np.random.default_rng(c)
    imgs = rng.integers(0, 255, size=(c, h, w), dtype=np.uint8)
    grid = make_grid(imgs, ncols, padding=p, pad_value=201)
    assert grid.shape == grid_shape(c, h, w, ncols, p) == (rows * (h + p) - p, cols * (w + p) - p)
    origins = grid_layout(c, h, w, ncols, p)
    assert len(origins) == c
    covered = np.zeros(grid.shape, bool)
    for i, (y, x) in enumerate(origins):
        assert (y, x) == ((i // cols) * (h + p), (i % cols) * (w + p))
        assert np.array_equal(grid[y : y + h, x : x + w], imgs[i])
        covered[y : y + h, x : x + w] = True
        for dy, dx in ((0, 0), (h - 1, w - 1), (h // 2, 1)):
            assert channel_at(y + dy, x + dx, c, h, w, ncols, p) == i
    assert (grid[~covered] == 201).all()
    for y, x in zip(*np.nonzero(~covered), strict=True):
        assert channel_at(y, x, c, h, w, ncols, p) is None
    assert channel_at(-1, 0, c, h, w, ncols, p) is None
    assert channel_at(grid.shape[0] + 3, 0, c, h, w, ncols, p) is None


def test_make_grid_rgb_and_single_channel(features):
    u8 = to_uint8(features, "channel")
    rgb = apply_colormap(u8, "magma")
    grid = make_grid(rgb, padding=3, pad_value=(9, 8, 7))
    assert grid.shape == (4 * 259 - 3, 4 * 259 - 3, 3)
    assert np.array_equal(grid[259:515, 518:774], rgb[6])
    assert grid[256, 0].tolist() == [9, 8, 7]
    single = make_grid(u8[:1])
    assert np.array_equal(single, u8[0]) and single.flags.c_contiguous
    with pytest.raises(ValueError):
        make_grid(np.zeros((4, 4), np.uint8))


# --------------------------------------------------------------------------- histograms


def _np_hist(values: np.ndarray, bins=64, range=None):
    v = values.reshape(-1)
    if range is None:
        v = v[np.isfinite(v)]
    return np.histogram(v, bins=bins, range=range)


@pytest.mark.parametrize("bins", [1, 7, 64, 256])
def test_histogram_equals_numpy_on_photos(camera_t, astronaut_t, sharpened, features, bins):
    # Photo values are k/255: many sit exactly on or next to uniform bin edges.
    for t in (camera_t, astronaut_t, sharpened, features):
        counts, edges = histogram(t, bins=bins)
        want_counts, want_edges = _np_hist(t.numpy(), bins)
        assert counts.dtype == np.int64 and edges.dtype == np.float64
        assert np.array_equal(edges, want_edges)
        assert np.array_equal(counts, want_counts)
        assert counts.sum() == t.numel()


def test_histogram_equals_numpy_on_random_data():
    rng = np.random.default_rng(42)
    for dist in (
        rng.standard_normal(300_000),
        rng.uniform(-1e-3, 1e-3, 100_000),
        rng.exponential(5.0, 100_000),
        np.concatenate([rng.standard_normal(1000) * 1e4, [1e-30, -1e-30, 0.0]]),
        np.round(rng.uniform(0, 10, 50_000), 1),  # many values on edges for bins=100
    ):
        for dtype in (np.float32, np.float64):
            a = dist.astype(dtype)
            t = torch.from_numpy(a)
            for bins in (10, 64, 100):
                counts, edges = histogram(t, bins=bins)
                wc, we = np.histogram(a, bins=bins)
                assert np.array_equal(edges, we)
                assert np.array_equal(counts, wc), (dtype, bins)


def test_histogram_values_exactly_on_edges():
    edges = np.linspace(F32(-1), F32(3), 65, dtype=F32)
    a = np.concatenate([edges, np.nextafter(edges, F32(-10)), np.nextafter(edges, F32(10))])
    t = torch.from_numpy(a)
    counts, got_edges = histogram(t, bins=64, value_range=(-1.0, 3.0))
    wc, we = np.histogram(a, bins=64, range=(-1.0, 3.0))
    assert np.array_equal(got_edges, we) and np.array_equal(counts, wc)
    assert counts[-1] == wc[-1]  # the right edge itself lands in the last bin


def test_histogram_with_range_and_non_finite(sharpened):
    x = sharpened.clone()
    x[0, 0, :3, :3] = float("nan")
    x[0, 0, 5, :2] = float("inf")
    x[0, 0, 6, 0] = -float("inf")
    for rng in ((-0.25, 0.75), (0.0, 0.5), (0.1, 0.1001)):
        counts, edges = histogram(x, bins=50, value_range=rng)
        wc, we = np.histogram(x.numpy(), bins=50, range=rng)
        assert np.array_equal(edges, we) and np.array_equal(counts, wc)
    counts, edges = histogram(x, bins=64)  # auto range skips NaN and inf
    finite = x.numpy()[np.isfinite(x.numpy())]
    wc, we = np.histogram(finite, bins=64)
    assert np.array_equal(edges, we) and np.array_equal(counts, wc)
    assert counts.sum() == x.numel() - 9 - 2 - 1


def test_histogram_constant_and_empty():
    counts, edges = histogram(torch.full((1, 1, 4, 4), 2.5), bins=8)
    wc, we = np.histogram(np.full(16, 2.5, F32), bins=8)
    assert np.array_equal(edges, we) and np.array_equal(counts, wc)
    counts, edges = histogram(torch.zeros(0), bins=4)
    assert counts.tolist() == [0, 0, 0, 0] and edges.tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_per_channel_histogram_shares_the_stage_edges(features, signed):
    for t in (features, signed):
        counts, edges = histogram(t, bins=64, per_channel=True)
        assert counts.shape == (t.shape[1], 64)
        _, we = np.histogram(t.numpy(), bins=64)
        assert np.array_equal(edges, we)
        for c in range(t.shape[1]):
            wc, _ = np.histogram(t[0, c].numpy(), bins=we.astype(F32))
            assert np.array_equal(counts[c], wc)
        assert np.array_equal(counts.sum(0), histogram(t, bins=64)[0])


def test_histogram_float32_edges_collapse_does_not_crash():
    a = np.array([1e6, 1e6 + 0.0625, 1e6 + 0.125], F32)  # fewer floats than bins in range
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(a, bins=64)
    counts, edges = histogram(torch.from_numpy(a), bins=64)
    assert counts.sum() == 3 and np.all(np.diff(edges) > 0)


@pytest.mark.parametrize("value", [3e38, -3e38, 1e20, 5e15])
def test_a_huge_constant_stage_has_one_full_bin(value):
    # numpy's lo - 0.5 .. hi + 0.5 is one value even in float64 beyond 2**52, and refused
    x = torch.full((1, 2, 3, 4), value)
    with pytest.raises(ValueError, match="Too many bins"):
        np.histogram(x.double().numpy(), bins=64)
    r = render_stage(x, "symmetric")
    full = np.flatnonzero(r.hist_counts)
    assert r.hist_counts.sum() == 24 and len(full) == 1
    assert r.hist_edges[full[0]] <= np.float32(value) < r.hist_edges[full[0] + 1]
    assert r.stats["min"] == r.stats["max"] == float(np.float32(value))


# --------------------------------------------------------------------------- statistics


def test_stats_are_torch_numbers(features, sharpened, camera_t):
    for t in (features, sharpened, camera_t):
        s = stats(t)
        assert s["min"] == t.min().item() and s["max"] == t.max().item()
        assert s["mean"] == t.mean().item()
        assert s["std"] == t.std().item()  # unbiased, torch's default
        assert s["zero_fraction"] == pytest.approx((t == 0).sum().item() / t.numel(), abs=1e-7)
        assert s["nan_count"] == 0 and s["inf_count"] == 0
        assert all(type(s[k]) is float for k in ("min", "max", "mean", "std", "zero_fraction"))
        assert type(s["nan_count"]) is int
    assert stats(features)["zero_fraction"] > 0.2  # ReLU zeroes a good share


def test_stats_skip_non_finite():
    t = torch.tensor([1.0, 2.0, 3.0, 0.0, float("nan"), float("inf"), -float("inf")])
    s = stats(t)
    finite = torch.tensor([1.0, 2.0, 3.0, 0.0])
    assert (s["min"], s["max"]) == (0.0, 3.0)
    assert s["mean"] == finite.mean().item() and s["std"] == finite.std().item()
    assert (s["nan_count"], s["inf_count"]) == (1, 2)
    assert s["zero_fraction"] == pytest.approx(1 / 7)
    one = stats(torch.tensor([5.0]))
    assert one["std"] == 0.0 and one["mean"] == 5.0
    none = stats(torch.tensor([float("nan")]))
    assert math.isnan(none["mean"]) and none["nan_count"] == 1


# --------------------------------------------------------------------------- render_stage


@pytest.mark.parametrize("mode", NORMALIZE_MODES)
@pytest.mark.parametrize("colormap", ["gray", "viridis"])
def test_render_stage_agrees_with_the_parts(features, mode, colormap):
    r = render_stage(features, mode, colormap, bins=64)
    u8 = to_uint8(features, mode)
    assert np.array_equal(r.channels_u8, u8)
    assert np.array_equal(r.grid_u8, make_grid(u8))
    if colormap == "gray":
        assert r.grid is r.grid_u8 or np.array_equal(r.grid, r.grid_u8)
        assert np.array_equal(r.channel_image(5), u8[5])
    else:
        assert np.array_equal(r.grid, apply_colormap(make_grid(u8), colormap))
        assert np.array_equal(r.channel_image(5), apply_colormap(u8[5], colormap))
    assert r.grid_origins == grid_layout(16, 256, 256)
    assert r.num_channels == 16 and r.tile_size == (256, 256) and r.grid_ncols == 4
    y, x = r.grid_origins[7]
    assert r.channel_at(y + 3, x + 3) == 7 and r.channel_at(y + 256, x) is None
    assert np.array_equal(r.levels, levels(features, mode))
    counts, edges = np.histogram(features.numpy(), bins=64)
    assert np.array_equal(r.hist_counts, counts) and np.array_equal(r.hist_edges, edges)
    assert np.array_equal(r.channel_hist, histogram(features, 64, per_channel=True)[0])
    assert r.stats == stats(features)
    assert r.vector is None and r.shape == (1, 16, 256, 256)


def test_render_stage_channel_stats(signed):
    r = render_stage(signed)
    x = signed[0].double().numpy().reshape(8, -1)
    cs = r.channel_stats
    assert set(cs) == {"min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count"}
    assert np.array_equal(cs["min"], x.min(1)) and np.array_equal(cs["max"], x.max(1))
    np.testing.assert_allclose(cs["mean"], x.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cs["std"], x.std(1, ddof=1), rtol=1e-5)
    # exact zeros where the 5x5 window sees only the photo's black pixels
    assert np.array_equal(cs["zero_fraction"], (x == 0).sum(1) / x.shape[1])
    assert (cs["nan_count"] == 0).all()
    assert cs["nan_count"].dtype == np.int64


def test_render_stage_non_finite_channel_stats():
    t = torch.tensor([[[[1.0, 2.0], [3.0, float("nan")]], [[0.0, 0.0], [float("inf"), 4.0]]]])
    r = render_stage(t)
    cs = r.channel_stats
    assert cs["nan_count"].tolist() == [1, 0] and cs["inf_count"].tolist() == [0, 1]
    assert cs["min"].tolist() == [1.0, 0.0] and cs["max"].tolist() == [3.0, 4.0]
    np.testing.assert_allclose(cs["mean"], [2.0, 4 / 3])
    np.testing.assert_allclose(cs["std"], [1.0, np.std([0, 0, 4.0], ddof=1)])
    assert cs["zero_fraction"].tolist() == [0.0, 0.5]
    assert r.stats["nan_count"] == 1 and r.stats["inf_count"] == 1
    assert r.hist_counts.sum() == 6


def test_render_stage_vector():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 10, generator=g)
    r = render_stage(logits, "stage", "coolwarm")
    assert r.vector is not None and r.vector.dtype == np.float32
    assert np.array_equal(r.vector, logits[0].numpy())
    assert r.channels_u8.shape == (1, 1, 10) and r.grid.shape == (1, 10, 3)
    assert r.stats["max"] == logits.max().item()
    flat = render_stage(logits[0])  # the worker passes output[0]
    assert flat.vector is not None and flat.channels_u8.shape == (1, 1, 10)
    assert render_stage(torch.zeros(1, 4, 1, 1)).vector is None
    with pytest.raises(ValueError, match="batch of one"):
        render_stage(torch.zeros(2, 10))
    with pytest.raises(ValueError, match="unknown colormap"):
        render_stage(logits, "stage", "rainbow")


def test_render_stage_on_gpu_matches_cpu(features):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    a = render_stage(features, "channel", "viridis")
    b = render_stage(features.cuda(), "channel", "viridis")
    assert np.array_equal(a.channels_u8, b.channels_u8)
    assert np.array_equal(a.hist_counts, b.hist_counts)
    assert np.array_equal(a.channel_hist, b.channel_hist)
    assert a.stats["min"] == b.stats["min"] and a.stats["max"] == b.stats["max"]


def test_module_exports():
    assert set(render.__all__) <= set(dir(render))


# --------------------------------------------------------------------------- memory layouts


def _channel_hists(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-channel np.histogram with the stage's edges in the data's precision."""
    e = edges.astype(x.dtype)
    return np.stack([np.histogram(ch.reshape(-1), bins=e)[0] for ch in x])


def _layouts(t: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same (1, C, H, W) values as contiguous, channels_last and a permuted view."""
    return {
        "contiguous": t.contiguous(),
        "channels_last": t.contiguous(memory_format=torch.channels_last),
        "other": t.transpose(2, 3).contiguous().transpose(2, 3),
    }


@pytest.mark.parametrize("mode", NORMALIZE_MODES)
def test_render_stage_is_the_same_in_every_memory_layout(features, signed, mode):
    g = torch.Generator().manual_seed(3)
    odd = torch.randn(1, 2, 7, 9, generator=g)  # too narrow to reduce in channels_last order
    three = torch.rand(1, 3, 40, 24, generator=g)
    for t in (features, signed, odd, three, signed.double(), three.double()):
        want = None
        for name, v in _layouts(t).items():
            r = render_stage(v, mode, "magma")
            x = t[0].numpy()
            assert np.array_equal(r.channels_u8, to_uint8(t, mode)), name
            assert r.channels_u8.flags.c_contiguous
            counts, edges = np.histogram(x[np.isfinite(x)], bins=64)
            assert np.array_equal(r.hist_edges, edges) and np.array_equal(r.hist_counts, counts)
            assert np.array_equal(r.channel_hist, _channel_hists(x, edges)), name
            s = stats(v)
            assert r.stats == s
            assert s["min"] == v.min().item() and s["max"] == v.max().item()
            assert s["mean"] == v.mean().item() and s["std"] == v.std().item()
            cs = r.channel_stats
            flat = x.reshape(len(x), -1).astype(np.float64)
            assert np.array_equal(cs["min"], flat.min(1)) and np.array_equal(cs["max"], flat.max(1))
            assert np.array_equal(cs["zero_fraction"], (flat == 0).mean(1))
            np.testing.assert_allclose(cs["mean"], flat.mean(1), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(cs["std"], flat.std(1, ddof=1), rtol=1e-5, atol=1e-6)
            if want is None:
                want = r
            assert np.array_equal(r.levels, want.levels)
            assert np.array_equal(r.grid, want.grid)
            assert np.array_equal(r.grid, apply_colormap(r.grid_u8, "magma"))


@pytest.mark.parametrize("bins", [1, 7, 64, 100, 256])
def test_render_stage_histograms_exact_near_edges(bins):
    rng = np.random.default_rng(7)
    # many values on and one float away from edges; exact zeros and extremes repeated
    a = np.round(rng.uniform(0, 10, (6, 32, 48)), 1).astype(F32)
    edges = np.histogram_bin_edges(a, bins=bins)
    e32 = edges.astype(F32)
    a[0, :4].flat[: 4 * 48] = np.resize(np.nextafter(e32, F32(-1)), 4 * 48)
    a[1, :4].flat[: 4 * 48] = np.resize(np.nextafter(e32, F32(11)), 4 * 48)
    a[2, :4].flat[: 4 * 48] = np.resize(e32, 4 * 48)
    a[3] = np.clip(a[3], 2.0, 8.0)  # saturated at both ends
    a[4, ::2] = 0.0
    a = np.clip(a, 0.0, 10.0)
    t = torch.from_numpy(a)[None]
    for name, v in _layouts(t).items():
        r = render_stage(v, "stage", bins=bins)
        counts, edges = np.histogram(a, bins=bins)
        assert np.array_equal(r.hist_edges, edges), name
        assert np.array_equal(r.hist_counts, counts), name
        assert np.array_equal(r.channel_hist, _channel_hists(a, edges)), name
        zf = (a.reshape(6, -1) == 0).mean(1)
        assert np.array_equal(r.channel_stats["zero_fraction"], zf), name


def test_render_stage_grid_is_made_once_on_demand(features):
    r = render_stage(features, "channel", "viridis")
    assert "grid" not in vars(r)
    first = r.grid
    assert r.grid is first and np.array_equal(first, apply_colormap(r.grid_u8, "viridis"))
    gray = render_stage(features, "channel", "gray")
    assert gray.grid is gray.grid_u8


# numpy itself warns computing float32 edges across +-3e38 (the histogram is numpy's too)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_render_stage_awkward_ranges_match_the_parts():
    collapsed = torch.tensor([1e6, 1e6 + 0.0625, 1e6 + 0.125])  # float32 edges collapse
    huge = torch.tensor([[[-3e38, 0.0, 3e38]]])  # hi - lo overflows float32
    tiny = torch.tensor([[[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # constant stage
    for t in (collapsed, huge, tiny):
        r = render_stage(t, "channel")
        assert np.array_equal(r.channels_u8, to_uint8(t, "channel"))
        counts, edges = histogram(t, bins=64)
        assert np.array_equal(r.hist_counts, counts) and np.array_equal(r.hist_edges, edges)
        assert r.stats == stats(t)
    assert render_stage(huge).channels_u8[0, 0].tolist() == [0, 128, 255]


def _np_levels(x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The documented levels from the finite values, in numpy (per channel, float32)."""
    c = len(x)
    flat = np.where(np.isfinite(x), x, np.nan).reshape(c, -1)
    lo, hi = np.nanmin(flat, 1).astype(F32), np.nanmax(flat, 1).astype(F32)
    if mode == "stage":
        return np.full(c, lo.min(), F32), np.full(c, hi.max(), F32)
    if mode == "symmetric":
        m = max(np.abs(lo).max(), np.abs(hi).max())
        m = F32(m if m > 0 else 1)
        return np.full(c, -m, F32), np.full(c, m, F32)
    return lo, hi


def _np_mosaic(u8: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    c, h, w = u8.shape
    rows = -(-c // cols)
    out = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad), np.uint8)
    for i in range(c):
        y, x = (i // cols) * (h + pad), (i % cols) * (w + pad)
        out[y : y + h, x : x + w] = u8[i]
    return out


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("mode", NORMALIZE_MODES)
def test_pictures_only_render_is_the_formula_on_a_conv_of_a_photo(astronaut_t, mode):
    """The window's fast path (pictures first, channels_last as the engine computes them)
    gives the docstring's pixels and the plain mosaic, also with constant, NaN and inf
    channels in the stage."""
    g = torch.Generator().manual_seed(5)
    conv = F.conv2d(astronaut_t, torch.randn(16, 3, 3, 3, generator=g) * 0.4, padding=1)
    plain = conv.contiguous(memory_format=torch.channels_last)
    odd = conv.clone()
    odd[0, 3] = 0.25  # a constant channel
    odd[0, 5, 10:20, 30:40] = float("nan")
    odd[0, 6, 0, :7] = float("inf")
    odd[0, 6, 1, :7] = -float("inf")
    odd = odd.contiguous(memory_format=torch.channels_last)
    const = plain.clone()
    const[0, 3] = 0.25
    for t in (plain, const, odd):
        x = t[0].numpy()
        r = render_stage(t[0], mode, "viridis", stats=False)
        if mode == "fixed":
            with np.errstate(invalid="ignore"):
                want = np.nan_to_num(np.clip(x, 0, 1) * F32(255), nan=0).astype(np.uint8)
            lo, hi = np.zeros(len(x), F32), np.ones(len(x), F32)
        else:
            lo, hi = _np_levels(x, mode)
            want = np_minmax_u8(x, lo, hi)
        assert np.array_equal(r.channels_u8, want)
        assert np.array_equal(r.levels, np.stack([lo, hi], 1).astype(np.float64))
        assert np.array_equal(r.grid_u8, _np_mosaic(want, 4))
        assert r.grid_u8.flags.c_contiguous and r.channels_u8.flags.c_contiguous
        if mode == "channel" and t is not plain:
            assert (r.channels_u8[3] == 0).all()  # a constant channel shows 0


@pytest.mark.parametrize("scale", [1e-39, 1e-42, 1e-44])
@pytest.mark.parametrize("channels_last", [False, True])
def test_subnormal_stages_get_exact_histograms(scale, channels_last):
    # A range a few subnormal steps wide: the bins-per-unit scale overflows float32, and the
    # float32 edges stray from even spacing by a large part of a bin (both used to break the
    # histogram: a crash in bincount, then miscounted values).
    torch.manual_seed(0)
    x = torch.randn(1, 16, 30, 30) * scale
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    r = render.render_stage(x[0], "channel")
    edges = r.hist_edges
    values = x[0].numpy().astype(np.float64)
    bins = np.clip(np.searchsorted(edges, values.reshape(-1), side="right") - 1, 0, 63)
    assert np.array_equal(r.hist_counts, np.bincount(bins, minlength=64))
    per_channel = [np.bincount(np.clip(np.searchsorted(edges, v.reshape(-1), side="right") - 1,
                                       0, 63), minlength=64) for v in values]
    assert np.array_equal(r.channel_hist, np.stack(per_channel))
    assert r.stats["min"] == float(x.min()) and r.stats["max"] == float(x.max())


@pytest.mark.parametrize("kw", [{"padding": -1}, {"padding": -7}, {"pad_value": 256},
                                {"pad_value": -1}])
def test_impossible_mosaic_settings_are_refused(kw):
    with pytest.raises(ValueError, match="padding|pad_value"):
        render.render_stage(torch.rand(4, 6, 6), "channel", **kw)


def test_a_range_beyond_float32_draws_without_warnings():
    import warnings

    x = torch.zeros(2, 8, 8)
    x[0, 0, 0], x[1, 7, 7] = -3e38, 3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow on the way to its float64 edges
        r = render.render_stage(x, "channel")
    assert np.isfinite(r.hist_edges).all() and r.hist_counts.sum() == x.numel()
    assert r.hist_counts[0] == 1 and r.hist_counts[-1] == 1

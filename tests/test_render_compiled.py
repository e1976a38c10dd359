"""The compiled pixel kernels (render_jit) give the torch path's bytes exactly, and both give
the documented formula evaluated independently in numpy, on real photos through real
layers and on adversarial float32 data."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from layerlab.core import render, render_cpu

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module", autouse=True)
def compiled() -> None:
    # numba is a dependency: the kernels must compile, or the window silently runs slower.
    assert render_cpu.compile_kernels(wait=True)


def _both(x: torch.Tensor, mode: str, **kw) -> tuple[render.RenderedStage, render.RenderedStage]:
    """render_stage(x) by the compiled kernels and by the torch path."""
    fast = render.render_stage(x, mode, stats=False, **kw)
    kept, render_cpu._jit = render_cpu._jit, None
    try:
        slow = render.render_stage(x, mode, stats=False, **kw)
    finally:
        render_cpu._jit = kept
    return fast, slow


def _formula(x: torch.Tensor, lv: np.ndarray) -> np.ndarray:
    """floor((x - lo) / (hi - lo) * 255 + 0.5) step by step in float32, hi == lo as 1."""
    a = x.detach().contiguous().numpy().astype(np.float32)
    lo = lv[:, 0].astype(np.float32)[:, None, None]
    span = (lv[:, 1] - lv[:, 0]).astype(np.float32)[:, None, None]
    span = np.where(span == 0, np.float32(1), span)
    y = ((a - lo) / span) * np.float32(255) + np.float32(0.5)
    return np.clip(np.floor(y), 0, 255).astype(np.uint8)


def _photos() -> list[torch.Tensor]:
    rgb = [torch.from_numpy(p).permute(2, 0, 1).float().div(255)[None]
           for p in (skdata.astronaut(), skdata.coffee(), skdata.chelsea())]
    return [torch.from_numpy(skdata.camera()).float().div(255)[None, None], *rgb]


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("mode", ["channel", "stage", "symmetric"])
def test_real_photos_through_a_conv_give_the_same_bytes(channels_last, mode):
    torch.manual_seed(0)
    for photo in _photos():
        conv = torch.nn.Conv2d(photo.shape[1], 16, 3, padding=1)
        x = photo
        if channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.to(
                memory_format=torch.channels_last)
        with torch.no_grad():
            stage = F.relu(conv(x))[0] if mode == "channel" else conv(x)[0]
        fast, slow = _both(stage, mode)
        assert np.array_equal(fast.levels, slow.levels)
        assert np.array_equal(fast.channels_u8, slow.channels_u8)
        assert np.array_equal(fast.grid_u8, slow.grid_u8)
        assert np.array_equal(fast.channels_u8, _formula(stage, fast.levels))
        # the mosaic is the channels tiled as make_grid tiles them
        assert np.array_equal(fast.grid_u8, render.make_grid(fast.channels_u8, fast.grid_ncols))


def test_the_mosaic_keeps_its_layout_padding_and_pad_value():
    torch.manual_seed(1)
    stage = torch.randn(1, 64, 37, 53).to(memory_format=torch.channels_last)[0]
    for ncols, padding, pad_value in ((None, 2, 0), (5, 0, 0), (3, 4, 200), (64, 1, 7)):
        fast, slow = _both(stage, "channel", ncols=ncols, padding=padding, pad_value=pad_value)
        assert np.array_equal(fast.grid_u8, slow.grid_u8)
        assert fast.grid_origins == slow.grid_origins


@pytest.mark.parametrize("c", [3, 8, 12, 16, 24, 40, 64])
@pytest.mark.parametrize("w", [8, 13, 64])
def test_channels_last_rows_are_split_into_their_channels(c, w):
    # channels_last rows are split into channels 8 x 8 bytes at a time by word transposes
    # where c is a multiple of 8 (the pixels past the last whole block of 8 a byte at a
    # time), a byte at a time for other channel counts
    torch.manual_seed(c + w)
    stage = torch.randn(1, c, 64, w).to(memory_format=torch.channels_last)[0]
    assert not render_cpu.Matrix(stage).rows  # the channels-last kernel, not the copy to rows
    fast, slow = _both(stage, "channel", padding=3, pad_value=9)
    assert np.array_equal(fast.grid_u8, slow.grid_u8)
    assert np.array_equal(fast.channels_u8, slow.channels_u8)
    assert np.array_equal(fast.channels_u8, _formula(stage, fast.levels))


def test_the_word_transpose_is_numpys_transpose():
    from layerlab.core import render_jit

    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        words = render_jit._transpose8(*(np.uint64(v) for v in m.view("<u8").ravel()))
        out = np.array(words, dtype="<u8").view(np.uint8).reshape(8, 8)
        assert np.array_equal(out, m.T)


def test_channel_pictures_are_cut_from_the_mosaic_when_asked_for():
    stage = torch.randn(1, 16, 20, 24).to(memory_format=torch.channels_last)[0]
    fast, slow = _both(stage, "channel")
    pictures = fast.channels
    assert pictures._array is None  # the view draws the mosaic; nothing cut yet
    assert fast.num_channels == 16 and fast.tile_size == (20, 24)
    one = fast.channel_u8(5)  # a one-channel view: its tile as it is, nothing cut
    assert np.shares_memory(one, fast.grid_u8)
    assert np.array_equal(one, slow.channels_u8[5])
    assert np.array_equal(fast.channel_image(5), slow.channel_image(5))
    assert pictures._array is None
    for k, (y, x) in enumerate(fast.grid_origins):
        assert np.array_equal(fast.channels_u8[k], fast.grid_u8[y : y + 20, x : x + 24])
    assert np.array_equal(fast.channels_u8, slow.channels_u8)
    done = render.add_stats(fast, stage)
    assert done.channels is pictures  # the numbers' render shares the cut pictures


def test_statistics_after_compiled_pixels_are_the_full_renders():
    stage = F.conv2d(_photos()[1], torch.randn(8, 3, 5, 5), padding=2)
    stage = stage.contiguous(memory_format=torch.channels_last)[0]
    fast, _ = _both(stage, "channel")
    full = render.render_stage(stage, "channel")
    done = render.add_stats(fast, stage)
    assert done.stats == full.stats
    assert np.array_equal(done.hist_counts, full.hist_counts)
    assert np.array_equal(done.channels_u8, full.channels_u8)


floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
edge_values = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1e-38, 3e38, -3e38, 0.5, 1.0])


@settings(max_examples=150, deadline=None)
@given(
    data=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1,
                                                 max_side=24),
                    elements=st.one_of(floats, edge_values)),
    channels_last=st.booleans(),
    mode=st.sampled_from(["channel", "stage", "symmetric", "fixed"]),
)
def test_any_finite_float32_data_gives_the_same_bytes(data, channels_last, mode):
    x = torch.from_numpy(data)
    if channels_last:
        x = x[None].contiguous(memory_format=torch.channels_last)[0]
    fast, slow = _both(x, mode)
    assert np.array_equal(fast.levels, slow.levels)
    assert np.array_equal(fast.channels_u8, slow.channels_u8)
    assert np.array_equal(fast.grid_u8, slow.grid_u8)


def test_float64_nan_and_inf_keep_to_the_torch_path():
    x = torch.rand(4, 9, 9, dtype=torch.float64)
    fast, slow = _both(x, "channel")
    assert np.array_equal(fast.channels_u8, slow.channels_u8)
    y = torch.rand(4, 9, 9)
    y[1, 2, 3], y[2, 0, 0] = float("nan"), float("inf")
    fast, slow = _both(y, "channel")
    assert np.array_equal(fast.channels_u8, slow.channels_u8)
    assert fast.channels_u8[1, 2, 3] == 0 and fast.channels_u8[2, 0, 0] == 255


def test_layerlab_compiled_0_keeps_to_torch():
    code = ("from layerlab.core import render_cpu; "
            "print(render_cpu.compile_kernels(wait=True), render_cpu._jit_thread)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "LAYERLAB_COMPILED": "0"}, timeout=120)
    assert out.stdout.split() == ["False", "None"], out.stderr


# ---- the kernels on torch's OpenMP team


def test_the_kernels_borrow_torchs_openmp_runtime():
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not run on OpenMP")
    assert render_cpu._omp_parallel != 0


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("channels_last", [True, False])
def test_a_team_of_any_size_gives_one_threads_bytes(monkeypatch, threads, channels_last):
    # Rows are claimed in chunks by whichever thread comes first: the bytes must not depend
    # on how many threads shared them, nor on which took what.
    monkeypatch.setattr(render_cpu, "_TEAM_MIN_VALUES", 0)  # small stages too
    torch.manual_seed(threads)
    photo = _photos()[2]
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)  # 5 channels: an empty slot in the mosaic
    x = photo
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.to(
            memory_format=torch.channels_last)
    with torch.no_grad():
        stage = conv(x)[0]
    kept = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fast, slow = _both(stage, "channel", padding=3, pad_value=77)
    finally:
        torch.set_num_threads(kept)
    assert np.array_equal(fast.levels, slow.levels)
    assert np.array_equal(fast.grid_u8, slow.grid_u8)
    lo = stage.reshape(5, -1).amin(1).double().numpy()
    hi = stage.reshape(5, -1).amax(1).double().numpy()
    assert np.array_equal(fast.levels, np.stack([lo, hi], 1))  # torch's own min and max


@pytest.mark.parametrize("where", [(0, 0, 0), (3, 200, 7), (15, 255, 255)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_anywhere_in_channels_last_data_goes_to_the_exact_path(where, bad):
    torch.manual_seed(2)
    stage = torch.randn(1, 16, 256, 256).to(memory_format=torch.channels_last)[0]
    assert render_cpu._channels_last_rows(stage) is not None
    assert render_cpu._minmax_compiled(render_cpu._channels_last_rows(stage), 16) is not None
    stage[where] = bad
    assert render_cpu._minmax_compiled(render_cpu._channels_last_rows(stage), 16) is None
    fast, slow = _both(stage, "channel")
    assert np.array_equal(fast.grid_u8, slow.grid_u8)
    assert fast.channels_u8[where] == (255 if bad == float("inf") else 0)


@settings(max_examples=100, deadline=None)
@given(lo=hnp.arrays(np.float32, st.integers(1, 40), elements=st.one_of(floats, edge_values)),
       data=st.data())
def test_the_compiled_level_spans_are_numpys(lo, data):
    from layerlab.core import render_jit

    hi = data.draw(hnp.arrays(np.float32, lo.shape, elements=st.one_of(floats, edge_values)))
    hi = np.maximum(lo, hi)  # levels come as lo <= hi
    hi[: len(hi) // 3] = lo[: len(hi) // 3]  # constant channels
    with np.errstate(over="ignore"):
        want = render_cpu.level_spans(lo, hi)
    got = render_jit.level_spans(lo, hi)
    assert got[2] == want[2]
    assert np.array_equal(got[0], want[0])
    assert np.array_equal(got[1], want[1])  # an overflowed span is inf in both


def test_a_cold_cache_is_filled_by_a_child_process(tmp_path, monkeypatch):
    # Compiling holds Python's lock for long stretches, so the window's process only loads
    # kernels a child process compiled into numba's cache.
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not render_cpu._kernels_cached()
    render_cpu._compile_in_child()
    assert render_cpu._kernels_cached()
    assert list(tmp_path.rglob("render_jit.quantize_hwc-*.nbc"))  # the kernels themselves


def test_a_zero_extreme_is_positive_zero_however_the_rows_were_shared(monkeypatch):
    # -0.0 == 0.0, so the running min keeps whichever zero came first
    monkeypatch.setattr(render_cpu, "_TEAM_MIN_VALUES", 0)
    x = torch.zeros(1, 8, 64, 64)
    x[0, :, :32] = -0.0
    x[0, 3, 40, 5] = 1.0
    x = x.to(memory_format=torch.channels_last)[0]
    for threads in (1, 2, 3):
        kept = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            lo, hi = render_cpu._minmax_compiled(render_cpu._channels_last_rows(x), 8)
        finally:
            torch.set_num_threads(kept)
        assert not np.signbit(lo).any() and not np.signbit(hi).any()
        assert hi[3] == 1.0 and lo[3] == 0.0

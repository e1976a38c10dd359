"""Explain a value: the breakdown's numbers against torch called directly and plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from layerlab.core.edits import materialize
from layerlab.core.explain import explain
from layerlab.core.pipeline import new_layer

# torch says that 'same' with an even kernel pads a copy of the input: expected here
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"


def photo(name: str, mode: str, size: int = 96) -> np.ndarray:
    """A crop of a real sample photo, C x H x W float32 in [0, 1] (ToTensor convention)."""
    img = Image.open(SAMPLES / name).convert(mode)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr[:, 200:200 + size, 180:180 + size + 10])


GRAY = photo("camera.png", "L")
RGB = photo("astronaut.jpg", "RGB")


def close(total: float, value: float) -> bool:
    return abs(total - value) <= 1e-5 * (1 + abs(value))


def torch_out(fn, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return fn(torch.from_numpy(x)[None])[0].numpy()


CONV_CASES = [
    (GRAY, dict(kernel_size=3, padding=1, bias=False), 0, 0, 0),
    (RGB, dict(out_channels=4, kernel_size=3, stride=2, padding=1), 3, 0, 47),
    (RGB, dict(out_channels=2, kernel_size=5, padding=2, padding_mode="reflect"), 1, 0, 0),
    (RGB, dict(out_channels=2, kernel_size=3, padding=3, dilation=3,
               padding_mode="reflect"), 0, 95, 105),
    (RGB, dict(out_channels=6, kernel_size=[3, 5], stride=[2, 1], padding=[1, 2],
               groups=3), 5, 10, 0),
    (RGB, dict(out_channels=3, kernel_size=3, padding="same", dilation=2, groups=3,
               padding_mode="replicate"), 2, 40, 105),
    (RGB, dict(out_channels=2, kernel_size=4, padding="same", padding_mode="circular"),
     1, 95, 0),
    (RGB, dict(out_channels=2, kernel_size=4, padding="valid"), 0, 5, 7),
    (RGB, dict(out_channels=2, kernel_size=[4, 2], padding="same", dilation=[1, 3]), 1, 95,
     105),
]


@pytest.mark.parametrize("image,args,channel,y,x", CONV_CASES)
def test_conv_products_sums_and_total_equal_numpy_and_torch(image, args, channel, y, x):
    layer = new_layer("Conv2d", image.shape, **args)
    params = materialize(layer)
    if layer.args["bias"]:
        params = {**params, "bias": np.linspace(-0.3, 0.4, layer.args["out_channels"],
                                                dtype=np.float32)}
    a = layer.args
    weight = torch.from_numpy(np.array(params["weight"]))
    bias = torch.from_numpy(np.array(params["bias"])) if a["bias"] else None
    inp = torch.from_numpy(image)[None]
    # torch directly: F.pad for the padding mode, then the convolution
    kh, kw = (a["kernel_size"] if isinstance(a["kernel_size"], list)
              else [a["kernel_size"]] * 2)
    dh, dw = (a["dilation"],) * 2 if isinstance(a["dilation"], int) else a["dilation"]
    if a["padding"] == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        pads = (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    elif a["padding"] == "valid":
        pads = (0, 0, 0, 0)
    else:
        ph, pw = (a["padding"],) * 2 if isinstance(a["padding"], int) else a["padding"]
        pads = (pw, pw, ph, ph)
    mode = {"zeros": "constant"}.get(a["padding_mode"], a["padding_mode"])
    padded_t = F.pad(inp, pads, mode=mode)
    with torch.no_grad():
        want = F.conv2d(padded_t, weight, bias, stride=a["stride"], dilation=a["dilation"],
                        groups=a["groups"])[0].numpy()
    value = float(want[channel, y, x])

    e = explain(layer, params, image, channel, y, x)
    assert e.kind == "conv"
    assert e.value == value  # the float32 value torch computed, exactly
    # independent numpy: the patch under the kernel, the products, the per-channel sums
    sh, sw = (a["stride"],) * 2 if isinstance(a["stride"], int) else a["stride"]
    cin_g = a["in_channels"] // a["groups"]
    g = channel // (a["out_channels"] // a["groups"])
    padded = padded_t[0].numpy().astype(np.float64)[g * cin_g:(g + 1) * cin_g]
    patch = padded[:, y * sh: y * sh + dh * (kh - 1) + 1: dh,
                   x * sw: x * sw + dw * (kw - 1) + 1: dw]
    products = patch * params["weight"][channel].astype(np.float64)
    assert e.input_channels == tuple(range(g * cin_g, (g + 1) * cin_g))
    np.testing.assert_array_equal(e.arrays["patch"], patch)
    np.testing.assert_array_equal(e.arrays["products"], products)
    sums = [t for name, t in e.terms if name.startswith("ch ")]
    np.testing.assert_allclose(sums, products.sum(axis=(1, 2)), rtol=1e-12, atol=1e-15)
    b = float(params["bias"][channel]) if a["bias"] else 0.0
    if a["bias"]:
        assert dict(e.terms)["bias"] == b
    assert close(e.total, value)
    assert abs(e.total - (products.sum() + b)) < 1e-12


def test_conv_padding_cells_are_marked():
    layer = new_layer("Conv2d", GRAY.shape, kernel_size=3, padding=1)
    e = explain(layer, materialize(layer), GRAY, 0, 0, 0)
    assert e.arrays["padded"][0].tolist() == [[True, True, True], [True, False, False],
                                             [True, False, False]]
    assert e.rows == (-1, 0, 1) and e.cols == (-1, 0, 1)


def test_linear_on_a_vector_stage():
    vec = GRAY[0, :8, :40].reshape(-1).copy()  # 320 values of the photo
    layer = new_layer("Linear", vec.shape, in_features=vec.size, out_features=10)
    params = materialize(layer)
    params = {**params, "bias": np.arange(10, dtype=np.float32) / 7}
    lin = torch.nn.Linear(vec.size, 10)
    lin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    want = torch_out(lin, vec)
    for i in (0, 7):
        e = explain(layer, params, vec, 0, 0, i)
        assert e.kind == "linear" and e.value == float(want[i])
        products = vec.astype(np.float64) * params["weight"][i].astype(np.float64)
        np.testing.assert_array_equal(e.arrays["products"], products)
        assert close(e.total, e.value)
        assert dict(e.terms)["bias"] == float(params["bias"][i])


@pytest.mark.parametrize("args", [dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=2), dict(kernel_size=3, dilation=2,
                                                             ceil_mode=True)])
def test_max_pool_picks_torchs_element(args):
    layer = new_layer("MaxPool2d", RGB.shape, **args)
    a = layer.args
    with torch.no_grad():
        out, idx = F.max_pool2d(torch.from_numpy(RGB)[None], a["kernel_size"], a["stride"],
                                a["padding"], a["dilation"], a["ceil_mode"],
                                return_indices=True)
    out, idx = out[0].numpy(), idx[0].numpy()
    w = RGB.shape[2]
    for c, y, x in [(0, 0, 0), (1, 5, 7), (2, out.shape[1] - 1, out.shape[2] - 1)]:
        e = explain(layer, {}, RGB, c, y, x)
        assert e.value == float(out[c, y, x]) == e.total  # exactly
        assert e.details["winner_flat"] == int(idx[c, y, x])
        r, col = e.details["winner"]
        assert RGB[c, r, col] == out[c, y, x] and r * w + col == idx[c, y, x]


@pytest.mark.parametrize("include", [True, False])
@pytest.mark.parametrize("ceil", [False, True])
def test_avg_pool_count_include_pad(include, ceil):
    layer = new_layer("AvgPool2d", GRAY.shape, kernel_size=3, stride=2, padding=1,
                      count_include_pad=include, ceil_mode=ceil)
    with torch.no_grad():
        want = F.avg_pool2d(torch.from_numpy(GRAY)[None], 3, 2, 1, ceil, include)[0].numpy()
    h, w = GRAY.shape[1:]
    for y, x in [(0, 0), (10, 20), (want.shape[1] - 1, want.shape[2] - 1)]:
        e = explain(layer, {}, GRAY, 0, y, x)
        assert e.value == float(want[0, y, x])
        rows = [r for r in range(2 * y - 1, 2 * y + 2) if 0 <= r < h]
        cols = [c for c in range(2 * x - 1, 2 * x + 2) if 0 <= c < w]
        s = GRAY[0][np.ix_(rows, cols)].astype(np.float64).sum()
        assert dict(e.terms)["sum"] == pytest.approx(s, rel=1e-12)
        if not include:
            assert e.details["divisor"] == len(rows) * len(cols)
        elif (y, x) == (0, 0):
            assert e.details["divisor"] == 9  # the padded zeros count
        assert close(e.total, e.value)


def test_lp_pool_power_sum():
    layer = new_layer("LPPool2d", GRAY.shape, norm_type=3.0, kernel_size=2)
    with torch.no_grad():
        want = torch.nn.LPPool2d(3.0, 2)(torch.from_numpy(GRAY)[None])[0].numpy()
    e = explain(layer, {}, GRAY, 0, 4, 9)
    win = GRAY[0, 8:10, 18:20].astype(np.float64)
    assert dict(e.terms)["power sum"] == pytest.approx((win ** 3).sum(), rel=1e-12)
    assert e.value == float(want[0, 4, 9]) and close(e.total, e.value)


def test_adaptive_pools():
    for t, fn in [("AdaptiveAvgPool2d", F.adaptive_avg_pool2d),
                  ("AdaptiveMaxPool2d", F.adaptive_max_pool2d)]:
        layer = new_layer(t, RGB.shape, output_size=[5, 7])
        want = torch_out(lambda v, fn=fn: fn(v, (5, 7)), RGB)
        for c, y, x in [(0, 0, 0), (2, 4, 6), (1, 2, 3)]:
            e = explain(layer, {}, RGB, c, y, x)
            assert e.value == float(want[c, y, x]) and close(e.total, e.value)


ACTS = [("ReLU", {}, torch.relu), ("Sigmoid", {}, torch.sigmoid), ("Tanh", {}, torch.tanh),
        ("LeakyReLU", {"negative_slope": 0.2}, lambda v: F.leaky_relu(v, 0.2)),
        ("ELU", {"alpha": 0.5}, lambda v: F.elu(v, 0.5)), ("GELU", {}, F.gelu),
        ("SiLU", {}, F.silu), ("Softplus", {"beta": 2.0}, lambda v: F.softplus(v, 2.0)),
        ("Hardtanh", {"min_val": -0.2, "max_val": 0.3}, lambda v: F.hardtanh(v, -0.2, 0.3))]


@pytest.mark.parametrize("type_name,args,fn", ACTS)
def test_activation_f_of_x_equals_torch(type_name, args, fn):
    centred = (RGB - 0.5) * 6  # negative and positive inputs
    layer = new_layer(type_name, centred.shape, **args)
    want = torch_out(fn, centred)
    for c, y, x in [(0, 0, 0), (1, 30, 40), (2, 95, 105), (0, 50, 3)]:
        e = explain(layer, {}, centred, c, y, x)
        assert e.kind == "activation"
        assert e.details["x"] == float(centred[c, y, x])
        assert e.value == float(want[c, y, x]) and close(e.total, e.value)
        xs, ys = e.curve
        assert np.array_equal(ys, torch_out(fn, xs))


def test_batchnorm_running_stats():
    layer = new_layer("BatchNorm2d", RGB.shape)
    params = {"weight": np.array([1.5, 0.5, 2.0], np.float32),
              "bias": np.array([0.1, -0.2, 0.0], np.float32),
              "running_mean": np.array([0.4, 0.5, 0.3], np.float32),
              "running_var": np.array([0.05, 0.2, 0.09], np.float32)}
    bn = torch.nn.BatchNorm2d(3).eval()
    bn.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=False)
    want = torch_out(bn, RGB)
    e = explain(layer, params, RGB, 1, 12, 34)
    assert e.details["mean"] == float(params["running_mean"][1])
    assert e.details["variance"] == float(params["running_var"][1])
    assert e.details["gamma"] == 0.5 and e.details["beta"] == float(np.float32(-0.2))
    assert e.value == float(want[1, 12, 34]) and close(e.total, e.value)


def torch_mean_var(t: torch.Tensor, dims) -> tuple[float, float]:
    return float(t.mean(dims)), float(t.var(dims, unbiased=False))


def test_instance_group_layer_norm_statistics_equal_torch():
    x = torch.from_numpy(RGB)
    cases = [
        ("InstanceNorm2d", {"num_features": 3}, torch.nn.InstanceNorm2d(3), 2,
         torch_mean_var(x[2], (0, 1))),
        ("BatchNorm2d", {"num_features": 3, "track_running_stats": False},
         torch.nn.BatchNorm2d(3, track_running_stats=False).eval(), 0,
         torch_mean_var(x[0], (0, 1))),
        ("GroupNorm", {"num_groups": 1, "num_channels": 3}, torch.nn.GroupNorm(1, 3), 1,
         torch_mean_var(x, (0, 1, 2))),
        ("LayerNorm", {"normalized_shape": list(RGB.shape[1:])},
         torch.nn.LayerNorm(list(RGB.shape[1:])), 1, torch_mean_var(x[1], (0, 1))),
        ("LayerNorm", {"normalized_shape": [RGB.shape[2]]},
         torch.nn.LayerNorm(RGB.shape[2]), 2, torch_mean_var(x[2, 7], (0,))),
    ]
    for type_name, args, module, c, (mean, var) in cases:
        layer = new_layer(type_name, RGB.shape, **args)
        want = torch_out(module.eval(), RGB)
        e = explain(layer, materialize(layer), RGB, c, 7, 21)
        assert e.details["mean"] == pytest.approx(mean, rel=1e-5, abs=1e-7), type_name
        assert e.details["variance"] == pytest.approx(var, rel=1e-5), type_name
        assert e.value == float(want[c, 7, 21]) and close(e.total, e.value), type_name


def test_group_norm_groups():
    image = np.concatenate([RGB, GRAY[:, :, :RGB.shape[2]]])  # 4 channels
    layer = new_layer("GroupNorm", image.shape, num_groups=2, num_channels=4)
    want = torch_out(torch.nn.GroupNorm(2, 4), image)
    e = explain(layer, materialize(layer), image, 3, 50, 60)
    mean, var = torch_mean_var(torch.from_numpy(image)[2:4], (0, 1, 2))
    assert e.details["group"] == 1
    assert e.details["mean"] == pytest.approx(mean, rel=1e-5)
    assert e.details["variance"] == pytest.approx(var, rel=1e-5)
    assert e.value == float(want[3, 50, 60]) and close(e.total, e.value)


def test_other_ops_say_not_explained_yet_and_still_give_torchs_value():
    layer = new_layer("Upsample", GRAY.shape, scale_factor=2.0)
    e = explain(layer, {}, GRAY, 0, 3, 5)
    assert e.kind == "none" and not e.explained
    assert "not explained yet" in e.formula
    assert e.value == float(torch_out(lambda v: F.interpolate(v, scale_factor=2.0), GRAY)[0, 3, 5])


def test_outside_the_output_is_an_index_error():
    layer = new_layer("MaxPool2d", GRAY.shape, kernel_size=2)
    with pytest.raises(IndexError):
        explain(layer, {}, GRAY, 0, 48, 0)


def test_layer_norm_on_a_vector_stage_and_affine_instance_norm():
    vec = RGB[1, 3, :64].copy()
    layer = new_layer("LayerNorm", vec.shape, normalized_shape=[64])
    params = {"weight": np.linspace(0.5, 1.5, 64, dtype=np.float32),
              "bias": np.linspace(-1, 1, 64, dtype=np.float32)}
    ln = torch.nn.LayerNorm(64)
    ln.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    want = torch_out(ln, vec)
    e = explain(layer, params, vec, 0, 0, 10)
    assert e.details["gamma"] == float(params["weight"][10])
    assert e.details["mean"] == pytest.approx(float(torch.from_numpy(vec).mean()), rel=1e-6)
    assert e.value == float(want[10]) and close(e.total, e.value)

    layer = new_layer("InstanceNorm2d", RGB.shape, affine=True)
    params = {**materialize(layer), "weight": np.array([2.0, 0.5, 1.0], np.float32),
              "bias": np.array([0.0, 0.25, -1.0], np.float32)}
    inorm = torch.nn.InstanceNorm2d(3, affine=True)
    inorm.load_state_dict({k: torch.from_numpy(np.array(params[k]))
                           for k in ("weight", "bias")})
    want = torch_out(inorm, RGB)
    e = explain(layer, params, RGB, 1, 40, 50)
    assert e.details["beta"] == 0.25
    assert e.value == float(want[1, 40, 50]) and close(e.total, e.value)


def scatter_conv_transpose(x: np.ndarray, w: np.ndarray, bias, s, p, d, op, groups):
    """ConvTranspose2d the way it is defined: every input pixel adds its value times the
    kernel into the output (numpy, float64), then the padding is cropped."""
    cin, h, wd = x.shape
    cout_g, kh, kw = w.shape[1:]
    full_h = (h - 1) * s[0] + d[0] * (kh - 1) + 1 + op[0]
    full_w = (wd - 1) * s[1] + d[1] * (kw - 1) + 1 + op[1]
    out = np.zeros((cout_g * groups, full_h, full_w))
    cin_g = cin // groups
    for i in range(cin):
        g = i // cin_g
        for ky in range(kh):
            for kx in range(kw):
                rows = slice(ky * d[0], ky * d[0] + (h - 1) * s[0] + 1, s[0])
                cols = slice(kx * d[1], kx * d[1] + (wd - 1) * s[1] + 1, s[1])
                for ol in range(cout_g):
                    out[g * cout_g + ol, rows, cols] += x[i] * float(w[i, ol, ky, kx])
    out = out[:, p[0]: full_h - p[0], p[1]: full_w - p[1]]
    if bias is not None:
        out += np.asarray(bias, np.float64)[:, None, None]
    return out


@pytest.mark.parametrize("args,channel,y,x", [
    (dict(out_channels=2, kernel_size=3, stride=2, padding=1, output_padding=1), 1, 7, 10),
    (dict(out_channels=6, kernel_size=[3, 2], stride=[2, 3], dilation=2, groups=3,
          padding=[2, 1]), 4, 0, 5),
    (dict(out_channels=3, kernel_size=4, stride=1, padding=0, bias=False), 2, 13, 0),
])
def test_conv_transpose_gathers_what_torch_scatters(args, channel, y, x):
    image = RGB[:, :12, :14].copy()
    layer = new_layer("ConvTranspose2d", image.shape, **args)
    params = dict(materialize(layer))
    a = layer.args
    if a["bias"]:
        params["bias"] = np.linspace(-0.2, 0.3, a["out_channels"], dtype=np.float32)
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)  # noqa: E731
    with torch.no_grad():
        want = F.conv_transpose2d(
            torch.from_numpy(image)[None], torch.from_numpy(np.array(params["weight"])),
            torch.from_numpy(params["bias"]) if a["bias"] else None, stride=a["stride"],
            padding=a["padding"], output_padding=a["output_padding"], groups=a["groups"],
            dilation=a["dilation"])[0].numpy()
    ref = scatter_conv_transpose(image.astype(np.float64), params["weight"],
                                 params["bias"] if a["bias"] else None, pair(a["stride"]),
                                 pair(a["padding"]), pair(a["dilation"]),
                                 pair(a["output_padding"]), a["groups"])
    assert ref.shape == want.shape
    np.testing.assert_allclose(ref, want, atol=1e-5)  # the scatter is torch's definition
    e = explain(layer, params, image, channel, y, x)
    assert e.kind == "conv" and e.value == float(want[channel, y, x])
    assert abs(e.total - ref[channel, y, x]) < 1e-9
    sums = sum(t for name, t in e.terms if name.startswith("ch "))
    assert abs(sums + (dict(e.terms).get("bias", 0.0)) - e.total) < 1e-12
    # every tap that reads no input pixel is marked and contributes nothing
    assert (e.arrays["products"][e.arrays["padded"]] == 0).all()

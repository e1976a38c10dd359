"""Every op in the allow-list against torch itself, by property-based testing.

For random arguments (drawn from each spec's own Param list: kinds, ranges, choices) and random
input shapes, LayerLab either rejects the layer with a SpecError -- and then torch must fail too,
unless the rejection is one of the few deliberate policies listed in ``deliberate_policy`` -- or
accepts it, and then torch must build and run the module, the inferred shape must be torch's
output shape, and the engine's output must equal the torch module called directly on the same
NCHW tensor.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import note as _hypothesis_note
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import nn

from layerlab.core.analysis import analyze
from layerlab.core.engine import Engine
from layerlab.core.pipeline import InputSpec, LayerSpec, Pipeline, PipelineError
from layerlab.core.specs import OPS, OpSpec, Param, Shape, SpecError

OP_NAMES = sorted(OPS)

# Generated numbers stay inside every Param's declared range, but the large ranges are drawn
# from their low end so that thousands of examples run in seconds. Kernels often exceed the
# (small) inputs, so invalid combinations come up all the time.
SOFT_SPAN = {"kernel_size": 8, "stride": 4, "padding": 4, "dilation": 3, "output_size": 30,
             "size": 40, "out_features": 8, "divisor_override": 12}
# Values at the very top of the declared range are drawn now and then for these.
EDGE_TOO = {"kernel_size", "stride", "dilation"}
FLOAT_SOFT_MAX = {"scale_factor": 6.0}

def note(text: str) -> None:
    """hypothesis.note, also usable from the plain (pinned) tests."""
    try:
        _hypothesis_note(text)
    except InvalidArgument:
        pass


dims = st.one_of(st.integers(1, 4), st.integers(5, 24), st.integers(5, 24))


def _int_range(p: Param) -> st.SearchStrategy[int]:
    lo = int(p.minimum) if p.minimum is not None else -8
    hi = int(p.maximum) if p.maximum is not None else lo + 16
    soft = min(hi, lo + SOFT_SPAN.get(p.name, 8))
    s = st.integers(lo, soft)
    if p.name in EDGE_TOO and hi > soft:
        s = st.one_of(s, s, s, st.integers(soft, hi), st.just(hi))
    return s


def _float_range(p: Param) -> st.SearchStrategy[float]:
    lo = p.minimum if p.minimum is not None else -1e3
    hi = p.maximum if p.maximum is not None else 1e3
    hi = min(hi, FLOAT_SOFT_MAX.get(p.name, hi))
    base = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    nice = [v for v in (0.0, 0.35, 0.5, 1 / 3, 1.0, 1.5, 2.0, 2.2, 3.0, -1.0, 1e-5)
            if lo <= v <= hi]
    return st.one_of(base, st.sampled_from(nice)) if nice else base


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def param_value(draw, p: Param, shape: Shape):
    """One value of the Param's kind, in its declared range; sometimes fitted to ``shape``."""
    k = p.kind
    if k.startswith("opt_") and draw(st.integers(0, 4)) < 2:
        return None
    if k in ("int", "opt_int"):
        if p.from_input == "channels" and len(shape) == 3 and draw(st.integers(0, 4)):
            return shape[0]
        if p.from_input == "features" and draw(st.integers(0, 4)):
            return shape[-1]
        if p.name in ("groups", "num_groups") and len(shape) == 3 and draw(st.integers(0, 2)):
            return draw(st.sampled_from([1, 1, *_divisors(shape[0])]))
        return draw(_int_range(p))
    if k in ("float", "opt_float"):
        return draw(_float_range(p))
    if k in ("bool", "opt_bool"):
        return draw(st.booleans())
    if k == "choice":
        return draw(st.sampled_from(p.choices))
    if k == "padding" and p.choices and draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(p.choices))
    if k in ("pair", "opt_pair", "padding"):
        one = _int_range(p)
        return draw(st.one_of(one, st.lists(one, min_size=2, max_size=2)))
    if k == "pad4":
        one = _int_range(p)
        return draw(st.one_of(one, st.lists(one, min_size=4, max_size=4)))
    if k == "ints":
        if p.from_input == "chw" and draw(st.integers(0, 3)):
            n = draw(st.integers(1, len(shape)))
            return list(shape[len(shape) - n:])
        return draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    raise AssertionError(f"no strategy for kind {k}")


@st.composite
def op_args(draw, op: OpSpec, shape: Shape) -> dict:
    """Raw JSON-style args for ``op``: each Param either given (random) or left to default."""
    args = {}
    for p in op.params:
        if draw(st.booleans()):
            args[p.name] = draw(param_value(p, shape))
        elif p.from_input == "channels" and len(shape) == 3:
            args[p.name] = shape[0]  # what new_layer() fills in
        elif p.from_input == "features":
            args[p.name] = shape[-1]
        elif p.from_input == "chw" and len(shape) == 3:
            args[p.name] = list(shape)
    return args


@st.composite
def cases(draw, op: OpSpec):
    """(shape without batch, (C, H, W) it comes from, raw args, rng seed)."""
    c, h, w = draw(st.integers(1, 4)), draw(dims), draw(dims)
    rank = draw(st.sampled_from((3, 3, 3, 3, 3, 2, 1)))
    shape = {3: (c, h, w), 2: (c, h * w), 1: (c * h * w,)}[rank]
    args = draw(op_args(op, shape))
    return shape, (c, h, w), args, draw(st.integers(0, 2**32 - 1))


# --- torch, independently ----------------------------------------------------------------------

def torch_kwargs(args: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}


def torch_module(type_name: str, args: dict) -> nn.Module:
    """``getattr(torch.nn, type)(**args)``: not through LayerLab's specs."""
    return getattr(torch.nn, type_name)(**torch_kwargs(args)).eval()


def torch_args(op: OpSpec, raw: dict) -> dict:
    """What raw JSON args mean to torch: as given, plus LayerLab's defaults only for the
    arguments torch itself requires (kernel_size, in_channels, ...); the rest keep torch's
    own defaults."""
    sig = inspect.signature(op.module_class.__init__).parameters
    out = dict(raw)
    for p in op.params:
        if p.name not in out and sig[p.name].default is inspect.Parameter.empty:
            out[p.name] = p.default
    return out


def torch_outcome(type_name: str, args: dict, shape: Shape) -> str | None:
    """None if torch builds and runs the layer on a (1, *shape) input, else its error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch_module(type_name, args)
            with torch.no_grad():
                module(torch.randn(1, *shape))
    except Exception as e:  # torch raises ValueError, RuntimeError, AssertionError, ...
        return f"{type(e).__name__}: {e}"
    return None


def deliberate_policy(type_name: str, args: dict, shape: Shape, err: SpecError) -> str | None:
    """The rejections LayerLab makes on purpose although torch would run the layer.

    Returns the reason, or None when the rejection is not one of the documented policies.
    """
    msg = str(err)
    op = OPS[type_name]
    # 1. 2-D image ops take C x H x W only. After a Flatten torch would still pad or "drop
    #    out" a (1, N) tensor, or read a (1, C, L) tensor as one unbatched C x H x W image.
    if op.spatial and len(shape) != 3:
        assert "needs a C x H x W input" in msg, msg
        return "2-D op needs a C x H x W input"
    # 2. Flatten never merges the batch dimension (start_dim resolving to 0).
    if type_name == "Flatten":
        nd = len(shape) + 1
        s = args.get("start_dim", 1)
        if (s + nd if s < 0 else s) == 0:
            assert "batch" in msg, msg
            return "Flatten start_dim 0 merges the batch"
    # 3. Norm layers whose channel count does not match the input are rejected even where torch
    #    does not look at it (no affine weight, no running statistics: it only warns or
    #    silently normalises the input's own channels).
    if err.field in ("num_features", "num_channels") and "channel" in msg:
        return "norm layer channel count must match the input"
    # 4. Softmax/LogSoftmax over the batch dimension (a batch of one image: constant output).
    if type_name in ("Softmax", "LogSoftmax") and err.field == "dim" and "batch" in msg:
        return "softmax over the batch of one"
    return None


# --- the check --------------------------------------------------------------------------------

def random_params(op: OpSpec, args: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for name, pshape in op.parameter_shapes(args).items():
        if name == "running_var":
            arr = rng.uniform(0.5, 2.0, pshape)
        else:
            arr = rng.standard_normal(pshape) * (0.5 if name == "weight" else 0.2)
        params[name] = arr.astype(np.float32)
    return params


def engine_pipeline(shape: Shape, chw: tuple[int, int, int], target: LayerSpec,
                    rng: np.random.Generator) -> tuple[Pipeline, torch.Tensor]:
    """A pipeline whose last layer is ``target`` and whose last-but-one stage has ``shape``.

    Images are gray (1 channel) or RGB (3); other channel counts come from a 1x1 conv with
    random weights, flattened shapes from a Flatten.
    """
    c, h, w = chw
    layers: list[LayerSpec] = []
    if c in (1, 3):
        mode = "gray" if c == 1 else "rgb"
    else:
        mode = "rgb"
        mix = rng.standard_normal((c, 3, 1, 1)).astype(np.float32)
        layers.append(LayerSpec("Conv2d", OPS["Conv2d"].normalize_args(
            {"in_channels": 3, "out_channels": c, "kernel_size": 1, "bias": False}),
            params={"weight": mix}))
    if len(shape) == 2:
        layers.append(LayerSpec("Flatten", {"start_dim": 2, "end_dim": -1}))
    elif len(shape) == 1:
        layers.append(LayerSpec("Flatten", {"start_dim": 1, "end_dim": -1}))
    layers.append(target)
    channels = 1 if mode == "gray" else 3
    image = torch.from_numpy(rng.standard_normal((1, channels, h, w)).astype(np.float32) * 2)
    return Pipeline(InputSpec(mode), tuple(layers)), image


def check_case(op: OpSpec, shape: Shape, chw, raw_args: dict, seed: int) -> str:
    note(f"{op.type}({raw_args}) on input {shape}")
    try:
        args = op.normalize_args(raw_args)
        info = op.infer_shape(shape, args)
    except SpecError as e:
        assert str(e).strip(), "a rejection must say why"
        failure = torch_outcome(op.type, torch_args(op, raw_args), shape)
        if failure is None:
            policy = deliberate_policy(op.type, raw_args, shape, e)
            assert policy is not None, (
                f"LayerLab rejects {op.type}({raw_args}) on {shape} ({e}) but torch runs it")
            return "policy"
        note(f"rejected: {e} / torch: {failure}")
        return "rejected"

    # Accepted: torch must construct it (independently of the spec) and run it.
    rng = np.random.default_rng(seed)
    ref = torch_module(op.type, args)
    params = random_params(op, args, rng)
    with torch.no_grad():
        state = ref.state_dict()
        for name, arr in params.items():
            state[name].copy_(torch.from_numpy(arr))
    target = LayerSpec(op.type, args, params={k: v for k, v in params.items()})
    pipeline, image = engine_pipeline(shape, chw, target, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = Engine("cpu").run_all(pipeline, image)
    assert all(r.ok for r in results), [r.error for r in results]
    before, last = results[-2], results[-1]
    assert before.shape == shape
    x = before.output.contiguous()  # plain NCHW, as a tutorial would hold it
    assert x.is_contiguous()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref(x)
    assert tuple(expected.shape[1:]) == info.shape, (info.shape, tuple(expected.shape))
    assert last.shape == info.shape
    tol = 1e-5
    if op.type == "ConvTranspose2d":  # the engine's channels_last sums the taps in another order
        k = args["kernel_size"]
        taps = (k[0] * k[1] if isinstance(k, list) else k * k) * args["in_channels"]
        tol *= max(1.0, (taps / args["groups"]) ** 0.5 / 4)
    torch.testing.assert_close(last.output, expected, atol=tol, rtol=tol, equal_nan=True)
    return "accepted"


# Ops whose validity depends on the sizes: the generator must produce both outcomes for them.
SIZE_SENSITIVE = {"Conv2d", "MaxPool2d", "AvgPool2d", "LPPool2d", "ReflectionPad2d",
                  "Upsample", "Linear", "LayerNorm", "GroupNorm", "BatchNorm2d", "Flatten",
                  "ConvTranspose2d", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle",
                  "Unfold", "PReLU"}


EXAMPLES = {"Conv2d": 150, "MaxPool2d": 100, "AvgPool2d": 100, "LPPool2d": 80, "Upsample": 100,
            "ConvTranspose2d": 150, "PixelShuffle": 100, "PixelUnshuffle": 100, "Unfold": 80}


@pytest.mark.parametrize("type_name", OP_NAMES)
def test_op_agrees_with_torch(type_name):
    op = OPS[type_name]
    outcomes: Counter[str] = Counter()
    n = EXAMPLES.get(type_name, 60 if type_name in SIZE_SENSITIVE else 20)

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(op))
    def run(case):
        outcomes[check_case(op, *case)] += 1

    run()
    assert outcomes["accepted"] >= 3, outcomes
    if type_name in SIZE_SENSITIVE:
        assert outcomes["rejected"] >= 1, outcomes


def test_every_param_kind_has_a_strategy():
    from layerlab.core.specs import KINDS

    handled = {"int", "float", "bool", "choice", "pair", "opt_pair", "padding", "pad4",
               "opt_int", "opt_float", "opt_bool", "ints"}
    used = {p.kind for op in OPS.values() for p in op.params}
    assert used <= set(KINDS) <= handled


# --- known corner cases, pinned (each one once disagreed with torch) -------------------------

@pytest.mark.parametrize("type_name, args, shape", [
    # ceil_mode keeps a window that starts inside the image even if the kernel overhangs it
    ("MaxPool2d", {"kernel_size": 4, "stride": 2, "ceil_mode": True}, (1, 3, 3)),
    ("AvgPool2d", {"kernel_size": 5, "stride": 3, "ceil_mode": True}, (2, 3, 4)),
    ("LPPool2d", {"norm_type": 2.0, "kernel_size": 4, "stride": 2, "ceil_mode": True},
     (1, 3, 3)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 6, 6)),
    ("MaxPool2d", {"kernel_size": 3, "dilation": 2, "padding": 1}, (1, 5, 5)),
    ("Upsample", {"scale_factor": 0.35}, (1, 20, 20)),
    # a size alone means scale_factor None, as in torch (LayerLab's form default is 2.0)
    ("Upsample", {"size": [5, 7]}, (2, 3, 3)),
    ("Upsample", {"scale_factor": 1 / 3, "mode": "bilinear"}, (1, 9, 7)),
    ("Conv2d", {"in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 3,
                "padding_mode": "circular"}, (1, 3, 3)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 9, "padding": "same"},
     (1, 2, 2)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": [3, 4], "padding": "same",
                "padding_mode": "reflect"}, (1, 3, 3)),
    ("BatchNorm2d", {"num_features": 2, "track_running_stats": False}, (2, 1, 2)),
    ("InstanceNorm2d", {"num_features": 2, "track_running_stats": True}, (2, 1, 1)),
    ("GroupNorm", {"num_groups": 1, "num_channels": 2}, (2, 1, 1)),
])
def test_pinned_accepts(type_name, args, shape):
    assert check_case(OPS[type_name], shape, shape, args, 0) == "accepted"


@pytest.mark.parametrize("type_name, args, shape", [
    ("MaxPool2d", {"kernel_size": 4, "stride": 1, "ceil_mode": True}, (1, 3, 3)),
    ("MaxPool2d", {"kernel_size": 3, "padding": 2, "dilation": 2}, (1, 8, 8)),
    ("AvgPool2d", {"kernel_size": 3, "padding": 2}, (1, 8, 8)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 5, "padding": "same",
                "padding_mode": "reflect"}, (1, 2, 2)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 9, "padding": "same",
                "padding_mode": "circular"}, (1, 2, 2)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "padding": 3,
                "padding_mode": "reflect"}, (1, 3, 3)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "stride": 2,
                "padding": "same"}, (1, 5, 5)),
    ("Conv2d", {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "dilation": 3},
     (1, 6, 6)),
    ("BatchNorm2d", {"num_features": 2, "track_running_stats": False}, (2, 1, 1)),
    ("InstanceNorm2d", {"num_features": 2}, (2, 1, 1)),
    ("GroupNorm", {"num_groups": 2, "num_channels": 2}, (2, 1, 1)),
    ("ReflectionPad2d", {"padding": [0, 0, 3, 0]}, (1, 3, 5)),
    ("Upsample", {"scale_factor": 0.01}, (1, 24, 24)),
    ("Upsample", {"size": 4, "mode": "nearest", "align_corners": False}, (1, 4, 4)),
    ("Hardtanh", {"min_val": 1.0, "max_val": 1.0}, (1, 2, 2)),
    ("Flatten", {"start_dim": 2, "end_dim": 1}, (1, 2, 2)),
    ("Linear", {"in_features": 3, "out_features": 2}, (1, 2, 2)),
    ("LayerNorm", {"normalized_shape": [2, 3]}, (1, 2, 2)),
])
def test_pinned_rejections(type_name, args, shape):
    assert check_case(OPS[type_name], shape, shape, args, 0) == "rejected"


@pytest.mark.parametrize("type_name, args, shape", [
    ("Flatten", {"start_dim": 0}, (3, 4, 4)),
    ("Flatten", {"start_dim": -4, "end_dim": 1}, (3, 4, 4)),
    ("ZeroPad2d", {"padding": 1}, (12,)),
    ("Dropout2d", {}, (3, 16)),
    ("InstanceNorm2d", {"num_features": 3}, (2, 4, 4)),
    ("BatchNorm2d", {"num_features": 3, "affine": False, "track_running_stats": False},
     (2, 4, 4)),
    ("GroupNorm", {"num_groups": 1, "num_channels": 3, "affine": False}, (2, 4, 4)),
])
def test_documented_policies(type_name, args, shape):
    """Rejected on purpose although torch runs them; the message says why."""
    assert check_case(OPS[type_name], shape, shape, args, 0) == "policy"


# --- shapes chained through a Pipeline = torch's nn.Sequential -------------------------------

CHAIN_OPS = [n for n in OP_NAMES if n not in ("Dropout", "Dropout2d")] + ["Dropout"]


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_chained_shapes_equal_sequential(data):
    mode = data.draw(st.sampled_from(["gray", "rgb"]))
    h, w = data.draw(st.integers(4, 24)), data.draw(st.integers(4, 24))
    shape: Shape = (1 if mode == "gray" else 3, h, w)
    layers: list[LayerSpec] = []
    modules: list[nn.Module] = []
    broken_at = None
    for _ in range(data.draw(st.integers(1, 8))):
        op = OPS[data.draw(st.sampled_from(CHAIN_OPS))]
        raw = data.draw(op_args(op, shape))
        try:
            args = op.normalize_args(raw)
        except SpecError:
            continue
        layer = LayerSpec(op.type, args, name=f"l{len(layers)}")
        try:
            info = op.infer_shape(shape, args)
        except SpecError as e:
            if deliberate_policy(op.type, raw, shape, e) is None:
                broken_at = len(layers)
                layers.append(layer)
                modules.append(torch_module(op.type, args))
            break
        layers.append(layer)
        modules.append(torch_module(op.type, args))
        shape = info.shape
    pipeline = Pipeline(InputSpec(mode), tuple(layers))
    note(pipeline.to_json())

    seq = nn.Sequential(*modules).eval()
    seen: list[tuple[int, ...]] = []
    for m in seq:
        m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:])))
    x = torch.rand(1, 1 if mode == "gray" else 3, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if broken_at is None:
            stages = analyze(pipeline, (h, w)).stage_shapes()
            with torch.no_grad():
                seq(x)
            assert [s.shape for s in stages[1:]] == seen
            assert [s.in_shape for s in stages[1:]] == ([stages[0].shape] + seen)[:len(seen)]
            assert [s.layer_index for s in stages[1:]] == list(range(len(layers)))
        else:
            with pytest.raises(PipelineError) as exc:
                analyze(pipeline, (h, w)).stage_shapes()
            assert exc.value.index == broken_at
            assert exc.value.layer_name == f"l{broken_at}"
            with pytest.raises(Exception), torch.no_grad():  # noqa: B017 - any torch error
                seq(x)
            assert len(seen) == broken_at  # torch fails at the very same layer


def test_formula_text_matches_output_size_formula():
    # Hout = floor((H + 2p - d(k-1) - 1)/s + 1), the tutorials' formula, for Conv2d and pools
    for h, k, s, p, d in [(32, 5, 1, 2, 1), (32, 3, 1, 0, 1), (28, 3, 2, 1, 1), (17, 4, 3, 2, 2),
                          (9, 2, 2, 0, 1), (64, 7, 2, 3, 1)]:
        expected = math.floor((h + 2 * p - d * (k - 1) - 1) / s + 1)
        conv = OPS["Conv2d"].normalize_args({"in_channels": 1, "kernel_size": k, "stride": s,
                                             "padding": p, "dilation": d})
        info = OPS["Conv2d"].infer_shape((1, h, h), conv)
        assert info.shape == (1, expected, expected)
        assert f"floor(({h} + 2*{p} - {d}*({k}-1) - 1)/{s} + 1) = {expected}" in info.formula
        out = nn.Conv2d(1, 1, k, s, p, d)(torch.zeros(1, 1, h, h))
        assert out.shape[-1] == expected


def test_conv_transpose_formula_text_matches_torch():
    # H_out = (H - 1)*s - 2p + d(k - 1) + output_padding + 1, with the user's numbers
    for h, k, s, p, op, d in [(8, 3, 2, 1, 1, 1), (5, 4, 2, 1, 0, 1), (7, 3, 3, 0, 2, 2),
                              (16, 2, 2, 0, 0, 1), (4, 5, 1, 2, 0, 3)]:
        args = OPS["ConvTranspose2d"].normalize_args(
            {"in_channels": 1, "kernel_size": k, "stride": s, "padding": p,
             "output_padding": op, "dilation": d})
        info = OPS["ConvTranspose2d"].infer_shape((1, h, h), args)
        out = nn.ConvTranspose2d(1, 1, k, s, p, op, dilation=d)(torch.zeros(1, 1, h, h))
        expected = out.shape[-1]
        assert info.shape == (1, expected, expected)
        assert f"({h} - 1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {expected}" in info.formula


def test_new_layers_spot_values_against_torch():
    """A few fixed inputs through the engine and torch.nn.functional directly."""
    x = torch.tensor([[[[-3.0, -0.5], [0.5, 7.0]]]])
    cases = [("ReLU6", {}, torch.nn.functional.relu6(x)),
             ("Hardswish", {}, torch.nn.functional.hardswish(x)),
             ("Threshold", {"threshold": 0.4, "value": -9.0},
              torch.nn.functional.threshold(x, 0.4, -9.0)),
             ("PReLU", {"init": 0.1}, torch.where(x > 0, x, 0.1 * x))]
    for type_name, args, want in cases:
        layer = LayerSpec(type_name, OPS[type_name].normalize_args(args))
        got = Engine("cpu", channels_last=False).run_all(Pipeline(InputSpec("gray"),
                                                                  (layer,)), x)[-1].output
        torch.testing.assert_close(got, want, atol=0, rtol=0)

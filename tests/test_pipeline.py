"""The pipeline file: round trip, validation messages that locate the problem, limits, memory."""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from layerlab.core.analysis import analyze, nonfinite_warnings
from layerlab.core.engine import Engine
from layerlab.core.pipeline import (
    MAX_FILE_BYTES,
    InputSpec,
    LayerSpec,
    Pipeline,
    PipelineError,
    new_layer,
)

# The example in the design document, verbatim.
DESIGN_EXAMPLE = """{"format": "layerlab.pipeline", "version": 1,
 "input": {"mode": "gray"},
 "layers": [
  {"type": "Conv2d", "name": "sharpen", "enabled": true,
   "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 3, "stride": 1,
            "padding": 1, "bias": false},
   "params": {"weight": [[[[-0.1111, -0.1111, -0.1111], [-0.1111, 1.0, -0.1111],
                            [-0.1111, -0.1111, -0.1111]]]]}},
  {"type": "ReLU"},
  {"type": "MaxPool2d", "args": {"kernel_size": 2}}]}
"""


def doc(*layers, **top) -> dict:
    return {"format": "layerlab.pipeline", "version": 1, "input": {"mode": "rgb"},
            "layers": list(layers), **top}


def conv(name="c", **args) -> dict:
    return {"type": "Conv2d", "name": name,
            "args": {"in_channels": 3, "out_channels": 4, "kernel_size": 3, **args}}


def error_of(data, source=None) -> PipelineError:
    before = copy.deepcopy(data)
    with pytest.raises(PipelineError) as exc:
        Pipeline.from_dict(data, source=source)
    assert data == before, "parsing must not modify its input"
    return exc.value


def assert_located(err: PipelineError, index: int | None, name: str | None, field: str | None,
                   *words: str) -> None:
    msg = str(err)
    assert err.index == index and err.layer_name == name and err.field == field, \
        (err.index, err.layer_name, err.field, msg)
    if index is not None:
        assert f"layer {index}" in msg
    if name:
        assert repr(name) in msg
    if field:
        assert field in msg
    for w in words:
        assert w in msg, msg


# --- round trip --------------------------------------------------------------------------------

def full_pipeline() -> Pipeline:
    rng = np.random.default_rng(0)
    return Pipeline(InputSpec("rgb", (48, 64)), (
        new_layer("Conv2d", (3, 48, 64), out_channels=8, kernel_size=[3, 5], padding="same")
        .with_param("weight", rng.standard_normal((8, 3, 3, 5)).astype(np.float32)),
        LayerSpec("BatchNorm2d", new_layer("BatchNorm2d", (8, 48, 64)).args, name="bn",
                  init={"scheme": "xavier_uniform", "seed": 7}),
        LayerSpec("ReLU", {}, name="relu", enabled=False),
        new_layer("MaxPool2d", kernel_size=2, ceil_mode=True),
        LayerSpec("Conv2d", new_layer("Conv2d", (8, 24, 32), out_channels=4).args,
                  name="seeded", init={"scheme": "normal", "seed": 3, "mean": 0.5, "std": 0.1}),
        new_layer("Upsample", size=[10, 12], mode="bilinear", align_corners=True),
        new_layer("Flatten"),
        new_layer("Linear", (480,), out_features=5)
        .with_param("weight", rng.standard_normal((5, 480)).astype(np.float32))
        .with_param("bias", np.array([np.nan, np.inf, -np.inf, 0.0, 1e-30], np.float32)),
    ))


def test_save_load_round_trip(tmp_path):
    p = full_pipeline()
    path = tmp_path / "stack.layerlab.json"
    p.save(path)
    q = Pipeline.load(path)
    assert [layer.key for layer in q.layers] == [layer.key for layer in p.layers]
    assert [layer.structure_key for layer in q.layers] == [layer.structure_key
                                                           for layer in p.layers]
    assert q.to_json() == p.to_json()
    assert q.input == p.input
    assert [(la.name, la.enabled, dict(la.init)) for la in q.layers] == \
        [(la.name, la.enabled, dict(la.init)) for la in p.layers]
    for a, b in zip(p.layers, q.layers, strict=True):
        assert set(a.params) == set(b.params)
        for k in a.params:
            assert np.array_equal(a.params[k], b.params[k], equal_nan=True)
            assert a.params[k].dtype == b.params[k].dtype == np.float32
    # saved atomically: no temporary file left beside it
    assert [f.name for f in tmp_path.iterdir()] == ["stack.layerlab.json"]
    # float32 values survive the text form exactly, so a second round trip is identical
    q.save(tmp_path / "again.layerlab.json")
    assert (tmp_path / "again.layerlab.json").read_text() == path.read_text()


def test_round_trip_runs_to_the_same_numbers(tmp_path):
    p = full_pipeline()
    p.save(tmp_path / "s.json")
    q = Pipeline.load(tmp_path / "s.json")
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    a = Engine("cpu").run_all(p, image)
    b = Engine("cpu").run_all(q, image)
    assert [r.shape for r in a] == [r.shape for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.ok and rb.ok
        assert torch.equal(ra.output.nan_to_num(), rb.output.nan_to_num())


def test_design_example_loads_verbatim(tmp_path):
    path = tmp_path / "example.layerlab.json"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    p = Pipeline.load(path)
    assert p.input == InputSpec("gray")
    assert [layer.type for layer in p.layers] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert p.layers[0].name == "sharpen" and p.layers[0].args["bias"] is False
    assert p.layers[0].params["weight"].shape == (1, 1, 3, 3)
    assert p.layers[0].params["weight"][0, 0, 1, 1] == 1.0
    assert p.stage_names() == ["input", "sharpen", "relu", "maxpool2d"]
    shapes = [s.shape for s in analyze(p, (512, 512)).stage_shapes()]
    assert shapes == [(1, 512, 512), (1, 512, 512), (1, 512, 512), (1, 256, 256)]
    assert nonfinite_warnings(p) == []


# --- every error class names where it is ------------------------------------------------------

def test_not_an_object():
    for data in ([], "pipeline", 3, None, [doc()]):
        err = error_of(data, source="x.layerlab.json")
        assert "must be a JSON object" in str(err) and str(err).startswith("x.layerlab.json: ")


@pytest.mark.parametrize("fmt", [None, "layerlab", "layerlab.pipeline.v2", 1])
def test_wrong_format(fmt):
    data = doc(conv())
    data["format"] = fmt
    if fmt is None:
        del data["format"]
    assert_located(error_of(data), None, None, "format", "layerlab.pipeline")


@pytest.mark.parametrize("version", [2, 0, "1", True, None, 1.5])
def test_unsupported_version(version):
    data = doc(conv())
    data["version"] = version
    assert_located(error_of(data), None, None, "version", repr(version), "not supported")


def test_unknown_top_level_and_input_fields():
    assert "unknown top-level field" in str(error_of(doc(conv(), extra=1)))
    data = doc(conv())
    data["input"] = {"mode": "cmyk"}
    assert_located(error_of(data), None, None, "input.mode", "'cmyk'")
    data["input"] = {"mode": "rgb", "resize": [32, 0]}
    assert_located(error_of(data), None, None, "input.resize")
    data["input"] = {"mode": "rgb", "resize": [32, True]}
    assert_located(error_of(data), None, None, "input.resize")


@pytest.mark.parametrize("type_name", [
    "Module", "Sequential", "Conv2d.__init__", "__class__", "torch.nn.Conv2d", "conv2d",
    "Conv3d", "MultiheadAttention", "ModuleList", "identity", "", None, 3, ["Conv2d"],
    "__import__", "os.system"])
def test_unknown_or_not_allow_listed_type(type_name):
    data = doc(conv("first"), {"type": type_name, "name": "evil"})
    err = error_of(data, source="p.json")
    assert_located(err, 1, "evil", "type", "unknown layer type", "Conv2d, MaxPool2d")
    assert str(err).startswith("p.json: layer 1 ('evil'): type: ")


def test_unknown_argument():
    err = error_of(doc(conv("a"), conv("b", kernal_size=3)))
    assert_located(err, 1, "b", "args.kernal_size", "unknown argument 'kernal_size'",
                   "kernel_size")


@pytest.mark.parametrize("layer, field, words", [
    (conv(kernel_size="3"), "args.kernel_size", ["integer", "'3'"]),
    (conv(out_channels="4"), "args.out_channels", ["integer"]),
    (conv(kernel_size=True), "args.kernel_size", ["integer", "True"]),
    (conv(stride=[1, False]), "args.stride", ["integer"]),
    (conv(bias="false"), "args.bias", ["true or false"]),
    (conv(bias=0), "args.bias", ["true or false"]),
    (conv(in_channels=1.5), "args.in_channels", ["integer"]),
    (conv(kernel_size=None), "args.kernel_size", ["integer"]),
    (conv(padding="full"), "args.padding", ["'same'", "'valid'"]),
    (conv(padding=[1, 2, 3]), "args.padding", ["pair"]),
    (conv(padding_mode="mirror"), "args.padding_mode", ["'reflect'"]),
    (conv(out_channels=0), "args.out_channels", ["at least 1", "0"]),
    (conv(kernel_size=-1), "args.kernel_size", ["at least 1"]),
    (conv(kernel_size=[3, 0]), "args.kernel_size", ["at least 1"]),
    (conv(stride=0), "args.stride", ["at least 1"]),
    (conv(padding=-1), "args.padding", ["at least 0"]),
    (conv(dilation=0), "args.dilation", ["at least 1"]),
    (conv(groups=0), "args.groups", ["at least 1"]),
    (conv(groups=2), "args.groups", ["divisible"]),
    (conv(out_channels=100001), "args.out_channels", ["at most 100000"]),
    (conv(kernel_size=float("nan")), "args.kernel_size", ["integer"]),
    ({"type": "LeakyReLU", "name": "c", "args": {"negative_slope": float("inf")}},
     "args.negative_slope", ["finite"]),
    ({"type": "LeakyReLU", "name": "c", "args": {"negative_slope": "0.1"}},
     "args.negative_slope", ["number"]),
    ({"type": "Dropout", "name": "c", "args": {"p": 1.5}}, "args.p", ["at most 1"]),
    ({"type": "Hardtanh", "name": "c", "args": {"min_val": 2.0, "max_val": 1.0}},
     "args.max_val", ["greater than min_val"]),
    ({"type": "LayerNorm", "name": "c", "args": {"normalized_shape": []}},
     "args.normalized_shape", ["non-empty"]),
    ({"type": "LayerNorm", "name": "c", "args": {"normalized_shape": [3, "4"]}},
     "args.normalized_shape", ["integer"]),
    ({"type": "Upsample", "name": "c", "args": {"size": 4, "scale_factor": 2.0}},
     "args.scale_factor", ["exactly one"]),
    ({"type": "ReLU", "name": "c", "args": {"inplace": True}}, "args.inplace",
     ["unknown argument"]),
    ({"type": "ReLU", "name": "c", "args": [1]}, "args", ["object"]),
])
def test_bad_arguments(layer, field, words):
    assert_located(error_of(doc(conv("ok"), layer)), 1, "c", field, *words)


def test_bad_layer_fields():
    assert_located(error_of(doc(conv(), [1, 2])), 1, None, None, "must be an object")
    assert_located(error_of(doc({**conv("n"), "enabled": "yes"})), 0, "n", "enabled")
    assert_located(error_of(doc({**conv("n"), "weights": []})), 0, "n", None, "weights")
    assert_located(error_of(doc({**conv(), "name": 5})), 0, None, "name")
    assert_located(error_of(doc({**conv(), "name": "x" * 65})), 0, None, "name")
    assert_located(error_of(doc({**conv(), "name": "a\nb"})), 0, None, "name")
    assert_located(error_of(doc({**conv("i"), "init": {"scheme": "he"}})), 0, "i", "init",
                   "kaiming_normal")
    assert_located(error_of(doc({**conv("i"), "init": {"scheme": "normal", "seed": -1}})),
                   0, "i", "init", "seed")
    assert_located(error_of(doc({**conv("i"), "init": {"scheme": "normal", "std": "1"}})),
                   0, "i", "init", "std")
    assert_located(error_of({**doc(), "layers": {"0": conv()}}), None, None, "layers")


@pytest.mark.parametrize("params, field, words", [
    ({"weight": np.zeros((4, 3, 2, 2)).tolist()}, "params.weight",
     ["has shape [4, 3, 2, 2]", "expected [4, 4, 3, 3]"]),
    ({"weight": np.zeros((4, 4, 3)).tolist()}, "params.weight", ["expected [4, 4, 3, 3]"]),
    ({"weight": 0.5}, "params.weight", ["has shape []"]),
    ({"bias": [0.0, 0.0, 0.0]}, "params.bias", ["has shape [3]", "expected [4]"]),
    ({"bias": [[0.0], [0.0], [0.0], [0.0]]}, "params.bias", ["expected [4]"]),
    ({"kernel": [0.0]}, "params.kernel", ["no parameter 'kernel'", "weight, bias"]),
    ({"running_mean": [0.0]}, "params.running_mean", ["no parameter"]),
    # not regular
    ({"bias": [0.0, [1.0], 2.0, 3.0]}, "params.bias", ["nested list of numbers"]),
    ({"weight": [[[[0.0] * 3] * 3] * 3] * 3 + [[[[0.0] * 3] * 3] * 2]}, "params.weight",
     ["regular shape"]),
    ({"weight": [[[[0.0] * 3, [0.0] * 2, [0.0] * 3]] * 3] * 4}, "params.weight",
     ["regular shape"]),
    # wrong types inside the numbers
    ({"bias": [0.0, "1.5", 0.0, 0.0]}, "params.bias", ["no strings"]),
    ({"bias": [0.0, True, 0.0, 0.0]}, "params.bias", ["true/false"]),
    ({"bias": [0.0, None, 0.0, 0.0]}, "params.bias", ["null"]),
    ({"bias": [0.0, {"v": 1}, 0.0, 0.0]}, "params.bias", ["nested list of numbers"]),
    ({"bias": "0,0,0,0"}, "params.bias", ["nested list of numbers"]),
])
def test_bad_params(params, field, words):
    data = doc(conv("first"), {**conv("k", in_channels=4), "params": params})
    assert_located(error_of(data), 1, "k", field, *words)


def test_params_must_be_an_object():
    assert_located(error_of(doc({**conv("k"), "params": [[1.0]]})), 0, "k", "params")


def test_nan_and_inf_weights_are_accepted_with_warnings(tmp_path):
    text = json.dumps(doc(conv("a"), {**conv("k", in_channels=4, out_channels=2,
                                               kernel_size=1), "params": "@"}))
    # NaN, Infinity and 1e999 as JSON text (Python's json reads them; 1e999 is inf)
    text = text.replace('"@"', '{"weight": [[[[NaN]], [[1.0]], [[Infinity]], [[0.5]]], '
                        '[[[-Infinity]], [[1e999]], [[2.0]], [[1e39]]]], "bias": [0.0, 1.0]}')
    path = tmp_path / "nonfinite.layerlab.json"
    path.write_text(text)
    p = Pipeline.load(path)
    w = p.layers[1].params["weight"]
    assert int(np.isnan(w).sum()) == 1 and int(np.isinf(w).sum()) == 4  # 1e39 > float32 max
    warnings = nonfinite_warnings(p)
    assert len(warnings) == 1
    assert "layer 1 (k)" in warnings[0] and "params.weight" in warnings[0]
    assert "5 NaN/inf" in warnings[0]
    # and they propagate as torch computes them (not an error)
    results = Engine("cpu").run_all(p, torch.rand(1, 3, 8, 8))
    assert all(r.ok for r in results)
    assert not torch.isfinite(results[-1].output).all()


def test_shapes_that_do_not_chain():
    p = Pipeline.from_dict({**doc(conv("a", out_channels=8), conv("b"), conv("c")),
                            "input": {"mode": "gray"}})
    with pytest.raises(PipelineError) as exc:
        analyze(p, (32, 32)).stage_shapes()
    assert_located(exc.value, 0, "a", "in_channels", "in_channels is 3",
                   "input has 1 channel", "input 1 x 32 x 32")
    p = Pipeline.from_dict(doc(conv("a", out_channels=8), conv("b"), conv("c")))
    with pytest.raises(PipelineError) as exc:
        analyze(p, (32, 32)).stage_shapes()
    assert_located(exc.value, 1, "b", "in_channels", "input has 8 channels")
    # a kernel bigger than the (shrunken) image
    p = Pipeline.from_dict(doc(conv("a", kernel_size=15), conv("b", in_channels=4,
                                                                 kernel_size=15)))
    assert analyze(p, (29, 40)).stage_shapes()[-1].shape == (4, 1, 12)
    with pytest.raises(PipelineError) as exc:
        analyze(p, (28, 40)).stage_shapes()
    assert_located(exc.value, 1, "b", "kernel_size", "kernel 15")
    # a 2-D op after Flatten
    p = Pipeline.from_dict(doc({"type": "Flatten", "name": "f"},
                               {"type": "MaxPool2d", "name": "m"}))
    with pytest.raises(PipelineError) as exc:
        analyze(p, (4, 4)).stage_shapes()
    assert_located(exc.value, 1, "m", None, "C x H x W", "48")
    # the engine reports the same place and keeps the stages before it
    results = Engine("cpu").run_all(p, torch.rand(1, 3, 4, 4))
    assert [r.ok for r in results] == [True, True, False]
    assert "layer 1 ('m')" in results[-1].error


def test_too_many_layers():
    err = error_of(doc(*[{"type": "ReLU"}] * 10000))
    assert_located(err, None, None, "layers", "10000 layers", "1000")
    assert len(Pipeline.from_dict(doc(*[{"type": "ReLU"}] * 1000)).layers) == 1000


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.layerlab.json"
    path.write_bytes(json.dumps(doc(conv("ok"))).encode()[:-3] + b', "name": "caf\xe9"}]}')
    with pytest.raises(PipelineError) as exc:
        Pipeline.load(path)
    assert "not UTF-8" in str(exc.value) and "latin1.layerlab.json" in str(exc.value)
    path.write_bytes(b"\xff\xfe" + json.dumps(doc()).encode("utf-16-le"))
    with pytest.raises(PipelineError, match="not UTF-8"):
        Pipeline.load(path)
    # a UTF-8 byte-order mark is fine, and so are non-ASCII names
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc(conv("café ∑"))).encode())
    assert Pipeline.load(path).layers[0].name == "café ∑"


def test_not_json_and_odd_files(tmp_path):
    bad = tmp_path / "bad.layerlab.json"
    bad.write_text('{"format": "layerlab.pipeline", "version": 1, "layers": [}')
    with pytest.raises(PipelineError, match=r"bad.layerlab.json: not valid JSON \(line 1"):
        Pipeline.load(bad)
    bad.write_text("")
    with pytest.raises(PipelineError, match="not valid JSON"):
        Pipeline.load(bad)
    bad.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(PipelineError, match="nested too deeply|must be a JSON object"):
        Pipeline.load(bad)
    with pytest.raises(PipelineError, match="does not exist"):
        Pipeline.load(tmp_path / "missing.json")
    with pytest.raises(PipelineError, match="directory"):
        Pipeline.load(tmp_path)


def test_a_50_mb_file(tmp_path):
    # A real 50 MB pipeline file: one Conv2d(64, 33, 50) with all its weights written out.
    row = "[" + ", ".join(["0.123456"] * 50) + "]"
    kernel = "[" + ", ".join([row] * 50) + "]"
    out_ch = "[" + ", ".join([kernel] * 64) + "]"
    weight = "[" + ", ".join([out_ch] * 33) + "]"
    text = ('{"format": "layerlab.pipeline", "version": 1, "layers": [{"type": "Conv2d", '
            '"name": "huge", "args": {"in_channels": 3, "out_channels": 33, "kernel_size": 50}, '
            '"params": {"weight": ' + weight + "}}]}")
    path = tmp_path / "big.layerlab.json"
    path.write_text(text)
    size = path.stat().st_size
    assert 50e6 < size < MAX_FILE_BYTES
    # in_channels is 3, the weights are for 64: refused as a whole, naming the tensor
    t0 = time.perf_counter()
    with pytest.raises(PipelineError) as exc:
        Pipeline.load(path)
    assert_located(exc.value, 0, "huge", "params.weight", "[33, 64, 50, 50]",
                   "expected [33, 3, 50, 50]")
    path.write_text(text.replace('"in_channels": 3', '"in_channels": 64'))
    p = Pipeline.load(path)
    assert time.perf_counter() - t0 < 30
    w = p.layers[0].params["weight"]
    assert w.shape == (33, 64, 50, 50) and w.dtype == np.float32
    assert np.all(w == np.float32(0.123456))
    assert not w.flags.writeable


def test_a_file_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "huge.layerlab.json"
    with open(path, "wb") as f:  # sparse: takes no disk space
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(PipelineError, match="larger than"):
        Pipeline.load(path)


def test_load_never_half_applies(tmp_path):
    good = doc(conv("a"), {"type": "ReLU", "name": "r"})
    path = tmp_path / "p.layerlab.json"
    path.write_text(json.dumps(good))
    p = Pipeline.load(path)
    before = p.to_json()
    # an error in the very last layer: the whole load fails, nothing partial comes back
    bad = doc(*good["layers"], *[conv(f"x{i}", in_channels=4) for i in range(5)],
              {"type": "ReLU", "name": "last", "args": {"inplace": True}})
    path.write_text(json.dumps(bad))
    with pytest.raises(PipelineError) as exc:
        Pipeline.load(path)
    assert exc.value.index == 7 and exc.value.layer_name == "last"
    assert p.to_json() == before
    # the pipeline and its layers are immutable snapshots
    with pytest.raises(AttributeError):
        p.layers = ()  # type: ignore[misc]
    with pytest.raises(ValueError):
        p.layers[0].with_param("weight", np.zeros((4, 3, 3, 3))).params["weight"][0] = 1


# --- disabled layers --------------------------------------------------------------------------

def test_disabled_layers_are_skipped_and_the_chain_rechecked():
    data = doc(conv("to8", out_channels=8),
               {**conv("back", in_channels=8, out_channels=3), "enabled": False},
               conv("needs8", in_channels=8, out_channels=2))
    p = Pipeline.from_dict(data)
    stages = analyze(p, (16, 16)).stage_shapes()
    assert [s.layer_index for s in stages] == [-1, 0, 2]
    assert [s.name for s in stages] == ["input", "to8", "needs8"]
    assert stages[-1].in_shape == (8, 14, 14) and stages[-1].shape == (2, 12, 12)
    assert p.stage_names() == ["input", "to8", "needs8"]
    # enabling the middle layer breaks the chain at the last one
    enabled = p.replace_layer(1, replace(p.layers[1], enabled=True))
    with pytest.raises(PipelineError) as exc:
        analyze(enabled, (16, 16)).stage_shapes()
    assert_located(exc.value, 2, "needs8", "in_channels", "input has 3 channels")
    # disabling a broken layer repairs it
    broken = Pipeline.from_dict(doc(conv("a"), conv("bad", in_channels=5),
                                    conv("b", in_channels=4)))
    with pytest.raises(PipelineError):
        analyze(broken, (16, 16)).stage_shapes()
    off = broken.replace_layer(1, replace(broken.layers[1], enabled=False))
    assert [s.shape for s in analyze(off, (16, 16)).stage_shapes()][-1] == (4, 12, 12)
    # the enabled flag survives the file
    assert Pipeline.from_json(off.to_json()).layers[1].enabled is False
    results = Engine("cpu").run_all(off, torch.rand(1, 3, 16, 16))
    assert [r.layer_index for r in results] == [-1, 0, 2]
    assert all(r.ok for r in results)


def test_new_layer_fills_channels_from_the_input():
    assert new_layer("Conv2d", (5, 8, 8)).args["in_channels"] == 5
    assert new_layer("BatchNorm2d", (6, 8, 8)).args["num_features"] == 6
    assert new_layer("Linear", (7,)).args["in_features"] == 7
    assert new_layer("LayerNorm", (2, 3, 4)).args["normalized_shape"] == [2, 3, 4]
    with pytest.raises(ValueError):
        new_layer("Sequential")
    assert math.prod(analyze(Pipeline(InputSpec("gray"), (new_layer("Flatten"),)), (3, 5))
                     .stage_shapes()[-1].shape) == 15

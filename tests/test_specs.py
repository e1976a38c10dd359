"""Every op of the allow-list states every per-op rule in its spec, and the rules are true of
torch: init constants, channel arguments, kernels, receptive windows (brute force)."""

from __future__ import annotations

import pytest
import torch
from test_receptive import _brute_force, _check
from torch import nn

from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.core.specs import (
    GLOBAL,
    KINDS,
    OPS,
    RESHAPE,
    WIDGETS,
    ChannelRule,
    InitRule,
    shape_text,
)

H, W = 13, 11
SPATIAL_IN = (3, H, W)


def default_layer(type_name: str):
    op = OPS[type_name]
    shape = SPATIAL_IN if op.spatial or op.local else (3 * H * W,)
    if type_name == "LayerNorm":
        shape = SPATIAL_IN
    return new_layer(type_name, shape)


def torch_default_module(layer) -> nn.Module:
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.args.items()}
    return getattr(nn, layer.type)(**kwargs)


@pytest.mark.parametrize("type_name", list(OPS))
def test_every_op_defines_every_hook(type_name):
    op = OPS[type_name]
    assert callable(op.receptive) or op.receptive in (GLOBAL, RESHAPE)
    assert isinstance(op.init, InitRule)
    assert op.channels is None or isinstance(op.channels, ChannelRule)
    assert op.kernel is None or op.kernel in op.init.seeded
    for p in op.params:
        assert p.kind in KINDS and p.widget in WIDGETS.values()
        assert p.none_follows is None or p.none_follows in {q.name for q in op.params}
    # the channel rule names the argument that follows the input's channel count
    marked = [p.name for p in op.params if p.from_input == "channels"]
    assert marked == ([op.channels.arg] if op.channels else [])


@pytest.mark.parametrize("type_name", list(OPS))
def test_init_rule_lists_the_module_state_and_torch_constants(type_name):
    layer = default_layer(type_name)
    module = torch_default_module(layer)
    state = {k: v for k, v in module.state_dict().items() if v.is_floating_point()}
    rule = OPS[type_name].init
    assert set(state) <= set(rule.tensors)
    for name in rule.ones:
        if name in state:
            assert torch.equal(state[name], torch.ones_like(state[name])), name
    for name in rule.zeros:
        if name in state and not rule.seeded:  # torch starts conv/linear biases random
            assert torch.equal(state[name], torch.zeros_like(state[name])), name
    for name, arg in rule.fills:  # PReLU's weight starts at its init argument
        assert torch.equal(state[name], torch.full_like(state[name], layer.args[arg])), name


def test_channel_rules_and_kernels_match_torch_shapes():
    for type_name, op in OPS.items():
        layer = default_layer(type_name)
        if op.channels is not None and op.channels.weight_axis is not None:
            weight = torch_default_module(layer.with_args(**{op.channels.arg: 6})).weight
            assert weight.shape[op.channels.weight_axis] == 6, type_name
        if op.kernel is not None:
            k = layer.with_args(kernel_size=[3, 5])
            assert getattr(torch_default_module(k), op.kernel).shape[-2:] == (3, 5)
    conv = OPS["Conv2d"].channels
    assert conv.applies({"groups": 1}) and not conv.applies({"groups": 3})


LOCAL = [t for t, op in OPS.items() if op.local]


@pytest.mark.parametrize("type_name", LOCAL)
def test_local_window_of_every_op_matches_brute_force(type_name):
    layer = default_layer(type_name)
    if type_name == "AdaptiveMaxPool2d" or type_name == "AdaptiveAvgPool2d":
        layer = layer.with_args(output_size=[4, 3])
    if type_name == "PixelShuffle":  # needs C divisible by r^2: 3 -> 12 channels first
        mix = new_layer("Conv2d", SPATIAL_IN, out_channels=12, kernel_size=1)
        _check(Pipeline(InputSpec("rgb"), (mix, layer)))
        return
    if type_name == "PixelUnshuffle":  # needs H and W divisible by r
        _check(Pipeline(InputSpec("rgb"), (layer,)), hw=(12, 10))
        return
    _check(Pipeline(InputSpec("rgb"), (layer,)))


@pytest.mark.parametrize("args", [
    {"kernel_size": 3, "stride": 2}, {"kernel_size": 2, "stride": 3},
    {"kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0], "output_padding": [1, 0]},
    {"kernel_size": 4, "stride": 2, "padding": 1}])
def test_transposed_conv_windows_match_brute_force(args):
    layer = new_layer("ConvTranspose2d", SPATIAL_IN, out_channels=2, **args)
    _check(Pipeline(InputSpec("rgb"), (layer,)))


@pytest.mark.parametrize("dim", [1, 2, 3, -1, -3])
def test_softmax_windows_follow_the_dimension(dim):
    for type_name in ("Softmax", "LogSoftmax"):
        _check(Pipeline(InputSpec("rgb"), (new_layer(type_name, SPATIAL_IN, dim=dim),)))


@pytest.mark.parametrize("type_name", [t for t, op in OPS.items() if op.receptive == GLOBAL
                                       and op.spatial or t == "LayerNorm"])
def test_global_ops_really_depend_on_the_whole_image(type_name):
    layer = default_layer(type_name)
    if type_name == "GroupNorm":
        layer = layer.with_args(num_groups=1)
    boxes = _brute_force(Pipeline(InputSpec("rgb"), (layer,)))
    assert tuple(boxes[0, 0]) == (0, H - 1, 0, W - 1)


def test_vector_ops_are_marked():
    assert OPS["Flatten"].receptive == RESHAPE and OPS["Linear"].receptive == GLOBAL


def test_form_data_for_parameters():
    stride = OPS["MaxPool2d"].param("stride")
    assert stride.nullable and stride.widget == "pair"
    assert stride.none_text({"kernel_size": 3}) == "auto (= 3)"
    assert stride.none_text({"kernel_size": [2, 3]}) == "auto (= 2 x 3)"
    assert OPS["Upsample"].param("size").none_text({}) == "none"
    assert OPS["Conv2d"].param("padding").widget == "padding"
    assert OPS["Upsample"].param("align_corners").widget == "tristate"
    assert not OPS["Upsample"].param("align_corners").nullable
    assert set(WIDGETS) == set(KINDS)


def test_shape_text():
    assert shape_text((3, 32, 32)) == "3 x 32 x 32"
    assert shape_text((3, 32, 32), " × ") == "3 × 32 × 32"
    assert shape_text(()) == "a scalar" and shape_text(None) == "—"


@pytest.mark.parametrize("type_name", ["ReflectionPad2d", "ReplicationPad2d"])
def test_mirrored_borders_read_pixels_inside(type_name):
    pad = new_layer(type_name, (1, H, W), padding=[3, 1, 2, 4])
    conv = new_layer("Conv2d", (1, H + 6, W + 4), kernel_size=3, stride=2)
    _check(Pipeline(InputSpec("gray"), (pad,)))
    _check(Pipeline(InputSpec("gray"), (pad, conv)))

"""Each op's stated tensor shapes (``OpSpec.tensors``, known without torch) are exactly the
floating-point state of torch's own module built with the same arguments."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from layerlab.core.specs import OPS

# Argument variations per op: every combination of these over its defaults.
VARIATIONS = {
    "Conv2d": {"in_channels": [1, 6], "out_channels": [3, 12], "kernel_size": [1, [3, 5]],
               "groups": [1, 3], "bias": [True, False]},
    "ConvTranspose2d": {"in_channels": [3, 6], "out_channels": [3, 12],
                        "kernel_size": [2, [3, 1]], "groups": [1, 3], "bias": [True, False]},
    "Linear": {"in_features": [1, 7], "out_features": [4], "bias": [True, False]},
    "PReLU": {"num_parameters": [1, 5]},
    "BatchNorm2d": {"num_features": [2, 5], "affine": [True, False],
                    "track_running_stats": [True, False]},
    "InstanceNorm2d": {"num_features": [2], "affine": [True, False],
                       "track_running_stats": [True, False]},
    "GroupNorm": {"num_groups": [1, 2], "num_channels": [4], "affine": [True, False]},
    "LayerNorm": {"normalized_shape": [[3], [2, 4, 5]], "elementwise_affine": [True, False],
                  "bias": [True, False]},
}


def torch_shapes(op, args: dict) -> dict[str, tuple[int, ...]]:
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
    module = getattr(nn, op.type)(**kwargs)
    return {k: tuple(v.shape) for k, v in module.state_dict().items() if v.is_floating_point()}


def test_every_op_with_tensors_states_their_shapes():
    learnable = {name for name, op in OPS.items() if op.learnable}
    assert learnable == set(VARIATIONS)
    for name, op in OPS.items():
        if op.learnable:
            assert op.tensors is not None, name


@pytest.mark.parametrize("name", sorted(VARIATIONS))
def test_stated_shapes_equal_torch_modules(name):
    op = OPS[name]
    grid = VARIATIONS[name]
    checked = 0
    for values in itertools.product(*grid.values()):
        try:
            args = op.normalize_args(dict(zip(grid, values, strict=True)))
        except ValueError:
            continue  # e.g. groups that do not divide the channels
        expected = torch_shapes(op, args)
        stated = op.parameter_shapes(args)
        assert list(stated.items()) == list(expected.items()), (name, args)
        checked += 1
    assert checked >= 2


def test_ops_without_tensors_have_no_floating_state():
    for name, op in OPS.items():
        if op.learnable:
            continue
        args = op.normalize_args({})
        assert op.parameter_shapes(args) == {}
        with torch.device("meta"):
            module = op.build(args)
        assert not any(v.is_floating_point() for v in module.state_dict().values()), name

"""Receptive fields from layer arguments against a brute-force check with torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.core.pipeline import InputSpec, Pipeline, new_layer
from layerlab.core.receptive import Window, is_local, layer_window, receptive_field

H, W = 13, 11


def _pipeline(*layers, mode="gray") -> Pipeline:
    return Pipeline(InputSpec(mode), tuple(layers))


def _model(pipeline: Pipeline) -> nn.Sequential:
    mods = []
    gen = torch.Generator().manual_seed(0)
    for _, layer in pipeline.enabled_layers():
        m = layer.op.build(dict(layer.args))
        with torch.no_grad():
            for p in m.parameters():  # positive weights: a bigger input never cancels out
                p.copy_(torch.rand(p.shape, generator=gen) * 0.9 + 0.1)
        mods.append(m)
    return nn.Sequential(*mods).eval()


def _brute_force(pipeline: Pipeline, hw=(H, W)):
    """For every output pixel, the bounding box of input pixels whose change changes it."""
    c = pipeline.input.channels
    model = _model(pipeline)
    x = torch.rand(1, c, *hw, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1
    with torch.no_grad():
        base = model(x)[0]
        oh, ow = base.shape[-2:]
        boxes = np.full((oh, ow, 4), -1, dtype=np.int64)  # y0, y1, x0, x1
        for yy in range(hw[0]):
            for xx in range(hw[1]):
                xp = x.clone()
                xp[0, :, yy, xx] += 1000.0  # huge: also wins every max-pool window it is in
                changed = (model(xp)[0] != base).any(dim=0).numpy()
                for oy, ox in zip(*np.nonzero(changed), strict=True):
                    b = boxes[oy, ox]
                    if b[0] < 0:
                        b[:] = (yy, yy, xx, xx)
                    else:
                        b[:] = (min(b[0], yy), max(b[1], yy), min(b[2], xx), max(b[3], xx))
    return boxes


def _check(pipeline: Pipeline, *, exact=True, hw=(H, W)):
    boxes = _brute_force(pipeline, hw)
    stage = len(pipeline.enabled_layers())
    oh, ow = boxes.shape[:2]
    dilation = max([max(np.atleast_1d(layer.args.get("dilation", 1)))
                    for _, layer in pipeline.enabled_layers()])
    for oy in range(oh):
        for ox in range(ow):
            win = receptive_field(pipeline, hw, stage, oy, ox)
            assert win is not None
            got = win.clipped(*hw)
            y0, y1, x0, x1 = boxes[oy, ox]
            if y0 < 0:  # depends on no input pixel (a padded border)
                assert got is None, (oy, ox, got)
                continue
            want = Window(int(y0), int(y1), int(x0), int(x1))
            if exact and (dilation == 1 or got == win):
                assert got == want, f"output (y {oy}, x {ox}): {got} != brute force {want}"
            elif exact:
                # A dilated kernel cut by the border: the box is the kernel's span, clipped; the
                # taps inside the image may start up to dilation - 1 pixels further in.
                assert got.y0 <= want.y0 <= got.y0 + dilation - 1, (oy, ox, got, want)
                assert got.x0 <= want.x0 <= got.x0 + dilation - 1, (oy, ox, got, want)
                assert got.y1 - dilation + 1 <= want.y1 <= got.y1, (oy, ox, got, want)
                assert got.x1 - dilation + 1 <= want.x1 <= got.x1, (oy, ox, got, want)
            else:  # a superset, at most one pixel larger on each side
                assert got is not None
                assert got.y0 <= want.y0 and got.y1 >= want.y1, (oy, ox, got, want)
                assert got.x0 <= want.x0 and got.x1 >= want.x1, (oy, ox, got, want)
                assert want.y0 - got.y0 <= 1 and got.y1 - want.y1 <= 1
                assert want.x0 - got.x0 <= 1 and got.x1 - want.x1 <= 1


CASES = {
    "conv k3 p1": [new_layer("Conv2d", (1, H, W), kernel_size=3, padding=1)],
    "conv k3 s2 p1 d2": [new_layer("Conv2d", (1, H, W), kernel_size=3, stride=2, padding=1,
                                   dilation=2)],
    "conv rect": [new_layer("Conv2d", (1, H, W), kernel_size=[3, 5], stride=[2, 1],
                            padding=[0, 2], dilation=[1, 2])],
    "conv same d2": [new_layer("Conv2d", (1, H, W), kernel_size=4, padding="same",
                               dilation=2)],
    "conv valid": [new_layer("Conv2d", (1, H, W), kernel_size=2, padding="valid")],
    "maxpool": [new_layer("MaxPool2d", (1, H, W), kernel_size=3, stride=2, padding=1,
                          dilation=2)],
    "avgpool ceil": [new_layer("AvgPool2d", (1, H, W), kernel_size=3, stride=2, padding=1,
                               ceil_mode=True)],
    "lppool": [new_layer("LPPool2d", (1, H, W), kernel_size=2)],
    "zeropad + conv": [new_layer("ZeroPad2d", (1, H, W), padding=[2, 0, 1, 3]),
                       new_layer("Conv2d", (1, H + 4, W + 2), kernel_size=3)],
    "adaptive": [new_layer("AdaptiveAvgPool2d", (1, H, W), output_size=[4, 3])],
    "adaptive max": [new_layer("AdaptiveMaxPool2d", (1, H, W), output_size=5)],
    "upsample nearest": [new_layer("Upsample", (1, H, W), scale_factor=2.0)],
    "upsample size": [new_layer("Upsample", (1, H, W), size=[20, 17], scale_factor=None)],
    "chain": [new_layer("Conv2d", (1, H, W), out_channels=2, kernel_size=3, padding=1),
              new_layer("ReLU"),
              new_layer("MaxPool2d", (2, H, W), kernel_size=2),
              new_layer("Conv2d", (2, 6, 5), in_channels=2, kernel_size=2, stride=1,
                        padding=2, dilation=2),
              new_layer("AvgPool2d", (1, 6, 5), kernel_size=3, stride=2, padding=1,
                        ceil_mode=True)],
    "strided drop then pad": [new_layer("Conv2d", (1, H, W), kernel_size=2, stride=2),
                              new_layer("Conv2d", (1, 6, 5), kernel_size=3, padding=1)],
}


@pytest.mark.parametrize("name", list(CASES))
def test_receptive_field_matches_brute_force(name):
    _check(_pipeline(*CASES[name]))


@pytest.mark.parametrize("mode,align", [("bilinear", False), ("bilinear", True),
                                        ("bicubic", False), ("nearest-exact", None)])
def test_upsample_interpolating_is_a_tight_superset(mode, align):
    layer = new_layer("Upsample", (1, H, W), scale_factor=1.5, mode=mode, align_corners=align)
    _check(_pipeline(layer), exact=mode == "nearest-exact")


def test_rgb_grouped_conv():
    layer = new_layer("Conv2d", (3, H, W), out_channels=6, kernel_size=3, stride=2, padding=2,
                      groups=3)
    _check(_pipeline(layer, mode="rgb"))


def test_window_to_previous_stage_is_one_layer():
    pipe = _pipeline(*CASES["chain"])
    # stage 4 (the dilated conv) back to stage 3 (max pool output): k=2, d=2, p=2
    win = receptive_field(pipe, (H, W), 4, 1, 3, to_stage=3)
    assert win == Window(1 - 2, 1 - 2 + 2, 3 - 2, 3 - 2 + 2)
    assert receptive_field(pipe, (H, W), 4, 1, 3, to_stage=4) == Window(1, 1, 3, 3)
    direct = layer_window("Conv2d", dict(pipe.layers[3].args), (6, 5), (9, 8), Window(1, 1, 3, 3))
    assert direct == win


def test_window_reaches_into_padding_unclipped():
    pipe = _pipeline(new_layer("Conv2d", (1, H, W), kernel_size=3, padding=1))
    win = receptive_field(pipe, (H, W), 1, 0, 0)
    assert win == Window(-1, 1, -1, 1)
    assert win.clipped(H, W) == Window(0, 1, 0, 1)
    assert win.text() == "x -1..1, y -1..1 (3 x 3)"


def test_global_ops_have_no_window():
    pipe = _pipeline(new_layer("Conv2d", (1, H, W), kernel_size=3),
                     new_layer("InstanceNorm2d", (1, 11, 9)),
                     new_layer("ReLU"))
    assert is_local(pipe, 1)
    assert not is_local(pipe, 3)
    assert receptive_field(pipe, (H, W), 1, 2, 2) is not None
    assert receptive_field(pipe, (H, W), 3, 2, 2) is None
    # stage 3 back to stage 2 only crosses the (local) ReLU
    assert receptive_field(pipe, (H, W), 3, 2, 2, to_stage=2) == Window(2, 2, 2, 2)


def test_resize_input_uses_resized_coordinates():
    pipe = Pipeline(InputSpec("gray", (32, 32)),
                    (new_layer("Conv2d", (1, 32, 32), kernel_size=5, stride=1),))
    assert receptive_field(pipe, (512, 512), 1, 27, 27) == Window(27, 31, 27, 31)

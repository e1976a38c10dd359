"""Grad-CAM against independent computations: CAM's closed form (Zhou et al.) for a net that
ends in global average pooling, and a manual autograd computation on the digits network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from layerlab.core import resources
from layerlab.core.gradcam import GradCamError, default_stage, grad_cam, overlay, spatial_stages
from layerlab.core.imageio import load_image, to_tensor
from layerlab.core.pipeline import InputSpec, Pipeline, new_layer


def photo(size=(48, 64)) -> torch.Tensor:
    img = load_image(resources.sample("chelsea.jpg")).image.convert("RGB")
    return to_tensor(img.resize((size[1], size[0]), Image.BILINEAR))


def gap_net(seed: int = 0) -> tuple[Pipeline, nn.Sequential]:
    """conv -> ReLU -> AdaptiveAvgPool2d(1) -> Flatten -> Linear, as a pipeline and as the
    torch modules the test builds itself with the same tensors."""
    g = torch.Generator().manual_seed(seed)
    conv_w = torch.randn(8, 3, 3, 3, generator=g) * 0.5
    conv_b = torch.randn(8, generator=g) * 0.1
    fc_w = torch.randn(5, 8, generator=g)
    fc_b = torch.randn(5, generator=g)
    layers = (
        new_layer("Conv2d", (3, 48, 64), in_channels=3, out_channels=8, kernel_size=3,
                  padding=1).with_param("weight", conv_w.numpy()).with_param("bias",
                                                                             conv_b.numpy()),
        new_layer("ReLU"),
        new_layer("AdaptiveAvgPool2d", output_size=1),
        new_layer("Flatten"),
        new_layer("Linear", in_features=8, out_features=5).with_param("weight", fc_w.numpy())
        .with_param("bias", fc_b.numpy()),
    )
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5))
    model.load_state_dict({"0.weight": conv_w, "0.bias": conv_b, "4.weight": fc_w,
                           "4.bias": fc_b})
    return Pipeline(InputSpec("rgb"), layers), model.eval()


def test_grad_cam_equals_cam_for_a_global_average_pooling_net():
    pipeline, model = gap_net()
    x = photo()
    with torch.no_grad():
        feats = model[1](model[0](x))[0].double().numpy()  # A: (8, 48, 64)
        logits = model(x)[0]
    fc_w = model[4].weight.detach().double().numpy()
    assert default_stage(pipeline, (48, 64)) == 2  # the ReLU after the conv
    for target in range(5):
        g = grad_cam(pipeline, x, target=target, stage=2)
        cam = np.maximum(np.tensordot(fc_w[target], feats, axes=1), 0)  # ReLU(sum_k w_ck A_k)
        # alpha_k = w_ck / (h * w): the same map up to the positive factor h * w
        np.testing.assert_allclose(g.weights * 48 * 64, fc_w[target], rtol=1e-6)
        np.testing.assert_allclose(g.cam * 48 * 64, cam, rtol=1e-4, atol=1e-4)
        assert g.score == pytest.approx(float(logits[target]), abs=1e-5)
        if cam.max() > 0:  # at the input's own size: scaled to [0, 1] it is CAM scaled
            np.testing.assert_allclose(g.heatmap, (cam - cam.min()) / (cam.max() - cam.min()),
                                       atol=1e-5)
    assert grad_cam(pipeline, x).target == int(torch.argmax(logits))


def test_grad_cam_on_the_digits_net_equals_a_manual_autograd_computation():
    pipeline = Pipeline.load(resources.example_pipeline("digits-cnn"))
    img = load_image(resources.sample("camera.png")).image
    x = to_tensor(img, "gray")
    x32 = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True,
                        align_corners=False)
    model = nn.Sequential(*(layer.op.build(dict(layer.args)) for layer in pipeline.layers))
    with torch.no_grad():
        for module, layer in zip(model, pipeline.layers, strict=True):
            for name, arr in layer.params.items():
                getattr(module, name).copy_(torch.from_numpy(np.array(arr)))
    model.eval()
    for stage, target in [(5, 3), (4, 7), (3, 0), (6, 9)]:
        kept = {}

        def keep(module, inputs, output, kept=kept):
            output.retain_grad()
            kept["a"] = output

        handle = model[stage - 1].register_forward_hook(keep)
        x_in = x32.clone().requires_grad_(True)  # so every activation is recorded
        out = model(x_in)
        out[0, target].backward()
        handle.remove()
        a, grad = kept["a"].detach().double(), kept["a"].grad.double()
        alpha = grad.mean(dim=(2, 3))[0]
        cam = torch.relu((alpha[:, None, None] * a[0]).sum(0))
        g = grad_cam(pipeline, x, target=target, stage=stage)
        assert g.stage_name == pipeline.layers[stage - 1].name
        np.testing.assert_allclose(g.weights, alpha.numpy(), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(g.cam, cam.numpy(), rtol=1e-5, atol=1e-6)
        up = F.interpolate(cam[None, None].float(), size=(32, 32), mode="bilinear",
                           align_corners=False)[0, 0].numpy()
        if up.max() > up.min():
            np.testing.assert_allclose(g.heatmap, (up - up.min()) / (up.max() - up.min()),
                                       atol=1e-5)


def test_stages_and_errors():
    pipeline = Pipeline.load(resources.example_pipeline("digits-cnn"))
    assert [k for k, _ in spatial_stages(pipeline, (32, 32))] == [1, 2, 3, 4, 5, 6]
    x = to_tensor(load_image(resources.sample("camera.png")).image, "gray")
    with pytest.raises(GradCamError, match="stage 8 has no feature maps"):
        grad_cam(pipeline, x, stage=8)
    with pytest.raises(GradCamError, match="class 10 does not exist"):
        grad_cam(pipeline, x, target=10)
    edges = Pipeline.load(resources.example_pipeline("edge-detection"))
    with pytest.raises(GradCamError):
        grad_cam(edges, x)


def test_overlay_blends_as_written():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    heat = rng.random((6, 7)).astype(np.float32)
    from layerlab.core.colormaps import colormap_lut

    turbo = colormap_lut("turbo")[np.floor(heat * 255 + 0.5).astype(int)].astype(np.float64)
    for a in (0.0, 0.3, 1.0):
        want = np.floor((1 - a) * image[:, :, None] + a * turbo + 0.5)
        assert np.array_equal(overlay(image, heat, a), want.astype(np.uint8))

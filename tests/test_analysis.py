"""The one shape/memory pass (core.analysis) against torch modules actually run."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from layerlab.core.analysis import (
    DISABLED,
    ERROR,
    NOT_REACHED,
    OK,
    OverBudget,
    analyze,
    check_memory,
    in_shape_at,
    validate,
)
from layerlab.core.engine import Engine, RunError
from layerlab.core.pipeline import InputSpec, Pipeline, PipelineError, format_bytes, new_layer


def torch_modules(pipeline: Pipeline) -> list[nn.Module]:
    """The enabled layers as plain torch modules, built from their arguments by torch."""
    out = []
    for _, layer in pipeline.enabled_layers():
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.args.items()}
        out.append(getattr(nn, layer.type)(**kwargs).eval())
    return out


def stack() -> Pipeline:
    return Pipeline(InputSpec("rgb"), (
        new_layer("Conv2d", (3, 1, 1), out_channels=4, kernel_size=[3, 5], stride=2,
                  padding=[1, 0], dilation=[2, 1]),
        new_layer("ReLU"),
        new_layer("MaxPool2d", (4, 1, 1), kernel_size=3, stride=2, ceil_mode=True),
        new_layer("BatchNorm2d", (4, 1, 1)),
        new_layer("Upsample", (4, 1, 1), scale_factor=1.5, mode="bilinear"),
        new_layer("AvgPool2d", (4, 1, 1), kernel_size=2, padding=1),
        new_layer("AdaptiveAvgPool2d", (4, 1, 1), output_size=[3, 2]),
        new_layer("Flatten"),
        new_layer("Linear", (24,), out_features=7),
    ))


@pytest.mark.parametrize("hw", [(37, 41), (64, 48), (23, 29)])
def test_stage_shapes_and_counts_match_torch(hw):
    pipeline = stack()
    a = analyze(pipeline, hw)
    assert a.ok and a.error is None
    x = torch.rand(1, 3, *hw)
    outputs = [x]
    with torch.no_grad():
        for m in torch_modules(pipeline):
            outputs.append(m(outputs[-1]))
    assert [s.shape for s in a.stages] == [tuple(t.shape[1:]) for t in outputs]
    assert [s.in_shape for s in a.stages[1:]] == [tuple(t.shape[1:]) for t in outputs[:-1]]
    for status, m in zip(a.stages[1:], torch_modules(pipeline), strict=True):
        assert status.parameter_count == sum(p.numel() for p in m.parameters())
        assert status.tensor_bytes == sum(t.nbytes for t in m.state_dict().values()
                                          if t.is_floating_point())
    # memory: every output kept (the window) ...
    modules = torch_modules(pipeline)
    tensors = sum(t.nbytes for m in modules for t in m.state_dict().values()
                  if t.is_floating_point())
    assert a.memory.outputs == sum(t.nbytes for t in outputs)
    assert a.memory.tensors == tensors
    assert a.memory.kept == sum(t.nbytes for t in outputs) + tensors
    # ... and one pass (an export): input + the stage's input and output + modules so far
    built = np.cumsum([sum(t.nbytes for t in m.state_dict().values() if t.is_floating_point())
                       for m in modules])
    alive = [outputs[0].nbytes + (outputs[k - 1].nbytes if k > 1 else 0) + outputs[k].nbytes
             + int(built[k - 1]) for k in range(1, len(outputs))]
    assert a.memory.peak == max(alive)
    assert a.memory.peak_stage == 1 + int(np.argmax(alive))
    # the formula text has the user's numbers and torch's result
    assert a.stages[1].formula.splitlines()[0] == (
        f"H_out = floor(({hw[0]} + 2*1 - 2*(3-1) - 1)/2 + 1) = {outputs[1].shape[2]}")


def test_status_of_every_layer():
    conv = new_layer("Conv2d", (3, 8, 8), out_channels=8)
    bad = new_layer("Conv2d", (8, 6, 6), out_channels=2).with_args(in_channels=5)
    p = Pipeline(InputSpec("rgb"), (conv, replace(new_layer("ReLU"), enabled=False), bad,
                                    new_layer("ReLU"), conv.with_args(kernel_size=0)))
    a = analyze(p, (16, 16))
    assert [s.state for s in a.layers] == [OK, DISABLED, ERROR, NOT_REACHED, NOT_REACHED]
    assert a.layers[2].field == "in_channels" and a.layers[2].in_shape == (8, 14, 14)
    assert a.layers[2].error == "in_channels is 5 but the input has 8 channels (input 8 x 14 x 14)"
    assert a.error == ("layer 2 (conv2d): in_channels is 5 but the input has 8 channels "
                       "(input 8 x 14 x 14)")
    # a bad argument after the break is still reported on its own row
    assert a.layers[4].field == "kernel_size" and "at least 1" in a.layers[4].error
    assert [s.index for s in a.stages] == [-1, 0]
    with pytest.raises(PipelineError) as exc:
        a.stage_shapes()
    assert exc.value.index == 2 and exc.value.field == "in_channels"
    # the window's wording writes shapes with ×
    v = validate(p, (16, 16))
    assert v.error_index == 2 and v.error.endswith("(input 8 × 14 × 14)")
    # no image: shapes unknown, so only bad arguments are errors
    no_image = analyze(p, None)
    assert [s.state for s in no_image.layers] == [NOT_REACHED, DISABLED, NOT_REACHED,
                                                  NOT_REACHED, ERROR]
    assert no_image.first_error.index == 4


def test_in_shape_at():
    p = stack()
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        for k, m in enumerate(torch_modules(p)[:4]):
            assert in_shape_at(p, k, (40, 40)) == tuple(x.shape[1:])
            x = m(x)
    assert in_shape_at(p, 0, None) is None
    assert in_shape_at(Pipeline(InputSpec("gray", (32, 30))), 0, None) == (1, 32, 30)
    broken = p.replace_layer(0, p.layers[0].with_args(in_channels=1))
    assert in_shape_at(broken, 3, (40, 40)) is None


def test_a_huge_linear_is_refused_by_its_weights():
    p = Pipeline(InputSpec("gray", (32, 40)), (new_layer("Flatten"),
                                              new_layer("Linear", (1280,), out_features=900000)))
    a = analyze(p, (32, 40))
    with torch.device("meta"):
        ref = nn.Linear(1280, 900000)
    weights = sum(t.nbytes for t in ref.state_dict().values())
    assert weights == 4 * (1280 * 900000 + 900000)  # 4.6 GB
    assert a.memory.tensors == weights
    with pytest.raises(OverBudget) as exc:
        check_memory(a, 4 * 1024**3)
    msg = str(exc.value)
    assert format_bytes(a.memory.kept) in msg and "4.3 GB" in msg
    assert "the largest is layer 1 (linear) weight 900000 x 1280, 4.3 GB" in msg
    engine = Engine("cpu")
    with pytest.raises(RunError, match="weight 900000 x 1280"):
        engine.run_all(p, torch.rand(1, 1, 32, 40))
    assert engine.rebuilds == 0  # refused before building anything


def test_a_big_upsample_counts_input_and_output_at_once():
    p = Pipeline(InputSpec("gray"), (new_layer("Upsample", (1, 1, 1), scale_factor=6.0),))
    hw = (9000, 9000)
    with torch.device("meta"):
        out = nn.Upsample(scale_factor=6.0)(torch.empty(1, 1, *hw))
        inp = torch.empty(1, 1, *hw)
    a = analyze(p, hw)
    assert a.memory.peak == inp.nbytes + out.nbytes  # 0.3 GB + 10.9 GB
    with pytest.raises(OverBudget) as exc:
        check_memory(a, 4 * 1024**3, cached=False)
    assert f"needs about {format_bytes(inp.nbytes + out.nbytes)} at once" in str(exc.value)
    assert "layer 0 (upsample, 1 x 54000 x 54000)" in str(exc.value)
    check_memory(a, inp.nbytes + out.nbytes, cached=False)  # exactly the budget fits


def test_100000_channels_refused_with_the_estimate():
    layer = new_layer("Conv2d", (3, 256, 256), out_channels=100000)
    p = Pipeline(InputSpec("rgb"), (layer,))
    a = analyze(p, (256, 256))
    with torch.device("meta"):
        ref = nn.Conv2d(3, 100000, 3)
        y = ref(torch.empty(1, 3, 256, 256))
    kept = 4 * 3 * 256 * 256 + y.nbytes + sum(t.nbytes for t in ref.state_dict().values())
    assert a.memory.kept == kept
    with pytest.raises(OverBudget) as exc:
        check_memory(a, 4 * 1024**3)
    msg = str(exc.value)
    assert msg.startswith(f"this stack needs about {format_bytes(kept)} for its stage outputs "
                          f"and weights at 256 x 256, more than the memory budget of 4.0 GB")
    assert "the largest is layer 0 (conv2d, 100000 x 254 x 254)" in msg
    check_memory(analyze(p, (8, 8)), 4 * 1024**3)  # small images fit
    engine = Engine("cpu")
    with pytest.raises(RunError) as exc:
        engine.run_all(p, torch.rand(1, 3, 256, 256))
    assert str(exc.value) == msg
    assert engine.rebuilds == 0


def test_the_engine_budget_is_outputs_plus_weights():
    layers = tuple(new_layer("Conv2d", (3, 100, 100), out_channels=3, padding=1)
                   for _ in range(10))
    p = Pipeline(InputSpec("rgb"), layers)
    weights = sum(t.nbytes for m in torch_modules(p) for t in m.state_dict().values())
    need = 4 * 11 * 3 * 100 * 100 + weights
    image = torch.rand(1, 3, 100, 100)
    assert len(Engine("cpu", memory_budget=need).run_all(p, image)) == 11
    with pytest.raises(RunError, match="needs about"):
        Engine("cpu", memory_budget=need - 1).run_all(p, image)
    with pytest.raises(RunError, match="input image alone"):
        Engine("cpu", memory_budget=1000).run_all(Pipeline(InputSpec("rgb"), ()), image)


def test_disabled_layers_have_counts_but_no_stage():
    p = stack()
    p = p.replace_layer(3, replace(p.layers[3], enabled=False))
    a = analyze(p, (40, 40))
    assert a.layers[3].state == DISABLED and a.layers[3].stage is None
    assert a.layers[3].parameter_count == 8  # BatchNorm2d(4): weight and bias
    assert [s.stage for s in a.stages] == list(range(len(p.layers)))
    assert math.prod(a.stages[-1].shape) == 7


def test_export_refuses_a_peak_over_its_budget(tmp_path):
    from layerlab.core.export import ExportError, export_run

    camera = Path(__file__).resolve().parent.parent / "resources" / "samples" / "camera.png"
    big = [16384, 16384]
    p = Pipeline(InputSpec("gray"), (
        new_layer("Upsample", (1, 1, 1), size=big, scale_factor=None),
        new_layer("Conv2d", (1, *big), out_channels=4, padding=1, bias=False)))
    out = tmp_path / "big"
    with pytest.raises(ExportError) as exc:
        export_run(camera, p, out)
    # while the conv runs: the image, the upsampled input (1 GB), the conv output (4 GB)
    need = 4 * (512 * 512 + 16384 * 16384 + 4 * 16384 * 16384 + 4 * 9)
    assert str(exc.value).startswith(f"this stack needs about {format_bytes(need)} at once "
                                     f"(while computing stage 2) at 512 x 512")
    assert "the largest is layer 1 (conv2d, 4 x 16384 x 16384)" in str(exc.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_info_prints_the_memory_of_both_runs(tmp_path, capsys):
    from layerlab.cli import main

    p = Pipeline(InputSpec("gray"), (new_layer("Conv2d", (1, 1, 1), out_channels=8),
                                     new_layer("Flatten"), new_layer("Linear", (8 * 30 * 38,))))
    path = tmp_path / "p.layerlab.json"
    p.save(path)
    assert main(["info", str(path), "--size", "32x40"]) == 0
    out = capsys.readouterr().out
    x = torch.rand(1, 1, 32, 40)
    outputs, tensors = [x], 0
    with torch.no_grad():
        for m in torch_modules(p):
            outputs.append(m(outputs[-1]))
            tensors += sum(t.nbytes for t in m.state_dict().values())
    kept = sum(t.nbytes for t in outputs) + tensors
    assert f"memory: {format_bytes(kept)} with every stage kept (the window)" in out


def test_receptive_fields_read_the_analysis_stages():
    from layerlab.core.receptive import Window, receptive_field

    p = stack()
    a = analyze(p, (40, 40))
    # Conv2d k=[3, 5], s=2, p=[1, 0], d=[2, 1]: rows 3*2-1 .. +2*(3-1), cols 4*2 .. +(5-1)
    want = Window(5, 9, 8, 12)
    assert receptive_field(p, (40, 40), 1, 3, 4, shapes=a.stages) == want
    assert receptive_field(p, (40, 40), 1, 3, 4) == want
    assert receptive_field(p, (40, 40), 8, 0, 0, shapes=a.stages) is None  # after Flatten


def test_a_changed_weight_value_keeps_the_analysis_and_anything_else_does_not():
    from layerlab.bench import four_stage_pipeline
    from layerlab.core.analysis import same_analysis

    base = four_stage_pipeline(64)
    last = len(base.layers) - 1
    weight = Engine("cpu").build_module(base.layers[last]).weight.detach().numpy().copy()
    with_w = base.replace_layer(last, base.layers[last].with_param("weight", weight))
    edited_w = weight.copy()
    edited_w[0, 0, 1, 1] = 9.0
    edited = with_w.replace_layer(last, with_w.layers[last].with_param("weight", edited_w))
    conv = edited.layers[last]
    others = {
        "an argument": edited.replace_layer(last, conv.with_args(padding=0)),
        "a name": edited.replace_layer(last, replace(conv, name="other")),
        "enabled": edited.replace_layer(last, replace(conv, enabled=False)),
        "a parameter's shape": edited.replace_layer(
            last, conv.with_param("weight", edited_w[:, :, :2, :2])),
        "explicit params": with_w.replace_layer(last, replace(conv, params={})),
        "the input": replace(edited, input=InputSpec("gray")),
        "the layers": replace(edited, layers=edited.layers[:-1]),
    }
    assert same_analysis(with_w, edited)
    assert analyze(with_w, (64, 64)) == analyze(edited, (64, 64))
    for what, other in others.items():
        assert not same_analysis(edited, other), what
        if what != "explicit params":  # the same analysis, but said conservatively
            assert analyze(edited, (64, 64)) != analyze(other, (64, 64)), what

    # the engine reuses it for the edit and analyses anything else afresh
    engine = Engine("cpu")
    x = torch.rand(1, 3, 64, 64)
    engine.run_all(with_w, x)
    kept = engine._last_analysis[2]
    out = engine.run_all(edited, x)
    assert engine._last_analysis[2] is kept
    conv_out = torch.nn.functional.conv2d(out[last].output, torch.from_numpy(edited_w),
                                          padding=1)
    torch.testing.assert_close(out[-1].output, conv_out, rtol=0, atol=0)
    engine.run_all(others["an argument"], x)
    assert engine._last_analysis[2] is not kept

"""Receptive fields: which input pixels an output pixel was computed from.

Pure geometry from the layer arguments, no torch run: each op's spec names its window
function (``OpSpec.receptive``, see :mod:`layerlab.core.windows`); this module chains them
back through a pipeline. Ops whose output pixel depends on the whole image (instance/group/
layer normalisation, Flatten, Linear) have no local window: the functions return ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .analysis import LayerStatus, analyze
from .pipeline import Pipeline, StageShape
from .specs import get_op
from .windows import Window

__all__ = ["Window", "is_local", "layer_window", "receptive_field"]


def layer_window(layer_type: str, args: dict[str, Any], in_hw: tuple[int, int],
                 out_hw: tuple[int, int], window: Window) -> Window | None:
    """Map a window of a layer's output back to the layer's input coordinates.

    ``None`` when the op is not local (its outputs depend on the whole input).
    """
    op = get_op(layer_type)
    if not op.local:
        return None
    return op.receptive(args, tuple(in_hw), tuple(out_hw), window)


def receptive_field(pipeline: Pipeline, image_hw: tuple[int, int], stage: int, y: int, x: int,
                    *, to_stage: int = 0,
                    shapes: Sequence[StageShape | LayerStatus] | None = None
                    ) -> Window | None:
    """Window of stage ``to_stage``'s pixels that output pixel (y, x) of ``stage`` came from.

    Stages count as in the engine: 0 is the (resized) input, then "normalize" when the input
    has it (identity for windows), then one per enabled layer.
    ``image_hw`` is the loaded image's (H, W) (before the pipeline's own resize). Returns
    ``None`` when a layer on the way is not local or a stage is not spatial. Windows of
    intermediate stages are clipped to those stages' images (padding depends on nothing), the
    result is not: a box reaching into ``to_stage``'s padding shows as such. ``shapes`` may
    pass ``analyze(pipeline, image_hw).stages`` when it is already known (hover, every move);
    raises PipelineError when the pipeline does not chain.
    """
    if not 0 <= to_stage <= stage:
        raise ValueError(f"to_stage {to_stage} must be between 0 and {stage}")
    if shapes is None:
        shapes = analyze(pipeline, image_hw).stage_shapes()
    if stage >= len(shapes):
        raise ValueError(f"stage {stage} does not exist ({len(shapes)} stages)")
    layers = [layer for _, layer in pipeline.enabled_layers()]
    offset = pipeline.stage_offset  # the normalize stage maps every pixel to itself
    window = Window(y, y, x, x)
    for st in range(max(stage, offset), max(to_stage, offset), -1):
        info = shapes[st]
        if len(info.shape) != 3 or len(info.in_shape) != 3:
            return None
        if st < stage:
            # Pixels outside an intermediate stage are padding (they depend on nothing):
            # clip, so a dropped last row/column (floor in the size formula) is not counted.
            inside = window.clipped(*info.shape[1:])
            window = inside or window
        op, args = layers[st - 1 - offset].op, dict(layers[st - 1 - offset].args)
        if not op.local:
            return None
        window = op.receptive(args, tuple(info.in_shape[1:]), tuple(info.shape[1:]), window)
    return window


def is_local(pipeline: Pipeline, stage: int) -> bool:
    """Whether every layer up to ``stage`` maps output pixels to a local input window."""
    upto = max(stage - pipeline.stage_offset, 0)  # the normalize stage is local
    layers = [layer for _, layer in pipeline.enabled_layers()][:upto]
    return all(layer.op.local for layer in layers)

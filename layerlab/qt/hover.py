"""What the hover readout says about one value of a stage (no widgets).

The value is read from the exact float32 tensor of the run shown; the receptive field is
computed from the pipeline that made those pictures, and only while that pipeline's shapes are
the ones on screen (an edit whose run has not arrived yet draws no stale box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.analysis import analyze
from ..core.pipeline import PipelineError
from ..core.receptive import Window, receptive_field
from ..core.windows import GLOBAL, RESHAPE
from .session import Session
from .text import format_value

COMPARE_INPUT, COMPARE_PREVIOUS = "input", "previous"


@dataclass(frozen=True)
class HoverInfo:
    """What the hover readout says about one value."""

    stage: int
    channel: int
    x: int
    y: int
    value: np.float32
    text: str
    window: Window | None = None  # receptive field in ``window_stage``'s pixels
    window_stage: int | None = None
    input_window: Window | None = None  # receptive field in the input image (stage 0)
    origin: str = ""  # where the value came from (the end of ``text``), if known

    @property
    def overlay_text(self) -> str:
        """``text`` on two lines: the value, then where it came from."""
        if not self.origin:
            return self.text
        return self.text[: -len(self.origin) - 3] + "\n" + self.origin


class HoverReader:
    """Reads values and receptive fields out of the session's results."""

    def __init__(self, session: Session):
        self.session = session
        self._shapes_cache: tuple | None = None

    def info(self, stage: int, channel: int, x: int, y: int,
             compare: str = COMPARE_INPUT) -> HoverInfo | None:
        """The value at (x, y) of ``channel`` of ``stage``; for a 1-D stage ``x`` is the index
        and ``channel``/``y`` are ignored. None outside the stage."""
        view = self.session.results.get(stage)
        if view is None or view.values is None:
            return None
        vals = view.values
        head = f"stage {stage} {view.result.name}"
        if vals.ndim == 1:
            if not 0 <= x < vals.shape[0]:
                return None
            value = np.float32(vals[x])
            text = f"{head} \u00b7 index {x} = {format_value(value)}"
            origin = self._vector_origin(stage, x)
            if origin:
                text += f" \u00b7 {origin}"
            return HoverInfo(stage, 0, x, 0, value, text, origin=origin)
        if vals.ndim == 2:  # a 2-D stage (Flatten of some dimensions): one channel
            vals = vals[None]
        c, h, w = vals.shape
        if not (0 <= channel < c and 0 <= x < w and 0 <= y < h):
            return None
        value = np.float32(vals[channel, y, x])
        text = f"{head} \u00b7 ch {channel} \u00b7 (x {x}, y {y}) = {format_value(value)}"
        window = input_window = None
        window_stage = None
        origin = ""
        if stage > 0:
            target = 0 if compare == COMPARE_INPUT else stage - 1
            input_window = self._receptive(stage, x, y, 0)
            window = input_window if target == 0 else self._receptive(stage, x, y, target)
            window_stage = target
            if input_window is not None and (input_window.width > 1 or
                                             input_window.height > 1):
                origin = (f"from input x {input_window.x0}..{input_window.x1}, "
                          f"y {input_window.y0}..{input_window.y1} "
                          f"({input_window.width} x {input_window.height})")
            elif input_window is None and self._shapes() is not None:
                origin = "depends on the whole image"
        if origin:
            text += f" \u00b7 {origin}"
        return HoverInfo(stage, channel, x, y, value, text, window, window_stage, input_window,
                         origin)

    def _vector_origin(self, stage: int, index: int) -> str:
        """For a Flatten of a C x H x W stage: where the value sat before flattening."""
        results = self.session.results
        view, prev = results.get(stage), results.get(stage - 1)
        if view is None or prev is None or prev.values is None:
            return ""
        pipeline, layer_index = self.session.run_pipeline, view.result.layer_index
        if pipeline is None or not 0 <= layer_index < len(pipeline.layers):
            return ""
        receptive = pipeline.layers[layer_index].op.receptive
        if receptive is RESHAPE and prev.values.ndim == 3 \
                and prev.values.size == view.values.size:
            c, h, w = np.unravel_index(index, prev.values.shape)
            return f"from stage {stage - 1} ch {c} (x {w}, y {h})"
        if receptive is GLOBAL:
            return f"mixes all {prev.values.size} values of stage {stage - 1}"
        return ""

    def _shapes(self) -> list | None:
        """The run pipeline's stage shapes, when they are the shapes shown (else None: no
        receptive fields for a stale or different stack). Cached per pipeline and results,
        since the mouse asks on every move."""
        pipeline, results = self.session.run_pipeline, self.session.results
        if pipeline is None or 0 not in results:
            return None
        key = (id(pipeline), tuple((i, id(v)) for i, v in results.items()))
        if self._shapes_cache is not None and self._shapes_cache[0] == key:
            return self._shapes_cache[1]
        hw = tuple(results[0].result.shape[1:])
        analysis = analyze(pipeline, hw)
        shapes = list(analysis.stages) if analysis.ok else None
        if shapes is not None:
            for i, v in results.items():
                if v.result.error:
                    continue
                if i >= len(shapes) or tuple(shapes[i].shape) != tuple(v.result.shape) \
                        or shapes[i].stage_name != v.result.name:
                    shapes = None
                    break
        self._shapes_cache = (key, shapes)
        return shapes

    def _receptive(self, stage: int, x: int, y: int, to_stage: int) -> Window | None:
        shapes = self._shapes()
        if shapes is None:
            return None
        hw = tuple(self.session.results[0].result.shape[1:])
        try:
            return receptive_field(self.session.run_pipeline, hw, stage, y, x,
                                   to_stage=to_stage, shapes=shapes)
        except (PipelineError, ValueError):
            return None

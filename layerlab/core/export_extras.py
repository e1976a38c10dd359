"""What an export writes about a classifier, beside its manifest: ``predictions.json`` (the top
five classes with their names and softmax probabilities) whenever the last stage is a vector
of class scores, and with the Grad-CAM option ``gradcam.png`` (the heat map of one class over
the input stage) and ``gradcam.npy`` (the map itself, float32 in [0, 1])."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import png
from .gradcam import GradCamError, grad_cam, overlay
from .pipeline import Pipeline
from .predictions import PREDICTIONS_FILE, output_kind, predict

GRADCAM_PNG, GRADCAM_NPY = "gradcam.png", "gradcam.npy"
DEFAULT_OPACITY = 0.5

Write = Callable[[Path, Any], None]


class GradCamExportError(ValueError):
    """The Grad-CAM option cannot be honoured (one message)."""


@dataclass(frozen=True)
class GradCamOption:
    """``--gradcam [CLASS]``: the class (index, name, or None for the top one), the stage
    (None: the last conv stage) and the opacity of the heat map in ``gradcam.png``."""

    target: int | str | None = None
    stage: int | None = None
    opacity: float = DEFAULT_OPACITY


def predicts(shapes) -> bool:
    """Whether an export of these stage shapes writes ``predictions.json``."""
    return bool(shapes) and len(shapes[-1].shape) == 1 and int(shapes[-1].shape[0]) >= 2


def write_predictions(folder: Path, pipeline: Pipeline, stage: int, name: str,
                      values: np.ndarray, write: Write) -> str | None:
    found = predict(values, pipeline.classes, kind=output_kind(pipeline))
    if found is None:
        return None
    record = found.to_dict(stage, name)
    for entry in record["top"]:  # standard JSON: a NaN score is null
        for key in ("probability", "value"):
            if not np.isfinite(entry[key]):
                entry[key] = None
    text = json.dumps(record, indent=1, allow_nan=False)
    write(folder / PREDICTIONS_FILE, (text + "\n").encode("utf-8"))
    return PREDICTIONS_FILE


def resolve_target(target: int | str | None, classes: tuple[str, ...], n: int) -> int | None:
    """A class given by index or by name, as its index (None stays None: the top class)."""
    if target is None:
        return None
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    try:
        k = int(target)
    except (TypeError, ValueError):
        shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
        raise GradCamExportError(f"--gradcam {target!r} is neither a class index (0 to "
                                 f"{n - 1}) nor a class name"
                                 + (f" ({shown})" if classes else "")) from None
    if not 0 <= k < n:
        raise GradCamExportError(f"--gradcam {k}: the output has classes 0 to {n - 1}")
    return k


def write_gradcam(folder: Path, pipeline: Pipeline, x: torch.Tensor, input_stage: torch.Tensor,
                  option: GradCamOption, n_classes: int, device: str,
                  write: Write) -> dict[str, Any]:
    """Compute Grad-CAM for ``option`` and write ``gradcam.png`` / ``gradcam.npy``; returns
    the manifest's ``"gradcam"`` record."""
    target = resolve_target(option.target, pipeline.classes, n_classes)
    try:
        g = grad_cam(pipeline, x, target=target, stage=option.stage, device=device)
    except GradCamError as e:
        raise GradCamExportError(f"Grad-CAM: {e}") from None
    base = np.floor(input_stage[0].detach().cpu().double().clamp(0, 1).numpy() * 255 + 0.5)
    base = base.astype(np.uint8)
    image = base[0] if base.shape[0] == 1 else np.moveaxis(base, 0, -1)
    write(folder / GRADCAM_PNG, png.encode(overlay(image, g.heatmap, option.opacity), 6))
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(g.heatmap, dtype=np.float32))
    write(folder / GRADCAM_NPY, buf.getvalue())
    names = pipeline.classes if len(pipeline.classes) == n_classes else ()
    return {"image": GRADCAM_PNG, "heatmap": GRADCAM_NPY, "class": g.target,
            "class_name": names[g.target] if names else f"class {g.target}",
            "score": g.score, "stage": g.stage, "stage_name": g.stage_name,
            "opacity": option.opacity}

"""What a classifier says: softmax probabilities of its last stage, the top classes by name.

A stack is read as a classifier when its last stage is a vector of N >= 2 values. Those are
logits, turned into probabilities with a softmax computed in float64 (so the percentages
shown do not depend on float32 rounding), except after a final ``Softmax`` (already
probabilities) or ``LogSoftmax`` (their logarithms). Class names come from the pipeline's
``classes`` (or a labels file the user gives) when there are exactly N of them, else
``class 0``, ``class 1``, ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import safeio
from .file_values import CLASS_NAME_MAX_CHARS, MAX_CLASSES, PipelineError, check_classes
from .pipeline import Pipeline

__all__ = ["LOGITS", "LOG_PROBABILITIES", "PREDICTIONS_FILE", "PROBABILITIES", "Prediction",
           "Predictions", "LabelsError", "class_names", "output_kind", "predict",
           "read_labels", "softmax"]

TOP_K = 5
PREDICTIONS_FILE = "predictions.json"
LOGITS, PROBABILITIES, LOG_PROBABILITIES = "logits", "probabilities", "log-probabilities"
MAX_LABELS_BYTES = 16 * 1024 * 1024


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1 for the most probable class
    index: int  # the position in the output vector
    name: str
    probability: float  # in [0, 1]
    value: float  # the output value itself (a logit, unless the stack ends in Softmax)


@dataclass(frozen=True)
class Predictions:
    top: tuple[Prediction, ...]
    probabilities: np.ndarray  # float64, all N classes
    names: tuple[str, ...]  # all N names (given or "class k")
    kind: str  # what the values were: LOGITS, PROBABILITIES or LOG_PROBABILITIES
    named: bool  # the names came from the pipeline or a labels file

    def to_dict(self, stage: int | None = None, stage_name: str | None = None) -> dict:
        """The ``predictions.json`` record of an export."""
        return {"format": "layerlab.predictions", "version": 1, "stage": stage,
                "stage_name": stage_name, "classes": len(self.names), "values": self.kind,
                "names": "given" if self.named else "numbered",
                "top": [{"rank": p.rank, "index": p.index, "name": p.name,
                         "probability": p.probability, "value": p.value} for p in self.top]}


def softmax(values: np.ndarray) -> np.ndarray:
    """``softmax`` in float64, shifted by the largest finite value (no overflow)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = x[np.isfinite(x)]
    shift = finite.max() if finite.size else 0.0
    e = np.exp(x - shift)
    total = e.sum()
    return e / total if total > 0 and np.isfinite(total) else np.full(x.shape, np.nan)


def output_kind(pipeline: Pipeline) -> str:
    """What the last stage holds: a final Softmax gives probabilities, LogSoftmax their
    logarithms, anything else logits."""
    enabled = pipeline.enabled_layers()
    last = enabled[-1][1].type if enabled else None
    return {"Softmax": PROBABILITIES, "LogSoftmax": LOG_PROBABILITIES}.get(last, LOGITS)


def class_names(classes: Sequence[str], n: int) -> tuple[tuple[str, ...], bool]:
    """The N names to show and whether they are the given ones (only when there are N)."""
    if len(classes) == n:
        return tuple(classes), True
    return tuple(f"class {k}" for k in range(n)), False


def predict(values: np.ndarray, classes: Sequence[str] = (), *, kind: str = LOGITS,
            k: int = TOP_K) -> Predictions | None:
    """The top ``k`` classes of an output vector, or None when it is not one (fewer than
    two values, or not 1-D)."""
    v = np.asarray(values)
    if v.ndim != 1 or v.size < 2:
        return None
    v64 = v.astype(np.float64)
    if kind == PROBABILITIES:
        probs = v64
    elif kind == LOG_PROBABILITIES:
        probs = np.exp(v64)
    else:
        probs = softmax(v64)
    names, named = class_names(classes, v.size)
    ranked = np.argsort(-np.nan_to_num(probs, nan=-1.0), kind="stable")[:k]
    top = tuple(Prediction(r + 1, int(i), names[i], float(probs[i]), float(v[i]))
                for r, i in enumerate(ranked))
    return Predictions(top, probs, names, kind, named)


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a labels file: a text file with one name per line (UTF-8; empty
    lines at the end are ignored), or a ``.json`` file holding a list of names."""
    p = Path(path)
    name = p.name
    try:
        data = safeio.read_capped(p, MAX_LABELS_BYTES)
    except safeio.FileProblem as e:
        raise LabelsError(f"{name}: cannot read the labels file: {e.reason}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelsError(f"{name}: not UTF-8 text (bad byte at offset {e.start})") from None
    if p.suffix.lower() == ".json":
        try:
            raw: Any = json.loads(text)
        except (ValueError, RecursionError):
            raise LabelsError(f"{name}: not valid JSON (a labels .json file holds a list of "
                              f"names)") from None
    else:
        raw = text.splitlines()
        while raw and not raw[-1].strip():
            raw.pop()
        raw = [line.strip() for line in raw]
    if not raw:
        raise LabelsError(f"{name}: holds no class names")
    try:
        return check_classes(raw)
    except PipelineError as e:
        raise LabelsError(f"{name}: {e.detail} (at most {MAX_CLASSES} names of at most "
                          f"{CLASS_NAME_MAX_CHARS} characters)") from None

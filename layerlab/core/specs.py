"""One declarative spec per supported op: the only place a per-op rule lives.

Each ``OpSpec`` gives the op's parameters (types, ranges, defaults, help, how the form shows
them), its shape formula (from :mod:`.shapes`), its receptive-field window (from
:mod:`.windows`), how its tensors start (``InitRule``), which argument follows the input's
channels (``ChannelRule``) and its editable kernel. The forms, the JSON validation, the
analysis, the engine and the code export read these hooks instead of checking type names.
A type name becomes a module only through ``OPS`` (the allow-list).
"""

from __future__ import annotations

from typing import Any

from .ops_table import OP_LIST
from .opspec import KINDS, WIDGETS, ChannelRule, InitRule, OpSpec, Param
from .shapes import Shape, ShapeInfo, SpecError, shape_text
from .windows import GLOBAL, RESHAPE, pad4, pair

__all__ = ["CATEGORIES", "GLOBAL", "KINDS", "OPS", "RESHAPE", "WIDGETS", "ChannelRule",
           "InitRule", "OpSpec", "Param", "Shape", "ShapeInfo", "SpecError", "get_op",
           "ops_in", "pad4", "pair", "shape_text"]

OPS: dict[str, OpSpec] = {op.type: op for op in OP_LIST}

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("convolution", "Convolution"), ("pooling", "Pooling"), ("padding", "Padding"),
    ("activation", "Activation"), ("normalization", "Normalisation"), ("other", "Other"))


def ops_in(category: str) -> list[OpSpec]:
    return [op for op in OP_LIST if op.category == category]


def get_op(type_name: Any) -> OpSpec:
    """The allow-list lookup: the only way a type name becomes a module class."""
    if not isinstance(type_name, str) or type_name not in OPS:
        names = ", ".join(OPS)
        raise SpecError(f"unknown layer type {type_name!r} (supported: {names})", "type")
    return OPS[type_name]

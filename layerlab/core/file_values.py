"""The checks of a pipeline file's values that need no pipeline: the located error every
problem becomes, layer and class names, numbers in nested lists, keys given twice. Used by
``pipeline`` (which parses the file) and by the labels-file reader."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


class PipelineError(ValueError):
    """A pipeline problem, located: file, layer index and name, field."""

    def __init__(self, message: str, *, index: int | None = None, name: str | None = None,
                 field: str | None = None, source: str | None = None):
        self.detail = message
        self.index = index
        self.layer_name = name
        self.field = field
        self.source = source
        where = []
        if source:
            where.append(f"{source}")
        if index is not None:
            where.append(f"layer {index}" + (f" ({name!r})" if name else ""))
        if field:
            where.append(field)
        super().__init__((": ".join(where) + ": " if where else "") + message)


class DuplicateKey(Exception):
    pass


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` keeps the last of repeated keys silently; a pipeline file may not."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


NAME_MAX_CHARS = 64


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a layer name, or None: text of at most 64 characters, without
    control characters (C0, DEL, C1: they would break tables and reach terminals) and
    writable as UTF-8 (no lone surrogates)."""
    if not isinstance(name, str):
        return f"name must be text, not {type(name).__name__}"
    if len(name) > NAME_MAX_CHARS:
        return f"name must be text of at most {NAME_MAX_CHARS} characters, not {len(name)}"
    for ch in name:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return (f"name must be text of at most {NAME_MAX_CHARS} characters without control "
                    f"characters (it holds {ch!r})")
        if 0xD800 <= code <= 0xDFFF:
            return (f"name must be text that can be written as UTF-8 (it holds the lone "
                    f"surrogate {ch!r})")
    return None


MAX_CLASSES = 100_000
CLASS_NAME_MAX_CHARS = 200


def check_classes(raw: Any) -> tuple[str, ...]:
    """Class names as a pipeline's ``classes`` holds them; :class:`PipelineError` if not."""
    if not isinstance(raw, list | tuple) or len(raw) > MAX_CLASSES:
        raise PipelineError(f"classes must be a list of at most {MAX_CLASSES} names",
                            field="classes")
    for k, name in enumerate(raw):
        if (not isinstance(name, str) or len(name) > CLASS_NAME_MAX_CHARS
                or any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF
                       for ch in name)):
            raise PipelineError(f"name {k + 1} must be text of at most {CLASS_NAME_MAX_CHARS} "
                                f"characters without control characters", field="classes")
    return tuple(raw)


def _is_number_type(t: type) -> bool:
    return issubclass(t, int | float | np.integer | np.floating) and not issubclass(t, bool)


def numbers_only(value: Any) -> bool:
    """True if ``value`` is a number or nested lists whose leaves are all numbers."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list | tuple):
            types = set(map(type, v))
            nested = {t for t in types if issubclass(t, list | tuple)}
            if nested:
                if nested != types:
                    return False
                stack.extend(v)
            elif not all(_is_number_type(t) for t in types):
                return False
        elif not _is_number_type(type(v)):
            return False
    return True


def shape_list(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"

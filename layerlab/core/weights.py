"""Trained weights onto a stack: read a state_dict safely, map its keys to layers, apply.

A state_dict comes from a ``.pt``/``.pth`` file read with ``torch.load(weights_only=True)``
only (a file that would rebuild other Python objects, and so could run code, is refused), or
from a ``.safetensors`` file. :func:`match_state_dict` maps its keys onto the layers without
changing anything: by layer name (``conv1.weight`` -> the layer named ``conv1``), by
``nn.Sequential`` index (``0.weight``, ``3.bias``, with or without a prefix such as
``features.``; the index counts the enabled layers, as the script of ``layerlab code`` does),
or, when neither fits, by the order of the layers with tensors whose shapes match. The
resulting :class:`WeightsMapping` lists what would be applied, what is left over and what does
not fit, so that a dialog (or the command line) can show it first; :func:`apply_weights` then
returns a new pipeline, or raises and changes nothing.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .analysis import parameter_shapes
from .pipeline import Pipeline
from .specs import SpecError

__all__ = ["BY_INDEX", "BY_NAME", "BY_ORDER", "LayerMatch", "ShapeMismatch", "WeightsError",
           "WeightsMapping", "apply_weights", "load_weights", "match_state_dict",
           "read_state_dict"]

BY_NAME, BY_INDEX, BY_ORDER = "name", "index", "order"
SUFFIXES_TORCH = (".pt", ".pth")
SUFFIX_SAFETENSORS = ".safetensors"
# Integer counters a state_dict carries that evaluation never reads.
QUIET_KEYS = ("num_batches_tracked",)
# Checkpoints that wrap the state_dict in one of these keys are unwrapped.
WRAPPERS = ("state_dict", "model_state_dict", "model")


class WeightsError(ValueError):
    """A weights file that cannot be read or applied; one clear message, nothing changed."""


@dataclass(frozen=True)
class LayerMatch:
    """The file's tensors for one layer."""

    layer_index: int  # position in pipeline.layers
    name: str  # the layer's display name
    keys: Mapping[str, str]  # the layer's tensor name (weight, bias, running_mean...) -> key
    missing: tuple[str, ...] = ()  # the layer's tensors the file does not give (kept as is)


@dataclass(frozen=True)
class ShapeMismatch:
    key: str
    layer_index: int
    name: str
    tensor: str
    file_shape: tuple[int, ...]
    expected: tuple[int, ...]

    def text(self) -> str:
        return (f"{self.key} has shape {list(self.file_shape)} but layer {self.layer_index} "
                f"({self.name}) needs {self.tensor} of shape {list(self.expected)}")


@dataclass(frozen=True)
class WeightsMapping:
    """What applying a state_dict would do; nothing has changed yet."""

    source: str  # the file name (or "state_dict")
    method: str  # BY_NAME, BY_INDEX or BY_ORDER
    prefix: str  # the key prefix stripped for BY_INDEX ("features."), else ""
    layers: tuple[LayerMatch, ...]  # layers receiving at least one tensor, in stack order
    unmatched_keys: tuple[str, ...]  # file keys no layer takes (ignored)
    without_tensor: tuple[tuple[int, str], ...]  # (index, name) of layers with tensors the
    #                                              file gives none of: they keep their own
    mismatches: tuple[ShapeMismatch, ...]  # a key matched to a tensor of another shape
    quiet_keys: tuple[str, ...] = ()  # counters of matched layers (num_batches_tracked)
    tensors: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """Whether :func:`apply_weights` can apply it (no shape mismatch)."""
        return not self.mismatches

    @property
    def applied_keys(self) -> list[str]:
        return [key for m in self.layers for key in m.keys.values()]

    def problems(self) -> list[str]:
        """The lines a user should read before applying: mismatches, leftovers, gaps."""
        lines = [m.text() for m in self.mismatches]
        if self.unmatched_keys:
            lines.append(f"{len(self.unmatched_keys)} key(s) of {self.source} match no layer "
                         f"and are ignored: {', '.join(self.unmatched_keys)}")
        for index, name in self.without_tensor:
            lines.append(f"layer {index} ({name}) gets no tensor from {self.source} and keeps "
                         f"its own weights")
        for m in self.layers:
            if m.missing:
                lines.append(f"layer {m.layer_index} ({m.name}) gets no "
                             f"{', '.join(m.missing)} from {self.source} and keeps its own")
        return lines

    def to_manifest(self, file: str | None = None) -> dict[str, Any]:
        """The ``"weights"`` record of an export manifest."""
        return {"file": file if file is not None else self.source, "method": self.method,
                "applied": [{"layer": m.layer_index, "name": m.name, "keys": dict(m.keys)}
                            for m in self.layers],
                "unmatched_keys": list(self.unmatched_keys),
                "without_tensor": [{"layer": i, "name": n} for i, n in self.without_tensor]}


# --- reading ---------------------------------------------------------------------------------

def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``.pt``/``.pth`` (``weights_only=True``) or ``.safetensors`` file, by
    key, as float32 arrays. Raises :class:`WeightsError` with one clear message."""
    p = Path(path)
    name = p.name
    if not p.exists():
        raise WeightsError(f"{name}: file does not exist")
    if not p.is_file():
        raise WeightsError(f"{name}: is not a regular file")
    suffix = p.suffix.lower()
    if suffix == SUFFIX_SAFETENSORS:
        raw = _read_safetensors(p)
    elif suffix in SUFFIXES_TORCH:
        raw = _read_torch(p)
    else:
        raise WeightsError(f"{name}: weights must be a .pt, .pth or .safetensors file")
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise WeightsError(f"{name}: not a state_dict (the key {key!r} is not text)")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{name}: not a state_dict (the value of {key!r} is a "
                               f"{type(value).__name__}, not a tensor)")
        if value.dtype == torch.bool or value.is_complex():
            raise WeightsError(f"{name}: {key} holds {value.dtype} values, not numbers")
        if not value.is_floating_point() and key.rsplit(".", 1)[-1] in QUIET_KEYS:
            out[key] = value.detach().cpu().numpy()
            continue
        out[key] = value.detach().to("cpu", torch.float32).contiguous().numpy()
    if not out:
        raise WeightsError(f"{name}: holds no tensors")
    return out


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(p), device="cpu"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{p.name}: not a readable safetensors file (truncated or "
                           f"damaged: {reason})") from None


def _read_torch(p: Path) -> dict[str, Any]:
    try:
        data = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types; the two families matter
        text = str(e).strip()
        if type(e).__name__ == "UnpicklingError":  # weights_only refused an object
            detail = next((ln.strip() for ln in text.splitlines()
                           if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise WeightsError(f"{p.name}: refused: the file holds Python objects other than "
                               f"tensors (rebuilding them could run code); LayerLab reads "
                               f"only plain state_dicts (torch.load with weights_only=True)"
                               + (f" [{detail}]" if detail else "")) from None
        if isinstance(e, RuntimeError | EOFError | zipfile.BadZipFile | OSError | ValueError):
            reason = text.splitlines()[0] if text else type(e).__name__
            raise WeightsError(f"{p.name}: not a readable torch file (truncated or damaged: "
                               f"{reason[:200]})") from None
        raise
    if isinstance(data, Mapping):
        for wrapper in WRAPPERS:
            inner = data.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(
                    isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        return dict(data)
    what = "a tensor" if isinstance(data, torch.Tensor) else f"a {type(data).__name__}"
    raise WeightsError(f"{p.name}: not a state_dict (it holds {what}, not a mapping of "
                       f"names to tensors)")


# --- matching --------------------------------------------------------------------------------

def _split(key: str) -> tuple[str, str]:
    path, _, tensor = key.rpartition(".")
    return path, tensor


def _layer_shapes(pipeline: Pipeline) -> dict[int, dict[str, tuple[int, ...]]]:
    """Floating-point tensor shapes of every layer that has some (valid arguments only)."""
    out = {}
    for i, layer in enumerate(pipeline.layers):
        if not layer.op.learnable:
            continue
        try:
            shapes = parameter_shapes(layer)
        except SpecError:
            continue
        if shapes:
            out[i] = shapes
    return out


def _by_name(pipeline: Pipeline, keys: list[str], shapes) -> dict[str, tuple[int, str]]:
    names = {layer.name: i for i, layer in enumerate(pipeline.layers)
             if layer.name and i in shapes}
    found = {}
    for key in keys:
        path, tensor = _split(key)
        parts = path.split(".")
        for j in range(len(parts)):  # the whole path first, then without a prefix
            i = names.get(".".join(parts[j:]))
            if i is not None and tensor in shapes[i]:
                found[key] = (i, tensor)
                break
    return found


def _by_index(pipeline: Pipeline, keys: list[str], shapes
              ) -> tuple[dict[str, tuple[int, str]], str]:
    enabled = [i for i, _ in pipeline.enabled_layers()]
    groups: dict[str, dict[str, tuple[int, str]]] = {}
    for key in keys:
        path, tensor = _split(key)
        prefix, _, last = path.rpartition(".")
        if not last.isdigit() or int(last) >= len(enabled):
            continue
        i = enabled[int(last)]
        if i in shapes and tensor in shapes[i]:
            groups.setdefault(prefix + "." if prefix else "", {})[key] = (i, tensor)
    if not groups:
        return {}, ""
    prefix = max(groups, key=lambda pre: len(groups[pre]))
    return groups[prefix], prefix


def _by_order(keys: list[str], tensors: Mapping[str, np.ndarray], shapes
              ) -> dict[str, tuple[int, str]]:
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(_split(key)[0], []).append(key)
    order = sorted(shapes)
    found = {}
    pos = 0
    for members in groups.values():
        floats = [k for k in members if _split(k)[1] not in QUIET_KEYS]
        for j in range(pos, len(order)):
            want = shapes[order[j]]
            if floats and all(_split(k)[1] in want and tuple(tensors[k].shape) ==
                              want[_split(k)[1]] for k in floats):
                found.update({k: (order[j], _split(k)[1]) for k in floats})
                pos = j + 1
                break
    return found


def match_state_dict(pipeline: Pipeline, state: Mapping[str, Any], *,
                     source: str = "state_dict") -> WeightsMapping:
    """Map the keys of ``state`` (tensors or arrays) onto the layers of ``pipeline``; changes
    nothing. The method that places the most keys wins (name before index on a tie); by
    order only when neither places any."""
    tensors = {k: (v.detach().to("cpu", torch.float32).numpy()
                   if isinstance(v, torch.Tensor) else np.asarray(v, np.float32))
               for k, v in state.items() if _split(k)[1] not in QUIET_KEYS}
    counters = [k for k in state if _split(k)[1] in QUIET_KEYS]
    keys = list(tensors)
    shapes = _layer_shapes(pipeline)
    by_name = _by_name(pipeline, keys, shapes)
    by_index, prefix = _by_index(pipeline, keys, shapes)
    if by_name and len(by_name) >= len(by_index):
        method, found, prefix = BY_NAME, by_name, ""
    elif by_index:
        method, found = BY_INDEX, by_index
    else:
        method, found, prefix = BY_ORDER, _by_order(keys, tensors, shapes), ""

    per_layer: dict[int, dict[str, str]] = {}
    mismatches = []
    for key, (i, tensor) in found.items():
        name = pipeline.layers[i].display_name(i)
        if tensor in per_layer.get(i, {}):  # two keys for one tensor: the first one counts
            continue
        if tuple(tensors[key].shape) != shapes[i][tensor]:
            mismatches.append(ShapeMismatch(key, i, name, tensor, tuple(tensors[key].shape),
                                            shapes[i][tensor]))
            continue
        per_layer.setdefault(i, {})[tensor] = key
    layers = tuple(LayerMatch(i, pipeline.layers[i].display_name(i), per_layer[i],
                              tuple(t for t in shapes[i] if t not in per_layer[i]))
                   for i in sorted(per_layer))
    used = {k for m in layers for k in m.keys.values()} | {m.key for m in mismatches}
    matched_paths = {_split(k)[0] for k in used}
    quiet = tuple(k for k in counters if _split(k)[0] in matched_paths)
    unmatched = tuple(k for k in list(state) if k not in used and k not in quiet)
    mismatched_layers = {m.layer_index for m in mismatches}
    enabled = {i for i, _ in pipeline.enabled_layers()}
    without = tuple((i, pipeline.layers[i].display_name(i)) for i in sorted(shapes)
                    if i in enabled and i not in per_layer and i not in mismatched_layers)
    return WeightsMapping(source, method, prefix, layers, unmatched, without,
                          tuple(mismatches), quiet, tensors)


def apply_weights(pipeline: Pipeline, mapping: WeightsMapping) -> Pipeline:
    """A new pipeline with the mapped tensors as the layers' explicit ``params`` (BatchNorm's
    running statistics included). Raises :class:`WeightsError` on a shape mismatch; the
    pipeline given is never changed."""
    if mapping.mismatches:
        raise WeightsError(f"{mapping.source}: {mapping.mismatches[0].text()}"
                           + (f" (and {len(mapping.mismatches) - 1} more shape mismatch(es))"
                              if len(mapping.mismatches) > 1 else "") + "; nothing applied")
    result = pipeline
    for m in mapping.layers:
        layer = result.layers[m.layer_index]
        for tensor, key in m.keys.items():
            layer = layer.with_param(tensor, mapping.tensors[key])
        result = result.replace_layer(m.layer_index, layer)
    return result


def load_weights(pipeline: Pipeline, path: str | os.PathLike
                 ) -> tuple[Pipeline, WeightsMapping]:
    """Read ``path``, match it and apply it: the new pipeline and the mapping (for its
    problems). Raises :class:`WeightsError` (unreadable file, shape mismatch)."""
    state = read_state_dict(path)
    mapping = match_state_dict(pipeline, state, source=Path(path).name)
    return apply_weights(pipeline, mapping), mapping

"""Pipeline = input mode + ordered layer specs; JSON load/save and its validation.

Specs are immutable: an edit makes a new ``LayerSpec`` / ``Pipeline`` (``dataclasses.replace``),
so the GUI can hand a snapshot to the worker without copying or locking.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import safeio, tensorfile
from .file_values import (  # noqa: F401 - PipelineError and the name checks, from here too
    CLASS_NAME_MAX_CHARS,
    MAX_CLASSES,
    NAME_MAX_CHARS,
    DuplicateKey,
    PipelineError,
    check_classes,
    name_problem,
    numbers_only,
    shape_list,
    unique_keys,
)
from .kernels import DEFAULT_INIT, check_init
from .preprocess import Normalize, check_normalize, crop_hw, resized_hw
from .specs import OPS, OpSpec, Shape, SpecError, get_op

FORMAT = "layerlab.pipeline"
VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_LAYERS = 1000
DEFAULT_MEMORY_BUDGET = 4 * 1024**3  # bytes a run may hold: stage outputs and weights


# sha256 of each tensor's bytes, by the array object (arrays are read-only and shared between
# undo states, so an edit of one kernel cell hashes that tensor only, never the other 100 M
# weights of the stack). Entries go with their array.
_DIGESTS: dict[int, tuple[weakref.ref, str]] = {}


def array_digest(arr: np.ndarray) -> str:
    """The sha256 (hex) of a read-only float32 array's bytes (C order), computed once per
    array object: the layer keys and the autosave's tensor files use it."""
    hit = _DIGESTS.get(id(arr))
    if hit is not None and hit[0]() is arr:
        return hit[1]
    data = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
    digest = hashlib.sha256(data.data.cast("B") if data.size else b"").hexdigest()
    if not arr.flags.writeable:  # a writable array could change after it was hashed
        ident = id(arr)
        _DIGESTS[ident] = (weakref.ref(arr, lambda _, i=ident: _DIGESTS.pop(i, None)), digest)
    return digest


@dataclass(frozen=True, eq=False)
class LayerSpec:
    type: str
    args: Mapping[str, Any]
    name: str = ""
    enabled: bool = True
    # Exact tensors by parameter name (float32, read-only); missing ones come from ``init``.
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    init: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_INIT))

    @property
    def op(self) -> OpSpec:
        return OPS[self.type]

    @property
    def structure_key(self) -> str:
        """Identity of the module's structure (type + args): same key, same module shapes.
        Kept once made, as ``key`` is (a layer's args are never changed in place)."""
        cached = self.__dict__.get("_structure_key")
        if cached is None:
            cached = json.dumps([self.type, self.args], sort_keys=True)
            object.__setattr__(self, "_structure_key", cached)
        return cached

    @property
    def key(self) -> str:
        """Identity of what the layer computes (structure, init and exact values)."""
        cached = self.__dict__.get("_key")
        if cached is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(self.structure_key.encode())
            h.update(json.dumps(self.init, sort_keys=True).encode())
            for pname in sorted(self.params):
                arr = self.params[pname]
                h.update(pname.encode())
                h.update(str(arr.shape).encode())
                h.update(array_digest(arr).encode())
            cached = h.hexdigest()
            object.__setattr__(self, "_key", cached)
        return cached

    def with_args(self, **changes: Any) -> LayerSpec:
        return replace(self, args={**self.args, **changes})

    def with_param(self, pname: str, value: np.ndarray, *, copy: bool = True) -> LayerSpec:
        """The layer with ``value`` as parameter ``pname`` (float32, read-only). ``copy=False``
        takes a float32 array the caller hands over and never writes again (a 400 MB weight
        is not copied twice); every other layer and tensor is shared with this one."""
        arr = np.array(value, dtype=np.float32, copy=True if copy else None)
        arr.setflags(write=False)
        return replace(self, params={**self.params, pname: arr})

    def display_name(self, index: int) -> str:
        return self.name or self.type.lower()

    def to_dict(self, *, tensors: bool = True) -> dict:
        d: dict[str, Any] = {"type": self.type}
        if self.name:
            d["name"] = self.name
        if not self.enabled:
            d["enabled"] = False
        d["args"] = dict(self.args)
        if self.params and tensors:
            d["params"] = {k: v.tolist() for k, v in self.params.items()}
        if self.op.learnable and dict(self.init) != DEFAULT_INIT:
            d["init"] = dict(self.init)
        return d


@dataclass(frozen=True)
class InputSpec:
    mode: str = "rgb"
    # [H, W] exactly, or an int: the shorter side to N (transforms.Resize(N)); see preprocess
    resize: tuple[int, int] | int | None = None
    center_crop: tuple[int, int] | None = None
    normalize: Normalize | None = None  # its own stage after the input

    @property
    def channels(self) -> int:
        return 1 if self.mode == "gray" else 3

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """The input size the preprocessing fixes whatever the image (crop, or [H, W])."""
        if self.center_crop is not None:
            return self.center_crop
        return self.resize if isinstance(self.resize, tuple) else None

    def output_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Stage 0's size for an image of ``image_hw``: after resize and center crop."""
        return crop_hw(resized_hw(image_hw, self.resize), self.center_crop)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"mode": self.mode}
        if self.resize:
            d["resize"] = self.resize if isinstance(self.resize, int) else list(self.resize)
        if self.center_crop:
            d["center_crop"] = list(self.center_crop)
        if self.normalize is not None:
            d["normalize"] = self.normalize.to_dict()
        return d


@dataclass(frozen=True)
class StageShape:
    """Shape inference result for one enabled layer (or the input, index -1)."""

    layer_index: int
    name: str
    type: str
    in_shape: Shape
    shape: Shape
    formula: str
    parameter_count: int


@dataclass(frozen=True)
class Pipeline:
    input: InputSpec = InputSpec()
    layers: tuple[LayerSpec, ...] = ()
    # The names of a classifier's outputs, in order ("0".."9", CIFAR-10's "plane", "car"...)
    classes: tuple[str, ...] = ()

    # --- editing helpers (each returns a new pipeline) ---
    def replace_layer(self, index: int, layer: LayerSpec) -> Pipeline:
        layers = list(self.layers)
        layers[index] = layer
        return replace(self, layers=tuple(layers))

    def insert_layer(self, index: int, layer: LayerSpec) -> Pipeline:
        layers = list(self.layers)
        layers.insert(index, layer)
        return replace(self, layers=tuple(layers))

    def remove_layer(self, index: int) -> Pipeline:
        layers = list(self.layers)
        del layers[index]
        return replace(self, layers=tuple(layers))

    def move_layer(self, src: int, dst: int) -> Pipeline:
        layers = list(self.layers)
        layer = layers.pop(src)
        layers.insert(dst, layer)
        return replace(self, layers=tuple(layers))

    def enabled_layers(self) -> list[tuple[int, LayerSpec]]:
        return [(i, layer) for i, layer in enumerate(self.layers) if layer.enabled]

    @property
    def stage_offset(self) -> int:
        """Stages between the input and the first layer: 1 when the input has ``normalize``
        (stage 1 is then the normalised tensor), else 0. The k-th enabled layer (k from 1)
        is stage ``k + stage_offset``."""
        return 1 if self.input.normalize is not None else 0

    def stage_names(self) -> list[str]:
        """The names of stage 0 (input), the normalize stage when the input has one, and every
        enabled layer: each layer's display name, as the layer list shows it (the stage number
        tells two unnamed layers apart)."""
        return (["input"] + (["normalize"] if self.stage_offset else [])
                + [layer.display_name(i) for i, layer in self.enabled_layers()])

    # --- shapes ---
    def input_shape(self, image_hw: tuple[int, int] | None) -> Shape:
        """Stage 0's shape for an image of ``image_hw`` (None: the size the input fixes)."""
        if image_hw is None:
            image_hw = self.input.fixed_hw
        h, w = self.input.output_hw(image_hw)
        return (self.input.channels, h, w)

    # --- JSON ---
    def to_dict(self, *, tensors: bool = True) -> dict:
        """The pipeline file's JSON object, every tensor inline (``tensors=False``: without
        the layers' ``params``, for a caller that puts them elsewhere)."""
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                             "input": self.input.to_dict()}
        if self.classes:
            d["classes"] = list(self.classes)
        d["layers"] = [layer.to_dict(tensors=tensors) for layer in self.layers]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def tensor_bytes(self) -> int:
        """Bytes of all explicit tensors (float32)."""
        return sum(int(arr.size) * 4 for layer in self.layers for arr in layer.params.values())

    def to_files(self, path: str | os.PathLike, *, tensors: str = "auto"
                 ) -> tuple[str, tuple[str, bytes] | None]:
        """The text of the pipeline file ``path`` and, when its tensors go beside it, the
        tensors file's ``(name, bytes)``. ``tensors``: ``"auto"`` (beside the file above
        :data:`tensorfile.EXTERNAL_THRESHOLD_BYTES`), ``"inline"`` or ``"external"``."""
        if tensors not in ("auto", "inline", "external"):
            raise ValueError(f"tensors must be 'auto', 'inline' or 'external', not {tensors!r}")
        external = tensors == "external" or (
            tensors == "auto" and self.tensor_bytes() > tensorfile.EXTERNAL_THRESHOLD_BYTES)
        if not external or not any(layer.params for layer in self.layers):
            return self.to_json() + "\n", None
        d, data = self.to_dict_with_tensors(tensorfile.tensor_file_name(path))
        return json.dumps(d, indent=1) + "\n", (d["tensors"]["file"], data)

    def to_dict_with_tensors(self, tensors_name: str) -> tuple[dict, bytes]:
        """The pipeline object with every tensor a ``{"tensor": KEY}`` of the tensors file
        ``tensors_name``, and that file's bytes."""
        d = self.to_dict(tensors=False)  # never the 100 M numbers as lists, only to drop them
        arrays: dict[str, np.ndarray] = {}
        prefixes = tensorfile.tensor_keys(layer.name for layer in self.layers)
        for layer, prefix, raw in zip(self.layers, prefixes, d["layers"], strict=True):
            if not layer.params:
                continue
            refs = {}
            for pname, arr in layer.params.items():
                key = f"{prefix}.{pname}"
                arrays[key] = arr
                refs[pname] = {"tensor": key}
            init = raw.pop("init", None)  # the file's order: ..., args, params, init
            raw["params"] = refs
            if init is not None:
                raw["init"] = init
        data = tensorfile.encode(arrays)
        d = {"format": FORMAT, "version": VERSION,
             "tensors": {"file": tensors_name, "sha256": tensorfile.digest(data)},
             **{k: v for k, v in d.items() if k not in ("format", "version")}}
        return d, data

    def save(self, path: str | os.PathLike, *, tensors: str = "auto") -> str | None:
        """Write the pipeline file (and its tensors file beside it, see :meth:`to_files`),
        each atomically: the tensors first, so the pipeline file never names tensors that
        are not on disk yet (its sha256 tells a stale pair apart). Returns the tensors
        file's name, or None when they are in the pipeline file."""
        p = Path(path)
        text, beside = self.to_files(p, tensors=tensors)
        if beside is not None:
            safeio.write_file(p.parent / beside[0], beside[1])
        safeio.write_file(p, text.encode("utf-8"))
        return None if beside is None else beside[0]

    @classmethod
    def from_dict(cls, data: Any, *, source: str | None = None,
                  folder: str | os.PathLike | None = None,
                  tensors: Mapping[str, np.ndarray] | None = None) -> Pipeline:
        """Parse a pipeline object; ``folder`` is where its tensors file is (None: a
        pipeline that references one cannot be read). ``tensors``: the arrays its
        ``{"tensor": KEY}`` params name, already read (the session's own tensor files)."""
        return _parse(data, source, folder, tensors)

    @classmethod
    def from_json(cls, text: str, *, source: str | None = None,
                  folder: str | os.PathLike | None = None) -> Pipeline:
        try:
            data = json.loads(text, object_pairs_hook=unique_keys)
        except DuplicateKey as e:
            raise PipelineError(f"the key {e.args[0]!r} appears twice in one object; which "
                                f"value is meant is unclear", source=source) from None
        except json.JSONDecodeError as e:
            raise PipelineError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                                source=source) from None
        except RecursionError:
            raise PipelineError("JSON nested too deeply", source=source) from None
        except ValueError as e:  # Python refuses integers of more than 4300 digits
            m = re.search(r"value has (\d+) digits", str(e))
            what = f"a {m.group(1)}-digit integer" if m else "a number that cannot be read"
            raise PipelineError(f"not valid JSON ({what})", source=source) from None
        return _parse(data, source, folder)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        p = Path(path)
        src = p.name
        try:
            raw = safeio.read_capped(p, MAX_FILE_BYTES)
        except safeio.FileProblem as e:
            if e.kind == "missing":
                raise PipelineError("file does not exist", source=src) from None
            if e.kind == "directory":
                raise PipelineError("is a directory, not a pipeline file", source=src) from None
            if e.kind == "too-large":
                limit = format_bytes(MAX_FILE_BYTES)
                if e.size:
                    what = f"file is {format_bytes(e.size)}, larger than the {limit} a pipeline file may be"
                else:
                    what = (f"it holds more than the {limit} a pipeline file may be (reading "
                            f"stopped there)")
                raise PipelineError(what, source=src) from None
            raise PipelineError(f"cannot read the file: {e.reason}", source=src) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise PipelineError(f"not UTF-8 text (bad byte at offset {e.start})",
                                source=src) from None
        return cls.from_json(text, source=src, folder=p.parent)


def new_layer(type_name: str, in_shape: Shape | None = None, **args: Any) -> LayerSpec:
    """A layer with default args (filled from the incoming shape) plus ``args``."""
    op = get_op(type_name)
    # Only the shape-derived defaults are filled here; normalize_args completes the rest, so
    # that e.g. Upsample(size=...) does not also get the default scale_factor.
    derived = {k: v for k, v in op.defaults(in_shape).items() if op.param(k).from_input}
    full = op.normalize_args({**derived, **args})
    return LayerSpec(type=type_name, args=full)


# --- parsing ---------------------------------------------------------------------------------

def _parse(data: Any, source: str | None, folder: str | os.PathLike | None = None,
           given: Mapping[str, np.ndarray] | None = None) -> Pipeline:
    def fail(msg: str, **kw: Any) -> PipelineError:
        return PipelineError(msg, source=source, **kw)

    if not isinstance(data, dict):
        raise fail(f"must be a JSON object, not {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise fail(f"format must be {FORMAT!r}, not {data.get('format')!r}", field="format")
    version = data.get("version")
    if version != VERSION or isinstance(version, bool):
        raise fail(f"version {version!r} is not supported (this LayerLab reads version "
                   f"{VERSION})", field="version")
    extra = set(data) - {"format", "version", "tensors", "classes", "input", "layers"}
    if extra:
        raise fail(f"unknown top-level field(s): {', '.join(sorted(map(str, extra)))}")

    inp = data.get("input", {"mode": "rgb"})
    if not isinstance(inp, dict):
        raise fail("input must be an object like {\"mode\": \"gray\"}", field="input")
    mode = inp.get("mode", "rgb")
    if mode not in ("rgb", "gray"):
        raise fail(f"input.mode must be 'rgb' or 'gray', not {mode!r}", field="input.mode")
    known = {"mode", "resize", "center_crop", "normalize"}
    if set(inp) - known:
        raise fail(f"unknown input field(s): {', '.join(sorted(map(str, set(inp) - known)))}",
                   field="input")
    resize = inp.get("resize")
    if isinstance(resize, int) and not isinstance(resize, bool) and 1 <= resize <= 16384:
        pass  # the shorter side, as transforms.Resize(N)
    elif resize is not None:
        resize = _hw(resize, "input.resize", "[height, width] or one number (the shorter "
                     "side)", fail)
    crop = inp.get("center_crop")
    if crop is not None:
        crop = _hw(crop, "input.center_crop", "[height, width]", fail)
    norm = inp.get("normalize")
    if norm is not None:
        try:
            norm = check_normalize(norm, 1 if mode == "gray" else 3)
        except ValueError as e:
            raise fail(f"input.normalize {e}", field="input.normalize") from None

    layers_raw = data.get("layers", [])
    if not isinstance(layers_raw, list):
        raise fail("layers must be a list", field="layers")
    if len(layers_raw) > MAX_LAYERS:
        raise fail(f"{len(layers_raw)} layers is more than the {MAX_LAYERS} LayerLab accepts",
                   field="layers")
    classes = _parse_classes(data.get("classes", []), fail)
    tensors = given
    if "tensors" in data:
        try:
            tensors = tensorfile.read_reference(data["tensors"], folder)
        except tensorfile.TensorFileError as e:
            raise fail(str(e), field=e.field) from None
    layers = tuple(_parse_layer(i, raw, source, tensors) for i, raw in enumerate(layers_raw))
    return Pipeline(InputSpec(mode, resize, crop, norm), layers, classes)


def _parse_classes(raw: Any, fail) -> tuple[str, ...]:
    try:
        return check_classes(raw)
    except PipelineError as e:
        raise fail(e.detail, field="classes") from None


def _hw(value: Any, field: str, what: str, fail) -> tuple[int, int]:
    if (not isinstance(value, list) or len(value) != 2 or
            not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384
                    for v in value)):
        raise fail(f"{field} must be {what} with sizes from 1 to 16384, not {value!r}",
                   field=field)
    return (value[0], value[1])


def _parse_layer(i: int, raw: Any, source: str | None,
                 tensors: Mapping[str, np.ndarray] | None = None) -> LayerSpec:
    if not isinstance(raw, dict):
        raise PipelineError(f"must be an object, not {type(raw).__name__}", index=i,
                            source=source)
    name = raw.get("name", "")
    problem = name_problem(name)
    if problem:
        raise PipelineError(problem, index=i, field="name", source=source)

    def fail(msg: str, fld: str | None) -> PipelineError:
        return PipelineError(msg, index=i, name=name or None, field=fld, source=source)

    extra = set(raw) - {"type", "name", "enabled", "args", "params", "init"}
    if extra:
        raise fail(f"unknown field(s): {', '.join(sorted(map(str, extra)))}", None)
    try:
        op = get_op(raw.get("type"))
    except SpecError as e:
        raise fail(str(e), "type") from None
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fail("enabled must be true or false", "enabled")
    try:
        args = op.normalize_args(raw.get("args", {}))
    except SpecError as e:
        raise fail(str(e), f"args.{e.field}" if e.field and e.field != "args" else "args") \
            from None
    init = dict(DEFAULT_INIT)
    if "init" in raw:
        try:
            init = check_init(raw["init"])
        except ValueError as e:
            raise fail(str(e), "init") from None
    params = _parse_params(raw.get("params", {}), op, args, fail, tensors)
    return LayerSpec(op.type, args, name, enabled, params, init)


def _parse_params(raw: Any, op: OpSpec, args: dict, fail,
                  tensors: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict):
        raise fail("params must be an object of parameter names and nested lists", "params")
    if not raw:
        return {}
    try:
        shapes = op.parameter_shapes(args)
    except SpecError as e:
        raise fail(str(e), "args") from None
    out = {}
    for pname, value in raw.items():
        fld = f"params.{pname}"
        if pname not in shapes:
            accepted = ", ".join(shapes) or "none"
            raise fail(f"{op.type} with these args has no parameter {pname!r} "
                       f"(accepted: {accepted})", fld)
        if isinstance(value, dict):  # {"tensor": KEY}: from the tensors file
            out[pname] = _referenced(value, pname, shapes[pname], tensors, fail)
            continue
        if not numbers_only(value):
            # np.array would quietly turn null into NaN, "1.5" into 1.5 and true into 1.0
            raise fail("must be a nested list of numbers (no strings, true/false or null)", fld)
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, reported as non-finite
                arr = np.array(value, dtype=np.float32)
        except OverflowError:
            raise fail("holds an integer too large for any float (more than 1.8e308); "
                       "parameters are float32 numbers", fld) from None
        except (ValueError, TypeError):
            raise fail("must be a nested list of numbers with a regular shape", fld) from None
        if arr.dtype == object:
            raise fail("must be a nested list of numbers", fld)
        if arr.shape != shapes[pname]:
            raise fail(f"has shape {shape_list(arr.shape)}, expected "
                       f"{shape_list(shapes[pname])}", fld)
        arr.setflags(write=False)
        out[pname] = arr
    return out


def _referenced(value: dict, pname: str, shape: tuple[int, ...],
                tensors: Mapping[str, np.ndarray] | None, fail) -> np.ndarray:
    fld = f"params.{pname}"
    key = value.get("tensor")
    if set(value) != {"tensor"} or not isinstance(key, str):
        raise fail('must be a nested list of numbers or {"tensor": KEY}', fld)
    if tensors is None:
        raise fail(f"refers to the tensor {key!r}, but the pipeline names no tensors file "
                   f'("tensors": {{"file": ...}})', fld)
    if key not in tensors:
        raise fail(f"the tensors file holds no tensor {key!r}", fld)
    arr = tensors[key]
    if arr.shape != shape:
        raise fail(f"the tensor {key!r} has shape {shape_list(arr.shape)}, expected "
                   f"{shape_list(shape)}", fld)
    return arr


format_bytes = safeio.human_bytes  # ``512 bytes``, ``1.5 KB``, ``97.7 GB`` (powers of 1024)

"""A pipeline's tensors in a ``.safetensors`` file beside the pipeline file.

Big weights do not belong in JSON lists: a float32 written as JSON text takes about five
times its four bytes and is slow to parse. A pipeline file may therefore say::

    "tensors": {"file": "digits-cnn.safetensors", "sha256": "<hex digest of that file>"},
    "layers": [{"type": "Conv2d", "name": "conv1", ...,
                "params": {"weight": {"tensor": "conv1.weight"}, "bias": [0.0, ...]}}]

A parameter is then either a nested list (inline, as always) or ``{"tensor": KEY}``, a key of
the safetensors file. The file name is a plain name (no folder): it lives beside the pipeline
file. ``sha256`` ties the two files together: Save writes the tensors first and the pipeline
file second (each atomically), so a failure between the two leaves a pipeline file whose
digest no longer matches, and loading says so instead of using other weights.

Every tensor must be float32 (what LayerLab computes with; the round trip is exact).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from . import safeio

__all__ = ["EXTERNAL_THRESHOLD_BYTES", "MAX_TENSOR_FILE_BYTES", "SUFFIX", "TensorFileError",
           "check_file_name", "digest", "encode", "read_one", "read_reference", "read_tensor_file",
           "tensor_file_name", "tensor_keys"]

SUFFIX = ".safetensors"
# Save keeps tensors inline up to this many bytes (262,144 float32 values). Below it the JSON is
# at most about 5 MB and loads in a fraction of a second, and hand-made kernels and the
# tutorial nets (the CIFAR-10 net has 145,578 values, 582 KB) stay readable and diffable in one
# file; above it, JSON text costs about five times the bytes and most of the loading time.
EXTERNAL_THRESHOLD_BYTES = 1024 * 1024
# The most a tensors file may hold: LayerLab's default memory budget for a run.
MAX_TENSOR_FILE_BYTES = 4 * 1024**3
_DTYPES = {"F32": np.float32}
_NAMES = {"F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
          "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class TensorFileError(ValueError):
    """A tensors file that cannot be used; the message names the file (``field``: the
    pipeline file's field at fault, if it is one)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def tensor_file_name(pipeline_path: str | os.PathLike) -> str:
    """``digits-cnn.safetensors`` for ``digits-cnn.layerlab.json`` (or ``x.json``)."""
    name = Path(pipeline_path).name
    for ending in (".layerlab.json", ".json"):
        if name.lower().endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)] + SUFFIX
    return name + SUFFIX


def check_file_name(name: object) -> str | None:
    """Why ``name`` cannot be the tensors file of a pipeline (None if it can)."""
    if not isinstance(name, str) or not name:
        return "tensors.file must be the name of a .safetensors file"
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        return (f"tensors.file must be a file name beside the pipeline file, without a "
                f"folder, not {name!r}")
    if not name.lower().endswith(SUFFIX):
        return f"tensors.file must end in {SUFFIX}, not {name!r}"
    return None


def tensor_keys(names: Iterable[str]) -> list[str]:
    """The key prefix of each layer in its tensors file: the layer's name where it is set and
    unique in the stack (``conv1`` -> ``conv1.weight``), else ``layers.<index>``."""
    names = list(names)
    count: dict[str, int] = {}
    for n in names:
        count[n] = count.get(n, 0) + 1
    return [n if n and count[n] == 1 else f"layers.{i}" for i, n in enumerate(names)]


def encode(tensors: Mapping[str, np.ndarray]) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (float32)."""
    from safetensors.numpy import save

    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    # One metadata key only: safetensors writes several in a random order, and the same
    # tensors must give the same bytes (and sha256) on every save.
    return save(arrays, metadata={"format": "layerlab.tensors"})


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_reference(raw: object, folder: str | os.PathLike | None) -> dict[str, np.ndarray]:
    """The tensors of the file a pipeline's ``"tensors": {"file", "sha256"}`` names, read from
    ``folder`` (the pipeline file's; None: a pipeline object without a file)."""
    if not isinstance(raw, dict) or set(raw) - {"file", "sha256"} or "file" not in raw:
        raise TensorFileError('tensors must be an object like {"file": "NAME.safetensors", '
                              '"sha256": "..."}', "tensors")
    problem = check_file_name(raw["file"])
    if problem:
        raise TensorFileError(problem, "tensors.file")
    sha = raw.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                and all(c in "0123456789abcdef" for c in sha)):
        raise TensorFileError("tensors.sha256 must be 64 lowercase hex digits",
                              "tensors.sha256")
    if folder is None:
        raise TensorFileError(f"its tensors are in {raw['file']}, which can only be read "
                              f"beside a pipeline file (open the file itself)", "tensors")
    return read_tensor_file(Path(folder) / raw["file"], expected_sha256=sha)


def read_tensor_file(path: Path, *, expected_sha256: str | None = None
                     ) -> dict[str, np.ndarray]:
    """The tensors of ``path`` by key (float32, read-only). Raises :class:`TensorFileError`
    naming the file: missing, too large, truncated or damaged, another file than the pipeline
    was saved with (``expected_sha256``), a tensor that is not float32."""
    name = path.name
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device could send forever
            raise TensorFileError(f"{name}: the tensors file of this pipeline is not a "
                                  f"regular file")
        data = safeio.read_capped(path, MAX_TENSOR_FILE_BYTES)
    except safeio.FileProblem as e:
        if e.kind == "missing":
            raise TensorFileError(f"{name}: the tensors file of this pipeline does not exist "
                                  f"(it must be beside the pipeline file)") from None
        raise TensorFileError(f"{name}: cannot read the tensors file: {e.reason}") from None
    if expected_sha256 is not None and digest(data) != expected_sha256:
        raise TensorFileError(f"{name}: is not the tensors file this pipeline was saved with "
                              f"(its sha256 differs: it was changed, replaced or only "
                              f"partly saved)")
    header = _header(data, name)
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype not in _DTYPES:
            shown = _NAMES.get(dtype, repr(dtype))
            raise TensorFileError(f"{name}: {key} holds {shown} values; a pipeline's tensors "
                                  f"are float32")
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        arrays = load(data)
    except (SafetensorError, ValueError, TypeError) as e:
        raise TensorFileError(f"{name}: not a readable safetensors file (truncated or "
                              f"damaged: {str(e).splitlines()[0] if str(e) else e})") from None
    out = {}
    for key, arr in arrays.items():
        arr = np.asarray(arr, dtype=np.float32)
        arr.setflags(write=False)
        out[key] = arr
    return out


def read_one(path: Path, key: str) -> np.ndarray:
    """The float32 tensor ``key`` of a safetensors file that holds it alone, read straight
    into its array (one read, no intermediate copies: a 400 MB weight in a fraction of a
    second). Raises :class:`TensorFileError` naming the file."""
    name = path.name
    damaged = f"{name}: not a readable safetensors file (truncated or damaged: "
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise TensorFileError(damaged + f"only {len(head)} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, 1 << 24):
                raise TensorFileError(damaged + "its header is longer than the file)")
            try:
                header = json.loads(f.read(length))
            except (ValueError, RecursionError):
                raise TensorFileError(damaged + "its header is not JSON)") from None
            entry = header.get(key) if isinstance(header, dict) else None
            if set(header) - {key, "__metadata__"} or not isinstance(entry, dict):
                raise TensorFileError(f"{name}: does not hold the one tensor {key!r}")
            shape, offsets = entry.get("shape"), entry.get("data_offsets")
            if entry.get("dtype") != "F32":
                raise TensorFileError(f"{name}: {key} holds {entry.get('dtype')!r} values; a "
                                      f"pipeline's tensors are float32")
            if (not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0
                                                       for n in shape)):
                raise TensorFileError(damaged + "its shape is not a list of sizes)")
            count = int(np.prod(shape, dtype=np.int64))
            if offsets != [0, 4 * count] or size - 8 - length != 4 * count:
                raise TensorFileError(damaged + f"{4 * count} bytes of data expected, the "
                                      f"file has {size - 8 - length})")
            arr = np.fromfile(f, dtype="<f4", count=count).reshape(shape)
    except OSError as e:
        raise TensorFileError(f"{name}: cannot read the tensors file: "
                              f"{e.strerror or e}") from None
    arr = arr.astype(np.float32, copy=False)
    arr.setflags(write=False)
    return arr


def _header(data: bytes, name: str) -> dict:
    """The JSON header of a safetensors file, checked against the file's length."""
    damaged = f"{name}: not a readable safetensors file (truncated or damaged: "
    if len(data) < 8:
        raise TensorFileError(damaged + f"only {len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise TensorFileError(damaged + f"its header needs {size} bytes, the file has "
                              f"{len(data) - 8} after the length)")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, RecursionError):
        raise TensorFileError(damaged + "its header is not JSON)") from None
    if not isinstance(header, dict):
        raise TensorFileError(damaged + "its header is not a JSON object)")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(v, int) for v in offsets)):
            end = max(end, offsets[1])
    if end > len(data) - 8 - size:
        raise TensorFileError(damaged + f"the tensors need {end} bytes of data, the file has "
                              f"{len(data) - 8 - size})")
    return header

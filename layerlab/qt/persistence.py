"""What is kept between runs of the app: the stack (saved or not), the image, the
preferences and the window layout, in QSettings. Nothing is lost on quit.

The stack itself may hold megabytes of weights: it is written as a pipeline file beside the
settings file (``<settings>-session.layerlab.json``) by a thread of its own, so that an edit
never waits for it; the newest state wins, and quitting waits for it to be written.

A stack with big tensors (an AlexNet or VGG opened as a stack: 61 to 144 M weights) keeps each
of them in a safetensors file of its own in ``<settings>-session-tensors/``, named by the
sha256 of its values, and the session file names them (``{"tensor": "<sha256>"}``). A file
already there is not written again, so the autosave after a kernel-cell edit writes that one
kernel and a few kilobytes of JSON, not hundreds of MB; files no state names any more are
deleted after each save.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings

from ..core import safeio, tensorfile
from ..core.kernels import preset
from ..core.pipeline import (
    VERSION,
    InputSpec,
    Pipeline,
    PipelineError,
    array_digest,
    new_layer,
)
from ..worker import RenderOptions
from .document import pipeline_title
from .files import DEFAULT_PIPELINE
from .session import DEFAULT_BUDGET_GB, DEFAULT_PREVIEW, Session


def default_pipeline() -> tuple[Pipeline, str]:
    """The start-up stack: the bundled example if present, else built the same way."""
    try:
        return Pipeline.load(DEFAULT_PIPELINE), pipeline_title(str(DEFAULT_PIPELINE))
    except PipelineError:
        pass
    conv = new_layer("Conv2d", (1, 8, 8), out_channels=1, kernel_size=3, padding=1, bias=False)
    conv = replace(conv, name="sharpen").with_param(
        "weight", preset("tutorial sharpen").reshape(1, 1, 3, 3).numpy())
    layers = (conv, replace(new_layer("ReLU"), name="relu"),
              replace(new_layer("MaxPool2d", kernel_size=2), name="maxpool"))
    return Pipeline(InputSpec("gray"), layers), "sharpen-relu-maxpool"


# Numbers encoded per call: json holds the GIL for a whole call, so a big tensor is encoded
# in slices of this many values and the GUI thread runs between them (~10 ms each).
JSON_SLICE = 4096


# A tensor of more values than this goes to a file of its own in the session's tensors folder
# (256 KB of float32; as JSON text it would be about 1.3 MB, and slow to read back).
TENSOR_FILE_VALUES = 65536
SESSION_FORMAT = "layerlab.session"


def pipeline_json(pipeline: Pipeline) -> str:
    """The pipeline file's JSON of ``pipeline`` (weights inline, as ``Pipeline.to_dict``),
    encoded a slice of numbers at a time."""
    return "".join(_encode(_with_arrays(pipeline)))


def session_json(pipeline: Pipeline) -> tuple[str, dict[str, np.ndarray]]:
    """What the autosave writes for ``pipeline``: the session file's text and the tensors
    that go to files of their own, by the sha256 of their values. Without such tensors the
    text is exactly the pipeline file's JSON (:func:`pipeline_json`)."""
    beside: dict[str, np.ndarray] = {}

    def place(arr: np.ndarray):
        if arr.size <= TENSOR_FILE_VALUES:
            return arr
        key = array_digest(arr)
        beside[key] = arr
        return {"tensor": key}

    d = _with_arrays(pipeline, place)
    if not beside:
        return "".join(_encode(d)), {}
    envelope = {"format": SESSION_FORMAT, "version": VERSION, "pipeline": d}
    return "".join(_encode(envelope)), beside


def _with_arrays(pipeline: Pipeline, place=lambda arr: arr) -> dict:
    """``pipeline.to_dict()`` with each layer's params left as arrays (encoded later), or
    whatever ``place`` makes of each array."""
    d = replace(pipeline, layers=()).to_dict()
    layers = []
    for layer in pipeline.layers:
        ld = replace(layer, params={}).to_dict()
        if layer.params:
            init = ld.pop("init", None)  # the file's order: ..., args, params, init
            ld["params"] = {k: place(v) for k, v in layer.params.items()}
            if init is not None:
                ld["init"] = init
        layers.append(ld)
    d["layers"] = layers
    return d


def tensors_folder(path: Path) -> Path:
    """The folder of the session file ``path``'s own tensor files."""
    name = path.name
    for suffix in (".layerlab.json", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(f"{name}-tensors")


def write_session(path: Path, pipeline: Pipeline) -> None:
    """Write the session file ``path`` (and the tensor files it names that are not there
    yet, first), then delete the tensor files it no longer names."""
    text, beside = session_json(pipeline)
    folder = tensors_folder(path)
    if beside:
        folder.mkdir(exist_ok=True)
        for key, arr in beside.items():
            target = folder / f"{key}{tensorfile.SUFFIX}"
            if not target.is_file():
                safeio.write_file(target, tensorfile.encode({"tensor": arr}))
    safeio.write_file(path, (text + "\n").encode())
    if folder.is_dir():
        for old in folder.glob(f"*{tensorfile.SUFFIX}"):
            if old.name[: -len(tensorfile.SUFFIX)] not in beside:
                old.unlink(missing_ok=True)


def read_session(path: Path, text: str) -> Pipeline:
    """The stack of the session file ``path`` whose text is ``text``: a pipeline file, or a
    session whose big tensors are in their own files (each checked against its name, the
    sha256 of its values). Raises PipelineError."""
    import json

    if not text.startswith(f'{{"format":"{SESSION_FORMAT}"'):  # as the writer starts it
        return Pipeline.from_json(text, source="last session")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PipelineError(f"not valid JSON ({e})", source="last session") from None
    if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT \
            or not isinstance(data.get("pipeline"), dict):
        raise PipelineError("not a session file", source="last session")
    folder = tensors_folder(path)
    tensors: dict[str, np.ndarray] = {}
    for layer in data["pipeline"].get("layers", []):
        params = layer.get("params") if isinstance(layer, dict) else None
        for ref in (params.values() if isinstance(params, dict) else ()):
            key = ref.get("tensor") if isinstance(ref, dict) else None
            if not isinstance(key, str) or key in tensors:
                continue
            if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
                raise PipelineError(f"{key!r} is not a tensor of this session",
                                    source="last session")
            try:
                arr = tensorfile.read_one(folder / f"{key}{tensorfile.SUFFIX}", "tensor")
            except tensorfile.TensorFileError as e:
                raise PipelineError(str(e), source="last session") from None
            if array_digest(arr) != key:  # (and the layer keys need the digest anyway)
                raise PipelineError(f"the tensor file {key[:12]}… was changed since it was "
                                    f"saved", source="last session")
            tensors[key] = arr
    return Pipeline.from_dict(data["pipeline"], source="last session", tensors=tensors)


def _encode(obj) -> Iterator[str]:
    if isinstance(obj, np.ndarray):
        yield from _encode_array(obj)
    elif isinstance(obj, dict):
        yield "{"
        for i, (key, value) in enumerate(obj.items()):
            yield ("," if i else "") + json.dumps(key) + ":"
            yield from _encode(value)
        yield "}"
    elif isinstance(obj, list | tuple):
        yield "["
        for i, value in enumerate(obj):
            if i:
                yield ","
            yield from _encode(value)
        yield "]"
    else:
        yield json.dumps(obj, separators=(",", ":"))


def _encode_array(a: np.ndarray) -> Iterator[str]:
    """Exactly ``json.dumps(a.tolist())`` (compact), a slice at a time."""
    if a.ndim <= 1 and a.size <= JSON_SLICE:
        yield json.dumps(a.tolist(), separators=(",", ":"))
    elif a.ndim == 1:
        yield "["
        for i in range(0, a.size, JSON_SLICE):
            yield ("," if i else "") + json.dumps(a[i:i + JSON_SLICE].tolist(),
                                                  separators=(",", ":"))[1:-1]
        yield "]"
    else:
        yield "["
        for i, sub in enumerate(a):
            if i:
                yield ","
            yield from _encode_array(sub)
        yield "]"


class AutosaveWriter:
    """Writes the newest submitted pipeline to ``path`` on a thread of its own.

    Submitting replaces what is still waiting (latest wins); :meth:`flush` waits until the
    newest is on disk. A failed write is kept in ``error`` (the next one tries again)."""

    def __init__(self, path: Path):
        self.path = path
        self.error: str | None = None
        self._cond = threading.Condition()
        self._waiting: Pipeline | None = None
        self._writing = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, pipeline: Pipeline) -> None:
        with self._cond:
            self._waiting = pipeline
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="layerlab-autosave",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted is written."""
        with self._cond:
            while self._waiting is not None or self._writing:
                self._cond.wait()

    def close(self) -> None:
        """Write what is waiting, then end the thread (one window, one thread: none is left
        behind when the window goes). A later submit starts a new one."""
        self.flush()
        with self._cond:
            thread, self._thread = self._thread, None
            self._closed = True
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        with self._cond:
            self._closed = False

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._waiting is None and not self._closed:
                    self._cond.wait()
                if self._waiting is None:  # closed, nothing left to write
                    return
                pipeline, self._waiting = self._waiting, None
                self._writing = True
            try:
                write_session(self.path, pipeline)
                self.error = None
            except OSError as e:
                self.error = f"could not keep the session in {self.path}: {e}"
            finally:
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()


def session_file(settings: QSettings) -> Path:
    """Where the session's stack is kept: beside the settings file."""
    p = Path(settings.fileName())
    return p.with_name(f"{p.stem}-session.layerlab.json")


class SessionStore:
    """Reads and writes the session's part of the settings."""

    def __init__(self, settings: QSettings, session: Session):
        self.settings = settings
        self.session = session
        self.writer = AutosaveWriter(session_file(settings))

    def int_value(self, key: str, default: int) -> int:
        try:
            return int(self.settings.value(key, default))
        except (TypeError, ValueError):
            return default

    def load_preferences(self) -> None:
        """Preview size, memory budget, device and render options from the last run."""
        s = self.session
        s.preview_max = self.int_value("prefs/preview_max", DEFAULT_PREVIEW)
        s.memory_budget_gb = self.int_value("prefs/memory_budget_gb", DEFAULT_BUDGET_GB)
        # "auto" (CUDA when torch finds it) unless the user chose the CPU: the window starts
        # before torch can say whether there is a CUDA device.
        s.device = "cpu" if str(self.settings.value("prefs/device", "")) == "cpu" else "auto"
        options = self.settings.value("prefs/render")
        if isinstance(options, str):
            try:
                norm, cmap, bins = options.split("|")
                s.render_options = RenderOptions(norm, cmap, int(bins))
            except ValueError:
                pass

    def save(self) -> None:
        """Keep the document (even unsaved), the image and the preferences for next time.
        The stack is written by the autosave thread (:meth:`flush` waits for it)."""
        st, s = self.settings, self.session
        self.writer.submit(s.pipeline)  # immutable: the thread encodes this very state
        st.remove("session/pipeline")  # where earlier versions kept it
        st.setValue("session/pipeline_file", self.writer.path.name)
        st.setValue("session/pipeline_path", s.document.path or "")
        st.setValue("session/pipeline_name", s.document.name)
        st.setValue("session/modified", s.document.modified)
        st.setValue("session/image", (s.loaded.path or "") if s.loaded else "")
        self.save_preferences()
        st.sync()

    def flush(self) -> None:
        """Wait until the newest stack is written."""
        self.writer.flush()

    def close(self) -> None:
        """Write the newest stack and end the writer's thread (the window is closing)."""
        self.writer.close()

    def save_preferences(self) -> None:
        """Preferences are kept the moment they change (not only at the next autosave)."""
        st, s = self.settings, self.session
        st.setValue("prefs/preview_max", s.preview_max)
        st.setValue("prefs/memory_budget_gb", s.memory_budget_gb)
        st.setValue("prefs/device", s.device)
        o = s.render_options
        st.setValue("prefs/render", f"{o.normalize}|{o.colormap}|{o.bins}")

    def restore_pipeline(self) -> str | None:
        """The last session's stack, else the default one; returns why the former failed."""
        s = self.session
        error = None
        text = self.settings.value("session/pipeline")  # earlier versions kept it here
        kept = self.settings.value("session/pipeline_file")
        if isinstance(kept, str) and kept:
            try:
                text = self.writer.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                text = None
                error = f"The last session's stack could not be read: {e}"
        if isinstance(text, str) and text:
            try:
                pipeline = read_session(self.writer.path, text)
            except PipelineError as e:
                error = f"The last session's stack could not be restored: {e}"
            else:
                path = str(self.settings.value("session/pipeline_path", "") or "") or None
                name = str(self.settings.value("session/pipeline_name", "") or "") or None
                modified = self.settings.value("session/modified", False, type=bool)
                s.document.reset(pipeline, path, modified=bool(modified), name=name)
                return None
        pipeline, name = default_pipeline()
        s.document.reset(pipeline, None, name=name)
        return error

    # --- the window's layout ---
    def restore_layout(self, window, splitter) -> bool:
        """Geometry, dock state and the side splitter; False when there was none saved."""
        geometry = self.settings.value("window/geometry")
        restored = isinstance(geometry, QByteArray | bytes) and bool(geometry)
        if restored:
            window.restoreGeometry(QByteArray(geometry))
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray | bytes) and state:
            window.restoreState(QByteArray(state))
        panel_state = self.settings.value("window/side_splitter")
        if isinstance(panel_state, QByteArray | bytes) and panel_state:
            splitter.restoreState(QByteArray(panel_state))
        return restored

    def save_layout(self, window, splitter) -> None:
        self.settings.setValue("window/geometry", window.saveGeometry())
        self.settings.setValue("window/state", window.saveState())
        self.settings.setValue("window/side_splitter", splitter.saveState())
        self.settings.sync()

"""Opening and saving: images (files, clipboard, drops, samples, recent), pipeline files and
examples, and what the window opens at start-up. A file that cannot be read changes nothing
and says why, once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, QSettings, QTimer, QUrl
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QFileDialog, QWidget

from ..core import resources
from ..core.analysis import nonfinite_warnings
from ..core.imageio import ImageLoadError, LoadedImage, from_array, load_image
from ..core.pipeline import InputSpec, Pipeline, PipelineError
from .controller import Controller
from .document import pipeline_title
from .session import Session
from .weights_dialog import WeightsDialog

RESOURCES = resources.root()  # bundled samples, pipelines, icons (wheel or checkout)
SAMPLES = RESOURCES / "samples"
PIPELINES = RESOURCES / "pipelines"
DEFAULT_SAMPLE = SAMPLES / "camera.png"
DEFAULT_PIPELINE = PIPELINES / "sharpen-relu-maxpool.layerlab.json"
ICON = RESOURCES / "icons" / "layerlab.png"


def _image_suffixes() -> tuple[str, ...]:
    """Every file suffix Pillow can open (.jfif, .apng, .jp2, ... where its plugins are)."""
    Image.init()
    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items()
                        if fmt in Image.OPEN))


IMAGE_SUFFIXES = _image_suffixes()
IMAGE_FILTER = ("Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)")
PIPELINE_FILTER = "LayerLab pipelines (*.layerlab.json);;JSON files (*.json);;All files (*)"
WEIGHTS_FILTER = ("Weights (*.pt *.pth *.safetensors);;PyTorch state_dict (*.pt *.pth);;"
                  "safetensors (*.safetensors);;All files (*)")
LABELS_FILTER = "Class names (*.txt *.json);;All files (*)"
MAX_RECENT = 8
UNDO_HINT = "; Ctrl+Z brings back the stack you were editing"


def qimage_to_loaded(image: QImage, name: str = "clipboard") -> LoadedImage:
    """A QImage (clipboard, dropped image data) as a LoadedImage, alpha composited on white."""
    if image.isNull():
        raise ImageLoadError(f"cannot open '{name}': the image is empty")
    img = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    arr = buf.reshape(h, stride)[:, : w * 4].reshape(h, w, 4).copy()
    return from_array(arr, name)


class Files(QObject):
    """The window's file operations; ``shell`` is the window (dialogs' parent, messages)."""

    def __init__(self, session: Session, controller: Controller, settings: QSettings,
                 shell: QWidget):
        super().__init__(shell)
        self.session = session
        self.controller = controller
        self.settings = settings
        self.shell = shell

    # ------------------------------------------------------------------ start-up
    def start(self, image: str | None, pipeline: str | None, restore_pipeline) -> None:
        """Open the given files, else what the last session had, else the sample and the
        default stack. ``restore_pipeline()`` restores the last session's stack and returns
        why it could not."""
        errors: list[str] = []  # shown at the end: opening the fallback image hides the banner
        opened_pipeline = False
        if pipeline:
            opened_pipeline = self.open_pipeline_path(pipeline, reset_history=True)
            if not opened_pipeline:
                errors.append(self.shell.banner.text())
        if not opened_pipeline:
            restore_error = restore_pipeline()
            if restore_error:
                errors.append(restore_error)
        opened_image = False
        if image:
            opened_image = self.open_image_path(image)
            if not opened_image:
                errors.append(self.shell.banner.text())
        if not opened_image:
            last = str(self.settings.value("session/image", "") or "")
            if not (image is None and last and Path(last).is_file()
                    and self.open_image_path(last, quiet=True)):
                self.open_image_path(str(DEFAULT_SAMPLE), quiet=True)
        if errors:
            self.shell.show_error("\n".join(errors))
        self.controller._update_title()

    # ------------------------------------------------------------------ images
    def _ask_open(self, title: str, kind: str, file_filter: str, start: str = "") -> str:
        """A file chosen in the open dialog ("" when cancelled), starting in the folder the
        last file of this ``kind`` came from (remembered)."""
        start = str(self.settings.value(f"paths/{kind}", "") or start)
        path, _ = QFileDialog.getOpenFileName(self.shell, title, start, file_filter)
        if path:
            self.settings.setValue(f"paths/{kind}", str(Path(path).parent))
        return path

    def open_image_dialog(self) -> None:
        loaded = self.session.loaded
        here = str(Path(loaded.path).parent) if loaded and loaded.path else ""
        if path := self._ask_open("Open image", "images", IMAGE_FILTER, here):
            self.open_image_path(path)

    def open_image_path(self, path: str, *, quiet: bool = False) -> bool:
        """Load an image file; on failure show why and keep the current image."""
        try:
            if Path(path).is_dir():
                raise ImageLoadError(f"cannot open '{Path(path).name}': it is a folder, not an "
                                     f"image file")
            loaded = load_image(path)
        except ImageLoadError as e:
            if not quiet:
                self.shell.show_error(str(e))
            return False
        except Exception as e:  # Pillow can raise odd things on hostile files
            if not quiet:
                self.shell.show_error(f"cannot open '{Path(path).name}': "
                                      f"{type(e).__name__}: {e}")
            return False
        self._add_recent(str(Path(path).resolve()))
        self.set_image(loaded)
        return True

    def set_image(self, loaded: LoadedImage) -> None:
        self.session.set_image(loaded)
        self.controller.image_opened()

    def paste_image(self) -> None:
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        if mime is None:
            self.shell.show_error("The clipboard is empty.")
            return
        if mime.hasUrls():
            files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if files:
                self.open_path(files[0])
                return
        if mime.hasImage():
            self._open_qimage(clipboard.image(), "clipboard")
            return
        if mime.hasText():
            text = mime.text().strip()
            if text.startswith("file://"):
                text = QUrl(text).toLocalFile()
            if text and len(text) < 4096 and Path(text).is_file():
                self.open_path(text)
                return
        self.shell.show_error("The clipboard holds no image and no image file.")

    def _open_qimage(self, image: QImage, name: str) -> None:
        try:
            self.set_image(qimage_to_loaded(image, name))
        except ImageLoadError as e:
            self.shell.show_error(str(e))

    def open_path(self, path: str) -> bool:
        """A dropped or pasted file: pipelines open as the stack, anything else as image."""
        if path.lower().endswith(".json"):
            return self.open_pipeline_path(path)
        return self.open_image_path(path)

    def drop(self, mime) -> None:
        """What a drop onto the window brought: files, image data, or nothing usable."""
        urls = list(mime.urls()) if mime.hasUrls() else []
        files = [u.toLocalFile() for u in urls if u.isLocalFile()]
        if files:
            if len(files) > 1:
                self.shell.show_status(f"{len(files)} files dropped: opening the first, "
                                       f"{Path(files[0]).name}")
            # Let the drag finish (the source application waits) before loading.
            QTimer.singleShot(0, self, lambda p=files[0]: self.open_path(p))
            return
        if urls:
            self.shell.show_error("Only local files can be dropped (not web addresses); save "
                                  "the image first.")
            return
        if mime.hasImage() and isinstance(mime.imageData(), QImage):
            self._open_qimage(mime.imageData(), "dropped image")
            return
        self.shell.show_error("Nothing to open in what was dropped.")

    # --- recent files ("images" and "pipelines") ---
    def _add_recent(self, path: str, kind: str = "images") -> None:
        recent = [p for p in self.recent(kind) if p != path]
        recent.insert(0, path)
        self.settings.setValue(f"recent/{kind}", recent[:MAX_RECENT])

    def recent(self, kind: str = "images") -> list[str]:
        value = self.settings.value(f"recent/{kind}", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def fill_recent_menu(self, menu, kind: str = "images") -> None:
        menu.clear()
        recent = self.recent(kind)
        opener = self.open_image_path if kind == "images" else self.open_pipeline_path
        for path in recent:
            act = menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.setEnabled(Path(path).is_file())
            act.triggered.connect(lambda _=False, p=path: opener(p))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear list", lambda: self.settings.setValue(f"recent/{kind}", []))
        else:
            menu.addAction("(none yet)").setEnabled(False)

    # ------------------------------------------------------------------ pipelines
    def new_pipeline(self) -> None:
        """An empty, untitled stack with the current input mode (undoable like opening)."""
        doc = self.session.document
        was_modified = doc.modified
        doc.load(Pipeline(InputSpec(doc.pipeline.input.mode)), None, "New pipeline",
                 name="untitled")
        self.shell.hide_banner()
        self.shell.show_status("New empty stack: Add layer (Ctrl+L) puts a layer after the "
                               "input" + (UNDO_HINT if was_modified else ""))

    def open_pipeline_dialog(self) -> None:
        if path := self._ask_open("Open pipeline", "pipelines", PIPELINE_FILTER):
            self.open_pipeline_path(path)

    def open_pipeline_path(self, path: str, *, reset_history: bool = False) -> bool:
        """Load a pipeline file; a bad file changes nothing and says why."""
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as e:
            self.shell.show_error(f"Could not open the pipeline: {e}")
            return False
        doc = self.session.document
        was_modified = doc.modified and not reset_history
        if reset_history:
            doc.reset(pipeline, str(Path(path).resolve()))
        else:
            doc.load(pipeline, str(Path(path).resolve()), f"Open {Path(path).name}")
        self._add_recent(str(Path(path).resolve()), "pipelines")
        self._show_opened(pipeline, f"Opened pipeline {Path(path).name}", was_modified)
        return True

    def open_example(self, path: str) -> None:
        """An example opens as a new, untitled stack (saving never overwrites the example)."""
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as e:
            self.shell.show_error(f"Could not open the example: {e}")
            return
        name = pipeline_title(path)
        was_modified = self.session.document.modified
        self.session.document.load(pipeline, None, f"Open example {name}", name=name)
        self._show_opened(pipeline, f"Opened example {name}; Save As keeps your changes",
                          was_modified)

    def _show_opened(self, pipeline: Pipeline, text: str, replaced_changes: bool = False
                     ) -> None:
        """Say a stack was opened; NaN/inf weights and a stack that cannot run are said too.

        Opening never asks to save first: it is one undo step, so unsaved changes are a
        Ctrl+Z away, and the message says so when there were any."""
        if replaced_changes:
            text += UNDO_HINT
        warnings = nonfinite_warnings(pipeline)
        if warnings:
            self.shell.show_banner(f"{text}: " + "; ".join(warnings), "warning")
        else:
            self.shell.hide_banner()
        v = self.session.validation
        if v is not None and not v.ok:
            self.shell.show_status(f"{text}, but it cannot run: {v.error}", 15000)
        else:
            self.shell.show_status(text)

    # ------------------------------------------------------------------ models
    def open_model_dialog(self):
        """File > Open model: choose a torchvision model and its weights; the worker opens
        it. Returns the (open, non-blocking) dialog."""
        from .model_dialog import ModelDialog

        dialog = ModelDialog(self.shell, choose_file=lambda: self._ask_open(
            "Weights of the model", "weights", WEIGHTS_FILTER))
        dialog.accepted.connect(lambda: self.open_model(dialog.spec(), dialog.as_stack()))
        dialog.open()
        return dialog

    def open_model(self, spec, as_stack: bool = False) -> None:
        """Open ``spec`` (a ModelSpec) as an editable stack (a chain model: one undo step),
        or in the model view."""
        if as_stack:
            self.shell.model_stack.open(spec)
        else:
            self.controller.on_open_model(spec)
    def save_model_weights_dialog(self) -> bool:
        """File > Save model weights: the model's state_dict with its edits, .safetensors."""
        s = self.session
        if s.model is None:
            self.shell.show_status("Open a model first (File > Open model…)")
            return False
        start = str(Path(str(self.settings.value("paths/weights", "") or Path.home()))
                    / f"{s.model.name}-edited.safetensors")
        path, _ = QFileDialog.getSaveFileName(self.shell, "Save model weights", start,
                                              "safetensors (*.safetensors)")
        if not path:
            return False
        if not path.lower().endswith(".safetensors"):
            path += ".safetensors"
        self.settings.setValue("paths/weights", str(Path(path).parent))
        return self.controller.model_weights.save(path)

    # ------------------------------------------------------------------ weights
    def load_weights_dialog(self) -> None:
        if path := self._ask_open("Load weights", "weights", WEIGHTS_FILTER):
            self.load_weights_path(path)

    def load_weights_path(self, path: str) -> WeightsDialog | None:
        """Read a state_dict and show how it maps onto the stack; Apply is one undo step.
        Returns the (open, non-blocking) dialog, or None when the file cannot be read."""
        from ..core.weights import WeightsError, match_state_dict, read_state_dict  # torch

        try:
            state = read_state_dict(path)
            mapping = match_state_dict(self.session.pipeline, state, source=Path(path).name)
        except WeightsError as e:
            self.shell.show_error(f"Could not load the weights: {e}")
            return None
        dialog = WeightsDialog(mapping, self.shell)
        dialog.accepted.connect(lambda: self._apply_weights(mapping))
        dialog.open()
        return dialog

    def _apply_weights(self, mapping) -> None:
        from ..core.weights import WeightsError, apply_weights

        try:
            after = apply_weights(self.session.pipeline, mapping)
        except WeightsError as e:  # the stack changed under the dialog
            self.shell.show_error(str(e))
            return
        self.session.document.edit(after, f"Load weights {mapping.source}")
        self.shell.show_status(f"Loaded {len(mapping.applied_keys)} tensor(s) from "
                               f"{mapping.source}; Ctrl+Z takes them off again")

    def load_labels_dialog(self) -> None:
        if path := self._ask_open("Load class names", "labels", LABELS_FILTER):
            self.load_labels_path(path)

    def load_labels_path(self, path: str) -> bool:
        """Class names from a labels file onto the stack (one undo step)."""
        from dataclasses import replace

        from ..core.predictions import LabelsError, read_labels

        try:
            names = read_labels(path)
        except LabelsError as e:
            self.shell.show_error(f"Could not load the class names: {e}")
            return False
        after = replace(self.session.pipeline, classes=names)
        self.session.document.edit(after, f"Load class names {Path(path).name}")
        self.shell.show_status(f"{len(names)} class names from {Path(path).name}; Ctrl+Z "
                               f"takes them off again")
        return True

    def save_pipeline(self) -> bool:
        path = self.session.document.path
        return self.save_pipeline_to(path) if path else self.save_pipeline_as()

    def save_pipeline_as(self) -> bool:
        doc = self.session.document
        start = doc.path or str(
            Path(str(self.settings.value("paths/pipelines", "") or Path.home()))
            / f"{self.session.title()}.layerlab.json")
        path, _ = QFileDialog.getSaveFileName(self.shell, "Save pipeline", start,
                                              PIPELINE_FILTER)
        if not path:
            return False
        if not path.lower().endswith(".json"):
            path += ".layerlab.json"
        self.settings.setValue("paths/pipelines", str(Path(path).parent))
        return self.save_pipeline_to(path)

    def save_pipeline_to(self, path: str) -> bool:
        doc = self.session.document
        try:
            beside = doc.pipeline.save(path)
        except OSError as e:
            self.shell.show_error(f"Could not save {Path(path).name}: {e.strerror or e}")
            return False
        doc.mark_saved(str(Path(path).resolve()))
        self._add_recent(str(Path(path).resolve()), "pipelines")
        msg = f"Saved {Path(path).name}"
        if beside is not None:
            msg += f" and its tensors beside it, {beside}"
        v = self.session.validation
        if v is not None and not v.ok:
            msg += f" (it still has an error: {v.error})"
        self.shell.show_status(msg)
        self.shell.schedule_autosave()
        return True

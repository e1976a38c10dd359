"""The LayerLab main window: glue between the document, the side panel and the run controller.

Layout: the layer stack and the selected layer's parameters / kernel in a dock on the left, the
stage panel (feature maps, histogram, statistics) in the centre, a toolbar for the input mode,
the device and running, and a status bar with progress, preview size and timings.

Every document change is validated by formula first; a valid pipeline is submitted to the
``RunController`` at once (the controller keeps only the newest pending request), an invalid
one is not run and the pictures of the last valid run stay on screen.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QIcon,
    QImage,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import __version__
from ..core import resources
from ..core.imageio import (
    ImageLoadError,
    LoadedImage,
    downscale_for_preview,
    from_array,
    load_image,
)
from ..core.kernels import preset
from ..core.pipeline import (
    DEFAULT_MEMORY_BUDGET,
    InputSpec,
    Pipeline,
    PipelineError,
    new_layer,
    nonfinite_warnings,
)
from ..worker import RenderOptions, RunController, RunRequest, RunSummary, StageView
from .document import Document, Validation, in_shape_at, pipeline_title, shape_text, validate
from .kernel_editor import KernelEditor
from .layer_stack import LayerStackWidget
from .param_form import ParamForm
from .stage_view import StagePanel

RESOURCES = resources.root()  # bundled samples, pipelines, icons (wheel or checkout)
SAMPLES = RESOURCES / "samples"
PIPELINES = RESOURCES / "pipelines"
DEFAULT_SAMPLE = SAMPLES / "camera.png"
DEFAULT_PIPELINE = PIPELINES / "sharpen-relu-maxpool.layerlab.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm", ".ico", ".tga")
IMAGE_FILTER = ("Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)")
PIPELINE_FILTER = "LayerLab pipelines (*.layerlab.json);;JSON files (*.json);;All files (*)"
PREVIEW_SIZES = (512, 768, 1024, 1536, 2048)
DEFAULT_PREVIEW = 1024
MEMORY_BUDGETS_GB = (1, 2, 4, 8, 16)
MAX_RECENT = 8


def default_pipeline() -> tuple[Pipeline, str]:
    """The start-up stack: the bundled example if present, else built the same way."""
    try:
        return Pipeline.load(DEFAULT_PIPELINE), pipeline_title(str(DEFAULT_PIPELINE))
    except PipelineError:
        pass
    conv = new_layer("Conv2d", (1, 8, 8), out_channels=1, kernel_size=3, padding=1, bias=False)
    conv = replace(conv, name="sharpen").with_param(
        "weight", preset("seed sharpen").reshape(1, 1, 3, 3).numpy())
    layers = (conv, replace(new_layer("ReLU"), name="relu"),
              replace(new_layer("MaxPool2d", kernel_size=2), name="maxpool"))
    return Pipeline(InputSpec("gray"), layers), "sharpen-relu-maxpool"


def qimage_to_loaded(image: QImage, name: str = "clipboard") -> LoadedImage:
    """A QImage (clipboard, dropped image data) as a LoadedImage, alpha composited on white."""
    if image.isNull():
        raise ImageLoadError(f"cannot open '{name}': the image is empty")
    img = image.convertToFormat(QImage.Format.Format_RGBA8888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes())
    arr = buf.reshape(h, stride)[:, : w * 4].reshape(h, w, 4).copy()
    return from_array(arr, name)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


# --- small widgets ---------------------------------------------------------------------------


class MessageBanner(QFrame):
    """A non-blocking message strip above the feature view (errors from loading files)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.label, 1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        lay.addWidget(close)
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        colours = {"error": ("#fdecea", "#8e1c1c", "#e57373"),
                   "warning": ("#fff4e0", "#6d4300", "#f0b860"),
                   "info": ("#e8f1fb", "#174a7c", "#90b8e0")}
        bg, fg, border = colours.get(kind, colours["info"])
        self.setStyleSheet(f"#messageBanner {{ background: {bg}; border: 1px solid {border}; "
                           f"border-radius: 4px; }} #messageBanner QLabel {{ color: {fg}; }}")
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """The app window. ``start()`` loads the first image and stack and runs them."""

    imageChanged = Signal()

    def __init__(self, settings: QSettings | None = None,
                 controller: RunController | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings()
        self.controller = controller if controller is not None else RunController(self)
        if self.controller.parent() is None:
            self.controller.setParent(self)
        self.document = Document(parent=self)
        self.loaded: LoadedImage | None = None  # full-size image
        self.preview: LoadedImage | None = None  # what the window runs while editing
        self.preview_max = self._setting_int("prefs/preview_max", DEFAULT_PREVIEW)
        self.memory_budget_gb = self._setting_int("prefs/memory_budget_gb",
                                                  DEFAULT_MEMORY_BUDGET // 1024**3)
        self.device = self._initial_device()
        self.validation: Validation | None = None
        self.views: dict[int, StageView] = {}  # newest stage results, by stage index
        self.last_summary: RunSummary | None = None
        self.run_errors: dict[int, str] = {}
        self._run_errors_now: dict[int, str] = {}
        self._run_names: dict[int, str] = {}
        self._run_kind = "preview"
        self._last_run_key: tuple | None = None  # what the last finished run computed
        self._submitted_key: tuple | None = None
        self._closing = False
        self._syncing_selection = False
        self._selected_layer: int | None = None
        self._refreshing = False
        self._pipeline_name = "untitled"

        self.setWindowTitle("LayerLab")
        icon = RESOURCES / "icons" / "layerlab.png"
        if icon.exists():
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)

        self._build_central()
        self._build_side_panel()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(500)
        self._autosave_timer.timeout.connect(self.save_session)
        self._stop_visual_timer = QTimer(self)
        self._stop_visual_timer.setSingleShot(True)
        self._stop_visual_timer.setInterval(150)
        self._stop_visual_timer.timeout.connect(self._show_busy)
        self._restore_window()

    # ------------------------------------------------------------------ construction
    def _build_central(self) -> None:
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.setSpacing(4)
        self.banner = MessageBanner()
        lay.addWidget(self.banner)
        self.stage_panel = StagePanel()
        lay.addWidget(self.stage_panel, 1)
        self.setCentralWidget(central)

    def _build_side_panel(self) -> None:
        self.stack = LayerStackWidget(self.document)
        self.param_form = ParamForm()
        self.kernel_editor = KernelEditor()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for widget, title in ((self.param_form, "Parameters"), (self.kernel_editor, "Kernel")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            scroll.setWidget(widget)
            self.tabs.addTab(scroll, title)
        self.tabs.setTabToolTip(1, "Edit the selected Conv2d layer's kernels cell by cell")
        self.side_splitter = QSplitter(Qt.Orientation.Vertical)
        self.side_splitter.addWidget(self.stack)
        self.side_splitter.addWidget(self.tabs)
        self.side_splitter.setStretchFactor(0, 2)
        self.side_splitter.setStretchFactor(1, 3)
        self.side_splitter.setChildrenCollapsible(False)
        self.side_splitter.setSizes([170, 480])
        self.dock = QDockWidget("Layers", self)
        self.dock.setObjectName("layersDock")
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                              QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.dock.setWidget(self.side_splitter)
        self.dock.setMinimumWidth(340)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.resizeDocks([self.dock], [380], Qt.Orientation.Horizontal)

    def _action(self, text: str, slot, shortcut=None, tip: str = "",
                context: Qt.ShortcutContext | None = None, widget: QWidget | None = None
                ) -> QAction:
        act = QAction(text, widget or self)
        if shortcut is not None:
            if isinstance(shortcut, list | tuple):
                act.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                act.setShortcut(QKeySequence(shortcut))
        if context is not None:
            act.setShortcutContext(context)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        act.triggered.connect(lambda _=False: slot())
        (widget or self).addAction(act)
        return act

    def _build_actions(self) -> None:
        A = self._action  # noqa: N806
        SK = QKeySequence.StandardKey  # noqa: N806
        local = Qt.ShortcutContext.WidgetWithChildrenShortcut
        self.open_image_act = A("&Open image…", self.open_image_dialog, SK.Open,
                                "Open an image file (or drop one onto the window)")
        self.paste_act = A("&Paste image", self.paste_image, SK.Paste,
                           "Use the image (or image file) on the clipboard")
        self.open_pipeline_act = A("Open &pipeline…", self.open_pipeline_dialog,
                                   "Ctrl+Shift+O", "Open a *.layerlab.json stack")
        self.save_act = A("&Save pipeline", self.save_pipeline, SK.Save,
                          "Save the stack to its file")
        self.save_as_act = A("Save pipeline &as…", self.save_pipeline_as, "Ctrl+Shift+S",
                             "Save the stack to a new file")
        self.quit_act = A("&Quit", self.close, SK.Quit, "Close LayerLab (your work is kept)")
        self.undo_act = self.document.undo_stack.createUndoAction(self, "&Undo")
        self.undo_act.setShortcuts([QKeySequence(SK.Undo)])
        self.redo_act = self.document.undo_stack.createRedoAction(self, "&Redo")
        self.redo_act.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.addAction(self.undo_act)
        self.addAction(self.redo_act)
        self.add_layer_act = A("&Add layer…", self.show_add_menu, "Ctrl+L",
                               "Add a layer after the selected one")
        self.remove_act = A("&Remove layer", self.remove_layer, SK.Delete,
                            "Remove the selected layer (Del)", local, self.stack)
        self.duplicate_act = A("D&uplicate layer", self.duplicate_layer, "Ctrl+D",
                               "Duplicate the selected layer (Ctrl+D)")
        self.move_up_act = A("Move layer &up", lambda: self.move_layer(-1), "Alt+Up",
                             "Move the selected layer up (Alt+Up)")
        self.move_down_act = A("Move layer do&wn", lambda: self.move_layer(1), "Alt+Down",
                               "Move the selected layer down (Alt+Down)")
        self.toggle_act = A("&Enable / disable layer", self.toggle_layer, "Space",
                            "Switch the selected layer on or off (Space)", local,
                            self.stack.view)
        self.rename_act = A("Re&name layer", self.rename_layer, "F2",
                            "Rename the selected layer (F2 or double-click)", local, self.stack)
        self.remove_act.setText("Remove")
        self.run_act = A("&Run", self.run_or_stop, "F5", "Run the stack now (F5); while it "
                         "runs: stop (Esc)")
        self.stop_act = A("&Stop", self.stop, "Esc", "Stop the current run (Esc)")
        self.stop_act.setEnabled(False)
        self.full_size_act = A("Run at &full size", self.run_full_size, "Ctrl+Shift+R",
                               "Run the full-resolution image once (editing uses a preview)")
        self.shortcuts_act = A("&Keyboard shortcuts", self.show_shortcuts, SK.HelpContents,
                               "List the keyboard shortcuts (F1)")
        self.about_act = A("&About LayerLab", self.show_about)
        self.layer_actions = (self.remove_act, self.duplicate_act, self.move_up_act,
                              self.move_down_act, self.toggle_act, self.rename_act)
        for act, text in ((self.remove_act, "Remove"), (self.duplicate_act, "Duplicate"),
                          (self.move_up_act, "↑"), (self.move_down_act, "↓")):
            act.setIconText(text)
            self.stack.add_tool_action(act)
        self.remove_act.setText("&Remove layer")

    def _build_menus(self) -> None:
        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addAction(self.open_image_act)
        self.samples_menu = m.addMenu("Sa&mple images")
        for path in sorted(SAMPLES.glob("*")) if SAMPLES.is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                act = self.samples_menu.addAction(path.name)
                act.triggered.connect(lambda _=False, p=str(path): self.open_image_path(p))
        self.recent_menu = m.addMenu("&Recent images")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        m.addSeparator()
        m.addAction(self.open_pipeline_act)
        self.examples_menu = m.addMenu("&Example pipelines")
        for path in sorted(PIPELINES.glob("*.layerlab.json")) if PIPELINES.is_dir() else []:
            act = self.examples_menu.addAction(pipeline_title(str(path)))
            act.setToolTip(str(path.name))
            act.triggered.connect(lambda _=False, p=str(path): self.open_example(p))
        m.addAction(self.save_act)
        m.addAction(self.save_as_act)
        m.addSeparator()
        self.export_menu = m.addMenu("E&xport")
        try:
            export_actions = self.stage_panel.export_actions()
        except Exception as e:  # the exporter is optional; the window works without it
            export_actions = []
            self.export_menu.setToolTip(f"Export unavailable: {e}")
        for act in export_actions:
            self.export_menu.addAction(act)
        self.export_menu.setEnabled(bool(export_actions))
        m.addSeparator()
        m.addAction(self.quit_act)

        e = bar.addMenu("&Edit")
        e.addAction(self.undo_act)
        e.addAction(self.redo_act)
        e.addSeparator()
        e.addAction(self.paste_act)
        e.addSeparator()
        e.addMenu(self.stack.add_menu)
        for act in self.layer_actions:
            e.addAction(act)

        v = bar.addMenu("&View")
        self.preview_menu = v.addMenu("&Preview size")
        self.preview_menu.setToolTipsVisible(True)
        group = QActionGroup(self)
        self.preview_actions: dict[int, QAction] = {}
        for size in PREVIEW_SIZES:
            act = self.preview_menu.addAction(f"{size} px (longest side)")
            act.setCheckable(True)
            act.setChecked(size == self.preview_max)
            act.triggered.connect(lambda _=False, s=size: self.set_preview_max(s))
            group.addAction(act)
            self.preview_actions[size] = act
        self.budget_menu = v.addMenu("&Memory budget")
        self.budget_menu.setToolTipsVisible(True)
        budget_group = QActionGroup(self)
        self.budget_actions: dict[int, QAction] = {}
        for gb in MEMORY_BUDGETS_GB:
            act = self.budget_menu.addAction(f"{gb} GB of stage outputs")
            act.setToolTip("A stack whose stage outputs would need more is refused before it "
                           "runs, with the estimate")
            act.setCheckable(True)
            act.setChecked(gb == self.memory_budget_gb)
            act.triggered.connect(lambda _=False, g=gb: self.set_memory_budget(g))
            budget_group.addAction(act)
            self.budget_actions[gb] = act
        v.addSeparator()
        v.addAction(self.dock.toggleViewAction())

        r = bar.addMenu("&Run")
        r.addAction(self.run_act)
        r.addAction(self.stop_act)
        r.addAction(self.full_size_act)

        h = bar.addMenu("&Help")
        h.addAction(self.shortcuts_act)
        h.addAction(self.about_act)

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.open_image_act.setIconText("Open image")
        self.open_pipeline_act.setIconText("Open pipeline")
        self.save_act.setIconText("Save")
        for act in (self.open_image_act, self.open_pipeline_act, self.save_act):
            tb.addAction(act)
        tb.addSeparator()
        self.undo_act.setIconText("Undo")
        self.redo_act.setIconText("Redo")
        tb.addAction(self.undo_act)
        tb.addAction(self.redo_act)
        tb.addSeparator()
        self.run_act.setIconText("▶ Run")
        self.full_size_act.setIconText("Full size")
        tb.addAction(self.run_act)
        tb.addAction(self.full_size_act)
        tb.addSeparator()
        tb.addWidget(QLabel(" Input "))
        self.mode_box = QComboBox()
        self.mode_box.addItem("RGB", "rgb")
        self.mode_box.addItem("Grayscale", "gray")
        self.mode_box.setToolTip("Input mode: 3 colour channels, or 1 gray channel (Pillow's "
                                 "'L' conversion, as in the tutorials)")
        self.mode_box.activated.connect(self._mode_picked)
        tb.addWidget(self.mode_box)
        tb.addWidget(QLabel("  Device "))
        self.device_box = QComboBox()
        self.device_box.addItem("CPU", "cpu")
        if self._cuda_available():
            import torch

            self.device_box.addItem("CUDA", "cuda")
            self.device_box.setItemData(1, torch.cuda.get_device_name(0),
                                        Qt.ItemDataRole.ToolTipRole)
        self.device_box.setToolTip("Where torch computes the stages")
        i = self.device_box.findData(self.device)
        self.device_box.setCurrentIndex(max(0, i))
        self.device_box.activated.connect(self._device_picked)
        tb.addWidget(self.device_box)
        self.toolbar = tb

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.progress_label = QLabel()
        self.progress_label.setObjectName("progressLabel")
        self.preview_label = QLabel()
        self.preview_label.setObjectName("previewLabel")
        self.timing_label = QLabel()
        self.timing_label.setObjectName("timingLabel")
        for w in (self.progress_label, self.preview_label, self.timing_label):
            w.setContentsMargins(6, 0, 6, 0)
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        d = self.document
        d.changed.connect(self._document_changed)
        d.pathChanged.connect(self._update_title)
        d.undo_stack.cleanChanged.connect(self._update_title)
        self.stack.currentLayerChanged.connect(self._layer_selected)
        self.stack.addRequested.connect(self.add_layer)
        self.param_form.argEdited.connect(self._arg_edited)
        self.kernel_editor.paramEdited.connect(self._param_edited)
        self.kernel_editor.initRequested.connect(self._init_requested)
        self.kernel_editor.statusMessage.connect(self.show_status)
        c = self.controller
        c.runStarted.connect(self._run_started)
        c.stageReady.connect(self._stage_ready)
        c.runFinished.connect(self._run_finished)
        c.busyChanged.connect(self._busy_changed)
        p = self.stage_panel
        p.stageSelected.connect(self._stage_selected)
        p.renderOptionsChanged.connect(self._render_options_changed)
        p.statusMessage.connect(self.show_status)

    # ------------------------------------------------------------------ settings
    def _setting_int(self, key: str, default: int) -> int:
        try:
            return int(self.settings.value(key, default))
        except (TypeError, ValueError):
            return default

    @staticmethod
    def _cuda_available() -> bool:
        import torch

        return bool(torch.cuda.is_available())

    def _initial_device(self) -> str:
        saved = str(self.settings.value("prefs/device", ""))
        if saved == "cuda" and self._cuda_available():
            return "cuda"
        if saved == "cpu":
            return "cpu"
        return "cuda" if self._cuda_available() else "cpu"

    def _restore_window(self) -> None:
        geometry = self.settings.value("window/geometry")
        if isinstance(geometry, QByteArray | bytes) and geometry:
            self.restoreGeometry(QByteArray(geometry))
        else:
            screen = QGuiApplication.primaryScreen()
            avail = screen.availableGeometry() if screen else None
            w, h = 1280, 760
            if avail is not None:
                w, h = min(w, avail.width()), min(h, avail.height())
            self.resize(w, h)
        state = self.settings.value("window/state")
        if isinstance(state, QByteArray | bytes) and state:
            self.restoreState(QByteArray(state))
        panel_state = self.settings.value("window/side_splitter")
        if isinstance(panel_state, QByteArray | bytes) and panel_state:
            self.side_splitter.restoreState(QByteArray(panel_state))
        options = self.settings.value("prefs/render")
        if isinstance(options, str):
            try:
                norm, cmap, bins = options.split("|")
                self.stage_panel.set_render_options(RenderOptions(norm, cmap, int(bins)))
            except ValueError:
                pass

    def save_session(self) -> None:
        """Keep the document (even unsaved), the image and the preferences for next time."""
        s = self.settings
        s.setValue("session/pipeline", json.dumps(self.document.pipeline.to_dict(),
                                              separators=(",", ":")))
        s.setValue("session/pipeline_path", self.document.path or "")
        s.setValue("session/pipeline_name", self._pipeline_name)
        s.setValue("session/modified", self.document.modified)
        s.setValue("session/image", (self.loaded.path or "") if self.loaded else "")
        s.setValue("prefs/preview_max", self.preview_max)
        s.setValue("prefs/device", self.device)
        o = self.stage_panel.render_options()
        s.setValue("prefs/render", f"{o.normalize}|{o.colormap}|{o.bins}")
        s.sync()

    def _schedule_autosave(self) -> None:
        if not self._closing:
            self._autosave_timer.start()

    # ------------------------------------------------------------------ start-up
    def start(self, image: str | None = None, pipeline: str | None = None) -> None:
        """Open the given files, else what the last session had, else the sample and the
        default stack; then run."""
        errors: list[str] = []  # shown at the end: opening the fallback image hides the banner
        opened_pipeline = False
        if pipeline:
            opened_pipeline = self.open_pipeline_path(pipeline, reset_history=True)
            if not opened_pipeline:
                errors.append(self.banner.text())
        if not opened_pipeline:
            restore_error = self._restore_pipeline()
            if restore_error:
                errors.append(restore_error)
        opened_image = False
        if image:
            opened_image = self.open_image_path(image)
            if not opened_image:
                errors.append(self.banner.text())
        if not opened_image:
            last = str(self.settings.value("session/image", "") or "")
            if not (image is None and last and Path(last).is_file()
                    and self.open_image_path(last, quiet=True)):
                self.open_image_path(str(DEFAULT_SAMPLE), quiet=True)
        if errors:
            self.show_error("\n".join(errors))
        self._update_title()

    def _restore_pipeline(self) -> str | None:
        """The last session's stack, else the default one; returns why the former failed."""
        error = None
        text = self.settings.value("session/pipeline")
        if isinstance(text, str) and text:
            try:
                pipeline = Pipeline.from_json(text, source="last session")
            except PipelineError as e:
                error = f"The last session's stack could not be restored: {e}"
            else:
                path = str(self.settings.value("session/pipeline_path", "") or "") or None
                self._pipeline_name = str(self.settings.value("session/pipeline_name", "")
                                          or pipeline_title(path))
                modified = self.settings.value("session/modified", False, type=bool)
                self.document.reset(pipeline, path, modified=bool(modified))
                return None
        pipeline, name = default_pipeline()
        self._pipeline_name = name
        self.document.reset(pipeline, None)
        return error

    # ------------------------------------------------------------------ images
    def open_image_dialog(self) -> None:
        start = str(self.settings.value("paths/images", "") or "")
        if not start and self.loaded and self.loaded.path:
            start = str(Path(self.loaded.path).parent)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, IMAGE_FILTER)
        if path:
            self.settings.setValue("paths/images", str(Path(path).parent))
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
                self.show_error(str(e))
            return False
        except Exception as e:  # Pillow can raise odd things on hostile files
            if not quiet:
                self.show_error(f"cannot open '{Path(path).name}': {type(e).__name__}: {e}")
            return False
        self._add_recent(str(Path(path).resolve()))
        self.set_image(loaded)
        return True

    def set_image(self, loaded: LoadedImage) -> None:
        self.loaded = loaded
        self._make_preview()
        self.banner.hide()
        notes = "; ".join(loaded.notes)
        name = Path(loaded.path).name if loaded.path else "pasted image"
        self.show_status(f"Opened {name} ({_size_text(self.source_size())})"
                         + (f": {notes}" if notes else ""))
        self._update_title()
        self.imageChanged.emit()
        self._revalidate()
        self.submit()
        self._schedule_autosave()

    def source_size(self) -> tuple[int, int]:
        if self.loaded is None:
            return (0, 0)
        return self.loaded.source_size or self.loaded.size

    def _make_preview(self) -> None:
        if self.loaded is None:
            self.preview = None
            return
        img = downscale_for_preview(self.loaded.image, self.preview_max)
        self.preview = replace(self.loaded, image=img, size=img.size,
                               source_size=self.source_size())
        full = self.source_size()
        if img.size == tuple(self.loaded.size) and tuple(self.loaded.size) == tuple(full):
            self.preview_label.setText(f"{_size_text(img.size)} (full size)")
            self.preview_label.setToolTip("The image is small enough to edit at full size")
        else:
            self.preview_label.setText(f"preview {_size_text(img.size)} of {_size_text(full)}")
            self.preview_label.setToolTip(
                f"Editing runs a {self.preview_max}-pixel preview; Run > Run at full size "
                f"(Ctrl+Shift+R) runs the whole image once. Change it in View > Preview size.")

    def image_hw(self) -> tuple[int, int] | None:
        if self.preview is None:
            return None
        w, h = self.preview.size
        return (h, w)

    def set_memory_budget(self, gb: int) -> None:
        self.memory_budget_gb = int(gb)
        for g, act in self.budget_actions.items():
            act.setChecked(g == self.memory_budget_gb)
        self.settings.setValue("prefs/memory_budget_gb", self.memory_budget_gb)
        self.submit()

    def set_preview_max(self, size: int) -> None:
        self.preview_max = int(size)
        for s, act in self.preview_actions.items():
            act.setChecked(s == self.preview_max)
        self.settings.setValue("prefs/preview_max", self.preview_max)
        if self.loaded is not None:
            self._make_preview()
            self._revalidate()
            self.submit()

    def paste_image(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            self.show_error("The clipboard is empty.")
            return
        if mime.hasUrls():
            files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if files:
                self.open_path(files[0])
                return
        if mime.hasImage():
            image = QGuiApplication.clipboard().image()
            try:
                self.set_image(qimage_to_loaded(image, "clipboard"))
            except ImageLoadError as e:
                self.show_error(str(e))
            return
        if mime.hasText():
            text = mime.text().strip()
            if text.startswith("file://"):
                text = QUrl(text).toLocalFile()
            if text and len(text) < 4096 and Path(text).is_file():
                self.open_path(text)
                return
        self.show_error("The clipboard holds no image and no image file.")

    def open_path(self, path: str) -> bool:
        """A dropped or pasted file: pipelines open as the stack, anything else as image."""
        if path.lower().endswith(".json"):
            return self.open_pipeline_path(path)
        return self.open_image_path(path)

    def _add_recent(self, path: str) -> None:
        recent = [p for p in self._recent_images() if p != path]
        recent.insert(0, path)
        self.settings.setValue("recent/images", recent[:MAX_RECENT])

    def _recent_images(self) -> list[str]:
        value = self.settings.value("recent/images", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self._recent_images()
        for path in recent:
            act = self.recent_menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.setEnabled(Path(path).is_file())
            act.triggered.connect(lambda _=False, p=path: self.open_image_path(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        else:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def _clear_recent(self) -> None:
        self.settings.setValue("recent/images", [])

    # --- drag and drop ---
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        if mime.hasUrls() or mime.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        mime = event.mimeData()
        urls = list(mime.urls()) if mime.hasUrls() else []
        files = [u.toLocalFile() for u in urls if u.isLocalFile()]
        event.acceptProposedAction()
        if files:
            if len(files) > 1:
                self.show_status(f"{len(files)} files dropped: opening the first, "
                                 f"{Path(files[0]).name}")
            # Let the drag finish (the source application waits) before loading.
            QTimer.singleShot(0, self, lambda p=files[0]: self.open_path(p))
            return
        if urls:
            self.show_error("Only local files can be dropped (not web addresses); save the "
                            "image first.")
            return
        if mime.hasImage():
            image = mime.imageData()
            if isinstance(image, QImage):
                try:
                    self.set_image(qimage_to_loaded(image, "dropped image"))
                except ImageLoadError as e:
                    self.show_error(str(e))
                return
        self.show_error("Nothing to open in what was dropped.")

    # ------------------------------------------------------------------ pipelines
    def open_pipeline_dialog(self) -> None:
        start = str(self.settings.value("paths/pipelines", "") or "")
        path, _ = QFileDialog.getOpenFileName(self, "Open pipeline", start, PIPELINE_FILTER)
        if path:
            self.settings.setValue("paths/pipelines", str(Path(path).parent))
            self.open_pipeline_path(path)

    def open_pipeline_path(self, path: str, *, reset_history: bool = False) -> bool:
        """Load a pipeline file; a bad file changes nothing and says why."""
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as e:
            self.show_error(f"Could not open the pipeline: {e}")
            return False
        self._pipeline_name = pipeline_title(path)
        if reset_history:
            self.document.reset(pipeline, str(Path(path).resolve()))
        else:
            self.document.load(pipeline, str(Path(path).resolve()),
                               f"Open {Path(path).name}")
        self._show_opened(pipeline, f"Opened pipeline {Path(path).name}")
        return True

    def open_example(self, path: str) -> None:
        """An example opens as a new, untitled stack (saving never overwrites the example)."""
        try:
            pipeline = Pipeline.load(path)
        except PipelineError as e:
            self.show_error(f"Could not open the example: {e}")
            return
        self._pipeline_name = pipeline_title(path)
        self.document.load(pipeline, None, f"Open example {self._pipeline_name}")
        self._show_opened(pipeline, f"Opened example {self._pipeline_name}; Save As keeps "
                                    f"your changes")

    def _show_opened(self, pipeline: Pipeline, text: str) -> None:
        """Say a stack was opened; NaN/inf weights and a stack that cannot run are said too."""
        warnings = nonfinite_warnings(pipeline)
        if warnings:
            self.banner.show_message(f"{text}: " + "; ".join(warnings), "warning")
        else:
            self.banner.hide()
        if self.validation is not None and not self.validation.ok:
            self.show_status(f"{text}, but it cannot run: {self.validation.error}", 15000)
        else:
            self.show_status(text)

    def save_pipeline(self) -> bool:
        if not self.document.path:
            return self.save_pipeline_as()
        return self.save_pipeline_to(self.document.path)

    def save_pipeline_as(self) -> bool:
        start = self.document.path or str(
            Path(str(self.settings.value("paths/pipelines", "") or Path.home()))
            / f"{self._pipeline_name}.layerlab.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save pipeline", start, PIPELINE_FILTER)
        if not path:
            return False
        if not path.lower().endswith(".json"):
            path += ".layerlab.json"
        self.settings.setValue("paths/pipelines", str(Path(path).parent))
        return self.save_pipeline_to(path)

    def save_pipeline_to(self, path: str) -> bool:
        try:
            self.document.pipeline.save(path)
        except OSError as e:
            self.show_error(f"Could not save {Path(path).name}: {e.strerror or e}")
            return False
        self._pipeline_name = pipeline_title(path)
        self.document.mark_saved(str(Path(path).resolve()))
        msg = f"Saved {Path(path).name}"
        if self.validation is not None and not self.validation.ok:
            msg += f" (it still has an error: {self.validation.error})"
        self.show_status(msg)
        self._schedule_autosave()
        return True

    # ------------------------------------------------------------------ document changes
    @Slot(object)
    def _document_changed(self, select: object) -> None:
        if self.document.path:
            self._pipeline_name = pipeline_title(self.document.path)
        self.run_errors = {}
        self.stack.model.run_errors = {}
        self._revalidate(select if isinstance(select, int) else None)
        mode = self.document.pipeline.input.mode
        i = self.mode_box.findData(mode)
        if i != self.mode_box.currentIndex():
            self.mode_box.setCurrentIndex(i)
        self._update_title()
        if self.document.last_note:
            self.show_status(self.document.last_note)
            self.document.last_note = None
        self.submit()
        self._schedule_autosave()

    def _revalidate(self, select: int | None = None) -> None:
        self.validation = validate(self.document.pipeline, self.image_hw())
        self._refreshing = True
        try:
            self.stack.refresh(self.validation, select)
        finally:
            self._refreshing = False
        self._layer_selected(self.stack.current_layer())

    @Slot()
    def _update_title(self, *_: object) -> None:
        image = "no image"
        if self.loaded is not None:
            image = Path(self.loaded.path).name if self.loaded.path else "pasted image"
        name = pipeline_title(self.document.path) if self.document.path else \
            self._pipeline_name
        self.setWindowTitle(f"{image} · {name}[*] — LayerLab")
        self.setWindowModified(self.document.modified)

    def current_layer(self) -> int | None:
        return self.stack.current_layer()

    @Slot(object)
    def _layer_selected(self, index: object) -> None:
        if self._refreshing:
            return  # _revalidate() calls again once the list is rebuilt
        layers = self.document.pipeline.layers
        i = index if isinstance(index, int) and 0 <= index < len(layers) else None
        layer = layers[i] if i is not None else None
        self.param_form.set_layer(i, layer)
        self.kernel_editor.set_layer(i, layer)
        for act in self.layer_actions:
            act.setEnabled(i is not None)
        self.move_up_act.setEnabled(i is not None and i > 0)
        self.move_down_act.setEnabled(i is not None and i < len(layers) - 1)
        self._update_form_status()
        changed = i != self._selected_layer
        self._selected_layer = i
        # The feature view follows a newly picked layer, not every edit of the same one (a
        # person tuning the first kernel may be watching the last stage).
        if i is not None and changed and not self._syncing_selection:
            stage = self._stage_of_layer(i)
            if stage is not None:
                self.stage_panel.select_stage(stage)

    def _update_form_status(self) -> None:
        i = self.param_form.layer_index
        if i is None or self.validation is None or i >= len(self.validation.layers):
            self.param_form.show_status(None, None, "")
            return
        status = self.validation.layers[i]
        error, field = status.error, status.field
        if error is None and i in self.run_errors:
            error, field = self.run_errors[i], None
        text = ""
        layer = self.document.pipeline.layers[i]
        if not layer.enabled:
            text = "This layer is disabled: the stack skips it."
        elif status.shape is not None:
            text = f"in {shape_text(status.in_shape)} → out {shape_text(status.shape)}"
            if status.formula and status.formula != "shape unchanged":
                text += "\n" + status.formula
        self.param_form.show_status(error, field, text)

    def _stage_of_layer(self, layer_index: int) -> int | None:
        for stage, (i, _layer) in enumerate(self.document.pipeline.enabled_layers(), start=1):
            if i == layer_index:
                return stage
        return None

    @Slot(int)
    def _stage_selected(self, stage: int) -> None:
        enabled = self.document.pipeline.enabled_layers()
        if 1 <= stage <= len(enabled):
            self._syncing_selection = True
            try:
                self.stack.select_layer(enabled[stage - 1][0])
            finally:
                self._syncing_selection = False

    # --- edits from the widgets ---
    def add_layer(self, type_name: str) -> None:
        cur = self.current_layer()
        index = len(self.document.pipeline.layers) if cur is None else cur + 1
        in_shape = in_shape_at(self.document.pipeline, index, self.image_hw())
        self.document.insert_layer(index, type_name, in_shape)

    def show_add_menu(self) -> None:
        button = self.stack.add_button
        self.dock.show()
        self.stack.add_menu.popup(button.mapToGlobal(button.rect().bottomLeft()))

    def remove_layer(self) -> None:
        i = self.current_layer()
        if i is not None:
            self.document.remove_layer(i)

    def duplicate_layer(self) -> None:
        i = self.current_layer()
        if i is not None:
            self.document.duplicate_layer(i)

    def move_layer(self, delta: int) -> None:
        i = self.current_layer()
        if i is not None:
            self.document.move_layer(i, i + delta)

    def toggle_layer(self) -> None:
        i = self.current_layer()
        if i is not None:
            layer = self.document.pipeline.layers[i]
            self.document.set_enabled(i, not layer.enabled)

    def rename_layer(self) -> None:
        i = self.current_layer()
        if i is not None:
            self.dock.show()
            self.stack.view.setFocus()
            self.stack.view.edit(self.stack.model.index(i, 0))

    @Slot(str, object)
    def _arg_edited(self, name: str, value: object) -> None:
        i = self.param_form.layer_index
        if i is not None and i < len(self.document.pipeline.layers):
            self.document.set_arg(i, name, value)

    @Slot(str, object, str, object)
    def _param_edited(self, pname: str, value: object, text: str, merge_key: object) -> None:
        i = self.kernel_editor.layer_index
        if i is not None and i < len(self.document.pipeline.layers):
            self.document.set_param(i, pname, np.asarray(value), text, merge_key=merge_key)

    @Slot(object)
    def _init_requested(self, init: object) -> None:
        i = self.kernel_editor.layer_index
        if i is not None and isinstance(init, dict):
            self.document.set_init(i, init)

    def _mode_picked(self, index: int) -> None:
        mode = self.mode_box.itemData(index)
        note = self.document.set_input_mode(mode)
        if note:
            self.show_status(note)

    def _device_picked(self, index: int) -> None:
        self.device = self.device_box.itemData(index)
        self.settings.setValue("prefs/device", self.device)
        self._last_run_key = None
        self.submit()

    # ------------------------------------------------------------------ running
    def _run_key(self, image: LoadedImage | None) -> tuple:
        return (id(self.document.pipeline), id(image), self.device)

    def submit(self, *, render_only: bool = False, full: bool = False) -> int | None:
        """Hand the current snapshot to the worker (the newest request wins)."""
        if self._closing:
            return None
        image = self.loaded if full else self.preview
        if image is None:
            return None
        validation = self.validation
        if full:  # the full image's shapes decide, not the preview's (a 20000 x 20 strip)
            w, h = image.size
            validation = validate(self.document.pipeline, (h, w))
        if validation is None or not validation.ok:
            err = validation.error if validation else "no pipeline"
            self.progress_label.setText("⚠ not run")
            self.progress_label.setToolTip(f"{err}\nThe pictures are from the last stack "
                                           f"that ran.")
            self.show_status(f"Not run: {err}", 15000)
            return None
        pipeline = self.document.pipeline
        self._run_kind = "full" if full else "render" if render_only else "preview"
        self._submitted_key = self._run_key(image)
        self._run_context = (pipeline, image)
        request = RunRequest(pipeline, image.image, self.stage_panel.render_options(),
                             self.device, render_only,
                             memory_budget=self.memory_budget_gb * 1024**3)
        return self.controller.submit(request)

    def run_or_stop(self) -> None:
        if self.controller.busy:
            self.stop()
        else:
            self._last_run_key = None
            self.submit()

    def stop(self) -> None:
        if self.controller.busy:
            self.controller.cancel()
            self.progress_label.setText("stopped")
            self.show_status("Stopped; the stages computed so far stay on screen")

    def run_full_size(self) -> None:
        if self.loaded is None:
            return
        if self.preview is not None and self.preview.size == self.loaded.size:
            self.show_status("The image is already run at full size")
            self.submit()
            return
        w, h = self.loaded.size
        check = validate(self.document.pipeline, (h, w))
        if not check.ok:
            self.show_error(f"Cannot run at full size: {check.error}")
            return
        self.show_status(f"Running the full {_size_text(self.loaded.size)} image…")
        self.submit(full=True)

    def busy(self) -> bool:
        return self.controller.busy

    @Slot(object)
    def _run_started(self, generation: object) -> None:
        self._run_errors_now = {}
        self._run_names = {}
        self.stage_panel.begin_run(int(generation))  # type: ignore[arg-type]
        ctx = getattr(self, "_run_context", None)
        if ctx is not None:
            self.stage_panel.set_context(ctx[0], ctx[1])
        self.progress_label.setText("running…")
        self.progress_label.setToolTip("")

    @Slot(object)
    def _stage_ready(self, view: StageView) -> None:
        r = view.result
        self.views[r.index] = view
        self._run_names[r.index] = r.name
        self.stage_panel.show_stage(view)
        if r.error and r.layer_index >= 0:
            self._run_errors_now[r.layer_index] = r.error
        total = len(self.document.pipeline.enabled_layers())
        prefix = "full size · " if self._run_kind == "full" else ""
        if r.index == 0:
            self.progress_label.setText(f"{prefix}input")
        else:
            self.progress_label.setText(f"{prefix}stage {r.index}/{total}: {r.name}")

    @Slot(object)
    def _run_finished(self, summary: RunSummary) -> None:
        self.last_summary = summary
        self.stage_panel.finish_run(summary)
        refused = bool(summary.error) and summary.stages == 0  # e.g. the memory budget
        if not summary.cancelled and not refused:
            for i in [i for i in self.views if i >= summary.stages]:
                del self.views[i]
            self.run_errors = dict(self._run_errors_now)
            self.stack.model.set_run_errors(self.run_errors)
            self._update_form_status()
            self._last_run_key = self._submitted_key
        if summary.error and not self._run_errors_now:
            self.show_error(f"The run failed: {summary.error}")
        elif summary.error:
            self.show_status(summary.error, 10000)
        self.progress_label.setText("stopped" if summary.cancelled else
                                    "⚠ error" if summary.error else
                                    "full size" if self._run_kind == "full" else "")
        self.progress_label.setToolTip(summary.error or "")
        self._show_timings(summary)

    def _show_timings(self, summary: RunSummary) -> None:
        parts = []
        for idx, secs in enumerate(summary.timings):
            if idx == 0:
                continue
            name = self._run_names.get(idx, f"stage {idx}")
            parts.append(f"{name} {secs * 1000:.1f}" if secs > 0 else f"{name} cached")
        layers = max(0, summary.stages - 1)
        head = (f"{summary.device} · {layers} stage{'s' if layers != 1 else ''} · "
                f"{summary.total_seconds * 1000:.1f} ms")
        full = head + (f" ({', '.join(parts)})" if parts else "")
        short = head + (f" ({', '.join(parts[:4])}{', …' if len(parts) > 4 else ''})"
                        if parts else "")
        self.timing_label.setText(short)
        self.timing_label.setToolTip(full + "\nper-stage times in ms; 'cached': unchanged "
                                     "since the last run, not recomputed")

    @Slot(bool)
    def _busy_changed(self, busy: bool) -> None:
        self.stop_act.setEnabled(busy)
        if busy:
            self._stop_visual_timer.start()
        else:
            self._stop_visual_timer.stop()
            self.run_act.setIconText("▶ Run")
            self.run_act.setText("&Run")
            self.run_act.setToolTip("Run the stack now (F5)")

    def _show_busy(self) -> None:
        if self.controller.busy:
            self.run_act.setIconText("■ Stop")
            self.run_act.setText("&Stop")
            self.run_act.setToolTip("Stop the current run (Esc)")

    @Slot(object)
    def _render_options_changed(self, options: object) -> None:
        if (not self.controller.busy and self._last_run_key is not None
                and self._last_run_key == self._run_key(self.preview)
                and self._run_kind != "full"):
            self.submit(render_only=True)
        else:
            self.submit()

    def wait_idle(self, qtbot, timeout: int = 20000) -> None:
        """For tests: wait until no run is in flight or pending."""
        qtbot.waitUntil(lambda: not self.controller.busy, timeout=timeout)

    # ------------------------------------------------------------------ messages
    @Slot(str)
    def show_status(self, text: str, timeout: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout)

    def show_error(self, text: str) -> None:
        """One clear, non-blocking message: the banner above the view and the status bar."""
        text = text[:1].upper() + text[1:] if text else text
        self.banner.show_message(text, "error")
        self.statusBar().showMessage(text, 15000)

    def show_shortcuts(self) -> None:
        rows = [(act.text().replace("&", ""), ", ".join(
            s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts()))
            for act in (self.open_image_act, self.paste_act, self.open_pipeline_act,
                        self.save_act, self.save_as_act, self.undo_act, self.redo_act,
                        self.add_layer_act, *self.layer_actions, self.run_act, self.stop_act,
                        self.full_size_act, self.shortcuts_act, self.quit_act)]
        rows.insert(self._index_after(rows, "Rename layer"),
                    ("Reorder layers", "drag a row in the list"))
        rows.append(("Open an image or pipeline", "drop the file onto the window"))
        rows.append(("Change a kernel value", "scroll over the cell, or ↑ / ↓"))
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(rows), 2, dialog)
        table.setHorizontalHeaderLabels(["Action", "Keys"])
        for r, (what, keys) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(what))
            table.setItem(r, 1, QTableWidgetItem(keys))
        table.verticalHeader().hide()
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lay = QVBoxLayout(dialog)
        lay.addWidget(table)
        dialog.resize(460, 520)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.shortcuts_dialog = dialog

    @staticmethod
    def _index_after(rows: list[tuple[str, str]], name: str) -> int:
        for i, (what, _) in enumerate(rows):
            if what.startswith(name):
                return i + 1
        return len(rows)

    def show_about(self) -> None:
        import torch

        box = QMessageBox(self)
        box.setWindowTitle("About LayerLab")
        box.setIconPixmap(self.windowIcon().pixmap(64, 64))
        box.setTextFormat(Qt.TextFormat.RichText)
        cuda = torch.cuda.get_device_name(0) if self._cuda_available() else "not available"
        box.setText(f"<h3>LayerLab {__version__}</h3><p>See what neural-network layers do to an "
                    f"image: every number shown is the one torch computes.</p>"
                    f"<p>torch {torch.__version__} · CUDA: {cuda}</p>")
        box.setStandardButtons(QMessageBox.StandardButton.Close)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.about_box = box

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self._closing:
            event.accept()
            return
        self._closing = True
        self._autosave_timer.stop()
        try:
            self.save_session()
            self.settings.setValue("window/geometry", self.saveGeometry())
            self.settings.setValue("window/state", self.saveState())
            self.settings.setValue("window/side_splitter", self.side_splitter.saveState())
            self.settings.sync()
        finally:
            self.controller.shutdown()
            self.stage_panel.shutdown()  # cancel and join a running export
        event.accept()

"""The LayerLab main window: layout only.

The layer stack and the selected layer's parameters / kernel sit in a dock on the left, the
stage panel (feature maps, histogram, statistics) in the centre, the explain panel (how a
clicked value was computed) in a dock on the right, a toolbar for the input mode,
the device and running, and a status bar with progress, preview size and timings.

What the user works on is the ``Session``; the ``Controller`` turns the widgets' intents into
session edits and runs; ``Files`` opens and saves; ``SessionStore`` keeps it all for next time.
This class builds the widgets, wires them to those, and is the controller's "window" view
(status bar, banner, title, toolbar state).
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSettings, QSize, Qt, QTimer, Slot
from PySide6.QtGui import (
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QIcon,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.preprocess import PRESETS, preset_of
from ..worker import RunController
from .actions import ACTIONS, LAYER_ACTIONS, SHORTCUT_LIST, WindowWideKeys, create_actions
from .animator import Animator
from .controller import Controller, Views
from .dialogs import MessageBanner, about_box, shortcuts_dialog
from .document import pipeline_title
from .export_dialog import StageExporter
from .files import ICON, IMAGE_SUFFIXES, PIPELINES, SAMPLES, Files
from .kernel_editor import KernelEditor
from .layer_stack import LayerStackWidget
from .panel_docks import PanelDocks
from .param_form import ParamForm
from .persistence import SessionStore
from .session import Session
from .stage_panel import StagePanel

PREVIEW_SIZES = (512, 768, 1024, 1536, 2048)
LOADING_TORCH = "loading torch…"
LOADING_TORCH_TIP = "torch is being imported; the first run starts as soon as it is there"
FIRST_PAINT_WAIT_MS = 1000
MEMORY_BUDGETS_GB = (1, 2, 4, 8, 16)


def default_size(available: QRect | None) -> tuple[int, int]:
    """The first window's size: large enough for the view's controls in one row beside the
    layer list (which needs 1366 pixels), no larger than the screen less a title bar."""
    w, h = 1440, 900
    if available is not None:
        w, h = min(w, available.width()), min(h, available.height() - 8)
    return w, h


class MainWindow(PanelDocks, QMainWindow):
    """The app window. ``start()`` loads the first image and stack and runs them."""

    def __init__(self, settings: QSettings | None = None,
                 runner: RunController | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings()
        self.runner = runner if runner is not None else RunController(self)
        if self.runner.parent() is None:
            self.runner.setParent(self)
        self._first_paint = False  # start() waits for it to release the first run
        self.session = Session(self)
        self.store = SessionStore(self.settings, self.session)
        self.store.load_preferences()

        self.setWindowTitle("LayerLab")
        if ICON.exists():
            self.setWindowIcon(QIcon(str(ICON)))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_central()
        self._build_side_panel()
        self._build_right_docks()
        self._build_model_dock()
        self.controller = Controller(self.session, self.runner, Views(
            window=self, stack=self.stack, form=self.param_form, kernel=self.kernel_editor,
            stages=self.stage_panel), self)
        self.files = Files(self.session, self.controller, self.settings, self)
        self.exporter = StageExporter(self.session, self.stage_panel.view_mode, self)
        self.animator = Animator(self.session, self)
        self.actions = create_actions(self, self.session.undo_group)
        for name in ("remove", "duplicate", "move_up", "move_down"):
            self.stack.add_tool_action(self.actions[name])
        self._window_keys = WindowWideKeys(self, [self.actions["undo"], self.actions["redo"]])
        self.update_model_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_status_bar()
        self._connect()

        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(500)
        self._autosave_timer.timeout.connect(self.store.save)
        self._busy_look_timer = QTimer(self)  # a short run never flickers the Run button
        self._busy_look_timer.setSingleShot(True)
        self._busy_look_timer.setInterval(150)
        self._busy_look_timer.timeout.connect(self._show_busy)
        if not self.store.restore_layout(self, self.side_splitter):
            screen = QGuiApplication.primaryScreen()
            self.resize(*default_size(screen.availableGeometry() if screen else None))
        self.stage_panel.set_render_options(self.session.render_options)
        self._model_shown()  # a restored layout never shows an empty model tree

    # ------------------------------------------------------------------ construction
    def _build_central(self) -> None:
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.setSpacing(4)
        self.banner = MessageBanner()
        lay.addWidget(self.banner)
        self.stage_panel = StagePanel(self.session)
        lay.addWidget(self.stage_panel, 1)
        self.setCentralWidget(central)

    def _build_side_panel(self) -> None:
        self.stack = LayerStackWidget(self.session.document)
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
        self._wants_kernel_tab = False
        self._switching_tabs = False
        self.tabs.currentChanged.connect(self._tab_picked)
        self.side_splitter = QSplitter(Qt.Orientation.Vertical)
        self.side_splitter.addWidget(self.stack)
        self.side_splitter.addWidget(self.tabs)
        self.side_splitter.setStretchFactor(0, 2)
        self.side_splitter.setStretchFactor(1, 3)
        self.side_splitter.setChildrenCollapsible(False)
        # Room for the 9 layers of the CIFAR-10 tutorial net above a Conv2d's whole form.
        self.side_splitter.setSizes([250, 400])
        self.dock = QDockWidget("Layers", self)
        self.dock.setObjectName("layersDock")
        # Closable, so that View > Layers can hide it and bring it back.
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable |
                              QDockWidget.DockWidgetFeature.DockWidgetFloatable |
                              QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.dock.setWidget(self.side_splitter)
        self.dock.setMinimumWidth(340)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.resizeDocks([self.dock], [380], Qt.Orientation.Horizontal)

    def _build_menus(self) -> None:
        a = self.actions
        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addAction(a["new_pipeline"])
        m.addSeparator()
        m.addAction(a["open_image"])
        self.samples_menu = m.addMenu("Sa&mple images")
        for path in sorted(SAMPLES.glob("*")) if SAMPLES.is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                act = self.samples_menu.addAction(path.name)
                act.triggered.connect(lambda _=False, p=str(path): self.files.open_image_path(p))
        self.recent_menu = m.addMenu("&Recent images")
        self.recent_menu.aboutToShow.connect(
            lambda: self.files.fill_recent_menu(self.recent_menu))
        self.files.fill_recent_menu(self.recent_menu)
        m.addSeparator()
        m.addAction(a["open_pipeline"])
        self.recent_pipelines_menu = m.addMenu("Recent pi&pelines")
        self.recent_pipelines_menu.aboutToShow.connect(
            lambda: self.files.fill_recent_menu(self.recent_pipelines_menu, "pipelines"))
        self.files.fill_recent_menu(self.recent_pipelines_menu, "pipelines")
        self.examples_menu = m.addMenu("&Example pipelines")
        for path in sorted(PIPELINES.glob("*.layerlab.json")) if PIPELINES.is_dir() else []:
            act = self.examples_menu.addAction(pipeline_title(str(path)))
            act.setToolTip(str(path.name))
            act.triggered.connect(lambda _=False, p=str(path): self.files.open_example(p))
        m.addAction(a["save"])
        m.addAction(a["save_as"])
        m.addAction(a["load_weights"])
        m.addAction(a["load_labels"])
        m.addAction(a["open_model"])
        m.addAction(a["save_model_weights"])
        m.addAction(a["reset_model_weights"])
        m.addSeparator()
        self.export_menu = m.addMenu("E&xport")
        for act in self.exporter.actions():
            self.export_menu.addAction(act)
        self.export_menu.addAction(self.animator.action)
        m.addSeparator()
        m.addAction(a["quit"])

        e = bar.addMenu("&Edit")
        e.addAction(a["undo"])
        e.addAction(a["redo"])
        e.addSeparator()
        e.addAction(a["paste"])
        e.addSeparator()
        e.addMenu(self.stack.add_menu)
        for name in LAYER_ACTIONS:
            e.addAction(a[name])

        v = bar.addMenu("&View")
        self.preview_actions = self._choice_menu(
            v.addMenu("&Preview size"), PREVIEW_SIZES, "{} px (longest side)",
            self.session.preview_max, self.set_preview_max)
        self.budget_actions = self._choice_menu(
            v.addMenu("&Memory budget"), MEMORY_BUDGETS_GB, "{} GB of stage outputs",
            self.session.memory_budget_gb, self.set_memory_budget,
            "A stack whose stage outputs would need more is refused before it runs, with the "
            "estimate")
        v.addSeparator()
        v.addAction(a["zoom_fit"])
        v.addAction(a["zoom_actual"])
        v.addSeparator()
        v.addAction(self.dock.toggleViewAction())
        v.addAction(self.explain_dock.toggleViewAction())
        v.addAction(self.compare_dock.toggleViewAction())
        v.addAction(self.fit_dock.toggleViewAction())
        v.addAction(self.visual_dock.toggleViewAction())
        v.addAction(self.why_dock.toggleViewAction())
        self._compare_menu(bar)

        r = bar.addMenu("&Run")
        for name in ("run", "stop", "full_size"):
            r.addAction(a[name])
        r.addSeparator()
        r.addAction(a["fit_kernel"])

        h = bar.addMenu("&Help")
        h.addAction(a["shortcuts"])
        h.addAction(a["about"])

    def _choice_menu(self, menu, values, label: str, current: int, pick, tip: str = ""):
        """A menu of checkable, exclusive values; returns {value: action}."""
        menu.setToolTipsVisible(True)
        group = QActionGroup(self)
        made = {}
        for value in values:
            act = menu.addAction(label.format(value))
            act.setCheckable(True)
            act.setChecked(value == current)
            if tip:
                act.setToolTip(tip)
            act.triggered.connect(lambda _=False, v=value: pick(v))
            group.addAction(act)
            made[value] = act
        return made

    def _build_toolbar(self) -> None:
        a = self.actions
        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setIconSize(QSize(16, 16))
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for group in (("open_image", "open_pipeline", "save"), ("undo", "redo"),
                      ("run", "full_size")):
            for name in group:
                tb.addAction(a[name])
            tb.addSeparator()
        tb.addWidget(QLabel(" Input "))
        self.mode_box = QComboBox()
        self.mode_box.addItem("RGB", "rgb")
        self.mode_box.addItem("Grayscale", "gray")
        self.mode_box.setToolTip("Input mode: 3 colour channels, or 1 gray channel (Pillow's "
                                 "'L' conversion, as in the tutorials)")
        tb.addWidget(self.mode_box)
        tb.addWidget(QLabel("  Normalize "))
        self.normalize_box = QComboBox()
        for p in PRESETS:
            self.normalize_box.addItem(p.name, p.name)
            self.normalize_box.setItemData(self.normalize_box.count() - 1, p.help,
                                           Qt.ItemDataRole.ToolTipRole)
        self.normalize_box.setToolTip("transforms.Normalize on the input, as trained models "
                                      "expect it; shown as its own stage after the input")
        tb.addWidget(self.normalize_box)
        tb.addWidget(QLabel("  Device "))
        self.device_box = QComboBox()
        self.device_box.addItem("CPU", "cpu")  # CUDA joins once torch has looked for it
        self.device_box.setToolTip("Where torch computes the stages")
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
        c = self.controller
        self.stack.currentLayerChanged.connect(c.on_layer_selected)
        self.stack.addRequested.connect(c.on_add_layer)
        doc = self.session.document
        model = self.stack.model
        model.enabledRequested.connect(doc.set_enabled)
        model.renameRequested.connect(doc.rename_layer)
        model.moveRequested.connect(doc.move_layer)
        self.param_form.argEdited.connect(c.on_arg_edited)
        self.param_form.valueEdited.connect(c.on_cell_edited)
        self.param_form.statusMessage.connect(self.show_status)
        k = self.kernel_editor
        k.cellEdited.connect(c.on_cell_edited)
        k.paramEdited.connect(c.on_param_edited)
        k.initRequested.connect(c.on_init_requested)
        k.sliceChanged.connect(c.on_kernel_slice)
        k.statusMessage.connect(self.show_status)
        p = self.stage_panel
        p.stagePicked.connect(c.on_stage_picked)
        self.model_tree.stagePicked.connect(c.on_stage_picked)
        p.explainRequested.connect(c.on_explain)
        p.explainRequested.connect(lambda *_: self.show_dock(self.explain_dock))
        p.lookForRequested.connect(self.look_for)
        p.channelPicked.connect(c.on_channel_picked)
        p.optionsEdited.connect(c.on_render_options)
        p.rangeEdited.connect(c.on_display_range)
        p.rangeReset.connect(c.on_display_range_reset)
        p.statusMessage.connect(self.show_status)
        self.exporter.statusMessage.connect(self.show_status)
        self.animator.statusMessage.connect(self.show_status)
        self.mode_box.activated.connect(lambda i: c.on_input_mode(self.mode_box.itemData(i)))
        self.normalize_box.activated.connect(
            lambda i: c.on_normalize_preset(self.normalize_box.itemData(i)))
        self.device_box.activated.connect(self._device_picked)
        self.runner.torchLoaded.connect(self._torch_loaded)

    # ------------------------------------------------------------------ start and preferences
    def start(self, image: str | None = None, pipeline: str | None = None) -> None:
        """Open the given files, else what the last session had, else the sample and the
        default stack; then run. The photo shows at once; torch loads in the worker thread
        meanwhile and the first run follows it."""
        loading = self.runner.torch_info is None
        if not loading:
            self._torch_loaded(self.runner.torch_info)
        elif self.isVisible() and not self.runner.synchronous:
            # The first run waits for the first paint (torch's import, in the worker thread,
            # would slow the painting down); a window that is not painted soon starts anyway.
            self.runner.hold()
            self._first_paint = True
            QTimer.singleShot(FIRST_PAINT_WAIT_MS, self.runner.release)
        else:
            self.runner.load_torch()
        self.files.start(image, pipeline, self.store.restore_pipeline)
        if loading:
            self.set_progress(LOADING_TORCH, LOADING_TORCH_TIP)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().paintEvent(event)
        if self._first_paint:
            self._first_paint = False
            QTimer.singleShot(0, self.runner.release)  # once this paint is on the screen

    @Slot(object)
    def _torch_loaded(self, info) -> None:
        """torch is there: offer CUDA where it found it. The session's device stays "auto"
        until the user picks one (the engine takes CUDA when there is one); the box shows
        which that is."""
        if info.cuda and self.device_box.findData("cuda") < 0:
            self.device_box.addItem("CUDA", "cuda")
            self.device_box.setItemData(1, info.cuda_name, Qt.ItemDataRole.ToolTipRole)
        device = self.session.device
        if device == "auto":
            device = "cuda" if info.cuda else "cpu"
        self.device_box.setCurrentIndex(max(0, self.device_box.findData(device)))
        if self.progress_label.text() == LOADING_TORCH:
            self.set_progress("running…")

    def set_preview_max(self, size: int) -> None:
        for s, act in self.preview_actions.items():
            act.setChecked(s == size)
        self.controller.set_preview_max(size)
        self.store.save_preferences()

    def set_memory_budget(self, gb: int) -> None:
        for g, act in self.budget_actions.items():
            act.setChecked(g == gb)
        self.controller.set_memory_budget(gb)
        self.store.save_preferences()

    def _device_picked(self, index: int) -> None:
        self.controller.on_device(self.device_box.itemData(index))
        self.store.save_preferences()

    def schedule_autosave(self) -> None:
        if not self.controller.closing:
            self._autosave_timer.start()

    # ------------------------------------------------------------------ the controller's view
    @Slot(str)
    def show_status(self, text: str, timeout: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout)
        self.statusBar().setToolTip(text)  # a long message is cut on screen: whole on hover

    def clear_status(self, starting: str) -> None:
        """Take back the status message if it still says ``starting...`` (it no longer
        holds, e.g. "Not run: ..." once the stack runs again)."""
        if self.statusBar().currentMessage().startswith(starting):
            self.statusBar().clearMessage()
            self.statusBar().setToolTip("")

    def show_error(self, text: str) -> None:
        """One clear, non-blocking message: the banner above the view and the status bar."""
        text = text[:1].upper() + text[1:] if text else text
        self.banner.show_message(text, "error")
        self.show_status(text, 15000)

    def show_banner(self, text: str, kind: str) -> None:
        self.banner.show_message(text, kind)

    def hide_banner(self) -> None:
        self.banner.hide()

    def set_progress(self, text: str, tip: str = "") -> None:
        if text == "running…" and self.runner.torch_info is None:  # the first run waits
            text, tip = LOADING_TORCH, LOADING_TORCH_TIP
        self.progress_label.setText(text)
        self.progress_label.setToolTip(tip)

    def set_preview_text(self, text: str, tip: str) -> None:
        self.preview_label.setText(text)
        self.preview_label.setToolTip(tip)

    def set_timings(self, text: str, tip: str) -> None:
        self.timing_label.setText(text)
        self.timing_label.setToolTip(tip)

    def set_title(self, title: str, modified: bool) -> None:
        self.setWindowTitle(title)
        self.setWindowModified(modified)

    def set_input(self, spec) -> None:
        """The toolbar shows the input's mode and normalisation preset."""
        i = self.mode_box.findData(spec.mode)
        if i != self.mode_box.currentIndex():
            self.mode_box.setCurrentIndex(i)
        name = preset_of(spec.normalize, spec.channels)
        if name is None:  # custom numbers from a pipeline file
            self.normalize_box.setCurrentIndex(-1)
            self.normalize_box.setToolTip(f"custom: {spec.normalize.text()}")
        else:
            self.normalize_box.setCurrentIndex(self.normalize_box.findData(name))

    def set_layer_actions(self, index: int | None, count: int) -> None:
        for name in LAYER_ACTIONS:
            self.actions[name].setEnabled(index is not None)
        self.actions["move_up"].setEnabled(index is not None and index > 0)
        self.actions["move_down"].setEnabled(index is not None and index < count - 1)

    def show_editor_for(self, layer) -> None:
        """The Kernel tab only where there is a kernel: a ReLU selected while on it shows its
        Parameters, and the next Conv2d brings the Kernel tab back."""
        has_kernel = layer is not None and layer.op.kernel is not None
        want = 1 if has_kernel and self._wants_kernel_tab else 0
        self._switching_tabs = True  # (disabling the current tab switches tabs too)
        try:
            self.tabs.setTabEnabled(1, has_kernel)
            self.tabs.setCurrentIndex(want)
        finally:
            self._switching_tabs = False

    def _tab_picked(self, index: int) -> None:
        if not self._switching_tabs:  # the user's choice, remembered across layers
            self._wants_kernel_tab = index == 1

    def set_busy(self, busy: bool) -> None:
        self.actions["stop"].setEnabled(busy)
        if busy:
            self._busy_look_timer.start()
            return
        self._busy_look_timer.stop()
        run = self.actions["run"]
        run.setIconText("▶ Run")
        run.setText("&Run")
        run.setToolTip("Run the stack now (F5)")

    def _show_busy(self) -> None:
        if self.runner.busy:
            run = self.actions["run"]
            run.setIconText("■ Stop")
            run.setText("&Stop")
            run.setToolTip("Stop the current run (Esc)")

    # ------------------------------------------------------------------ window-level actions
    def show_add_menu(self) -> None:
        button = self.stack.add_button
        self.dock.show()
        self.stack.add_menu.popup(button.mapToGlobal(button.rect().bottomLeft()))

    def rename_layer(self) -> None:
        i = self.session.layer
        if i is not None:
            self.dock.show()
            self.stack.view.setFocus()
            self.stack.view.edit(self.stack.model.index(i, 0))

    def show_shortcuts(self) -> None:
        names = {spec.name: spec.text for spec in ACTIONS}
        self.shortcuts_dialog = shortcuts_dialog(
            self, [(names[n], self.actions[n]) for n in SHORTCUT_LIST])
        self.shortcuts_dialog.show()

    def show_about(self) -> None:
        info = self.runner.torch_info
        self.about_box = about_box(self, info.cuda_name if info else None)
        self.about_box.open()

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
        event.acceptProposedAction()
        self.files.drop(event.mimeData())

    def settle_model_edits(self, doing: str) -> bool:
        """Before ``doing`` (quit, open ...) over unsaved weight edits: True once the person
        saved them (Save, while the model is shown) or chose to drop them (Discard)."""
        s = self.session
        model = s.model if s.model is not None else (s.parked_model or (None,))[0]
        name = model.name if model is not None else "the model"
        buttons = QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel
        if s.model is not None:
            buttons |= QMessageBox.StandardButton.Save
            text = (f"The weights of {name} have edits that are not saved. Save them before "
                    f"you {doing}?")
        else:  # parked behind the stack: they save once the model is shown again
            text = (f"The weights of {name} have edits that are not saved (File > Open "
                    f"model… {name} again shows them, to save). Discard them and {doing}?")
        answer = QMessageBox.question(self, "Unsaved weight edits", text, buttons,
                                      QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.files.save_model_weights_dialog()
        return answer == QMessageBox.StandardButton.Discard

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self.controller.closing:
            event.accept()
            return
        if self.session.weight_edits_unsaved and not self.settle_model_edits("quit"):
            event.ignore()
            return
        self.controller.closing = True
        self._window_keys.stop()
        self._autosave_timer.stop()
        try:
            self.store.save()
            self.store.save_layout(self, self.side_splitter)
            self.store.close()  # the newest stack is on disk before the window goes
        finally:
            self.controller.shutdown()
            self.exporter.shutdown()  # cancel and join a running export
            self.animator.shutdown()
            self._shutdown_panels()
        event.accept()

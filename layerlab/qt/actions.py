"""Every window action in one table: text, keys, tip, and what it triggers.

``trigger`` is a path from the window (``files.open_image_dialog``: the window's ``files``,
its ``open_image_dialog``) called with ``args``. ``scope`` names the widget a shortcut is
local to (Del and Space act in the layer list only, so they keep their meaning in text
fields). ``undo``/``redo`` come from the undo stack, which keeps their text and state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QLineEdit, QWidget

SK = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    name: str  # the window gets it as ``actions[name]``
    text: str
    trigger: str
    keys: tuple = ()
    tip: str = ""
    icon_text: str = ""
    scope: str | None = None
    args: tuple = ()


ACTIONS = (
    ActionSpec("new_pipeline", "&New pipeline", "files.new_pipeline", (SK.New,),
               "Start an empty stack (the current one stays a Ctrl+Z away)"),
    ActionSpec("open_image", "&Open image…", "files.open_image_dialog", (SK.Open,),
               "Open an image file (or drop one onto the window)", "Open image"),
    ActionSpec("paste", "&Paste image", "files.paste_image", (SK.Paste,),
               "Use the image (or image file) on the clipboard"),
    ActionSpec("open_pipeline", "Open &pipeline…", "files.open_pipeline_dialog",
               ("Ctrl+Shift+O",), "Open a *.layerlab.json stack", "Open pipeline"),
    ActionSpec("save", "&Save pipeline", "files.save_pipeline", (SK.Save,),
               "Save the stack to its file", "Save"),
    ActionSpec("save_as", "Save pipeline &as…", "files.save_pipeline_as", ("Ctrl+Shift+S",),
               "Save the stack to a new file"),
    ActionSpec("load_weights", "Load &weights…", "files.load_weights_dialog",
               ("Ctrl+Shift+L",), "Put a trained state_dict (.pt, .pth, .safetensors) onto "
               "the stack's layers"),
    ActionSpec("load_labels", "Load &class names…", "files.load_labels_dialog", (),
               "Name the classes of the stack's output: a text file with one name per line, "
               "or a .json list"),
    ActionSpec("open_model", "Open &model…", "files.open_model_dialog", (),
               "Look at a torchvision classification model (resnet18, vgg16, ...) stage by "
               "stage, with random or trained weights"),
    ActionSpec("save_model_weights", "Save model wei&ghts…", "files.save_model_weights_dialog",
               (), "Write the model's weights, with your edits, as a .safetensors state_dict "
               "(Open model with that file, or --weights FILE, loads them)"),
    ActionSpec("reset_model_weights", "Reset model weights", "controller.model_weights.reset",
               (), "Undo every weight edit of the model at once (one undo step)"),
    ActionSpec("quit", "&Quit", "close", (SK.Quit,), "Close LayerLab (your work is kept)"),
    ActionSpec("undo", "&Undo", "undo", (SK.Undo,), icon_text="Undo"),
    ActionSpec("redo", "&Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), icon_text="Redo"),
    ActionSpec("add_layer", "&Add layer…", "show_add_menu", ("Ctrl+L",),
               "Add a layer after the selected one"),
    ActionSpec("remove", "&Remove layer", "controller.on_remove_layer", (SK.Delete,),
               "Remove the selected layer (Del)", "Remove", scope="stack"),
    ActionSpec("duplicate", "D&uplicate layer", "controller.on_duplicate_layer", ("Ctrl+D",),
               "Duplicate the selected layer (Ctrl+D)", "Duplicate"),
    ActionSpec("move_up", "Move layer &up", "controller.on_move_layer", ("Alt+Up",),
               "Move the selected layer up (Alt+Up)", "↑", args=(-1,)),
    ActionSpec("move_down", "Move layer do&wn", "controller.on_move_layer", ("Alt+Down",),
               "Move the selected layer down (Alt+Down)", "↓", args=(1,)),
    ActionSpec("toggle", "&Enable / disable layer", "controller.on_toggle_layer", ("Space",),
               "Switch the selected layer on or off (Space)", scope="stack.view"),
    ActionSpec("rename", "Re&name layer", "rename_layer", ("F2",),
               "Rename the selected layer (F2 or double-click)", scope="stack"),
    ActionSpec("zoom_fit", "&Fit to window", "stage_panel.zoom_to_fit", ("Ctrl+0",),
               "Show the whole picture (Ctrl+0)"),
    ActionSpec("zoom_actual", "&Actual size", "stage_panel.zoom_actual_size", ("Ctrl+1",),
               "One picture pixel per screen pixel (Ctrl+1)"),
    ActionSpec("run", "&Run", "controller.on_run_or_stop", ("F5",),
               "Run the stack now (F5); while it runs: stop (Esc)", "▶ Run"),
    ActionSpec("stop", "&Stop", "controller.on_stop", ("Esc",), "Stop the current run (Esc)"),
    ActionSpec("full_size", "Run at &full size", "controller.on_run_full_size",
               ("Ctrl+Shift+R",), "Run the full-resolution image once (editing uses a preview)",
               "Full size"),
    ActionSpec("fit_kernel", "&Fit kernel…", "show_fit_panel", (),
               "Let the selected layer's weights learn to match a target (a kernel preset, "
               "another stack, an image), live"),
    ActionSpec("shortcuts", "&Keyboard shortcuts", "show_shortcuts", (SK.HelpContents,),
               "List the keyboard shortcuts (F1)"),
    ActionSpec("about", "&About LayerLab", "show_about"),
)

LAYER_ACTIONS = ("remove", "duplicate", "move_up", "move_down", "toggle", "rename")
SHORTCUT_LIST = ("new_pipeline", "open_image", "paste", "open_pipeline", "save", "save_as",
                 "load_weights",
                 "undo", "redo", "add_layer", *LAYER_ACTIONS, "zoom_fit", "zoom_actual", "run", "stop",
                 "full_size", "shortcuts", "quit")


def _resolve(root: object, path: str) -> object:
    return reduce(getattr, path.split("."), root)


def create_actions(window, undo_stack) -> dict[str, QAction]:
    """The table's actions, added to the window (or to their scope widget)."""
    made: dict[str, QAction] = {}
    for spec in ACTIONS:
        owner = _resolve(window, spec.scope) if spec.scope else window
        if spec.trigger == "undo":
            act = undo_stack.createUndoAction(owner, spec.text)
        elif spec.trigger == "redo":
            act = undo_stack.createRedoAction(owner, spec.text)
        else:
            act = QAction(spec.text, owner)
            act.triggered.connect(
                lambda _=False, s=spec: _resolve(window, s.trigger)(*s.args))
        if spec.keys:
            act.setShortcuts([QKeySequence(k) for k in spec.keys])
        if spec.scope:
            act.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        if spec.tip:
            act.setToolTip(spec.tip)
            act.setStatusTip(spec.tip)
        if spec.icon_text:
            act.setIconText(spec.icon_text)
        owner.addAction(act)
        made[spec.name] = act
    made["stop"].setEnabled(False)
    return made


class WindowWideKeys(QObject):
    """Lets the window's Undo/Redo keys work while a text field has the focus.

    A line edit (every spin box has one) claims Ctrl+Z for its own one-field undo, so the
    window's action never fires there: exactly where the cursor is after typing a bad value.
    This declines that claim for widgets inside ``window``. It watches only the widget that
    has the focus (the one a key goes to): a filter on the whole application would run
    Python for every event of every widget, hundreds per edit.
    """

    def __init__(self, window: QWidget, actions: list[QAction]):
        super().__init__(window)
        self.window = window
        self.keys = [k for a in actions for k in a.shortcuts()]
        self._watched: list[QWidget] = []
        QApplication.instance().focusChanged.connect(self._follow_focus)

    def _follow_focus(self, _old: QWidget | None, new: QWidget | None) -> None:
        for widget in self._watched:
            try:
                widget.removeEventFilter(self)
            except RuntimeError:  # the widget is gone already
                pass
        self._watched = []
        if new is not None and self.window.isAncestorOf(new):
            # a spin box has the focus, its line edit the text (the key may go to either)
            self._watched = [new, *new.findChildren(QLineEdit,
                                                    options=Qt.FindChildOption.FindDirectChildrenOnly)]
            for widget in self._watched:
                widget.installEventFilter(self)

    def stop(self) -> None:
        """The window closes: follow the focus no more."""
        QApplication.instance().focusChanged.disconnect(self._follow_focus)
        self._follow_focus(None, None)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ShortcutOverride:
            pressed = QKeySequence(event.keyCombination())
            if any(pressed.matches(k) == QKeySequence.SequenceMatch.ExactMatch
                   for k in self.keys):
                event.ignore()  # not the field's: the window's shortcut handles it
                return True
        return False

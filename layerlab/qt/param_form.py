"""The parameter form: one generic builder that turns an OpSpec's params into editors.

Each parameter kind maps to one small editor class (``EDITORS``, from ``fields``); nothing here
knows about a particular op. The form emits ``argEdited(name, value)`` with the value in the
pipeline's JSON form; the controller records it in the document and tells the form what is
wrong, if anything.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis import parameter_shapes
from ..core.edits import materialize
from ..core.pipeline import LayerSpec
from ..core.specs import Param
from . import theme
from .fields import (
    BoolEditor,
    ChoiceEditor,
    FieldEditor,
    FloatEditor,
    IntEditor,
    IntsEditor,
    OptBoolEditor,
    OptionalEditor,
    Pad4Editor,
    PaddingEditor,
    PairEditor,
)
from .value_table import ValueTable, vector_params

# The editor class for each ``Param.widget`` (the spec decides the widget, not a name here).
EDITORS: dict[str, type[FieldEditor]] = {
    "int": IntEditor, "float": FloatEditor, "check": BoolEditor, "choice": ChoiceEditor,
    "pair": PairEditor, "padding": PaddingEditor, "pad4": Pad4Editor, "ints": IntsEditor,
    "tristate": OptBoolEditor,
}


def make_editor(param: Param) -> FieldEditor:
    """The editor for one parameter: its widget from the table, with a null switch (labelled
    by the spec, e.g. a pool stride's "auto") when the parameter may be null."""
    editor = EDITORS[param.widget](param)
    return OptionalEditor(param, editor, param.none_label) if param.nullable else editor


# --- the form --------------------------------------------------------------------------------


class ParamForm(QWidget):
    """The selected layer's arguments. Updates in place while the same layer stays selected,
    so a spin box keeps focus (and its drag) across the re-runs its edits cause."""

    argEdited = Signal(str, object)  # parameter name, value in JSON form
    # One entry of a learned vector (PReLU's slopes, a norm's statistics) was typed:
    # layer, tensor name, position, value (the kernel editor's cellEdited, for other ops).
    valueEdited = Signal(int, str, object, float)
    statusMessage = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._type: str | None = None
        self._index: int | None = None
        self.editors: dict[str, FieldEditor] = {}
        self.labels: dict[str, QLabel] = {}

        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 6)
        outer.setSpacing(6)
        self.title = QLabel()
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        outer.addWidget(self.title)
        self.body = QWidget()
        self.form = QFormLayout(self.body)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        outer.addWidget(self.body)
        self.error = QLabel()
        self.error.setObjectName("paramError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"color: {theme.ERROR};")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        outer.addWidget(self.error)
        self.shape = QLabel()
        self.shape.setObjectName("paramShape")
        self.shape.setWordWrap(True)
        self.shape.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.shape.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        outer.addWidget(self.shape)
        self.values_group = QGroupBox("Learned values")
        self.values_group.setToolTip("The layer's tensors entry by entry; type a number to "
                                     "change one (one undo step)")
        vl = QVBoxLayout(self.values_group)
        vl.setContentsMargins(6, 6, 6, 6)
        self.values_table = ValueTable()
        self.values_table.setMinimumHeight(90)
        self.values_table.valueEdited.connect(self._value_edited)
        self.values_table.rejected.connect(self.statusMessage)
        vl.addWidget(self.values_table)
        self.values_group.hide()
        outer.addWidget(self.values_group, 1)
        outer.addStretch(1)
        self.set_layer(None, None)

    @property
    def layer_index(self) -> int | None:
        return self._index

    def show_note(self, text: str) -> None:
        """No layer's parameters, and why (rich text)."""
        self.set_layer(None, None)
        self.title.setText(text)

    def set_layer(self, index: int | None, layer: LayerSpec | None) -> None:
        if layer is None:
            self._clear()
            self._type = self._index = None
            self.title.setText("<i>Select a layer to edit its parameters.</i>")
            self.error.hide()
            self.shape.clear()
            self.values_group.hide()
            return
        if layer.type != self._type or index != self._index:
            self._build(layer)
            self._type, self._index = layer.type, index
        self.title.setText(f"<b>{layer.display_name(index or 0)}</b> · {layer.type}<br>"
                           f"<span style='color: palette(mid)'>{layer.op.help}</span>")
        for name, editor in self.editors.items():
            if name in layer.args:
                editor.set_value(layer.args[name])
            if isinstance(editor, OptionalEditor):
                # What null means for this layer: "auto (= 2)", the value torch then uses.
                param = layer.op.param(name)
                follows = layer.args.get(param.none_follows) if param.none_follows else None
                editor.show_null_meaning(param.none_text(layer.args), follows)
        self._show_values(layer)

    def _show_values(self, layer: LayerSpec) -> None:
        """Learned vectors of ops the kernel editor does not cover (it shows a conv's bias)."""
        vectors: dict = {}
        try:
            # Only ops whose every tensor is a vector (never build a big Linear's weight here).
            shapes = parameter_shapes(layer) if layer.op.kernel is None else {}
            if shapes and all(len(s) == 1 for s in shapes.values()):
                vectors = vector_params(materialize(layer))
        except Exception:  # invalid arguments: the form says why; nothing to list
            vectors = {}
        self.values_group.setVisible(bool(vectors))
        if vectors:
            self.values_table.show_values(vectors)

    def _value_edited(self, name: str, row: int, value: float) -> None:
        if self._index is not None:
            self.valueEdited.emit(self._index, name, (row,), value)

    def _clear(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors.clear()
        self.labels.clear()

    def _build(self, layer: LayerSpec) -> None:
        self._clear()
        for p in layer.op.params:
            editor = make_editor(p)
            editor.setObjectName(f"param_{p.name}")
            editor.edited.connect(lambda v, n=p.name: self.argEdited.emit(n, v))
            label = QLabel(p.name)
            label.setToolTip(p.help)
            label.setBuddy(editor)
            self.form.addRow(label, editor)
            self.editors[p.name] = editor
            self.labels[p.name] = label
        if not layer.op.params:
            note = QLabel("This layer has no parameters.")
            note.setEnabled(False)
            self.form.addRow(note)

    def show_status(self, error: str | None, field: str | None, shape_text: str = "") -> None:
        """The reason a value is not accepted (red, under the form) and the output shape."""
        for name, editor in self.editors.items():
            bad = error is not None and name == field
            editor.set_error(bad)
            label = self.labels[name]
            label.setStyleSheet(f"color: {theme.ERROR}; font-weight: bold;" if bad else "")
        if error:
            self.error.setText(f"⚠ {error}")
            self.error.show()
        else:
            self.error.hide()
            self.error.clear()
        self.shape.setText(shape_text)

"""File > Open model: a torchvision classification model and its weights.

The weights are seeded random ones, torchvision's trained ones from torch's hub cache (the
dialog says where it looks and whether the file is there: nothing is downloaded), or a
state_dict file. ``accepted`` means: open :meth:`ModelDialog.spec`; the worker builds it.

AlexNet and the VGGs are plain chains of layers: they open as an editable stack by default
(:meth:`ModelDialog.as_stack`; every layer, kernel and weight can then be edited, saved and
exported as code), and in the model view when the box is cleared. Other models open in the
model view only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.models import (
    TRAINED,
    ModelSpec,
    classification_models,
    hub_weights_path,
    is_chain_model,
)

STACK_TIP = ("A plain chain of layers (features, avgpool, flatten, classifier) becomes the "
             "stack: every layer, kernel and weight can be edited (Ctrl+Z brings the previous "
             "stack back). Cleared: the model view shows its stages without editing.")
NOT_CHAIN_TIP = ("This model has branches or operations outside its layers (residual "
                 "additions, concatenations): it opens in the model view.")

RANDOM, HUB, FILE = 0, 1, 2


class ModelDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, *, choose_file: Callable[[], str]
                 | None = None, name: str = "resnet18"):
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self._choose_file = choose_file
        self.names = QComboBox(self)
        self.names.addItems(classification_models())
        self.names.setCurrentText(name)
        self.names.setToolTip("torchvision's classification models")
        self.kind = QButtonGroup(self)
        self.random = QRadioButton("&Random weights, seed", self)
        self.trained = QRadioButton("&Trained weights from torch's hub cache", self)
        self.from_file = QRadioButton("Weights &file (.pt, .pth, .safetensors)", self)
        for i, button in enumerate((self.random, self.trained, self.from_file)):
            self.kind.addButton(button, i)
        self.random.setChecked(True)
        self.seed = QSpinBox(self)
        self.seed.setRange(0, 2**31 - 1)
        self.hub_note = QLabel(self)
        self.hub_note.setWordWrap(True)
        self.path = QLineEdit(self)
        self.path.setPlaceholderText("a state_dict of this model")
        browse = QPushButton("Choose…", self)
        browse.clicked.connect(self._browse)
        self.stack_box = QCheckBox("Open as an editable &stack", self)
        self.stack_box.setChecked(True)
        self._stack_wanted = True  # the person's choice, kept while a model cannot be one
        self.stack_box.clicked.connect(lambda on: setattr(self, "_stack_wanted", on))

        grid = QGridLayout()
        grid.addWidget(QLabel("Model", self), 0, 0)
        grid.addWidget(self.names, 0, 1)
        grid.addWidget(self.random, 1, 0)
        grid.addWidget(self.seed, 1, 1)
        grid.addWidget(self.trained, 2, 0, 1, 2)
        grid.addWidget(self.hub_note, 3, 0, 1, 2)
        grid.addWidget(self.from_file, 4, 0, 1, 2)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        grid.addLayout(row, 5, 0, 1, 2)
        grid.addWidget(self.stack_box, 6, 0, 1, 2)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                        | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.buttons)
        self.names.currentTextChanged.connect(self._update)
        self.kind.idToggled.connect(lambda *_: self._update())
        self.path.textChanged.connect(self._update)
        self._update()

    def _browse(self) -> None:
        if self._choose_file is not None and (path := self._choose_file()):
            self.path.setText(path)
            self.from_file.setChecked(True)

    def _update(self) -> None:
        path = hub_weights_path(self.names.currentText())
        found = path.is_file()
        self.hub_note.setText(f"{path.name} in {path.parent}: "
                              + ("found" if found else "not on this computer (LayerLab does "
                                 "not download; copy the file there or choose it below)"))
        chain = is_chain_model(self.names.currentText())
        self.stack_box.setEnabled(chain)
        self.stack_box.setChecked(chain and self._stack_wanted)  # never ticked when it cannot
        self.stack_box.setToolTip(STACK_TIP if chain else NOT_CHAIN_TIP)
        kind = self.kind.checkedId()
        ok = (kind == RANDOM or (kind == HUB and found)
              or (kind == FILE and bool(self.path.text().strip())))
        self.buttons.button(QDialogButtonBox.StandardButton.Open).setEnabled(ok)

    def spec(self) -> ModelSpec:
        kind = self.kind.checkedId()
        weights = (None if kind == RANDOM else TRAINED if kind == HUB
                   else self.path.text().strip())
        return ModelSpec(self.names.currentText(), weights, self.seed.value())

    def as_stack(self) -> bool:
        """Open the model as an editable stack (a chain model, the box checked)."""
        return self.stack_box.isEnabled() and self.stack_box.isChecked()

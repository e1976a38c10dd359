"""The controller's part for a torchvision model's weights: the kernel editor shows the
selected stage's module (a Conv2d, a ConvTranspose2d), and its edits become weight edits of
the model, one undo step each (cells typed in a row into the same place merge).

The model lives in the worker thread; here only immutable data changes: the session's
``ModelSpec`` gets a new tuple of ``WeightEdit`` and is run again. The opened tensors come from
the worker (``session.model_weights``, read-only), so what the editor shows is those plus the
edits, exactly what the worker computes with. (``core.model_edits`` imports torch: it is
imported where it is used, once a model is shown, so the window's first paint is not held.)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..core.pipeline import LayerSpec
from .commands import ModelEditCommand
from .session import Session

MAX_CELLS = 100_000  # a preset on every slice of a huge layer: too many single edits


class ModelWeights:
    """Used by the controller, whose views it updates and whose ``submit`` runs."""

    def __init__(self, session: Session, controller: Any):
        self.session = session
        self.controller = controller
        self.path: str | None = None  # the module the kernel editor shows
        self.stage: int | None = None  # the stage it was shown for

    @property
    def views(self) -> Any:
        return self.controller.views

    def submit(self) -> None:
        self.controller.submit()

    # --- what is shown ---
    def module_of_stage(self, stage: int) -> str | None:
        """The module path of ``stage`` when its module's weights can be edited."""
        s = self.session
        view = s.results.get(stage)
        if s.model is None or s.model_weights is None or view is None:
            return None
        path = view.result.name.partition("#")[0]
        return path if path in s.model_weights else None

    def current(self, path: str, param: str) -> np.ndarray:
        """The values ``path.param`` computes with: the opened ones and the edits."""
        from ..core.model_edits import edited_array

        s = self.session
        return edited_array(s.model_weights[path].params[param], s.model.edits, path, param)

    def layer(self, path: str) -> LayerSpec:
        """The module as a layer spec with its current tensors (what the kernel editor reads)."""
        module = self.session.model_weights[path]
        layer = LayerSpec(module.type, dict(module.args), name=path)
        for name in module.params:
            layer = layer.with_param(name, self.current(path, name))
        return layer

    def show(self) -> None:
        """The kernel editor follows the selected stage of the model."""
        s = self.session
        path = self.module_of_stage(s.stage)
        self.path, self.stage = path, s.stage
        layer = self.layer(path) if path is not None else None
        if layer is not None and layer.op.kernel is None:
            layer, self.path = None, None  # a Linear: no kernel to show
        view = s.results.get(s.stage)
        name = view.result.name if view is not None else f"stage {s.stage}"
        note = (f"<i>{s.model.name} is shown: {name} has no kernel to edit. Pick one of its "
                f"convolution stages (Conv2d) to edit its weights in place.</i>"
                if s.model is not None else None)
        self.views.kernel.set_layer(s.stage if layer is not None else None, layer, title=path,
                                    note=note)
        self.views.window.show_editor_for(layer)

    # --- edits ---
    def _push(self, edits: tuple, text: str, merge_key=None) -> None:
        s = self.session
        before = s.model.edits
        if edits == before:
            return
        s.model_undo.push(ModelEditCommand(self.apply, before, edits, text,
                                           merge_key=merge_key))

    def apply(self, edits: tuple) -> None:
        """Put ``edits`` on the model shown (an edit, an undo, a redo) and run it again."""
        s = self.session
        if s.model is None:
            return
        s.set_model(replace(s.model, edits=tuple(edits)))
        self.show()
        self.submit()

    def edit_cell(self, param: str, index: tuple[int, ...], value: float) -> None:
        from ..core.model_build import ModelError
        from ..core.model_edits import WeightEdit, check_edit, with_edit

        s = self.session
        if self.path is None or s.model is None:
            return
        edit = WeightEdit(self.path, param, tuple(int(i) for i in index), float(value))
        try:
            check_edit(s.model_weights, edit)
        except ModelError as e:  # NaN, or a position outside the tensor: nothing changes
            self.views.window.show_status(f"Not changed: {e}")
            self.show()
            return
        self._push(with_edit(s.model.edits, edit.path, param, edit.index, edit.value),
                   f"Edit {edit.text()}", merge_key=("model cell", edit.path, param, edit.index))

    def edit_param(self, param: str, array: np.ndarray, text: str) -> None:
        """A whole new tensor (a preset, a scale): the cells that changed, one undo step."""
        from ..core.model_edits import WeightEdit, with_edits

        s = self.session
        if self.path is None or s.model is None:
            return
        path = self.path
        new = np.asarray(array, np.float32)
        current = self.current(path, param)
        if new.shape != current.shape or not np.isfinite(new).all():
            self.views.window.show_status(f"Not changed: {path}.{param} needs finite values of "
                                          f"shape {list(current.shape)}")
            return
        changed = np.argwhere(new != current)
        if len(changed) > MAX_CELLS:
            self.views.window.show_status(f"Not changed: {len(changed):,} values at once is "
                                          f"more than a model edit keeps; edit fewer slices")
            return
        edits = with_edits(s.model.edits, [WeightEdit(path, param, tuple(map(int, index)),
                                                      float(new[tuple(index)]))
                                           for index in changed])
        self._push(edits, f"{text} ({path})")

    def reset(self) -> None:
        """Back to the opened weights: one undo step."""
        s = self.session
        if s.model is None or not s.model.edits:
            self.views.window.show_status("The model has its opened weights")
            return
        self._push((), f"Reset the weights of {s.model.name}")

    def save(self, path: str) -> bool:
        """Write the model's weights with their edits as .safetensors; until the next edit,
        opening another model or quitting does not ask."""
        from ..core.model_build import ModelError
        from ..core.model_edits import save_weights
        from ..core.models import open_spec

        s = self.session
        if s.model is None:
            self.views.window.show_status("Open a model first (File > Open model…)")
            return False
        try:
            # Built again here from the immutable spec: the worker's model is its thread's.
            opened = open_spec(s.model, s.memory_budget_gb * 1024**3)
            written = save_weights(opened, path)
        except ModelError as e:
            self.views.window.show_error(f"Could not save the model's weights: {e}")
            return False
        s.model_saved_edits = s.model.edits
        s.model_undo.setClean()
        self.controller._update_title()
        edits = len(s.model.edits)
        self.views.window.show_status(f"Saved the weights of {s.model.name} ({edits} edited "
                                      f"value{'s' if edits != 1 else ''}) to {written.name}; "
                                      f"Open model with that file loads them")
        return True

"""The window's panels in docks: the right-hand column (explain a value, compare A/B, fit a
kernel, what a channel looks for, why this class), which share one tabbed column, and the
model tree beside the layers. A mixin of ``MainWindow``: the panels and their job runners
are the window's attributes (``window.fit_panel``, ``window.explain_dock``, ...).

The right-hand docks exist from the start (the View menu toggles them, a saved layout
places them), empty; a dock's panel, its module and its job thread are made when the dock
is first shown or the panel is first asked for (``window.fit_panel``), so that none of
them is on the way to the window's first paint.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget

from ..worker import JobRunner
from .model_tree import ModelTree

# name: the dock's title and object name (a saved layout finds it by that), in tab order.
RIGHT_DOCKS = {
    "explain": ("Explain a value", "explainDock"),
    "compare": ("Compare A/B", "compareDock"),
    "fit": ("Fit kernel", "fitDock"),
    "visual": ("What this channel looks for", "visualDock"),
    "why": ("Why this class", "whyClassDock"),
}


def _made_with(panel: str, attribute: str) -> property:
    """``window.<attribute>``, made with its panel (``panel``) when first asked for."""
    def get(window: PanelDocks):
        window.build_panel(panel)
        return window._panel_parts[attribute]
    return property(get, doc=f"Part of the {panel!r} panel, made when first asked for.")


class PanelDocks:
    """Builds, shows and shuts down the window's panel docks (mixed into MainWindow, which
    provides ``session``, ``controller``, ``dock`` (the layers) and QMainWindow's dock
    methods)."""

    explain_jobs = _made_with("explain", "explain_jobs")
    explain_panel = _made_with("explain", "explain_panel")
    compare_panel = _made_with("compare", "compare_panel")
    fit_jobs = _made_with("fit", "fit_jobs")
    fit_panel = _made_with("fit", "fit_panel")
    visual_jobs = _made_with("visual", "visual_jobs")
    visual_panel = _made_with("visual", "visual_panel")
    why_panel = _made_with("why", "why_panel")
    why = _made_with("why", "why")

    def _build_right_docks(self) -> None:
        """The empty docks on the right, hidden until asked for; they share one column as
        tabs, so opening a third one never squeezes the stage view."""
        self._right_docks: list[QDockWidget] = []
        self._panel_parts: dict[str, object] = {}
        self._panels_built: list[str] = []
        for name, (title, object_name) in RIGHT_DOCKS.items():
            dock = QDockWidget(title, self)
            dock.setObjectName(object_name)
            dock.setMinimumWidth(300)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            if self._right_docks:
                self.tabifyDockWidget(self._right_docks[0], dock)
            self._right_docks.append(dock)
            dock.hide()
            # However it is shown (View menu, a saved layout, code), it gets its panel.
            dock.visibilityChanged.connect(
                lambda visible, n=name: visible and self.build_panel(n))
            setattr(self, f"{name}_dock", dock)

    def build_panel(self, name: str) -> None:
        """Make the panel ``name`` (a key of RIGHT_DOCKS) and put it in its dock, once."""
        if name in self._panels_built:
            return
        self._panels_built.append(name)
        parts = getattr(self, f"_make_{name}_panel")()
        self._panel_parts.update(parts)
        getattr(self, f"{name}_dock").setWidget(parts[f"{name}_panel"])

    # Each maker returns the panel's parts by attribute name; imported here, not at start.
    def _make_explain_panel(self) -> dict[str, object]:
        # Explain a value (View > Explain a value, or a click on a value); torch reruns the
        # layer in a job thread, not here.
        from .explain_panel import ExplainPanel

        jobs = JobRunner(self)
        panel = ExplainPanel(self.session, jobs)
        panel.explainRequested.connect(self.controller.on_explain)
        return {"explain_jobs": jobs, "explain_panel": panel}

    def _make_compare_panel(self) -> dict[str, object]:
        # The Compare view (A/B): shown when a B is chosen (Compare menu).
        from .compare_panel import ComparePanel

        return {"compare_panel": ComparePanel(self.session, self)}

    def _make_fit_panel(self) -> dict[str, object]:
        # Watch a filter learn (Run > Fit kernel), its optimiser in a job thread.
        from .fit_panel import FitPanel

        jobs = JobRunner(self)
        panel = FitPanel(self.session, jobs)
        panel.weightsFitted.connect(self.controller.on_fit_weights)
        panel.statusMessage.connect(self.show_status)
        return {"fit_jobs": jobs, "fit_panel": panel}

    def _make_visual_panel(self) -> dict[str, object]:
        # What a channel looks for (the stage panel's button).
        from .visual_panel import ChannelVisualPanel

        jobs = JobRunner(self)
        return {"visual_jobs": jobs, "visual_panel": ChannelVisualPanel(self.session, jobs)}

    def _make_why_panel(self) -> dict[str, object]:
        # Why this class (Grad-CAM), computed in its own job thread (WhyClass).
        from .why_class import WhyClass
        from .why_class_panel import WhyClassPanel

        panel = WhyClassPanel(self.session)
        return {"why_panel": panel, "why": WhyClass(self.session, panel, self)}

    @property
    def model_stack(self):
        """File > Open model… as an editable stack (a ModelStack, which builds it in a job
        thread of its own): made when first asked for, like the panels."""
        if "model_stack" not in self._panel_parts:
            from .model_stack import ModelStack

            self._panel_parts["model_stack"] = ModelStack(self.session, self, self)
        return self._panel_parts["model_stack"]

    @staticmethod
    def show_dock(dock: QDockWidget) -> None:
        dock.show()
        dock.raise_()

    def _compare_menu(self, bar) -> None:
        c = bar.addMenu("&Compare")
        for text, method in (("&Duplicate as B", "duplicate_as_b"),
                             ("B from &pipeline…", "choose_b_pipeline"),
                             ("B from &image…", "choose_b_image"),
                             ("&Clear B", "clear_b")):
            act = c.addAction(text)
            act.triggered.connect(lambda _=False, m=method: (
                self.show_dock(self.compare_dock), getattr(self.compare_panel, m)()))

    def look_for(self, stage: int, channel: int) -> None:
        self.show_dock(self.visual_dock)
        self.visual_panel.look_at(stage, channel)

    def show_fit_panel(self) -> None:
        self.show_dock(self.fit_dock)

    def _build_model_dock(self) -> None:
        """The module tree of a torchvision model (File > Open model), tabbed with the layers;
        shown while a model is on screen."""
        self.model_tree = ModelTree(self.session)
        self.model_dock = QDockWidget("Model", self)
        self.model_dock.setObjectName("modelDock")
        self.model_dock.setWidget(self.model_tree)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.model_dock)
        self.model_dock.hide()  # tabbed with the layers when a model is shown (_model_shown)
        self.session.modelChanged.connect(self.update_model_actions)  # edits count too
        self.session.modelShown.connect(self._model_shown)

    def update_model_actions(self) -> None:
        """File > Save / Reset model weights only while a model is shown (and has edits)."""
        actions = getattr(self, "actions", None)  # made after this dock
        if actions is None:
            return
        model = self.session.model
        actions["save_model_weights"].setEnabled(model is not None)
        actions["reset_model_weights"].setEnabled(model is not None and bool(model.edits))

    def _model_shown(self) -> None:
        """Another model, or none, is shown (not one of its weight edits: the panels stay
        as the person left them then)."""
        model = self.session.model
        if model is not None:
            self.model_dock.setWindowTitle(f"Model: {model.name}")
            # Tabbed only while shown: a hidden tab of a tabbed pair leaves its tab bar
            # drawn over the layer panel.
            if self.model_dock not in self.tabifiedDockWidgets(self.dock):
                self.tabifyDockWidget(self.dock, self.model_dock)
            self.model_dock.show()
            self.model_dock.raise_()
        else:
            self.model_dock.hide()
        # A model brings its weights' own preprocessing: the stack's input choices would not
        # apply to what is shown (the toolbar is built after this dock, hence the guard).
        for box in (getattr(self, "mode_box", None), getattr(self, "normalize_box", None)):
            if box is not None:
                box.setEnabled(model is None)

    def _shutdown_panels(self) -> None:
        """Stop and join the threads of the panels that were made (the window is closing)."""
        parts = self._panel_parts
        if "why" in parts:
            parts["why"].shutdown()  # a running Grad-CAM
        if "model_stack" in parts:
            parts["model_stack"].shutdown()  # a model being built as a stack
        if "compare_panel" in parts:
            parts["compare_panel"].shutdown()
        for jobs in ("fit_jobs", "visual_jobs", "explain_jobs"):
            if jobs in parts:
                parts[jobs].shutdown()

"""The window's panels in docks: the right-hand column (explain a value, compare A/B, fit a
kernel, what a channel looks for, why this class), which share one tabbed column, and the
model tree beside the layers. A mixin of ``MainWindow``: the panels and their job runners
are the window's attributes (``window.fit_panel``, ``window.explain_dock``, ...).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QWidget

from ..worker import JobRunner
from .compare_panel import ComparePanel
from .explain_panel import ExplainPanel
from .fit_panel import FitPanel
from .model_stack import ModelStack
from .model_tree import ModelTree
from .visual_panel import ChannelVisualPanel
from .why_class import WhyClass
from .why_class_panel import WhyClassPanel


class PanelDocks:
    """Builds, shows and shuts down the window's panel docks (mixed into MainWindow, which
    provides ``session``, ``dock`` (the layers) and QMainWindow's dock methods)."""

    def _right_dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        """A panel on the right, hidden until asked for; the panels there share one column
        as tabs, so opening a third one never squeezes the stage view."""
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if self._right_docks:
            self.tabifyDockWidget(self._right_docks[0], dock)
        self._right_docks.append(dock)
        dock.hide()
        return dock

    @staticmethod
    def show_dock(dock: QDockWidget) -> None:
        dock.show()
        dock.raise_()

    def _build_right_docks(self) -> None:
        self._right_docks: list[QDockWidget] = []
        # Explain a value (View > Explain a value, or a click on a value); torch reruns the
        # layer in a job thread, not here.
        self.explain_jobs = JobRunner(self)
        self.explain_panel = ExplainPanel(self.session, self.explain_jobs)
        self.explain_dock = self._right_dock("Explain a value", "explainDock",
                                             self.explain_panel)
        # The Compare view (A/B): shown when a B is chosen (Compare menu).
        self.compare_panel = ComparePanel(self.session, self)
        self.compare_dock = self._right_dock("Compare A/B", "compareDock", self.compare_panel)
        # Watch a filter learn (Run > Fit kernel), its optimiser in a job thread.
        self.fit_jobs = JobRunner(self)
        self.fit_panel = FitPanel(self.session, self.fit_jobs)
        self.fit_dock = self._right_dock("Fit kernel", "fitDock", self.fit_panel)
        # What a channel looks for (the stage panel's button).
        self.visual_jobs = JobRunner(self)
        self.visual_panel = ChannelVisualPanel(self.session, self.visual_jobs)
        self.visual_dock = self._right_dock("What this channel looks for", "visualDock",
                                            self.visual_panel)
        # Why this class (Grad-CAM), computed in its own job thread (WhyClass).
        self.why_panel = WhyClassPanel(self.session)
        self.why = WhyClass(self.session, self.why_panel, self)
        self.why_dock = self._right_dock("Why this class", "whyClassDock", self.why_panel)
        # File > Open model… as an editable stack: built in a job thread of its own.
        self.model_stack = ModelStack(self.session, self, self)

    def _compare_menu(self, bar) -> None:
        c = bar.addMenu("&Compare")
        panel = self.compare_panel
        for text, slot in (("&Duplicate as B", panel.duplicate_as_b),
                           ("B from &pipeline…", panel.choose_b_pipeline),
                           ("B from &image…", panel.choose_b_image),
                           ("&Clear B", panel.clear_b)):
            act = c.addAction(text)
            act.triggered.connect(lambda _=False, f=slot: (self.show_dock(self.compare_dock),
                                                           f()))

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
        self.session.modelChanged.connect(self._model_shown)

    def _model_shown(self) -> None:
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
        """Stop and join every panel's threads (the window is closing)."""
        self.why.shutdown()  # a running Grad-CAM
        self.model_stack.shutdown()  # a model being built as a stack
        self.compare_panel.shutdown()
        self.fit_jobs.shutdown()
        self.visual_jobs.shutdown()
        self.explain_jobs.shutdown()

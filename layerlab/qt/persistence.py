"""What is kept between runs of the app: the stack (saved or not), the image, the
preferences and the window layout, in QSettings. Nothing is lost on quit."""

from __future__ import annotations

import json
from dataclasses import replace

from PySide6.QtCore import QByteArray, QSettings

from ..core.kernels import preset
from ..core.pipeline import InputSpec, Pipeline, PipelineError, new_layer
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


class SessionStore:
    """Reads and writes the session's part of the settings."""

    def __init__(self, settings: QSettings, session: Session):
        self.settings = settings
        self.session = session

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
        """Keep the document (even unsaved), the image and the preferences for next time."""
        st, s = self.settings, self.session
        st.setValue("session/pipeline", json.dumps(s.pipeline.to_dict(), separators=(",", ":")))
        st.setValue("session/pipeline_path", s.document.path or "")
        st.setValue("session/pipeline_name", s.document.name)
        st.setValue("session/modified", s.document.modified)
        st.setValue("session/image", (s.loaded.path or "") if s.loaded else "")
        self.save_preferences()
        st.sync()

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
        text = self.settings.value("session/pipeline")
        if isinstance(text, str) and text:
            try:
                pipeline = Pipeline.from_json(text, source="last session")
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

""""Why this class": the Grad-CAM heat map of a chosen class over the input photo.

Choose a class (default: the top prediction) and a stage (default: the last conv stage); the
panel asks for the map (``requested``), and draws what the session then holds: the input
stage's picture blended with the map, ``round((1 - a) * photo + a * turbo(map))``, at the
opacity of the slider. The map itself is computed in a worker (see ``why_class``)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..core.pipeline import PipelineError
from ..core.specs import SpecError
from .session import Session

DEFAULT_OPACITY = 50  # percent


def input_picture(values: np.ndarray) -> np.ndarray:
    """The input stage (C, H, W in [0, 1]) as the uint8 picture the map is drawn on."""
    u8 = np.floor(np.clip(values.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    return u8[0] if u8.shape[0] == 1 else np.moveaxis(u8, 0, -1)


class WhyClassPanel(QWidget):
    requested = Signal(object, object)  # class index or None (the top one), stage or None

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.class_box = QComboBox(self)
        self.class_box.setToolTip("The class whose evidence is shown")
        self.stage_box = QComboBox(self)
        self.stage_box.setToolTip("The stage whose feature maps are weighted by the class "
                                  "score's gradients (Grad-CAM)")
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(DEFAULT_OPACITY)
        self.opacity.setToolTip("How much of the heat map covers the photo")
        self.glw = pg.GraphicsLayoutWidget(self)
        self.glw.setBackground((30, 30, 30))
        self.vb = self.glw.addViewBox()
        self.vb.setAspectLocked(True)
        self.vb.invertY(True)
        self.vb.setMenuEnabled(False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self._filled: tuple | None = None  # what the boxes list now
        self._shown: np.ndarray | None = None
        form = QFormLayout()
        form.addRow("Class", self.class_box)
        form.addRow("Stage", self.stage_box)
        form.addRow("Opacity", self.opacity)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.glw, 1)
        layout.addWidget(self.status)
        self.class_box.activated.connect(lambda _=0: self.request())
        self.stage_box.activated.connect(lambda _=0: self.request())
        self.opacity.valueChanged.connect(lambda _=0: self._draw())
        session.resultsChanged.connect(self._on_results)
        session.gradcamChanged.connect(self._draw)

    # ------------------------------------------------------------------ choices
    def chosen(self) -> tuple[int | None, int | None]:
        return self.class_box.currentData(), self.stage_box.currentData()

    def _run_hw(self) -> tuple[int, int] | None:
        image = self.session.run_image
        return None if image is None else (image.size[1], image.size[0])

    def _fill(self) -> bool:
        """List the classes and stages of the run shown; False when it is no classifier."""
        s = self.session
        pipeline, hw = s.run_pipeline, self._run_hw()
        last = s.results.get(max(s.results)) if s.results else None
        if pipeline is None or hw is None or last is None or last.values is None \
                or last.values.ndim != 1 or last.values.size < 2:
            self._filled = None
            return False
        n = int(last.values.size)
        try:
            from ..core.gradcam import default_stage, spatial_stages  # torch: results exist

            stages = spatial_stages(pipeline, hw)
            auto = default_stage(pipeline, hw)
        except (PipelineError, SpecError, ValueError):
            return False
        key = (n, pipeline.classes, tuple(stages))
        if key != self._filled:
            names = pipeline.classes if len(pipeline.classes) == n else ()
            keep = self.chosen()
            self.class_box.clear()
            self.class_box.addItem("top prediction", None)
            for k in range(n):
                self.class_box.addItem(f"{k}: {names[k]}" if names else f"class {k}", k)
            self.stage_box.clear()
            auto_name = dict(stages).get(auto, "")
            self.stage_box.addItem(f"last conv stage ({auto} {auto_name})", None)
            for k, name in stages:
                self.stage_box.addItem(f"{k} {name}", k)
            for box, value in zip((self.class_box, self.stage_box), keep, strict=True):
                box.setCurrentIndex(max(0, box.findData(value)))
            self._filled = key
        return True

    @Slot()
    def _on_results(self) -> None:
        if self.isVisible():
            self.request()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.request()

    def request(self) -> None:
        """Ask for the map of the chosen class and stage (for the run on screen)."""
        if not self._fill():
            self.status.setText("Grad-CAM needs a stack whose last stage is a vector of class "
                                "scores, such as File > Example pipelines > digits-cnn.")
            self.image.clear()
            self._shown = None
            return
        self.status.setText("computing…")
        self.requested.emit(*self.chosen())

    # ------------------------------------------------------------------ drawing
    def blended(self) -> np.ndarray | None:
        """What the panel draws: the photo with the map at the slider's opacity."""
        s = self.session
        if s.gradcam is None or s.gradcam_input is None or s.gradcam_input.values is None:
            return None
        base = input_picture(s.gradcam_input.values)
        from ..core.gradcam import overlay

        return overlay(base, s.gradcam.heatmap, self.opacity.value() / 100.0)

    @Slot()
    def _draw(self) -> None:
        s = self.session
        if s.gradcam_error:
            self.status.setText(s.gradcam_error)
        picture = self.blended()
        if picture is None:
            self.image.clear()
            self._shown = None
            return
        first = self._shown is None or self._shown.shape != picture.shape
        self._shown = picture
        self.image.setImage(picture, levels=(0, 255), autoLevels=False)
        if first:
            self.vb.autoRange(padding=0.02)
        g = s.gradcam
        pipeline = s.run_pipeline
        names = pipeline.classes if pipeline is not None else ()
        name = names[g.target] if g.target < len(names) else f"class {g.target}"
        self.status.setText(f"Why {name!r}: Grad-CAM at stage {g.stage} ({g.stage_name}), "
                            f"score {g.score:.4g}; red is where the evidence for the class "
                            f"is strongest.")

"""What the pointer does over the stage view: the hovered value's readout (exact float,
position, receptive field on the input) in an overlay, clicks that pick a channel, and
Alt+click / Alt+hover that ask the explain panel about a value. A mixin of ``StagePanel``,
which owns the pages, the session and the ``explainRequested`` signal.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtGui import QGuiApplication

from .hover import HoverInfo


class OverlayFilter(QObject):
    """Re-places the labels over the pictures when the view area resizes."""

    def __init__(self, panel: QObject):  # the StagePanel
        super().__init__(panel)
        self._panel = panel

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Resize:
            self._panel._place_overlay()
        return False


class PointerReadout:
    """The pointer handling of StagePanel (see the module doc)."""

    def hover_at(self, stage: int, channel: int, x: int, y: int) -> HoverInfo | None:
        """Read out the exact value at (x, y) of ``channel`` of ``stage`` (what the mouse does).

        For a 1-D stage ``x`` is the index and ``channel``/``y`` are ignored. Updates the
        overlay, the status message and, on the channel page, the receptive-field box.
        """
        info = self.hover.info(stage, channel, x, y, self._compare())
        self._last_hover = info
        if info is None:
            self.overlay.hide()
            self.channel_page.show_window(None)
            self.channel_page.show_hover(None)
            self.grid_page.show_hover(None)
            self.vector_page.show_hover(None)
            if self._mode == self.GRID:
                self._update_colorbar(self.session.channel)
            self.statusMessage.emit("")
            return None
        self._show_overlay(info)
        if stage == self.session.stage:
            if self._mode == self.CHANNEL and channel == self.session.channel:
                self.channel_page.show_hover(x, y)
                self.channel_page.show_window(info.window)
            self.grid_page.show_hover(channel, x, y)
            values = self.session.results[stage].values
            if values is not None and values.ndim == 1:
                self.vector_page.show_hover(x)
            if self._mode == self.GRID:
                self._update_colorbar(channel)
        return info

    def last_hover(self) -> HoverInfo | None:
        return self._last_hover

    def _show_overlay(self, info: HoverInfo) -> None:
        self.overlay.setText(info.overlay_text)
        self._place_overlay()
        self.overlay.show()
        self.overlay.raise_()
        self.statusMessage.emit(info.text)

    def _place_overlay(self) -> None:
        """Bottom-left of the image views; top-left (beside the value axis) for bar charts."""
        top = 6
        for badge in (self.banner, self.stale_badge):
            badge.setFixedWidth(min(max(self.stack.width() - 12, 50), 560))
            badge.adjustSize()
            badge.move(6, top)
            if badge.isVisible():
                top += badge.height() + 4
        self.overlay.setMaximumWidth(max(self.stack.width() - 12, 50))
        self.overlay.adjustSize()
        if self.stack.currentWidget() is self.vector_page:
            self.overlay.move(64, 6)
        else:
            self.overlay.move(6, max(0, self.stack.height() - self.overlay.height() - 6))

    # mouse handlers: map to pixels, then the same path as hover_at
    @Slot(object)
    def _on_grid_moved(self, pos) -> None:
        page, stage = self.grid_page, self.session.stage
        if page.rendered is None or not page.vb.sceneBoundingRect().contains(pos):
            self.hover_at(stage, -1, -1, -1)
            return
        p = page.vb.mapSceneToView(pos)
        hit = page.tile_at(p.x(), p.y())
        self.hover_at(stage, *(hit if hit is not None else (-1, -1, -1)))

    @Slot(object)
    def _on_grid_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        page = self.grid_page
        pos = event.scenePos()
        if page.rendered is None or not page.vb.sceneBoundingRect().contains(pos):
            return
        p = page.vb.mapSceneToView(pos)
        hit = page.tile_at(p.x(), p.y())
        if hit is not None and event.modifiers() & Qt.KeyboardModifier.AltModifier:
            self.explainRequested.emit(self.session.stage, *hit)
        elif hit is not None:
            self.select_channel(hit[0], large=True)

    def _explain_hovered(self, info: HoverInfo | None) -> None:
        """Emit ``explainRequested`` for a value read out on the shown stage."""
        if info is not None and info.stage == self.session.stage:
            self.explainRequested.emit(info.stage, info.channel, info.x, info.y)

    @Slot(object)
    def _on_channel_clicked(self, event) -> None:
        page, pos = self.channel_page, event.scenePos()
        if event.button() == Qt.MouseButton.LeftButton \
                and page.right_vb.sceneBoundingRect().contains(pos):
            p = page.right_vb.mapSceneToView(pos)
            self._explain_hovered(self.hover.info(self.session.stage, self.session.channel,
                                                  math.floor(p.x()), math.floor(p.y())))

    @Slot(object)
    def _on_vector_clicked(self, event) -> None:
        vb = self.vector_page.plot.getPlotItem().getViewBox()
        if event.button() == Qt.MouseButton.LeftButton and self.vector_page.values is not None \
                and vb.sceneBoundingRect().contains(event.scenePos()):
            i = self.vector_page.index_at(vb.mapSceneToView(event.scenePos()).x())
            if i is not None:
                self._explain_hovered(self.hover.info(self.session.stage, 0, i, 0))

    @Slot(object)
    def _on_channel_moved(self, pos) -> None:
        page, stage = self.channel_page, self.session.stage
        if page.right_vb.sceneBoundingRect().contains(pos):
            p = page.right_vb.mapSceneToView(pos)
            info = self.hover_at(stage, self.session.channel, math.floor(p.x()),
                                 math.floor(p.y()))
            if QGuiApplication.keyboardModifiers() & Qt.KeyboardModifier.AltModifier:
                self._explain_hovered(info)
        elif page.left_vb.sceneBoundingRect().contains(pos):
            p = page.left_vb.mapSceneToView(pos)
            src_stage, ch = self._left_source()
            if src_stage is None:
                return
            info = self.hover.info(src_stage, ch, math.floor(p.x()), math.floor(p.y()),
                                   self._compare())
            if info is None:
                self.hover_at(stage, -1, -1, -1)
                return
            # Hovering the input: read its value, keep the output's box where it was.
            self._last_hover = info
            self._show_overlay(info)
        else:
            self.hover_at(stage, -1, -1, -1)

    @Slot(object)
    def _on_vector_moved(self, pos) -> None:
        page = self.vector_page
        vb = page.plot.getPlotItem().getViewBox()
        if page.values is None or not vb.sceneBoundingRect().contains(pos):
            self.hover_at(self.session.stage, 0, -1, 0)
            return
        i = page.index_at(vb.mapSceneToView(pos).x())
        self.hover_at(self.session.stage, 0, -1 if i is None else i, 0)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.Leave:
            self.overlay.hide()
            self.channel_page.show_hover(None)
            self.grid_page.show_hover(None)
            self.vector_page.show_hover(None)
            self._show_explained_window()
        return False

    def _show_explained_window(self) -> None:
        """Once the mouse is gone, the explained value's receptive field is drawn again."""
        pos = self.session.explained
        if pos is None or self._mode != self.CHANNEL or pos[:2] != (self.session.stage,
                                                                     self.session.channel):
            return
        info = self.hover.info(pos[0], pos[1], pos[3], pos[2], self._compare())
        if info is not None:
            self.channel_page.show_window(info.window)

    # ------------------------------------------------------------------ drawing

"""The stage panel: what each stage did, at a glance and exact on demand.

Shows, for the selected stage, every channel as a tiled grid (zoom and pan), one channel large
beside the input it came from (with the receptive field of the hovered pixel drawn on the
input), 1-D stages as a bar chart, the histogram and statistics, the output shape and the size
formula with the user's numbers, and a strip of thumbnails of all stages.

It reads the session (results, selected stage and channel, render options) and redraws when
the session says something it shows changed; each picture is drawn once per change. What the
user picks (a stage, a channel, render options) goes out as a signal for the controller.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.predictions import LOGITS, output_kind
from ..worker import RenderOptions
from . import theme
from .colorbar import ColorBar
from .histogram_view import HistogramView
from .hover import COMPARE_INPUT, COMPARE_PREVIOUS, HoverInfo, HoverReader
from .predictions_view import PredictionsView
from .session import Session
from .stage_controls import SidewaysScroll, StageControls, StageHeader
from .stage_pages import ChannelPage, GridPage, VectorPage
from .stage_pointer import OverlayFilter, PointerReadout
from .stage_strip import StageStrip


class StagePanel(PointerReadout, QWidget):
    """Feature maps, histogram, statistics and shapes of the session's stages."""

    stagePicked = Signal(int)  # the user clicked a stage in the strip
    channelPicked = Signal(int)  # the user picked a channel (a tile, the channel box)
    optionsEdited = Signal(object)  # RenderOptions from the controls
    rangeEdited = Signal(int, float, float)  # stage, display range dragged on the colour bar
    rangeReset = Signal(int)  # stage: back to the normalisation's range
    statusMessage = Signal(str)
    # stage, channel, x, y: explain this value (a click on the channel or bar view, Alt+click
    # in the grid, Alt+hover)
    explainRequested = Signal(int, int, int, int)
    lookForRequested = Signal(int, int)  # stage, channel: what does it look for?

    GRID, CHANNEL = "grid", "channel"
    COMPARE_INPUT, COMPARE_PREVIOUS = COMPARE_INPUT, COMPARE_PREVIOUS

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.hover = HoverReader(session)
        self._mode = self.GRID
        self._drawn: tuple | None = None  # what the view shows now (skip identical redraws)
        self._last_hover: HoverInfo | None = None
        self._build()
        session.stageChanged.connect(self._on_stage_changed)
        session.resultsChanged.connect(self._on_results_changed)
        session.selectionChanged.connect(self._on_selection_changed)
        session.optionsChanged.connect(self.set_render_options)
        session.staleChanged.connect(self._on_stale_changed)
        session.displayRangeChanged.connect(self._on_display_range_changed)
        session.imageChanged.connect(self._refresh)  # the photo, until a run shows stages
        session.statsChanged.connect(self._on_stats_changed)
        self.colorbar.rangeEdited.connect(
            lambda lo, hi: self.rangeEdited.emit(self.session.stage, lo, hi))
        self.colorbar.rangeReset.connect(lambda: self.rangeReset.emit(self.session.stage))

    def _build(self) -> None:
        self.controls = StageControls(self)
        self.strip = StageStrip(self)


        # the view stack
        self.grid_page = GridPage(self)
        self.channel_page = ChannelPage(self)
        self.vector_page = VectorPage(self)
        self.error_page = QLabel(self)
        self.error_page.setWordWrap(True)
        self.error_page.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.error_page.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_page.setStyleSheet(f"color: {theme.ERROR}; font-size: 12pt; padding: 24px;")
        self.empty_page = QLabel("Drop a photo in to see what every layer does to it.", self)
        self.empty_page.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_page.setStyleSheet("color: palette(mid); font-size: 12pt;")
        self.stack = QStackedWidget(self)
        for page in (self.empty_page, self.grid_page, self.channel_page, self.vector_page,
                     self.error_page):
            self.stack.addWidget(page)
        self.stack.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.stack.setMinimumSize(200, 160)
        self.overlay = QLabel(self.stack)
        self.overlay.setStyleSheet("background: rgba(0, 0, 0, 170); color: white; "
                                   "padding: 3px 6px; font-family: monospace;")
        self.overlay.hide()
        # Over the pictures (not above them: the layout must not jump when these come and go):
        # a failed run's error, and the mark of pictures older than the edited stack.
        self.banner = QLabel(self.stack)
        self.banner.setObjectName("runError")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(theme.RUN_ERROR_BADGE)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.stale_badge = QLabel(self.stack)
        self.stale_badge.setObjectName("staleBadge")
        self.stale_badge.setWordWrap(True)
        self.stale_badge.setStyleSheet(theme.STALE_BADGE)
        self.stale_badge.hide()
        self.stack.installEventFilter(OverlayFilter(self))
        self.colorbar = ColorBar(self)

        self.header = StageHeader(self)  # what the stage is, its shape and size formula

        view_row = QHBoxLayout()
        view_row.setContentsMargins(0, 0, 0, 0)
        view_row.setSpacing(2)
        view_row.addWidget(self.stack, 1)
        view_row.addWidget(self.colorbar)
        view_area = QWidget(self)
        va = QVBoxLayout(view_area)
        va.setContentsMargins(0, 0, 0, 0)
        va.setSpacing(2)
        va.addWidget(self.header)
        va.addLayout(view_row, 1)
        # a classifier's last stage: its top classes under the bars of its values
        self.predictions = PredictionsView(self)
        self.predictions.hide()
        va.addWidget(self.predictions)

        # info column: statistics and histogram
        self.histogram = HistogramView(self)
        info = QWidget(self)
        il = QVBoxLayout(info)
        il.setContentsMargins(4, 0, 0, 0)
        il.addWidget(self.histogram, 1)
        info.setMinimumWidth(240)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(view_area)
        self.splitter.addWidget(info)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([720, 280])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(SidewaysScroll(self.controls))  # never wider than the screen
        layout.addWidget(self.strip)
        layout.addWidget(self.splitter, 1)

        # signals
        c = self.controls
        c.optionsChanged.connect(lambda: self.optionsEdited.emit(c.render_options()))
        c.modeChanged.connect(self._on_mode_button)
        c.channelChanged.connect(self.channelPicked)
        c.compareChanged.connect(self._refresh)
        c.lookForRequested.connect(
            lambda: self.lookForRequested.emit(self.session.stage, self.session.channel))
        self.strip.stageClicked.connect(self.stagePicked)
        self.grid_page.glw.scene().sigMouseMoved.connect(self._on_grid_moved)
        self.grid_page.glw.scene().sigMouseClicked.connect(self._on_grid_clicked)
        self.channel_page.glw.scene().sigMouseMoved.connect(self._on_channel_moved)
        self.channel_page.glw.scene().sigMouseClicked.connect(self._on_channel_clicked)
        self.vector_page.plot.scene().sigMouseClicked.connect(self._on_vector_clicked)
        self.vector_page.plot.scene().sigMouseMoved.connect(self._on_vector_moved)
        for page in (self.grid_page.glw, self.channel_page.glw, self.vector_page.plot):
            page.viewport().installEventFilter(self)
        self._update_controls()

    # ------------------------------------------------------------------ reading
    def view_mode(self) -> str:
        return self._mode

    def render_options(self) -> RenderOptions:
        """What the controls say (the session's options once the controller took them)."""
        return self.controls.render_options()

    @Slot(object)
    def set_render_options(self, options: RenderOptions) -> None:
        """Set the controls (e.g. from saved settings) without emitting a change."""
        self.controls.set_render_options(options)

    # ------------------------------------------------------------------ session events
    @Slot(int)
    def _on_stage_changed(self, index: int) -> None:
        view = self.session.results[index]
        if view.result.error:
            self.strip.remove_from(index + 1)
        self.strip.set_stage(view)
        stage = self.session.stage
        if index == stage:
            self.strip.select(index)
            self._refresh()
        elif self._mode == self.CHANNEL and index in (0, stage - 1):
            self._refresh()  # the left (input) image changed

    @Slot(int)
    def _on_stats_changed(self, index: int) -> None:
        """A stage's histograms and statistics came after its pictures."""
        s = self.session
        view = s.results.get(index)
        if view is not None:
            self.strip.set_stage(view)  # its thumbnail may have come with them
        if index != s.stage or view is None or view.rendered is None:
            return
        r = view.rendered
        vector = view.values is not None and view.values.ndim == 1
        self.histogram.set_stage(r, None if vector else min(s.channel, r.num_channels - 1))

    def _show_histogram(self, rendered, channel: int | None) -> None:
        """The stage's histogram, once its numbers are there (they follow the pictures:
        until then the last one stays up, see _on_stats_changed)."""
        if rendered.has_stats:
            self.histogram.set_stage(rendered, channel)

    @Slot()
    def _on_results_changed(self) -> None:
        results = self.session.results
        self.strip.remove_from(max(results) + 1 if results else 0)
        self.strip.select(self.session.stage)
        self._refresh()
        view = self.session.results.get(self.session.stage)
        if view is not None and view.rendered is not None:
            self._show_predictions(view)  # a model's class names come with the run's end

    @Slot()
    def _on_stale_changed(self) -> None:
        reason = self.session.stale_reason
        self.strip.set_stale(reason)
        if reason is None:
            self.stale_badge.hide()
            return
        self.stale_badge.setText(f"Not run: {reason}\nThese pictures are from the last stack "
                                 f"that ran.")
        self.stale_badge.setToolTip(reason)
        self._place_overlay()
        self.stale_badge.show()
        self.stale_badge.raise_()

    @Slot()
    def _on_selection_changed(self) -> None:
        self.strip.select(self.session.stage)
        self._refresh()

    def select_channel(self, channel: int, *, large: bool = True) -> None:
        """A channel picked by the user; with ``large`` it is shown beside the input."""
        if large and self._mode != self.CHANNEL:
            self._mode = self.CHANNEL
            self._refresh()
        self.channelPicked.emit(max(0, int(channel)))

    # ------------------------------------------------------------------ zoom
    def _view_boxes(self) -> list:
        page = self.stack.currentWidget()
        if page is self.grid_page:
            return [self.grid_page.vb]
        if page is self.channel_page:
            return [self.channel_page.left_vb, self.channel_page.right_vb]
        return []

    def zoom_to_fit(self) -> None:
        """The whole picture in the view (View > Fit to window)."""
        for vb in self._view_boxes():
            vb.autoRange(padding=0.02)

    def zoom_actual_size(self) -> None:
        """One picture pixel per screen pixel, around the centre of what is shown now
        (View > Actual size)."""
        for vb in self._view_boxes():
            px, py = vb.viewPixelSize()  # picture pixels per screen pixel now
            if px > 0 and py > 0:
                vb.scaleBy((1.0 / px, 1.0 / py))

    # ------------------------------------------------------------------ hover
    def _compare(self) -> str:
        return self.controls.compare()

    def _left_source(self) -> tuple[int | None, int]:
        """(stage, channel) shown left of the large channel."""
        results, stage = self.session.results, self.session.stage
        if self._compare() == COMPARE_INPUT or stage == 0:
            return (0 if 0 in results else None), 0
        prev = results.get(stage - 1)
        if prev is None or prev.rendered is None:
            return None, 0
        c = prev.rendered.num_channels
        channel = self.session.channel
        return stage - 1, (channel if channel < c else 0)

    def _input_picture(self):
        """The input image as the person sees it (colour for RGB) at the stage-0 size, and
        the LUT to show it with (None for RGB)."""
        view = self.session.results.get(0)
        if view is None or view.rendered is None:
            return None, None
        r = view.rendered
        h, w = r.tile_size
        img = self.session.run_image
        if img is not None and tuple(img.size) == (w, h):
            arr = np.asarray(img.image)
            if arr.ndim == 2 and r.num_channels == 1:
                return arr, None
            if arr.ndim == 3 and r.num_channels == 3:
                return arr, None
        if r.num_channels == 3:  # resized by the pipeline: its three channels as rendered
            return np.ascontiguousarray(np.moveaxis(r.channels_u8, 0, -1)), None
        return r.channel_u8(0), r.lut

    def _draw_key(self) -> tuple:
        """Everything the picture depends on; the same key means nothing to redraw."""
        s = self.session
        view = s.results.get(s.stage)
        key: tuple = (s.stage, id(view), s.channel, self._mode, self._compare(), s.run_error,
                      bool(s.results), self._photo_first())
        if self._mode == self.CHANNEL:
            src, ch = self._left_source()
            key += (src, ch, id(s.results.get(src)) if src is not None else None,
                    id(s.run_image))
        return key

    def _photo_first(self) -> int | None:
        """The photo's id while it waits for the first run (torch may still be loading): it
        is shown until that run's first stage arrives."""
        s = self.session
        first = not s.results and s.last_summary is None and s.preview is not None
        return id(s.preview) if first else None

    def _refresh(self) -> None:
        """Redraw what shows the selected stage, unless it already shows exactly that."""
        key, drawn = self._draw_key(), self._drawn
        if key == drawn:
            return
        self._drawn = key
        s = self.session
        if (drawn is not None and self._mode == self.GRID and key[:2] == drawn[:2]
                and key[3:] == drawn[3:] and s.stage in s.results
                and s.results[s.stage].rendered is not None):
            # Only the channel moved: the grid stays, its histogram and colour bar follow.
            self._update_controls()
            self.histogram.set_channel(s.channel)
            self._apply_display_range()
            self._update_colorbar(s.channel)
            return
        view = s.results.get(s.stage)
        self._update_controls()
        if s.run_error:
            self.banner.setText(s.run_error)
            self.banner.show()
            self.banner.raise_()
        else:
            self.banner.hide()
        self._place_overlay()
        if view is None:
            if self._photo_first():
                self.grid_page.show_picture(np.asarray(s.preview.image))
                self.stack.setCurrentWidget(self.grid_page)
            elif not s.results:
                self.stack.setCurrentWidget(self.empty_page)
            return
        res = view.result
        self.header.show_result(res)
        if res.error:
            self.error_page.setText(f"stage {res.index} ({res.name}) failed\n\n{res.error}")
            self.stack.setCurrentWidget(self.error_page)
            self.histogram.clear()
            self.colorbar.set_levels(None)
            self.overlay.hide()
            return
        if not view.full:
            return  # only its thumbnail (in the strip) so far: the full view is on its way
        r = view.rendered
        channel = min(s.channel, r.num_channels - 1)
        self._show_predictions(view)
        if view.values is not None and view.values.ndim == 1:
            self.vector_page.set_values(view.values)
            self.stack.setCurrentWidget(self.vector_page)
            self._show_histogram(r, None)
            self.colorbar.hide()  # the bars are drawn at their values, not through a colormap
            return
        self.colorbar.show()
        if self._mode == self.GRID:
            self.grid_page.set_rendered(r)
            self.stack.setCurrentWidget(self.grid_page)
        else:
            right = r.channel_u8(channel)
            right_title = f"stage {res.index} {res.name} \u00b7 ch {channel}"
            src_stage, src_ch = self._left_source()
            left, left_lut, left_title = None, None, ""
            if src_stage == 0 and self._compare() == COMPARE_INPUT:
                (left, left_lut), left_title = self._input_picture(), "input image"
            elif src_stage is not None:
                prev = s.results[src_stage]
                left, left_lut = prev.rendered.channel_u8(src_ch), prev.rendered.lut
                left_title = f"stage {src_stage} {prev.result.name} \u00b7 ch {src_ch}"
            self.channel_page.set_images(left, left_lut, left_title, right, r.lut, right_title)
            self.channel_page.show_window(None)
            self.channel_page.show_hover(None)
            self.stack.setCurrentWidget(self.channel_page)
        self._show_histogram(r, channel)
        self._apply_display_range()
        self._update_colorbar(channel)

    def _show_predictions(self, view) -> None:
        """The predictions under the last stage, when it is a vector of class scores."""
        s = self.session
        pipeline = s.run_pipeline or s.pipeline
        if s.model is not None:  # a torchvision classifier: logits, ImageNet's names
            last, classes, kind = max(s.results, default=-1), s.model_classes, LOGITS
        else:
            last = len(pipeline.stage_names()) - 1
            classes, kind = pipeline.classes, output_kind(pipeline)
        if view.result.index == last and view.values is not None and view.values.ndim == 1:
            self.predictions.set_values(view.values, classes, kind)
        else:
            self.predictions.hide()

    def _update_colorbar(self, channel: int) -> None:
        view = self.session.results.get(self.session.stage)
        if view is None or view.rendered is None:
            self.colorbar.set_levels(None)
            return
        r = view.rendered
        channel = min(max(channel, 0), r.num_channels - 1)
        custom = self.session.display_ranges.get(self.session.stage)
        if custom is not None:
            self.colorbar.set_levels(custom, r.colormap, "display range", custom=True)
            return
        lo, hi = r.levels[channel]
        title = {"channel": f"ch {channel}", "fixed": "fixed"}.get(r.mode, r.mode)
        self.colorbar.set_levels((lo, hi), r.colormap, title)

    @Slot(int)
    def _on_display_range_changed(self, stage: int) -> None:
        if stage == self.session.stage:
            self._apply_display_range()
            self._update_colorbar(self.session.channel)

    def display_levels(self) -> tuple[float, float]:
        """The uint8 levels the pictures are shown with: (0, 255), or the user's display range
        in the selected channel's uint8 scale (render's mapping, so pixel p shows the value
        lo + p / 255 * (hi - lo))."""
        s = self.session
        view = s.results.get(s.stage)
        custom = s.display_ranges.get(s.stage)
        if custom is None or view is None or view.rendered is None:
            return (0.0, 255.0)
        r = view.rendered
        lo, hi = r.levels[min(s.channel, r.num_channels - 1)]
        if not hi > lo:
            return (0.0, 255.0)
        scale = 255.0 / (hi - lo)
        return ((custom[0] - lo) * scale, (custom[1] - lo) * scale)

    def _apply_display_range(self) -> None:
        levels = self.display_levels()
        self.grid_page.image.setLevels(levels)
        self.channel_page.right_image.setLevels(levels)

    def _update_controls(self) -> None:
        view = self.session.results.get(self.session.stage)
        drawn = None if view is None else view.rendered or view.thumb
        c = drawn.num_channels if drawn is not None else 1
        is_vector = view is not None and view.values is not None and view.values.ndim == 1
        self.controls.show_state(grid=self._mode == self.GRID, channels=c,
                                 channel=self.session.channel, vector=is_vector,
                                 has_stage=view is not None)

    # ------------------------------------------------------------------ control slots
    @Slot(bool)
    def _on_mode_button(self, grid: bool) -> None:
        self._mode = self.GRID if grid else self.CHANNEL
        self._refresh()

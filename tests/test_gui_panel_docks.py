"""The right-hand docks start empty; a dock's panel is made when the dock is first shown,
whichever way it is shown (the View menu, a saved layout, a click), and works from there."""

from __future__ import annotations

from layerlab.qt.explain_panel import ExplainPanel
from layerlab.qt.fit_panel import FitPanel
from layerlab.qt.panel_docks import RIGHT_DOCKS


def docks(window):
    return {name: getattr(window, f"{name}_dock") for name in RIGHT_DOCKS}


def test_a_dock_gets_its_panel_when_the_view_menu_first_shows_it(main_window, qtbot):
    w = main_window
    assert all(dock.widget() is None and dock.isHidden() for dock in docks(w).values())
    w.controller.on_stage_picked(1)  # the sharpen conv
    w.fit_dock.toggleViewAction().trigger()  # View > Fit kernel
    assert not w.fit_dock.isHidden()
    panel = w.fit_dock.widget()
    assert isinstance(panel, FitPanel) and panel is w.fit_panel
    assert "(Conv2d) so that stage 1 matches" in panel.subject.text()  # it follows the selection
    # The others stay unmade.
    assert [name for name, dock in docks(w).items() if dock.widget() is not None] == ["fit"]


def test_a_dock_open_when_the_window_closed_comes_back_with_its_panel(make_window, settings,
                                                                      qtbot):
    w = make_window(settings)
    w.controller.on_explain(1, 0, 10, 20)
    w.explain_dock.show()
    qtbot.waitUntil(lambda: w.explain_panel.explanation is not None, timeout=10000)
    w.close()

    again = make_window(settings)
    assert not again.explain_dock.isHidden()
    assert isinstance(again.explain_dock.widget(), ExplainPanel)
    assert again.compare_dock.widget() is None  # never opened: still not made

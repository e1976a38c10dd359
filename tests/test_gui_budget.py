"""The memory budget preference: an over-budget stack is refused with the estimate."""

from __future__ import annotations

import numpy as np


def test_over_budget_stack_is_refused_and_pictures_stay(main_window, qtbot, settings):
    w = main_window
    before = w.session.results.get(1).values.copy()
    w.set_memory_budget(1)
    assert settings.value("prefs/memory_budget_gb") in (1, "1")
    # 1000 channels of 512 x 512 float32 is 1 GB per stage; with ReLU and pooling ~2.3 GB.
    w.session.document.set_arg(0, "out_channels", 1000)
    w.session.document.set_arg(0, "bias", False)
    qtbot.waitUntil(lambda: not w.runner.busy and bool(w.session.last_summary.error), timeout=30000)
    message = w.banner.text()
    assert "more than the memory budget of 1.0 GB" in message
    assert "needs about 2.2 GB" in message
    assert "sharpen" in message  # the largest stage is named
    np.testing.assert_array_equal(w.session.results.get(1).values, before)
    # Raising the budget is not needed to recover: undoing the edit runs again at once.
    w.session.document.undo_stack.undo()
    w.session.document.undo_stack.undo()
    qtbot.waitUntil(lambda: not w.runner.busy and not w.session.last_summary.error, timeout=30000)
    assert w.session.results.get(1).values.shape == (1, 512, 512)

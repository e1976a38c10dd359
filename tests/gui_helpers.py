"""Helpers shared by the window tests."""

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent


def drop_files(window, *paths) -> None:
    """A real drag-and-drop: a QDragEnterEvent the window accepts, then the QDropEvent."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)


def wait_idle(window, qtbot, timeout: int = 20000) -> None:
    """Wait until the window's runner has no run in flight or pending, and no stage newly
    shown is still being drawn."""
    qtbot.waitUntil(lambda: not window.runner.busy and not window.runner.drawing,
                    timeout=timeout)


def full_view(window, qtbot, stage: int, timeout: int = 20000):
    """Select ``stage`` and wait for its full view (pictures, values and statistics: the
    window draws only the stages it shows in full, the others are thumbnails); returns it."""
    window.session.select(stage=stage)

    def drawn() -> bool:
        view = window.session.results.get(stage)
        return view is not None and not window.runner.busy and (
            view.result.error is not None or (view.full and view.rendered.has_stats))

    qtbot.waitUntil(drawn, timeout=timeout)
    return window.session.results[stage]


def stage_output(view):
    """The exact float values of a stage as the worker computed and kept them, (C, H, W) or
    (N,), whether or not the window draws that stage in full (``view.values`` is only there
    for the stages it shows)."""
    out = view.result.output[0].detach().cpu()
    return (out.unsqueeze(0) if out.dim() == 2 else out).numpy()


def assert_view_shows(view, output, exact: bool = True) -> None:
    """A stage's view is of ``output`` (a fresh engine's result for that stage): the tensor
    the worker kept, and what the window draws of it: the full view's values, or the
    thumbnail (for a stage not shown) of exactly that tensor."""
    import numpy as np

    from layerlab.core import stage_draw

    kept, want = view.result.output.cpu().numpy(), output.cpu().numpy()
    if exact:
        np.testing.assert_array_equal(kept, want)
    else:
        np.testing.assert_allclose(kept, want, atol=1e-5)
    if view.full:
        np.testing.assert_array_equal(view.values, kept[0])
    else:
        thumb = stage_draw.thumbnail(stage_draw.stage_tensor(output.cpu()), view.thumb.mode,
                                     view.thumb.colormap)
        if exact:
            np.testing.assert_array_equal(view.thumb.grid_u8, thumb.grid_u8)

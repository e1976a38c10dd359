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
    """Wait until the window's runner has no run in flight or pending."""
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=timeout)

"""The window's colours, in one place (a widget never spells a colour of its own)."""

from __future__ import annotations

ERROR = "#c62828"  # error text, failed stages, invalid fields
ERROR_TINT = "#fbd5d5"  # background of a field whose value is refused
MUTED = "#8c8c8c"  # disabled layers
BAR = "#64a0e6"  # bars of vector stages in thumbnails
THUMB_BACKGROUND = "#282828"
RECEPTIVE_FIELD_PEN = (255, 60, 60)
HOVER_PEN = (255, 220, 0)

STALE_BADGE = "background: rgba(255, 244, 224, 235); color: #6d4300; border: 1px solid #f0b860; " \
    "border-radius: 3px; padding: 4px 8px;"  # over pictures that are not of the edited stack

RUN_ERROR_BADGE = "background: rgba(253, 236, 234, 240); color: #8e1c1c; border: 1px solid " \
    "#e57373; border-radius: 3px; padding: 4px 8px; font-weight: bold;"  # a failed run

# The banner above the view: (background, text, border) per kind of message.
BANNER = {
    "error": ("#fdecea", "#8e1c1c", "#e57373"),
    "warning": ("#fff4e0", "#6d4300", "#f0b860"),
    "info": ("#e8f1fb", "#174a7c", "#90b8e0"),
}

"""What the command line and ``layerlab bench`` share: one-line usage errors and writing to
standard output (a module of its own, so the bench does not import the command line back)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

PROG = "layerlab"


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``layerlab: error: <message>``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        raise UsageError(message + hint)


class _StdoutClosed(Exception):
    """Standard output is a pipe whose reader went away."""


class _StdoutFailed(Exception):
    """Writing standard output failed (a full disk, an I/O error)."""


def say(text: str, end: str = "\n") -> None:
    """Print to standard output; a full or closed stdout becomes one clear outcome."""
    try:
        sys.stdout.write(text + end)
    except BrokenPipeError:
        raise _StdoutClosed() from None
    except OSError as e:
        raise _StdoutFailed(_os_reason(e)) from None


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        raise _StdoutClosed() from None
    except OSError as e:
        raise _StdoutFailed(_os_reason(e)) from None
    except ValueError:  # pragma: no cover - stdout closed by the caller
        pass


def _os_reason(e: OSError) -> str:
    from .core.safeio import reason_for

    return reason_for(e, writing=True).reason


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush says nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _fmt(description: str, example: str) -> dict:
    return {"description": description, "epilog": "example:\n  " + example,
            "formatter_class": argparse.RawDescriptionHelpFormatter}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def terminal_text(text: object) -> str:
    """``text`` safe to print: control characters (ESC, BEL, ...), lone surrogates and other
    invisible formatting characters are shown as escapes (``\\x1b``) instead of reaching
    the terminal."""
    s = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() or ch == " " else
                   ch.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for ch in s)


def _error_line(message: str, prefix: str = f"{PROG}: error: ") -> None:
    try:
        print(prefix + terminal_text(_one_line(message)), file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr itself is gone: nothing more to say
        pass


def warn(message: str) -> None:
    """One ``layerlab: warning: ...`` line on stderr."""
    _error_line(message, prefix=f"{PROG}: warning: ")

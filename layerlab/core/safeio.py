"""Safe reading and writing of the files a user names: one place for each rule.

Reading (pipelines, images, manifests):
- a file is opened non-blocking, so a FIFO without a writer never hangs (``<(cat p.json)``
  still works: its writer is there);
- at most ``limit`` bytes are ever read, whatever size the file reports (``/dev/zero`` and
  ``/dev/urandom`` report 0 and never end);
- a stream (FIFO, pipe, device) that sends nothing for :data:`STREAM_IDLE_S` seconds is given
  up on.

Writing (scripts, pipelines, PNGs, exports):
- a regular file (or a new name) is written atomically: a temporary file made by
  :func:`tempfile.mkstemp` (``O_EXCL``, never a planted symlink) in the target's folder, then
  renamed over the target;
- anything else that exists (a FIFO, ``/dev/null``, a terminal) is written directly and never
  replaced;
- names longer than the file system allows, a full disk and the like become one sentence.

Signals: :func:`cleanup_on_signals` turns every catchable terminating signal (SIGTERM, SIGHUP,
SIGQUIT, ...) into :class:`Terminated` while it is active, so ``finally`` blocks remove
temporary files and folders; :func:`critical` defers such a signal over a few renames.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

STREAM_IDLE_S = 30.0  # a FIFO or device that sends nothing for this long is given up on
CHUNK = 1 << 20
NAME_MAX_DEFAULT = 255
PATH_MAX_DEFAULT = 4096


def _read_umask() -> int:
    """The process umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f.read(65536).splitlines():
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore once, at import
    os.umask(mask)
    return mask


_UMASK = _read_umask()
_os_write = os.write  # the one call that writes file data (tests simulate a full disk here)
_os_open_read = os.open  # the one call that opens a file to read (tests simulate refusals)


class FileProblem(OSError):
    """A file could not be read or written; ``reason`` is a short phrase for the user.

    ``kind`` is one of ``missing``, ``directory``, ``permission``, ``too-large``, ``empty``,
    ``too-long``, ``disk-full``, ``not-regular``, ``other``.
    """

    def __init__(self, reason: str, kind: str = "other", size: int | None = None,
                 code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.size = size
        self.code = code

    def __str__(self) -> str:
        return self.reason


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def reason_for(exc: OSError, *, writing: bool = False, where: str | os.PathLike | None = None
               ) -> FileProblem:
    """The user's sentence for an ``OSError`` (a :class:`FileProblem` passes through)."""
    if isinstance(exc, FileProblem):
        if exc.kind != "disk-full" or where is None:
            return exc
        code = exc.code
    else:
        code = exc.errno
    if code == errno.ENOENT:
        return FileProblem("the file does not exist", "missing")
    if code == errno.EISDIR:
        return FileProblem("it is a directory", "directory")
    if code in (errno.EACCES, errno.EPERM):
        return FileProblem("permission denied", "permission")
    if code == errno.ENAMETOOLONG:
        return FileProblem("the name is too long for the file system", "too-long")
    if code in (errno.ENOSPC, errno.EDQUOT):
        place = f" in {os.fspath(where)}" if where is not None else ""
        what = "the disk is full" if code == errno.ENOSPC else "the disk quota is used up"
        return FileProblem(f"{what} (no space left{place})", "disk-full", code=code)
    if code == errno.EROFS:
        return FileProblem("the file system is read-only", "permission")
    if code == errno.ENXIO and writing:
        return FileProblem("nothing is reading from it (a FIFO without a reader)",
                           "not-regular")
    if code == errno.ELOOP:
        return FileProblem("it is a symbolic link loop", "other")
    if code == errno.ENOTDIR:
        return FileProblem("a part of the path is not a folder", "missing")
    return FileProblem(exc.strerror or str(exc) or type(exc).__name__, "other")


# --- names -----------------------------------------------------------------------------------

def check_name_length(path: str | os.PathLike) -> None:
    """Raise :class:`FileProblem` (``too-long``) if a part of ``path`` is longer than allowed."""
    raw = os.fsencode(os.fspath(path))
    if len(raw) >= PATH_MAX_DEFAULT:
        raise FileProblem(f"the path is too long ({len(raw)} bytes; at most "
                          f"{PATH_MAX_DEFAULT - 1})", "too-long")
    for part in raw.split(b"/"):
        if len(part) > NAME_MAX_DEFAULT:
            raise FileProblem(f"the name is too long ({len(part)} bytes; a file or folder "
                              f"name may have at most {NAME_MAX_DEFAULT})", "too-long")


def _cut(name: str, room: int) -> str:
    """``name`` cut to at most ``room`` bytes, on a character boundary."""
    out = []
    used = 0
    for ch in name:
        n = len(os.fsencode(ch))
        if used + n > room:
            break
        out.append(ch)
        used += n
    return "".join(out)


# --- reading ---------------------------------------------------------------------------------

def _open_read(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = _os_open_read(path, flags)
    except OSError as e:
        raise reason_for(e) from None
    try:
        st = os.fstat(fd)
    except OSError as e:  # pragma: no cover - fstat on an open descriptor
        os.close(fd)
        raise reason_for(e) from None
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise FileProblem("it is a directory", "directory")
    return fd, st


def _blocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def _too_large(limit: int, size: int | None) -> FileProblem:
    if size:
        return FileProblem(f"it is {human_bytes(size)}, more than the {human_bytes(limit)} "
                           f"allowed", "too-large", size)
    return FileProblem(f"it holds more than the {human_bytes(limit)} allowed (reading "
                       f"stopped there)", "too-large")


def _read_fd(fd: int, st: os.stat_result, limit: int, idle_s: float) -> bytes:
    regular = stat.S_ISREG(st.st_mode)
    if regular and st.st_size > limit:
        raise _too_large(limit, st.st_size)
    parts: list[bytes] = []
    total = 0
    if regular:
        _blocking(fd)
    poller = None if regular else select.poll()
    if poller is not None:
        poller.register(fd, select.POLLIN | select.POLLPRI)
    last = time.monotonic()
    while total <= limit:
        try:
            chunk = os.read(fd, min(CHUNK, limit + 1 - total))
        except BlockingIOError:  # a stream with a writer that has sent nothing yet
            if poller is not None and not poller.poll(250) \
                    and time.monotonic() - last > idle_s:
                raise FileProblem(f"nothing arrived from it for {idle_s:.0f} s (a FIFO or "
                                  f"device whose writer is stuck?)", "not-regular") from None
            continue
        if not chunk:  # end of file; a FIFO without a writer ends at once
            break
        parts.append(chunk)
        total += len(chunk)
        last = time.monotonic()
    if total > limit:
        raise _too_large(limit, None)
    if not total and not regular:
        raise FileProblem("nothing arrived from it (a FIFO or pipe without a writer)", "empty")
    return b"".join(parts)


def read_capped(path: str | os.PathLike, limit: int, *, idle_s: float | None = None) -> bytes:
    """The bytes of ``path``, at most ``limit`` of them (else :class:`FileProblem`)."""
    fd, st = _open_read(path)
    try:
        return _read_fd(fd, st, limit, STREAM_IDLE_S if idle_s is None else idle_s)
    except OSError as e:
        raise reason_for(e) from None
    finally:
        os.close(fd)


def open_for_decoding(path: str | os.PathLike, stream_limit: int):
    """A binary file object to decode ``path`` from (Pillow reads lazily from it).

    A regular file with a size is opened as it is; anything else (a FIFO, a device, a
    ``/proc`` file reporting 0 bytes) is read first, at most ``stream_limit`` bytes, and
    handed over from memory. An empty file raises :class:`FileProblem` (``empty``).
    """
    import io

    fd, st = _open_read(path)
    try:
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            _blocking(fd)
            return os.fdopen(fd, "rb")
        data = _read_fd(fd, st, stream_limit, STREAM_IDLE_S)
    except OSError as e:
        os.close(fd)
        raise reason_for(e) from None
    os.close(fd)
    if not data:
        raise FileProblem("the file is empty (0 bytes)", "empty")
    return io.BytesIO(data)


# --- writing ---------------------------------------------------------------------------------

Data = bytes | bytearray | memoryview | Iterable[bytes | bytearray | memoryview]


def _chunks(data: Data) -> Iterator[memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        data = (data,)
    for part in data:
        view = memoryview(part).cast("B")
        for start in range(0, len(view), CHUNK):
            yield view[start:start + CHUNK]


def _write_all(fd: int, data: Data) -> None:
    for view in _chunks(data):
        while view:
            n = _os_write(fd, view)
            if n <= 0:  # pragma: no cover - write(2) returns >0 or raises
                raise OSError(errno.EIO, "nothing was written")
            view = view[n:]


def write_file(path: str | os.PathLike, data: Data) -> Path:
    """Write ``data`` to ``path``: atomically for a regular file or a new name, directly to an
    existing FIFO or device (never replacing it). Raises :class:`FileProblem`."""
    p = Path(path)
    check_name_length(p)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise reason_for(e, writing=True) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise FileProblem("it is a folder", "directory")
    with cleanup_on_signals():
        if st is not None and not stat.S_ISREG(st.st_mode):
            _write_direct(p, data)
        else:
            _write_atomic(p, data, None if st is None else stat.S_IMODE(st.st_mode))
    return p


def _write_direct(p: Path, data: Data) -> None:
    flags = os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise reason_for(e, writing=True) from None
    try:
        _blocking(fd)
        _write_all(fd, data)
    except OSError as e:
        raise reason_for(e, writing=True, where=p.parent) from None
    finally:
        os.close(fd)


def _write_atomic(p: Path, data: Data, mode: int | None) -> None:
    folder = p.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=".layerlab-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise reason_for(e, writing=True, where=folder) from None
    try:
        try:
            os.fchmod(fd, 0o666 & ~_UMASK if mode is None else mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise reason_for(e, writing=True, where=folder) from None
        raise


def write_new_file(path: str | os.PathLike, data: Data) -> None:
    """Create ``path`` (which must not exist: ``O_EXCL``, no symlink followed) and write
    ``data``: for files inside a fresh private folder, such as an export in progress."""
    p = Path(path)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0))
    try:
        fd = os.open(p, flags, 0o666)
    except OSError as e:
        raise reason_for(e, writing=True, where=p.parent) from None
    try:
        _write_all(fd, data)
    except OSError as e:  # the caller says where (its folder is a temporary one)
        raise reason_for(e, writing=True) from None
    finally:
        os.close(fd)


def make_temp_dir(beside: Path, tag: str) -> Path:
    """A fresh hidden folder ``.<name>.<tag>-XXXXXXXX`` beside ``beside`` (``mkdtemp``), with
    the permissions a plain ``mkdir`` would give."""
    room = NAME_MAX_DEFAULT - len(tag) - 12
    prefix = f".{_cut(beside.name, room)}.{tag}-"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=beside.parent))
    except OSError as e:
        raise reason_for(e, writing=True, where=beside.parent) from None
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)
    except OSError:  # pragma: no cover - we just made it
        pass
    return tmp


# --- signals ---------------------------------------------------------------------------------

class Terminated(BaseException):
    """A terminating signal arrived while :func:`cleanup_on_signals` was active."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:  # pragma: no cover
            return f"signal {self.signum}"


_TERMINATING = tuple(getattr(signal, n) for n in (
    "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGXCPU", "SIGXFSZ",
    "SIGVTALRM", "SIGPROF", "SIGPWR", "SIGPOLL", "SIGSYS") if hasattr(signal, n))

_guard = {"active": 0, "critical": 0, "pending": None}


def _on_signal(signum, frame) -> None:
    if _guard["critical"]:
        _guard["pending"] = _guard["pending"] or signum
        return
    raise Terminated(signum)


@contextmanager
def cleanup_on_signals(*, redeliver: bool = True):
    """While active (main thread only), a terminating signal raises :class:`Terminated`, so
    the caller's cleanup (``finally``, ``except BaseException``) runs; signals with a handler
    of their own are left alone.

    With ``redeliver`` (the default, for library callers such as the window) the signal is
    sent again once the cleanup is done, with the previous handler back in place, so the
    process ends as it would have; the command line passes ``redeliver=False`` and turns
    :class:`Terminated` into exit status 128 + N. Nested uses defer to the outermost.
    """
    if threading.current_thread() is not threading.main_thread() or _guard["active"]:
        yield
        return
    installed = {}
    for s in _TERMINATING:
        try:
            if signal.getsignal(s) == signal.SIG_DFL:
                installed[s] = signal.signal(s, _on_signal)
        except (OSError, ValueError):  # pragma: no cover - not settable here
            continue
    _guard["active"] += 1
    restored = False

    def restore() -> None:
        _guard["active"] -= 1
        for s, old in installed.items():
            signal.signal(s, old)

    try:
        yield
    except Terminated as t:
        restore()
        restored = True
        if redeliver:
            os.kill(os.getpid(), t.signum)  # the previous (default) action: the process ends
        raise
    finally:
        if not restored:
            restore()


@contextmanager
def critical():
    """Defer a terminating signal until the block (a few renames) is done, then raise it."""
    _guard["critical"] += 1
    try:
        yield
    finally:
        _guard["critical"] -= 1
        pending = _guard["pending"]
        if not _guard["critical"] and pending is not None:
            _guard["pending"] = None
            if _guard["active"]:
                raise Terminated(pending)

"""File locks: the writer lock on the database file, the readers lock on
`<database>-readers` (docs/processes.md), and who holds a lock when one is
refused. Only this module calls `flock`; a latch is an in-memory lock
(`engine/latch.py`), a lock here is a file's.

Both locks live on an open file description of their own, so two opens in
one process conflict as two processes would, and the kernel drops a killed
process's locks. After `fork()` a child forgets every lock it inherited
(`_forget_inherited`), closing its descriptors without unlocking: the lock
stays the parent's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import weakref
from collections.abc import Iterator

from engine.disk import io_error
from engine.errors import DatabaseLockedError, StorageIOError

__all__ = ["FileLock", "ReaderLock", "poll_pauses"]


def poll_pauses() -> Iterator[float]:
    """The sleeps between polls for a held lock, in seconds: 1 ms doubling up
    to 50 ms, so a short wait is noticed at once and a long one costs little."""
    pause = 0.001
    while True:
        yield pause
        pause = min(pause * 2, 0.05)


class FileLock:
    """An exclusive (or shared, for read-only opens) `flock` on a path.

    The lock lives on its own open file description, so a second open of the
    same file in this process conflicts just as another process would. A
    conflicting lock is polled for (`LOCK_NB` with short sleeps) up to
    `timeout` seconds; then `DatabaseLockedError` says who holds the file.
    """

    __slots__ = ("path", "fd")

    def __init__(self, path: str | os.PathLike[str], shared: bool = False, timeout: float = 0.0) -> None:
        self.path = os.fspath(path)
        try:
            self.fd: int | None = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise io_error("open", self.path, exc) from exc
        mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        deadline = time.monotonic() + timeout
        pauses = poll_pauses()
        while True:
            try:
                fcntl.flock(self.fd, mode)  # noqa: TID251 - the lock owner
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    self._close_fd()
                    raise io_error("lock", self.path, exc) from exc  # pragma: no cover - flock fails otherwise only with ENOLCK
                left = deadline - time.monotonic()
                if left <= 0:
                    holder = _lock_holders(self.fd)
                    self._close_fd()
                    waited = f"waited {timeout:g} s" if timeout else "timeout=0, not waiting"
                    raise DatabaseLockedError(f"{self.path}: {holder} ({waited})") from exc
            time.sleep(min(next(pauses), left))

    def _close_fd(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def forget(self) -> None:
        """Close this process's copy of the lock's fd without unlocking: in a
        child of fork() the lock belongs to the open file description the
        parent shares, so flock(LOCK_UN) here would unlock the parent."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                os.close(fd)
            except OSError:  # nothing to undo: the parent's lock stands either way
                pass

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)  # noqa: TID251 - the lock owner
            finally:
                os.close(fd)


class ReaderLock:
    """The readers lock: an `flock` on `<database>-readers`, a file that holds
    no data (docs/processes.md).

    A read-only open holds it shared (`hold`) for each snapshot, while it
    reads the data file; the writer holds it exclusive (`exclusive`) while it
    writes pages home, so a checkpoint never rewrites a page a reader's
    snapshot still reads. The lock lives on this object's own open file
    description: a reader and a writer in one process conflict as two
    processes would, and a killed process's lock is dropped by the kernel.

    The file is created by whoever opens first. A reader that can neither
    open nor create it (a read-only directory, where no writer can run
    either) works without it: `fd` is None and every call is a no-op.
    """

    __slots__ = ("path", "fd", "held", "forked", "__weakref__")

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = os.fspath(path)
        self.held = 0  # 0 none, fcntl.LOCK_SH or fcntl.LOCK_EX
        self.forked = False
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd: int | None = os.open(self.path, flags | os.O_CREAT, 0o666)
        except OSError as exc:
            try:  # a reader without write permission can still lock an existing file
                self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                if create:
                    raise io_error("open", self.path, exc) from exc
                self.fd = None
        if self.fd is not None:
            _inherited.add(self)

    def _flock(self, mode: int) -> bool:
        try:
            fcntl.flock(self.fd, mode)  # noqa: TID251 - the lock owner
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) and mode & fcntl.LOCK_NB:
                return False
            raise io_error("lock", self.path, exc) from exc
        return True

    def hold(self) -> None:
        """Take the lock shared; waits only while a writer writes pages home."""
        if self.forked:
            raise StorageIOError(errno.EBADF, f"{self.path}: lock inherited across fork(); open the database again")
        if self.fd is not None:
            self._flock(fcntl.LOCK_SH)
            self.held = fcntl.LOCK_SH

    def exclusive(self, wait: bool) -> bool:
        """Take the lock exclusive: at once or False (`wait=False`), or
        waiting until every reader's snapshot has ended."""
        if self.forked:
            raise StorageIOError(errno.EBADF, f"{self.path}: lock inherited across fork(); open the database again")
        if self.fd is None:
            return True
        if not self._flock(fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB):
            return False
        self.held = fcntl.LOCK_EX
        return True

    def release(self) -> None:
        """Drop whatever this object holds (the file stays open)."""
        if self.fd is not None and self.held:
            self.held = 0
            self._flock(fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self.held = 0
            _inherited.discard(self)
            os.close(fd)  # closing the last descriptor drops the lock

    def forget(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking,
        so a lock the parent holds stays the parent's and the child holds
        nothing once it closes (an `LOCK_UN` here would unlock the parent)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self.held = 0
            self.forked = True
            os.close(fd)


_inherited: weakref.WeakSet[ReaderLock] = weakref.WeakSet()


def _forget_inherited() -> None:
    # After fork the child shares each lock's open file description with the
    # parent; a child that lives on must not keep the parent's lock alive.
    for lock in list(_inherited):
        lock.forget()
    _inherited.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)


def _lock_holders(fd: int) -> str:
    """Who holds `flock`s on the file open as `fd`, from /proc/locks (Linux);
    a generic phrase where that cannot be read."""
    try:
        st = os.fstat(fd)
        dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks") as f:
            rows = [line.split() for line in f if "->" not in line]
    except OSError:
        return "another open of the database holds its lock"
    writers, readers = [], []
    for row in rows:
        if len(row) >= 6 and row[1] == "FLOCK" and row[5] == dev and row[4].isdigit():
            (writers if row[3] == "WRITE" else readers).append(int(row[4]))
    if writers:
        return f"a writer holds the database: {_describe(writers[0])}"
    if readers:
        return (f"{len(readers)} read-only open(s) hold a shared lock: "
                + ", ".join(_describe(pid) for pid in sorted(set(readers))[:4]))
    return "another open of the database holds its lock"


def _describe(pid: int) -> str:
    if pid == os.getpid():
        return f"process {pid} (this process)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"process {pid} ({cmd[:80]})" if cmd else f"process {pid}"

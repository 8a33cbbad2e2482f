"""Snapshots of a read-only `Database`: readers in other processes than the
writer's (docs/processes.md, rule 9 of `wal`).

Each read of a read-only handle is one snapshot: it holds the readers lock
shared, so no checkpoint writes pages home meanwhile, and when no other read
of the handle is in progress it first brings the handle's state up to the
log: the commits appended since are replayed (most in place, as the writer
made them), or, when the log was reset or a checkpoint may have written
pages home, the state is rebuilt from both files. A reader never goes back
to a state older than one it has shown.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from engine.bufferpool import BufferPool
from engine.disk import BlockFile
from engine.errors import StorageIOError
from engine.latch import RWLatch
from engine.locks import ReaderLock
from engine.pager import Pager
from engine.wal import Wal, follow, read_base
from engine.walformat import CKPT_END, COMMIT, decode_ops

__all__ = ["Snapshots"]

_REBUILD_TRIES = 3  # a reader's rebuild that reads an older state than it had is retried this often


class Snapshots:
    """A read-only `Database`'s snapshots (a mixin: the state is the database's)."""

    path: str
    read_only: bool
    rebuilds: int
    _data: BlockFile
    _pool: BufferPool
    _pager: Pager
    _wal: Wal
    _latch: RWLatch
    _version: int
    _rlock: ReaderLock | None
    _snap_mutex: threading.Lock
    _snaps: int  # this handle's reads in progress (a reader refreshes only at 0)
    _log_file: BlockFile | None  # a reader's view of the real log
    _follow: tuple[int | None, int, int]  # base lsn, offset, next lsn of the log read so far
    _seen_lsn: int  # the last commit a reader's state holds: it never goes back

    if TYPE_CHECKING:  # the database's own, `recovery.Recovery`'s, `writes.Writes`'s
        def _ensure_usable(self) -> None: ...
        def _open(self, create: bool) -> None: ...
        def _replay(self, ops: list, lsn: int) -> None: ...
        def _replay_in_place(self, op: tuple, lsn: int) -> bool: ...

    def _enter(self) -> None:
        """Start a snapshot: the readers lock held shared and, when no other
        read of this handle is in progress, the state brought up to the log."""
        with self._snap_mutex:
            self._ensure_usable()
            rlock = self._rlock or _NO_LOCK  # a database on no real path (an opener's own files)
            if rlock.forked:  # a child's snapshot count and lock are its parent's
                rlock.hold()  # raises
            if self._snaps == 0:
                rlock.hold()
                try:
                    self._refresh()
                except BaseException:
                    rlock.release()
                    raise
            self._snaps += 1

    def _leave(self) -> None:
        with self._snap_mutex:
            self._snaps -= 1
            if self._snaps == 0 and self._rlock is not None:
                self._rlock.release()

    def _snapshot(self) -> _Snapshot | _NoSnapshot:
        """A context for the non-hot reads of a read-only handle."""
        return _Snapshot(self) if self.read_only else _NO_SNAPSHOT

    def _refresh(self) -> None:
        """Rule 9: replay the commits appended since the last snapshot, or
        rebuild from both files when the log was reset or a checkpoint may
        have written pages home."""
        log = self._log_file
        if self._pool is None:  # an earlier rebuild failed: try again
            self._rebuild()
            return
        if log is None:
            if os.path.exists(self.path + "-wal"):
                self._rebuild()
            return
        base, pos, expect = self._follow
        if read_base(log) != base:
            self._rebuild()
            return
        records = follow(log, pos, expect)
        if any(rtype == CKPT_END for _, rtype, _, _ in records):
            self._rebuild()
            return
        if not records:
            return
        self._latch.acquire_write()
        try:
            for lsn, rtype, payload, end in records:
                if rtype == COMMIT:
                    ops = decode_ops(payload)
                    if len(ops) != 1 or not self._replay_in_place(ops[0], lsn):
                        self._replay(ops, lsn)
                self._follow = (base, end, lsn + 1)
                self._seen_lsn = lsn
            self._version += 1
        finally:
            self._latch.release_write()

    def _rebuild(self) -> None:
        """A reader's state built again from the data file and the log (the
        readers lock is held shared, so no page goes home meanwhile). A
        state older than the one this handle showed is read again: a reader
        never goes back."""
        seen = self._seen_lsn
        for _ in range(_REBUILD_TRIES):
            self._latch.acquire_write()
            try:
                for part in (self._pool, self._wal, self._data):  # a failed rebuild may have left some
                    if part is not None:
                        part.close()
                self._pool = self._data = self._wal = None  # type: ignore[assignment]
                self._log_file = None
                self._open(False)
                self._pool.prewarm(self._pager.page_count)
                self._version += 1
                self.rebuilds += 1
            finally:
                self._latch.release_write()
            last = self._follow[2] - 1
            if last >= seen or self._follow[0] is None:
                self._seen_lsn = max(seen, last)
                return
        raise StorageIOError(5, f"{self.path}: the log reads older than a state already shown; reopen")


class _Snapshot:
    """`with`: one snapshot of a read-only handle (`Snapshots._enter`)."""

    __slots__ = ("_db",)

    def __init__(self, db: Snapshots) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db._enter()

    def __exit__(self, *exc) -> None:
        self._db._leave()


class _NoSnapshot:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


_NO_SNAPSHOT = _NoSnapshot()


class _NoLock:
    """The readers lock of a read-only database on no real path (an
    opener's own files): a snapshot holds and releases nothing."""

    fd = None
    held = 0
    forked = False

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


_NO_LOCK = _NoLock()

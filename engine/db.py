"""`open()` and `Database`: an open database file (docs/api.md).

`Database` is put together from one class per concern, each in its module:

- `recovery.Recovery`: opening, creating and recovering the files;
- `snapshots.Snapshots`: a read-only handle's snapshots of a live writer's
  database (docs/processes.md);
- `writes.Writes`: the write path, with the order of log and page that
  keeps each write atomic (rules at the top of engine/writes.py);
- `checkpoint.Checkpoints`: pages written home and the log trimmed.

This module holds the handle's state and lifecycle (open, close, fork) and
the calls that are not writes: trees, stats, checks, backup and compaction.
`Tree` (engine/tree.py) and `Batch` (engine/batch.py) are the mappings over
it; their names are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from dataclasses import dataclass

from engine import btree, log, maintenance
from engine.arguments import as_tree_name
from engine.batch import Batch
from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.check import CheckReport, check_database
from engine.checkpoint import CHECKPOINT_BYTES, MIN_CHECKPOINT_BYTES, Checkpoints
from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_SIZE, USABLE
from engine.disk import BlockFile, DirectFile
from engine.errors import (
    CorruptionError,
    DatabaseClosedError,
    DragonDBError,
    ForkedError,
    NeedsRecoveryError,
    NotADatabaseError,
    OptionError,
    ReadOnlyError,
    StorageIOError,
)
from engine.latch import RWLatch
from engine.locks import FileLock, ReaderLock
from engine.openers import complete
from engine.pager import Pager
from engine.poolsize import pool_frames
from engine.recovery import Opener, Recovery
from engine.snapshots import Snapshots
from engine.tree import Tree, _SnapshotTree
from engine.typedefs import CompactResult, Stats, TreeStats
from engine.wal import Wal
from engine.walformat import HEADER_BYTES
from engine.writes import Writes, create_tree, drop_tree

__all__ = ["open", "Database", "Tree", "Batch", "PageInfo", "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "CheckReport"]

_SYNC_MODES = ("full", "normal", "off")


def open(  # noqa: A001 - the API's name
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    read_only: bool = False,
    pool_pages: int | None = None,
    pool_size: int | str | None = None,
    timeout: float = 5.0,
    direct_io: bool | str = "auto",
    sync: str = "full",
    opener: Opener | None = None,
    checkpoint_bytes: int = CHECKPOINT_BYTES,
) -> Database:
    """Open (and recover) the database at `path`; see docs/api.md."""
    return Database(path, create=create, read_only=read_only, pool_pages=pool_pages, pool_size=pool_size,
                    timeout=timeout, direct_io=direct_io, sync=sync, opener=opener,
                    checkpoint_bytes=checkpoint_bytes)


@dataclass(frozen=True)
class PageInfo:
    """One page of a tree, as `dragondb show` draws it."""

    page_id: int
    kind: str
    keys: int
    fill: float
    first_key: bytes | None
    last_key: bytes | None
    children: list[int]


class Database(Recovery, Snapshots, Writes, Checkpoints):
    """An open database file. Share it between threads freely."""

    # Set by `_open`; None only before it and after `close()`, when `_ensure_usable` raises first.
    _data: BlockFile
    _wal: Wal
    _pool: BufferPool
    _pager: Pager

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False,
                 pool_pages: int | None = None, pool_size: int | str | None = None, timeout: float = 5.0,
                 direct_io: bool | str = "auto", sync: str = "full", opener: Opener | None = None,
                 checkpoint_bytes: int = CHECKPOINT_BYTES) -> None:
        if sync not in _SYNC_MODES:
            raise OptionError(f"sync must be one of {_SYNC_MODES}, not {sync!r}")
        if direct_io not in ("auto", True, False):
            raise OptionError(f"direct_io must be 'auto', True or False, not {direct_io!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise OptionError(f"timeout must be seconds >= 0, not {timeout!r}")
        if type(checkpoint_bytes) is not int or checkpoint_bytes < MIN_CHECKPOINT_BYTES:
            raise OptionError(f"checkpoint_bytes must be an int >= {MIN_CHECKPOINT_BYTES}, not {checkpoint_bytes!r}")
        self.path = os.fspath(path)
        self.read_only = read_only
        self.sync_mode = sync
        self.pool_pages = pool_frames(pool_size, pool_pages)  # the pool's cap in frames
        self.timeout = timeout
        self._closed = True
        self._forked = False  # set in a fork()ed child only: see `_forget_in_child`
        self._pid = os.getpid()
        self._lock: FileLock | None = None
        # docs/processes.md: the readers lock, and a reader's snapshot state
        self._rlock: ReaderLock | None = None
        self._rlock_created = False
        self._snap_mutex = threading.Lock()
        self._snaps = 0  # this handle's reads in progress (a reader refreshes only at 0)
        self._log_file: BlockFile | None = None  # a reader's view of the real log
        self._follow: tuple[int | None, int, int] = (None, HEADER_BYTES, 0)  # base lsn, offset, next lsn
        self._seen_lsn = 0  # the last commit a reader's state holds: it never goes back
        self._ckpt_retry_at = 0
        self.checkpoints_deferred = 0
        self.rebuilds = 0
        self._data = self._wal = self._pool = None  # type: ignore[assignment]
        self._latch = RWLatch()
        self._trees: dict[str, TreeEntry] = {}
        self._handles: dict[str, Tree] = {}
        self._version = 0
        self.checkpoint_bytes = checkpoint_bytes  # checkpoint automatically once the log is longer
        self.checkpoints = 0
        self.last_checkpoint_error: BaseException | None = None
        self.recovered_commits = 0
        if opener is None:
            def opener(p: str, c: bool, _d=direct_io, _ro=read_only) -> BlockFile:
                own = p in (self.path, self.path + "-wal")  # read-only protects these; a backup's copy is written
                return DirectFile.open(p, c, _d if p == self.path else False, read_only=_ro and own)
        else:
            opener = complete(opener)  # a minimal BlockFile gets truncate, rename, sync_dir, direct
        self._opener = opener
        self._tree_cls = _SnapshotTree if read_only else Tree
        try:
            self._open(create)
            self._pool.prewarm(self._pager.page_count)
        except BaseException as exc:
            self._release()
            if isinstance(exc, NotADatabaseError) and self._rlock_created:
                _unlink(self.path + "-readers")  # a refused open leaves nothing behind
            raise
        finally:
            if self._rlock is not None:
                self._rlock.release()
        self._seen_lsn = self._follow[2] - 1
        self._closed = False
        _open_databases.add(self)

    def _ensure_usable(self) -> None:
        if self._closed:
            if self._forked:
                raise ForkedError(f"{self.path}: opened in process {self._pid} before a fork(); "
                                  f"open the database again in this process")
            raise DatabaseClosedError(f"{self.path}: database is closed")
        if self._wal is not None and self._wal.failed:
            raise NeedsRecoveryError(f"{self.path}: a sync failed; close and reopen the database to recover")

    def _ensure_writable(self) -> None:
        self._ensure_usable()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: opened read-only")

    # -- trees ------------------------------------------------------------------

    def tree(self, name: str = "default", create: bool = True) -> Tree:
        """The tree called `name`, created if missing (unless `create=False`)."""
        name = as_tree_name(name)
        self._ensure_usable()
        with self._snapshot():
            missing = name not in self._trees
        if missing:
            if not create:
                raise KeyError(name)
            self._write(create_tree, name)
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = self._tree_cls(self, name)
        return handle

    def trees(self) -> list[str]:
        self._ensure_usable()
        with self._snapshot():
            return sorted(self._trees)

    def drop_tree(self, name: str) -> None:
        """Free every page of tree `name`; KeyError if there is none."""
        name = as_tree_name(name)
        self._ensure_writable()
        if name not in self._trees:
            raise KeyError(name)
        self._write(drop_tree, name)

    def batch(self) -> Batch:
        """An all-or-nothing group of writes across trees, one commit."""
        self._ensure_writable()
        return Batch(self)

    # -- durability and maintenance ----------------------------------------------

    def commit(self) -> None:
        """Make every completed write durable now (fsync the log)."""
        self._ensure_usable()
        if not self.read_only:
            wal = self._wal
            try:
                wal.sync_to(wal.lsn, force=True)
            except StorageIOError as exc:
                if self._closed:  # close() shut the log under this sync
                    raise DatabaseClosedError(f"{self.path}: database closed during commit()") from exc
                raise

    def backup(self, dest_path: str | os.PathLike[str]) -> None:
        """A consistent copy of the last committed state at `dest_path`, while
        the database stays open (see engine.maintenance)."""
        maintenance.backup(self, dest_path)

    def compact(self) -> CompactResult:
        """Rewrite the file packed, giving free space back to the file
        system; crash-safe (see engine.maintenance)."""
        return maintenance.compact(self)

    def check(self, strict: bool = False) -> CheckReport:
        """Walk every invariant; see docs/architecture.md. A read-only handle
        checks the committed state it sees (one snapshot)."""
        self._ensure_usable()
        with self._snapshot():
            self._latch.acquire_write()
            try:
                self._ensure_usable()  # again: close() may have released the pool meanwhile
                report = check_database(self._pool, self._pager, self._trees)
            finally:
                self._latch.release_write()
        if strict and not report.ok:
            raise CorruptionError("; ".join(report.problems[:5]))
        return report

    def stats(self) -> Stats:
        self._ensure_usable()
        with self._snapshot():
            self._latch.acquire_read()  # close() must not shut the files under it
            try:
                self._ensure_usable()
                return self._stats()
            finally:
                self._latch.release_read()

    def _stats(self) -> Stats:
        pool, wal = self._pool, self._wal
        return {
            "page_size": PAGE_SIZE,
            "pages_allocated": self._pager.page_count,
            "pages_free": self._pager.free_count,
            **pool.stats(),
            "direct_io": bool(self._data.direct),
            "trees": len(self._trees),
            "keys": sum(e.count for e in self._trees.values()),
            "sync": self.sync_mode,
            "read_only": self.read_only,
            "log_bytes": (self._follow[1] if self.read_only else wal.end) if wal is not None else 0,
            "log_syncs": wal.syncs if wal is not None else 0,
            "commits": wal.commits if wal is not None else 0,
            "checkpoints": self.checkpoints,
            "recovered_commits": self.recovered_commits,
            "checkpoints_deferred": self.checkpoints_deferred,
            "rebuilds": self.rebuilds,
            "file_bytes": self._data.size(),
        }

    def tree_stats(self) -> dict[str, TreeStats]:
        """Per tree, its key count and height (levels; 0 before its first
        put), from one committed state; reads one page per level."""
        self._ensure_usable()
        with self._snapshot():
            self._latch.acquire_read()
            try:
                self._ensure_usable()
                return {name: {"keys": e.count, "height": btree.height(self._pool, e.root)}
                        for name, e in sorted(self._trees.items())}
            finally:
                self._latch.release_read()

    def tree_levels(self, name: str, depth: int | None = None) -> list[list[PageInfo]]:
        """The pages of tree `name` level by level, root first; with `depth`,
        the first `depth` levels only (deeper pages are not read)."""
        self._ensure_usable()
        with self._snapshot():
            return self._tree_levels(name, depth)

    def _tree_levels(self, name: str, depth: int | None = None) -> list[list[PageInfo]]:
        if name not in self._trees:
            raise KeyError(name)
        self._latch.acquire_read()
        try:
            self._ensure_usable()
            if name not in self._trees:
                raise KeyError(name)
            out = []
            for level in btree.levels(self._pool, self._trees[name].root, depth):
                row = []
                for pid, node in level:
                    row.append(PageInfo(
                        pid, "leaf" if node.leaf else "internal", len(node.keys),
                        round(node.size / USABLE, 3),
                        node.keys[0] if node.keys else None, node.keys[-1] if node.keys else None,
                        [] if node.leaf else list(node.children)))
                out.append(row)
            return out
        finally:
            self._latch.release_read()

    def close(self) -> None:
        """Checkpoint and close; idempotent."""
        if self._closed:
            if self._forked:
                self._ensure_usable()  # raises: a child must not checkpoint or unlock the parent's file
            return
        self._latch.acquire_write()
        try:
            if self._closed:
                return
            self._closed = True
            self._version += 1  # open iterators stop at their next item
            _open_databases.discard(self)
            error = None
            if not self.read_only and not self._wal.failed:
                try:
                    if not self._checkpoint_locked(wait=False):
                        # readers hold snapshots: the log stays, durable
                        self._wal.sync_to(self._wal.lsn, force=True)
                except DragonDBError as exc:
                    error = exc
            self._release()
        finally:
            self._latch.release_write()
        if error is not None:
            raise error

    def _release(self) -> None:
        for closer in (getattr(self._pool, "close", None), getattr(self._wal, "close", None),
                       getattr(self._data, "close", None), getattr(self._lock, "release", None),
                       getattr(self._rlock, "close", None)):
            if closer is not None:
                try:
                    closer()
                except (OSError, DragonDBError, BufferError) as exc:
                    log.warning("close: {}", exc)
        self._pool = None  # type: ignore[assignment]

    def _forget_in_child(self) -> None:
        """In a child of fork(), before any other code runs there: the handle
        becomes closed for this process without touching what the parent
        shares with it. No checkpoint, write or flush; no flock(LOCK_UN),
        which would unlock the parent's open file description; only the
        child's copy of the lock fd is closed, so the parent can reopen
        after closing while the child lives. A latch that another parent
        thread held at fork time stays held forever here: a fresh one lets
        every call reach its closed check and raise `ForkedError`."""
        self._forked = True
        self._closed = True
        self._version += 1  # inherited iterators stop at their next item
        self._latch = RWLatch()
        if self._lock is not None:
            self._lock.forget()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Database:
        self._ensure_usable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engine.Database {self.path!r}{' closed' if self._closed else ''}>"


# Every open Database of this process, for the at-fork hook.
_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_open_databases):
        db._forget_in_child()
    _open_databases.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):  # already gone, or never ours to remove
        os.unlink(path)

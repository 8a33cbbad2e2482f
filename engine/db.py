"""`Database`, `Tree` and `Batch`: the public API of docs/api.md.

The write path. Every write holds the database's write latch once, from its
first read of the tree to its commit in memory, and takes one of two paths;
the order of log and page is what keeps each safe:

1. In place, log first (`_write_key`, most puts and deletes): when
   `btree.in_place` finds the key's leaf cached and the edit keeps it within
   its bounds (no split, merge or overflow chain), the commit record is
   appended first and the leaf changed after (`btree.apply_in_place`). A
   failed append has changed no page, so there is nothing to undo; once the
   append returned, the edit cannot fail (memory only).
2. A transaction, page then log (`_run_txn`, everything else): `txn.Txn`
   changes the tree in memory, keeping a copy of each page before its first
   change, then appends one logical commit record. On any exception, the
   append's included, `Txn.rollback` puts the copies back, so the operation
   has no effect. Changing pages before logging is safe because no changed
   page outlives a crash without its record: pages reach the data file only
   at checkpoints, and an evicted one only as a spill to the log, which
   recovery ignores (rule 2 of `wal`).
3. Both paths end in `_committed` (iterators notice, a long log is
   checkpointed), and the log fsync (rule 1 of `wal`) happens after the
   latch is released, so threads committing together share one fsync.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from engine import btree, bulk, log, maintenance
from engine.bufferpool import BufferPool, pool_frames
from engine.check import CheckReport, check_database
from engine.codec import (
    MAGIC,
    MAX_KEY_SIZE,
    MAX_VALUE_SIZE,
    META_TREES_ROOM,
    PAGE_SIZE,
    Meta,
    decode_meta,
    encode_meta,
    has_magic,
)
from engine.disk import BlockFile, DirectFile, FileLock, Overlay, ReaderLock, fsync_dir
from engine.errors import (
    BatchStateError,
    CorruptionError,
    DatabaseClosedError,
    DragonDBError,
    ForkedError,
    KeyTooLargeError,
    NeedsRecoveryError,
    NotADatabaseError,
    ReadOnlyError,
    StorageIOError,
    TreeLimitError,
    TreeNotEmptyError,
    ValueTooLargeError,
)
from engine.latch import RWLatch
from engine.pager import Pager
from engine.txn import TreeEntry, Txn
from engine.typedefs import BytesLike, CompactResult, Stats, TreeStats
from engine.wal import (
    CKPT_BEGIN,
    CKPT_END,
    COMMIT,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_LOAD,
    OP_PUT,
    LoggedStore,
    RecoveryPlan,
    Wal,
    decode_ops,
    encode_op,
    encode_ops,
    first_record,
    follow,
    read_base,
    scan,
)

__all__ = ["open", "Database", "Tree", "Batch", "PageInfo", "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "CheckReport"]

CHECKPOINT_BYTES = 64 * 1024 * 1024  # checkpoint automatically past this much log
CHECKPOINT_RETRY_BYTES = 1024 * 1024  # after a checkpoint readers deferred, log grown before the next try
_REBUILD_TRIES = 3  # a reader's rebuild that reads an older state than it had is retried this often
_SYNC_MODES = ("full", "normal", "off")
_D = TypeVar("_D")  # the type of a default returned for a missing key

Opener = Callable[[str, bool], BlockFile]  # (path, create) -> the file; the fault layer's hook


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
) -> Database:
    """Open (and recover) the database at `path`; see docs/api.md."""
    return Database(path, create=create, read_only=read_only, pool_pages=pool_pages, pool_size=pool_size,
                    timeout=timeout, direct_io=direct_io, sync=sync, opener=opener)


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


def _key(key) -> bytes:
    if type(key) is not bytes:
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        elif isinstance(key, bytes):
            key = bytes(key)
        else:
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_SIZE:
        raise KeyTooLargeError(f"key of {len(key)} bytes; keys are 1..{MAX_KEY_SIZE} bytes")
    return key


def _value(value) -> bytes:
    if type(value) is not bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value)
        else:
            raise TypeError(f"values are bytes, not {type(value).__name__}")
    if len(value) > MAX_VALUE_SIZE:
        raise ValueTooLargeError(f"value of {len(value)} bytes; at most {MAX_VALUE_SIZE}")
    return value


def _bound(b) -> bytes | None:
    if b is None:
        return None
    if isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(b)
    raise TypeError(f"scan bounds are bytes, not {type(b).__name__}")


def _prefix_end(prefix: bytes) -> bytes | None:
    """The least key greater than every key starting with `prefix`."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


_NAMES_SEEN: set[str] = set()  # tree names `_tree_name` accepted (the first 1024)


def _tree_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"tree names are str, not {type(name).__name__}")
    try:
        n = len(name.encode())
    except UnicodeEncodeError as exc:
        raise TreeLimitError("tree names must be encodable as UTF-8") from exc
    if not 0 < n <= 255:
        raise TreeLimitError(f"tree name of {n} bytes; names are 1..255 UTF-8 bytes")
    return name


class Database:
    """An open database file. Share it between threads freely."""

    # Set by `_open`; None only before it and after `close()`, when `_check` raises first.
    _data: BlockFile
    _wal: Wal
    _pool: BufferPool
    _pager: Pager

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False,
                 pool_pages: int | None = None, pool_size: int | str | None = None, timeout: float = 5.0,
                 direct_io: bool | str = "auto", sync: str = "full", opener: Opener | None = None) -> None:
        if sync not in _SYNC_MODES:
            raise ValueError(f"sync must be one of {_SYNC_MODES}, not {sync!r}")
        if direct_io not in ("auto", True, False):
            raise ValueError(f"direct_io must be 'auto', True or False, not {direct_io!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise ValueError(f"timeout must be seconds >= 0, not {timeout!r}")
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
        self._follow: tuple[int | None, int, int] = (None, HEADER_END, 0)  # base lsn, offset, next lsn
        self._seen_lsn = 0  # the last commit a reader's state holds: it never goes back
        self._ckpt_retry_at = 0
        self.checkpoints_deferred = 0
        self.rebuilds = 0
        self._data = self._wal = self._pool = None  # type: ignore[assignment]
        self._latch = RWLatch()
        self._trees: dict[str, TreeEntry] = {}
        self._handles: dict[str, Tree] = {}
        self._version = 0
        self.checkpoint_bytes = CHECKPOINT_BYTES
        self.checkpoints = 0
        self.last_checkpoint_error: BaseException | None = None
        self.recovered_commits = 0
        if opener is None:
            def opener(p: str, c: bool, _d=direct_io, _ro=read_only) -> BlockFile:
                return DirectFile.open(p, c, _d if p == self.path else False, read_only=_ro)
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

    # -- opening and recovery -------------------------------------------------

    def _open(self, create: bool) -> None:  # noqa: C901 - create, recover, read-only paths in one; split by path
        """Open and recover (rules 4 and 8 of `wal`).

        Rule 8: a killed writer's unsynced writes may still sit in the page
        cache, where this open reads them; a later power loss would take them
        back. So before the first write that builds on what was read (a
        checkpoint image written home, an appended record that says earlier
        ones were durable), both files are synced: what recovery read is then
        durable, and nothing is built on bytes that may vanish.

        A read-only open never writes either file: when there is something
        to recover it runs the same recovery over copy-on-write `Overlay`s of
        both files, in memory.
        """
        ro = self.read_only
        self._data = data = self._opener(self.path, create and not ro)
        # Only writers lock the data file; readers coordinate with the
        # writer through the readers lock alone (docs/processes.md).
        if os.path.exists(self.path) and not ro and self._lock is None:
            self._lock = FileLock(self.path, timeout=self.timeout)
        if self._rlock is None and os.path.exists(self.path):
            rpath = self.path + "-readers"
            existed = os.path.exists(rpath)
            self._rlock = ReaderLock(rpath, create=not ro)
            self._rlock_created = not existed and self._rlock.fd is not None
        if ro and self._rlock is not None and not self._rlock.held:
            self._rlock.hold()  # the whole open reads one state: no checkpoint writes meanwhile
        size = data.size()
        wal_path = self.path + "-wal"
        # The log is only opened here, never created, until the data file
        # has proven to be a database: a failed open leaves no "-wal" behind.
        log = self._try_open_log(wal_path)
        if log is not None:
            self._wal = Wal(log, self.sync_mode)
        head = memoryview(bytearray(PAGE_SIZE))
        got = data.read_into(0, head) if size else 0
        if got < min(size, PAGE_SIZE):  # the bytes are there: a flaky read, not a foreign file
            raise StorageIOError(5, f"{self.path}: short read of the metadata page ({got} of {min(size, PAGE_SIZE)} bytes)")
        # a whole creation page is an (empty) database; a part of one is not yet
        whole = got == PAGE_SIZE and bytes(head) == _creation_page()
        fresh = size == 0 or (size <= PAGE_SIZE and not whole and _interrupted_creation(head[:got]))
        blank = fresh or not any(head[:got])  # nothing of a metadata page is there
        logdata = self._wal.read_all() if log is not None else b""
        base, records, end = scan(logdata)
        if end < len(logdata) and any(logdata[end:]):
            # the scan stopped early: read again, so a flaky read is an I/O
            # error rather than a silently shortened log
            again = self._wal.read_all()
            if again != logdata:
                if not ro:
                    raise StorageIOError(5, f"{wal_path}: two reads of the log differ")
                # a live writer appends while a reader reads: take the later read
                logdata = again
                base, records, end = scan(logdata)
        first = first_record(logdata)
        if fresh and first is None and not base:
            # no database yet: nothing written, or its creation cut short (a
            # log without records holds nothing either)
            if ro:
                raise NotADatabaseError(f"{self.path}: empty file or creation never finished, not a database")
            self._create_new()
            return
        if log is None and (got < PAGE_SIZE or not has_magic(head)):
            self._not_a_database(head, got)
        plan = RecoveryPlan(logdata, records)
        restart = False  # the base is the creation page the data file lost
        if got < PAGE_SIZE or not has_magic(head):
            if blank and base == 0:
                # records from the very first LSN rebuild everything on top
                # of the creation page (a lost file growth, or a cut file)
                restart = True
            elif not any(pid == 0 for pid, _ in plan.images):
                if base is not None or first is not None:
                    raise CorruptionError(
                        f"{self.path}: metadata page lost or damaged, and its log needs it; both files left as they are")
                self._not_a_database(head, got)
        needs_work = bool(plan.images or plan.commits or restart)
        if ro:
            # recover in memory: the same steps below, over overlays; later
            # commits are replayed into them too (rule 9)
            self._log_file = log
            data = self._data = Overlay(data)
            if log is not None:
                self._wal.file = Overlay(log)
            last = records[-1].lsn if records else (base or 0)
            self._follow = (base, end, last + 1)
        elif (plan.images or restart) and self._rlock is not None:
            # pages go home: wait for readers' snapshots to end (rule 9)
            self._rlock.exclusive(wait=True)
        writable = not ro or needs_work
        if restart:
            head[:] = _creation_page()
        meta_lsn = decode_meta(head).checkpoint_lsn if base is None and first is not None else 0
        if base is None and first is not None and first[0] > meta_lsn and not (
                first[0] == meta_lsn + 1 and first[1] == CKPT_BEGIN):
            # records newer than the last checkpoint sit behind a damaged header
            # (a reset cut short leaves only that checkpoint's own records)
            raise CorruptionError(f"{wal_path}: log header damaged but newer records follow")
        if not ro:
            self._make_durable()
        if restart:
            data.write(0, head)
        if plan.images:
            for pid, at in plan.images:
                data.write(pid * PAGE_SIZE, logdata[at : at + PAGE_SIZE])
            data.read_into(0, head)
        meta = decode_meta(head)
        self._pager = Pager(data, meta.page_count)
        if data.size() < meta.page_count * PAGE_SIZE:
            if not plan.images and not restart:
                raise CorruptionError(f"{self.path}: file has {data.size()} bytes, metadata needs {meta.page_count} pages")
            # the checkpoint's file growth was lost with the crash; its pages were free
            data.extend(meta.page_count * PAGE_SIZE)
        if plan.images or restart:
            data.sync()
        self._pager.load_freelist(meta.freelist_head, meta.free_count)
        self._trees = {name: TreeEntry(root, count) for name, (root, count) in meta.trees.items()}
        if self._wal is None and not ro:
            self._wal = Wal(self._opener(wal_path, True), self.sync_mode)
            if os.path.exists(wal_path):
                fsync_dir(wal_path)
        wal = self._wal
        if wal is None:  # read-only with no log file: nothing to recover
            self._pool = BufferPool(self._pager_store(), self.pool_pages)
            return
        if base is None:
            if writable:
                wal.reset(meta.checkpoint_lsn)
            else:
                wal.start(meta.checkpoint_lsn, HEADER_END, meta.checkpoint_lsn, b"")
        else:
            last = records[-1].lsn if records else base
            wal.start(base, end, last, logdata)
        self._pool = BufferPool(LoggedStore(self._pager, wal), self.pool_pages)
        for rec, ops in zip(plan.commits, plan.ops, strict=True):  # validated by the plan, before any write
            self._replay(ops, rec.lsn)
        self.recovered_commits = len(plan.commits)
        if writable and (needs_work or records or end != len(logdata)):
            if not self._checkpoint_locked(wait=False):
                # readers hold snapshots: keep the log, cut what follows its
                # valid records so no stale record rejoins the ones appended next
                if wal.file.size() > end:
                    wal.file.truncate(end)
                wal.file.sync()
        if not ro and self._rlock is not None:
            self._rlock.release()

    def _make_durable(self) -> None:
        """Rule 8: sync what this open read before building on it."""
        self._data.sync()
        if self._wal is not None:
            self._wal.file.sync()
            if os.path.exists(self.path + "-wal"):
                fsync_dir(self.path)

    def _not_a_database(self, head: memoryview, got: int) -> None:
        magic = bytes(head[32:40])
        flipped = sum(bin(a ^ b).count("1") for a, b in zip(magic, MAGIC, strict=False))
        if got >= PAGE_SIZE and flipped <= 2:  # our magic with a bit or two flipped
            raise CorruptionError(f"{self.path}: metadata page damaged (magic has {flipped} flipped bits)")
        raise NotADatabaseError(f"{self.path}: not a DragonDB database")

    def _pager_store(self):
        return self._pager_readonly_store(self._pager)

    @staticmethod
    def _pager_readonly_store(pager: Pager):
        class _Store:
            def read_page(self, page_id, buf):
                pager.read(page_id, buf)

            def read_ahead(self, first, count, buf):
                return pager.read_ahead(first, count, buf)

            def write_page(self, page_id, buf):
                raise ReadOnlyError("read-only database cannot write pages")

        return _Store()

    def _try_open_log(self, wal_path: str) -> BlockFile | None:
        try:
            return self._opener(wal_path, False)
        except FileNotFoundError:
            return None

    def _create_new(self) -> None:
        data = self._data
        data.write(0, _creation_page())
        data.sync()
        if os.path.exists(self.path):
            fsync_dir(self.path)
        self._pager = Pager(data, 1)
        log = self._opener(self.path + "-wal", True)
        self._wal = Wal(log, self.sync_mode)
        self._wal.reset(0)
        if os.path.exists(self.path + "-wal"):
            fsync_dir(self.path)
        self._pool = BufferPool(LoggedStore(self._pager, self._wal), self.pool_pages)

    # -- readers in other processes (docs/processes.md, rule 9 of `wal`) ---------

    def _enter(self) -> None:
        """Start a snapshot: the readers lock held shared and, when no other
        read of this handle is in progress, the state brought up to the log."""
        with self._snap_mutex:
            self._check()
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

    def _replay_in_place(self, op: tuple, lsn: int) -> bool:
        """Replay one put or delete the way the writer's common case made it
        (`_write_key` in place): within one cached leaf. False when the general
        path must run. A reader follows a writer's commits at about the
        writer's own cost this way."""
        kind, name, key, value = op
        if kind not in (OP_PUT, OP_DELETE):
            return False
        entry = self._trees.get(name)
        if entry is None or not entry.root:
            return False
        if kind == OP_DELETE:
            value = None
        planned = btree.in_place(self._pool, entry.root, key, value)
        if planned is None:
            return False
        if value is not None or planned[2][1]:
            btree.apply_in_place(self._pool, entry, planned, key, value, lsn)
        return True

    def _snapshot(self):
        """A context for the non-hot reads of a read-only handle."""
        return _Snapshot(self) if self.read_only else _NO_SNAPSHOT

    def _replay(self, ops: list, lsn: int) -> None:
        txn = self._txn()
        try:
            for op, name, key, value in ops:
                _apply(txn, op, name, key, value, log=False)
                txn.release()
        except BaseException:
            txn.rollback()
            raise
        txn.finish(lsn)

    # -- the write path ------------------------------------------------------

    def _txn(self) -> Txn:
        return Txn(self._pool, self._pager, self._wal, self._trees)

    def _check(self) -> None:
        if self._closed:
            if self._forked:
                raise ForkedError(f"{self.path}: opened in process {self._pid} before a fork(); "
                                  f"open the database again in this process")
            raise DatabaseClosedError(f"{self.path}: database is closed")
        if self._wal is not None and self._wal.failed:
            raise NeedsRecoveryError(f"{self.path}: a sync failed; close and reopen the database to recover")

    def _check_writable(self) -> None:
        self._check()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: opened read-only")

    def _write(self, fn, *args):
        """Run `fn(txn, *args)` as one atomic commit (rule 2 above)."""
        self._check_writable()
        latch = self._latch
        latch.acquire_write()
        try:
            self._check_writable()
            result, lsn = self._run_txn(fn, args)
        finally:
            latch.release_write()
        if lsn:
            self._wal.sync_to(lsn)
        return result

    def _write_key(self, name: str, key: bytes, value: bytes | None) -> bool:
        """A put (`value` bytes) or delete (`value` None) of one key under one
        hold of the write latch: in place when `btree.in_place` finds one
        cached leaf that stays within its bounds (rule 1 above: most puts and
        deletes), else as a transaction (rule 2). Whether the key existed."""
        latch = self._latch
        latch.acquire_write()
        try:
            wal = self._wal
            if self._closed or self.read_only or wal.failed:
                self._check_writable()  # raises the right error
            entry = self._trees.get(name)
            if entry is None or not entry.root or (planned := btree.in_place(self._pool, entry.root, key, value)) is None:
                found, lsn = self._run_txn(_delete if value is None else _put, (name, key, value))
            else:
                found = planned[2][1]
                if value is None and not found:
                    return False
                lsn = wal.commit(encode_op(OP_DELETE if value is None else OP_PUT, name, key, value))
                btree.apply_in_place(self._pool, entry, planned, key, value, lsn)
                self._committed()
        finally:
            latch.release_write()
        if lsn:
            wal.sync_to(lsn)
        return found

    def _run_txn(self, fn, args: tuple) -> tuple[Any, int]:
        """`fn(txn, *args)` as a transaction (rule 2 above), under the write
        latch: (its result, the lsn of its commit record, 0 when it changed
        nothing)."""
        txn = self._txn()
        wal = self._wal
        try:
            result = fn(txn, *args)
            lsn = wal.commit(encode_ops(txn.ops)) if txn.ops else 0
        except BaseException:
            self._rollback(txn)
            raise
        txn.finish(lsn or wal.lsn)
        if lsn:
            self._committed()
        return result, lsn

    def _committed(self) -> None:
        """After each commit, under the write latch, on both paths: iterators
        notice, and a long log is checkpointed."""
        self._version += 1
        if self._wal.end > self.checkpoint_bytes:
            self._auto_checkpoint()

    def _rollback(self, txn: Txn) -> None:
        try:
            txn.rollback()
        except DragonDBError as exc:
            # A page released earlier in a batch could not be read back.
            self._wal.failed = True
            raise NeedsRecoveryError(f"rollback could not restore a page ({exc}); reopen to recover") from exc

    def _auto_checkpoint(self) -> None:
        if self._wal.end < self._ckpt_retry_at:
            return  # readers deferred the last try: the log grows a little first
        try:
            if self._checkpoint_locked(wait=False):
                self._ckpt_retry_at = 0
            else:
                self._ckpt_retry_at = self._wal.end + min(CHECKPOINT_RETRY_BYTES, self.checkpoint_bytes // 4)
        except NeedsRecoveryError:
            raise
        except DragonDBError as exc:  # the commit stands; the next commit retries
            self.last_checkpoint_error = exc
            log.warning("automatic checkpoint failed: {}", exc)

    # -- trees ------------------------------------------------------------------

    def tree(self, name: str = "default", create: bool = True) -> Tree:
        """The tree called `name`, created if missing (unless `create=False`)."""
        name = _tree_name(name)
        self._check()
        with self._snapshot():
            missing = name not in self._trees
        if missing:
            if not create:
                raise KeyError(name)
            self._write(_create_tree, name)
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = self._tree_cls(self, name)
        return handle

    def trees(self) -> list[str]:
        self._check()
        with self._snapshot():
            return sorted(self._trees)

    def drop_tree(self, name: str) -> None:
        """Free every page of tree `name`; KeyError if there is none."""
        name = _tree_name(name)
        self._check_writable()
        if name not in self._trees:
            raise KeyError(name)
        self._write(_drop_tree, name)

    def batch(self) -> Batch:
        """An all-or-nothing group of writes across trees, one commit."""
        self._check_writable()
        return Batch(self)

    # -- durability and maintenance ----------------------------------------------

    def commit(self) -> None:
        """Make every completed write durable now (fsync the log)."""
        self._check()
        if not self.read_only:
            wal = self._wal
            try:
                wal.sync_to(wal.lsn, force=True)
            except StorageIOError as exc:
                if self._closed:  # close() shut the log under this sync
                    raise DatabaseClosedError(f"{self.path}: database closed during commit()") from exc
                raise

    def checkpoint(self) -> None:
        """Write dirty pages home and trim the log. Waits until the snapshots
        readers hold now have ended (docs/processes.md)."""
        self._check()
        if self.read_only:
            return
        self._latch.acquire_write()
        try:
            self._check()
            self._checkpoint_locked(wait=True)
        finally:
            self._latch.release_write()

    def _checkpoint_locked(self, wait: bool = True) -> bool:
        """Checkpoint under the readers lock held exclusive (rule 9 of `wal`):
        waiting for readers' snapshots to end, or (`wait=False`) returning
        False at once when a reader holds one. A reader's own in-memory
        checkpoint runs under its shared hold."""
        rlock = self._rlock
        if rlock is None or rlock.held:
            self._checkpoint_home()
            return True
        if not rlock.exclusive(wait):
            self.checkpoints_deferred += 1
            return False
        try:
            self._checkpoint_home()
        finally:
            rlock.release()
        return True

    def _checkpoint_home(self) -> None:
        wal, pager, pool = self._wal, self._pager, self._pool
        # Every checkpoint syncs, in every sync mode: writing pages home and
        # resetting the log without ordering them could undo a returned
        # `commit()` at the next power loss (rule 3).
        durable = True
        head, trunks = pager.freelist_images()
        meta_page = bytearray(PAGE_SIZE)
        encode_meta(Meta(pager.page_count, head, pager.free_count, wal.lsn,
                         {n: (e.root, e.count) for n, e in self._trees.items()}), meta_page)
        dirty = pool.dirty_pages()
        in_pool = {pid for pid, _ in dirty}
        spilled = {pid: off for pid, off in wal.spilled.items() if pid not in in_pool}
        n = 1 + len(trunks) + len(dirty) + len(spilled)
        home: list[Any] = [(0, meta_page), *trunks, *dirty]
        wal.checkpoint_begin(n)
        wal.checkpoint_images(home)
        tmp = memoryview(bytearray(PAGE_SIZE))
        spill_at = {}
        for pid in spilled:
            wal.read_spill(pid, tmp)
            spill_at[pid] = wal.checkpoint_image(pid, tmp)
        wal.checkpoint_end(n, durable)
        pager.write_pages(home)
        for pid, at in spill_at.items():
            wal.read_image(at, tmp)
            pager.write(pid, tmp)
        if durable:
            try:
                pager.sync()
            except StorageIOError as exc:
                wal.failed = True
                raise NeedsRecoveryError(exc.errno or 5, f"data file fsync failed ({exc}); reopen to recover") from exc
        pool.mark_clean(in_pool)
        wal.spilled.clear()  # every spilled page is home now
        try:
            wal.reset(wal.lsn, sync=durable)
        except StorageIOError as exc:
            # the header may say "empty" while old records remain: nothing
            # more may be appended until a reopen sorts it out (rule 6)
            wal.failed = True
            raise NeedsRecoveryError(exc.errno or 5, f"log reset failed ({exc}); reopen to recover") from exc
        self.checkpoints += 1

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
        self._check()
        with self._snapshot():
            self._latch.acquire_write()
            try:
                self._check()  # again: close() may have released the pool meanwhile
                report = check_database(self._pool, self._pager, self._trees)
            finally:
                self._latch.release_write()
        if strict and not report.ok:
            raise CorruptionError("; ".join(report.problems[:5]))
        return report

    def stats(self) -> Stats:
        self._check()
        with self._snapshot():
            self._latch.acquire_read()  # close() must not shut the files under it
            try:
                self._check()
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
        self._check()
        with self._snapshot():
            self._latch.acquire_read()
            try:
                self._check()
                return {name: {"keys": e.count, "height": btree.height(self._pool, e.root)}
                        for name, e in sorted(self._trees.items())}
            finally:
                self._latch.release_read()

    def tree_levels(self, name: str, depth: int | None = None) -> list[list[PageInfo]]:
        """The pages of tree `name` level by level, root first; with `depth`,
        the first `depth` levels only (deeper pages are not read)."""
        self._check()
        with self._snapshot():
            return self._tree_levels(name, depth)

    def _tree_levels(self, name: str, depth: int | None = None) -> list[list[PageInfo]]:
        if name not in self._trees:
            raise KeyError(name)
        self._latch.acquire_read()
        try:
            self._check()
            if name not in self._trees:
                raise KeyError(name)
            out = []
            for level in btree.levels(self._pool, self._trees[name].root, depth):
                row = []
                for pid, node in level:
                    row.append(PageInfo(
                        pid, "leaf" if node.leaf else "internal", len(node.keys),
                        round(node.size / (PAGE_SIZE - 32), 3),
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
                self._check()  # raises: a child must not checkpoint or unlock the parent's file
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
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engine.Database {self.path!r}{' closed' if self._closed else ''}>"


HEADER_END = 512

# Every open Database of this process, for the at-fork hook.
_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_open_databases):
        db._forget_in_child()
    _open_databases.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Snapshot:
    """`with`: one snapshot of a read-only handle (`Database._enter`)."""

    __slots__ = ("_db",)

    def __init__(self, db: Database) -> None:
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


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):  # already gone, or never ours to remove
        os.unlink(path)


def _creation_page() -> bytes:
    """The metadata page a new database starts with (always the same bytes)."""
    page = bytearray(PAGE_SIZE)
    encode_meta(Meta(page_count=1), page)
    return bytes(page)


def _interrupted_creation(head: memoryview) -> bool:
    """True when a file with no log holds nothing but sectors of the creation
    page or zeros, and some of the former: the first write of a new database
    was cut short (a failed or torn write, power loss) and the database never
    existed. Anything else (another file, all zeros, a damaged database) is
    not this."""
    fresh = _creation_page()
    n = len(head)
    return any(head) and all(head[i : i + 512] == fresh[i : min(i + 512, n)] or not any(head[i : i + 512])
                             for i in range(0, n, 512))


# -- transaction bodies ----------------------------------------------------------

def _apply(txn: Txn, op: int, name: str, key, value, log: bool = True) -> None:
    if op == OP_PUT:
        if name not in txn.trees:
            _create_tree(txn, name, log)
        btree.put(txn, name, key, value)
    elif op == OP_DELETE:
        if name in txn.trees:
            btree.delete(txn, name, key)
    elif op == OP_CREATE:
        if name not in txn.trees:
            _create_tree(txn, name, log)
        return
    elif op == OP_DROP:
        if name in txn.trees:
            btree.drop(txn, name)
    elif op == OP_LOAD:  # redo of a bulk load: the tree was empty when it ran
        if name in txn.trees:
            bulk.load(txn, name, *value)
        return
    if log:
        txn.ops.append((op, name, key, value))


def _create_tree(txn: Txn, name: str, log: bool = True) -> None:
    if name in txn.trees:
        return
    room = Meta.trees_size({n: (0, 0) for n in [*txn.trees, name]})
    if room > META_TREES_ROOM:
        raise TreeLimitError("the metadata page has no room for another tree")
    txn.create_tree(name)
    if log:
        txn.ops.append((OP_CREATE, name, None, None))


def _drop_tree(txn: Txn, name: str) -> None:
    if name not in txn.trees:
        raise KeyError(name)
    btree.drop(txn, name)
    txn.ops.append((OP_DROP, name, None, None))


def _put(txn: Txn, name: str, key: bytes, value: bytes) -> None:
    if name not in txn.trees:
        raise KeyError(name)
    btree.put(txn, name, key, value)
    txn.ops.append((OP_PUT, name, key, value))


def _delete(txn: Txn, name: str, key: bytes, _value: None = None) -> bool:
    if name not in txn.trees:
        raise KeyError(name)
    found = btree.delete(txn, name, key)
    if found:
        txn.ops.append((OP_DELETE, name, key, None))
    return found


def _batch(txn: Txn, ops: list) -> None:
    """A batch's operations in one transaction. Its pins are released once
    they pass a quarter of the pool beyond what one operation may pin (so
    the pool keeps frames to evict; a tiny pool releases every time), not
    after every operation: a batch meets its leaves again and again. The
    commit record is the batch's own list: replay creates a tree a put names
    as this does (`_apply`), so no create needs logging."""
    trees = txn.trees
    put = btree.put
    pins = txn.pins()
    keep = (txn.pool.n_frames - 64) // 4
    for op, name, key, value in ops:
        if op == OP_PUT and name in trees:
            put(txn, name, key, value)
        else:
            _apply(txn, op, name, key, value, log=False)
        if len(pins) > keep:
            txn.release()
    txn.ops = ops


# -- trees ------------------------------------------------------------------------

_NO_DEFAULT = object()


class Tree(MutableMapping[bytes, bytes]):
    """An ordered mapping bytes -> bytes stored in a B+ tree."""

    __slots__ = ("_db", "name")

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self.name = name

    def _entry(self) -> TreeEntry:
        entry = self._db._trees.get(self.name)
        if entry is None:
            raise KeyError(f"tree {self.name!r} was dropped")
        return entry

    def put(self, key: BytesLike, value: BytesLike) -> None:
        # `_key` and `_value` run only when the inlined common case fails: a hot path
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = _value(value)
        self._db._write_key(self.name, key, value)

    @overload
    def get(self, key: BytesLike, default: None = None) -> bytes | None: ...
    @overload
    def get(self, key: BytesLike, default: _D) -> bytes | _D: ...

    def get(self, key: BytesLike, default: Any = None) -> Any:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        db = self._db
        latch = db._latch
        latch.acquire_read()
        try:
            db._check()
            value = btree.get(db._pool, self._entry().root, key)
        finally:
            latch.release_read()
        return default if value is None else value

    def delete(self, key: BytesLike) -> bool:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        return self._db._write_key(self.name, key, None)

    def __getitem__(self, key: BytesLike) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: BytesLike, value: BytesLike) -> None:
        self.put(key, value)

    def __delitem__(self, key: BytesLike) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[call-overload]  # a non-bytes key raises TypeError, as get does

    def __len__(self) -> int:
        db = self._db
        db._latch.acquire_read()  # a batch updates the count key by key under the write latch
        try:
            db._check()
            return self._entry().count
        finally:
            db._latch.release_read()

    def __iter__(self) -> Iterator[bytes]:
        for k, _ in self.scan():
            yield k

    def __repr__(self) -> str:
        return f"<engine.Tree {self.name!r} of {self._db.path!r}>"

    def items(self) -> ItemsView[bytes, bytes]:
        return _ItemsView(self)

    def values(self) -> ValuesView[bytes]:
        return _ValuesView(self)

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *, reverse: bool = False,
             prefix: BytesLike | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with start <= key < end (and key starting with
        `prefix`), ascending or, with `reverse`, descending. The tree may
        change meanwhile: the walk resumes after the last key it returned."""
        lo, hi, pre = _bound(start), _bound(end), _bound(prefix)
        self._db._check()
        self._entry()
        if pre is not None:
            if lo is None or lo < pre:
                lo = pre
            pe = _prefix_end(pre)
            if pe is not None and (hi is None or hi > pe):
                hi = pe
        return self._scan(lo, hi, reverse)

    def _scan(self, lo, hi, reverse):
        db = self._db
        after = None
        while True:
            if lo is not None and hi is not None and lo >= hi:
                return
            latch = db._latch
            latch.acquire_read()
            try:
                db._check()
                version = db._version
                items, done = btree.chunk(db._pool, self._entry().root, lo, hi, after, reverse)
            finally:
                latch.release_read()
            changed = False
            for k, v in items:
                yield k, v
                after = k
                if db._version != version:
                    changed = True
                    break
            if not changed and (done or not items):
                return

    def first(self) -> tuple[bytes, bytes] | None:
        return self._edge(False)

    def last(self) -> tuple[bytes, bytes] | None:
        return self._edge(True)

    def _edge(self, last: bool):
        db = self._db
        db._latch.acquire_read()
        try:
            db._check()
            return btree.edge(db._pool, self._entry().root, last)
        finally:
            db._latch.release_read()

    # -- whole-tree writes (engine.bulk) ------------------------------------------

    def clear(self) -> None:
        """Remove every key in one atomic commit; costs the tree's pages, not its keys."""
        self._db._write(bulk.clear, self.name)

    def load(self, items: Iterable[tuple[BytesLike, BytesLike]]) -> None:
        """Fill this EMPTY tree from (key, value) pairs in strictly ascending
        key order, built bottom-up (packed pages, written once) in ONE atomic
        commit. Every item is checked first: a bad key or value raises as
        `put` would, an out-of-order or repeated key `UnsortedItemsError`, a
        tree holding keys `TreeNotEmptyError`; each changes nothing."""
        keys, vals = bulk.check_items(items, _key, _value, MAX_VALUE_SIZE)
        db = self._db
        db._check_writable()
        self._entry()
        if not db._write(bulk.load, self.name, keys, vals):
            raise TreeNotEmptyError(f"load: tree {self.name!r} holds {len(self)} keys; load fills an empty tree")

    def update(self, other: Mapping[bytes, BytesLike] | Iterable[tuple[BytesLike, BytesLike]] = (), /,  # type: ignore[override]
               **kw: BytesLike) -> None:
        """Put every item of a mapping or of (key, value) pairs, and of `kw`
        (whose str names raise TypeError, as any str key does), in ONE
        atomic commit; every item is checked first, so a bad one changes
        nothing."""
        if hasattr(other, "keys"):
            mapping: Mapping[bytes, BytesLike] = other  # type: ignore[assignment]
            pairs = [(_key(k), _value(mapping[k])) for k in mapping.keys()]
        else:
            pairs = []
            for i, item in enumerate(other):
                try:
                    k, v = item
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"update: item #{i} is not a (key, value) pair") from exc
                pairs.append((_key(k), _value(v)))
        pairs += [(_key(k), _value(v)) for k, v in kw.items()]
        self._db._check_writable()
        self._entry()
        if pairs:
            self._db._write(bulk.update, self.name, pairs)

    @overload
    def pop(self, key: BytesLike) -> bytes: ...
    @overload
    def pop(self, key: BytesLike, default: _D) -> bytes | _D: ...

    def pop(self, key: BytesLike, default: Any = _NO_DEFAULT) -> Any:
        """Remove `key` and return its value in one commit; absent: `default`,
        or KeyError without one (as dict)."""
        key = _key(key)
        try:
            value = self._db._write(bulk.pop, self.name, key)
        except KeyError:  # the tree was dropped: as if the key were missing
            value = None
        if value is None:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
        return value

    def popitem(self) -> tuple[bytes, bytes]:
        """Remove and return the (key, value) with the smallest key in one
        commit; KeyError when the tree is empty."""
        item = self._db._write(bulk.popitem, self.name)
        if item is None:
            raise KeyError("popitem(): tree is empty")
        return item

    def setdefault(self, key: BytesLike, default: BytesLike | None = None) -> bytes:
        """`t[key]` if present, else store `default` (bytes) and return it,
        atomically. The default None is not a value: TypeError when absent."""
        value = self.get(key)
        if value is not None:
            return value
        return self._db._write(bulk.setdefault, self.name, _key(key), _value(default))


class _ItemsView(ItemsView[bytes, bytes]):
    """`Tree.items()`: one scan, not a get per key."""

    __slots__ = ("_tree",)

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree)
        self._tree = tree

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self._tree.scan()

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False  # as dict's items view
        k, v = item
        return self._tree.get(k) == v


class _ValuesView(ValuesView[bytes]):
    """`Tree.values()`: one scan."""

    __slots__ = ("_tree",)

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree)
        self._tree = tree

    def __iter__(self) -> Iterator[bytes]:
        for _, v in self._tree.scan():
            yield v

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, value: object) -> bool:
        return any(v == value for v in self)


class Batch:
    """Writes collected in memory and applied as one atomic commit on exit.

    A batch is used inside its `with` block only; anything else raises
    `BatchStateError` at once and records nothing (checked after the
    database is found open, before the arguments)::

        NEW --__enter__--> OPEN --__exit__--> DONE

    | state | `__enter__`        | `put`/`delete` | `__exit__`                              |
    |-------|--------------------|----------------|-----------------------------------------|
    | NEW   | -> OPEN            | BatchStateError | -                                      |
    | OPEN  | BatchStateError    | recorded       | -> DONE: applied, or discarded on error |
    | DONE  | BatchStateError    | BatchStateError | -                                      |
    """

    __slots__ = ("_db", "_ops", "_state")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list = []
        self._state = _NEW

    def _recording(self) -> None:
        db = self._db
        if db._closed:
            db._check()
        if self._state is not _OPEN:
            raise BatchStateError(f"batch used outside its with-block ({self._state})")

    def put(self, tree: str, key: BytesLike, value: BytesLike) -> None:
        self._recording()
        # the checks of `_tree_name`, `_key` and `_value` run only when the inlined common case fails
        if tree not in _NAMES_SEEN:
            tree = _tree_name(tree)
            if len(_NAMES_SEEN) < 1024:
                _NAMES_SEEN.add(tree)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = _value(value)
        self._ops.append((OP_PUT, tree, key, value))

    def delete(self, tree: str, key: BytesLike) -> None:
        self._recording()
        self._ops.append((OP_DELETE, _tree_name(tree), _key(key), None))

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        self._db._check_writable()
        if self._state is not _NEW:
            raise BatchStateError(f"a batch is used in one with-block only ({self._state})")
        self._state = _OPEN
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._state is not _OPEN:  # called by hand, out of turn
            return
        self._state = _DONE
        ops, self._ops = self._ops, []
        if exc_type is None and ops:
            self._db._write(_batch, ops)


_NEW, _OPEN, _DONE = "new", "open", "done"  # Batch states


class _SnapshotTree(Tree):
    """A tree of a read-only handle: each read is one snapshot (docs/processes.md):
    a get, `len`, `first`/`last`, or a whole scan from its first item until
    it is exhausted or closed."""

    __slots__ = ()

    def _in_snapshot(self, read: Callable[..., Any], *args: Any) -> Any:
        db = self._db
        db._enter()
        try:
            return read(self, *args)
        finally:
            db._leave()

    def get(self, key: BytesLike, default: Any = None) -> Any:
        return self._in_snapshot(Tree.get, key, default)

    def __len__(self) -> int:
        return self._in_snapshot(Tree.__len__)

    def _edge(self, last: bool):
        return self._in_snapshot(Tree._edge, last)

    def _scan(self, lo, hi, reverse):
        db = self._db
        db._enter()
        try:
            yield from Tree._scan(self, lo, hi, reverse)
        finally:
            db._leave()


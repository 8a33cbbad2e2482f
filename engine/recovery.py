"""Opening a `Database`: create it, or recover it from its data file and log
(rules 4 and 8 of `wal`).

Rule 8: a killed writer's unsynced writes may still sit in the page cache,
where an open reads them; a later power loss would take them back. So before
the first write that builds on what was read (a checkpoint image written
home, an appended record that says earlier ones were durable), both files
are synced: what recovery read is then durable, and nothing is built on
bytes that may vanish.

A read-only open never writes either file: when there is something to
recover it runs the same recovery over copy-on-write `Overlay`s of both
files, in memory, and later commits are replayed into them (rule 9).

The log is only opened, never created, until the data file has proven to be
a database, so a refused open leaves no "-wal" behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import PAGE_SIZE
from engine.disk import BlockFile, Overlay, fsync_dir
from engine.errors import CorruptionError, NotADatabaseError, ReadOnlyError, StorageIOError
from engine.locks import FileLock, ReaderLock
from engine.metapage import Meta, decode_meta, encode_meta, has_magic, magic_flips
from engine.pager import Pager
from engine.wal import LoggedStore, Wal
from engine.walformat import CKPT_BEGIN, HEADER_BYTES, RecoveryPlan, first_record, scan

__all__ = ["Recovery", "creation_page"]

Opener = Callable[[str, bool], BlockFile]  # (path, create) -> the file; the fault layer's hook


class Recovery:
    """Opening and recovery of `Database` (a mixin: the state is the database's)."""

    path: str
    read_only: bool
    sync_mode: str
    pool_pages: int
    timeout: float
    recovered_commits: int
    _opener: Opener
    _data: BlockFile
    _wal: Wal
    _pool: BufferPool
    _pager: Pager
    _trees: dict[str, TreeEntry]
    _lock: FileLock | None
    _rlock: ReaderLock | None
    _rlock_created: bool
    _log_file: BlockFile | None
    _follow: tuple[int | None, int, int]

    if TYPE_CHECKING:  # `writes.Writes`'s and `checkpoint.Checkpoints`'s
        def _replay(self, ops: list, lsn: int) -> None: ...
        def _checkpoint_locked(self, wait: bool = True) -> bool: ...

    def _open(self, create: bool) -> None:
        """Open and recover (see the module doc)."""
        ro = self.read_only
        data = self._open_data(create)
        log = self._try_open_log()
        if log is not None:
            self._wal = Wal(log, self.sync_mode)
        head, got, fresh, blank = self._read_meta_page(data)
        logdata, base, records, end = self._read_log(log)
        first = first_record(logdata)
        if fresh and first is None and not base:
            # no database yet: nothing written, or its creation cut short (a
            # log without records holds nothing either)
            if ro:
                raise NotADatabaseError(f"{self.path}: empty file or creation never finished, not a database")
            self._create_new()
            return
        plan = RecoveryPlan(logdata, records)
        restart = self._lost_base(head, got, log, blank, base, first, plan)
        needs_work = bool(plan.images or plan.commits or restart)
        if ro:
            # recover in memory: the same steps below, over overlays
            self._log_file = log
            self._data = Overlay(data)
            if log is not None:
                self._wal.file = Overlay(log)
            last = records[-1].lsn if records else (base or 0)
            self._follow = (base, end, last + 1)
        elif (plan.images or restart) and self._rlock is not None:
            # pages go home: wait for readers' snapshots to end (rule 9)
            self._rlock.exclusive(wait=True)
        if restart:
            head[:] = creation_page()
        self._check_log_header(head, base, first)
        if not ro:
            self._make_durable()
        meta = self._restore_base(head, plan, logdata, restart)
        writable = not ro or needs_work
        wal = self._start_log(meta, base, records, end, logdata, writable)
        if wal is None:  # read-only with no log file: nothing to recover
            self._pool = BufferPool(_read_only_store(self._pager), self.pool_pages)
            return
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

    def _open_data(self, create: bool) -> BlockFile:
        """The data file, and the locks: only writers lock the data file;
        readers coordinate with the writer through the readers lock alone
        (docs/processes.md)."""
        ro = self.read_only
        self._data = data = self._opener(self.path, create and not ro)
        if os.path.exists(self.path) and not ro and self._lock is None:
            self._lock = FileLock(self.path, timeout=self.timeout)
        if self._rlock is None and os.path.exists(self.path):
            rpath = self.path + "-readers"
            existed = os.path.exists(rpath)
            self._rlock = ReaderLock(rpath, create=not ro)
            self._rlock_created = not existed and self._rlock.fd is not None
        if ro and self._rlock is not None and not self._rlock.held:
            self._rlock.hold()  # the whole open reads one state: no checkpoint writes meanwhile
        return data

    def _try_open_log(self) -> BlockFile | None:
        try:
            return self._opener(self.path + "-wal", False)
        except FileNotFoundError:
            return None

    def _read_meta_page(self, data: BlockFile) -> tuple[memoryview, int, bool, bool]:
        """(the metadata page as read, bytes read, fresh, blank): fresh when no
        database was ever created there (an empty file, or its creation cut
        short), blank when nothing of a metadata page is there."""
        size = data.size()
        head = memoryview(bytearray(PAGE_SIZE))
        got = data.read_into(0, head) if size else 0
        if got < min(size, PAGE_SIZE):  # the bytes are there: a flaky read, not a foreign file
            raise StorageIOError(5, f"{self.path}: short read of the metadata page ({got} of {min(size, PAGE_SIZE)} bytes)")
        # a whole creation page is an (empty) database; a part of one is not yet
        whole = got == PAGE_SIZE and bytes(head) == creation_page()
        fresh = size == 0 or (size <= PAGE_SIZE and not whole and _interrupted_creation(head[:got]))
        return head, got, fresh, fresh or not any(head[:got])

    def _read_log(self, log: BlockFile | None) -> tuple[bytes, int | None, list, int]:
        """(the log's bytes, its base lsn, its valid records, where they end)."""
        if log is None:
            return b"", *scan(b"")
        logdata = self._wal.read_all()
        base, records, end = scan(logdata)
        if end < len(logdata) and any(logdata[end:]):
            # the scan stopped early: read again, so a flaky read is an I/O
            # error rather than a silently shortened log
            again = self._wal.read_all()
            if again != logdata:
                if not self.read_only:
                    raise StorageIOError(5, f"{self.path}-wal: two reads of the log differ")
                # a live writer appends while a reader reads: take the later read
                logdata = again
                base, records, end = scan(logdata)
        return logdata, base, records, end

    def _lost_base(self, head: memoryview, got: int, log: BlockFile | None, blank: bool, base: int | None,
                   first: tuple | None, plan: RecoveryPlan) -> bool:
        """True when the data file lost its creation page and the log rebuilds
        everything on top of it; raises when the metadata page is not a
        database's and the log cannot restore it."""
        if got == PAGE_SIZE and has_magic(head):
            return False
        if log is None:
            self._not_a_database(head, got)
        if blank and base == 0:
            # records from the very first LSN rebuild everything on top
            # of the creation page (a lost file growth, or a cut file)
            return True
        if not any(pid == 0 for pid, _ in plan.images):
            if base is not None or first is not None:
                raise CorruptionError(
                    f"{self.path}: metadata page lost or damaged, and its log needs it; both files left as they are")
            self._not_a_database(head, got)
        return False

    def _check_log_header(self, head: memoryview, base: int | None, first: tuple | None) -> None:
        """Records newer than the last checkpoint behind a damaged header are
        corruption (a reset cut short leaves only that checkpoint's own records)."""
        if base is None and first is not None:
            meta_lsn = decode_meta(head).checkpoint_lsn
            if first[0] > meta_lsn and not (first[0] == meta_lsn + 1 and first[1] == CKPT_BEGIN):
                raise CorruptionError(f"{self.path}-wal: log header damaged but newer records follow")

    def _restore_base(self, head: memoryview, plan: RecoveryPlan, logdata: bytes, restart: bool) -> Meta:
        """The last checkpoint's state: its page images written home (the
        creation page first when the base was lost), the pager and the tree
        catalog loaded. Returns the metadata."""
        data = self._data
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
        return meta

    def _start_log(self, meta: Meta, base: int | None, records: list, end: int, logdata: bytes,
                   writable: bool) -> Wal | None:
        """The log ready to append after its valid records (created if a
        writer found none); None for a read-only open without a log."""
        wal_path = self.path + "-wal"
        if self._wal is None and not self.read_only:
            self._wal = Wal(self._opener(wal_path, True), self.sync_mode)
            if os.path.exists(wal_path):
                fsync_dir(wal_path)
        wal = self._wal
        if wal is None:
            return None
        if base is None:
            if writable:
                wal.reset(meta.checkpoint_lsn)
            else:
                wal.start(meta.checkpoint_lsn, HEADER_BYTES, meta.checkpoint_lsn, b"")
        else:
            wal.start(base, end, records[-1].lsn if records else base, logdata)
        return wal

    def _make_durable(self) -> None:
        """Rule 8: sync what this open read before building on it."""
        self._data.sync()
        if self._wal is not None:
            self._wal.file.sync()
            if os.path.exists(self.path + "-wal"):
                fsync_dir(self.path)

    def _not_a_database(self, head: memoryview, got: int) -> None:
        flipped = magic_flips(head)
        if got >= PAGE_SIZE and flipped <= 2:  # our magic with a bit or two flipped
            raise CorruptionError(f"{self.path}: metadata page damaged (magic has {flipped} flipped bits)")
        raise NotADatabaseError(f"{self.path}: not a DragonDB database")

    def _create_new(self) -> None:
        data = self._data
        data.write(0, creation_page())
        data.sync()
        if os.path.exists(self.path):
            fsync_dir(self.path)
        self._pager = Pager(data, 1)
        if self._wal is not None:  # the empty log this open found: opened again below
            self._wal.close()
        log = self._opener(self.path + "-wal", True)
        self._wal = Wal(log, self.sync_mode)
        self._wal.reset(0)
        if os.path.exists(self.path + "-wal"):
            fsync_dir(self.path)
        self._pool = BufferPool(LoggedStore(self._pager, self._wal), self.pool_pages)


def _read_only_store(pager: Pager):
    """The pool's store for a read-only open without a log: reads only."""
    class _Store:
        def read_page(self, page_id, buf):
            pager.read(page_id, buf)

        def read_ahead(self, first, count, buf):
            return pager.read_ahead(first, count, buf)

        def write_page(self, page_id, buf):
            raise ReadOnlyError("read-only database cannot write pages")

    return _Store()


def creation_page() -> bytes:
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
    fresh = creation_page()
    n = len(head)
    return any(head) and all(head[i : i + 512] == fresh[i : min(i + 512, n)] or not any(head[i : i + 512])
                             for i in range(0, n, 512))

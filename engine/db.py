"""`Database`, `Tree` and `Batch`: the public API of shared/API.md.

Every write runs under the database's write latch, one of two ways. A put
or delete that changes a single cached leaf within its size bounds (most of
them) appends its commit record first and then changes the leaf, so a failed
append leaves nothing to undo (`_write_in_place`). Anything else runs as a
transaction (`Txn`): apply to the tree in memory, append one logical commit
record, finish; on any exception roll back in memory so the operation has no
effect. The log fsync (rule 1 of `wal`) happens after the latch is released,
so threads committing together share one fsync.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

from loguru import logger

from engine import btree, syncpoints
from engine.bufferpool import BufferPool
from engine.check import CheckReport, check_database
from engine.codec import (
    MAGIC,
    MAX_KEY_SIZE,
    META_TREES_ROOM,
    PAGE_SIZE,
    Meta,
    decode_meta,
    encode_meta,
    has_magic,
    leaf_cell_size,
)
from engine.disk import BlockFile, DirectFile, FileLock, fsync_dir
from engine.errors import (
    CorruptionError,
    DatabaseClosedError,
    DragonDBError,
    KeyTooLargeError,
    NeedsRecoveryError,
    NotADatabaseError,
    ReadOnlyError,
    StorageIOError,
    TreeLimitError,
    ValueTooLargeError,
)
from engine.latch import RWLatch
from engine.pager import Pager
from engine.txn import TreeEntry, Txn
from engine.wal import (
    CKPT_BEGIN,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_PUT,
    LoggedStore,
    RecoveryPlan,
    Wal,
    decode_ops,
    encode_op,
    encode_ops,
    first_record,
    scan,
)

__all__ = ["open", "Database", "Tree", "Batch", "PageInfo", "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "CheckReport"]

MAX_VALUE_SIZE = 2**31 - 1  # log records carry lengths as u32; keep a margin
CHECKPOINT_BYTES = 64 * 1024 * 1024  # checkpoint automatically past this much log
_SYNC_MODES = ("full", "normal", "off")


def open(  # noqa: A001 - the API's name
    path: str | os.PathLike[str],
    *,
    create: bool = True,
    read_only: bool = False,
    pool_pages: int = 1024,
    direct_io: bool | str = "auto",
    sync: str = "full",
    opener=None,
) -> Database:
    """Open (and recover) the database at `path`; see shared/API.md."""
    kw = dict(pool_pages=pool_pages, direct_io=direct_io, sync=sync, opener=opener)
    try:
        return Database(path, create=create, read_only=read_only, **kw)
    except _NeedsWritableRecovery:
        # a read-only open found a log to replay: recover once read-write
        Database(path, create=False, **kw).close()
        return Database(path, create=False, read_only=True, **kw)


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


class Debug:
    """Test-only switches that re-create the seed's races. Never turn them off
    outside the fault layer's tests."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.double_check_root = True

    @property
    def double_check_fetch(self) -> bool:
        return self._db._pool.debug_double_check

    @double_check_fetch.setter
    def double_check_fetch(self, on: bool) -> None:
        self._db._pool.debug_double_check = on


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

    def __init__(self, path, *, create=True, read_only=False, pool_pages=1024, direct_io="auto",
                 sync="full", opener=None) -> None:
        if sync not in _SYNC_MODES:
            raise ValueError(f"sync must be one of {_SYNC_MODES}, not {sync!r}")
        if direct_io not in ("auto", True, False):
            raise ValueError(f"direct_io must be 'auto', True or False, not {direct_io!r}")
        if isinstance(pool_pages, bool) or not isinstance(pool_pages, int) or pool_pages < 16:
            raise ValueError(f"pool_pages must be an int >= 16, not {pool_pages!r}")
        self.path = os.fspath(path)
        self.read_only = read_only
        self.sync_mode = sync
        self.pool_pages = pool_pages
        self._closed = True
        self._lock: FileLock | None = None
        self._data: BlockFile | None = None
        self._wal: Wal | None = None
        self._pool: BufferPool | None = None
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
        try:
            self._open(create)
            self._pool.prewarm(self._pager.page_count)
        except BaseException:
            self._release()
            raise
        self._closed = False
        self.debug = Debug(self)

    # -- opening and recovery -------------------------------------------------

    def _open(self, create: bool) -> None:  # noqa: C901 - create, recover, read-only paths in one; split by path
        ro = self.read_only
        self._data = data = self._opener(self.path, create and not ro)
        if os.path.exists(self.path):
            self._lock = FileLock(self.path, shared=ro)
        size = data.size()
        if size == 0:
            if ro:
                raise NotADatabaseError(f"{self.path}: empty file, not a database")
            self._create_new()
            return
        head = memoryview(bytearray(PAGE_SIZE))
        got = data.read_into(0, head)
        if got < min(size, PAGE_SIZE):  # the bytes are there: a flaky read, not a foreign file
            raise StorageIOError(5, f"{self.path}: short read of the metadata page ({got} of {min(size, PAGE_SIZE)} bytes)")
        wal_path = self.path + "-wal"
        # The log is only opened here, never created, until the data file
        # has proven to be a database: a failed open leaves no "-wal" behind.
        log = self._try_open_log(wal_path)
        if log is None and size <= PAGE_SIZE and _interrupted_creation(head[:got]):
            if ro:
                raise NotADatabaseError(f"{self.path}: creation never finished, not a database")
            self._create_new()
            return
        if log is None and (got < PAGE_SIZE or not has_magic(head)):
            self._not_a_database(head, got)
        self._wal = Wal(log, self.sync_mode) if log is not None else None
        logdata = self._wal.read_all() if self._wal is not None else b""
        base, records, end = scan(logdata)
        if end < len(logdata) and any(logdata[end:]):
            # the scan stopped early: read again, so a flaky read is an I/O
            # error rather than a silently shortened log
            if self._wal.read_all() != logdata:
                raise StorageIOError(5, f"{wal_path}: two reads of the log differ")
        plan = RecoveryPlan(logdata, records)
        if got < PAGE_SIZE or not has_magic(head):
            if not any(pid == 0 for pid, _ in plan.images):
                if base is not None:
                    raise CorruptionError(f"{self.path}: metadata page damaged (its log is a DragonDB log)")
                self._not_a_database(head, got)
        needs_work = bool(plan.images or plan.commits)
        if ro and needs_work:
            raise _NeedsWritableRecovery
        if plan.images:
            for pid, at in plan.images:
                data.write(pid * PAGE_SIZE, logdata[at : at + PAGE_SIZE])
            data.read_into(0, head)
        meta = decode_meta(head)
        first = first_record(logdata) if base is None else None
        if first is not None and first[0] > meta.checkpoint_lsn and not (
                first[0] == meta.checkpoint_lsn + 1 and first[1] == CKPT_BEGIN):
            # records newer than the last checkpoint sit behind a damaged header
            # (a reset cut short leaves only that checkpoint's own records)
            raise CorruptionError(f"{wal_path}: log header damaged but newer records follow")
        self._pager = Pager(data, meta.page_count)
        if data.size() < meta.page_count * PAGE_SIZE:
            if not plan.images:
                raise CorruptionError(f"{self.path}: file has {data.size()} bytes, metadata needs {meta.page_count} pages")
            # the checkpoint's file growth was lost with the crash; its pages were free
            data.extend(meta.page_count * PAGE_SIZE)
        if plan.images and self.sync_mode != "off":
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
            if not ro:
                wal.reset(meta.checkpoint_lsn)
            else:
                wal.start(meta.checkpoint_lsn, HEADER_END, meta.checkpoint_lsn, b"")
        else:
            last = records[-1].lsn if records else base
            wal.start(base, end, last, logdata)
        self._pool = BufferPool(LoggedStore(self._pager, wal), self.pool_pages)
        for rec in plan.commits:
            self._replay(decode_ops(logdata[rec.payload_at : rec.payload_at + rec.length]), rec.lsn)
        self.recovered_commits = len(plan.commits)
        if not ro and (needs_work or records or end != len(logdata)):
            self._checkpoint_locked()

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
            raise DatabaseClosedError(f"{self.path}: database is closed")
        if self._wal is not None and self._wal.failed:
            raise NeedsRecoveryError(f"{self.path}: a sync failed; close and reopen the database to recover")

    def _check_writable(self) -> None:
        self._check()
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: opened read-only")

    def _write(self, fn, *args):
        """Run `fn(txn, *args)` as one atomic commit."""
        self._check_writable()
        latch = self._latch
        latch.acquire_write()
        try:
            self._check_writable()
            txn = self._txn()
            wal = self._wal
            try:
                result = fn(txn, *args)
                lsn = wal.commit(encode_ops(txn.ops)) if txn.ops else wal.lsn
            except BaseException:
                self._rollback(txn)
                raise
            txn.finish(lsn)
            if txn.ops:
                self._committed()
        finally:
            latch.release_write()
        if txn.ops:
            wal.sync_to(lsn)
        return result

    def _write_in_place(self, name: str, key: bytes, value: bytes | None) -> bool | None:
        """A put (`value` bytes) or delete (`value` None) that changes one
        cached leaf within its bounds (`btree.in_place`), without a
        transaction: the commit is logged first, then the leaf changed, so a
        failed append changes nothing. Most puts and deletes take this path.
        None when the general path must run; else whether the key existed."""
        latch = self._latch
        latch.acquire_write()
        try:
            wal = self._wal
            if self._closed or self.read_only or wal.failed:
                self._check_writable()  # raises the right error
            entry = self._trees.get(name)
            if entry is None or not entry.root:
                return None
            plan = btree.in_place(self._pool, entry.root, key, value)
            if plan is None:
                return None
            frame, i, found, size = plan
            if value is None and not found:
                return False
            lsn = wal.commit(encode_op(OP_DELETE if value is None else OP_PUT, name, key, value))
            btree.apply_in_place(frame, i, found, size, key, value, lsn)
            self._pool.mark_changed(frame)
            if not found:
                entry.count += 1
            elif value is None:
                entry.count -= 1
            self._version += 1  # `_committed`, inlined: this is the hot path
            if wal.end > self.checkpoint_bytes:
                self._auto_checkpoint()
        finally:
            latch.release_write()
        wal.sync_to(lsn)
        return found

    def _committed(self) -> None:
        """After a commit, under the write latch: iterators notice, and a long
        log is checkpointed."""
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
        try:
            self._checkpoint_locked()
        except NeedsRecoveryError:
            raise
        except DragonDBError as exc:  # the commit stands; the next commit retries
            self.last_checkpoint_error = exc
            logger.warning("automatic checkpoint failed: {}", exc)

    def _ensure_root(self, name: str) -> None:
        syncpoints.reach("btree.root.check")
        self._write(_make_root, name, self.debug.double_check_root)

    # -- trees ------------------------------------------------------------------

    def tree(self, name: str = "default", create: bool = True) -> Tree:
        """The tree called `name`, created if missing (unless `create=False`)."""
        name = _tree_name(name)
        self._check()
        if name not in self._trees:
            if not create:
                raise KeyError(name)
            self._write(_create_tree, name)
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = Tree(self, name)
        return handle

    def trees(self) -> list[str]:
        self._check()
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
            self._wal.sync_to(self._wal.lsn, force=True)

    def checkpoint(self) -> None:
        """Write dirty pages home and trim the log."""
        self._check()
        if self.read_only:
            return
        self._latch.acquire_write()
        try:
            self._check()
            self._checkpoint_locked()
        finally:
            self._latch.release_write()

    def _checkpoint_locked(self) -> None:
        wal, pager, pool = self._wal, self._pager, self._pool
        durable = self.sync_mode != "off"
        head, trunks = pager.freelist_images()
        meta_page = bytearray(PAGE_SIZE)
        encode_meta(Meta(pager.page_count, head, pager.free_count, wal.lsn,
                         {n: (e.root, e.count) for n, e in self._trees.items()}), meta_page)
        dirty = pool.dirty_frames()
        for f in dirty:
            f.sync_bytes()
        in_pool = {f.page_id for f in dirty}
        spilled = {pid: off for pid, off in wal.spilled.items() if pid not in in_pool}
        n = 1 + len(trunks) + len(dirty) + len(spilled)
        home = [(0, meta_page), *trunks, *((f.page_id, f.buf) for f in dirty)]
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
        pool.mark_clean(dirty)
        wal.spilled.clear()  # every spilled page is home now
        try:
            wal.reset(wal.lsn, sync=durable)
        except StorageIOError as exc:
            # the header may say "empty" while old records remain: nothing
            # more may be appended until a reopen sorts it out (rule 6)
            wal.failed = True
            raise NeedsRecoveryError(exc.errno or 5, f"log reset failed ({exc}); reopen to recover") from exc
        self.checkpoints += 1

    def check(self, strict: bool = False) -> CheckReport:
        """Walk every invariant; see ARCHITECTURE.md."""
        self._check()
        self._latch.acquire_write()
        try:
            report = check_database(self._pool, self._pager, self._trees)
        finally:
            self._latch.release_write()
        if strict and not report.ok:
            raise CorruptionError("; ".join(report.problems[:5]))
        return report

    def stats(self) -> dict:
        self._check()
        pool, wal = self._pool, self._wal
        return {
            "page_size": PAGE_SIZE,
            "pages_allocated": self._pager.page_count,
            "pages_free": self._pager.free_count,
            "pool_pages": pool.n_frames,
            "pool_hits": pool.hits,
            "pool_misses": pool.misses,
            "pool_prefetched": pool.prefetched,
            "evictions": pool.evictions,
            "direct_io": bool(self._data.direct),
            "trees": len(self._trees),
            "keys": sum(e.count for e in self._trees.values()),
            "sync": self.sync_mode,
            "read_only": self.read_only,
            "log_bytes": wal.end if wal is not None else 0,
            "log_syncs": wal.syncs if wal is not None else 0,
            "commits": wal.commits if wal is not None else 0,
            "checkpoints": self.checkpoints,
            "recovered_commits": self.recovered_commits,
            "file_bytes": self._data.size(),
        }

    def tree_levels(self, name: str) -> list[list[PageInfo]]:
        """The pages of tree `name` level by level, root first."""
        self._check()
        if name not in self._trees:
            raise KeyError(name)
        self._latch.acquire_read()
        try:
            out = []
            for level in btree.levels(self._pool, self._trees[name].root):
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
            return
        self._latch.acquire_write()
        try:
            if self._closed:
                return
            self._closed = True
            error = None
            if not self.read_only and not self._wal.failed:
                try:
                    self._checkpoint_locked()
                except DragonDBError as exc:
                    error = exc
            self._release()
        finally:
            self._latch.release_write()
        if error is not None:
            raise error

    def _release(self) -> None:
        for closer in (getattr(self._pool, "close", None), getattr(self._wal, "close", None),
                       getattr(self._data, "close", None), getattr(self._lock, "release", None)):
            if closer is not None:
                try:
                    closer()
                except (OSError, DragonDBError, BufferError) as exc:
                    logger.warning("close: {}", exc)
        self._pool = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<engine.Database {self.path!r}{' closed' if self._closed else ''}>"


HEADER_END = 512


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


class _NeedsWritableRecovery(Exception):
    """Internal: a read-only open found a log to recover."""


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
    if log:
        txn.ops.append((op, name, key, value))


def _make_root(txn: Txn, name: str, double_check: bool) -> None:
    syncpoints.reach("btree.root.create")
    entry = txn.entry(name)
    if not double_check or not entry.root:
        btree.create_root(txn, name)


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


def _delete(txn: Txn, name: str, key: bytes) -> bool:
    if name not in txn.trees:
        raise KeyError(name)
    found = btree.delete(txn, name, key)
    if found:
        txn.ops.append((OP_DELETE, name, key, None))
    return found


def _batch(txn: Txn, ops: list) -> None:
    for op, name, key, value in ops:
        _apply(txn, op, name, key, value)
        txn.release()


# -- trees ------------------------------------------------------------------------

class Tree(MutableMapping):
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

    def put(self, key, value) -> None:
        # `_key` and `_value` run only when the inlined common case fails: a hot path
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = _value(value)
        db = self._db
        if db._write_in_place(self.name, key, value) is None:
            db._check_writable()
            if not self._entry().root:
                db._ensure_root(self.name)
            db._write(_put, self.name, key, value)

    def get(self, key, default=None):
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

    def delete(self, key) -> bool:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = _key(key)
        found = self._db._write_in_place(self.name, key, None)
        return self._db._write(_delete, self.name, key) if found is None else found

    def __getitem__(self, key) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value) -> None:
        self.put(key, value)

    def __delitem__(self, key) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key) -> bool:
        return self.get(key) is not None  # a non-bytes key raises TypeError, as get does

    def __len__(self) -> int:
        self._db._check()
        return self._entry().count

    def __iter__(self) -> Iterator[bytes]:
        for k, _ in self.scan():
            yield k

    def __repr__(self) -> str:
        return f"<engine.Tree {self.name!r} of {self._db.path!r}>"

    def items(self):
        return _ItemsView(self)

    def values(self):
        return _ValuesView(self)

    def scan(self, start=None, end=None, *, reverse: bool = False, prefix=None) -> Iterator[tuple[bytes, bytes]]:
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


class _ItemsView:
    __slots__ = ("_tree",)

    def __init__(self, tree: Tree) -> None:
        self._tree = tree

    def __iter__(self):
        return self._tree.scan()

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, item) -> bool:
        k, v = item
        return self._tree.get(k) == v


class _ValuesView(_ItemsView):
    def __iter__(self):
        for _, v in self._tree.scan():
            yield v

    def __contains__(self, value) -> bool:
        return any(v == value for v in self)


class Batch:
    """Writes collected in memory and applied as one atomic commit on exit."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list = []
        self._done = False

    def put(self, tree: str, key, value) -> None:
        self._ops.append((OP_PUT, _tree_name(tree), _key(key), _value(value)))

    def delete(self, tree: str, key) -> None:
        self._ops.append((OP_DELETE, _tree_name(tree), _key(key), None))

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        self._done = True
        if exc_type is None and self._ops:
            self._db._write(_batch, self._ops)


_ = leaf_cell_size

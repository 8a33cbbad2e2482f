"""Maintenance of a whole database file: `backup` and `compact`.

Both run under the database's write latch, after a checkpoint, so the data
file holds exactly the last committed state and the log is empty.

backup: copies pages 0..page_count-1 of the data file to `dest + ".tmp"`
  (a megabyte per read), fsyncs it, empties and fsyncs a stale
  `dest + "-wal"` (a log of some older database there would be replayed
  onto the copy), renames the copy to `dest` and fsyncs the directory. Every
  file is opened through the database's opener (the `BlockFile` seam), so a
  power loss at each step is tested (tests/crash/test_backup_crash.py). A
  crash leaves the old `dest` or the new one. Writers wait for the
  checkpoint and the copy; readers too.

compact: rewrites the database in place, through the log, as one more
  checkpoint (rule 3 of `wal`), so recovery needs nothing new:

  1. CKPT_BEGIN, then the image of every page of the compact layout, built
     tree by tree with `bulk.build` (packed leaves, internal levels,
     overflow chains) on page ids 1, 2, ... in order, 256 to a log write;
     then the new metadata page (page_count = the pages used, empty free
     list, the new roots); CKPT_END; fsync the log. That fsync is the
     commit point: a crash before it leaves the log without a complete new
     checkpoint, so recovery keeps the old file as it was (it was not
     written); a crash after it replays the images (idempotent) and opens
     the new database.
  2. Write the images home, fsync; cut the file to page_count pages, fsync;
     reset the log. A crash in here is repaired by replaying step 1's
     images; a cut that did not happen leaves the file its old length (the
     pages past page_count are unused) until the next compact.
  3. In memory: drop every cached frame, the pager holds page_count pages
     and no free page, each tree its new root.

  The data file keeps its name and inode (the lock and other processes'
  descriptors stay valid; no rename to get right), and the fsyncs happen in
  every sync mode: a compaction is never left half-durable. The log grows by
  the size of the live data for the duration, and each tree's items are
  held in memory once while its pages are built.
"""

from __future__ import annotations

import os

from engine import btree, bulk
from engine.codec import (
    OVERFLOW_PAYLOAD,
    PAGE_SIZE,
    Node,
    Overflow,
    encode_node,
    encode_overflow,
    verify,
)
from engine.errors import BackupTargetError, CorruptionError, NeedsRecoveryError, StorageIOError
from engine.metapage import Meta, encode_meta
from engine.typedefs import CompactResult

__all__ = ["backup", "compact"]

_COPY_PAGES = 256  # pages per read and write when copying (1 MiB)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def backup(db, dest) -> None:
    """A consistent copy of the last committed state at `dest`."""
    dest = os.fspath(dest)
    if any(_same_file(dest, p) for p in (db.path, db.path + "-wal")):
        raise BackupTargetError(f"backup: {dest!r} is the database itself or its log")
    db._ensure_usable()
    tmp = dest + ".tmp"
    with db._snapshot():  # a read-only handle copies the one committed state it sees
        out = _backup_to(db, tmp)
    try:
        _clear_log(db._opener, dest + "-wal")
        out.rename(dest)
        out.sync_dir()
    except BaseException:
        out.close()
        _remove(tmp)
        raise
    out.close()


def _backup_to(db, tmp: str):
    """Checkpoint (a read-only handle: into its in-memory overlays), then
    copy the data file's pages to `tmp` and sync it; returns it open. The
    copy goes through the database's opener, as every file of it does."""
    db._latch.acquire_write()
    try:
        db._ensure_usable()
        db._checkpoint_locked()
        out = db._opener(tmp, True)
        try:
            out.truncate(0)
            _copy_pages(db._data, out, db._pager.page_count, _unused_pages(db._pager))
            out.sync()
        except BaseException:
            out.close()
            _remove(tmp)
            raise
        return out
    finally:
        db._latch.release_write()


def _clear_log(opener, path: str) -> None:
    """Empty a stale log at the destination (an older database's, which
    would be replayed onto the copy) and sync it, before the copy takes the
    name: an empty log holds nothing to replay."""
    try:
        log = opener(path, False)
    except FileNotFoundError:
        return
    try:
        log.truncate(0)
        log.sync()
    finally:
        log.close()


def _copy_pages(src, out, page_count: int, free: set[int]) -> None:
    """Copy pages `0..page_count` of `src` to `out`, each checked: a page
    whose checksum fails is read once more (a flip on the way), and refused
    with `CorruptionError` if it fails again, so a backup never hands out a
    copy that `check` would refuse. Pages in `free` hold no data and are
    copied as they are."""
    buf = bytearray(_COPY_PAGES * PAGE_SIZE)
    view = memoryview(buf)
    for first in range(0, page_count, _COPY_PAGES):
        n = min(_COPY_PAGES, page_count - first) * PAGE_SIZE
        _read_exactly(src, first * PAGE_SIZE, view[:n])
        for i in range(n // PAGE_SIZE):
            pid = first + i
            page = view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
            if pid in free or verify(page):
                continue
            _read_exactly(src, pid * PAGE_SIZE, page)
            if not verify(page):
                raise CorruptionError(f"backup: page {pid}: checksum mismatch; the database needs repair")
        out.write(first * PAGE_SIZE, bytes(view[:n]))


def _unused_pages(pager) -> set[int]:
    """The free pages that hold nothing: every free page but the free list's
    trunks, which hold the list (the checkpoint just wrote them)."""
    return pager.free_pages() - set(pager.freelist_trunks())


def _read_exactly(src, offset: int, view: memoryview) -> None:
    got = src.read_into(offset, view)
    if got != len(view):
        raise StorageIOError(5, f"backup: short read of the data file ({got} of {len(view)} bytes)")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _LogSink:
    """The page sink `bulk.build` writes a compact layout to: page ids from 1
    in order, every finished page appended to the log as a checkpoint image."""

    class _NoPool:
        n_frames = 0  # every leaf goes through `spill_nodes`, in batches

    pool = _NoPool()

    def __init__(self, wal) -> None:
        self.wal = wal
        self.next_id = 1
        self._pages: list[tuple[int, bytes]] = []
        self.written: list[tuple[int, int]] = []  # (page id, log offset of its bytes)

    def allocate(self) -> int:
        pid = self.next_id
        self.next_id += 1
        return pid

    def _emit(self, pid: int, page: bytes) -> None:
        self._pages.append((pid, page))
        if len(self._pages) >= _COPY_PAGES:
            self.flush()

    def flush(self) -> None:
        if self._pages:
            offsets = self.wal.checkpoint_images(self._pages)
            self.written += [(pid, at) for (pid, _), at in zip(self._pages, offsets, strict=True)]
            self._pages = []

    def put_node(self, pid: int, node: Node) -> None:
        page = bytearray(PAGE_SIZE)
        encode_node(node, page)
        self._emit(pid, bytes(page))

    def spill_nodes(self, nodes: list[tuple[int, Node]]) -> None:
        for pid, node in nodes:
            self.put_node(pid, node)

    def write_overflow(self, value: bytes) -> Overflow:
        n = -(-len(value) // OVERFLOW_PAYLOAD)
        first = self.next_id
        self.next_id += n
        view = memoryview(value)
        for i in range(n):
            page = bytearray(PAGE_SIZE)
            nxt = first + i + 1 if i + 1 < n else 0
            encode_overflow(view[i * OVERFLOW_PAYLOAD : (i + 1) * OVERFLOW_PAYLOAD], nxt, page)
            self._emit(first + i, bytes(page))
        return Overflow(first, len(value))


def _items(pool, root: int) -> tuple[list[bytes], list[bytes]]:
    keys: list[bytes] = []
    vals: list[bytes] = []
    after = None
    while root:
        chunk, done = btree.chunk(pool, root, None, None, after, False, limit=4096)
        for k, v in chunk:
            keys.append(k)
            vals.append(v)
        if done or not chunk:
            break
        after = chunk[-1][0]
    return keys, vals


def compact(db) -> CompactResult:
    """Rewrite the database packed, giving free pages back to the file
    system; returns {"pages_before", "pages_after"}."""
    db._ensure_writable()
    db._latch.acquire_write()
    try:
        db._ensure_writable()
        db._checkpoint_locked()
        wal, pager, pool = db._wal, db._pager, db._pool
        before = pager.page_count
        sink = _LogSink(wal)
        roots: dict[str, tuple[int, int]] = {}
        ckpt_lsn = wal.lsn  # the last record before this checkpoint, as `_checkpoint_locked` records it
        wal.checkpoint_begin(0)  # the count is not known before the build; CKPT_END's is checked
        for name in sorted(db._trees):
            entry = db._trees[name]
            keys, vals = _items(pool, entry.root)
            roots[name] = (bulk.build(sink, keys, vals) if keys else 0, len(keys))
        sink.flush()
        page_count = sink.next_id
        if page_count > before:
            # Already packed tighter than a rebuild packs it (long separators
            # can need an extra level): keep the file; the data file is home,
            # so dropping the unfinished checkpoint from the log loses nothing.
            wal.reset(wal.lsn, sync=True)
            return {"pages_before": before, "pages_after": before}
        meta = bytearray(PAGE_SIZE)
        encode_meta(Meta(page_count, 0, 0, ckpt_lsn, roots), meta)
        sink.written += [(0, wal.checkpoint_image(0, meta))]
        wal.checkpoint_end(len(sink.written), True)
        # committed: from here a crash recovers the new layout from the log
        for pid in pool.page_ids():
            pool.discard(pid)
        pager.reset(page_count)
        for name, (root, count) in roots.items():
            entry = db._trees[name]
            entry.root, entry.count = root, count
        db._version += 1
        try:
            _write_home(wal, pager, sink.written)
            pager.sync()
            db._data.truncate(page_count * PAGE_SIZE)
            pager.sync()
            wal.reset(wal.lsn, sync=True)
        except StorageIOError as exc:
            # the log holds the compaction whole: a reopen finishes it (rule 6)
            wal.mark_failed()
            raise NeedsRecoveryError(exc.errno or 5, f"compact: writing home failed ({exc}); reopen to recover") from exc
        db.checkpoints += 1
        return {"pages_before": before, "pages_after": page_count}
    finally:
        db._latch.release_write()


def _write_home(wal, pager, written: list[tuple[int, int]]) -> None:
    """Copy the images from the log to their pages, a run at a time."""
    buf = memoryview(bytearray(PAGE_SIZE))
    run: list[tuple[int, bytes]] = []
    for pid, at in written:
        wal.read_image(at, buf)
        run.append((pid, bytes(buf)))
        if len(run) >= _COPY_PAGES:
            pager.write_pages(run)
            run = []
    pager.write_pages(run)

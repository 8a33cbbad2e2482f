"""The write-ahead log: logical commit records over a consistent checkpoint.

Choice of records. A commit record is *logical*: the operations of one
commit (put, delete, create tree, drop tree) with their keys and values.
Pages are logged *physically*, as full images, only at checkpoints. Why not
physiological records as in ARIES: in pure Python a put costs a few
microseconds, and logging every page a split touches would multiply that;
a logical record is one small append. Logical redo is only sound on a
consistent base, so the data file is never written between checkpoints:

Rules (numbered as SQLite's pager.c numbers its own):

1. A commit is durable when its record is in the log and the log is fsynced
   (`sync="full"`: at every commit; `"normal"`: at checkpoints and on
   `commit()`; `"off"`: only on `commit()`). Checkpoints sync in every
   mode (rule 3), so a checkpoint never undoes a returned `commit()`.
2. Between checkpoints the data file is not written. A dirty page the pool
   must evict is *spilled*: appended to the log as an image and read back
   from there (steal without touching the base). Recovery ignores spills.
3. A checkpoint appends CKPT_BEGIN, an image of every page that differs from
   the data file (metadata, free-list trunks, dirty and spilled pages) and
   CKPT_END, fsyncs the log, then writes the images home and fsyncs the data
   file, then resets the log (new header, truncate, fsync). A torn home write
   is therefore always repairable from the log.
   Only CKPT_END's image count is checked; CKPT_BEGIN's is informational (a
   compaction, which streams a whole new layout as one checkpoint, writes 0).
4. Recovery: scan records from the header while the checksum, length and LSN
   sequence hold (a torn or half-written tail ends the scan); apply the images
   of the last complete checkpoint (idempotent); redo the commit records after
   it through the B+ tree; checkpoint. A crash during recovery repeats it.
5. Records carry consecutive LSNs starting at the header's base LSN + 1, so a
   stale record left behind a reset never looks valid.
5a. Each record also carries the durable LSN at the time it was appended. If
   the scan breaks at record L but a later valid record says L was already
   durable when it was written, record L was damaged after it was synced:
   that is corruption (`CorruptionError`), not a torn tail, and recovery
   refuses to drop acknowledged commits silently.
6. After a failed fsync nothing is known to be durable: `failed` is set and
   every later operation raises `NeedsRecoveryError` until reopen (the
   PostgreSQL fsyncgate lesson: never retry the fsync as if nothing happened).
   The log sets it itself when its own fsync or an append's undo fails; the
   database calls `mark_failed()` when the data file's fsync, a log reset or
   an in-memory rollback fails (state the log cannot see).
7. Appends rewrite the log's partial last 512-byte sector whole, so every
   write is sector-aligned (O_DIRECT-friendly), but never a sector holding
   synced (or syncing) records: after a sync the next record starts at the
   next sector; the scan steps over the gap to a record with the next LSN. A torn or
   garbled unsynced write can then only damage unacknowledged records.

8. Recovery builds only on what is durable. A killed writer's unsynced
   writes may still be in the page cache, where recovery reads them; a
   power loss later would take them back. So a writable open syncs both
   files before its first write (`recovery.Recovery._make_durable`): no image is
   written home and no record vouches for earlier ones until what was read
   is durable. A read-only open writes nothing: it recovers into in-memory
   overlays of both files (`disk.Overlay`).

9. Readers in other processes (docs/processes.md) follow the log without
   writing: at the start of each snapshot, under the readers lock held
   shared, they compare the header's base LSN with the one their state was
   built on and read the records appended since (`follow`). The writer
   writes pages home (checkpoint, recovery) and resets the log only under
   the readers lock held exclusive, so a reader's snapshot never reads a
   home page newer than its base. A reader that finds a changed base, or a
   complete checkpoint among the new records (a writer that died between
   writing pages home and resetting the log), rebuilds from both files.

The byte format (records, the header, commit payloads) and the pure reading
of it (the recovery scan and plan) are `engine/walformat.py`; this module
writes and reads the file.

States of the log, and who moves it::

    CLEAN --append (commit/spill)--> ACTIVE --checkpoint--> CLEAN
      \\---------------- failed sync ---------------------> FAILED (until reopen)

| from | to | function | when |
|---|---|---|---|
| CLEAN | ACTIVE | `commit`, `spill`, `spill_many` | a record appended after the header |
| ACTIVE | ACTIVE | `forget` | a freed page's spilled image is dropped from the index |
| ACTIVE | ACTIVE | `forget_spilled` | a checkpoint wrote every page of `spilled_pages()` home |
| ACTIVE | CLEAN | `reset` | the checkpoint's last step (rule 3): new header, truncate, fsync |
| any | FAILED | `_fsync`, `_append_records` | the log's fsync failed, or a failed append could not be undone |
| any | FAILED | `mark_failed` | the data file's fsync, a log reset or a rollback failed (rule 6) |

FAILED is left only by a reopen (a new `Wal`): every append and sync raises
`NeedsRecoveryError`.
"""

from __future__ import annotations

import threading

from engine import syncpoints
from engine.codec import PAGE_SIZE, verify
from engine.disk import SECTOR, BlockFile, aligned_buffer
from engine.errors import CorruptionError, NeedsRecoveryError, StorageIOError
from engine.latch import wait
from engine.walformat import (
    CKPT_BEGIN,
    CKPT_END,
    CKPT_IMAGE,
    COMMIT,
    HEADER_BYTES,
    HEADER_USED,
    PAGE_ID,
    RECORD_HEAD,
    SPILL,
    check_record,
    decode_header,
    encode_header,
    encode_record,
)

__all__ = ["Wal", "LoggedStore", "follow", "read_base"]

_IMAGES_PER_WRITE = 256  # checkpoint images per log write: ~1 MiB
_PREALLOCATE = 64 * 1024  # zeros written ahead of the tail under sync="full"
_ZERO_SECTOR = memoryview(bytes(SECTOR))
_READ_ALL_TRIES = 3  # a writer cuts the log once per open: a second read is stable
_FOLLOW_READ = 16 * 1024  # bytes a follower reads per call; most refreshes need one


# -- readers in other processes (rule 9) ---------------------------------------

def read_base(file: BlockFile) -> int | None:
    """The base LSN of the log's header, None when the header is not valid."""
    buf = bytearray(HEADER_USED)
    if file.read_into(0, memoryview(buf)) != HEADER_USED:
        return None
    return decode_header(buf)


def follow(file: BlockFile, pos: int, expect: int) -> list[tuple[int, int, bytes, int]]:
    """Rule 9: the records a reader has not seen yet, as (lsn, type,
    payload, offset after the record), from offset `pos` where record
    `expect` would start (or the next sector, rule 7). A record being
    written, or torn, fails its checksum and ends the list; the next call
    tries it again. Rule 5a is not applied: a writer may be appending."""
    out: list[tuple[int, int, bytes, int]] = []
    reader = _Window(file)
    while True:
        at = pos
        rec = reader.record(at)
        if (rec is None or rec[1] != expect) and pos % SECTOR:
            at = pos + SECTOR - pos % SECTOR
            rec = reader.record(at)
        if rec is None or rec[1] != expect:
            return out
        length, lsn, _, rtype = rec
        pos = at + RECORD_HEAD.size + length
        out.append((lsn, rtype, reader.payload(at, length), pos))
        expect += 1


class _Window:
    """Bytes of a file read ahead a chunk at a time, for `follow`."""

    __slots__ = ("file", "start", "data")

    def __init__(self, file: BlockFile) -> None:
        self.file, self.start, self.data = file, 0, b""

    def _cover(self, at: int, n: int) -> bool:
        if not (self.start <= at and at + n <= self.start + len(self.data)):
            buf = bytearray(max(n, _FOLLOW_READ))
            got = self.file.read_into(at, memoryview(buf))
            self.start, self.data = at, bytes(buf[:got])
        return at + n <= self.start + len(self.data)

    def record(self, at: int) -> tuple[int, int, int, int] | None:
        if at < HEADER_BYTES or not self._cover(at, RECORD_HEAD.size):
            return None
        length = RECORD_HEAD.unpack_from(self.data, at - self.start)[0]
        if length > _FOLLOW_READ and at + RECORD_HEAD.size + length > self.file.size():
            return None  # garbage or a record still being written: never allocate its claimed length
        if not self._cover(at, RECORD_HEAD.size + length):
            return None
        return check_record(self.data, at - self.start)

    def payload(self, at: int, length: int) -> bytes:
        off = at - self.start + RECORD_HEAD.size
        return self.data[off : off + length]



# -- the log ---------------------------------------------------------------------

class Wal:
    """The log file: appends, group commit, spills, checkpoints, reading it whole for recovery."""

    def __init__(self, file: BlockFile, sync: str) -> None:
        self.file = file
        self.sync_mode = sync
        self._mutex = threading.Lock()  # append position, tail, spill index
        # One fsync at a time; committers that arrive meanwhile wait on
        # `_synced` (not in a queue on a lock, so one the running fsync covers
        # returns as soon as it ends) and the first one left becomes the next leader.
        self._sync_lock = threading.Lock()
        self._synced = threading.Condition(self._sync_lock)
        self._sync_running = False
        self.base_lsn = 0
        self.lsn = 0  # last appended
        self.durable_lsn = 0
        self.end = HEADER_BYTES
        self._tail_start = HEADER_BYTES
        self._zeroed = HEADER_BYTES  # the file holds zeros from `end` up to here
        self._tail = bytearray()
        self._staging = aligned_buffer(2 * PAGE_SIZE)
        self.spilled: dict[int, int] = {}  # page id -> offset of its latest image
        self.failed = False
        self._syncing = 0  # LSN a sync in progress will make durable
        self.syncs = 0
        self.commits = 0

    # -- opening ---------------------------------------------------------------

    def read_all(self) -> bytes:
        """The whole file. A short read inside the file is an I/O error, not
        a torn tail; a file that shrank meanwhile is read again (a reader's
        open while a writer's open cuts the log's tail, docs/processes.md)."""
        for _ in range(_READ_ALL_TRIES):
            size = self.file.size()
            buf = bytearray(size)
            got = self.file.read_into(0, memoryview(buf)) if size else 0
            if got == size:
                return bytes(buf)
            if self.file.size() >= size:
                break
        raise StorageIOError(5, f"log: short read ({got} of {size} bytes)")

    def start(self, base_lsn: int, end: int | None = None, last_lsn: int | None = None, data: bytes = b"") -> None:
        """Continue appending after the valid records (or at a fresh header)."""
        if end is None:
            self.reset(base_lsn, sync=False)
            return
        self.base_lsn = base_lsn
        self.lsn = self.durable_lsn = last_lsn if last_lsn is not None else base_lsn
        self.end = end
        self._tail_start = end - end % SECTOR
        self._zeroed = end
        self._tail = bytearray(data[self._tail_start : end])

    def reset(self, base_lsn: int, sync: bool = True) -> None:
        """Empty the log: a new header with `base_lsn`, then truncate (rule 3)."""
        staging = self._stage(HEADER_BYTES)
        staging[:HEADER_BYTES] = encode_header(base_lsn)
        self.file.write(0, memoryview(staging)[:HEADER_BYTES])
        self.file.truncate(HEADER_BYTES)
        if sync:
            self._fsync()
        self.base_lsn = base_lsn
        self.lsn = self.durable_lsn = self._syncing = base_lsn
        self.end = self._tail_start = self._zeroed = HEADER_BYTES
        self._tail = bytearray()
        self.spilled.clear()

    # -- appending ---------------------------------------------------------------

    def _stage(self, n: int) -> memoryview:
        need = -(-n // PAGE_SIZE) * PAGE_SIZE
        have = len(self._staging)
        if have < need:
            try:
                self._staging.close()
            except BufferError:  # a failed write's traceback may still hold a slice; GC frees it
                pass
            self._staging = aligned_buffer(max(need, 2 * have))
        return self._staging  # type: ignore[return-value]

    def _append(self, rtype: int, payload: bytes | memoryview) -> tuple[int, int]:
        """Append one record (caller holds `_mutex`); returns (lsn, offset)."""
        offset = self._append_records(rtype, (payload,))[0]
        return self.lsn, offset

    def _append_records(self, rtype: int, payloads) -> list[int]:
        """Append one record per payload with a single write (caller holds
        `_mutex`); returns the offset of each record."""
        if self.failed:
            raise NeedsRecoveryError("an earlier log sync failed; reopen the database to recover")
        if self._tail and max(self.durable_lsn, self._syncing) >= self.lsn:
            # rule 7: the partial sector holds synced records; leave it alone
            self._tail_start += SECTOR
            self._tail = bytearray()
            self.end = self._tail_start
        tail = self._tail
        keep = len(tail)
        lsn, durable, start = self.lsn, self.durable_lsn, self._tail_start
        offsets = []
        for payload in payloads:
            lsn += 1
            offsets.append(start + len(tail))
            tail += encode_record(lsn, durable, rtype, payload)
        n = len(tail)
        padded = -(-n // SECTOR) * SECTOR
        if start + padded > self._zeroed and self.sync_mode == "full":
            self._preallocate(start + padded)
        staging = self._staging
        if len(staging) < padded:
            staging = self._stage(padded)
        staging[:n] = tail
        staging[n:padded] = _ZERO_SECTOR[: padded - n]  # less than a sector: no allocation per commit
        try:
            self.file.write(start, memoryview(staging)[:padded])
        except BaseException as exc:
            del tail[keep:]
            if not self._erase(keep, padded) and isinstance(exc, StorageIOError):
                # the record may sit whole in the file: after a crash it would
                # come back, so its outcome is unknown until a reopen decides
                self.failed = True
                raise NeedsRecoveryError(
                    exc.errno or 5, f"log append failed and could not be undone ({exc}); reopen to recover"
                ) from exc
            raise
        self.lsn = lsn
        self.end = start + n
        cut = n - n % SECTOR
        if cut:
            self._tail_start += cut
            del tail[:cut]
        return offsets

    def _preallocate(self, need: int) -> None:
        """Write zeros past the tail, so the appends and fsyncs of the next
        commits overwrite allocated blocks and the fsyncs need not journal a
        new file size (a third faster per durable commit here). Zeros end a
        recovery scan like a torn tail. Best effort: if it fails (a full disk)
        the append itself is tried and reports the error."""
        start = max(self._zeroed, self._tail_start)
        stop = -(-(need + _PREALLOCATE) // _PREALLOCATE) * _PREALLOCATE
        try:
            self.file.write(start, bytes(stop - start))
        except StorageIOError:
            self._zeroed = 1 << 62  # no more tries until the next reset
            return
        self._zeroed = stop

    def _erase(self, keep: int, padded: int) -> bool:
        """After a failed append, overwrite whatever part of the record landed
        and sync, so the operation that raised cannot reappear after a crash;
        failing that, cut the file after the last good record. False when both
        fail: the caller then poisons the log."""
        staging = self._staging
        staging[:keep] = self._tail
        staging[keep:padded] = bytes(padded - keep)
        try:
            self.file.write(self._tail_start, memoryview(staging)[:padded])
            self.file.sync()
            return True
        except StorageIOError:
            pass
        end = self._tail_start + keep
        try:  # a full disk refuses the overwrite; cutting the file needs no space
            self.file.truncate(end)
            self.file.sync()
        except StorageIOError:
            return False
        self._zeroed = min(self._zeroed, end)
        return True

    def commit(self, payload: bytes) -> int:
        """Append a commit record; returns its LSN (durable after `sync_to`)."""
        syncpoints.reach("wal.append")
        with self._mutex:
            self._append_records(COMMIT, (payload,))
            lsn = self.lsn
        self.commits += 1
        return lsn

    def sync_to(self, lsn: int, force: bool = False) -> None:
        """Make the log durable up to `lsn` (rule 1); committers waiting
        together share one fsync (group commit): while one runs, the others
        append and wait on `_synced`, and the first of them left uncovered
        leads the next."""
        if not force and self.sync_mode != "full":
            return
        if self.durable_lsn >= lsn and not self.failed:
            return
        syncpoints.reach("wal.sync")
        with self._synced:
            while True:
                if self.failed:
                    raise NeedsRecoveryError("an earlier log sync failed; reopen the database to recover")
                if self.durable_lsn >= lsn:
                    return
                if not self._sync_running:
                    break
                wait(self._synced, self._sync_lock)
            self._sync_running = True
        self._lead_sync()

    def _lead_sync(self) -> None:
        """The leader's fsync (`_sync_running` set by the caller): everything
        appended so far becomes durable; waiters are woken either way."""
        try:
            with self._mutex:
                target = self._syncing = self.lsn
            self._fsync()
            self.durable_lsn = target
        finally:
            with self._synced:
                self._sync_running = False
                self._synced.notify_all()

    def _fsync(self) -> None:
        try:
            self.file.sync()
            self.syncs += 1
        except StorageIOError as exc:
            self.failed = True
            raise NeedsRecoveryError(exc.errno or 5, f"log fsync failed ({exc}); reopen the database to recover") from exc

    # -- spills (rule 2) ---------------------------------------------------------

    def spill(self, page_id: int, buf: memoryview) -> None:
        with self._mutex:
            _, offset = self._append(SPILL, PAGE_ID.pack(page_id) + bytes(buf))
            self.spilled[page_id] = offset + RECORD_HEAD.size + PAGE_ID.size

    def spill_many(self, pages: list[tuple[int, bytes | memoryview]]) -> None:
        """`spill` of many pages, up to 256 to a write (a bulk load's pages
        that the pool has no room for)."""
        skip = RECORD_HEAD.size + PAGE_ID.size
        for i in range(0, len(pages), _IMAGES_PER_WRITE):
            chunk = pages[i : i + _IMAGES_PER_WRITE]
            payloads = [PAGE_ID.pack(pid) + bytes(image) for pid, image in chunk]
            with self._mutex:
                offsets = self._append_records(SPILL, payloads)
                for (pid, _), offset in zip(chunk, offsets, strict=True):
                    self.spilled[pid] = offset + skip

    def read_spill(self, page_id: int, buf: memoryview) -> bool:
        """Fill `buf` with the latest spilled image of `page_id`; False if none."""
        offset = self.spilled.get(page_id)
        if offset is None:
            return False
        got = self.file.read_into(offset, buf)
        if got != PAGE_SIZE or not verify(buf):
            raise CorruptionError(f"page {page_id}: spilled image in the log is damaged")
        return True

    def spilled_pages(self) -> list[int]:
        """Page ids with a spilled image in the log (rule 2), for a checkpoint."""
        with self._mutex:
            return list(self.spilled)

    def forget_spilled(self) -> None:
        """Every spilled page is home now (a checkpoint wrote them): reads go
        to the data file again."""
        with self._mutex:
            self.spilled.clear()

    def mark_failed(self) -> None:
        """Nothing more may be appended or synced until reopen (rule 6)."""
        self.failed = True

    def forget(self, page_id: int) -> None:
        """A freed page's spilled image is dead."""
        self.spilled.pop(page_id, None)

    # -- checkpoints (rule 3) ------------------------------------------------------

    def checkpoint_begin(self, n_images: int) -> None:
        with self._mutex:
            self._append(CKPT_BEGIN, PAGE_ID.pack(n_images))

    def checkpoint_image(self, page_id: int, image: bytes | memoryview) -> int:
        """Append one image; returns the log offset of the page bytes."""
        return self.checkpoint_images([(page_id, image)])[0]

    def checkpoint_images(self, images: list[tuple[int, bytes | memoryview]]) -> list[int]:
        """Append images, many to a write; returns the log offset of each
        one's page bytes."""
        out: list[int] = []
        skip = RECORD_HEAD.size + PAGE_ID.size
        for i in range(0, len(images), _IMAGES_PER_WRITE):
            payloads = [PAGE_ID.pack(pid) + bytes(image) for pid, image in images[i : i + _IMAGES_PER_WRITE]]
            with self._mutex:
                out += [offset + skip for offset in self._append_records(CKPT_IMAGE, payloads)]
        return out

    def checkpoint_end(self, n_images: int, durable: bool) -> None:
        with self._mutex:
            self._append(CKPT_END, PAGE_ID.pack(n_images))
        if durable:
            with self._synced:
                while self._sync_running:
                    wait(self._synced, self._sync_lock)
                self._sync_running = True
            self._lead_sync()

    def read_image(self, offset: int, buf: memoryview) -> None:
        got = self.file.read_into(offset, buf)
        if got != PAGE_SIZE or not verify(buf):
            raise CorruptionError("log: checkpoint image damaged")

    def close(self) -> None:
        try:
            self._staging.close()
        except BufferError:  # a failed write's traceback may still hold a slice; GC frees it
            pass
        self.file.close()


class LoggedStore:
    """The pool's page store while a log is attached: reads prefer the latest
    spilled image, evictions spill to the log instead of writing home."""

    __slots__ = ("pager", "wal")

    def __init__(self, pager, wal: Wal) -> None:
        self.pager = pager
        self.wal = wal

    def read_page(self, page_id: int, buf: memoryview) -> None:
        if page_id in self.wal.spilled and self.wal.read_spill(page_id, buf):
            return
        self.pager.read(page_id, buf)

    def read_ahead(self, first: int, count: int, buf: memoryview) -> list[int]:
        """Home copies of pages from `first` that no spilled image supersedes."""
        spilled = self.wal.spilled
        return [pid for pid in self.pager.read_ahead(first, count, buf) if pid not in spilled]

    def write_page(self, page_id: int, buf: memoryview) -> None:
        self.wal.spill(page_id, buf)

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

Record layout: length u32 (payload bytes) | crc32 u32 (of lsn..payload) |
lsn u64 | durable lsn u64 | type u8 | payload. Log header (first 512 bytes): magic
b"DRGNWAL1" | base_lsn u64 | crc32 u32.

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

import struct
import threading
import zlib

from engine import syncpoints
from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_SIZE, decode_meta, verify
from engine.disk import SECTOR, BlockFile, aligned_buffer
from engine.errors import CorruptionError, NeedsRecoveryError, NotADatabaseError, StorageIOError
from engine.latch import wait

__all__ = [
    "Wal", "LoggedStore", "HEADER_BYTES", "first_record", "follow", "read_base", "RecoveryPlan", "encode_op", "encode_ops", "decode_ops", "scan",
    "COMMIT", "SPILL", "CKPT_BEGIN", "CKPT_IMAGE", "CKPT_END",
    "OP_PUT", "OP_DELETE", "OP_CREATE", "OP_DROP", "OP_LOAD",
]

HEADER_BYTES = SECTOR  # the header owns the first sector, so records start aligned
_MAGIC = b"DRGNWAL1"
_HDR = struct.Struct("<8sQI")
_REC = struct.Struct("<IIQQB")  # 25 bytes
_REC_BODY = struct.Struct("<QQB")  # the CRC'd part of the record header
_LSN_BYTES = struct.Struct("<Q")
_PID = struct.Struct("<I")
_IMAGES_PER_WRITE = 256  # checkpoint images per log write: ~1 MiB
_PREALLOCATE = 64 * 1024  # zeros written ahead of the tail under sync="full"
_READ_ALL_TRIES = 3  # a writer cuts the log once per open: a second read is stable

COMMIT, SPILL, CKPT_BEGIN, CKPT_IMAGE, CKPT_END = 1, 2, 3, 4, 5
OP_PUT, OP_DELETE, OP_CREATE, OP_DROP = 1, 2, 3, 4
# OP_LOAD (a bulk load of an empty tree): its "key" is None and its "value" the
# (keys, values) lists; stored as count u32 | key lengths u32* | value
# lengths u32* | keys | values (arrays, so 100k items pack in a few C calls)
OP_LOAD = 5
_OPS = frozenset((OP_PUT, OP_DELETE, OP_CREATE, OP_DROP, OP_LOAD))
_OP_HEAD = struct.Struct("<BB")
_LEN = struct.Struct("<I")


# -- pure encoding -------------------------------------------------------------

def encode_op(op: int, tree: str, key: bytes, value: bytes | None) -> bytes:
    """`encode_ops` of one put or delete (the hot case).

    post: __return__ == encode_ops([(op, tree, key, value)])
    """
    name = tree.encode()
    if op == OP_PUT:
        return b"".join((_OP_HEAD.pack(OP_PUT, len(name)), name, _LEN.pack(len(key)), key,
                         _LEN.pack(len(value)), value))  # type: ignore[arg-type]
    return b"".join((_OP_HEAD.pack(op, len(name)), name, _LEN.pack(len(key)), key))


def encode_ops(ops: list[tuple[int, str, bytes | None, bytes | None]]) -> bytes:
    """Serialize (op, tree, key, value) tuples into a commit payload.

    A put is two parts: its head (op, tree) made once per tree, and its
    lengths, key and value packed by one struct per (key, value) length
    pair: a batch of 100k puts then costs a few calls each, not ten."""
    parts: list = []
    add = parts.append
    heads: dict = {}
    packers: dict = {}
    for op, tree, key, value in ops:
        if op == OP_PUT:
            head = heads.get(tree)
            if head is None:
                name = tree.encode()
                head = heads[tree] = _OP_HEAD.pack(OP_PUT, len(name)) + name
            add(head)
            kl, vl = len(key), len(value)  # type: ignore[arg-type]
            pack = packers.get((kl, vl))
            if pack is None and vl <= _PACKED_VALUE_MAX and len(packers) < _PACKERS_MAX:
                pack = packers[(kl, vl)] = struct.Struct(f"<I{kl}sI{vl}s").pack
            if pack is not None:
                add(pack(kl, key, vl, value))
            else:
                add(b"".join((_LEN.pack(kl), key, _LEN.pack(vl), value)))  # type: ignore[arg-type]
            continue
        name = tree.encode()
        add(_OP_HEAD.pack(op, len(name)))
        add(name)
        if op == OP_DELETE:
            add(_LEN.pack(len(key)))  # type: ignore[arg-type]
            add(key)
        elif op == OP_LOAD:
            keys, vals = value  # type: ignore[misc]
            n = len(keys)
            parts.extend((_LEN.pack(n), struct.pack(f"<{n}I", *map(len, keys)),
                          struct.pack(f"<{n}I", *map(len, vals)), *keys, *vals))
    return b"".join(parts)


_PACKED_VALUE_MAX = 4096  # larger values are copied once by the join, not packed
_PACKERS_MAX = 256  # distinct (key, value) length pairs packed per payload


def decode_ops(payload: bytes) -> list[tuple[int, str, bytes | None, bytes | None]]:
    """Inverse of `encode_ops`; `CorruptionError` on malformed input and on
    any operation the API could not have made (a record may be crafted with
    a valid checksum): an unknown op, a tree name outside 1..255 UTF-8
    bytes, a key outside 1..MAX_KEY_SIZE bytes, a value over MAX_VALUE_SIZE.

    post: encode_ops(__return__) == payload
    """
    ops = []
    pos = 0
    n = len(payload)
    try:
        while pos < n:
            op, ln = _OP_HEAD.unpack_from(payload, pos)
            if op not in _OPS or not ln:
                raise CorruptionError(f"log: commit record with op {op}, tree name of {ln} bytes")
            pos += 2
            tree = payload[pos : pos + ln].decode()
            pos += ln
            key = value = None
            if op <= OP_DELETE:
                (kl,) = _LEN.unpack_from(payload, pos)
                if not 0 < kl <= MAX_KEY_SIZE:
                    raise CorruptionError(f"log: commit record with a key of {kl} bytes")
                key = payload[pos + 4 : pos + 4 + kl]
                pos += 4 + kl
            if op == OP_PUT:
                (vl,) = _LEN.unpack_from(payload, pos)
                if vl > MAX_VALUE_SIZE:
                    raise CorruptionError(f"log: commit record with a value of {vl} bytes")
                value = payload[pos + 4 : pos + 4 + vl]
                pos += 4 + vl
            if op == OP_LOAD:
                value, pos = _decode_load(payload, pos)
            if pos > n:
                raise CorruptionError("log: commit record cut short")
            ops.append((op, tree, key, value))
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptionError("log: malformed commit record") from exc
    return ops


def _decode_load(payload: bytes, pos: int) -> tuple[tuple[list[bytes], list[bytes]], int]:
    """The (keys, values) of an OP_LOAD at `pos`, and the position after it."""
    (count,) = _LEN.unpack_from(payload, pos)
    pos += 4
    if count > (len(payload) - pos) // 8:
        raise CorruptionError("log: malformed commit record")
    klens = struct.unpack_from(f"<{count}I", payload, pos)
    vlens = struct.unpack_from(f"<{count}I", payload, pos + 4 * count)
    pos += 8 * count
    # a crafted load may not store what no load could (like decode_ops' own checks)
    if count and (min(klens) < 1 or max(klens) > MAX_KEY_SIZE or max(vlens) > MAX_VALUE_SIZE):
        raise CorruptionError("log: bulk load record with an impossible key or value size")
    if pos + sum(klens) + sum(vlens) > len(payload):
        raise CorruptionError("log: bulk load record cut short")
    out: tuple[list[bytes], list[bytes]] = ([], [])
    for lens, dest in ((klens, out[0]), (vlens, out[1])):
        for ln in lens:
            dest.append(payload[pos : pos + ln])
            pos += ln
    keys = out[0]
    if any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
        raise CorruptionError("log: bulk load record with keys out of order")
    return out, pos


def _record(lsn: int, durable: int, rtype: int, payload: bytes | memoryview) -> bytes:
    body = _REC_BODY.pack(lsn, durable, rtype)
    crc = zlib.crc32(payload, zlib.crc32(body))
    return b"".join((struct.pack("<II", len(payload), crc), body, payload))


def _header(base_lsn: int) -> bytes:
    raw = _MAGIC + struct.pack("<Q", base_lsn)
    return (raw + struct.pack("<I", zlib.crc32(raw))).ljust(HEADER_BYTES, b"\0")


class Record:
    __slots__ = ("lsn", "rtype", "pos", "length")

    def __init__(self, lsn: int, rtype: int, pos: int, length: int) -> None:
        self.lsn, self.rtype, self.pos, self.length = lsn, rtype, pos, length

    @property
    def payload_at(self) -> int:
        return self.pos + _REC.size


def _valid_at(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int] | None:
    """(length, lsn, durable, type) of a record whose checksum holds at `pos`."""
    if pos < HEADER_BYTES:
        return None
    return _check_at(data, pos)


def _check_at(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int] | None:
    if pos + _REC.size > len(data):
        return None
    length, crc, lsn, durable, rtype = _REC.unpack_from(data, pos)
    end = pos + _REC.size + length
    if end > len(data) or zlib.crc32(data[pos + _REC.size : end], zlib.crc32(data[pos + 8 : pos + _REC.size])) != crc:
        return None
    return length, lsn, durable, rtype


def scan(data: bytes | memoryview) -> tuple[int | None, list[Record], int]:
    """(base_lsn or None when the header is invalid, valid records, end offset).

    Raises `CorruptionError` when a record that was already durable is
    damaged (rule 5a); a torn or unsynced tail just ends the scan.
    """
    if len(data) < _HDR.size:
        return None, [], HEADER_BYTES
    magic, base, crc = _HDR.unpack_from(data, 0)
    if magic != _MAGIC or zlib.crc32(bytes(data[:16])) != crc:
        return None, [], HEADER_BYTES
    records = []
    pos = HEADER_BYTES
    expect = base + 1
    while True:
        rec = _valid_at(data, pos)
        if rec is None or rec[1] != expect:  # the next record, if any, is past a gap
            if (found := _past_gap(data, pos, expect)) is None:
                break
            pos, rec = found
        length, lsn, _, rtype = rec
        records.append(Record(lsn, rtype, pos, length))
        expect += 1
        pos += _REC.size + length
    _refuse_damaged_durable(data, pos, expect)
    return base, records, pos


def _next_record(data: bytes | memoryview, pos: int, expect: int) -> tuple[int, tuple[int, int, int, int]] | None:
    """(offset, record) of record `expect` at `pos` or past the gap after it."""
    rec = _valid_at(data, pos)
    if rec is not None and rec[1] == expect:
        return pos, rec
    return _past_gap(data, pos, expect)


def _past_gap(data: bytes | memoryview, pos: int, expect: int) -> tuple[int, tuple[int, int, int, int]] | None:
    """Rule 7: after a sync the next record starts at the next sector; the
    gap holds zeros (or, after a recovery, the torn tail it cut). None when
    `pos` starts a sector or the next sector does not hold record `expect`."""
    if pos % SECTOR:
        nxt = pos + SECTOR - pos % SECTOR
        if (later := _valid_at(data, nxt)) is not None and later[1] == expect:
            return nxt, later
    return None


def first_record(data: bytes | memoryview) -> tuple[int, int] | None:
    """(LSN, type) of a valid record right after the header, even if the header is
    damaged: recovery compares it with the checkpoint LSN to tell a stale
    pre-checkpoint log (a reset cut short by a crash) from a damaged header."""
    rec = _valid_at(data, HEADER_BYTES)
    return None if rec is None else (rec[1], rec[3])


def _refuse_damaged_durable(data: bytes | memoryview, pos: int, broken: int) -> None:
    """Rule 5a: look past the break for any valid later record that vouches
    for record `broken` having been durable: the first valid record found
    within 256 LSNs past the break, every record chained after it (however
    many a single fsync made durable before one said so), and so on past
    each further break."""
    raw = bytes(data)
    # no record lies in trailing zeros (preallocated or padding): search only before them
    stop = min(len(raw), len(raw.rstrip(b"\0")) + 16)
    at, missing = pos, broken
    while (found := _resync(raw, at, missing, stop)) is not None:
        at, missing = found
        while (rec := _next_record(raw, at, missing)) is not None:
            at, (length, later, durable, _) = rec
            if durable >= broken:
                raise CorruptionError(
                    f"log: record {broken} at offset {pos} is damaged but was durable "
                    f"(record {later} says so); refusing to drop acknowledged commits")
            at += _REC.size + length
            missing += 1


def _resync(raw: bytes, pos: int, missing: int, stop: int) -> tuple[int, int] | None:
    """(offset, LSN) of the first valid record past `pos` whose LSN is one
    of the 256 after `missing`, searched by its LSN's bytes."""
    for later in range(missing + 1, missing + 257):
        at = raw.find(_LSN_BYTES.pack(later), pos, stop)
        while at != -1:
            rec = _valid_at(raw, at - 8)
            if rec is not None and rec[1] == later:
                return at - 8, later
            at = raw.find(_LSN_BYTES.pack(later), at + 1, stop)
    return None


_SIZES = {CKPT_BEGIN: _PID.size, CKPT_IMAGE: _PID.size + PAGE_SIZE, CKPT_END: _PID.size}
_FOLLOW_READ = 16 * 1024  # bytes a follower reads per call; most refreshes need one


def read_base(file: BlockFile) -> int | None:
    """The base LSN of the log's header, None when the header is not valid."""
    buf = bytearray(_HDR.size)
    if file.read_into(0, memoryview(buf)) != _HDR.size:
        return None
    magic, base, crc = _HDR.unpack(buf)
    return base if magic == _MAGIC and zlib.crc32(bytes(buf[:16])) == crc else None


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
        pos = at + _REC.size + length
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
        if at < HEADER_BYTES or not self._cover(at, _REC.size):
            return None
        length = _LEN.unpack_from(self.data, at - self.start)[0]
        if length > _FOLLOW_READ and at + _REC.size + length > self.file.size():
            return None  # garbage or a record still being written: never allocate its claimed length
        if not self._cover(at, _REC.size + length):
            return None
        return _check_at(self.data, at - self.start)

    def payload(self, at: int, length: int) -> bytes:
        off = at - self.start + _REC.size
        return self.data[off : off + length]


class RecoveryPlan:
    """What recovery must do, computed purely from the log's bytes and its
    scanned records: `images`, (page id, offset of the page bytes) of the last
    complete checkpoint, `commits`, the commit records after it, and `ops`,
    their operations, decoded and validated before recovery writes anything.

    Records may be crafted with valid checksums, so every size and target is
    checked (`CorruptionError`): checkpoint records are exactly a u32 (plus a
    page for an image); each image verifies; the checkpoint holds the
    metadata page and no image lies past the page count it gives."""

    __slots__ = ("images", "commits", "ops")

    def __init__(self, data: bytes | memoryview, records: list[Record]) -> None:
        self.images: list[tuple[int, int]] = []
        start = 0
        pending: list[tuple[int, int]] | None = None
        for i, rec in enumerate(records):
            size = _SIZES.get(rec.rtype)
            if size is not None and rec.length != size:
                raise CorruptionError(f"log: record {rec.lsn} (type {rec.rtype}) of {rec.length} bytes, not {size}")
            if rec.rtype == CKPT_BEGIN:
                pending = []
            elif rec.rtype == CKPT_IMAGE and pending is not None:
                at = rec.payload_at
                pending.append((_PID.unpack_from(data, at)[0], at + _PID.size))
            elif rec.rtype == CKPT_END and pending is not None:
                if _PID.unpack_from(data, rec.payload_at)[0] == len(pending):
                    self.images = pending
                    start = i + 1
                pending = None
        self._check_images(data)
        self.commits = [r for r in records[start:] if r.rtype == COMMIT]
        self.ops = [decode_ops(bytes(data[r.payload_at : r.payload_at + r.length])) for r in self.commits]

    def _check_images(self, data: bytes | memoryview) -> None:
        if not self.images:
            return
        pages = None
        for pid, at in self.images:
            image = data[at : at + PAGE_SIZE]
            if not verify(image):
                raise CorruptionError(f"log: checkpoint image of page {pid} fails its checksum")
            if pid == 0:
                try:
                    pages = decode_meta(image).page_count
                except NotADatabaseError as exc:
                    raise CorruptionError(f"log: checkpoint image of the metadata page: {exc}") from exc
        if pages is None:
            raise CorruptionError("log: a checkpoint without the metadata page's image")
        if any(pid >= pages for pid, _ in self.images):
            raise CorruptionError(f"log: checkpoint images past the {pages} pages of its metadata")


# -- the log ---------------------------------------------------------------------

class Wal:
    """The log file: appends, group commit, spills, checkpoints, recovery scan."""

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
        staging[:HEADER_BYTES] = _header(base_lsn)
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
            tail += _record(lsn, durable, rtype, payload)
        n = len(tail)
        padded = -(-n // SECTOR) * SECTOR
        if start + padded > self._zeroed and self.sync_mode == "full":
            self._preallocate(start + padded)
        staging = self._stage(padded)
        staging[:n] = tail
        staging[n:padded] = bytes(padded - n)
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
            _, offset = self._append(SPILL, _PID.pack(page_id) + bytes(buf))
            self.spilled[page_id] = offset + _REC.size + _PID.size

    def spill_many(self, pages: list[tuple[int, bytes | memoryview]]) -> None:
        """`spill` of many pages, up to 256 to a write (a bulk load's pages
        that the pool has no room for)."""
        skip = _REC.size + _PID.size
        for i in range(0, len(pages), _IMAGES_PER_WRITE):
            chunk = pages[i : i + _IMAGES_PER_WRITE]
            payloads = [_PID.pack(pid) + bytes(image) for pid, image in chunk]
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
            self._append(CKPT_BEGIN, _PID.pack(n_images))

    def checkpoint_image(self, page_id: int, image: bytes | memoryview) -> int:
        """Append one image; returns the log offset of the page bytes."""
        return self.checkpoint_images([(page_id, image)])[0]

    def checkpoint_images(self, images: list[tuple[int, bytes | memoryview]]) -> list[int]:
        """Append images, many to a write; returns the log offset of each
        one's page bytes."""
        out: list[int] = []
        skip = _REC.size + _PID.size
        for i in range(0, len(images), _IMAGES_PER_WRITE):
            payloads = [_PID.pack(pid) + bytes(image) for pid, image in images[i : i + _IMAGES_PER_WRITE]]
            with self._mutex:
                out += [offset + skip for offset in self._append_records(CKPT_IMAGE, payloads)]
        return out

    def checkpoint_end(self, n_images: int, durable: bool) -> None:
        with self._mutex:
            self._append(CKPT_END, _PID.pack(n_images))
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

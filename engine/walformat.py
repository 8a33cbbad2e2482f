"""The log's byte format, sans I/O: records, the header, commit payloads,
the recovery scan and the recovery plan (bytes in, records and page images
out). `engine/wal.py` writes and reads the file and holds the numbered rules
this format serves (rules 5, 5a and 7 shape the scan).

Log header (the first 512-byte sector; zeros after its 20 bytes)::

    offset size field     why this width
    0      8    magic     b"DRGNWAL1": tells a DragonDB log from any other file
    8      8    base_lsn  u64: the LSN before the first record (rule 5); never wraps
    16     4    crc32     zlib CRC-32 of bytes 0..15

Record (from offset 512; one after another, or at the next sector after a
sync, rule 7)::

    offset size field     why this width
    0      4    length    u32: payload bytes (a page image plus its id, or a commit)
    4      4    crc32     zlib CRC-32 of bytes 8..24 and the payload
    8      8    lsn       u64: consecutive from base_lsn + 1 (rule 5)
    16     8    durable   u64: the durable LSN when it was appended (rule 5a)
    24     1    type      COMMIT=1 SPILL=2 CKPT_BEGIN=3 CKPT_IMAGE=4 CKPT_END=5
    25     -    payload   `length` bytes

Payloads: SPILL and CKPT_IMAGE hold page_id u32 | the 4096-byte page;
CKPT_BEGIN and CKPT_END an image count u32. A COMMIT holds its operations,
one after another::

    op u8 | name_len u8 | tree name (UTF-8, 1..255 bytes) | then by op:
    OP_PUT=1     klen u32 | key | vlen u32 | value
    OP_DELETE=2  klen u32 | key
    OP_CREATE=3, OP_DROP=4   nothing more
    OP_LOAD=5    count u32 | key lengths u32 * count | value lengths u32 * count | keys | values
"""

from __future__ import annotations

import struct
import zlib

from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_SIZE, verify
from engine.disk import SECTOR
from engine.errors import CorruptionError, NotADatabaseError
from engine.metapage import decode_meta

__all__ = [
    "HEADER_BYTES", "HEADER_USED", "RECORD_HEAD", "PAGE_ID", "Record", "RecoveryPlan",
    "encode_header", "decode_header", "encode_record", "check_record", "encode_op", "encode_ops",
    "decode_ops", "scan", "first_record",
    "COMMIT", "SPILL", "CKPT_BEGIN", "CKPT_IMAGE", "CKPT_END",
    "OP_PUT", "OP_DELETE", "OP_CREATE", "OP_DROP", "OP_LOAD",
]

HEADER_BYTES = SECTOR  # the header owns the first sector, so records start aligned
_MAGIC = b"DRGNWAL1"
_HDR = struct.Struct("<8sQI")
HEADER_USED = _HDR.size  # 20: the header's bytes before its zeros
RECORD_HEAD = struct.Struct("<IIQQB")  # 25 bytes
_REC_BODY = struct.Struct("<QQB")  # the CRC'd part of the record header
_LSN_BYTES = struct.Struct("<Q")
PAGE_ID = struct.Struct("<I")  # starts a spill or image payload; a checkpoint record's count

COMMIT, SPILL, CKPT_BEGIN, CKPT_IMAGE, CKPT_END = 1, 2, 3, 4, 5
OP_PUT, OP_DELETE, OP_CREATE, OP_DROP = 1, 2, 3, 4
# OP_LOAD (a bulk load of an empty tree): its "key" is None and its "value" the
# (keys, values) lists; stored as count u32 | key lengths u32* | value
# lengths u32* | keys | values (arrays, so 100k items pack in a few C calls)
OP_LOAD = 5
_OPS = frozenset((OP_PUT, OP_DELETE, OP_CREATE, OP_DROP, OP_LOAD))
_OP_HEAD = struct.Struct("<BB")
_LEN = struct.Struct("<I")


# -- commit payloads -------------------------------------------------------------

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


# -- records and the header ----------------------------------------------------

def encode_record(lsn: int, durable: int, rtype: int, payload: bytes | memoryview) -> bytes:
    """One record: its 25-byte head (length, CRC, LSN, durable LSN, type) and payload."""
    body = _REC_BODY.pack(lsn, durable, rtype)
    crc = zlib.crc32(payload, zlib.crc32(body))
    return b"".join((struct.pack("<II", len(payload), crc), body, payload))


def encode_header(base_lsn: int) -> bytes:
    """The log's first sector: magic, `base_lsn`, CRC, then zeros."""
    raw = _MAGIC + struct.pack("<Q", base_lsn)
    return (raw + struct.pack("<I", zlib.crc32(raw))).ljust(HEADER_BYTES, b"\0")


def decode_header(data: bytes | bytearray | memoryview) -> int | None:
    """The base LSN of a header, None when its magic or checksum fails."""
    if len(data) < _HDR.size:
        return None
    magic, base, crc = _HDR.unpack_from(data, 0)
    return base if magic == _MAGIC and zlib.crc32(bytes(data[:16])) == crc else None


class Record:
    """Where a valid record lies in the scanned bytes, and its LSN and type."""

    __slots__ = ("lsn", "rtype", "pos", "length")

    def __init__(self, lsn: int, rtype: int, pos: int, length: int) -> None:
        self.lsn, self.rtype, self.pos, self.length = lsn, rtype, pos, length

    @property
    def payload_at(self) -> int:
        return self.pos + RECORD_HEAD.size


def _valid_at(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int] | None:
    """(length, lsn, durable, type) of a record whose checksum holds at `pos`."""
    if pos < HEADER_BYTES:
        return None
    return check_record(data, pos)


def check_record(data: bytes | memoryview, pos: int) -> tuple[int, int, int, int] | None:
    """(length, lsn, durable, type) of a whole record at `pos` whose checksum
    holds, wherever `data` starts (a follower's window of the file)."""
    if pos + RECORD_HEAD.size > len(data):
        return None
    length, crc, lsn, durable, rtype = RECORD_HEAD.unpack_from(data, pos)
    end = pos + RECORD_HEAD.size + length
    if end > len(data) or zlib.crc32(data[pos + RECORD_HEAD.size : end], zlib.crc32(data[pos + 8 : pos + RECORD_HEAD.size])) != crc:
        return None
    return length, lsn, durable, rtype


# -- the recovery scan (rules 5, 5a and 7) ----------------------------------------

def scan(data: bytes | memoryview) -> tuple[int | None, list[Record], int]:
    """(base_lsn or None when the header is invalid, valid records, end offset).

    Raises `CorruptionError` when a record that was already durable is
    damaged (rule 5a); a torn or unsynced tail just ends the scan.
    """
    base = decode_header(data)
    if base is None:
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
        pos += RECORD_HEAD.size + length
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
            at += RECORD_HEAD.size + length
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


# -- the recovery plan (rules 3 and 4) --------------------------------------------

_SIZES = {CKPT_BEGIN: PAGE_ID.size, CKPT_IMAGE: PAGE_ID.size + PAGE_SIZE, CKPT_END: PAGE_ID.size}


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
                pending.append((PAGE_ID.unpack_from(data, at)[0], at + PAGE_ID.size))
            elif rec.rtype == CKPT_END and pending is not None:
                if PAGE_ID.unpack_from(data, rec.payload_at)[0] == len(pending):
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


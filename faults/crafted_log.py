"""Crafted log records: a valid log's commit records given keys, values,
tree names or op codes no engine writes, or checkpoint records of impossible
size or target appended, every checksum valid (`mutate_log`), for the trials
of `faults.crafted`.

The fault layer imports no engine internals, so the log's format is restated
here from `engine/walformat.py` (little-endian):

The log ("<path>-wal"): a 512-byte header (magic "DRGNWAL1" | base_lsn u64 |
crc32 u32 of the 16 bytes before it), then records `length u32 | crc32 u32 |
lsn u64 | durable_lsn u64 | type u8 | payload`, the CRC over lsn..payload
(`crc32(payload, crc32(bytes 8..24 of the record))`), LSNs consecutive from
base_lsn + 1. Types: COMMIT 1, SPILL 2, CKPT_BEGIN 3 (u32 image count),
CKPT_IMAGE 4 (page id u32 + page), CKPT_END 5 (u32 image count). A commit's
payload is a sequence of `op u8 | name_len u8 | name | (put, delete: klen u32
| key) | (put: vlen u32 | value)` with ops PUT 1, DELETE 2, CREATE 3, DROP 4.
"""

from __future__ import annotations

import random
import struct
import zlib

from faults.crafted_pages import KEY_LENGTHS, PAGE

__all__ = ["mutate_log", "LOG_HEADER"]

COMMIT, CKPT_BEGIN, CKPT_IMAGE, CKPT_END = 1, 3, 4, 5
OP_PUT, OP_DELETE, OP_CREATE, OP_DROP = 1, 2, 3, 4
LOG_HEADER = 512
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_REC = struct.Struct("<IIQQB")  # 25-byte record header


def _records(log: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(base LSN, [(type, payload)]) of the valid records, stepping over the
    zeros a sync leaves before the next sector as the engine's scan does."""
    base = _U64.unpack_from(log, 8)[0]
    out, pos, expect = [], LOG_HEADER, base + 1
    while True:
        rec = _valid(log, pos, expect)
        if rec is None and pos % 512:
            pos += 512 - pos % 512
            rec = _valid(log, pos, expect)
        if rec is None:
            return base, out
        out.append(rec)
        pos += _REC.size + len(rec[1])
        expect += 1


def _valid(log: bytes, pos: int, expect: int) -> tuple[int, bytes] | None:
    if pos + _REC.size > len(log):
        return None
    length, crc, lsn, _, rtype = _REC.unpack_from(log, pos)
    payload = log[pos + _REC.size : pos + _REC.size + length]
    if lsn != expect or len(payload) != length or zlib.crc32(payload, zlib.crc32(log[pos + 8 : pos + 25])) != crc:
        return None
    return rtype, payload


def _log(base: int, records: list[tuple[int, bytes]], header: bytes) -> bytes:
    out = bytearray(header[:LOG_HEADER])
    for i, (rtype, payload) in enumerate(records):
        body = struct.pack("<QQB", base + 1 + i, base + i, rtype)
        out += struct.pack("<II", len(payload), zlib.crc32(payload, zlib.crc32(body))) + body + payload
    return bytes(out)


def _ops(payload: bytes) -> list[list]:
    """[op, name, key, value] of a commit payload (well formed: the engine wrote it)."""
    out, pos = [], 0
    while pos < len(payload):
        op, ln = payload[pos], payload[pos + 1]
        name, pos = payload[pos + 2 : pos + 2 + ln], pos + 2 + ln
        key = value = None
        if op in (OP_PUT, OP_DELETE):
            kl = _U32.unpack_from(payload, pos)[0]
            key, pos = payload[pos + 4 : pos + 4 + kl], pos + 4 + kl
        if op == OP_PUT:
            vl = _U32.unpack_from(payload, pos)[0]
            value, pos = payload[pos + 4 : pos + 4 + vl], pos + 4 + vl
        out.append([op, name, key, value])
    return out


def _encode(ops: list[list], op_codes: dict[int, int] | None = None) -> bytes:
    parts = []
    for i, (op, name, key, value) in enumerate(ops):
        parts.append(bytes([(op_codes or {}).get(i, op), len(name) & 0xFF]) + name)
        if key is not None:
            parts.append(_U32.pack(len(key)) + key)
        if value is not None:
            parts.append(_U32.pack(len(value)) + value)
    return b"".join(parts)


def mutate_log(rng: random.Random, data: bytes, log: bytes) -> tuple[bytes, str]:
    base, records = _records(log)
    commits = [i for i, (rtype, _) in enumerate(records) if rtype == COMMIT]
    what = rng.choice(["key", "key", "value", "name", "op", "checkpoint"] if commits else ["checkpoint"])
    if what == "checkpoint":  # checkpoint records of impossible size or target after the commits
        meta = data[:PAGE]
        count = _U32.unpack_from(meta, 48)[0]
        pid = rng.choice([count, count + 7, 2**32 - 1, 1])
        image = rng.choice([data[PAGE : 2 * PAGE], data[PAGE : PAGE + 10], bytes(PAGE)])
        n = rng.choice([1, 2])
        begin = _U32.pack(2) if rng.random() < 0.8 else b""
        end = _U32.pack(n) if rng.random() < 0.8 else b""
        records += [(CKPT_BEGIN, begin), (CKPT_IMAGE, _U32.pack(0) + meta), (CKPT_IMAGE, _U32.pack(pid) + image),
                    (CKPT_END, end)]
        return _log(base, records, log), f"checkpoint image of page {pid} ({len(image)} bytes), end {end.hex()}"
    i = rng.choice(commits)
    ops = _ops(records[i][1])
    j = rng.randrange(len(ops))
    op = ops[j]
    codes = None
    if what == "key" and op[2] is not None:
        size = rng.choice(KEY_LENGTHS)
        op[2] = (op[2] * (size // max(len(op[2]), 1) + 1))[:size]
        detail = f"key of {size} bytes"
    elif what == "value" and op[3] is not None:  # a length field that lies, past the payload's end
        payload = _encode(ops)
        lie = rng.choice([2**31, 2**32 - 1, len(op[3]) + 1])
        at = len(_encode(ops[: j + 1])) - len(op[3]) - 4
        records[i] = (COMMIT, payload[:at] + _U32.pack(lie) + payload[at + 4 :])
        return _log(base, records, log), f"record {i} op {j}: value length field = {lie}"
    elif what == "name":
        op[1] = rng.choice([b"", b"\xff\xfe", b"n" * 255])
        detail = f"tree name {op[1][:8]!r} ({len(op[1])} bytes)"
    else:
        codes = {j: rng.choice([0, 5, 255])}
        detail = f"op code {codes[j]}"
    records[i] = (COMMIT, _encode(ops, codes))
    return _log(base, records, log), f"record {i} op {j}: {detail}"

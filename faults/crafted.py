"""Crafted files: pages and log records whose checksums hold over contents
no engine writes.

A bit flip is caught by a checksum; a crafted file is not. `run_trial(seed,
directory)` takes a small valid database, picks a page (or a log record),
sets decoded fields to extreme or inconsistent values (lengths, counts,
next pointers, child ids, key sizes), re-seals it with a valid checksum,
opens it and runs get / scan / reverse scan / len / first / last / check /
put / close under a time bound. The engine must answer with an engine error
(`CorruptionError`, `NotADatabaseError`, or `NeedsRecoveryError` after a
rollback that could not re-read a page) or with consistent results; never a
hang, an exception outside its hierarchy, or a key outside
1..MAX_KEY_SIZE. An open that refuses the files must leave them byte for
byte as they were.

The fault layer imports no engine internals, so the formats it crafts are
restated here from `engine/codec.py`, `engine/metapage.py` and `engine/walformat.py`
(little-endian):

Every data page is 4096 bytes; a 32-byte header::

    0 crc32 u32 (zlib CRC-32 of bytes 4..4095)   4 page_type u8 (META 1, LEAF 2,
    INTERNAL 3, OVERFLOW 4, FREELIST 5)   5 flags u8   6 slot_count u16
    8 free_start u16   10 free_end u16   12 garbage u16   14 reserved u16
    16 lsn u64   24 next u32   28 prev u32

- leaf / internal: u16 slot offsets from byte 32, in key order; cells
  `klen u16 | kind u8 | vlen u32 | key | value (kind 0) or first overflow
  page u32 (kind 1)` (leaf; next/prev are the siblings) and
  `klen u16 | child u32 | key` (internal; prev is child 0);
- overflow: free_start = payload bytes (<= 4064) from byte 32, next = the
  next page of the chain (0 ends it);
- free-list trunk: slot_count = ids held, u32 ids from byte 32, next = the
  next trunk;
- metadata (page 0) from byte 32: magic "DRAGONDB" | version u32 |
  page_size u32 | page_count u32 | freelist_head u32 | free_count u32 |
  tree_count u16 | reserved u16 | checkpoint_lsn u64 | from byte 72 the
  trees: name_len u8 | name | root u32 | count u64.

The log ("<path>-wal"): a 512-byte header (magic "DRGNWAL1" | base_lsn u64 |
crc32 u32 of the 16 bytes before it), then records `length u32 | crc32 u32 |
lsn u64 | durable_lsn u64 | type u8 | payload`, the CRC over lsn..payload
(`crc32(payload, crc32(bytes 8..24 of the record))`), LSNs consecutive from
base_lsn + 1. Types: COMMIT 1, SPILL 2, CKPT_BEGIN 3 (u32 image count),
CKPT_IMAGE 4 (page id u32 + page), CKPT_END 5 (u32 image count). A commit's
payload is a sequence of `op u8 | name_len u8 | name | (put, delete: klen u32
| key) | (put: vlen u32 | value)` with ops PUT 1, DELETE 2, CREATE 3, DROP 4.

Hangs are caught with SIGALRM when trials run on the main thread (a pure
Python loop is interrupted; the timer of pytest-timeout, if any, is put
back afterwards); elsewhere no deadline applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import struct
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator

import engine
from engine.errors import CorruptionError, NeedsRecoveryError, NotADatabaseError

__all__ = ["run_trial", "ALLOWED", "BUDGET"]

PAGE = 4096
META, LEAF, INTERNAL, OVERFLOW, FREELIST = 1, 2, 3, 4, 5
COMMIT, CKPT_BEGIN, CKPT_IMAGE, CKPT_END = 1, 3, 4, 5
OP_PUT, OP_DELETE, OP_CREATE, OP_DROP = 1, 2, 3, 4
LOG_HEADER = 512
MAX_KEY = engine.MAX_KEY_SIZE
ALLOWED = (CorruptionError, NotADatabaseError, NeedsRecoveryError)  # what a crafted file may raise
BUDGET = 5.0  # seconds per trial before it counts as a hang

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_REC = struct.Struct("<IIQQB")  # 25-byte record header
_LENGTHS = (0, 0, 1, 1024, 1025, 2000, 4064, 4065, 5000, 65535, 2**31, 2**32 - 1)
_KEY_LENGTHS = (0, 1, 1024, 1025, 2000, 5000)


class _Hang(BaseException):
    """Raised by the deadline's signal handler (a BaseException, so no
    `except Exception` in the engine swallows it)."""


# -- the base database -------------------------------------------------------------------------

_BASES: dict[str, tuple[tuple[bytes, bytes], tuple[bytes, bytes]]] = {}


def _key(i: int) -> bytes:
    return b"k%05d-" % i + b"p" * (i * 37 % 300)  # long keys: a few hundred make three levels


def _base(directory: str) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """(data, log) of two small databases, built once per directory: one
    closed cleanly (its log just a header), one with commit records to
    replay. Trees "a" (three levels, overflow chains of one and two pages,
    a free list), "b" and, in the log, "c"."""
    if directory in _BASES:
        return _BASES[directory]
    path = os.path.join(directory, "base.db")
    for p in (path, path + "-wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
    with engine.open(path, sync="off") as db:
        a, b = db.tree("a"), db.tree("b")
        for i in range(700):
            a.put(_key(i), b"%d" % i * (700 if i % 40 == 0 else 1) + b"." * (i % 60))
        for i in range(0, 700, 5):
            a.delete(_key(i))
        for i in range(30):
            b.put(b"b%03d" % i, b"v" * (5000 if i == 7 else i))
    closed = _files(path)
    db = engine.open(path, sync="full")
    try:
        a, c = db.tree("a"), db.tree("c")
        for i in range(12):
            a.put(_key(1000 + i), b"new" * (i + 1))
            c.put(b"c%02d" % i, b"w" * (3000 if i == 3 else i))
        a.delete(_key(1))
        logged = _files(path)  # what a crash now would leave: every commit in the log only
    finally:
        db.close()
    _BASES[directory] = (closed, logged)
    return closed, logged


def _files(path: str) -> tuple[bytes, bytes]:
    with open(path, "rb") as f, open(path + "-wal", "rb") as g:
        return f.read(), g.read()


# -- pages ----------------------------------------------------------------------------------------

def _seal(page: bytearray) -> None:
    _U32.pack_into(page, 0, zlib.crc32(page[4:PAGE]))


class _Pages:
    """The data file as pages, with what a mutation needs to aim: the live
    pages of each type (free pages excluded) and a few notable ids."""

    def __init__(self, data: bytes) -> None:
        self.pages = [bytearray(data[i : i + PAGE]) for i in range(0, len(data) - PAGE + 1, PAGE)]
        meta = self.pages[0]
        self.count = _U32.unpack_from(meta, 48)[0]
        free = set()
        pid = _U32.unpack_from(meta, 52)[0]
        while pid and pid not in free and pid < len(self.pages):
            free.add(pid)
            n = min(_U16.unpack_from(self.pages[pid], 6)[0], 1016)
            free.update(struct.unpack_from(f"<{n}I", self.pages[pid], 32))
            pid = _U32.unpack_from(self.pages[pid], 24)[0]
        self.free = sorted(free)
        self.by_type: dict[int, list[int]] = {}
        for pid in range(1, min(self.count, len(self.pages))):
            if pid not in free:
                self.by_type.setdefault(self.pages[pid][4], []).append(pid)
        self.roots = [root for _, root, _ in self.trees()]
        if self.free:
            self.by_type[FREELIST] = [p for p in self.free if self.pages[p][4] == FREELIST]

    def trees(self) -> list[tuple[int, int, int]]:
        """(offset of the entry, root, count) per tree of the metadata page."""
        meta, out, pos = self.pages[0], [], 72
        for _ in range(_U16.unpack_from(meta, 60)[0]):
            ln = meta[pos]
            root, count = struct.unpack_from("<IQ", meta, pos + 1 + ln)
            out.append((pos, root, count))
            pos += 1 + ln + 12
        return out

    def data(self) -> bytes:
        return b"".join(self.pages)


def _page_ids(rng: random.Random, pages: _Pages, pid: int) -> int:
    """An extreme or inconsistent page id to link to from page `pid`."""
    others = [p for ids in pages.by_type.values() for p in ids]
    return rng.choice([
        0, pid, pid, rng.choice(pages.roots or [0]), rng.choice(others or [0]),
        rng.choice(pages.free or [0]), pages.count - 1, pages.count, pages.count + 1, 2**32 - 1,
    ])


def _cells(page: bytearray, leaf: bool) -> list[tuple[bytes, int, int, bytes]]:
    """(key, kind or child, vlen, rest) per slot, for a re-layout."""
    out = []
    for i in range(_U16.unpack_from(page, 6)[0]):
        off = _U16.unpack_from(page, 32 + 2 * i)[0]
        if leaf:
            klen, kind, vlen = struct.unpack_from("<HBI", page, off)
            key = bytes(page[off + 7 : off + 7 + klen])
            rest = bytes(page[off + 7 + klen : off + 7 + klen + (vlen if kind == 0 else 4)])
            out.append((key, kind, vlen, rest))
        else:
            klen, child = struct.unpack_from("<HI", page, off)
            out.append((bytes(page[off + 6 : off + 6 + klen]), child, 0, b""))
    return out


def _layout(page: bytearray, cells: list, leaf: bool) -> None:
    """Write `cells` packed at the page's end, dropping from the end what does not fit."""
    while True:
        body = [struct.pack("<HBI", len(k), kind, vlen) + k + rest if leaf else struct.pack("<HI", len(k), kind) + k
                for k, kind, vlen, rest in cells]
        size = sum(map(len, body))
        if 32 + 2 * len(cells) + size <= PAGE or not cells:
            break
        cells = cells[:-1]
    pos = PAGE
    page[32:PAGE] = bytes(PAGE - 32)
    for i, cell in enumerate(body):
        pos -= len(cell)
        page[pos : pos + len(cell)] = cell
        _U16.pack_into(page, 32 + 2 * i, pos)
    struct.pack_into("<HHHH", page, 6, len(cells), 32 + 2 * len(cells), pos, 0)


def _mutate_node(rng: random.Random, pages: _Pages, pid: int) -> str:
    page = pages.pages[pid]
    leaf = page[4] == LEAF
    n = _U16.unpack_from(page, 6)[0]
    what = rng.choice(["link", "link", "cell-field", "key-size", "key-size", "count", "order", "value-size"]
                      if leaf else ["link", "link", "child", "child", "key-size", "count", "order"])
    if what == "link":  # leaf: next or prev; internal: child 0
        at = rng.choice([24, 28]) if leaf else 28
        value = _page_ids(rng, pages, pid)
        _U32.pack_into(page, at, value)
        return f"link at {at} = {value}"
    if what == "count":
        value = rng.choice([0, n + 1, n * 2, 2032, 65535])
        free_start = (32 + 2 * value) & 0xFFFF if rng.random() < 0.5 else _U16.unpack_from(page, 8)[0]
        struct.pack_into("<HH", page, 6, value, free_start)
        return f"slot_count = {value}"
    if not n:
        page[4] = rng.choice([META, OVERFLOW, FREELIST, 0, 255])
        return f"type of an empty node = {page[4]}"
    i = rng.randrange(n)
    off = _U16.unpack_from(page, 32 + 2 * i)[0]
    if what == "child":
        value = _page_ids(rng, pages, pid)
        _U32.pack_into(page, off + 2, value)
        return f"child of slot {i} = {value}"
    if what == "cell-field":  # the lengths and kind a cell's header claims, bytes unmoved
        field = rng.choice([(0, "<H", "klen"), (2, "<B", "kind"), (3, "<I", "vlen")])
        at, fmt, name = field
        value = rng.choice(_LENGTHS) & {"<H": 0xFFFF, "<B": 0xFF, "<I": 0xFFFFFFFF}[fmt]
        struct.pack_into(fmt, page, off + at, value)
        return f"slot {i} {name} = {value}"
    if what == "order":
        j = rng.randrange(n)
        a, b = _U16.unpack_from(page, 32 + 2 * i)[0], _U16.unpack_from(page, 32 + 2 * j)[0]
        _U16.pack_into(page, 32 + 2 * i, b)
        _U16.pack_into(page, 32 + 2 * j, a)
        return f"slots {i} and {j} swapped"
    cells = _cells(page, leaf)
    key, kind, vlen, rest = cells[i]
    if what == "key-size":  # a well-framed cell whose key has an impossible size
        size = rng.choice(_KEY_LENGTHS)
        cells[i] = ((key * (size // max(len(key), 1) + 1))[:size], kind, vlen, rest)
        _layout(page, cells, leaf)
        return f"slot {i} key of {size} bytes"
    size = rng.choice([1346, 2000, 4000, 0])  # value-size: an inline value no leaf holds, or an empty overflow
    cells[i] = (key, 0 if size else 1, size, bytes(size) if size else _U32.pack(_page_ids(rng, pages, pid)))
    _layout(page, cells, leaf)
    return f"slot {i} value of {size} bytes inline" if size else f"slot {i} overflow of 0 bytes"


def _mutate_overflow(rng: random.Random, pages: _Pages, pid: int) -> str:
    page = pages.pages[pid]
    length = rng.choice([None, 0, 0, 0, 1, 4063, 4064, 4065, 65535])
    nxt = rng.choice([None, pid, pid, 0, _page_ids(rng, pages, pid)])
    if length is not None:
        _U16.pack_into(page, 8, length)
    if nxt is not None:
        _U32.pack_into(page, 24, nxt)
    return f"overflow payload length = {length}, next = {nxt}"


def _mutate_freelist(rng: random.Random, pages: _Pages, pid: int) -> str:
    page = pages.pages[pid]
    what = rng.choice(["count", "next", "id"])
    if what == "count":
        value = rng.choice([0, 1017, 65535])
        _U16.pack_into(page, 6, value)
    elif what == "next":
        value = _page_ids(rng, pages, pid)
        _U32.pack_into(page, 24, value)
    else:
        value = _page_ids(rng, pages, pid)
        _U32.pack_into(page, 32 + 4 * rng.randrange(max(1, _U16.unpack_from(page, 6)[0])), value)
    return f"free-list {what} = {value}"


def _mutate_meta(rng: random.Random, pages: _Pages) -> str:
    page = pages.pages[0]
    trees = pages.trees()
    what = rng.choice(["page_count", "freelist_head", "free_count", "tree_count", "root", "root", "count",
                       "name"] if trees else ["page_count", "freelist_head", "free_count", "tree_count"])
    if what in ("page_count", "freelist_head", "free_count"):
        at = {"page_count": 48, "freelist_head": 52, "free_count": 56}[what]
        value = rng.choice([0, 1, pages.count - 1, pages.count, pages.count + 1, 2**31, 2**32 - 1,
                            rng.choice(pages.roots or [0])])
        _U32.pack_into(page, at, value)
    elif what == "tree_count":
        value = rng.choice([0, len(trees) + 1, 300, 65535])
        _U16.pack_into(page, 60, value)
    else:
        pos, root, count = rng.choice(trees)
        ln = page[pos]
        if what == "root":
            value = _page_ids(rng, pages, root)
            _U32.pack_into(page, pos + 1 + ln, value)
        elif what == "count":
            value = rng.choice([0, count + 1, 2**31, 2**63, 2**64 - 1])
            _U64.pack_into(page, pos + 1 + ln + 4, value)
        else:
            value = rng.choice([0, 255, ln + 1])
            page[pos] = value
    return f"metadata {what} = {value}"


def _mutate_page(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    pages = _Pages(data)
    kinds = [k for k, w in ((META, 1), (LEAF, 2), (INTERNAL, 2), (OVERFLOW, 2), (FREELIST, 1))
             for _ in range(w) if k == META or pages.by_type.get(k)]
    kind = rng.choice(kinds)
    pid = 0 if kind == META else rng.choice(pages.by_type[kind])
    if rng.random() < 0.05:  # another page type under a valid checksum
        pages.pages[pid][4] = rng.choice([t for t in (META, LEAF, INTERNAL, OVERFLOW, FREELIST, 0) if t != kind])
        what = f"type = {pages.pages[pid][4]}"
    elif kind == META:
        what = _mutate_meta(rng, pages)
    elif kind == OVERFLOW:
        what = _mutate_overflow(rng, pages, pid)
    elif kind == FREELIST:
        what = _mutate_freelist(rng, pages, pid)
    else:
        what = _mutate_node(rng, pages, pid)
    _seal(pages.pages[pid])
    return pages.data(), f"page {pid} (type {kind}): {what}"


# -- log records ----------------------------------------------------------------------------------

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


def _mutate_log(rng: random.Random, data: bytes, log: bytes) -> tuple[bytes, str]:
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
        size = rng.choice(_KEY_LENGTHS)
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


# -- running a trial --------------------------------------------------------------------------------

@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise `_Hang` after `seconds` (main thread only; elsewhere no bound)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Hang

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, expire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:  # someone else's timer (pytest-timeout): resume it
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 0.001), old_interval)


class _Failure(Exception):
    pass


def _step(name: str, fn: Callable[[], object]) -> object:
    """Run one operation: its result, or None after an allowed engine error."""
    try:
        return fn()
    except ALLOWED:
        return None
    except _Hang:
        raise _Failure(f"hang (over {BUDGET} s) in {name}") from None
    except Exception as exc:  # noqa: BLE001 - the finding: an exception outside the engine's errors
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        raise _Failure(f"{name} raised {type(exc).__name__}: {exc}\n{tail}") from exc


def _keys_ok(name: str, items, descending: bool = False) -> None:
    if items is None:
        return
    keys = [k for k, _ in items]
    bad = [k for k in keys if type(k) is not bytes or not 1 <= len(k) <= MAX_KEY]
    if bad:
        raise _Failure(f"{name} returned a key of {len(bad[0])} bytes")
    if any((a <= b) if descending else (a >= b) for a, b in zip(keys, keys[1:], strict=False)):
        raise _Failure(f"{name} returned keys out of order")


def _read_tree(db, name: str):
    """Scan both ways, len, first/last and sampled gets of tree `name`:
    (items, reversed items, len), or None where the tree did not open."""
    t = _step("tree", lambda: db.tree(name, create=False))
    if t is None:
        return None
    items = _step(f"scan {name}", lambda: list(t.scan()))
    _keys_ok(f"scan {name}", items)
    back = _step(f"reverse scan {name}", lambda: list(t.scan(reverse=True)))
    _keys_ok(f"reverse scan {name}", back, descending=True)
    n = _step(f"len {name}", lambda: len(t))
    if n is not None and (type(n) is not int or n < 0):
        raise _Failure(f"len {name} = {n!r}")
    for edge in ("first", "last"):
        got = _step(f"{edge} {name}", getattr(t, edge))
        _keys_ok(f"{edge} {name}", [got] if got else [])
    for k, _ in (items or [])[:: max(1, len(items or []) // 20)]:
        _step(f"get {name}", lambda k=k: t.get(k))
    return items, back, n


def _agree_when_checked(db, contents: dict) -> None:
    """A file check() passes must read consistently: scans both ways, len and gets agree."""
    report = _step("check", db.check)
    if report is None or not report.ok:
        return
    for name, (items, back, n) in contents.items():
        if items is not None and back is not None and (back[::-1] != items or n != len(items)):
            raise _Failure(f"tree {name}: check() passes but scans or len disagree")
        t = db.tree(name, create=False)
        for k, v in items or []:
            if _step(f"get {name}", lambda t=t, k=k: t.get(k)) not in (v, None):
                raise _Failure(f"tree {name}: check() passes but get({k[:16]!r}) differs from the scan")


def _write_some(db, names: list[str]) -> None:
    """A small and a large put into each tree; what a put stored reads back."""
    for name in names:
        t = db.tree(name, create=False)
        for key, value in ((b"crafted-small", b"x" * 10), (b"crafted-large", b"y" * 9000)):
            if _step(f"put {name}", lambda t=t, k=key, v=value: t.put(k, v) or True):
                got = _step(f"get {name}", lambda t=t, k=key: t.get(k))
                if got is not None and got != value:
                    raise _Failure(f"tree {name}: a put then get returned other bytes")


def _exercise(db) -> None:
    """Every read, check(), a small and a large put, then close (skipped
    after a hang: the interrupted call may still hold a latch)."""
    hung = False
    try:
        contents = {}
        for name in db.trees():
            got = _read_tree(db, name)
            if got is not None:
                contents[name] = got
        _agree_when_checked(db, contents)
        _write_some(db, list(contents)[:2])
    except _Failure as exc:
        hung = str(exc).startswith("hang")
        raise
    finally:
        if not hung:
            _step("close", db.close)


def _digest(path: str) -> tuple[str, ...]:
    out = []
    for p in (path, path + "-wal"):
        with open(p, "rb") as f:
            out.append(hashlib.sha256(f.read()).hexdigest())
    return tuple(out)


def run_trial(seed: int, directory: str | os.PathLike[str]) -> tuple[bool, str]:
    """One crafted file, opened and used under a time bound: (ok, detail).
    `directory` holds the base databases (built on first use) and the
    trial's files, removed after a trial that passes; a failing trial keeps
    them for replay (`run_trial(seed, directory)` again)."""
    directory = os.fspath(directory)
    closed, logged = _base(directory)
    rng = random.Random(seed)
    data, log = logged if rng.random() < 0.5 else closed
    if rng.random() < 0.3 and log[LOG_HEADER:].strip(b"\0"):
        log, what = _mutate_log(rng, data, log)
    else:
        data, what = _mutate_page(rng, data)
    trial = os.path.join(directory, f"trial-{seed}")
    os.makedirs(trial, exist_ok=True)
    path = os.path.join(trial, "crafted.db")
    with open(path, "wb") as f:
        f.write(data)
    with open(path + "-wal", "wb") as f:
        f.write(log)
    detail = f"seed {seed}: {what}"
    before = _digest(path)
    try:
        with _deadline(BUDGET):
            try:
                db = engine.open(path, create=False, sync="off")
            except ALLOWED as exc:
                if _digest(path) != before:
                    return False, f"{detail}: a refused open ({type(exc).__name__}) changed the files"
                shutil.rmtree(trial, ignore_errors=True)
                return True, f"{detail}: open refused ({type(exc).__name__})"
            except _Hang:
                return False, f"{detail}: hang (over {BUDGET} s) in open"
            except Exception as exc:  # noqa: BLE001 - the finding
                return False, f"{detail}: open raised {type(exc).__name__}: {exc}"
            _exercise(db)
    except _Failure as exc:
        return False, f"{detail}: {exc}"
    except _Hang:  # the bound ran out between steps
        return False, f"{detail}: hang (over {BUDGET} s)"
    shutil.rmtree(trial, ignore_errors=True)
    return True, detail

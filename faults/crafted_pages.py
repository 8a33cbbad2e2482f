"""Crafted data pages: one page of a valid database given fields no engine
writes (lengths, counts, next pointers, child ids, key sizes, another page
type), re-sealed with a valid checksum (`mutate_page`), for the trials of
`faults.crafted`.

The fault layer imports no engine internals, so the page formats are
restated here from `engine/codec.py` and `engine/metapage.py`
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
"""

from __future__ import annotations

import random
import struct
import zlib

__all__ = ["mutate_page", "PAGE", "KEY_LENGTHS"]

PAGE = 4096
META, LEAF, INTERNAL, OVERFLOW, FREELIST = 1, 2, 3, 4, 5
KEY_LENGTHS = (0, 1, 1024, 1025, 2000, 5000)  # empty, the limits and past them
_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
_LENGTHS = (0, 0, 1, 1024, 1025, 2000, 4064, 4065, 5000, 65535, 2**31, 2**32 - 1)


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
        size = rng.choice(KEY_LENGTHS)
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


def mutate_page(rng: random.Random, data: bytes) -> tuple[bytes, str]:
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

"""The slotted page's in-place algebra: insert, delete (leaving garbage),
compact and search on one encoded leaf page, with PEP 316 contracts.

The engine does not run these: it keeps decoded nodes and writes a whole
page at a time (`engine.codec.encode_node`). They are a second, in-place
implementation of the same page layout (the table at the top of
engine/codec.py), kept here so the layout's accounting rules
(`engine.codec.accounting_ok`, `engine.codec.free_space`) are exercised
by insert/delete/compact sequences: property tests in
tests/unit/test_codec.py and CrossHair targets in
tests/verify-targets/codec_targets.py use them.
"""

from __future__ import annotations

import struct
from bisect import bisect_left

from engine.codec import (
    HEADER_SIZE,
    INTERNAL,
    LEAF,
    MAX_KEY_SIZE,
    PAGE_SIZE,
    USABLE,
    accounting_ok,
    free_space,
    seal,
    verify,
)

__all__ = ["init_slotted", "slotted_cells", "slotted_search", "slotted_insert", "slotted_delete",
           "slotted_compact"]

_BODY = struct.Struct("<BBHHHHHQII")  # the page header without its CRC, packed at offset 4
_LEAF_CELL = struct.Struct("<HBI")  # klen u16 | kind u8 | vlen u32: 7 bytes
_U16 = struct.Struct("<H")
_ = (bisect_left, MAX_KEY_SIZE, USABLE, INTERNAL, accounting_ok, free_space, verify)  # named by contracts


def init_slotted(page: bytearray, ptype: int = LEAF) -> None:
    """An empty sealed slotted page.

    pre: len(page) >= PAGE_SIZE and ptype in (LEAF, INTERNAL)
    post[page]: slotted_cells(page) == [] and accounting_ok(page) and verify(page)
    post: free_space(page) == USABLE
    """
    page[:PAGE_SIZE] = bytes(PAGE_SIZE)
    _BODY.pack_into(page, 4, ptype, 0, 0, HEADER_SIZE, PAGE_SIZE, 0, 0, 0, 0, 0)
    seal(page)


def _hdr(page: bytes | bytearray) -> tuple[int, int, int, int]:
    n, fs, fe, garbage = struct.unpack_from("<HHHH", page, 6)
    return n, fs, fe, garbage


def slotted_cells(page: bytes | bytearray) -> list[tuple[bytes, bytes]]:
    """The (key, inline value) pairs of a slotted leaf page, in slot order."""
    n = _hdr(page)[0]
    out = []
    for i in range(n):
        off = _U16.unpack_from(page, HEADER_SIZE + 2 * i)[0]
        klen, _, vlen = _LEAF_CELL.unpack_from(page, off)
        k = bytes(page[off + 7 : off + 7 + klen])
        out.append((k, bytes(page[off + 7 + klen : off + 7 + klen + vlen])))
    return out


def _slot_key(page: bytes | bytearray, i: int) -> bytes:
    off = _U16.unpack_from(page, HEADER_SIZE + 2 * i)[0]
    klen = _U16.unpack_from(page, off)[0]
    return bytes(page[off + 7 : off + 7 + klen])


def slotted_search(page: bytes | bytearray, key: bytes) -> tuple[bool, int]:
    """(found, index): the insertion point `bisect_left` would give over the keys.

    pre: accounting_ok(page) and _ascending([k for k, _ in slotted_cells(page)])
    post: __return__[1] == bisect_left([k for k, _ in slotted_cells(page)], key)
    post: __return__[0] == (key in [k for k, _ in slotted_cells(page)])
    """
    lo, hi = 0, _hdr(page)[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if _slot_key(page, mid) < key:
            lo = mid + 1
        else:
            hi = mid
    found = lo < _hdr(page)[0] and _slot_key(page, lo) == key
    return found, lo


def _ascending(keys: list) -> bool:
    """Strictly ascending: sorted with no duplicates (for contracts)."""
    return all(a < b for a, b in zip(keys, keys[1:], strict=False))


def slotted_compact(page: bytearray) -> None:
    """Rewrite the cells contiguously at the end, dropping garbage; keys and
    values (and their order) are unchanged.

    pre: accounting_ok(page)
    post[page]: slotted_cells(page) == slotted_cells(__old__.page)
    post: accounting_ok(page) and verify(page) and _hdr(page)[3] == 0
    post: free_space(page) == free_space(__old__.page) == _hdr(page)[2] - _hdr(page)[1]
    """
    cells = slotted_cells(page)
    n = len(cells)
    pos = PAGE_SIZE
    for i, (k, v) in enumerate(cells):
        cell = _LEAF_CELL.pack(len(k), 0, len(v)) + k + v
        pos -= len(cell)
        page[pos : pos + len(cell)] = cell
        _U16.pack_into(page, HEADER_SIZE + 2 * i, pos)
    fs = HEADER_SIZE + 2 * n
    page[fs:pos] = bytes(pos - fs)
    struct.pack_into("<HHHH", page, 6, n, fs, pos, 0)
    seal(page)


def slotted_insert(page: bytearray, key: bytes, value: bytes) -> bool:
    """Insert or replace `key` in a slotted leaf page in place, compacting if
    garbage is in the way. False (page unchanged) when it does not fit.

    pre: accounting_ok(page) and _ascending([k for k, _ in slotted_cells(page)])
    pre: 1 <= len(key) <= MAX_KEY_SIZE
    post[page]: accounting_ok(page) and _ascending([k for k, _ in slotted_cells(page)])
    post: __return__ == (9 + len(key) + len(value) <= free_space(__old__.page) + sum(9 + len(k) + len(v) for k, v in slotted_cells(__old__.page) if k == key))
    post: dict(slotted_cells(page)) == ({**dict(slotted_cells(__old__.page)), key: value} if __return__ else dict(slotted_cells(__old__.page)))
    post: page == __old__.page if not __return__ else verify(page)
    """
    found, idx = slotted_search(page, key)
    if found:
        old = slotted_cells(page)[idx]
        if 9 + len(key) + len(value) > free_space(page) + 9 + len(key) + len(old[1]):
            return False
        slotted_delete(page, key)
        return slotted_insert(page, key, value)
    need = 9 + len(key) + len(value)
    if need > free_space(page):
        return False
    n, fs, fe, garbage = _hdr(page)
    if fe - fs < need:
        slotted_compact(page)
        n, fs, fe, garbage = _hdr(page)
    cell = _LEAF_CELL.pack(len(key), 0, len(value)) + key + value
    fe -= len(cell)
    page[fe : fe + len(cell)] = cell
    page[HEADER_SIZE + 2 * (idx + 1) : HEADER_SIZE + 2 * (n + 1)] = page[HEADER_SIZE + 2 * idx : HEADER_SIZE + 2 * n]
    _U16.pack_into(page, HEADER_SIZE + 2 * idx, fe)
    struct.pack_into("<HHHH", page, 6, n + 1, fs + 2, fe, garbage)
    seal(page)
    return True


def slotted_delete(page: bytearray, key: bytes) -> bool:
    """Remove `key`; its cell bytes become garbage. False when absent.

    pre: accounting_ok(page) and _ascending([k for k, _ in slotted_cells(page)])
    post[page]: accounting_ok(page) and (verify(page) or not __return__)
    post: __return__ == (key in dict(slotted_cells(__old__.page)))
    post: slotted_cells(page) == [(k, v) for k, v in slotted_cells(__old__.page) if k != key]
    post: free_space(page) == free_space(__old__.page) + sum(9 + len(k) + len(v) for k, v in slotted_cells(__old__.page) if k == key)
    """
    found, idx = slotted_search(page, key)
    if not found:
        return False
    n, fs, fe, garbage = _hdr(page)
    off = _U16.unpack_from(page, HEADER_SIZE + 2 * idx)[0]
    klen, _, vlen = _LEAF_CELL.unpack_from(page, off)
    page[HEADER_SIZE + 2 * idx : HEADER_SIZE + 2 * (n - 1)] = page[HEADER_SIZE + 2 * (idx + 1) : HEADER_SIZE + 2 * n]
    page[HEADER_SIZE + 2 * (n - 1) : HEADER_SIZE + 2 * n] = b"\0\0"
    struct.pack_into("<HHHH", page, 6, n - 1, fs - 2, fe, garbage + 7 + klen + vlen)
    seal(page)
    return True

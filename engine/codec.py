"""Page formats: pure functions over bytes, no I/O (sans-I/O).

Every page is 4096 bytes and starts with the same 32-byte header::

    offset size field        why this width
    0      4    crc32        zlib CRC-32 of bytes 4..4095 (detects torn/flipped pages)
    4      1    page_type    META=1 LEAF=2 INTERNAL=3 OVERFLOW=4 FREELIST=5
    5      1    flags        reserved, 0
    6      2    slot_count   at most (4096-32)/2 slots fit, so u16 suffices
    8      2    free_start   end of the slot array (u16: offsets < 4096)
    10     2    free_end     start of the cell area
    12     2    garbage      bytes of dead cells not yet compacted away
    14     2    reserved     0
    16     8    lsn          log sequence number of the page's last change
    24     4    next         leaf: right sibling; overflow/freelist: next page (u32 page ids: 16 TiB files)
    28     4    prev         leaf: left sibling; internal: leftmost child (child 0)

A slotted node page (leaf or internal)::

    +--------+-----------------+---- free ----+-----------------------+
    | header | slot0 slot1 ... |              | ...cellN ... cell1    |
    +--------+-----------------+--------------+-----------------------+
    0        32          free_start       free_end                 4096

Slot i holds the u16 offset of the cell with the i-th smallest key.

    leaf cell:      klen u16 | kind u8 | vlen u32 | key | value (kind 0, inline)
                                                      | first overflow page u32 (kind 1)
    internal cell:  klen u16 | child u32 | key      (child holds keys >= key)

Free-space accounting is exact: 32 + 2*slot_count + (live cell bytes) +
garbage + (free_end - free_start) == 4096.

The metadata page (page 0) has its own table in `engine/metapage.py`.

Overflow page: header (free_start = payload bytes used) then up to 4064 payload bytes.
A value of L bytes is a chain of ceil(L / 4064) distinct pages, each full but
the last, the last linking to 0; a reader refuses any other chain (cycles included).
Free-list trunk page: header (slot_count = ids held, next = next trunk) then u32 page ids.

Node operations here work on decoded nodes (`Node`) and return plans; the
B+ tree applies them. Size rules (bytes include the 2-byte slot):

- a leaf cell is at most `MAX_LEAF_CELL`, so a leaf holds at least 3;
  a larger value moves to an overflow chain;
- a non-root leaf holds at least `LEAF_MIN_FILL` bytes, a non-root internal
  node at least `INTERNAL_MIN_FILL`; split and redistribute provably restore
  these bounds (see `split_point`).
"""

from __future__ import annotations

import struct
import zlib
from itertools import accumulate
from operator import lt

from engine.errors import CorruptionError

__all__ = [
    "PAGE_SIZE", "HEADER_SIZE", "USABLE", "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "MAX_LEAF_CELL", "MAX_LEAF_KEYS", "MAX_INTERNAL_CELL",
    "LEAF_MIN_FILL", "INTERNAL_MIN_FILL", "OVERFLOW_PAYLOAD", "FREELIST_CAPACITY",
    "META", "LEAF", "INTERNAL", "OVERFLOW", "FREELIST", "HEADER_FIELDS",
    "Overflow", "Node", "seal", "verify", "expect_page", "page_type", "page_lsn", "set_lsn",
    "leaf_cell_size", "internal_cell_size", "inline_fits", "encode_node", "decode_node",
    "encode_overflow", "decode_overflow", "encode_freelist",
    "decode_freelist", "leaf_search", "split_point", "internal_split_point", "free_space",
    "accounting_ok",
]

PAGE_SIZE = 4096  # one page: the unit of I/O, caching and checksums
HEADER_SIZE = 32
USABLE = PAGE_SIZE - HEADER_SIZE  # 4064 bytes for slots and cells
MAX_KEY_SIZE = 1024  # API promise: keys of 1..1024 bytes
MAX_VALUE_SIZE = 2**31 - 1  # API promise; log records carry lengths as u32, with a margin
MAX_LEAF_CELL = 1354  # 3 * 1354 <= 4064: a leaf always holds three cells
MAX_INTERNAL_CELL = 6 + MAX_KEY_SIZE + 2  # 1032: an internal node holds three cells
LEAF_MIN_FILL = (USABLE - MAX_LEAF_CELL) // 2  # 1355
INTERNAL_MIN_FILL = (USABLE - 2 * MAX_INTERNAL_CELL) // 2  # 1000
OVERFLOW_PAYLOAD = USABLE  # 4064 value bytes per overflow page
FREELIST_CAPACITY = USABLE // 4  # 1016 page ids per trunk page
MAX_LEAF_KEYS = USABLE // (9 + 1)  # 406: the smallest leaf cell is a 1-byte key, empty value
_MAX_INLINE = MAX_LEAF_CELL - 9  # key + inline value bytes of the largest leaf cell

META, LEAF, INTERNAL, OVERFLOW, FREELIST = 1, 2, 3, 4, 5

_HEADER = struct.Struct("<IBBHHHHHQII")
HEADER_FIELDS = struct.Struct("<BBHHHHHQII")  # the header without its CRC, packed at offset 4
_LEAF_CELL = struct.Struct("<HBI")  # 7 bytes
_INTERNAL_CELL = struct.Struct("<HI")  # 6 bytes
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_CRC = struct.Struct("<I")
_LSN = struct.Struct("<Q")


class Overflow:
    """A leaf value stored in an overflow chain: first page and total length."""

    __slots__ = ("page", "length")

    def __init__(self, page: int, length: int) -> None:
        self.page = page
        self.length = length

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Overflow) and (self.page, self.length) == (other.page, other.length)

    def __repr__(self) -> str:
        return f"Overflow(page={self.page}, length={self.length})"


def leaf_cell_size(key: bytes, value: bytes | Overflow) -> int:
    """Bytes a leaf entry takes, slot included."""
    if type(value) is Overflow:
        return 13 + len(key)
    return 9 + len(key) + len(value)  # type: ignore[arg-type]


def internal_cell_size(key: bytes) -> int:
    """Bytes an internal entry takes, slot included."""
    return 8 + len(key)


def inline_fits(key_len: int, value_len: int) -> bool:
    """True when a value of `value_len` stays in the leaf beside its key.

    pre: 1 <= key_len <= MAX_KEY_SIZE and value_len >= 0
    post: __return__ == (9 + key_len + value_len <= MAX_LEAF_CELL)
    post: not __return__ or 3 * (9 + key_len + value_len) <= USABLE
    """
    return 9 + key_len + value_len <= MAX_LEAF_CELL


class Node:
    """A decoded leaf or internal page.

    Leaf: `keys[i]` maps to `vals[i]` (bytes or `Overflow`); `next`/`prev` link leaves.
    Internal: `children` has len(keys) + 1 entries; child i+1 holds keys >= keys[i].
    `size` is the byte count of slots and cells (header excluded), kept exact.
    """

    __slots__ = ("leaf", "keys", "vals", "children", "next", "prev", "size", "lsn")

    def __init__(self, leaf: bool, keys: list[bytes] | None = None, vals: list | None = None,
                 children: list[int] | None = None, next: int = 0, prev: int = 0, lsn: int = 0) -> None:
        self.leaf = leaf
        self.keys = keys if keys is not None else []
        self.vals = vals if vals is not None else []
        self.children = children if children is not None else []
        self.next = next
        self.prev = prev
        self.lsn = lsn
        self.size = self.compute_size()

    def compute_size(self) -> int:
        if self.leaf:
            return sum(map(leaf_cell_size, self.keys, self.vals))
        return sum(8 + len(k) for k in self.keys)

    def copy(self) -> Node:
        n = Node.__new__(Node)
        n.leaf = self.leaf
        n.keys = self.keys[:]
        n.vals = self.vals[:]
        n.children = self.children[:]
        n.next, n.prev, n.size, n.lsn = self.next, self.prev, self.size, self.lsn
        return n

    def check_invariants(self) -> list[str]:
        """Invariants of one node, each violated one reported:
        keys strictly ascending, each of 1..MAX_KEY_SIZE bytes; size equals the
        sum of cell sizes and fits the page; leaf: len(vals) == len(keys), no
        cell over MAX_LEAF_CELL; internal: len(children) == len(keys) + 1, no child 0.
        """
        out = []
        if any(a >= b for a, b in zip(self.keys, self.keys[1:], strict=False)):
            out.append("keys not strictly ascending")
        if self.keys and (not self.keys[0] or max(map(len, self.keys)) > MAX_KEY_SIZE):
            out.append("key outside 1..MAX_KEY_SIZE bytes")
        if self.leaf and any(type(v) is bytes and leaf_cell_size(k, v) > MAX_LEAF_CELL
                             for k, v in zip(self.keys, self.vals, strict=False)):
            out.append("inline cell larger than MAX_LEAF_CELL")
        if self.size != self.compute_size():
            out.append(f"size {self.size} != computed {self.compute_size()}")
        if self.size > USABLE:
            out.append(f"size {self.size} exceeds page")
        if self.leaf and len(self.vals) != len(self.keys):
            out.append("leaf keys/vals length mismatch")
        if not self.leaf:
            if len(self.children) != len(self.keys) + 1:
                out.append("internal children != keys + 1")
            if 0 in self.children:
                out.append("internal node points at page 0")
        return out


# -- header and checksum ------------------------------------------------------

def seal(page: bytearray | memoryview) -> None:
    """Store the CRC of bytes 4.. at offset 0.

    pre: len(page) >= PAGE_SIZE
    post[page]: verify(page)
    post: page[4:] == __old__.page[4:]
    """
    _CRC.pack_into(page, 0, zlib.crc32(page[4:PAGE_SIZE]))


def verify(page: bytes | bytearray | memoryview) -> bool:
    """True when the stored CRC matches the page; a short page never does.

    post: __return__ == (len(page) >= PAGE_SIZE and int.from_bytes(page[0:4], 'little') == zlib.crc32(page[4:PAGE_SIZE]))
    """
    if len(page) < PAGE_SIZE:
        return False  # a truncated read: corrupt, not a struct.error
    return _CRC.unpack_from(page, 0)[0] == zlib.crc32(memoryview(page)[4:PAGE_SIZE])


def page_type(page: bytes | bytearray | memoryview) -> int:
    return page[4]


def page_lsn(page: bytes | bytearray | memoryview) -> int:
    return _LSN.unpack_from(page, 16)[0]


def set_lsn(page: bytearray | memoryview, lsn: int) -> None:
    """Set the page LSN and re-seal.

    pre: 0 <= lsn < 2**64 and len(page) >= PAGE_SIZE
    post[page]: page_lsn(page) == lsn and verify(page)
    """
    _LSN.pack_into(page, 16, lsn)
    seal(page)


def expect_page(page: bytes | memoryview, expect: int, page_id: int) -> None:
    """`CorruptionError` unless the page's checksum holds and its type is `expect`."""
    if not verify(page):
        raise CorruptionError(f"page {page_id}: checksum mismatch")
    if page[4] != expect:
        raise CorruptionError(f"page {page_id}: type {page[4]}, expected {expect}")


# -- nodes ----------------------------------------------------------------------

def encode_node(node: Node, page: bytearray | memoryview) -> None:
    """Write `node` compactly (no garbage) into `page` and seal it.

    pre: len(page) >= PAGE_SIZE and node.check_invariants() == []
    pre: not node.leaf or all(type(v) is bytes or (type(v) is Overflow and 0 <= v.page < 2**32 and 0 <= v.length < 2**32) for v in node.vals)
    pre: all(0 <= c < 2**32 for c in node.children) and 0 <= node.next < 2**32 and 0 <= node.prev < 2**32 and 0 <= node.lsn < 2**64
    post[page]: verify(page) and accounting_ok(page)
    post: free_space(page) == USABLE - node.size
    post: _node_fields(decode_node(page)) == _node_fields(node)
    """
    n = len(node.keys)
    parts: list[bytes] = []
    add = parts.extend
    lens: list[int] = []  # cell lengths
    add_len = lens.append
    if node.leaf:
        pack = _LEAF_CELL.pack
        for k, v in zip(node.keys, node.vals, strict=False):
            if type(v) is bytes:
                add((pack(len(k), 0, len(v)), k, v))
                add_len(7 + len(k) + len(v))
            else:
                add((pack(len(k), 1, v.length), k, _U32.pack(v.page)))
                add_len(11 + len(k))
        link0 = node.prev
    else:
        pack = _INTERNAL_CELL.pack
        for k, c in zip(node.keys, node.children[1:], strict=False):
            add((pack(len(k), c), k))
            add_len(6 + len(k))
        link0 = node.children[0] if node.children else 0
    body = b"".join(parts)
    pos = PAGE_SIZE - len(body)  # cells in key order, packed against the page's end
    offsets = list(accumulate(lens[:-1], initial=pos)) if n else []
    free_start = HEADER_SIZE + 2 * n
    assert pos >= free_start, "encode_node: node does not fit in a page"
    page[pos:PAGE_SIZE] = body
    page[free_start:pos] = bytes(pos - free_start)
    if n:
        struct.pack_into(f"<{n}H", page, HEADER_SIZE, *offsets)
    HEADER_FIELDS.pack_into(page, 4, LEAF if node.leaf else INTERNAL, 0, n, free_start, pos, 0, 0,
                    node.lsn, node.next if node.leaf else 0, link0)
    seal(page)


def _node_header(data: bytes, page_id: int, types: tuple[int, ...], what: str) -> tuple:
    """The header of a slotted page whose CRC holds, type is in `types` and
    slot array and free space are in bounds; `CorruptionError` otherwise."""
    if not verify(data):
        raise CorruptionError(f"page {page_id}: checksum mismatch")
    header = _HEADER.unpack_from(data, 0)
    _, ptype, _, n, free_start, free_end = header[:6]
    if ptype not in types or free_start != HEADER_SIZE + 2 * n or not free_start <= free_end <= PAGE_SIZE:
        raise CorruptionError(f"page {page_id}: not a {what} page (type {ptype})")
    return header


def decode_node(page: bytes | bytearray | memoryview, page_id: int = -1) -> Node:
    """Decode a leaf or internal page; `CorruptionError` on any inconsistency,
    including anything `Node.check_invariants` forbids: the page may be crafted."""
    data = bytes(page)
    _, ptype, _, n, _, _, _, _, lsn, nxt, prev = _node_header(data, page_id, (LEAF, INTERNAL), "node")
    offsets = struct.unpack_from(f"<{n}H", data, HEADER_SIZE)
    keys: list[bytes] = []
    append_key = keys.append
    size = 0
    try:
        if ptype == LEAF:
            vals: list = []
            append_val = vals.append
            unpack = _LEAF_CELL.unpack_from
            for off in offsets:
                klen, kind, vlen = unpack(data, off)
                if klen > MAX_KEY_SIZE:
                    raise CorruptionError(f"page {page_id}: a key of {klen} bytes")
                kend = off + 7 + klen
                append_key(data[off + 7 : kend])
                if kind == 0:
                    if kend + vlen > PAGE_SIZE or klen + vlen > _MAX_INLINE:
                        raise CorruptionError(f"page {page_id}: cell overruns page or exceeds MAX_LEAF_CELL")
                    append_val(data[kend : kend + vlen])
                    size += 9 + klen + vlen
                elif kind == 1:
                    append_val(Overflow(_U32.unpack_from(data, kend)[0], vlen))
                    size += 13 + klen
                else:
                    raise CorruptionError(f"page {page_id}: leaf cell of unknown kind {kind}")
            children: list[int] = []
        else:
            vals = []
            children = [prev]
            append_child = children.append
            unpack = _INTERNAL_CELL.unpack_from
            for off in offsets:
                klen, child = unpack(data, off)
                if off + 6 + klen > PAGE_SIZE or klen > MAX_KEY_SIZE:
                    raise CorruptionError(f"page {page_id}: cell overruns page or key over MAX_KEY_SIZE")
                append_key(data[off + 6 : off + 6 + klen])
                append_child(child)
                size += 8 + klen
            if 0 in children:
                raise CorruptionError(f"page {page_id}: internal node points at page 0")
            nxt = prev = 0
    except struct.error as exc:
        raise CorruptionError(f"page {page_id}: cell overruns page") from exc
    if size > USABLE or not all(map(lt, keys, keys[1:])):
        raise CorruptionError(f"page {page_id}: keys out of order or node overfull")
    if keys and not keys[0]:  # ascending: only the first can be empty
        raise CorruptionError(f"page {page_id}: an empty key")
    node = Node.__new__(Node)  # fields set directly: the size is already summed
    node.leaf = ptype == LEAF
    node.keys, node.vals, node.children = keys, vals, children
    node.next, node.prev, node.lsn, node.size = nxt, prev, lsn, size
    return node


def leaf_search(page: bytes | bytearray | memoryview, key: bytes, page_id: int = -1) -> bytes | Overflow | None:
    """The value under `key` in leaf page `page`, or None: a binary search
    over the slots that decodes only the cells it visits, for a page read to
    answer one get (decoding all of it costs several times more). Checks the
    CRC and header as `decode_node` does; `CorruptionError` on any damage."""
    data = bytes(page)
    n = _node_header(data, page_id, (LEAF,), "leaf")[3]
    unpack_slot = _U16.unpack_from
    unpack = _LEAF_CELL.unpack_from
    lo, hi = 0, n
    try:
        while lo < hi:
            mid = (lo + hi) >> 1
            off = unpack_slot(data, HEADER_SIZE + 2 * mid)[0]
            klen, kind, vlen = unpack(data, off)
            kend = off + 7 + klen
            if kend > PAGE_SIZE or not klen or klen > MAX_KEY_SIZE:  # else a cut key could read as "absent"
                raise CorruptionError(f"page {page_id}: leaf cell of a {klen}-byte key overruns the page or the key size")
            k = data[off + 7 : kend]
            if k < key:
                lo = mid + 1
            elif k != key:
                hi = mid
            elif kind == 0:
                if kend + vlen > PAGE_SIZE or klen + vlen > _MAX_INLINE:
                    raise CorruptionError(f"page {page_id}: cell overruns page or exceeds MAX_LEAF_CELL")
                return data[kend : kend + vlen]
            elif kind == 1:
                return Overflow(_U32.unpack_from(data, kend)[0], vlen)
            else:
                raise CorruptionError(f"page {page_id}: leaf cell of unknown kind {kind}")
    except struct.error as exc:
        raise CorruptionError(f"page {page_id}: cell overruns page") from exc
    return None


# -- split planning ---------------------------------------------------------------

def split_point(sizes: list[int]) -> int:
    """Index i splitting cells into [:i] and [i:] with the two byte totals as
    equal as possible; both sides non-empty.

    pre: len(sizes) >= 2 and all(s > 0 for s in sizes)
    post: 1 <= __return__ <= len(sizes) - 1
    post: abs(2 * sum(sizes[:__return__]) - sum(sizes)) <= max(sizes)
    post: not (USABLE < sum(sizes) <= 2 * USABLE - max(sizes) and max(sizes) <= MAX_LEAF_CELL) or (LEAF_MIN_FILL <= sum(sizes[:__return__]) <= USABLE and LEAF_MIN_FILL <= sum(sizes[__return__:]) <= USABLE)

    The last condition is why split and redistribute restore the fill
    bounds: an overfull leaf (or two leaves that no longer fit one page) of
    cells at most `MAX_LEAF_CELL` splits into two halves of at least
    `LEAF_MIN_FILL` bytes that each fit a page.
    """
    total = sum(sizes)
    acc = 0
    best_i, best_gap = 1, None
    for i in range(1, len(sizes)):
        acc += sizes[i - 1]
        gap = abs(2 * acc - total)
        if best_gap is None or gap < best_gap:
            best_i, best_gap = i, gap
    return best_i


def internal_split_point(sizes: list[int]) -> int:
    """Index m of the cell that moves up when splitting an internal node: left
    keeps [:m], right keeps [m+1:], both non-empty, totals balanced.

    pre: len(sizes) >= 3 and all(s > 0 for s in sizes)
    post: 1 <= __return__ <= len(sizes) - 2
    post: abs(sum(sizes[:__return__]) - sum(sizes[__return__ + 1:])) <= max(sizes)
    post: not (USABLE < sum(sizes) <= 2 * USABLE - max(sizes) and max(sizes) <= MAX_INTERNAL_CELL) or (INTERNAL_MIN_FILL <= sum(sizes[:__return__]) <= USABLE and INTERNAL_MIN_FILL <= sum(sizes[__return__ + 1:]) <= USABLE)
    """
    total = sum(sizes)
    acc = sizes[0]
    best_m, best_gap = 1, None
    for m in range(1, len(sizes) - 1):
        gap = abs(acc - (total - acc - sizes[m]))
        if best_gap is None or gap < best_gap:
            best_m, best_gap = m, gap
        acc += sizes[m]
    return best_m


# -- overflow and free-list pages ----------------------------------------------------

def encode_overflow(payload: bytes | memoryview, next_page: int, page: bytearray | memoryview, lsn: int = 0) -> None:
    """Write one overflow page of a value's chain and seal it.

    pre: len(payload) <= OVERFLOW_PAYLOAD and 0 <= next_page < 2**32 and 0 <= lsn < 2**64 and len(page) >= PAGE_SIZE
    post[page]: decode_overflow(page) == (bytes(payload), next_page) and page_lsn(page) == lsn
    """
    n = len(payload)
    assert n <= OVERFLOW_PAYLOAD, "encode_overflow: payload larger than a page"
    HEADER_FIELDS.pack_into(page, 4, OVERFLOW, 0, 0, n, 0, 0, 0, lsn, next_page, 0)
    page[HEADER_SIZE : HEADER_SIZE + n] = payload
    if n < OVERFLOW_PAYLOAD:
        page[HEADER_SIZE + n : PAGE_SIZE] = bytes(OVERFLOW_PAYLOAD - n)
    seal(page)


def decode_overflow(page: bytes | bytearray | memoryview, page_id: int = -1) -> tuple[bytes, int]:
    """(payload, next page id)."""
    expect_page(page, OVERFLOW, page_id)
    _, _, _, _, n, _, _, _, _, nxt, _ = _HEADER.unpack_from(page, 0)
    if n > OVERFLOW_PAYLOAD:
        raise CorruptionError(f"page {page_id}: overflow length {n} too large")
    return bytes(page[HEADER_SIZE : HEADER_SIZE + n]), nxt


def encode_freelist(ids: list[int], next_page: int, page: bytearray | memoryview) -> None:
    """Write one free-list trunk page and seal it.

    pre: len(ids) <= FREELIST_CAPACITY and all(0 <= i < 2**32 for i in ids)
    pre: 0 <= next_page < 2**32 and len(page) >= PAGE_SIZE
    post[page]: decode_freelist(page) == (list(ids), next_page)
    """
    n = len(ids)
    assert n <= FREELIST_CAPACITY, "encode_freelist: too many ids for one page"
    page[:PAGE_SIZE] = bytes(PAGE_SIZE)
    HEADER_FIELDS.pack_into(page, 4, FREELIST, 0, n, 0, 0, 0, 0, 0, next_page, 0)
    if n:
        struct.pack_into(f"<{n}I", page, HEADER_SIZE, *ids)
    seal(page)


def decode_freelist(page: bytes | bytearray | memoryview, page_id: int = -1) -> tuple[list[int], int]:
    """(page ids held, next trunk page id)."""
    expect_page(page, FREELIST, page_id)
    n = _U16.unpack_from(page, 6)[0]
    if n > FREELIST_CAPACITY:
        raise CorruptionError(f"page {page_id}: free-list count {n} too large")
    return list(struct.unpack_from(f"<{n}I", page, HEADER_SIZE)), _U32.unpack_from(page, 24)[0]


# -- page accounting ---------------------------------------------------------------
# Helpers of the contracts above (`encode_node`); the in-place
# slotted operations that share them live with the tests (tests/slotted.py).

def _hdr(page: bytes | bytearray) -> tuple[int, int, int, int]:
    n, fs, fe, garbage = struct.unpack_from("<HHHH", page, 6)
    return n, fs, fe, garbage


def free_space(page: bytes | bytearray) -> int:
    """Bytes available for one more cell and its slot, counting garbage.

    pre: accounting_ok(page)
    post: __return__ == USABLE - 2 * _hdr(page)[0] - _cell_bytes(page)
    """
    n, fs, fe, garbage = _hdr(page)
    return fe - fs + garbage


def _cell_bytes(page: bytes | bytearray) -> int:
    """Live cell bytes (slots excluded) of a leaf or internal page, any cell kind."""
    n = _hdr(page)[0]
    internal = page[4] == INTERNAL
    live = 0
    for i in range(n):
        off = _U16.unpack_from(page, HEADER_SIZE + 2 * i)[0]
        if internal:
            live += 6 + _U16.unpack_from(page, off)[0]
        else:
            klen, kind, vlen = _LEAF_CELL.unpack_from(page, off)
            live += 7 + klen + (4 if kind else vlen)  # kind 1 holds a u32 page id
    return live


def accounting_ok(page: bytes | bytearray) -> bool:
    """header + slots + live cells + garbage + gap == page size."""
    n, fs, fe, garbage = _hdr(page)
    return fs == HEADER_SIZE + 2 * n and HEADER_SIZE + 2 * n + _cell_bytes(page) + garbage + (fe - fs) == PAGE_SIZE


def _node_fields(node: Node) -> tuple:
    """What a page stores of a node (internal pages keep no sibling links), for contracts."""
    if node.leaf:
        return (True, list(node.keys), list(node.vals), node.next, node.prev, node.lsn)
    return (False, list(node.keys), list(node.children), node.lsn)

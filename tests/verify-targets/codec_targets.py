"""Thin pure wrappers over `engine.codec` (and the test-side slotted-page
algebra of tests/slotted.py, which the engine does not run) that CrossHair
can explore.

CrossHair cannot build a valid 4 KiB slotted page out of a symbolic
bytearray, and `zlib.crc32` or a page write forces every symbolic byte,
length or integer that reaches it to a concrete value (a new path per value).
So each wrapper takes a few small symbolic integers, builds real pages with
the real codec functions, and states the property as its own contract. The
domains are small on purpose: CrossHair can then walk every path and
*confirm* a property over the whole domain instead of sampling it.

The codec's own docstring contracts are enforced on every codec call a
wrapper makes with concrete arguments, so a wrapper also checks them there.
Wrappers over plain integers (split planning) stay symbolic: z3 reasons about
all list contents at once.

CrossHair drops a path on which a *called* function's postcondition fails
(it expects to report that when it checks the callee itself), which would
hide exactly the bugs these wrappers exist to find, since the codec's page
functions cannot be checked directly. `_loud()` turns such a failure into an
AssertionError, which CrossHair reports as a counterexample.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager

from crosshair.enforce import PostconditionFailed
from slotted import (
    init_slotted,
    slotted_cells,
    slotted_compact,
    slotted_delete,
    slotted_insert,
    slotted_search,
)

from engine.codec import (
    INTERNAL_MIN_FILL,
    LEAF_MIN_FILL,
    MAX_INTERNAL_CELL,
    MAX_LEAF_CELL,
    PAGE_SIZE,
    USABLE,
    Node,
    Overflow,
    accounting_ok,
    decode_freelist,
    decode_node,
    decode_overflow,
    encode_freelist,
    encode_node,
    encode_overflow,
    free_space,
    internal_split_point,
    split_point,
    verify,
)
from engine.metapage import Meta, decode_meta, encode_meta


@contextmanager
def _loud() -> Iterator[None]:
    try:
        yield
    except PostconditionFailed as exc:
        raise AssertionError(f"codec contract broken: {exc}") from None


# -- split planning: how the tree applies split_point / internal_split_point ---------


def split_leaf(sizes: list[int]) -> tuple[list[int], list[int]]:
    """Split leaf cells 0..n-1 (of the given byte sizes) the way `btree._split` does.

    pre: 2 <= len(sizes) <= 5 and all(10 <= s <= MAX_LEAF_CELL for s in sizes)
    post: __return__[0] + __return__[1] == list(range(len(sizes)))
    post: __return__[0] != [] and __return__[1] != [] and max(__return__[0]) < __return__[1][0]
    post: abs(sum(sizes[k] for k in __return__[0]) - sum(sizes[k] for k in __return__[1])) <= max(sizes)
    post: sum(sizes) <= USABLE or all(LEAF_MIN_FILL <= sum(sizes[k] for k in half) <= USABLE for half in __return__)
    """
    with _loud():
        i = split_point(sizes)
        cells = list(range(len(sizes)))
        return cells[:i], cells[i:]


def split_internal(sizes: list[int]) -> tuple[list[int], int, list[int]]:
    """Split internal cells: left keeps [:m], cell m moves up, right keeps [m+1:].

    pre: 3 <= len(sizes) <= 5 and all(9 <= s <= MAX_INTERNAL_CELL for s in sizes)
    post: __return__[0] + [__return__[1]] + __return__[2] == list(range(len(sizes)))
    post: __return__[0] != [] and __return__[2] != []
    post: sum(sizes) <= USABLE or all(INTERNAL_MIN_FILL <= sum(sizes[k] for k in half) <= USABLE for half in (__return__[0], __return__[2]))
    """
    with _loud():
        m = internal_split_point(sizes)
        cells = list(range(len(sizes)))
        return cells[:m], cells[m], cells[m + 1 :]


def redistribute_leaves(left: list[int], right: list[int]) -> int:
    """`btree._rebalance` on leaves: an underfull leaf and a sibling that do not
    fit one page share their cells again through `split_point`.

    pre: 1 <= len(left) <= 2 and len(right) == 3
    pre: all(10 <= s <= MAX_LEAF_CELL for s in left + right)
    pre: sum(left) < LEAF_MIN_FILL and sum(right) <= USABLE and sum(left) + sum(right) > USABLE
    post: LEAF_MIN_FILL <= sum((left + right)[:__return__]) <= USABLE
    post: LEAF_MIN_FILL <= sum((left + right)[__return__:]) <= USABLE
    """
    with _loud():
        return split_point(left + right)


# -- slotted pages, exhaustively over small domains --------------------------------------


def _page(*cells: tuple[int, int]) -> bytearray:
    page = bytearray(PAGE_SIZE)
    init_slotted(page)
    for key, vlen in cells:
        slotted_insert(page, bytes([key]), bytes(vlen))
    return page


def slotted_exact_fit(slack: int, vlen: int) -> bool:
    """Insert into a page with `slack` free bytes: accepted exactly when the
    cell and its slot fit (the free-space bound at its edge).

    pre: 9 <= slack <= 11 and 0 <= vlen <= 2
    post: __return__ == (9 + 1 + vlen <= slack)
    """
    with _loud():
        page = _page((1, USABLE - 10 - slack))
        return slotted_insert(page, b"\x02", bytes(vlen))


def slotted_two_ops(op1: int, op2: int) -> list[bytes]:
    """Two operations (insert key 1..2 with a 0- or 5-byte value, or delete
    key 1..2) on a page holding key 2: the page always matches a dict.

    pre: 0 <= op1 < 6 and 0 <= op2 < 6
    post: __return__ == sorted(set(__return__))
    """
    with _loud():
        page = _page((2, 3))
        model = {b"\x02": bytes(3)}
        for op in (op1, op2):
            key = bytes([1 + op % 2])
            if op < 4:
                value = bytes(5 * (op // 2))
                assert slotted_insert(page, key, value)
                model[key] = value
            else:
                assert slotted_delete(page, key) == (key in model)
                model.pop(key, None)
            assert dict(slotted_cells(page)) == model
            assert accounting_ok(page) and verify(page)
            assert free_space(page) == USABLE - sum(9 + len(k) + len(v) for k, v in model.items())
        return [k for k, _ in slotted_cells(page)]


def slotted_compact_keeps_cells(gone: int, vlen: int) -> list[tuple[bytes, bytes]]:
    """Delete one of three cells, then compact: the rest survive, in order,
    and the garbage becomes free gap.

    pre: 1 <= gone <= 3 and 0 <= vlen <= 2
    post: __return__ == [(bytes([k]), bytes(vlen + k)) for k in (1, 2, 3) if k != gone]
    """
    with _loud():
        page = _page((1, vlen + 1), (2, vlen + 2), (3, vlen + 3))
        before = free_space(page)
        assert slotted_delete(page, bytes([gone]))
        slotted_compact(page)
        assert free_space(page) == before + 9 + 1 + vlen + gone
        return slotted_cells(page)


def slotted_search_probe(probe: int) -> tuple[bool, int]:
    """Binary search over keys 2, 4, 6 for any one-byte probe.

    pre: 0 <= probe <= 7
    post: __return__ == (probe in (2, 4, 6), bisect_left([2, 4, 6], probe))
    """
    with _loud():
        return slotted_search(_page((4, 0), (2, 0), (6, 0)), bytes([probe]))


# -- checksums -------------------------------------------------------------------------


def crc_single_flip(bit: int) -> bool:
    """A slotted page with one bit flipped no longer verifies.

    pre: 0 <= bit < 8 * PAGE_SIZE
    post: not __return__
    """
    with _loud():
        page = _page((7, 40), (3, 9))
        page[bit // 8] ^= 1 << (bit % 8)
        return verify(page)


# -- round trips -----------------------------------------------------------------------


def leaf_round_trip(nkeys: int, vlen: int, ovf_page: int, ovf_len: int, nxt: int, lsn: int) -> bool:
    """A leaf with inline and overflow values decodes to what was encoded.

    pre: 0 <= nkeys <= 3 and 0 <= vlen <= 1000
    pre: 0 <= ovf_page < 2**32 and 0 <= ovf_len < 2**32 and 0 <= nxt < 2**32 and 0 <= lsn < 2**64
    post: __return__
    """
    with _loud():
        keys = [bytes([k + 1]) * (k + 1) for k in range(nkeys)]
        vals = [Overflow(ovf_page, ovf_len) if k == 1 else bytes(vlen) for k in range(nkeys)]
        node = Node(True, keys, vals, None, nxt, nxt // 2, lsn)
        page = bytearray(PAGE_SIZE)
        encode_node(node, page)
        back = decode_node(page)
        return (back.keys, back.vals, back.next, back.prev, back.lsn, back.size) == (
            keys, vals, nxt, nxt // 2, lsn, node.size) and free_space(page) == USABLE - node.size


def internal_round_trip(nkeys: int, klen: int, child: int) -> bool:
    """An internal node keeps its keys and children (child 0 in the header).

    pre: 0 <= nkeys <= 3 and 1 <= klen <= 1024 and 1 <= child < 2**32 - 3
    post: __return__
    """
    with _loud():
        keys = [bytes([k]) * klen for k in range(nkeys)]
        children = [child + k for k in range(nkeys + 1)]
        page = bytearray(PAGE_SIZE)
        encode_node(Node(False, keys, None, children), page)
        back = decode_node(page)
        return (back.leaf, back.keys, back.children) == (False, keys, children) and accounting_ok(page)


def meta_round_trip(page_count: int, head: int, root: int, count: int, name_len: int, lsn: int) -> bool:
    """The metadata page keeps its counters and tree table.

    pre: 0 < page_count < 2**32 and 0 <= head < page_count and 0 < root < page_count
    pre: 0 <= count <= page_count - 1 and 0 <= lsn < 2**64 and 1 <= name_len <= 255
    post: __return__
    """
    with _loud():
        trees = {"t" * name_len: (root, count), "default": (root, count // 5)}
        page = bytearray(PAGE_SIZE)
        encode_meta(Meta(page_count, head, page_count // 2, lsn, trees), page)
        back = decode_meta(page)
        return (back.page_count, back.freelist_head, back.free_count, back.checkpoint_lsn, back.trees) == (
            page_count, head, page_count // 2, lsn, trees)


def overflow_round_trip(n: int, next_page: int, lsn: int) -> bool:
    """An overflow page returns its payload (0..4064 bytes) and chain link.

    pre: 0 <= n <= 4064 and 0 <= next_page < 2**32 and 0 <= lsn < 2**64
    post: __return__
    """
    with _loud():
        payload = bytes([n % 251]) * n
        page = bytearray(PAGE_SIZE)
        encode_overflow(payload, next_page, page, lsn)
        return decode_overflow(page) == (payload, next_page)


def freelist_round_trip(n: int, first: int, next_page: int) -> bool:
    """A free-list trunk returns its page ids (0..1016 of them) and next trunk.

    pre: 0 <= n <= 1016 and 0 <= first < 2**32 - 1016 and 0 <= next_page < 2**32
    post: __return__
    """
    with _loud():
        ids = list(range(first, first + n))
        page = bytearray(PAGE_SIZE)
        encode_freelist(ids, next_page, page)
        return decode_freelist(page) == (ids, next_page)


# Names used only inside contracts (evaluated in this module's globals).
_ = (bisect_left, INTERNAL_MIN_FILL, LEAF_MIN_FILL, MAX_INTERNAL_CELL, MAX_LEAF_CELL)

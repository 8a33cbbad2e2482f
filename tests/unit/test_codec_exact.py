"""Exact codec facts that sampled tests can miss (found by mutation testing,
docs/verification.md "Mutation score"): split points are optimal on every
small input, not just on sampled ones; an internal cell's size is the one the
node accounting uses; an empty slotted page's header is the documented one
(written by the engine's `encode_node`, and by tests/slotted.py's `init_slotted`).
"""

from __future__ import annotations

import itertools
import struct

import pytest
import slotted

from engine import codec, metapage
from engine.codec import HEADER_SIZE, INTERNAL, LEAF, PAGE_SIZE, Node
from engine.errors import CorruptionError


def _small_lists(min_len: int, max_len: int, top: int):
    for n in range(min_len, max_len + 1):
        yield from itertools.product(range(1, top + 1), repeat=n)


def test_split_point_is_optimal_on_every_small_input():
    # every list of 2..5 sizes in 1..4: small gaps are where an off-by-one
    # in the running total changes the choice
    for sizes in map(list, _small_lists(2, 5, 4)):
        total = sum(sizes)
        best = min(abs(2 * sum(sizes[:i]) - total) for i in range(1, len(sizes)))
        i = codec.split_point(sizes)
        assert 1 <= i < len(sizes), sizes
        assert abs(2 * sum(sizes[:i]) - total) == best, (sizes, i)


def test_internal_split_point_is_optimal_on_every_small_input():
    for sizes in map(list, _small_lists(3, 6, 3)):
        m = codec.internal_split_point(sizes)
        assert 1 <= m <= len(sizes) - 2, sizes

        gaps = [abs(sum(sizes[:j]) - sum(sizes[j + 1:])) for j in range(len(sizes))]
        assert gaps[m] == min(gaps[1:-1]), (sizes, m)


def test_internal_cell_size_is_what_an_internal_node_accounts():
    for keys in ([b"a"], [b"a", b"bb"], [b"k" * 100, b"l" * 1024]):
        node = Node(False, list(keys), children=list(range(2, len(keys) + 3)))
        assert node.size == sum(codec.internal_cell_size(k) for k in keys)
        page = bytearray(PAGE_SIZE)
        codec.encode_node(node, page)
        assert codec.free_space(page) == codec.USABLE - node.size


def test_an_empty_slotted_page_has_the_documented_header():
    # offset table at the top of engine/codec.py: flags, reserved, lsn, next
    # and prev are 0 on a new page; the free gap spans the whole body. The
    # engine writes an empty leaf (a new tree's root) with `encode_node`; the
    # in-place algebra of the tests starts from `init_slotted`: both agree.
    empty_leaf = bytearray(b"\xff" * PAGE_SIZE)
    codec.encode_node(Node(True), empty_leaf)
    for ptype, init in ((LEAF, lambda page, t: page.__setitem__(slice(None), empty_leaf)),
                        (LEAF, slotted.init_slotted), (INTERNAL, slotted.init_slotted)):
        page = bytearray(b"\xff" * PAGE_SIZE)
        init(page, ptype)
        (_, kind, flags, slots, free_start, free_end, garbage, reserved, lsn, nxt, prev) = (
            struct.unpack_from("<IBBHHHHHQII", page, 0))
        assert (kind, flags, slots, free_start, free_end, garbage, reserved, lsn, nxt, prev) == (
            ptype, 0, 0, HEADER_SIZE, PAGE_SIZE, 0, 0, 0, 0, 0)
        assert page[HEADER_SIZE:] == bytes(PAGE_SIZE - HEADER_SIZE)
        assert codec.verify(page)


def _header(page: bytearray) -> tuple:
    return struct.unpack_from("<IBBHHHHHQII", page, 0)[1:]


def test_overflow_and_freelist_pages_have_the_documented_header():
    # reserved and unused fields are 0; an overflow page's length sits in
    # free_start, a free-list page's count in slot_count; lsn defaults to 0
    page = bytearray(b"\xff" * PAGE_SIZE)
    codec.encode_overflow(b"abc", 9, page)
    assert _header(page) == (codec.OVERFLOW, 0, 0, 3, 0, 0, 0, 0, 9, 0)
    assert page[HEADER_SIZE + 3:] == bytes(PAGE_SIZE - HEADER_SIZE - 3)
    page = bytearray(b"\xff" * PAGE_SIZE)
    codec.encode_freelist([5, 6], 7, page)
    assert _header(page) == (codec.FREELIST, 0, 2, 0, 0, 0, 0, 0, 7, 0)
    assert codec.decode_freelist(page, 4) == ([5, 6], 7)


def test_a_page_of_the_wrong_kind_names_its_page_id():
    page = bytearray(PAGE_SIZE)
    codec.encode_overflow(b"x", 0, page)
    for decode in (codec.decode_freelist, codec.decode_node):
        with pytest.raises(CorruptionError, match="page 1234"):
            decode(page, 1234)


def test_overflow_equality():
    a = codec.Overflow(3, 10)
    assert a == codec.Overflow(3, 10)
    assert a != codec.Overflow(3, 11) and a != codec.Overflow(4, 10)
    assert a != b"not an overflow" and a != (3, 10)


def test_node_copy_is_equal_and_independent():
    leaf = Node(True, [b"a", b"b"], [b"1", codec.Overflow(5, 9000)], next=7, prev=3, lsn=11)
    inner = Node(False, [b"m"], children=[4, 5], lsn=2)
    for node in (leaf, inner):
        c = node.copy()
        assert (c.leaf, c.keys, c.vals, c.children, c.next, c.prev, c.size, c.lsn) == (
            node.leaf, node.keys, node.vals, node.children, node.next, node.prev, node.size, node.lsn)
        c.keys.append(b"z")
        c.vals.append(b"z")
        c.children.append(99)
        assert b"z" not in node.keys and b"z" not in node.vals and 99 not in node.children


def test_node_problems_name_each_broken_invariant():
    assert Node(True).lsn == 0 and Node(True).next == 0 and Node(True).prev == 0
    assert Node(True, [b"a", b"b"], [b"1", b"2"]).check_invariants() == []
    assert Node(True, [b"a", b"a"], [b"1", b"2"]).check_invariants() == ["keys not strictly ascending"]
    assert Node(True, [b"b", b"a"], [b"1", b"2"]).check_invariants() == ["keys not strictly ascending"]
    sized = Node(True, [b"a"], [b"1"])
    sized.size = 5
    assert sized.check_invariants() == [f"size 5 != computed {sized.compute_size()}"]
    big = Node(True, [b"a"], [b"1"])
    big.size = big.compute_size()
    big.vals = [b"x" * codec.USABLE]
    big.size = big.compute_size()
    assert big.check_invariants() == ["inline cell larger than MAX_LEAF_CELL", f"size {big.size} exceeds page"]
    uneven = Node(True, [b"a", b"b"], [b"1"])
    assert uneven.check_invariants() == ["leaf keys/vals length mismatch"]
    assert Node(False, [b"m"], children=[4]).check_invariants() == ["internal children != keys + 1"]
    assert Node(False, [b"m"], children=[4, 0]).check_invariants() == ["internal node points at page 0"]


def test_encoded_node_header_and_cell_kinds():
    page = bytearray(b"\xff" * PAGE_SIZE)
    leaf = Node(True, [b"a", b"b"], [b"12", codec.Overflow(77, 9000)], next=8, prev=6, lsn=5)
    codec.encode_node(leaf, page)
    kind, flags, slots, free_start, free_end, garbage, reserved, lsn, nxt, prev = _header(page)
    assert (kind, flags, slots, free_start, garbage, reserved, lsn, nxt, prev) == (
        LEAF, 0, 2, HEADER_SIZE + 4, 0, 0, 5, 8, 6)
    assert free_end == PAGE_SIZE - leaf.size + 4  # cells only: the slots sit below free_start
    cells = []
    for i in range(2):
        (off,) = struct.unpack_from("<H", page, HEADER_SIZE + 2 * i)
        cells.append(struct.unpack_from("<HBI", page, off))
    assert cells == [(1, 0, 2), (1, 1, 9000)], "kind 0 inline, kind 1 overflow (format table)"
    inner = Node(False, [b"m"], children=[4, 5], lsn=2)
    codec.encode_node(inner, page)
    kind, flags, slots, _, _, garbage, reserved, lsn, nxt, prev = _header(page)
    assert (kind, flags, slots, garbage, reserved, lsn, nxt, prev) == (INTERNAL, 0, 1, 0, 0, 2, 0, 4)


def test_meta_trees_size_is_the_format_tables():
    # per tree: name_len u8 | name | root u32 | count u64
    assert metapage.Meta.trees_size({}) == 0
    assert metapage.Meta.trees_size({"ab": (1, 2), "é": (3, 4)}) == (1 + 2 + 12) + (1 + 2 + 12)


def test_decoders_name_the_page_they_refuse():
    free = bytearray(PAGE_SIZE)
    codec.encode_freelist([3], 0, free)
    with pytest.raises(CorruptionError, match="page 55"):
        codec.decode_overflow(free, 55)
    with pytest.raises(CorruptionError, match="page 56"):
        codec.leaf_search(free, b"k", 56)
    leaf = bytearray(PAGE_SIZE)
    codec.encode_node(Node(True, [b"k"], [b"v"]), leaf)
    struct.pack_into("<H", leaf, HEADER_SIZE, PAGE_SIZE - 3)  # slot 0: a cell header off the page
    codec.seal(leaf)
    with pytest.raises(CorruptionError, match="page 57: cell overruns page"):
        codec.leaf_search(leaf, b"k", 57)


def test_contract_helpers():
    # the contracts in codec.py and tests/slotted.py are only as strong as these
    assert slotted._ascending([b"a", b"b", b"c"])
    assert not slotted._ascending([b"a", b"a"])
    assert not slotted._ascending([b"a", b"c", b"b"])
    page = bytearray(PAGE_SIZE)
    codec.encode_node(Node(True, [b"a"], [b"1"]), page)
    assert codec.accounting_ok(page)
    struct.pack_into("<H", page, 12, 3)  # garbage that is not there
    assert not codec.accounting_ok(page)


def _first_cell(page: bytearray) -> int:
    return struct.unpack_from("<H", page, HEADER_SIZE)[0]


def test_decode_node_refuses_cells_running_off_the_page():
    leaf = bytearray(PAGE_SIZE)
    codec.encode_node(Node(True, [b"k"], [b"v"]), leaf)
    off = _first_cell(leaf)
    struct.pack_into("<I", leaf, off + 3, PAGE_SIZE)  # an inline value longer than the page
    codec.seal(leaf)
    with pytest.raises(CorruptionError, match="page 60: cell overruns page"):
        codec.decode_node(leaf, 60)
    inner = bytearray(PAGE_SIZE)
    codec.encode_node(Node(False, [b"m"], children=[4, 5]), inner)
    off = _first_cell(inner)
    struct.pack_into("<H", inner, off, PAGE_SIZE - off - 6 + 1)  # a key one byte past the page
    codec.seal(inner)
    with pytest.raises(CorruptionError, match="page 61: cell overruns page"):
        codec.decode_node(inner, 61)


def test_decoded_internal_node_has_no_values_or_links():
    page = bytearray(PAGE_SIZE)
    codec.encode_node(Node(False, [b"m"], children=[4, 5]), page)
    node = codec.decode_node(page, 3)
    assert (node.keys, node.children, node.vals, node.next, node.prev) == ([b"m"], [4, 5], [], 0, 0)


def test_new_meta_and_its_page():
    meta = metapage.Meta()
    assert (meta.page_count, meta.freelist_head, meta.free_count, meta.checkpoint_lsn, meta.trees) == (
        1, 0, 0, 0, {})
    page = bytearray(b"\xff" * PAGE_SIZE)
    meta.checkpoint_lsn = 9
    meta.trees = {"t": (2, 3)}
    metapage.encode_meta(meta, page)
    assert _header(page) == (codec.META, 0, 0, 0, 0, 0, 0, 9, 0, 0)
    assert struct.unpack_from("<HH", page, 60) == (1, 0), "tree_count, then reserved 0"


def test_meta_trees_filling_the_page_exactly():
    # 14 names of 255 bytes (268 bytes a tree) and two to make up the rest
    trees = {f"{i:02d}".ljust(255, "n"): (i + 1, i) for i in range(14)}
    rest = metapage.META_TREES_ROOM - metapage.Meta.trees_size(trees) - 2 * 13
    assert 2 <= rest <= 2 * 255
    trees["y" * (rest // 2)] = (98, 1)
    trees["z" * (rest - rest // 2)] = (99, 1)
    assert metapage.Meta.trees_size(trees) == metapage.META_TREES_ROOM
    page = bytearray(PAGE_SIZE)
    metapage.encode_meta(metapage.Meta(page_count=100, trees=trees), page)
    assert metapage.decode_meta(page).trees == trees


# -- leaf_search's refusals, exactly (mutation testing: each bound weakened survived) --

def _one_leaf(keys: list[bytes], vals: list[bytes]) -> tuple[bytearray, dict[bytes, int]]:
    """A sealed leaf page and each key's cell offset."""
    page = bytearray(PAGE_SIZE)
    codec.encode_node(Node(True, keys, vals), page)
    slots = struct.unpack_from(f"<{len(keys)}H", page, HEADER_SIZE)
    return page, {bytes(page[off + 7 : off + 7 + page[off]]): off for off in slots}


def _set_cell(page: bytearray, off: int, klen: int | None = None, kind: int | None = None,
              vlen: int | None = None) -> bytearray:
    old = struct.unpack_from("<HBI", page, off)
    struct.pack_into("<HBI", page, off, *(new if new is not None else was
                                          for new, was in zip((klen, kind, vlen), old, strict=True)))
    codec.seal(page)
    return page


def test_leaf_search_refuses_an_inline_value_running_past_the_page():
    # the cell of b"k" ends the page: a value length of 100 bytes runs 90
    # bytes past it, though 1 + 100 bytes would fit a cell
    page, at = _one_leaf([b"k"], [b"v" * 10])
    assert at[b"k"] + 7 + 1 + 10 == PAGE_SIZE
    _set_cell(page, at[b"k"], vlen=100)
    with pytest.raises(CorruptionError, match=r"^page 7: cell overruns page or exceeds MAX_LEAF_CELL$"):
        codec.leaf_search(page, b"k", 7)


def test_leaf_search_refuses_an_inline_value_larger_than_a_cell_holds():
    # 1 + 1345 bytes: one more than the largest leaf cell's key and value,
    # while the cell still lies inside the page
    page, at = _one_leaf([b"k", b"z"], [b"v" * 1344, b"w"])
    assert at[b"k"] + 7 + 1 + 1345 <= PAGE_SIZE
    _set_cell(page, at[b"k"], vlen=1345)
    with pytest.raises(CorruptionError, match=r"^page 7: cell overruns page or exceeds MAX_LEAF_CELL$"):
        codec.leaf_search(page, b"k", 7)


def test_leaf_search_finds_the_largest_inline_value():
    page, _ = _one_leaf([b"k"], [b"v" * 1344])  # 1 + 1344 bytes: MAX_LEAF_CELL exactly
    assert 9 + 1 + 1344 == codec.MAX_LEAF_CELL
    assert codec.leaf_search(page, b"k", 7) == b"v" * 1344


def test_leaf_search_names_the_page_and_the_cell_it_refuses():
    page, at = _one_leaf([b"k"], [b"v"])
    with pytest.raises(CorruptionError, match=r"^page 7: leaf cell of unknown kind 2$"):
        codec.leaf_search(_set_cell(bytearray(page), at[b"k"], kind=2), b"k", 7)
    with pytest.raises(CorruptionError, match=r"^page 7: leaf cell of a 0-byte key overruns the page or the key size$"):
        codec.leaf_search(_set_cell(bytearray(page), at[b"k"], klen=0), b"k", 7)


def test_node_check_invariants_names_a_key_of_impossible_size():
    # an empty first key, or any key over MAX_KEY_SIZE, each alone
    for keys in ([b""], [b"a", b"b" * (codec.MAX_KEY_SIZE + 1)], [b"k" * (codec.MAX_KEY_SIZE + 1)]):
        node = Node(False, keys, children=list(range(2, len(keys) + 3)))
        assert node.check_invariants() == ["key outside 1..MAX_KEY_SIZE bytes"], keys
    largest = Node(False, [b"k" * codec.MAX_KEY_SIZE], children=[2, 3])
    assert largest.check_invariants() == []


# -- decode_node's refusals, exactly (the same bounds as leaf_search's, and each message) --

def test_decode_node_refuses_an_inline_value_past_the_page_or_larger_than_a_cell():
    page, at = _one_leaf([b"k"], [b"v" * 10])  # the cell ends the page
    past = _set_cell(bytearray(page), at[b"k"], vlen=100)
    page, at = _one_leaf([b"k", b"z"], [b"v" * 1344, b"w"])
    larger = _set_cell(bytearray(page), at[b"k"], vlen=1345)  # inside the page
    for bad in (past, larger):
        with pytest.raises(CorruptionError, match=r"^page 7: cell overruns page or exceeds MAX_LEAF_CELL$"):
            codec.decode_node(bad, 7)
    assert codec.decode_node(page, 7).vals == [b"v" * 1344, b"w"]


def _slot0_at(page: bytearray, off: int) -> bytearray:
    struct.pack_into("<H", page, HEADER_SIZE, off)
    codec.seal(page)
    return page


def _child0(page: bytearray) -> bytearray:
    struct.pack_into("<I", page, 28, 0)  # prev: an internal node's child 0
    codec.seal(page)
    return page


@pytest.mark.parametrize(("craft", "message"), [
    (lambda page, off: _set_cell(page, off, klen=codec.MAX_KEY_SIZE + 1), "a key of 1025 bytes"),
    (lambda page, off: _set_cell(page, off, kind=2), "leaf cell of unknown kind 2"),
    (lambda page, off: _set_cell(page, off, klen=0), "an empty key"),
    (lambda page, off: _slot0_at(page, PAGE_SIZE - 2), "cell overruns page"),
], ids=["key-over-max", "unknown-kind", "empty-key", "cell-past-the-page"])
def test_decode_node_names_the_page_and_what_it_refuses_in_a_leaf(craft, message):
    page, at = _one_leaf([b"k"], [b"v"])
    with pytest.raises(CorruptionError, match=rf"^page 7: {message}$"):
        codec.decode_node(craft(page, at[b"k"]), 7)


def test_decode_node_names_an_internal_node_pointing_at_page_0():
    page = bytearray(PAGE_SIZE)
    codec.encode_node(Node(False, [b"m"], children=[2, 3]), page)
    with pytest.raises(CorruptionError, match=r"^page 7: internal node points at page 0$"):
        codec.decode_node(_child0(page), 7)

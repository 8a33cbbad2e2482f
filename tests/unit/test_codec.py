"""Property tests of `engine.codec`: round trips, CRC, split bounds, and the
in-place slotted-page algebra of tests/slotted.py (test code) over the
engine's page layout and accounting.

Every codec call that has PEP 316 contracts goes through `checked`, which
evaluates the function's own docstring `pre:`/`post:` conditions on the
concrete inputs hypothesis draws. So the same contracts CrossHair explores
symbolically (`tests/verify.py`) are also asserted here on sampled inputs,
and each test adds its own independent assertions beside them.
"""

from __future__ import annotations

import copy
import struct
import types
import zlib
from bisect import bisect_left
from collections import Counter

import pytest
import slotted
from crosshair.condition_parser import Pep316Parser
from crosshair.fnutil import FunctionInfo
from hypothesis import example, given, settings
from hypothesis import strategies as st
from strategies import filled, keys, tree_names

from engine import codec, metapage
from engine.codec import (
    FREELIST,
    FREELIST_CAPACITY,
    HEADER_SIZE,
    INTERNAL,
    INTERNAL_MIN_FILL,
    LEAF,
    LEAF_MIN_FILL,
    MAX_INTERNAL_CELL,
    MAX_KEY_SIZE,
    MAX_LEAF_CELL,
    META,
    OVERFLOW,
    OVERFLOW_PAYLOAD,
    PAGE_SIZE,
    USABLE,
    Node,
    Overflow,
)
from engine.errors import CorruptionError, NotADatabaseError
from engine.metapage import Meta

U32 = 2**32
DECODE_ERRORS = (CorruptionError, NotADatabaseError)

# -- contracts, evaluated concretely ------------------------------------------

_PARSER = Pep316Parser()
_CONDITIONS: dict = {}


def _conditions(fn):
    if fn not in _CONDITIONS:
        cond = _PARSER.get_fn_conditions(FunctionInfo.from_fn(fn))
        assert cond is not None and not cond.fn_syntax_messages, (fn.__name__, cond)
        _CONDITIONS[fn] = cond
    return _CONDITIONS[fn]


def _snapshot(value):
    """The argument as it was before the call, for `__old__` (memoryviews cannot be copied)."""
    return bytes(value) if isinstance(value, memoryview) else copy.deepcopy(value)


def checked(fn, *args, **kwargs):
    """Call `fn`, asserting its docstring preconditions before and postconditions after."""
    cond = _conditions(fn)
    bound = cond.sig.bind(*args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    for pre in cond.pre:
        assert pre.evaluate(arguments), f"{fn.__name__}: pre `{pre.expr_source}` does not hold"
    old = types.SimpleNamespace(**{k: _snapshot(v) for k, v in arguments.items()})
    result = fn(*args, **kwargs)
    env = {**arguments, "__return__": result, "_": result, "__old__": old}
    for post in cond.post:
        assert post.evaluate(env), f"{fn.__name__}: post `{post.expr_source}` (line {post.line}) fails"
    return result


CONTRACTED = [
    codec.inline_fits, codec.seal, codec.verify, codec.set_lsn, codec.encode_node,
    codec.split_point, codec.internal_split_point, metapage.encode_meta, codec.encode_overflow,
    codec.encode_freelist, slotted.init_slotted, slotted.slotted_search, codec.free_space,
    slotted.slotted_compact, slotted.slotted_insert, slotted.slotted_delete,
]


@pytest.mark.parametrize("fn", CONTRACTED, ids=lambda f: f.__name__)
def test_contracts_parse(fn):
    cond = _conditions(fn)
    assert cond.post and all(p.evaluate is not None for p in [*cond.pre, *cond.post])


# -- strategies ----------------------------------------------------------------

u32 = st.integers(0, U32 - 1)
lsns = st.integers(0, 2**64 - 1)


def _inline_or_overflow(draw, key: bytes):
    if draw(st.integers(0, 4)) == 0:
        return Overflow(draw(u32), draw(u32))
    room = MAX_LEAF_CELL - 9 - len(key)
    return draw(st.binary(max_size=min(room, 64)) | st.integers(0, room).map(bytes))


@st.composite
def leaf_nodes(draw) -> Node:
    """A leaf that fits a page: ascending keys, inline or overflow values."""
    ks = sorted(set(draw(st.lists(keys(), max_size=40))))
    kept, vals, size = [], [], 0
    for k in ks:
        if len(k) > MAX_LEAF_CELL - 13:
            continue
        v = _inline_or_overflow(draw, k)
        cell = codec.leaf_cell_size(k, v)
        if size + cell > USABLE:
            break
        kept.append(k)
        vals.append(v)
        size += cell
    return Node(True, kept, vals, None, draw(u32), draw(u32), draw(lsns))


@st.composite
def internal_nodes(draw) -> Node:
    ks = sorted(set(draw(st.lists(keys(), max_size=40))))
    kept, size = [], 0
    for k in ks:
        if size + 8 + len(k) > USABLE:
            break
        kept.append(k)
        size += 8 + len(k)
    children = draw(st.lists(st.integers(1, U32 - 1), min_size=len(kept) + 1, max_size=len(kept) + 1))
    return Node(False, kept, None, children, 0, 0, draw(lsns))


def _fields(node: Node) -> tuple:
    if node.leaf:
        return (True, [bytes(k) for k in node.keys], node.vals, node.next, node.prev, node.lsn)
    return (False, [bytes(k) for k in node.keys], node.children, node.lsn)


def _encoded(node: Node) -> bytearray:
    page = bytearray(PAGE_SIZE)
    checked(codec.encode_node, node, page)
    return page


# -- node pages ------------------------------------------------------------------

@given(st.one_of(leaf_nodes(), internal_nodes()))
def test_node_round_trip_and_exact_accounting(node):
    assert node.check_invariants() == []
    page = _encoded(node)
    back = codec.decode_node(page, 7)
    assert _fields(back) == _fields(node)
    assert back.size == node.size and back.check_invariants() == []
    assert codec.page_type(page) == (LEAF if node.leaf else INTERNAL)
    n, fs, fe, garbage = struct.unpack_from("<HHHH", page, 6)
    # header + slot array + cell bytes + garbage + gap == page size
    assert (n, fs, garbage) == (len(node.keys), HEADER_SIZE + 2 * n, 0)
    assert HEADER_SIZE + 2 * n + (PAGE_SIZE - fe) + garbage + (fe - fs) == PAGE_SIZE
    assert PAGE_SIZE - fe == node.size - 2 * n
    assert codec.accounting_ok(page) and codec.free_space(page) == USABLE - node.size


@given(leaf_nodes(), st.data())
def test_leaf_search_finds_what_decoding_finds(node, data):
    """The undecoded search of a get agrees with the decoded leaf, for keys
    present and absent (before, between and after the stored ones)."""
    page = _encoded(node)
    stored = dict(zip(node.keys, node.vals, strict=True))
    probes = list(stored) + [data.draw(keys()) for _ in range(3)]
    for key in probes:
        assert codec.leaf_search(page, key, 7) == stored.get(key)


def test_leaf_search_refuses_damage_and_other_pages():
    page = _encoded(Node(True, [b"a", b"b"], [b"1", b"2"]))
    assert codec.leaf_search(page, b"b") == b"2" and codec.leaf_search(page, b"c") is None
    flipped = bytearray(page)
    flipped[PAGE_SIZE - 1] ^= 1
    with pytest.raises(CorruptionError, match="checksum"):
        codec.leaf_search(flipped, b"a")
    with pytest.raises(CorruptionError, match="not a leaf"):
        codec.leaf_search(_encoded(Node(False, [b"m"], None, [2, 3])), b"a")
    off = struct.unpack_from("<H", page, HEADER_SIZE + 2)[0]  # the cell of b"b"
    struct.pack_into("<I", page, off + 3, PAGE_SIZE)  # its value runs off the page
    codec.seal(page)
    with pytest.raises(CorruptionError, match="overruns"):
        codec.leaf_search(page, b"b")


@given(st.one_of(leaf_nodes(), internal_nodes()))
def test_node_encoding_is_canonical_and_fills_every_byte(node):
    """Encoding ignores what the page held before: stale bytes never leak into it."""
    dirty = bytearray(b"\xa5" * PAGE_SIZE)
    codec.encode_node(node, dirty)
    assert dirty == _encoded(node)


def test_node_of_exactly_one_page_fits_and_one_byte_more_does_not():
    big = MAX_LEAF_CELL - 9 - 1  # four cells, none over MAX_LEAF_CELL, filling USABLE exactly
    rest = USABLE - 2 * MAX_LEAF_CELL - (9 + 1) - 9 - 1
    node = Node(True, [b"a", b"b", b"c", b"d"], [b"v" * big, b"v" * big, b"v" * rest, b""])
    assert node.size == USABLE
    page = _encoded(node)
    assert codec.free_space(page) == 0 and struct.unpack_from("<HH", page, 8) == (40, 40)
    over = Node(True, node.keys, node.vals[:3] + [b"v"])
    assert over.check_invariants() == [f"size {USABLE + 1} exceeds page"]
    with pytest.raises(AssertionError, match="encode_node"):
        codec.encode_node(over, bytearray(PAGE_SIZE))


def test_three_largest_cells_fit_a_page():
    big = MAX_KEY_SIZE
    leaf = Node(True, [bytes([i]) * big for i in (1, 2, 3)],
                [b"x" * (MAX_LEAF_CELL - 9 - big)] * 3)
    internal = Node(False, [bytes([i]) * big for i in (1, 2, 3)], None, [5, 6, 7, 8])
    for node in (leaf, internal):
        assert _fields(codec.decode_node(_encoded(node))) == _fields(node)
    assert leaf.size == 3 * MAX_LEAF_CELL and internal.size == 3 * MAX_INTERNAL_CELL


@given(st.integers(1, MAX_KEY_SIZE), st.integers(0, 2 * PAGE_SIZE))
@example(1, MAX_LEAF_CELL - 10)
@example(1, MAX_LEAF_CELL - 9)
def test_inline_fits_matches_leaf_cell_size(klen, vlen):
    fits = checked(codec.inline_fits, klen, vlen)
    assert fits == (codec.leaf_cell_size(b"k" * klen, b"v" * vlen) <= MAX_LEAF_CELL)


# -- metadata, overflow and free-list pages ------------------------------------------

@st.composite
def metas(draw) -> Meta:
    """A metadata page the engine could write (`Meta.problems` is empty)."""
    count = draw(st.integers(1, U32 - 1))
    entries = st.integers(1, count - 1).flatmap(
        lambda root: st.tuples(st.just(root), st.integers(0, (count - 1) * codec.MAX_LEAF_KEYS)))
    trees = draw(st.dictionaries(tree_names(), st.just((0, 0)) | entries if count > 1 else st.just((0, 0)),
                                 max_size=12))
    while Meta.trees_size(trees) > metapage.META_TREES_ROOM:
        trees.popitem()
    return Meta(count, draw(st.integers(0, count - 1)), draw(st.integers(0, count - 1)), draw(lsns), trees)


@given(metas())
def test_meta_round_trip(meta):
    page = bytearray(PAGE_SIZE)
    checked(metapage.encode_meta, meta, page)
    back = metapage.decode_meta(page)
    assert (back.page_count, back.freelist_head, back.free_count, back.checkpoint_lsn, back.trees) == (
        meta.page_count, meta.freelist_head, meta.free_count, meta.checkpoint_lsn, meta.trees)
    assert codec.page_type(page) == META and metapage.has_magic(page)


def test_meta_with_a_full_tree_table_round_trips():
    names = [f"{i:03d}" + "t" * 251 for i in range(15)]  # 15 * 268 = 4020 <= 4024 bytes
    meta = Meta(20, 3, 2, 5, {n: (i + 1, i) for i, n in enumerate(names)})
    assert Meta.trees_size(meta.trees) <= metapage.META_TREES_ROOM
    page = bytearray(PAGE_SIZE)
    checked(metapage.encode_meta, meta, page)
    assert metapage.decode_meta(page).trees == meta.trees


@given(st.binary(max_size=300) | st.integers(0, OVERFLOW_PAYLOAD).map(lambda n: b"\x7f" * n), u32, lsns)
@example(b"z" * OVERFLOW_PAYLOAD, U32 - 1, 2**64 - 1)
def test_overflow_round_trip(payload, next_page, lsn):
    page = bytearray(b"\xee" * PAGE_SIZE)
    checked(codec.encode_overflow, memoryview(payload), next_page, page, lsn)
    assert codec.decode_overflow(page, 3) == (payload, next_page)
    assert codec.page_lsn(page) == lsn and page[HEADER_SIZE + len(payload):] == bytes(OVERFLOW_PAYLOAD - len(payload))


@given(st.lists(u32, max_size=FREELIST_CAPACITY), u32)
@example([U32 - 1] * FREELIST_CAPACITY, 0)
def test_freelist_round_trip(ids, next_page):
    page = bytearray(PAGE_SIZE)
    checked(codec.encode_freelist, ids, next_page, page)
    assert codec.decode_freelist(page, 4) == (ids, next_page)


@given(lsns, st.integers(0, 2**16))
def test_set_lsn_reseals(lsn, seed):
    page = bytearray(filled(seed, PAGE_SIZE))
    checked(codec.set_lsn, page, lsn)
    assert codec.page_lsn(page) == lsn and codec.verify(page)


# -- slotted pages: insert / delete / compact / search against a dict -------------------

small_keys = st.binary(min_size=1, max_size=3)
slot_values = st.one_of(st.binary(max_size=8), st.integers(0, 1500).map(lambda n: b"\x01" * n))
slot_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), small_keys, slot_values),
        st.tuples(st.just("del"), small_keys, st.just(b"")),
        st.tuples(st.just("compact"), st.just(b""), st.just(b"")),
    ),
    max_size=40,
)


def _cell(k: bytes, v: bytes) -> int:
    return 9 + len(k) + len(v)


def _assert_page_matches(page: bytearray, model: dict) -> None:
    cells = slotted.slotted_cells(page)
    assert [k for k, _ in cells] == sorted(model)  # sorted and unique
    assert dict(cells) == model
    assert codec.accounting_ok(page) and codec.verify(page)
    assert codec.free_space(page) == USABLE - sum(_cell(k, v) for k, v in model.items())


@given(slot_ops)
@settings(max_examples=150)
def test_slotted_operations_agree_with_a_dict(ops):
    page = bytearray(PAGE_SIZE)
    checked(slotted.init_slotted, page)
    model: dict[bytes, bytes] = {}
    for op, key, value in ops:
        if op == "put":
            room = codec.free_space(page) + (_cell(key, model[key]) if key in model else 0)
            ok = checked(slotted.slotted_insert, page, key, value)
            assert ok == (_cell(key, value) <= room)
            if ok:
                model[key] = value
        elif op == "del":
            assert checked(slotted.slotted_delete, page, key) == (key in model)
            model.pop(key, None)
        else:
            before = Counter(slotted.slotted_cells(page))
            checked(slotted.slotted_compact, page)
            assert Counter(slotted.slotted_cells(page)) == before  # the multiset survives
            assert struct.unpack_from("<H", page, 12)[0] == 0  # no garbage left
        _assert_page_matches(page, model)
    for probe in [b"", b"\x00", b"\xff" * 4, *model]:
        found, idx = checked(slotted.slotted_search, page, probe)
        assert (found, idx) == (probe in model, bisect_left(sorted(model), probe))
    if all(_cell(k, v) <= MAX_LEAF_CELL for k, v in model.items()):
        assert codec.decode_node(page).keys == sorted(model)
    else:  # the slotted algebra takes any cell that fits; a tree page holds none over MAX_LEAF_CELL
        with pytest.raises(CorruptionError, match="MAX_LEAF_CELL"):
            codec.decode_node(page)


@pytest.mark.parametrize("slack", [10, 11, 12, 100, 1353])
def test_slotted_insert_accepts_an_exact_fit_and_rejects_one_byte_more(slack):
    """The free-space bound at its edge: a cell of exactly `slack` bytes fits."""
    page = bytearray(PAGE_SIZE)
    slotted.init_slotted(page)
    assert slotted.slotted_insert(page, b"\x00", bytes(USABLE - _cell(b"\x00", b"") - slack))
    assert codec.free_space(page) == slack
    before = bytes(page)
    assert not checked(slotted.slotted_insert, page, b"\x01", bytes(slack - 10 + 1))
    assert page == before
    assert checked(slotted.slotted_insert, page, b"\x01", bytes(slack - 10))
    assert codec.free_space(page) == 0 and codec.accounting_ok(page)


def test_slotted_insert_compacts_when_garbage_blocks_the_gap():
    page = bytearray(PAGE_SIZE)
    slotted.init_slotted(page)
    for k in (b"a", b"b", b"c"):
        assert slotted.slotted_insert(page, k, b"x" * 1300)
    assert slotted.slotted_delete(page, b"b")
    n, fs, fe, garbage = struct.unpack_from("<HHHH", page, 6)
    assert garbage == 7 + 1 + 1300 and fe - fs < 1300 < codec.free_space(page)
    assert checked(slotted.slotted_insert, page, b"d", b"y" * 1300)
    assert struct.unpack_from("<H", page, 12)[0] == 0  # compaction dropped the garbage
    assert dict(slotted.slotted_cells(page)) == {b"a": b"x" * 1300, b"c": b"x" * 1300, b"d": b"y" * 1300}


def test_slotted_replace_reuses_the_old_cells_room():
    page = bytearray(PAGE_SIZE)
    slotted.init_slotted(page)
    assert slotted.slotted_insert(page, b"k", bytes(USABLE - 10))
    assert codec.free_space(page) == 0
    assert checked(slotted.slotted_insert, page, b"k", b"new")  # fits only by replacing
    assert slotted.slotted_cells(page) == [(b"k", b"new")]
    assert not checked(slotted.slotted_insert, page, b"k", bytes(USABLE - 9))


# -- CRC: every single-bit flip is rejected --------------------------------------------

def _full_leaf_page() -> bytearray:
    ks = [bytes([i, j]) for i in range(1, 40) for j in (7, 9)]
    node = Node(True, ks[:60], [bytes([i % 251]) * 50 for i in range(60)], None, 11, 12, 13)
    return _encoded(node)


def test_crc_rejects_every_single_bit_flip_of_a_page():
    """All 32768 bit positions of one page, header and CRC field included."""
    page = _full_leaf_page()
    assert codec.verify(page)
    missed = []
    for byte in range(PAGE_SIZE):
        for bit in range(8):
            page[byte] ^= 1 << bit
            if codec.verify(page):
                missed.append(byte * 8 + bit)
            page[byte] ^= 1 << bit
    assert missed == [] and codec.verify(page)


def test_crc32_detects_every_single_bit_error_on_any_page():
    """With `test_crc_rejects_every_single_bit_flip_of_a_page` this covers
    every page, not one: CRC-32 is affine over XOR (`test_crc_is_affine`), so
    crc(P ^ e) == crc(P) iff crc(e) == crc(0), independent of P. Check that
    no single-bit error pattern over the 4092 checksummed bytes has crc(0)'s CRC."""
    zero = bytearray(PAGE_SIZE - 4)
    crc_zero = zlib.crc32(zero)
    bad = []
    for byte in range(len(zero)):
        for bit in range(8):
            zero[byte] = 1 << bit
            if zlib.crc32(zero) == crc_zero:
                bad.append(byte * 8 + bit)
        zero[byte] = 0
    assert bad == []


@given(st.binary(min_size=64, max_size=64), st.binary(min_size=64, max_size=64),
       st.binary(min_size=64, max_size=64))
def test_crc_is_affine(a, b, c):
    xor = bytes(x ^ y ^ z for x, y, z in zip(a, b, c, strict=True))
    assert zlib.crc32(xor) == zlib.crc32(a) ^ zlib.crc32(b) ^ zlib.crc32(c)


def _sealed_pages():
    meta = bytearray(PAGE_SIZE)
    metapage.encode_meta(Meta(5, 4, 1, 99, {"default": (2, 10), "other": (3, 0)}), meta)
    ovf = bytearray(PAGE_SIZE)
    codec.encode_overflow(b"payload" * 100, 8, ovf, 3)
    free = bytearray(PAGE_SIZE)
    codec.encode_freelist([4, 5, 6], 0, free)
    internal = _encoded(Node(False, [b"m", b"t"], None, [2, 3, 4]))
    in_place = bytearray(PAGE_SIZE)  # written by the in-place algebra, read by the engine's decoder
    slotted.init_slotted(in_place)
    slotted.slotted_insert(in_place, b"key", b"value")
    return {
        "meta": (meta, metapage.decode_meta),
        "overflow": (ovf, codec.decode_overflow),
        "freelist": (free, codec.decode_freelist),
        "internal": (internal, codec.decode_node),
        "leaf": (_full_leaf_page(), codec.decode_node),
        "slotted": (in_place, codec.decode_node),
    }


PAGES = _sealed_pages()


@pytest.mark.parametrize("kind", sorted(PAGES))
@given(bit=st.integers(0, PAGE_SIZE * 8 - 1))
@example(bit=0)
@example(bit=PAGE_SIZE * 8 - 1)
def test_decoders_reject_a_flipped_bit(kind, bit):
    page, decode = PAGES[kind]
    decode(page)
    flipped = bytearray(page)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not checked(codec.verify, flipped)
    with pytest.raises(DECODE_ERRORS):
        decode(flipped)


# -- garbage, truncated and sealed-but-malformed pages ------------------------------------

DECODERS = [codec.decode_node, metapage.decode_meta, codec.decode_overflow, codec.decode_freelist,
            lambda page: codec.leaf_search(page, b"k")]


def _decode_or_typed_error(decode, data) -> object:
    try:
        return decode(data)
    except DECODE_ERRORS:
        return None


@given(st.binary(max_size=PAGE_SIZE + 64) | st.integers(0, PAGE_SIZE + 8).map(bytes))
def test_decoding_garbage_raises_only_typed_errors(data):
    for decode in DECODERS:
        _decode_or_typed_error(decode, data)


@pytest.mark.parametrize("kind", sorted(PAGES))
@given(cut=st.integers(0, PAGE_SIZE - 1))
@example(cut=0)
@example(cut=3)
@example(cut=31)
def test_truncated_pages_are_corrupt(kind, cut):
    page, decode = PAGES[kind]
    assert not codec.verify(page[:cut])
    with pytest.raises(DECODE_ERRORS):
        decode(bytes(page[:cut]))


@given(st.sampled_from(sorted(PAGES)), st.lists(st.tuples(st.integers(4, 200), st.integers(0, 255)), min_size=1, max_size=6))
@settings(max_examples=300)
def test_sealed_but_malformed_pages_raise_typed_errors_or_decode_well_formed(kind, edits):
    """A page whose CRC matches but whose header or slots were rewritten:
    the structure checks must catch it, or what decodes must be well formed."""
    page = bytearray(PAGES[kind][0])
    for pos, byte in edits:
        page[pos] = byte
    codec.seal(page)
    for decode in DECODERS:
        out = _decode_or_typed_error(decode, page)
        if isinstance(out, Node):
            assert all(a < b for a, b in zip(out.keys, out.keys[1:], strict=False)) and out.size <= USABLE
            assert len(out.vals if out.leaf else out.children) == len(out.keys) + (0 if out.leaf else 1)


def test_decode_node_rejects_free_end_past_the_page():
    """A sealed header claiming 3000 slots used to raise a bare struct.error."""
    page = bytearray(PAGE_SIZE)
    struct.pack_into("<BBHHH", page, 4, LEAF, 0, 3000, HEADER_SIZE + 6000, HEADER_SIZE + 6000)
    codec.seal(page)
    with pytest.raises(CorruptionError, match="not a node page"):
        codec.decode_node(page)


def test_decode_node_rejects_an_internal_key_running_off_the_page():
    """It used to return the key silently truncated at the page end."""
    page = _encoded(Node(False, [b"abc"], None, [2, 3]))
    off = struct.unpack_from("<H", page, HEADER_SIZE)[0]
    struct.pack_into("<H", page, off, PAGE_SIZE)  # klen far past the end
    codec.seal(page)
    with pytest.raises(CorruptionError, match="overruns"):
        codec.decode_node(page)


def test_decoders_check_the_page_type():
    for kind, (page, _) in PAGES.items():
        for decode in (codec.decode_overflow, codec.decode_freelist):
            if (kind, decode) in (("overflow", codec.decode_overflow), ("freelist", codec.decode_freelist)):
                continue
            with pytest.raises(CorruptionError, match="type"):
                decode(page)
    with pytest.raises(CorruptionError, match="not a node page"):
        codec.decode_node(PAGES["overflow"][0])
    with pytest.raises(NotADatabaseError):
        metapage.decode_meta(PAGES["leaf"][0])


def test_decode_meta_refuses_other_versions_and_page_sizes():
    for offset, value in ((40, 2), (44, 8192)):
        page = bytearray(PAGES["meta"][0])
        struct.pack_into("<I", page, offset, value)
        codec.seal(page)
        with pytest.raises(NotADatabaseError):
            metapage.decode_meta(page)


def test_decode_overflow_and_freelist_bound_their_counts():
    ovf = bytearray(PAGES["overflow"][0])
    struct.pack_into("<H", ovf, 8, OVERFLOW_PAYLOAD + 1)
    codec.seal(ovf)
    free = bytearray(PAGES["freelist"][0])
    struct.pack_into("<H", free, 6, FREELIST_CAPACITY + 1)
    codec.seal(free)
    with pytest.raises(CorruptionError, match="too large"):
        codec.decode_overflow(ovf)
    with pytest.raises(CorruptionError, match="too large"):
        codec.decode_freelist(free)
    assert codec.page_type(ovf) == OVERFLOW and codec.page_type(free) == FREELIST


# -- split planning ---------------------------------------------------------------------

cell_sizes = st.lists(st.integers(1, MAX_LEAF_CELL), min_size=2, max_size=60)


def _best_gap(sizes: list[int]) -> int:
    total = sum(sizes)
    return min(abs(2 * sum(sizes[:i]) - total) for i in range(1, len(sizes)))


@given(cell_sizes)
@example([1, 1])
@example([MAX_LEAF_CELL, 1, 1, 1])
def test_split_point_is_in_range_and_optimal(sizes):
    i = checked(codec.split_point, sizes)
    assert 1 <= i < len(sizes)
    assert abs(2 * sum(sizes[:i]) - sum(sizes)) == _best_gap(sizes)


@given(st.lists(st.integers(1, MAX_INTERNAL_CELL), min_size=3, max_size=60))
@example([1, 1, 1])
@example([1, 1000, 1, 1])
def test_internal_split_point_is_in_range_and_optimal(sizes):
    m = checked(codec.internal_split_point, sizes)
    assert 1 <= m <= len(sizes) - 2
    gap = abs(sum(sizes[:m]) - sum(sizes[m + 1:]))
    assert gap == min(abs(sum(sizes[:j]) - sum(sizes[j + 1:])) for j in range(1, len(sizes) - 1))


@st.composite
def overfull(draw, smallest: int, largest: int) -> list[int]:
    """Cells of a node that just overflowed: a page's worth plus one more cell."""
    sizes: list[int] = []
    while sum(sizes) <= USABLE:
        sizes.append(draw(st.integers(smallest, largest)))
    return sizes


@given(overfull(10, MAX_LEAF_CELL), st.integers(0, 200))
def test_leaf_split_keeps_every_key_and_both_halves_in_bounds(sizes, salt):
    keys_ = [b"%04d-%d" % (i, salt) for i in range(len(sizes))]
    i = checked(codec.split_point, sizes)
    left, right, sep = keys_[:i], keys_[i:], keys_[i]
    assert left + right == keys_ and all(k < sep for k in left) and right[0] == sep
    for half in (sizes[:i], sizes[i:]):
        assert LEAF_MIN_FILL <= sum(half) <= USABLE


@given(overfull(9, MAX_INTERNAL_CELL))
def test_internal_split_moves_one_separator_up_and_both_halves_in_bounds(sizes):
    keys_ = [b"%05d" % i for i in range(len(sizes))]
    children = list(range(100, 100 + len(sizes) + 1))
    m = checked(codec.internal_split_point, sizes)
    left, sep, right = keys_[:m], keys_[m], keys_[m + 1:]
    lkids, rkids = children[: m + 1], children[m + 1:]
    assert left + [sep] + right == keys_ and lkids + rkids == children
    assert len(lkids) == len(left) + 1 and len(rkids) == len(right) + 1
    assert all(k < sep for k in left) and all(k > sep for k in right)
    for half in (sizes[:m], sizes[m + 1:]):
        assert INTERNAL_MIN_FILL <= sum(half) <= USABLE


def test_split_bounds_hold_at_their_extremes():
    """Largest cells, smallest overflow: the constants' own worst cases."""
    leaf = [MAX_LEAF_CELL, MAX_LEAF_CELL, MAX_LEAF_CELL, USABLE - 3 * MAX_LEAF_CELL + 1]
    i = checked(codec.split_point, leaf)
    assert min(sum(leaf[:i]), sum(leaf[i:])) >= LEAF_MIN_FILL
    internal = [MAX_INTERNAL_CELL] * 3 + [USABLE - 3 * MAX_INTERNAL_CELL + 1]
    m = checked(codec.internal_split_point, internal)
    assert min(sum(internal[:m]), sum(internal[m + 1:])) >= INTERNAL_MIN_FILL


@pytest.mark.parametrize("klen", [0, MAX_KEY_SIZE + 1, PAGE_SIZE])
def test_leaf_search_refuses_a_key_length_no_cell_can_have(klen):
    """A cell whose key runs off the page (or is empty, or too long) under a
    valid checksum is damage, never a quiet "absent": with the key cut at the
    page's end the search would compare a stump and answer None."""
    page = _encoded(Node(True, [b"a", b"b"], [b"1", b"2"]))
    off = struct.unpack_from("<H", page, HEADER_SIZE + 2)[0]  # the cell of b"b"
    struct.pack_into("<H", page, off, klen)
    codec.seal(page)
    for probe in (b"b", b"c", b"zz"):
        with pytest.raises(CorruptionError):
            codec.leaf_search(page, probe)

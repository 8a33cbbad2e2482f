"""`engine.metapage`, exactly: which metadata fields `Meta.check_invariants`
refuses at each boundary and with which words, and what `decode_meta` says
when it refuses a page (found by mutation testing after the metadata page
moved out of the codec, docs/verification.md "Mutation score"). The round
trips are in test_codec.py.
"""

from __future__ import annotations

import struct

import pytest

from engine import codec
from engine.codec import MAX_LEAF_KEYS, PAGE_SIZE
from engine.errors import CorruptionError, NotADatabaseError
from engine.metapage import Meta, decode_meta, encode_meta


def _counts(count: int, head: int, free: int) -> str:
    return f"page count {count}, free-list head {head}, free count {free} are inconsistent"


def _tree(name: str, root: int, keys: int, count: int) -> str:
    return f"tree {name!r} (root {root}, {keys} keys) is impossible in {count} pages"


@pytest.mark.parametrize(("meta", "problems"), [
    (Meta(5, 4, 4), []),
    (Meta(0, 0, 0), [_counts(0, 0, 0)]),
    (Meta(5, 5, 0), [_counts(5, 5, 0)]),  # the head alone at the page count
    (Meta(5, 0, 5), [_counts(5, 0, 5)]),  # the free count alone at the page count
    (Meta(5, trees={"t": (4, 0), "n" * 255: (0, 0)}), []),
    (Meta(5, trees={"t": (5, 1)}), [_tree("t", 5, 1, 5)]),  # a root at the page count
    (Meta(5, trees={"": (1, 0)}), [_tree("", 1, 0, 5)]),
    (Meta(5, trees={"n" * 256: (1, 0)}), [_tree("n" * 256, 1, 0, 5)]),
    (Meta(5, trees={"t": (0, 1)}), [_tree("t", 0, 1, 5)]),  # keys without a root
    (Meta(3, trees={"t": (1, 2 * MAX_LEAF_KEYS)}), []),  # every page but page 0 a full leaf
    (Meta(3, trees={"t": (1, 2 * MAX_LEAF_KEYS + 1)}), [_tree("t", 1, 2 * MAX_LEAF_KEYS + 1, 3)]),
], ids=["ok", "no-pages", "head", "free-count", "ok-trees", "root", "empty-name", "long-name",
        "keys-without-root", "most-keys", "too-many-keys"])
def test_meta_check_invariants_at_each_boundary(meta, problems):
    assert meta.check_invariants() == problems


def _page(meta: Meta) -> bytearray:
    page = bytearray(PAGE_SIZE)
    encode_meta(Meta(meta.page_count), page)  # a valid page, then the fields written as given
    struct.pack_into("<III", page, 48, meta.page_count, meta.freelist_head, meta.free_count)
    pos = 72
    for name, (root, count) in meta.trees.items():
        raw = name.encode()
        page[pos] = len(raw)
        page[pos + 1 : pos + 1 + len(raw)] = raw
        struct.pack_into("<IQ", page, pos + 1 + len(raw), root, count)
        pos += 1 + len(raw) + 12
    struct.pack_into("<H", page, 60, len(meta.trees))
    codec.seal(page)
    return page


def test_decode_meta_refuses_what_check_invariants_refuses_with_every_problem():
    page = _page(Meta(5, 5, 0, trees={"t": (0, 1)}))
    with pytest.raises(CorruptionError) as err:
        decode_meta(page)
    assert str(err.value) == "metadata page: " + _counts(5, 5, 0) + "; " + _tree("t", 0, 1, 5)


def test_decode_meta_names_the_tree_listed_twice_and_a_malformed_table():
    page = _page(Meta(5))  # the same name twice: a dict cannot hold it, so written here
    struct.pack_into("<B1sIQB1sIQ", page, 72, 1, b"t", 1, 0, 1, b"t", 2, 0)
    struct.pack_into("<H", page, 60, 2)
    codec.seal(page)
    with pytest.raises(CorruptionError, match=r"^metadata page: tree 't' listed twice$"):
        decode_meta(page)
    bad = _page(Meta(5, trees={"t": (1, 0)}))
    bad[73] = 0xFF  # the name's one byte: not UTF-8
    codec.seal(bad)
    with pytest.raises(CorruptionError, match=r"^metadata page: tree table is malformed$"):
        decode_meta(bad)


def test_decode_meta_says_why_a_page_is_not_a_database_or_is_damaged():
    page = _page(Meta(5))
    other = bytearray(page)
    other[32:40] = b"NOTDRAGN"
    with pytest.raises(NotADatabaseError, match=r"^not a DragonDB file \(bad magic\)$"):
        decode_meta(other)
    newer = bytearray(page)
    struct.pack_into("<I", newer, 40, 2)
    codec.seal(newer)
    with pytest.raises(NotADatabaseError, match=r"^unsupported format version 2 / page size 4096$"):
        decode_meta(newer)
    damaged = bytearray(page)
    damaged[100] ^= 1
    with pytest.raises(CorruptionError, match=r"^page 0: checksum mismatch$"):
        decode_meta(damaged)
    leaf = bytearray(page)
    leaf[4] = codec.LEAF
    codec.seal(leaf)
    with pytest.raises(CorruptionError, match=r"^page 0: type 2, expected 1$"):
        decode_meta(leaf)

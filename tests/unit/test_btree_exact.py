"""`engine.btree` on trees laid out by hand, page by page, in a buffer pool
over a dict: each walk's depth limit at its exact boundary, every broken
leaf link and sibling refused by name, the merge-or-redistribute choice at
the byte where it flips, splits and their links, the `done` flag and the
limit of a range chunk. Fast and deterministic: no file, no log."""

from __future__ import annotations

import struct

import pytest
from pagefakes import Log, Pages, Store

from engine import btree, syncpoints
from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import (
    HEADER_SIZE,
    INTERNAL_MIN_FILL,
    LEAF_MIN_FILL,
    MAX_LEAF_CELL,
    USABLE,
    Node,
    Overflow,
    seal,
)
from engine.errors import CorruptionError
from engine.overflow import write_overflow
from engine.txn import Txn

MAX_HEIGHT = btree.MAX_HEIGHT


class Tree:
    """Tree "t" over the nodes given (page id -> node), all cached in the pool."""

    def __init__(self, nodes: dict[int, Node], root: int, count: int = 0) -> None:
        self.pool = BufferPool(Store(), 512)
        for pid, node in nodes.items():
            self.pool.add_node(pid, node, pinned=False)
        self.pages = Pages(max(nodes, default=0) + 1)
        self.log = Log()
        self.trees = {"t": TreeEntry(root, count)}
        self.freed: list[int] = []

    @property
    def root(self) -> int:
        return self.trees["t"].root

    def write(self, op, *args):
        txn = Txn(self.pool, self.pages, self.log, self.trees)  # type: ignore[arg-type]
        try:
            out = op(txn, "t", *args)
        except BaseException:
            txn.rollback()
            raise
        self.freed = txn.finish(1)
        return out

    def put(self, key: bytes, value: bytes) -> bool:
        return self.write(btree.put, key, value)

    def delete(self, key: bytes) -> bool:
        return self.write(btree.delete, key)

    def levels(self) -> list[list[tuple[int, Node]]]:
        """The levels, each node's own invariants (exact size) checked, no pin left."""
        out = btree.levels(self.pool, self.root)
        for level in out:
            for pid, node in level:
                assert node.check_invariants() == [], (pid, node.check_invariants())
        assert self.pool.check_invariants(expect_unpinned=True) == []
        return out

    def keys(self) -> list[list[list[bytes]]]:
        return [[n.keys for _, n in level] for level in self.levels()]

    def chunk(self, lo=None, hi=None, after=None, reverse=False, **kw):
        return btree.chunk(self.pool, self.root, lo, hi, after, reverse, **kw)


def leaf(*keys: bytes, sizes: tuple[int, ...] = (), nxt: int = 0, prev: int = 0) -> Node:
    """A leaf of `keys`, each cell of the size given (else a 2-byte value)."""
    vals = [bytes(s - 9 - len(k)) for k, s in zip(keys, sizes, strict=True)] if sizes else [b"v" + k for k in keys]
    return Node(True, list(keys), vals, next=nxt, prev=prev)


def internal(keys: list[bytes], children: list[int]) -> Node:
    return Node(False, list(keys), children=list(children))


def chain(internals: int) -> Tree:
    """`internals` internal nodes one under the other (no keys, one child
    each: pages 1..internals) over one leaf holding a, b, c (3000 bytes)."""
    nodes = {i: internal([], [i + 1]) for i in range(1, internals + 1)}
    nodes[internals + 1] = leaf(b"a", b"b", b"c", sizes=(1000, 1000, 1000))
    return Tree(nodes, 1, 3)


def too_deep(root: int = 1) -> str:
    return f"^tree at page {root} is deeper than {MAX_HEIGHT} levels: a cycle of child pointers$"


# -- depth limits ------------------------------------------------------------------------

def test_max_height_is_48() -> None:
    assert MAX_HEIGHT == 48


# (walk, the most internal levels it accepts)
WALKS = [
    ("get", lambda t: btree.get(t.pool, t.root, b"a"), MAX_HEIGHT),
    ("chunk", lambda t: t.chunk()[0][0][0], MAX_HEIGHT),
    ("chunk from a key", lambda t: t.chunk(lo=b"a")[0][0][0], MAX_HEIGHT),
    ("chunk reverse", lambda t: t.chunk(reverse=True)[0][0][0], MAX_HEIGHT),
    ("chunk reverse to a key", lambda t: t.chunk(hi=b"c", reverse=True)[0][0][0], MAX_HEIGHT),
    ("first", lambda t: btree.edge(t.pool, t.root, False)[0], MAX_HEIGHT),
    ("last", lambda t: btree.edge(t.pool, t.root, True)[0], MAX_HEIGHT),
    ("height", lambda t: btree.height(t.pool, t.root), MAX_HEIGHT - 1),
    ("levels", lambda t: len(btree.levels(t.pool, t.root)), MAX_HEIGHT),  # its own message, below
    ("in_place", lambda t: btree.in_place(t.pool, t.root, b"d", b"w")[0], MAX_HEIGHT),
    ("put", lambda t: t.put(b"d", b"w"), MAX_HEIGHT + 1),
    ("delete", lambda t: t.delete(b"a"), MAX_HEIGHT + 1),
]


@pytest.mark.parametrize(("walk", "deepest"), [(w, d) for _, w, d in WALKS], ids=[w[0] for w in WALKS])
def test_every_walk_accepts_its_deepest_tree_and_refuses_one_more_level(walk, deepest: int) -> None:
    """A cycle of child pointers is refused after a bounded descent: each
    walk counts its levels exactly (a deeper tree cannot be built: fanout
    >= 2 and 2**32 pages)."""
    walk(chain(deepest))  # no error
    message = "^tree at page 1 has a cycle of child pointers$" if deepest == MAX_HEIGHT and walk is WALKS[8][1] \
        else too_deep()
    with pytest.raises(CorruptionError, match=message):
        walk(chain(deepest + 1))


def test_walks_through_a_deep_tree_give_the_right_answers() -> None:
    t = chain(MAX_HEIGHT - 1)
    assert btree.get(t.pool, 1, b"b") == bytes(1000 - 10)
    assert btree.height(t.pool, 1) == MAX_HEIGHT
    assert len(btree.levels(t.pool, 1)) == MAX_HEIGHT
    assert len(btree.levels(t.pool, 1, 1)) == 1
    assert [k for k, _ in t.chunk()[0]] == [b"a", b"b", b"c"]
    assert [k for k, _ in t.chunk(reverse=True)[0]] == [b"c", b"b", b"a"]
    assert btree.edge(t.pool, 1, True)[0] == b"c" and btree.edge(t.pool, 1, False)[0] == b"a"


def test_height() -> None:
    assert btree.height(BufferPool(Store(), 1), 0) == 0
    assert btree.height(Tree({1: leaf(b"a")}, 1).pool, 1) == 1
    t = Tree({1: internal([b"m"], [2, 3]), 2: internal([b"c"], [4, 5]), 3: internal([b"p"], [6, 7]),
              4: leaf(b"a"), 5: leaf(b"c"), 6: leaf(b"m"), 7: leaf(b"p")}, 1)
    assert btree.height(t.pool, 1) == 3


# -- levels and whole-tree walks ---------------------------------------------------------

def test_levels_stop_at_the_depth_asked() -> None:
    t = Tree({1: internal([b"m"], [2, 3]), 2: leaf(b"a"), 3: leaf(b"m")}, 1)
    assert [[pid for pid, _ in level] for level in btree.levels(t.pool, 1)] == [[1], [2, 3]]
    assert [[pid for pid, _ in level] for level in btree.levels(t.pool, 1, 1)] == [[1]]
    assert [[pid for pid, _ in level] for level in btree.levels(t.pool, 1, 2)] == [[1], [2, 3]]
    assert btree.levels(t.pool, 0) == []


@pytest.mark.parametrize(("nodes", "what"), [
    ({1: internal([b"m"], [1, 2]), 2: leaf(b"m")}, "the root its own child"),
    ({1: internal([b"m"], [2, 3]), 2: internal([], [3]), 3: leaf(b"a")}, "a page on two levels"),
], ids=["cycle", "shared"])
def test_levels_refuse_a_page_met_again(nodes, what: str) -> None:
    t = Tree(nodes, 1)
    with pytest.raises(CorruptionError, match="^tree at page 1 has a cycle of child pointers$"):
        btree.levels(t.pool, 1)


def test_walk_pages_lists_nodes_and_overflow_pages_once() -> None:
    t = Tree({1: internal([b"m"], [2, 3]), 2: leaf(b"a"), 3: leaf(b"m")}, 1)
    big = bytes(range(256)) * 40
    ov = write_overflow(t.pool, t.pages.allocate, big)  # pages 4, 5, 6
    t.pool.node(3).vals[0] = ov
    assert sorted(btree.walk_pages(t.pool, 1)) == [1, 2, 3, 4, 5, 6]
    assert btree.edge(t.pool, 1, True) == (b"m", big)
    assert t.chunk(lo=b"m")[0] == [(b"m", big)]
    assert t.chunk(hi=b"n", reverse=True, limit=1)[0] == [(b"m", big)]


def test_walk_pages_refuses_a_page_reached_twice() -> None:
    t = Tree({1: internal([b"m"], [2, 2]), 2: leaf(b"a")}, 1)
    with pytest.raises(CorruptionError, match="^page 2 is reachable twice in the tree at 1$"):
        btree.walk_pages(t.pool, 1)


# -- range chunks --------------------------------------------------------------------------

def test_chunk_of_no_tree_is_empty_and_done() -> None:
    pool = BufferPool(Store(), 1)
    assert btree.chunk(pool, 0, None, None, None, False) == ([], True)
    assert btree.chunk(pool, 0, None, None, None, True) == ([], True)
    assert btree.edge(pool, 0, True) is None


def test_chunk_limit_defaults_to_256_and_is_exact() -> None:
    keys = [b"%03d" % i for i in range(300)]
    t = Tree({1: leaf(*keys)}, 1)
    out, done = t.chunk()
    assert [k for k, _ in out] == keys[:256] and not done
    out, done = t.chunk(reverse=True)
    assert [k for k, _ in out] == keys[::-1][:256] and not done
    out, done = t.chunk(limit=5)
    assert len(out) == 5 and not done
    out, done = t.chunk(after=keys[-6], limit=5)
    assert [k for k, _ in out] == keys[-5:] and done  # the last key of the last leaf: nothing follows
    out, done = t.chunk(after=keys[5], reverse=True, limit=5)
    assert [k for k, _ in out] == keys[:5][::-1] and done


def test_chunk_reaching_its_bound_is_done() -> None:
    t = Tree({3: internal([b"m"], [1, 2]), 1: leaf(b"a", b"c", nxt=2), 2: leaf(b"m", b"p", prev=1)}, 3)
    assert t.chunk(hi=b"c") == ([(b"a", b"va")], True)
    assert t.chunk(lo=b"b", hi=b"n") == ([(b"c", b"vc"), (b"m", b"vm")], True)
    assert t.chunk(lo=b"c", reverse=True) == ([(b"p", b"vp"), (b"m", b"vm"), (b"c", b"vc")], True)
    assert t.chunk(lo=b"n", hi=b"o") == ([], True)
    # across the leaf link, both ways, limit landing on a leaf's end
    assert t.chunk(limit=2) == ([(b"a", b"va"), (b"c", b"vc")], False)
    assert t.chunk(after=b"c", limit=2) == ([(b"m", b"vm"), (b"p", b"vp")], True)
    assert t.chunk(after=b"m", reverse=True, limit=2) == ([(b"c", b"vc"), (b"a", b"va")], True)


# -- broken leaf links ---------------------------------------------------------------------

def two_leaves(left: list[bytes], right: list[bytes], sep: bytes,
               sizes: tuple[tuple[int, ...], tuple[int, ...]] = ((), ()), count: int = 0) -> Tree:
    """Root 3 over leaf 1 (`left`) and leaf 2 (`right`), linked both ways
    (each cell of the size given, as `leaf` makes them)."""
    return Tree({3: internal([sep], [1, 2]), 1: leaf(*left, sizes=sizes[0], nxt=2),
                 2: leaf(*right, sizes=sizes[1], prev=1)}, 3, count)


BROKEN = "^leaf link to page {} breaks the key order$"

# (left keys, right keys, separator, chunk arguments, page whose link is refused)
BROKEN_LINKS = [
    # forward from a leaf that gave nothing: the next leaf must start past its last key
    ([b"a", b"c", b"e"], [b"d", b"f"], b"g", dict(lo=b"ee"), 2),
    ([b"a", b"c", b"e"], [b"e", b"f"], b"g", dict(lo=b"ee"), 2),
    # forward resuming after a key past the leaf's: the next leaf must start past it
    ([b"a", b"c"], [b"d", b"f"], b"g", dict(after=b"e"), 2),
    # forward after keys were returned
    ([b"a", b"c", b"e"], [b"d", b"f"], b"g", dict(lo=b"b"), 2),
    # reverse from a leaf that gave nothing: the previous leaf must end before its first key
    ([b"b", b"c", b"f"], [b"e", b"g"], b"d", dict(hi=b"e", reverse=True), 1),
    ([b"b", b"c", b"e"], [b"e", b"g"], b"d", dict(hi=b"e", reverse=True), 1),
    # reverse resuming before a key below the leaf's
    ([b"a", b"d"], [b"e", b"g"], b"c", dict(after=b"d", reverse=True), 1),
    # reverse after keys were returned
    ([b"b", b"c", b"f"], [b"e", b"g"], b"d", dict(reverse=True), 1),
]


@pytest.mark.parametrize(("left", "right", "sep", "args", "bad"), BROKEN_LINKS)
def test_a_leaf_link_breaking_the_key_order_is_refused(left, right, sep, args, bad) -> None:
    t = two_leaves(left, right, sep)
    with pytest.raises(CorruptionError, match=BROKEN.format(bad)):
        t.chunk(**args)
    assert t.pool.check_invariants(expect_unpinned=True) == []


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("target", ["internal", "empty leaf"])
def test_a_leaf_link_to_a_page_that_is_no_leaf_with_keys_is_refused(target: str, reverse: bool) -> None:
    other = internal([b"x"], [1, 2]) if target == "internal" else leaf()
    if reverse:
        nodes = {3: internal([b"m"], [1, 2]), 1: leaf(b"a"), 2: leaf(b"m", prev=4), 4: other}
    else:
        nodes = {3: internal([b"m"], [1, 2]), 1: leaf(b"a", nxt=4), 2: leaf(b"m"), 4: other}
    t = Tree(nodes, 3)
    with pytest.raises(CorruptionError, match=BROKEN.format(4)):
        t.chunk(reverse=reverse)


def test_links_in_order_are_followed_both_ways() -> None:
    t = two_leaves([b"a", b"c"], [b"d", b"f"], b"d")
    assert t.chunk() == ([(k, b"v" + k) for k in (b"a", b"c", b"d", b"f")], True)
    assert t.chunk(reverse=True) == ([(k, b"v" + k) for k in (b"f", b"d", b"c", b"a")], True)
    assert [k for k, _ in t.chunk(lo=b"cc")[0]] == [b"d", b"f"]
    assert [k for k, _ in t.chunk(hi=b"d", reverse=True)[0]] == [b"c", b"a"]
    assert [k for k, _ in t.chunk(after=b"c")[0]] == [b"d", b"f"]
    assert [k for k, _ in t.chunk(after=b"d", reverse=True)[0]] == [b"c", b"a"]


# -- merge or redistribute, at the byte where the choice flips -----------------------------

def test_delete_and_put_report_whether_the_key_was_there() -> None:
    t = Tree({}, 0)
    assert t.delete(b"a") is False and t.root == 0 and t.pages.next == 1  # nothing created
    assert t.put(b"a", b"1") is True and t.root == 1
    assert t.put(b"a", b"2") is False
    assert t.delete(b"b") is False
    assert t.trees["t"].count == 1
    assert t.delete(b"a") is True
    assert t.trees["t"].count == 0 and t.keys() == [[[]]]


def leaves_to_merge(left_over: int = 0, right_over: int = 0) -> Tree:
    """Root 4 over leaves 1 [a b] (1364 bytes), 2 [c d e] (2710 + `right_over`)
    and 3 [f g]: deleting b leaves leaf 1 at 1354, one byte under its minimum,
    and leaves 1 and 2 exactly fill a page (plus `right_over`)."""
    assert LEAF_MIN_FILL == 1355 and USABLE == 4064
    return Tree({
        4: internal([b"c", b"f"], [1, 2, 3]),
        1: leaf(b"a", b"b", sizes=(1354 + left_over, 10), nxt=2),
        2: leaf(b"c", b"d", b"e", sizes=(1354, 1346 + right_over, 10), prev=1, nxt=3),
        3: leaf(b"f", b"g", sizes=(1354, 1354), prev=2),
    }, 4, 7)


def test_leaves_that_exactly_fill_a_page_are_merged() -> None:
    t = leaves_to_merge()
    assert t.delete(b"b") is True
    (root,), leaves = t.levels()
    assert root == (4, t.pool.node(4)) and root[1].keys == [b"f"] and root[1].children == [1, 3]
    (p1, merged), (p3, last) = leaves
    assert merged.keys == [b"a", b"c", b"d", b"e"] and merged.size == USABLE
    assert (merged.prev, merged.next, last.prev, last.next) == (0, 3, 1, 0)
    assert t.freed == [2] and t.pages.freed == [2] and t.log.forgotten == [2]
    assert t.trees["t"].count == 6


def test_leaves_one_byte_over_a_page_are_redistributed() -> None:
    t = leaves_to_merge(right_over=1)
    t.delete(b"b")
    (root,), leaves = t.levels()
    assert [pid for pid, _ in leaves] == [1, 2, 3]
    (_, left), (_, right), _ = leaves
    assert left.keys + right.keys == [b"a", b"c", b"d", b"e"]
    assert root[1].keys == [right.keys[0], b"f"] and root[1].size == 8 + 1 + 8 + 1
    assert left.size + right.size == USABLE + 1 and min(left.size, right.size) >= LEAF_MIN_FILL
    assert (left.next, right.prev) == (2, 1) and t.freed == []


def leaf_near_its_minimum() -> Tree:
    """Leaf 1 (a, b, c: 2710 bytes) beside leaf 2 (d, e: 1364 bytes, 9 above its minimum)."""
    return two_leaves([b"a", b"b", b"c"], [b"d", b"e"], b"d", sizes=((1354, 1346, 10), (1354, 10)), count=5)


def test_a_right_leaf_under_its_minimum_merges_into_its_left_sibling() -> None:
    t = leaf_near_its_minimum()
    t.delete(b"e")
    assert t.root == 1 and t.keys() == [[[b"a", b"b", b"c", b"d"]]]
    assert t.pool.node(1).size == USABLE and t.freed == [2, 3]


def test_a_value_moved_to_an_overflow_chain_can_leave_its_leaf_under_the_minimum() -> None:
    # d's 1354-byte cell becomes a 14-byte overflow reference: leaf 2 falls to
    # 24 bytes, so the put is planned again with the reference and merges
    t = leaf_near_its_minimum()
    assert t.put(b"d", b"x" * 5000) is False
    assert t.root == 1 and t.keys() == [[[b"a", b"b", b"c", b"d", b"e"]]]
    assert type(t.pool.node(1).vals[3]) is Overflow and t.freed == [2, 3]


K2 = [b"n" * 1024, b"o" * 1024, b"p" * 1024]  # 3 internal cells of 1032 bytes


def internals_to_merge(over: int) -> Tree:
    """Root 10 over internal nodes 11 (separator c over leaves 1, 2) and 12
    (K2 and one more key, 4055 + `over` bytes, over leaves 3..7). Deleting b
    merges leaves 1 and 2, which leaves node 11 empty; node 11, the root's
    separator m (9 bytes) and node 12 then fill a page exactly (plus `over`)."""
    keys2 = [*K2, b"q" * (951 + over)]
    nodes = {
        10: internal([b"m"], [11, 12]),
        11: internal([b"c"], [1, 2]),
        12: internal(keys2, [3, 4, 5, 6, 7]),
        1: leaf(b"a", b"b", sizes=(1354, 10), nxt=2),
        2: leaf(b"c", b"d", b"e", sizes=(1354, 1346, 10), prev=1, nxt=3),
    }
    for i, k in enumerate([b"m", *keys2]):
        nodes[3 + i] = Node(True, [k], [b""], prev=2 + i, next=4 + i if i < 4 else 0)
    assert nodes[12].size == 4055 + over
    return Tree(nodes, 10, 9)


def test_internal_nodes_that_exactly_fill_a_page_are_merged() -> None:
    t = internals_to_merge(0)
    t.delete(b"b")
    assert t.root == 11  # the root lost its last separator: the tree is one level lower
    (root,), leaves = t.levels()
    assert root[1].keys == [b"m", *K2, b"q" * 951] and root[1].size == USABLE
    assert root[1].children == [1, 3, 4, 5, 6, 7] == [pid for pid, _ in leaves]
    assert t.freed == [2, 12, 10]


def test_internal_nodes_one_byte_over_a_page_are_redistributed() -> None:
    t = internals_to_merge(1)
    t.delete(b"b")
    (root,), middle, leaves = t.levels()
    assert root[0] == 10 and [pid for pid, _ in middle] == [11, 12]
    (_, left), (_, right) = middle
    assert left.keys + root[1].keys + right.keys == [b"m", *K2, b"q" * 952]
    assert left.children + right.children == [1, 3, 4, 5, 6, 7]
    assert left.size + 8 + len(root[1].keys[0]) + right.size == USABLE + 1
    assert root[1].size == 8 + len(root[1].keys[0]) and t.freed == [2]


@pytest.mark.parametrize(("children", "message"), [
    ([1, 4], "^pages 1 and 4 cannot be siblings$"),
    ([1, 1], "^pages 1 and 1 cannot be siblings$"),
], ids=["leaf beside internal", "same page twice"])
def test_a_crafted_parent_is_refused_before_a_merge_mixes_pages(children, message) -> None:
    t = Tree({
        3: internal([b"c"], children),
        1: leaf(b"a", b"b", sizes=(1354, 10)),
        4: internal([b"x"], [5, 6]), 5: leaf(b"c"), 6: leaf(b"x"),
    }, 3, 2)
    with pytest.raises(CorruptionError, match=message):
        t.delete(b"b")
    assert t.pool.node(1).keys == [b"a", b"b"] and t.pool.node(3).children == children  # rolled back
    assert t.pool.check_invariants(expect_unpinned=True) == [] and t.pages.freed == []


def three_leaves() -> Tree:
    return Tree({4: internal([b"e", b"i"], [1, 2, 3]), 1: leaf(b"a", b"c", nxt=2),
                 2: leaf(b"e", b"g", prev=1, nxt=3), 3: leaf(b"i", b"k", prev=2)}, 4)


@pytest.mark.parametrize(("args", "keys", "done"), [
    (dict(hi=b"c", reverse=True), [b"a"], True),
    (dict(hi=b"g", reverse=True, limit=2), [b"e", b"c"], False),
    (dict(after=b"e", reverse=True), [b"c", b"a"], True),
    (dict(after=b"i", reverse=True, limit=1), [b"g"], False),
    (dict(after=b"i", reverse=True, limit=2), [b"g", b"e"], False),
    (dict(after=b"e", reverse=True, limit=2), [b"c", b"a"], True),
    (dict(after=b"g", limit=2), [b"i", b"k"], True),
    (dict(lo=b"f", hi=b"j", reverse=True), [b"i", b"g"], True),
    (dict(lo=b"d"), [b"e", b"g", b"i", b"k"], True),
    (dict(lo=b"e", limit=2), [b"e", b"g"], False),
    (dict(after=b"e", hi=b"k"), [b"g", b"i"], True),
    (dict(after=b"c", limit=2), [b"e", b"g"], False),
    (dict(reverse=True, limit=6), [b"k", b"i", b"g", b"e", b"c", b"a"], True),
    (dict(limit=6), [b"a", b"c", b"e", b"g", b"i", b"k"], True),
])
def test_chunk_descends_to_the_leaf_of_its_start(args, keys, done) -> None:
    """Each walk starts in the leaf holding its first key (`lo`, `hi` or
    `after`), with the next (or previous) key, and says whether more follow."""
    assert three_leaves().chunk(**args) == ([(k, b"v" + k) for k in keys], done)


def test_walks_follow_leaf_links_whatever_the_values() -> None:
    """A walk compares keys only: values smaller than every key change nothing."""
    t = Tree({4: internal([b"e", b"i"], [1, 2, 3]), 1: Node(True, [b"a", b"c"], [b"", b"0"], next=2),
              2: Node(True, [b"e", b"g"], [b"", b"0"], prev=1, next=3),
              3: Node(True, [b"i", b"k"], [b"", b"0"], prev=2)}, 4)
    keys = [b"a", b"c", b"e", b"g", b"i", b"k"]
    assert [k for k, _ in t.chunk()[0]] == keys
    assert [k for k, _ in t.chunk(reverse=True)[0]] == keys[::-1]
    assert [k for k, _ in t.chunk(after=b"a")[0]] == keys[1:]
    assert [k for k, _ in t.chunk(after=b"k", reverse=True)[0]] == keys[-2::-1]


def test_a_get_searching_an_undecoded_leaf_names_its_damaged_page() -> None:
    """Through a full pool a get searches a leaf without decoding it; a
    damaged cell found that way is reported with the page's id."""
    t = Tree({1: internal([b"m"], [2, 3]), 2: leaf(b"a", b"c"), 3: leaf(b"m", b"p")}, 1)
    t.pool.flush()
    store = t.pool.store
    page = bytearray(store.pages[3])
    for slot in range(2):  # every cell's key length made 0, the page resealed
        off = struct.unpack_from("<H", page, HEADER_SIZE + 2 * slot)[0]
        struct.pack_into("<H", page, off, 0)
    seal(page)
    store.pages[3] = bytes(page)
    pool = BufferPool(store, 2)
    assert btree.get(pool, 1, b"c") == b"vc" and btree.get(pool, 1, b"b") is None
    with pytest.raises(CorruptionError, match="^page 3: leaf cell of a 0-byte key"):
        btree.get(pool, 1, b"p")


# -- splits ----------------------------------------------------------------------------------

def test_a_root_leaf_over_a_page_splits_under_a_new_internal_root() -> None:
    t = Tree({1: leaf(b"a", b"b", b"c", sizes=(1354, 1354, 1354))}, 1, 3)
    assert t.put(b"a0", b"x") is True  # 4074 bytes: over the page
    assert t.root == 3 and t.trees["t"].count == 4
    (root,), leaves = t.levels()
    assert root[1].leaf is False and root[1].keys == [b"b"] and root[1].children == [1, 2]
    assert root[1].size == 8 + 1
    (_, left), (_, right) = leaves
    assert (left.keys, right.keys) == ([b"a", b"a0"], [b"b", b"c"])
    assert (left.prev, left.next, right.prev, right.next) == (0, 2, 1, 0)
    assert (left.size, right.size) == (1366, 2708)


def test_a_parent_filled_exactly_by_a_split_is_not_split() -> None:
    """Leaf 1 splits; the separator b (9 bytes) fills the root to the byte.
    The right half's neighbour (leaf 2) is linked back to it."""
    keys = [b"d" * 1024, b"e" * 1024, b"f" * 1024, b"g" * 951]  # 4055 bytes
    nodes = {10: internal(keys, [1, 2, 3, 4, 5]),
             1: leaf(b"a", b"b", b"c", sizes=(1354, 1354, 1354), nxt=2)}
    for i, k in enumerate(keys):
        nodes[2 + i] = Node(True, [k], [b""], prev=1 + i, next=3 + i if i < 3 else 0)
    t = Tree(nodes, 10, 7)
    t.put(b"a0", b"x")
    (root,), leaves = t.levels()
    assert root[0] == 10 and root[1].size == USABLE and root[1].keys == [b"b", *keys]
    assert root[1].children == [1, 11, 2, 3, 4, 5]
    assert t.pool.node(11).next == 2 and t.pool.node(2).prev == 11 and t.pool.node(1).next == 11


def test_an_internal_node_left_exactly_at_its_minimum_stays() -> None:
    """Leaves 1 and 2 merge; their parent 11 keeps one 1000-byte cell, exactly
    INTERNAL_MIN_FILL: it is not merged with its sibling."""
    assert INTERNAL_MIN_FILL == 1000
    d = b"d" * 992
    t = Tree({
        10: internal([b"m"], [11, 12]),
        11: internal([b"c", d], [1, 2, 3]),
        12: internal([b"p"], [4, 5]),
        1: leaf(b"a", b"b", sizes=(1354, 10), nxt=2),
        2: leaf(b"c", b"e", b"f", sizes=(1354, 1346, 10), prev=1, nxt=3),
        3: Node(True, [d], [b""], prev=2, next=4), 4: leaf(b"m", prev=3, nxt=5), 5: leaf(b"p", prev=4),
    }, 10, 8)
    t.delete(b"b")
    root, middle, _ = t.levels()
    assert root[0][0] == 10 and [pid for pid, _ in middle] == [11, 12]
    assert middle[0][1].keys == [d] and middle[0][1].size == INTERNAL_MIN_FILL and t.freed == [2]


def test_writes_reach_their_sync_points_by_name() -> None:
    """The schedulers (tests/faults) order threads at these names."""
    reached: list[str] = []
    syncpoints.install(reached.append)
    try:
        t = Tree({}, 0)
        t.put(b"a", b"1")  # the tree's first page
        assert reached == ["btree.root.create"]
        t = Tree({1: leaf(b"a", b"b", b"c", sizes=(1354, 1354, 1354))}, 1, 3)
        reached.clear()
        t.put(b"a0", b"x")
        assert reached == ["btree.split"]
        t = leaves_to_merge()
        reached.clear()
        t.delete(b"b")
        assert reached == ["btree.merge"]
    finally:
        syncpoints.uninstall()


def test_in_place_plans_an_edit_of_a_root_leaf_below_the_minimum_fill() -> None:
    """A root leaf has no minimum: a small put or delete there is planned in
    place; in a child leaf the same edit needs the general path."""
    t = Tree({1: leaf(b"a", b"b")}, 1, 2)
    pid, node, plan = btree.in_place(t.pool, 1, b"c", b"3")
    assert (pid, node, plan) == (1, t.pool.node(1), (2, False, 12 + 12 + 11, True))
    assert btree.in_place(t.pool, 1, b"a", None)[2] == (0, True, 12, True)
    child = Tree({3: internal([b"m"], [1, 2]), 1: leaf(b"a", b"b"), 2: leaf(b"m")}, 3)
    assert btree.in_place(child.pool, 3, b"c", b"3") is None


def test_plan_leaf_edit_at_each_bound() -> None:
    """An edit fits exactly up to each bound: a cell of MAX_LEAF_CELL bytes,
    a leaf of USABLE bytes, a non-root leaf of LEAF_MIN_FILL bytes; a root
    leaf has no minimum."""
    assert MAX_LEAF_CELL == 1354
    empty = Node(True)
    assert btree.plan_leaf_edit(empty, b"k", bytes(1344), True) == (0, False, 1354, True)
    assert btree.plan_leaf_edit(empty, b"k", bytes(1345), True) == (0, False, 1355, False)
    full = leaf(b"a", b"b", b"c", sizes=(1354, 1354, 1346))  # 4054 bytes
    assert btree.plan_leaf_edit(full, b"d", b"", False) == (3, False, USABLE, True)
    assert btree.plan_leaf_edit(full, b"d", b"x", False) == (3, False, USABLE + 1, False)
    low = leaf(b"a", b"b", sizes=(1345, 10))  # 1355 bytes: exactly the minimum
    assert btree.plan_leaf_edit(low, b"b", b"", False) == (1, True, LEAF_MIN_FILL, True)
    assert btree.plan_leaf_edit(low, b"b", None, False) == (1, True, 1345, False)
    assert btree.plan_leaf_edit(low, b"b", None, True) == (1, True, 1345, True)
    assert btree.plan_leaf_edit(low, b"a", bytes(1335), False) == (0, True, LEAF_MIN_FILL, True)

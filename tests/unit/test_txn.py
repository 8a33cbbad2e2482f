"""`engine.txn.Txn` driven page by page over a dict-backed pool and plain
stand-ins for the pager and the log (tests/pagefakes.py): what a commit
(`finish`) stamps, unpins and frees; that a rollback gives back every node as
it was before the first change, pinned or released and evicted meanwhile,
frees the pages it allocated (in order, their log images forgotten), applies
none of the planned frees and restores the tree table; no pin is left either way."""

from __future__ import annotations

import pytest
from pagefakes import Log, Pages, Store

from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import OVERFLOW_PAYLOAD, Node, decode_node
from engine.overflow import read_overflow
from engine.txn import Txn


def original() -> dict[int, Node]:
    return {
        1: Node(True, [b"a", b"b"], [b"1", b"2"], next=2, lsn=3),
        2: Node(True, [b"c"], [b"3"], prev=1, lsn=3),
        3: Node(False, [b"c"], children=[1, 2], lsn=3),
    }


class World:
    """Pages 1-3 written home, trees t (root 3, 3 keys) and u (root 9, 1 key)."""

    def __init__(self, frames: int = 64) -> None:
        self.store = Store()
        self.pool = BufferPool(self.store, frames)
        for pid, node in original().items():
            self.pool.add_node(pid, node, pinned=False)
        self.pool.flush()
        self.pages = Pages(4)
        self.log = Log()
        self.trees = {"t": TreeEntry(3, 3), "u": TreeEntry(9, 1)}
        self.txn = Txn(self.pool, self.pages, self.log, self.trees)  # type: ignore[arg-type]

    def home(self, pid: int) -> Node:
        """The page as written home, decoded."""
        return decode_node(self.store.pages[pid], pid)

    def table(self) -> dict[str, tuple[int, int]]:
        return {name: (e.root, e.count) for name, e in self.trees.items()}


def same(a: Node, b: Node) -> bool:
    return (a.leaf, a.keys, a.vals, a.children, a.next, a.prev, a.size, a.lsn) == \
        (b.leaf, b.keys, b.vals, b.children, b.next, b.prev, b.size, b.lsn)


def test_a_page_is_pinned_once_and_copied_before_its_first_change_only() -> None:
    w = World()
    txn = w.txn
    node = txn.node(1)
    assert txn.node(1) is node and w.pool.cached(1).pin == 1
    assert txn.modify(1) is node and w.pool.cached(1).pin == 1
    node.keys.append(b"bb")
    node.vals.append(b"x")
    assert txn.modify(1) is node  # a second change keeps the first copy
    node.keys.append(b"bc")
    node.vals.append(b"y")
    assert txn.pins() == {1: node}
    txn.rollback()
    assert same(w.pool.node(1), original()[1])
    assert w.pool.pinned() == [] and w.pool.check_invariants(expect_unpinned=True) == []


CHANGES = [
    ("read a page", lambda t: t.node(1)),
    ("modify", lambda t: t.modify(1).keys.append(b"bz")),
    ("new node", lambda t: t.new_node(True)),
    ("allocate", lambda t: t.allocate()),
    ("free", lambda t: t.free(2)),
    ("entry", lambda t: setattr(t.entry("t"), "count", 99)),
    ("create tree", lambda t: t.create_tree("v")),
]


@pytest.mark.parametrize("change", [c for _, c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_rollback_undoes_each_kind_of_change(change) -> None:
    w = World()
    change(w.txn)
    w.txn.rollback()
    assert w.pool.pinned() == [] and w.table() == {"t": (3, 3), "u": (9, 1)}
    assert all(same(w.pool.node(pid), node) for pid, node in original().items())
    assert w.pages.freed in ([], [4])  # a page it allocated goes back, nothing else is freed


def test_finish_stamps_the_changed_nodes_unpins_and_applies_the_frees() -> None:
    w = World()
    txn = w.txn
    txn.modify(1).vals[0] = b"9"
    txn.node(3)  # read only
    pid, new = txn.new_node(True)
    assert pid == 4 and w.pool.cached(4).pin == 1
    new.keys, new.vals, new.size = [b"z"], [b"z"], 11
    txn.free(2)
    txn.entry("t").count = 4
    assert txn.finish(7) == [2]
    assert w.pool.node(1).lsn == 7 and w.pool.node(4).lsn == 7 and w.pool.node(3).lsn == 3
    assert w.pool.cached(1).dirty and w.pool.cached(4).dirty and not w.pool.cached(3).dirty
    assert w.pool.cached(2) is None and w.pages.freed == [2] and w.log.forgotten == [2]
    assert w.pool.pinned() == [] and w.pool.check_invariants(expect_unpinned=True) == []
    assert txn.pins() == {}
    assert w.table() == {"t": (3, 4), "u": (9, 1)}
    txn.rollback()  # nothing left to undo
    assert w.pool.node(1).vals[0] == b"9" and w.pool.node(4).keys == [b"z"]
    assert w.pages.freed == [2] and w.table() == {"t": (3, 4), "u": (9, 1)}
    w.pool.flush()
    assert w.home(1).vals[0] == b"9" and w.home(4).lsn == 7


def test_release_keeps_the_pages_dirty_only_where_changed() -> None:
    w = World()
    txn = w.txn
    txn.modify(1).vals[0] = b"9"
    txn.node(2)
    txn.release()
    assert w.pool.pinned() == [] and txn.pins() == {}
    assert w.pool.cached(1).dirty and not w.pool.cached(2).dirty
    txn.rollback()  # the first copies were kept for it
    assert same(w.pool.node(1), original()[1])


@pytest.mark.parametrize("evicted", [False, True], ids=["cached", "evicted"])
def test_rollback_gives_back_every_page_and_entry_and_frees_what_it_allocated(evicted: bool) -> None:
    w = World(frames=8)
    txn = w.txn
    one = txn.modify(1)
    one.keys[1], one.vals[1], one.next = b"bz", b"zz", 0
    txn.release()  # between two operations of a batch
    if evicted:
        for pid in range(20, 28):  # other pages fill the pool: page 1 goes home changed
            w.pool.add_node(pid, Node(True), pinned=False)
        assert w.pool.cached(1) is None and w.home(1).keys == [b"a", b"bz"]
    txn.modify(2).prev = 5  # still pinned
    txn.node(3)  # read only
    pid, node = txn.new_node(False)
    node.keys, node.children = [b"c"], [1, 2]
    spare = txn.allocate()
    txn.put_node(spare, Node(True, [b"q"], [b"q"]))
    ov = txn.write_overflow(bytes(2 * OVERFLOW_PAYLOAD + 1))
    txn.free(3)
    txn.entry("t").root = pid
    txn.entry("t").count = 9
    txn.create_tree("v")
    txn.entry("v").root = spare
    txn.drop_tree_entry("u")
    assert (pid, spare, ov.page) == (4, 5, 6)

    txn.rollback()
    for p, node in original().items():
        assert same(w.pool.node(p), node), p
    assert w.pages.freed == [4, 5, 6, 7, 8] == w.log.forgotten  # the new pages, in order; not page 3
    assert all(w.pool.cached(p) is None for p in range(4, 9))
    assert w.table() == {"t": (3, 3), "u": (9, 1)}
    assert txn.pins() == {}
    assert w.pool.pinned() == [] and w.pool.check_invariants(expect_unpinned=True) == []
    # a page still pinned got no write-back: its bytes match the copy, it stays clean; so does a page only read
    assert not w.pool.cached(2).dirty and not w.pool.cached(3).dirty
    assert w.pool.cached(1).dirty  # released, so perhaps written home changed: written again
    w.pool.flush()  # the restored nodes are what goes home
    for p, node in original().items():
        assert same(w.home(p), node), p
    txn.rollback()
    assert w.pages.freed == [4, 5, 6, 7, 8]


def test_a_tree_created_over_an_existing_one_is_put_back_on_rollback() -> None:
    w = World()
    w.txn.entry("t").count = 5
    w.txn.create_tree("t")  # the entry before the first change is kept
    assert w.table()["t"] == (0, 0)
    w.txn.rollback()
    assert w.table() == {"t": (3, 3), "u": (9, 1)}
    w = World()
    w.txn.create_tree("u")
    w.txn.create_tree("w")
    w.txn.create_tree("x")
    w.txn.drop_tree_entry("x")  # created and dropped: nothing to remove
    w.txn.rollback()
    assert w.table() == {"t": (3, 3), "u": (9, 1)}


def test_spill_nodes_hands_the_log_each_page_encoded() -> None:
    w = World()
    nodes = [(10, Node(True, [b"k"], [b"v"], prev=11)), (11, Node(False, [b"m"], children=[10, 12]))]
    w.txn.spill_nodes(nodes)
    assert [pid for pid, _ in w.log.spilled] == [10, 11]
    for (pid, image), (_, node) in zip(w.log.spilled, nodes, strict=True):
        assert same(decode_node(image, pid), node)
    assert w.pool.cached(10) is None and w.pool.pinned() == []


def test_put_node_and_write_overflow_leave_their_pages_unpinned_and_dirty() -> None:
    w = World()
    spare = w.txn.allocate()
    w.txn.put_node(spare, Node(True, [b"q"], [b"q"]))
    ov = w.txn.write_overflow(b"x" * (OVERFLOW_PAYLOAD + 1))
    assert w.pool.pinned() == [] and all(w.pool.cached(p).dirty for p in (4, 5, 6))
    assert read_overflow(w.pool, ov) == b"x" * (OVERFLOW_PAYLOAD + 1)
    assert w.pool.node(spare).keys == [b"q"]
    assert w.txn.finish(2) == [] and w.pages.freed == []


def test_the_entry_of_a_tree_that_is_not_there_is_a_key_error() -> None:
    w = World()
    with pytest.raises(KeyError):
        w.txn.entry("nope")
    w.txn.rollback()
    assert w.table() == {"t": (3, 3), "u": (9, 1)}

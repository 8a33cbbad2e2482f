"""`engine.bulk`, exactly: the bodies' results and what they log (a popitem
must log its key, so recovery removes the same item), `load`'s refusals by
message, keys of other bytes types stored as bytes, and the internal levels
of a loaded tree packed at their exact boundaries."""

from __future__ import annotations

import pytest

import engine
from engine import bulk
from engine.codec import PAGE_SIZE, USABLE
from faults.crash import CrashDisk

PATH = "/virtual/bulk_exact.db"  # a CrashDisk path


def test_popitem_logs_the_key_it_removed():
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    t = db.tree("t")
    t.update([(b"a", b"value-a"), (b"b", b"value-b")])
    assert t.popitem() == (b"a", b"value-a")
    db.commit()
    # the process dies: recovery replays the popitem's record
    with engine.open(PATH, opener=CrashDisk(disk.images(None, "keep")).opener) as again:
        assert again.stats()["recovered_commits"] >= 1
        assert dict(again.tree("t").items()) == {b"b": b"value-b"}


def test_setdefault_body_keeps_a_present_value(open_db):
    """The body alone (the check `Tree.setdefault` makes first can be stale
    by the time it takes the write latch)."""
    db = open_db()
    t = db.tree("t")
    assert db._write(bulk.setdefault, "t", b"k", b"first") == b"first"  # no root yet: created
    commits = db.stats()["commits"]
    assert db._write(bulk.setdefault, "t", b"k", b"second") == b"first"
    assert db.stats()["commits"] == commits
    assert dict(t.items()) == {b"k": b"first"}


def test_bodies_on_a_missing_tree_name_it(open_db):
    db = open_db()
    for body, args in ((bulk.clear, ()), (bulk.pop, (b"k",)), (bulk.popitem, ()),
                       (bulk.setdefault, (b"k", b"v")), (bulk.update, ([(b"k", b"v")],)),
                       (bulk.load, ([b"k"], [b"v"]))):
        with pytest.raises(KeyError) as info:
            db._write(body, "gone", *args)
        assert info.value.args == ("gone",)


def test_load_refusals_by_message(open_db):
    t = open_db().tree("t")
    with pytest.raises(ValueError, match=r"^load: item #1 is not a \(key, value\) pair$"):
        t.load([(b"a", b"1"), (b"b",)])
    with pytest.raises(TypeError, match=r"^load: item #0 is not a \(key, value\) pair$"):
        t.load([7])
    long_key = b"k" * 45
    with pytest.raises(engine.UnsortedItemsError,
                       match=r"^load: item #2 has key b'k{40}', not above the key before it$"):
        t.load([(b"a", b"1"), (b"z" * 50, b"2"), (long_key, b"3")])
    with pytest.raises(TypeError, match=r"^values are bytes, not int$"):
        t.load([(b"a", 5)])
    assert len(t) == 0


def test_load_stores_keys_and_values_of_other_bytes_types_as_bytes(open_db):
    t = open_db().tree("t")
    t.load([(bytearray(b"a"), bytearray(b"1")), (memoryview(b"b"), memoryview(b"2"))])
    items = list(t.items())
    assert items == [(b"a", b"1"), (b"b", b"2")]
    assert all(type(k) is bytes and type(v) is bytes for k, v in items)
    assert dict(items) == {b"a": b"1", b"b": b"2"}


def test_a_loaded_tree_takes_puts_that_split_its_nodes(open_db):
    db = open_db()
    t = db.tree("t")
    t.load((b"%05d" % i, b"v" * 300) for i in range(0, 4000, 2))  # height 3 with cached internal nodes
    assert db.tree_stats()["t"]["height"] >= 2
    for i in range(1, 4000, 2):  # every leaf splits, and its parents with them
        t[b"%05d" % i] = b"w" * 300
    assert len(t) == 4000
    assert db.check().ok


def _internal_shape(db, name):
    levels = db.tree_levels(name)
    return [[len(p.children) for p in level] for level in levels[:-1]]


def test_internal_nodes_are_packed_to_exactly_a_page(open_db):
    """Keys of 1008 bytes: a separator cell is 8 + 1008 = 1016 bytes, and
    four fill an internal node's USABLE 4064 bytes exactly, so it takes five
    children; leaves hold three cells of 1354 bytes."""
    assert 4 * (8 + 1008) == USABLE
    db = open_db()
    t = db.tree("t")
    keys = [b"%04d" % i + b"k" * 1004 for i in range(45)]  # 15 leaves
    t.load((k, b"v" * 337) for k in keys)
    assert _internal_shape(db, "t") == [[3], [5, 5, 5]]
    assert db.check().ok
    assert [k for k, _ in t.items()] == keys


def test_a_last_internal_node_at_exactly_its_minimum_fill_is_left_alone(open_db):
    """Separator cells of 8 + 992 = 1000 bytes, INTERNAL_MIN_FILL: a last
    node with two children holds exactly its minimum, and is not evened
    out with its neighbour."""
    db = open_db()
    t = db.tree("t")
    keys = [b"%04d" % i + b"k" * 988 for i in range(36)]  # 12 leaves of three
    t.load((k, b"v" * 353) for k in keys)
    assert _internal_shape(db, "t") == [[3], [5, 5, 2]]
    assert db.check().ok


@pytest.mark.parametrize("n_leaves", [11, 16, 21])
def test_a_last_internal_node_under_its_minimum_shares_with_its_left_neighbour(open_db, n_leaves):
    """Three or more internal nodes, the last one under its minimum: the
    separator pulled down from above is the last node's own lowest key."""
    db = open_db()
    t = db.tree("t")
    keys = [b"%04d" % i + b"k" * 988 for i in range(3 * n_leaves)]
    t.load((k, b"v" * 353) for k in keys)
    shape = _internal_shape(db, "t")
    assert len(shape[-1]) >= 3 and sum(shape[-1]) == n_leaves, shape
    assert db.check().ok
    assert [k for k, _ in t.items()] == keys
    assert all(t[k] == b"v" * 353 for k in keys[::7])


def test_a_small_load_spills_nothing(open_db):
    db = open_db(pool_pages=64)
    db.tree("t").load((b"%03d" % i, b"v" * 1000) for i in range(40))  # 10 leaves, well under half the pool
    assert db._wal.spilled_pages() == []


def test_a_load_spills_each_leaf_past_half_the_pool_once(open_db):
    """Of a load's leaves, those past half the pool go to the log as spilled
    images, 256 to a write, each once (a second image of a page would only
    lengthen the log)."""
    db = open_db(pool_pages=64)  # the 32 leaves kept and their parents fit: nothing evicted
    items = [(b"%05d" % i, b"v" * 1000) for i in range(1200)]  # four to a leaf: 300 leaves
    before = db.stats()["log_bytes"]
    db.tree("t").load(items)
    growth = db.stats()["log_bytes"] - before
    spilled = db._wal.spilled_pages()  # before reading the tree evicts the rest
    leaves = [p.page_id for p in db.tree_levels("t")[-1]]
    assert len(leaves) == 300
    assert sorted(spilled) == sorted(leaves[:300 - 64 // 2])  # two writes of up to 256
    data = sum(len(k) + len(v) for k, v in items)
    assert growth < len(spilled) * (PAGE_SIZE + 64) + data + (64 << 10), (growth, len(spilled))
    assert db.check().ok


def test_leaves_are_packed_to_exactly_a_page_and_a_last_one_at_its_minimum_left_alone(open_db):
    """Cells of 9 + 4 + 1003 = 1016 bytes: four fill a leaf's 4064 bytes
    exactly. Two last cells of 678 and 677 bytes make a last leaf of exactly
    LEAF_MIN_FILL (1355), which is not evened out with its neighbour."""
    assert 4 * (9 + 4 + 1003) == USABLE and (9 + 4 + 665) + (9 + 4 + 664) == 1355
    db = open_db()
    t = db.tree("t")
    items = [(b"%04d" % i, b"v" * 1003) for i in range(40)] + [(b"9998", b"a" * 665), (b"9999", b"b" * 664)]
    t.load(items)
    assert [p.keys for p in db.tree_levels("t")[-1]] == [4] * 10 + [2]
    assert dict(t.items()) == dict(items)
    assert db.check().ok

"""B+ tree structure: splits, merges, shrinking, overflow chains, levels."""

from __future__ import annotations

import random

import engine


def _height(db, name="default"):
    return len(db.tree_levels(name))


def test_tree_grows_and_shrinks_back_to_one_empty_root(open_db):
    db = open_db(pool_pages=16)
    t = db.tree("default")
    keys = [b"%06d" % i + b"k" * 150 for i in range(6000)]
    random.Random(7).shuffle(keys)
    for k in keys:
        t[k] = b"v" * 60
    assert _height(db) >= 3
    r = db.check()
    assert r.ok, r.problems
    for i, k in enumerate(keys):
        del t[k]
        if i % 997 == 0:
            assert db.check().ok
    levels = db.tree_levels("default")
    assert len(levels) == 1 and levels[0][0].keys == 0 and levels[0][0].kind == "leaf"
    r = db.check()
    assert r.ok and r.pages_reachable == 1 and r.pages_free == r.pages_allocated - 2


def test_variable_size_keys_keep_fill_bounds(open_db):
    db = open_db(pool_pages=32)
    t = db.tree("default")
    rnd = random.Random(3)
    model = {}
    for step in range(3000):
        k = rnd.randbytes(rnd.choice([1, 2, 8, 100, 700, 1024]))
        if rnd.random() < 0.35 and model:
            k = rnd.choice(list(model))
            del t[k]
            del model[k]
        else:
            v = rnd.randbytes(rnd.choice([0, 10, 300, 1300, 5000]))
            t[k] = v
            model[k] = v
        if step % 500 == 0:
            r = db.check()
            assert r.ok, r.problems
    assert dict(t.items()) == model
    assert db.check().ok


def test_overflow_chains_are_freed_on_overwrite_and_delete(open_db):
    db = open_db()
    t = db.tree("default")
    t[b"a"] = b"x" * 100_000
    used = db.check().pages_reachable
    assert used >= 100_000 // 4064
    t[b"a"] = b"y" * 10
    assert db.check().pages_reachable == 1
    t[b"b"] = b"z" * 50_000
    del t[b"b"]
    r = db.check()
    assert r.ok and r.pages_reachable == 1 and r.pages_leaked == 0


def test_tree_levels_describe_pages(open_db):
    db = open_db()
    t = db.tree("default")
    for i in range(1000):
        t[b"%04d" % i] = b"v" * 20
    levels = db.tree_levels("default")
    root = levels[0][0]
    assert root.kind == "internal" and len(root.children) == root.keys + 1
    leaves = levels[-1]
    assert all(p.kind == "leaf" for p in leaves)
    assert leaves[0].first_key == b"0000" and leaves[-1].last_key == b"0999"
    assert sum(p.keys for p in leaves) == 1000
    assert all(0 < p.fill <= 1 for p in leaves)


def test_dropping_a_tree_frees_every_page(open_db):
    db = open_db()
    t = db.tree("big")
    for i in range(2000):
        t[b"%05d" % i] = b"v" * (i % 5000)
    db.drop_tree("big")
    r = db.check()
    assert r.ok and r.pages_reachable == 0 and r.pages_free == r.pages_allocated - 1


def test_first_last_on_many_leaves(open_db):
    t = open_db().tree("default")
    for i in range(3000):
        t[b"%05d" % i] = b"v"
    assert t.first() == (b"00000", b"v") and t.last() == (b"02999", b"v")
    assert [k for k, _ in t.scan(b"01000", b"01003")] == [b"01000", b"01001", b"01002"]
    assert next(iter(t.scan(reverse=True)))[0] == b"02999"


def test_engine_error_when_tree_used_after_drop(open_db):
    db = open_db()
    t = db.tree("gone")
    t[b"k"] = b"v"
    db.drop_tree("gone")
    try:
        t.get(b"k")
    except KeyError:
        pass
    else:
        raise AssertionError("a dropped tree's handle must raise KeyError")
    assert engine.MAX_KEY_SIZE == 1024


def test_gets_through_a_small_pool_keep_the_internal_nodes_cached(tmp_path):
    """A leaf read for one get is searched undecoded and evicted first, so a
    pool far smaller than the tree still holds the nodes every get walks:
    about one read per get, not one per level (plain LRU: ~1.45 here)."""
    path = str(tmp_path / "small.ddb")
    rng = random.Random(5)
    keys = [rng.randbytes(200) for _ in range(20_000)]  # long keys: ~117 internal nodes
    with engine.open(path, sync="off") as db:
        t = db.tree()
        for k in keys:
            t.put(k, k[:8])
    with engine.open(path, pool_pages=128) as db:
        t = db.tree()
        assert len(db.tree_levels("default")) == 4
        probes = rng.sample(keys, 2_000)
        for k in probes[:200]:  # warm up
            assert t.get(k) == k[:8]
        absent = [rng.randbytes(200) for _ in range(200)]
        before = db.stats()["pool_misses"]
        for k in probes[200:]:
            assert t.get(k) == k[:8]
        for k in absent:
            assert t.get(k) is None
        misses = db.stats()["pool_misses"] - before
        assert misses < 1.15 * 2_000, misses
        assert db.check().ok

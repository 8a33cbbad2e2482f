"""The batch path: a batch keeps the leaves it changes pinned between its
operations (up to a share of the pool) instead of releasing and fetching
them again for every operation; its commit record is its own list of
operations, which replay applies to the same result, new trees included;
tiny pools still release every time and never run out of frames."""

from __future__ import annotations

import random
import shutil

import engine


def _requests(db) -> int:
    st = db.stats()
    return st["pool_hits"] + st["pool_misses"]


def test_a_batch_fetches_each_leaf_once_not_once_per_operation(open_db):
    db = open_db()
    rng = random.Random(7)
    keys = sorted({rng.randbytes(16) for _ in range(2000)})
    t = db.tree("t")
    with db.batch() as b:
        for k in keys:
            b.put("t", k, b"v" * 100)
    assert len(db.tree_levels("t")) == 2  # root and leaves: a get asks for 2 pages
    n = 20_000
    before = _requests(db)
    with db.batch() as b:
        for _ in range(n):
            b.put("t", rng.choice(keys), b"w" * 100)
    asked = _requests(db) - before
    # root (read without a pin) once per op, each changed leaf once per batch
    assert asked < 1.2 * n, f"{asked} page requests for {n} overwrites on a 2-level tree"
    assert all(t[k] in (b"v" * 100, b"w" * 100) for k in keys)


def test_a_batch_into_new_trees_replays_to_the_same_state(tmp_path):
    path = tmp_path / "r.db"
    db = engine.open(path, sync="full")
    rng = random.Random(3)
    want: dict[str, dict[bytes, bytes]] = {"a": {}, "b": {}}
    with db.batch() as b:
        for i in range(3000):
            name = "a" if i % 3 else "b"
            k, v = rng.randbytes(12), rng.randbytes(rng.choice((0, 10, 300, 5000)))
            b.put(name, k, v)
            want[name][k] = v
        gone = next(iter(want["a"]))
        b.delete("a", gone)
        del want["a"][gone]
        b.delete("never", b"x")  # a delete in a tree that does not exist: nothing
    # a copy of the files as they are now, log unapplied: a crash right after the commit
    shutil.copy(path, tmp_path / "c.db")
    shutil.copy(str(path) + "-wal", str(tmp_path / "c.db") + "-wal")
    db.close()
    for p in (path, tmp_path / "c.db"):
        with engine.open(p) as again:
            assert again.trees() == ["a", "b"]
            for name, items in want.items():
                assert dict(again.tree(name).items()) == items
            assert again.check().ok


def test_a_tiny_pool_runs_a_large_batch_with_splits(open_db):
    db = open_db(pool_pages=16)
    rng = random.Random(5)
    want = {}
    with db.batch() as b:
        for _ in range(4000):
            k = rng.randbytes(rng.randint(1, 200))
            want[k] = rng.randbytes(rng.randint(0, 400))
            b.put("t", k, want[k])
    assert dict(db.tree("t").items()) == want
    assert db.stats()["evictions"] > 0

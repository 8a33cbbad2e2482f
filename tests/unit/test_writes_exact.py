"""`engine.writes`, exactly: which path a write takes (in place: one leaf
read, no transaction), a reader following single-operation commits of every
kind (`_replay_in_place`), the bodies' errors naming their tree, and when a
batch releases its pins."""

from __future__ import annotations

import pytest

import engine
from engine.metapage import META_TREES_ROOM
from engine.walformat import OP_CREATE, OP_PUT
from engine.writes import apply_op, create_tree, delete, drop_tree, put
from faults.crash import CrashDisk
from faults.io import FaultPlan

PATH = "/virtual/writes_exact.db"  # a CrashDisk path


def _hits(db) -> int:
    return db.stats()["pool_hits"]


def test_a_put_or_delete_within_a_cached_leaf_reads_it_once(open_db):
    """The in-place path peeks at the cached leaf once; a transaction
    reads it again to pin and copy it (two pool hits on a one-leaf tree)."""
    db = open_db()
    t = db.tree("t")
    t[b"a"] = b"1"  # the first put creates the root: a transaction
    for op in (lambda: t.put(b"b", b"2"), lambda: t.put(b"a", b"3"), lambda: t.delete(b"b")):
        before = _hits(db)
        op()
        assert _hits(db) - before == 1
    before = _hits(db)
    db._write(put, "t", b"c", b"4")  # the same put as a transaction
    assert _hits(db) - before == 2
    assert dict(t.items()) == {b"a": b"3", b"c": b"4"}


def test_a_delete_of_a_missing_key_commits_nothing(open_db):
    db = open_db()
    t = db.tree("t")
    t[b"a"] = b"1"
    commits = db.stats()["commits"]
    assert t.delete(b"zz") is False
    assert t.delete(b"a") is True
    assert t.delete(b"a") is False
    assert db.stats()["commits"] == commits + 1


def test_a_reader_follows_single_commits_of_every_kind(tmp_path):
    """Each of these is a commit of one operation, which a reader replays
    through `_replay_in_place` first."""
    path = str(tmp_path / "f.db")
    with engine.open(path, sync="off") as w:
        w.tree("keep")[b"x"] = b"1"
        r = engine.open(path, read_only=True)
        assert r.trees() == ["keep"]

        def seen():
            return {n: dict(r.tree(n).items()) for n in r.trees()}

        a = w.tree("a")  # a create
        assert seen() == {"keep": {b"x": b"1"}, "a": {}}
        a[b"k"] = b"v"  # the tree's first put: a root created
        assert seen()["a"] == {b"k": b"v"}
        a[b"l"] = b"w"
        a[b"k"] = b"v2"
        assert seen()["a"] == {b"k": b"v2", b"l": b"w"}
        a.delete(b"l")
        a.delete(b"k")  # the leaf left empty: a plan of size 0
        assert seen()["a"] == {}
        assert len(r.tree("a")) == 0
        a[b"m"] = b"1"
        w.tree("b").load([(b"p", b"1"), (b"q", b"2")])  # a load
        assert seen()["b"] == {b"p": b"1", b"q": b"2"}
        w.drop_tree("a")  # a drop of a tree holding a key
        assert seen() == {"keep": {b"x": b"1"}, "b": {b"p": b"1", b"q": b"2"}}
        assert r.check().ok
        r.close()


def test_a_reader_follows_a_put_in_place_with_one_leaf_read(tmp_path):
    path = str(tmp_path / "f.db")
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        for i in range(20):
            t[b"k%02d" % i] = b"v"
        r = engine.open(path, read_only=True)
        rt = r.tree("t")
        assert rt.get(b"k00") == b"v"
        before = _hits(r)
        assert rt.get(b"k00") == b"v"
        get_cost = _hits(r) - before
        before = _hits(r)
        for i in range(5):
            t[b"k%02d" % i] = b"w"
        assert rt.get(b"k00") == b"w"
        assert _hits(r) - before == get_cost + 5  # one peek per put replayed, no transaction
        r.close()


def test_apply_op_logs_nothing_itself():
    """The caller's commit record is its list of operations; a put into a
    new tree or a create adds no OP_CREATE of its own."""
    db = engine.open(PATH, opener=CrashDisk().opener)

    def body(txn):
        apply_op(txn, OP_PUT, "new", b"k", b"v")
        apply_op(txn, OP_CREATE, "other", None, None)
        logged = list(txn.ops)
        txn.ops = [(OP_PUT, "new", b"k", b"v"), (OP_CREATE, "other", None, None)]
        return logged

    assert db._write(body) == []
    assert db.trees() == ["new", "other"]
    db.close()


def test_bodies_on_a_missing_tree_raise_keyerror_naming_it(open_db):
    db = open_db()
    for body, args in ((drop_tree, ("gone",)), (delete, ("gone", b"k")), (put, ("gone", b"k", b"v"))):
        with pytest.raises(KeyError) as info:
            db._write(body, *args)
        assert info.value.args == ("gone",)
    t = db.tree("t")
    db.drop_tree("t")
    with pytest.raises(KeyError) as info:
        t.delete(b"k")  # the transaction path of a dropped tree
    assert info.value.args == ("t",)


def test_a_recovered_multi_operation_commit_is_stamped_with_its_lsn():
    """`_replay` stamps the pages it changed with the commit's LSN, so a
    checkpoint after recovery writes them (an unstamped page cannot be encoded)."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    with db.batch() as b:
        b.put("t", b"a", b"1")
        b.put("u", b"b", b"2")
    # the process dies: the batch is in the log only
    again = engine.open(PATH, opener=CrashDisk(disk.images(None, "keep")).opener)
    assert again.stats()["recovered_commits"] >= 1
    again.checkpoint()
    again.close()
    with engine.open(PATH, opener=CrashDisk(disk.images(None, "keep")).opener) as third:
        assert dict(third.tree("t").items()) == {b"a": b"1"}
        assert third.check().ok


@pytest.mark.parametrize("pool_pages", [68, 72, 76])
def test_a_batch_releases_its_pins_past_a_quarter_of_the_pool_beyond_64(open_db, pool_pages):
    """keep = (pool_pages - 64) // 4 leaves stay pinned through a batch; the
    operation that pins one more releases them all. A leaf met again while
    pinned costs no pool read for it; once released, it does."""
    db = open_db(pool_pages=pool_pages)
    t = db.tree("t")
    t.update((b"%03d" % i, b"v" * 1000) for i in range(60))  # three keys a leaf: all cached
    keep = (pool_pages - 64) // 4
    leaves = [b"%03d" % i for i in range(0, 60, 6)]  # keys in distinct leaves

    def cost(keys):
        before = _hits(db)
        with db.batch() as b:
            for k in keys:
                b.put("t", k, b"w" * 1000)  # the same size: no split, no merge
        return _hits(db) - before

    pinned = cost([*leaves[:keep], leaves[0]]) - cost(leaves[:keep])
    released = cost([*leaves[:keep + 1], leaves[0]]) - cost(leaves[:keep + 1])
    assert pinned < released, (pinned, released)
    assert db.check().ok


def test_a_transaction_that_changed_nothing_commits_nothing(open_db):
    """No record, no new version (iterators would restart), no checkpoint check."""
    db = open_db()
    t = db.tree("t")
    t[b"a"] = b"1"
    commits, version = db.stats()["commits"], db._version
    db._write(create_tree, "t")  # there already
    assert db._write(delete, "t", b"zz") is False  # the transaction path of a missing key
    assert db.stats()["commits"] == commits
    assert db._version == version
    t[b"b"] = b"2"
    assert db._version == version + 1


def test_trees_fill_the_metadata_page_to_the_byte(open_db):
    """Each tree takes 13 + len(name) bytes of META_TREES_ROOM (4024): 14
    names of 255 bytes and two of 123 fill it exactly; one more is refused."""
    db = open_db()
    names = [f"{i:03d}" + "n" * 252 for i in range(14)] + ["a" * 123, "b" * 123]
    for name in names:
        db.tree(name)
    assert sum(13 + len(n) for n in names) == META_TREES_ROOM
    with pytest.raises(engine.TreeLimitError, match=r"^the metadata page has no room for another tree$"):
        db.tree("x")
    assert sorted(db.trees()) == sorted(names)


def test_a_rollback_that_cannot_read_a_page_back_needs_recovery(tmp_path):
    """A batch in a 16-frame pool releases its pins at every operation, so
    its changed leaves are evicted to the log; a read failing for good
    fails the batch, and its rollback cannot fetch them back."""
    path = str(tmp_path / "r.db")
    with engine.open(path, sync="off") as db:
        db.tree("t").update((b"%04d" % i, b"v" * 200) for i in range(400))
    plan = FaultPlan()
    db = engine.open(path, opener=plan.opener(), pool_pages=16, sync="off")
    plan.fail("read", 25, persistent=True)
    with pytest.raises(engine.NeedsRecoveryError,
                       match=r"^rollback could not restore a page \(\[Errno 5\] read .*-wal: injected error "
                             r"\(call \d+\)\); reopen to recover$"):
        with db.batch() as b:
            for i in range(0, 400, 7):
                b.put("t", b"%04d" % i, b"w" * 200)
    with pytest.raises(engine.NeedsRecoveryError):
        db.tree("t")[b"more"] = b"x"
    db.close()
    with engine.open(path, sync="off") as again:  # the batch never committed
        assert dict(again.tree("t").items()) == {b"%04d" % i: b"v" * 200 for i in range(400)}
        assert again.check().ok


def test_a_reader_with_a_small_pool_evicts_the_leaves_it_replayed(tmp_path):
    """Leaves a reader changed in place carry the commit's LSN: evicting
    one encodes it (an LSN missing there cannot be encoded)."""
    path = str(tmp_path / "f.db")
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        t.update((b"%04d" % i, b"v" * 200) for i in range(400))
        w.checkpoint()
        r = engine.open(path, read_only=True, pool_pages=16)
        rt = r.tree("t")
        assert len(dict(rt.items())) == 400
        for i in range(0, 400, 3):
            t[b"%04d" % i] = b"w" * 200  # in place, leaf after leaf
        got = dict(rt.items())
        assert r.stats()["evictions"] > 16
        assert got == {b"%04d" % i: (b"w" if i % 3 == 0 else b"v") * 200 for i in range(400)}
        assert r.check().ok
        r.close()

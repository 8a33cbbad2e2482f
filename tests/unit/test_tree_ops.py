"""Tree.clear, Tree.update, pop/popitem/setdefault and Tree.load (the
December additions of the API)."""

from __future__ import annotations

import pytest

import engine


def _fill(t, n, value=b"v" * 20):
    with t._db.batch() as b:
        for i in range(n):
            b.put(t.name, b"k%06d" % i, value)


# -- clear ---------------------------------------------------------------------

def test_clear_is_one_commit_and_frees_every_page(open_db):
    db = open_db()
    t = db.tree("t")
    _fill(t, 5000)
    t[b"big"] = b"x" * 50_000  # an overflow chain is freed too
    db.tree("other")[b"keep"] = b"me"
    before = db.stats()
    t.clear()
    after = db.stats()
    assert after["commits"] - before["commits"] == 1
    assert len(t) == 0 and list(t) == [] and t.first() is None
    assert after["pages_free"] > before["pages_free"] + 100
    assert db.tree("other")[b"keep"] == b"me"
    report = db.check(strict=True)
    assert report.pages_leaked == 0
    t[b"again"] = b"1"  # the tree works after a clear
    assert list(t.items()) == [(b"again", b"1")]


def test_clear_survives_reopen_and_empty_clear(open_db, db_path):
    db = open_db()
    t = db.tree("t")
    t.clear()  # an empty tree: nothing to do, no error
    _fill(t, 300)
    t.clear()
    db.close()
    db = open_db()
    assert db.trees() == ["t"] and len(db.tree("t")) == 0
    db.check(strict=True)


def test_clear_on_dropped_tree_and_read_only(open_db, db_path):
    db = open_db()
    t = db.tree("t")
    t[b"a"] = b"1"
    db.drop_tree("t")
    with pytest.raises(KeyError):
        t.clear()
    db.tree("u")[b"a"] = b"1"
    db.close()
    ro = open_db(read_only=True)
    with pytest.raises(engine.ReadOnlyError):
        ro.tree("u", create=False).clear()
    assert len(ro.tree("u", create=False)) == 1

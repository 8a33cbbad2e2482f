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


# -- update, pop, popitem, setdefault -------------------------------------------

def test_update_is_one_atomic_commit(open_db):
    db = open_db()
    t = db.tree("t")
    before = db.stats()["commits"]
    t.update({b"k%03d" % i: b"v%d" % i for i in range(200)})
    assert db.stats()["commits"] - before == 1
    t.update([(b"a", b"1"), (bytearray(b"b"), memoryview(b"2"))])
    t.update(iter([(b"c", b"3")]))
    assert db.stats()["commits"] - before == 3
    assert len(t) == 203 and t[b"b"] == b"2" and t[b"k007"] == b"v7"
    t.update({})  # nothing to write: no commit
    t.update()
    assert db.stats()["commits"] - before == 3
    db.check(strict=True)


class _KeysOnly:
    """A mapping-like object with keys() and __getitem__ (dict.update accepts it)."""

    def keys(self):
        return [b"x", b"y"]

    def __getitem__(self, k):
        return k * 2


def test_update_accepts_what_dict_update_accepts(open_db):
    t = open_db().tree("t")
    t.update(_KeysOnly())
    assert dict(t.items()) == {b"x": b"xx", b"y": b"yy"}
    t.update([[b"p", b"q"]])  # any 2-item iterable as a pair
    assert t[b"p"] == b"q"


@pytest.mark.parametrize("bad", [
    [(b"a", b"1"), ("str-key", b"2")],
    [(b"a", b"1"), (b"b", "str-value")],
    [(b"a", b"1"), (b"", b"empty key")],
    [(b"a", b"1"), (b"x" * (engine.MAX_KEY_SIZE + 1), b"v")],
    [(b"a", b"1"), (b"abc",)],
])
def test_update_with_a_bad_item_changes_nothing(open_db, bad):
    db = open_db()
    t = db.tree("t")
    t[b"keep"] = b"old"
    before = db.stats()
    with pytest.raises((TypeError, ValueError)):
        t.update(bad)
    assert dict(t.items()) == {b"keep": b"old"}
    assert db.stats()["pages_allocated"] == before["pages_allocated"]
    with pytest.raises(TypeError):
        t.update(name=b"v")  # keyword names are str, keys are bytes
    with pytest.raises(TypeError):
        t.update({b"a": b"1"}, {b"b": b"2"})  # at most one positional, as dict
    assert dict(t.items()) == {b"keep": b"old"}
    db.check(strict=True)


def test_update_of_a_dropped_tree_raises_keyerror(open_db):
    db = open_db()
    t = db.tree("t")
    db.drop_tree("t")
    with pytest.raises(KeyError):
        t.update({b"a": b"1"})
    assert db.trees() == []


def test_pop_popitem_setdefault_as_dict(open_db):
    db = open_db()
    t = db.tree("t")
    t.update({b"a": b"1", b"b": b"2", b"big": b"z" * 9000})
    assert t.pop(b"a") == b"1" and b"a" not in t
    with pytest.raises(KeyError):
        t.pop(b"a")
    assert t.pop(b"a", b"dflt") == b"dflt" and t.pop(b"a", None) is None
    assert t.pop(b"big") == b"z" * 9000
    assert t.setdefault(b"b", b"other") == b"2" and t[b"b"] == b"2"
    assert t.setdefault(b"c", b"3") == b"3" and t[b"c"] == b"3"
    with pytest.raises(TypeError):
        t.setdefault(b"d")  # the default None is not a value
    assert b"d" not in t
    with pytest.raises(TypeError):
        t.pop("str")
    assert t.popitem() == (b"b", b"2")  # the smallest key first
    assert t.popitem() == (b"c", b"3")
    with pytest.raises(KeyError):
        t.popitem()
    assert len(t) == 0
    db.check(strict=True)


def test_pop_is_one_commit(open_db):
    db = open_db()
    t = db.tree("t")
    t[b"a"] = b"1"
    t[b"b"] = b"2"
    before = db.stats()["commits"]
    t.pop(b"a")
    t.popitem()
    t.pop(b"zz", None)  # a miss writes nothing
    assert db.stats()["commits"] - before == 2

"""Tree.clear, Tree.update, pop/popitem/setdefault and Tree.load (the
December additions of the API)."""

from __future__ import annotations

import os

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


# -- load ------------------------------------------------------------------------

import strategies as S  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _reopened(db, path, **kw):
    db.close()
    return engine.open(path, sync="off", **kw)


@settings(max_examples=60)
@given(data=st.dictionaries(S.keys(), st.one_of(S.values(), S.large_values()), max_size=150),
       long_keys=st.booleans())
def test_load_round_trips_any_sorted_items(tmp_path_factory, data, long_keys):
    path = str(tmp_path_factory.mktemp("load") / "db")
    if long_keys:  # 1 KiB keys: three separators to an internal node, so several levels
        data = {k.ljust(1000, b".")[:1024]: v[:300] for k, v in data.items()}
    items = sorted(data.items())
    db = engine.open(path, sync="off", pool_pages=16)
    t = db.tree("t")
    t.load(items)
    assert list(t.items()) == items and len(t) == len(items)
    assert list(t.scan(reverse=True)) == items[::-1]
    db.check(strict=True)
    db = _reopened(db, path, pool_pages=16)
    assert list(db.tree("t").items()) == items
    db.check(strict=True)
    db.close()


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 34, 65, 1000, 5000])
def test_load_sizes_at_page_boundaries(open_db, n):
    db = open_db(pool_pages=16)
    t = db.tree("t")
    items = [(b"k%08d" % i, b"v" * 100) for i in range(n)]  # 125-byte cells: 32 to a leaf
    before = db.stats()["commits"]
    t.load(items)
    assert db.stats()["commits"] - before == 1
    assert list(t.items()) == items
    report = db.check(strict=True)
    assert report.pages_leaked == 0
    t[b"k00000000x"] = b"after"  # the loaded tree takes ordinary writes
    del t[b"k%08d" % (n - 1)]
    db.check(strict=True)


def test_load_many_levels_with_long_keys(open_db):
    db = open_db(pool_pages=16)
    t = db.tree("t")
    items = [(b"%06d" % i + b"k" * 1018, b"v") for i in range(3000)]
    t.load(items)
    assert len(db.tree_levels("t")) >= 4
    assert t.first() == items[0] and t.last() == items[-1]
    assert t[items[1234][0]] == b"v"
    db.check(strict=True)


def test_load_stores_large_values_in_overflow_pages(open_db):
    db = open_db(pool_pages=16)
    t = db.tree("t")
    items = [(b"a", b"x" * 100_000), (b"b", b""), (b"c", b"y" * 1400), (b"d", b"z" * 5000)]
    t.load(items)
    assert list(t.items()) == items
    db.check(strict=True)


def test_load_into_a_tree_emptied_by_deletes(open_db):
    db = open_db()
    t = db.tree("t")
    t[b"x"] = b"1"
    del t[b"x"]
    t.load([(b"a", b"1"), (b"b", b"2")])
    assert dict(t.items()) == {b"a": b"1", b"b": b"2"}
    report = db.check(strict=True)
    assert report.pages_leaked == 0


@pytest.mark.parametrize("items, error", [
    ([(b"b", b"1"), (b"a", b"2")], engine.UnsortedItemsError),
    ([(b"a", b"1"), (b"a", b"2")], engine.UnsortedItemsError),
    ([(b"a", b"1"), ("b", b"2")], TypeError),
    ([(b"a", b"1"), (b"b", "2")], TypeError),
    ([(b"a", b"1"), (b"", b"2")], engine.KeyTooLargeError),
    ([(b"a", b"1"), (b"b" * (engine.MAX_KEY_SIZE + 1), b"2")], engine.KeyTooLargeError),
    ([(b"a", b"1"), (b"b", b"2", b"3")], ValueError),
    ([(b"a", b"1"), 7], TypeError),
])
def test_load_refuses_bad_items_and_changes_nothing(open_db, items, error):
    db = open_db()
    t = db.tree("t")
    before = db.stats()
    with pytest.raises(error):
        t.load(iter([(b"0", b"x" * 9000)] + items))
    after = db.stats()
    assert len(t) == 0 and list(t) == []
    assert (after["pages_allocated"], after["pages_free"], after["commits"]) == (
        before["pages_allocated"], before["pages_free"], before["commits"])
    assert issubclass(engine.UnsortedItemsError, (engine.DragonDBError, ValueError))
    db.check(strict=True)


def test_load_refuses_a_tree_with_keys(open_db):
    db = open_db()
    t = db.tree("t")
    t[b"m"] = b"1"
    before = db.stats()
    with pytest.raises(engine.TreeNotEmptyError):
        t.load([(b"a", b"1")])
    assert isinstance(engine.TreeNotEmptyError("x"), ValueError)
    assert dict(t.items()) == {b"m": b"1"}
    assert db.stats()["pages_allocated"] == before["pages_allocated"]
    db.drop_tree("t")
    with pytest.raises(KeyError):
        t.load([(b"a", b"1")])
    db.check(strict=True)


def test_load_makes_a_file_no_larger_than_random_puts(tmp_path):
    import random

    rng = random.Random(7)
    items = sorted({rng.randbytes(16): rng.randbytes(100) for _ in range(20_000)}.items())
    shuffled = items[:]
    rng.shuffle(shuffled)
    sizes = {}
    for how in ("load", "puts"):
        path = str(tmp_path / how)
        with engine.open(path, sync="off") as db:
            t = db.tree("t")
            if how == "load":
                t.load(items)
            else:
                for k, v in shuffled:
                    t[k] = v
            db.check(strict=True)
        sizes[how] = os.path.getsize(path)
    assert sizes["load"] <= sizes["puts"] * 0.8, sizes


@pytest.mark.parametrize("kind, nth, file", [
    ("write", 1, "-wal"), ("write", 2, "-wal"), ("write", 3, "-wal"), ("extend", 1, "db"),
])
def test_load_failing_on_io_changes_nothing(tmp_path, kind, nth, file):
    """A log write (spilled pages, the commit record) or the file growth
    failing mid-load: the load raises and leaves no trace, no leaked page."""
    from faults.io import FaultPlan

    plan = FaultPlan(seed=1)
    path = str(tmp_path / "db")
    db = engine.open(path, opener=plan.opener(), pool_pages=16, sync="off")
    t = db.tree("t")
    t[b"other"] = b"1"
    db.tree("u")[b"x"] = b"y"
    db.checkpoint()
    before = db.stats()
    items = [(b"k%06d" % i, b"v" * 200) for i in range(6000)]  # 2 runs of spilled leaves, then the commit
    t.clear()
    plan.fail(kind, nth, file=file)
    with pytest.raises(engine.StorageIOError):
        t.load(items)
    assert plan.injected
    assert len(t) == 0 and db.tree("u")[b"x"] == b"y"
    report = db.check(strict=True)
    assert report.pages_leaked == 0
    assert db.stats()["pages_allocated"] - db.stats()["pages_free"] <= before["pages_allocated"] - before["pages_free"]
    t.load(items[:10])  # works again
    db.close()
    with engine.open(path) as db:
        assert list(db.tree("t").items()) == items[:10]
        db.check(strict=True)

"""`engine.tree`, exactly: keys that are not exact bytes through every
method, errors naming what was missing, one-sided and empty scans, a scan
reading its chunks once, the views' membership, and a read-only handle's
reads with their defaults, ends and bounds."""

from __future__ import annotations

import pytest

import engine


@pytest.fixture
def t(open_db):
    tree = open_db().tree("t")
    tree.update((b"k%02d" % i, b"v%02d" % i) for i in range(10))
    return tree


def test_keys_as_bytearray_or_memoryview_work_everywhere(t):
    for conv in (bytearray, memoryview):
        assert t.get(conv(b"k01")) == b"v01"
        assert conv(b"k02") in t
        assert t[conv(b"k03")] == b"v03"
        t[conv(b"new")] = conv(b"n")
        assert t.get(b"new") == b"n"
        assert t.delete(conv(b"new")) is True
        assert t.delete(conv(b"new")) is False


@pytest.mark.parametrize("bad, error, message", [
    ("k01", TypeError, r"^keys are bytes, not str$"),
    (b"", engine.KeyTooLargeError, r"^key of 0 bytes; keys are 1\.\.1024 bytes$"),
    (b"k" * 1025, engine.KeyTooLargeError, r"^key of 1025 bytes; keys are 1\.\.1024 bytes$"),
])
def test_bad_keys_raise_from_every_method(t, bad, error, message):
    for call in (lambda: t.get(bad), lambda: t.delete(bad), lambda: t.put(bad, b"v"), lambda: t[bad],
                 lambda: bad in t, lambda: t.pop(bad), lambda: t.setdefault(bad, b"d")):
        with pytest.raises(error, match=message):
            call()
    assert len(t) == 10


def test_missing_keys_are_named_in_keyerror(t):
    for call in (lambda: t[b"zz"], lambda: t.__delitem__(b"zz"), lambda: t.pop(b"zz")):
        with pytest.raises(KeyError) as info:
            call()
        assert info.value.args == (b"zz",)
    t.clear()
    with pytest.raises(KeyError) as info:
        t.popitem()
    assert info.value.args == ("popitem(): tree is empty",)


def test_pop_of_a_dropped_tree_is_a_missing_key(open_db):
    db = open_db()
    t = db.tree("t")
    t[b"k"] = b"v"
    db.drop_tree("t")
    assert t.pop(b"k", b"default") == b"default"
    assert t.pop(b"k", None) is None
    with pytest.raises(KeyError) as info:
        t.pop(b"k")
    assert info.value.args == (b"k",)


def test_setdefault_of_a_present_key_needs_no_default(t):
    commits = t._db.stats()["commits"]
    assert t.setdefault(b"k01") == b"v01"
    assert t.setdefault(b"k01", b"other") == b"v01"
    assert t._db.stats()["commits"] == commits
    with pytest.raises(TypeError, match=r"^values are bytes, not NoneType$"):
        t.setdefault(b"absent")


def test_update_refusals_name_the_item(t):
    with pytest.raises(ValueError, match=r"^update: item #1 is not a \(key, value\) pair$"):
        t.update([(b"a", b"1"), (b"b",)])
    with pytest.raises(TypeError, match=r"^update: item #0 is not a \(key, value\) pair$"):
        t.update([5])
    with pytest.raises(TypeError, match=r"^keys are bytes, not str$"):
        t.update(name=b"v")  # a keyword's name is a str key
    assert len(t) == 10


def test_load_takes_values_of_any_bytes_type_and_names_a_full_tree(open_db):
    t = open_db().tree("t")
    t.load([(b"a", bytearray(b"1")), (b"b", memoryview(b"2")), (b"c", b"3")])
    assert dict(t.items()) == {b"a": b"1", b"b": b"2", b"c": b"3"}
    with pytest.raises(engine.TreeNotEmptyError,
                       match=r"^load: tree 't' holds 3 keys; load fills an empty tree$"):
        t.load([(b"d", b"4")])
    with pytest.raises(TypeError, match=r"^values are bytes, not str$"):
        t.load([(b"x", "str")])


def test_scans_bounded_on_one_side_or_empty(t):
    assert [k for k, _ in t.scan(end=b"k02")] == [b"k00", b"k01"]
    assert [k for k, _ in t.scan(start=b"k08")] == [b"k08", b"k09"]
    assert [k for k, _ in t.scan(start=b"k08", reverse=True)] == [b"k09", b"k08"]
    db = t._db
    before = db.stats()["pool_hits"]
    assert list(t.scan(start=b"k05", end=b"k05")) == []  # empty: not a page read
    assert list(t.scan(start=b"k06", end=b"k05")) == []
    assert db.stats()["pool_hits"] == before


def test_a_scan_reads_its_chunk_once_when_nothing_changes(open_db):
    db = open_db()
    t = db.tree("t")
    t.update((b"%03d" % i, b"v") for i in range(20))  # one leaf, the root
    before = db.stats()["pool_hits"]
    assert len(list(t.scan())) == 20
    assert db.stats()["pool_hits"] - before == 1  # a chunk that says it is the last is not followed by another
    t.update((b"%03d" % i, b"v") for i in range(200))  # one chunk of at most 256
    before = db.stats()["pool_hits"]
    assert len(list(t.scan())) == 200
    assert db.stats()["pool_hits"] - before < 10  # not a chunk per key


def test_a_scan_resumes_after_a_commit_made_during_it(t):
    it = t.scan()
    assert next(it) == (b"k00", b"v00")
    t[b"k05"] = b"changed"  # the version moves: the scan fetches again after k00
    t[b"k015"] = b"inserted"
    rest = list(it)
    assert [k for k, _ in rest] == [b"k01", b"k015", *(b"k%02d" % i for i in range(2, 10))]
    assert dict(rest)[b"k05"] == b"changed"


def test_a_prefix_of_0xff_bytes_with_an_end(t):
    t[b"\xff\x01"] = b"a"
    t[b"\xff\x09"] = b"b"
    assert [k for k, _ in t.scan(prefix=b"\xff", end=b"\xff\x05")] == [b"\xff\x01"]
    assert [k for k, _ in t.scan(prefix=b"k0", end=b"k02")] == [b"k00", b"k01"]
    assert [k for k, _ in t.scan(prefix=b"k0", end=b"zz")][-1] == b"k09"


def test_a_dropped_trees_reads_say_so(open_db):
    db = open_db()
    t = db.tree("t")
    db.drop_tree("t")
    for call in (lambda: t.get(b"k"), lambda: len(t), lambda: list(t.scan())):
        with pytest.raises(KeyError) as info:
            call()
        assert info.value.args == ("tree 't' was dropped",)


def test_views_membership_and_repr(t):
    items = t.items()
    assert (b"k01", b"v01") in items
    assert (b"k01", b"other") not in items
    assert (b"k01",) not in items
    assert b"ab" not in items  # not a tuple, though of length 2
    assert 5 not in items
    assert b"v01" in t.values() and b"zz" not in t.values()
    assert repr(t) in repr(items)
    assert repr(t) in repr(t.values())


def test_a_read_only_handles_reads(tmp_path):
    path = str(tmp_path / "r.db")
    with engine.open(path, sync="off") as w:
        w.tree("t").update((b"k%02d" % i, b"v%02d" % i) for i in range(10))
    with engine.open(path, read_only=True) as r:
        rt = r.tree("t")
        assert rt.get(b"zz", b"default") == b"default"
        assert rt.get(b"k01", b"default") == b"v01"
        assert rt.first() == (b"k00", b"v00")
        assert rt.last() == (b"k09", b"v09")
        assert [k for k, _ in rt.scan(start=b"k07")] == [b"k07", b"k08", b"k09"]
        assert [k for k, _ in rt.scan(end=b"k02")] == [b"k00", b"k01"]
        assert [k for k, _ in rt.scan(start=b"k01", end=b"k03", reverse=True)] == [b"k02", b"k01"]
        assert len(rt) == 10

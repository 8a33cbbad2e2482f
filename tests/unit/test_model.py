"""Unit tests for the reference models (`models.ModelDatabase`, `models.ModelPageStore`).

The model is the yardstick for the engine, so its own behaviour is pinned
here against plain `dict`/`sorted` computations and against docs/api.md.
"""

from __future__ import annotations

import pytest
import strategies as S
from hypothesis import given, settings
from hypothesis import strategies as st

import models
from engine.errors import (
    DatabaseClosedError,
    KeyTooLargeError,
    ReadOnlyError,
    TreeLimitError,
)
from models import MAX_KEY_SIZE, ModelDatabase, ModelPageStore


@pytest.fixture
def db() -> ModelDatabase:
    database = ModelDatabase()
    yield database
    if not database.closed:
        report = database.check()
        assert report.ok, report.problems


@pytest.fixture
def tree(db: ModelDatabase):
    return db.tree("default")


def fill(tree, keys) -> None:
    for key in keys:
        tree.put(key, b"v" + key)


# -- constants and exports ----------------------------------------------------


def test_max_key_size_is_1024() -> None:
    assert models.MAX_KEY_SIZE == 1024


def test_public_names_are_exported() -> None:
    for name in models.__all__:
        assert hasattr(models, name), name


# -- single-key operations ----------------------------------------------------


def test_put_get_overwrite(tree) -> None:
    tree.put(b"k", b"1")
    assert tree.get(b"k") == b"1"
    tree.put(b"k", b"2")
    assert tree.get(b"k") == b"2"
    assert len(tree) == 1


def test_get_default(tree) -> None:
    assert tree.get(b"missing") is None
    marker = object()
    assert tree.get(b"missing", marker) is marker


def test_empty_value_is_stored(tree) -> None:
    tree[b"e"] = b""
    assert b"e" in tree
    assert tree[b"e"] == b""
    assert tree.get(b"e", b"default") == b""


def test_delete_returns_whether_present(tree) -> None:
    tree.put(b"k", b"v")
    assert tree.delete(b"k") is True
    assert tree.delete(b"k") is False
    assert len(tree) == 0


def test_mapping_protocol(tree) -> None:
    tree[b"a"] = b"1"
    assert tree[b"a"] == b"1"
    assert b"a" in tree
    assert b"b" not in tree
    del tree[b"a"]
    assert b"a" not in tree


def test_missing_key_errors_like_dict(tree) -> None:
    with pytest.raises(KeyError) as info:
        tree[b"nope"]
    assert info.value.args == (b"nope",)
    with pytest.raises(KeyError):
        del tree[b"nope"]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_keys_and_values_are_copied(tree, kind) -> None:
    key_buf = bytearray(b"key")
    value_buf = bytearray(b"value")
    tree.put(kind(key_buf), kind(value_buf))
    key_buf[0] = ord("X")
    value_buf[0] = ord("X")
    assert tree[b"key"] == b"value"
    assert type(tree[b"key"]) is bytes
    assert list(tree.keys()) == [b"key"]
    assert type(next(iter(tree))) is bytes


@pytest.mark.parametrize("bad", ["str", 1, None, 1.5, ["b"]])
def test_non_bytes_key_is_type_error(tree, bad) -> None:
    for call in (
        lambda: tree.put(bad, b"v"),
        lambda: tree.get(bad),
        lambda: tree.delete(bad),
        lambda: tree[bad],
        lambda: tree.__setitem__(bad, b"v"),
        lambda: tree.__delitem__(bad),
        lambda: bad in tree,
    ):
        with pytest.raises(TypeError):
            call()
    assert len(tree) == 0


@pytest.mark.parametrize("bad", ["str", 1, None, [1]])
def test_non_bytes_value_is_type_error(tree, bad) -> None:
    with pytest.raises(TypeError):
        tree.put(b"k", bad)
    with pytest.raises(TypeError):
        tree[b"k"] = bad
    assert b"k" not in tree


@pytest.mark.parametrize("size", [0, MAX_KEY_SIZE + 1, 5000])
def test_bad_key_size_is_key_too_large(tree, size) -> None:
    key = b"x" * size
    with pytest.raises(KeyTooLargeError):
        tree.put(key, b"v")
    with pytest.raises(ValueError):  # KeyTooLargeError is also a ValueError
        tree.get(key)
    with pytest.raises(KeyTooLargeError):
        tree.delete(key)
    assert len(tree) == 0


def test_key_sizes_at_the_limits_are_accepted(tree) -> None:
    tree.put(b"\x00", b"min")
    tree.put(b"\xff" * MAX_KEY_SIZE, b"max")
    assert tree[b"\x00"] == b"min"
    assert tree[b"\xff" * MAX_KEY_SIZE] == b"max"


def test_large_value(tree) -> None:
    value = S.filled(7, 100_000)
    tree.put(b"big", value)
    assert tree[b"big"] == value


# -- ordering, scan, first/last -----------------------------------------------

KEYS = [b"a", b"ab", b"abc", b"abd", b"b", b"ba", b"c", b"\x00", b"\xff"]


def test_iteration_is_unsigned_byte_order(tree) -> None:
    fill(tree, reversed(KEYS))
    assert list(tree) == sorted(KEYS)
    assert list(tree.keys()) == sorted(KEYS)
    assert list(tree.values()) == [b"v" + k for k in sorted(KEYS)]
    assert list(tree.items()) == [(k, b"v" + k) for k in sorted(KEYS)]
    assert list(tree)[-1] == b"\xff"  # 0xff sorts last: unsigned


def test_views_are_sized_and_reiterable(tree) -> None:
    fill(tree, [b"b", b"a"])
    items = tree.items()
    assert len(items) == 2
    assert list(items) == list(items) == [(b"a", b"va"), (b"b", b"vb")]
    assert (b"a", b"va") in items
    assert b"vb" in tree.values()
    assert b"a" in tree.keys()
    tree.put(b"c", b"vc")
    assert len(tree.keys()) == 3  # views follow the tree


def test_first_last(tree) -> None:
    assert tree.first() is None
    assert tree.last() is None
    fill(tree, KEYS)
    assert tree.first() == (b"\x00", b"v\x00")
    assert tree.last() == (b"\xff", b"v\xff")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, sorted(KEYS)),
        ({"start": b"ab"}, [b"ab", b"abc", b"abd", b"b", b"ba", b"c", b"\xff"]),
        ({"end": b"ab"}, [b"\x00", b"a"]),
        ({"start": b"ab", "end": b"b"}, [b"ab", b"abc", b"abd"]),
        ({"start": b"abb", "end": b"abd"}, [b"abc"]),
        ({"start": b"b", "end": b"b"}, []),
        ({"start": b"c", "end": b"a"}, []),
        ({"prefix": b"ab"}, [b"ab", b"abc", b"abd"]),
        ({"prefix": b"ab", "start": b"abc"}, [b"abc", b"abd"]),
        ({"prefix": b"ab", "end": b"abd"}, [b"ab", b"abc"]),
        ({"prefix": b"zz"}, []),
        ({"prefix": b""}, sorted(KEYS)),
        ({"start": b""}, sorted(KEYS)),
        ({"end": b""}, []),
    ],
)
def test_scan_bounds(tree, kwargs, expected) -> None:
    fill(tree, KEYS)
    assert [k for k, _ in tree.scan(**kwargs)] == expected
    assert [k for k, _ in tree.scan(**kwargs, reverse=True)] == expected[::-1]


def test_scan_returns_values(tree) -> None:
    fill(tree, KEYS)
    assert list(tree.scan(b"b", b"c")) == [(b"b", b"vb"), (b"ba", b"vba")]


def test_scan_rejects_str_bounds_eagerly(tree) -> None:
    for kwargs in ({"start": "a"}, {"end": "a"}, {"prefix": "a"}, {"start": 3}):
        with pytest.raises(TypeError):
            tree.scan(**kwargs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(S.keys(), max_size=30, unique=True),
    S.bounds(),
    S.bounds(),
    S.bounds(),
    st.booleans(),
)
def test_scan_matches_filtered_sort(keys, start, end, prefix, reverse) -> None:
    db = ModelDatabase()
    tree = db.tree("t")
    fill(tree, keys)
    expected = [
        k
        for k in sorted(keys)
        if (start is None or k >= start)
        and (end is None or k < end)
        and (prefix is None or k.startswith(prefix))
    ]
    if reverse:
        expected.reverse()
    got = [k for k, _ in tree.scan(start, end, reverse=reverse, prefix=prefix)]
    assert got == expected


# -- iteration under mutation -------------------------------------------------


def test_iteration_continues_after_last_returned_key(tree) -> None:
    fill(tree, [b"a", b"c", b"e"])
    it = iter(tree)
    assert next(it) == b"a"
    tree.put(b"b", b"new")  # after "a": seen
    tree.delete(b"c")  # not yet returned: skipped
    tree.put(b"0", b"old")  # before "a": not seen
    assert list(it) == [b"b", b"e"]


def test_reverse_scan_under_mutation(tree) -> None:
    fill(tree, [b"a", b"c", b"e"])
    it = tree.scan(reverse=True)
    assert next(it)[0] == b"e"
    tree.put(b"d", b"new")
    tree.delete(b"a")
    tree.put(b"z", b"late")
    assert [k for k, _ in it] == [b"d", b"c"]


def test_items_see_current_values(tree) -> None:
    fill(tree, [b"a", b"b"])
    it = iter(tree.items())
    assert next(it) == (b"a", b"va")
    tree.put(b"b", b"changed")
    assert list(it) == [(b"b", b"changed")]


def test_deleting_every_key_while_iterating(tree) -> None:
    fill(tree, KEYS)
    seen = []
    for key in tree:
        seen.append(key)
        tree.delete(key)
    assert seen == sorted(KEYS)
    assert len(tree) == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_iteration_under_random_mutation(data) -> None:
    db = ModelDatabase()
    tree = db.tree("t")
    keys = data.draw(st.lists(S.keys(), max_size=20, unique=True))
    fill(tree, keys)
    reverse = data.draw(st.booleans())
    it = tree.scan(reverse=reverse)
    shadow = dict.fromkeys(keys, b"")
    last = None
    while True:
        if data.draw(st.booleans()):
            key = data.draw(S.keys())
            if data.draw(st.booleans()):
                tree.put(key, b"x")
                shadow[key] = b""
            else:
                tree.delete(key)
                shadow.pop(key, None)
        item = next(it, None)
        # The next key is the first in walk order after `last` in the current contents.
        pending = sorted(shadow, reverse=reverse)
        if last is not None:
            pending = [k for k in pending if (k < last if reverse else k > last)]
        if item is None:
            assert pending == []
            break
        assert item[0] == pending[0]
        last = item[0]


# -- trees --------------------------------------------------------------------


def test_trees_sorted_and_created_on_demand(db) -> None:
    assert db.trees() == []
    db.tree("b")
    db.tree("a")
    db.tree("b")
    assert db.trees() == ["a", "b"]


def test_default_tree_name_and_snapshot(db) -> None:
    db.tree().put(b"k", b"v")
    db.tree("other")
    assert db.trees() == ["default", "other"]
    assert db.snapshot() == {"default": {b"k": b"v"}, "other": {}}


def test_tree_create_false(db) -> None:
    with pytest.raises(KeyError):
        db.tree("missing", create=False)
    assert db.trees() == []
    db.tree("present")
    assert db.tree("present", create=False).name == "present"


def test_trees_are_independent(db) -> None:
    db.tree("a").put(b"k", b"1")
    db.tree("b").put(b"k", b"2")
    assert db.tree("a")[b"k"] == b"1"
    assert db.tree("b")[b"k"] == b"2"


def test_drop_tree(db) -> None:
    t = db.tree("a")
    t.put(b"k", b"v")
    db.drop_tree("a")
    assert db.trees() == []
    with pytest.raises(KeyError):
        db.drop_tree("a")
    with pytest.raises(KeyError):
        t.get(b"k")  # a handle on a dropped tree is stale
    assert len(db.tree("a")) == 0  # recreated empty


@pytest.mark.parametrize("name", ["x", "é" * 127, "x" * 255, "ünï code", "a/b"])
def test_valid_tree_names(db, name) -> None:
    db.tree(name)
    assert db.trees() == [name]


@pytest.mark.parametrize("name", ["", "x" * 256, "é" * 128, "\ud800"])
def test_invalid_tree_names(db, name) -> None:
    with pytest.raises(TreeLimitError):
        db.tree(name)
    with pytest.raises(TreeLimitError):
        db.drop_tree(name)
    assert db.trees() == []


@pytest.mark.parametrize("name", [b"bytes", 1, None])
def test_non_str_tree_name_is_type_error(db, name) -> None:
    with pytest.raises(TypeError):
        db.tree(name)


@settings(max_examples=30, deadline=None)
@given(S.tree_names())
def test_strategy_tree_names_are_valid(name) -> None:
    db = ModelDatabase()
    db.tree(name)
    assert db.trees() == [name]


@settings(max_examples=30, deadline=None)
@given(S.bad_tree_names())
def test_strategy_bad_tree_names_are_rejected(name) -> None:
    with pytest.raises(TreeLimitError):
        ModelDatabase().tree(name)


# -- batches ------------------------------------------------------------------


def test_batch_applies_on_exit(db) -> None:
    db.tree("a").put(b"gone", b"x")
    with db.batch() as b:
        b.put("a", b"k", b"v")
        b.delete("a", b"gone")
        b.put("new", b"k2", b"v2")
        assert db.tree("a").get(b"k") is None  # not visible before commit
    assert db.tree("a")[b"k"] == b"v"
    assert b"gone" not in db.tree("a")
    assert db.tree("new", create=False)[b"k2"] == b"v2"


def test_batch_ops_apply_in_order(db) -> None:
    with db.batch() as b:
        b.put("a", b"k", b"1")
        b.delete("a", b"k")
        b.put("a", b"j", b"1")
        b.put("a", b"j", b"2")
    assert dict(db.tree("a").items()) == {b"j": b"2"}


def test_batch_delete_of_missing_tree_is_noop(db) -> None:
    with db.batch() as b:
        b.delete("nothing", b"k")
    assert db.trees() == []


def test_batch_discarded_on_exception(db) -> None:
    db.tree("a").put(b"k", b"old")
    with pytest.raises(RuntimeError), db.batch() as b:
        b.put("a", b"k", b"new")
        b.put("b", b"k", b"new")
        raise RuntimeError("abort")
    assert db.tree("a")[b"k"] == b"old"
    assert db.trees() == ["a"]


def test_batch_validates_arguments_when_recorded(db) -> None:
    with db.batch() as b:
        with pytest.raises(TypeError):
            b.put("a", "str", b"v")
        with pytest.raises(TypeError):
            b.put("a", b"k", "str")
        with pytest.raises(KeyTooLargeError):
            b.delete("a", b"")
        with pytest.raises(TreeLimitError):
            b.put("", b"k", b"v")
        b.put("a", b"ok", b"v")
    assert dict(db.tree("a").items()) == {b"ok": b"v"}


def test_batch_outside_with_block(db) -> None:
    b = db.batch()
    with pytest.raises(RuntimeError):
        b.put("a", b"k", b"v")


def test_batch_on_read_only_database() -> None:
    db = ModelDatabase(read_only=True)
    with pytest.raises(ReadOnlyError):
        db.batch()


# -- lifecycle ----------------------------------------------------------------


def test_commit_and_checkpoint_are_noops(tree, db) -> None:
    tree.put(b"k", b"v")
    db.commit()
    db.checkpoint()
    assert tree[b"k"] == b"v"


def test_close_is_idempotent_and_final(db) -> None:
    t = db.tree("a")
    t.put(b"k", b"v")
    it = iter(t)
    db.close()
    db.close()
    assert db.closed
    for call in (
        lambda: db.tree("a"),
        db.trees,
        lambda: db.drop_tree("a"),
        db.batch,
        db.commit,
        db.checkpoint,
        db.check,
        lambda: t.get(b"k"),
        lambda: t.put(b"k", b"v"),
        lambda: len(t),
        lambda: b"k" in t,
        t.first,
        lambda: list(t.scan()),
        lambda: next(it),
    ):
        with pytest.raises(DatabaseClosedError):
            call()


def test_argument_errors_come_before_state_errors(db) -> None:
    # The engine's order: arguments, then closed, then read-only, then existence.
    t = db.tree("a")
    db.close()
    with pytest.raises(TypeError):
        t.put("str", b"v")
    with pytest.raises(KeyTooLargeError):
        t.get(b"")
    with pytest.raises(TreeLimitError):
        db.tree("")
    with pytest.raises(TypeError):
        t.scan(start="a")


def test_read_only_comes_before_existence() -> None:
    db = ModelDatabase(read_only=True)
    with pytest.raises(ReadOnlyError):
        db.drop_tree("missing")


def test_context_manager_closes() -> None:
    with ModelDatabase() as db:
        db.tree("a").put(b"k", b"v")
    assert db.closed


def test_reopen_keeps_contents() -> None:
    db = ModelDatabase()
    db.tree("a").put(b"k", b"v")
    db.close()
    again = db.reopen()
    assert again.tree("a")[b"k"] == b"v"
    again.tree("a").put(b"k", b"changed")
    assert db.reopen().tree("a")[b"k"] == b"v"  # a copy, not shared



def test_from_snapshot_is_the_inverse_of_snapshot() -> None:
    trees = {"a": {b"k": b"v", b"j": b""}, "empty": {}}
    db = ModelDatabase.from_snapshot(trees)
    assert db.snapshot() == trees and db.trees() == ["a", "empty"]
    assert list(db.tree("a")) == [b"j", b"k"]  # ordered, as if put one by one
    db.tree("a").put(b"k", b"changed")
    assert trees["a"][b"k"] == b"v"  # a copy, not shared

def test_read_only_refuses_every_write() -> None:
    source = ModelDatabase()
    source.tree("a").put(b"k", b"v")
    db = source.reopen(read_only=True)
    t = db.tree("a")
    for call in (
        lambda: t.put(b"k", b"x"),
        lambda: t.__setitem__(b"k", b"x"),
        lambda: t.delete(b"k"),
        lambda: t.__delitem__(b"k"),
        lambda: db.tree("new"),
        lambda: db.drop_tree("a"),
    ):
        with pytest.raises(ReadOnlyError):
            call()
    assert t[b"k"] == b"v"
    assert db.trees() == ["a"]
    assert list(t.scan()) == [(b"k", b"v")]
    db.commit()
    db.checkpoint()


def test_check_reports_broken_invariants(db) -> None:
    t = db.tree("a")
    fill(t, [b"a", b"b"])
    assert db.check().ok
    assert db.check().pages_leaked == 0
    db._trees["a"].keys.reverse()  # break the model on purpose
    report = db.check()
    assert not report.ok
    assert any("ascending" in p for p in report.problems)
    with pytest.raises(AssertionError):
        db.check(strict=True)
    db._trees["a"].keys.reverse()


def test_check_reports_key_list_mismatch(db) -> None:
    t = db.tree("a")
    fill(t, [b"a"])
    db._trees["a"].keys.append(b"zz")
    assert any("differs" in p for p in db.check().problems)
    db._trees["a"].keys.pop()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), S.keys(), S.values()), max_size=40))
def test_model_tree_matches_dict(ops) -> None:
    db = ModelDatabase()
    tree = db.tree("t")
    shadow: dict[bytes, bytes] = {}
    for is_put, key, value in ops:
        if is_put:
            tree.put(key, value)
            shadow[key] = value
        else:
            assert tree.delete(key) == (shadow.pop(key, None) is not None)
    assert list(tree.items()) == sorted(shadow.items())
    assert len(tree) == len(shadow)
    assert db.check_invariants() == []


@settings(max_examples=40, deadline=None)
@given(S.keys(), S.values())
def test_strategies_yield_valid_keys_and_values(key, value) -> None:
    assert 1 <= len(key) <= MAX_KEY_SIZE
    assert isinstance(value, bytes)


@settings(max_examples=40, deadline=None)
@given(S.bad_keys())
def test_strategy_bad_keys_are_rejected(key) -> None:
    with pytest.raises((TypeError, KeyTooLargeError)):
        ModelDatabase().tree("t").put(key, b"v")


# -- ModelPageStore -------------------------------------------------------------


def test_pagestore_new_pages_are_zero_and_increasing() -> None:
    store = ModelPageStore()
    ids = [store.new_page() for _ in range(3)]
    assert ids == [0, 1, 2]
    assert all(store.read(i) == bytes(4096) for i in ids)
    assert len(store) == 3
    assert store.page_ids() == ids


def test_pagestore_write_read_copy() -> None:
    store = ModelPageStore(page_size=16, first_page_id=1)
    pid = store.new_page()
    assert pid == 1
    buf = bytearray(b"x" * 16)
    store.write(pid, buf)
    buf[0] = 0
    assert store.read(pid) == b"x" * 16


def test_pagestore_errors() -> None:
    store = ModelPageStore(page_size=16)
    with pytest.raises(KeyError):
        store.read(0)
    pid = store.new_page()
    with pytest.raises(ValueError):
        store.write(pid, b"short")
    with pytest.raises(KeyError):
        store.write(99, bytes(16))
    store.free(pid)
    assert pid not in store
    with pytest.raises(KeyError):
        store.read(pid)
    assert store.new_page() == pid + 1  # ids are never reused
    with pytest.raises(ValueError):
        ModelPageStore(page_size=0)
    with pytest.raises(ValueError):
        ModelPageStore(first_page_id=-1)


def test_pagestore_check_invariants() -> None:
    store = ModelPageStore(page_size=8)
    pid = store.new_page()
    assert store.check_invariants() == []
    store._pages[pid] = b"bad"
    store._pages[50] = bytes(8)
    problems = store.check_invariants()
    assert len(problems) == 2


def test_pagestore_is_a_page_store() -> None:
    """`read_page`/`write_page`: the engine's `PageStore` protocol, on buffers."""
    store = ModelPageStore(page_size=8)
    pid = store.new_page()
    store.write_page(pid, memoryview(b"abcdefgh"))
    buf = bytearray(8)
    store.read_page(pid, memoryview(buf))
    assert buf == b"abcdefgh"
    with pytest.raises(KeyError):
        store.read_page(5, memoryview(buf))
    with pytest.raises(KeyError):
        store.write_page(5, memoryview(buf))
    assert store.images() == {pid: b"abcdefgh"}


def test_pagestore_grows_like_a_file() -> None:
    """`grow=True`: a page never written reads as zeros; writing one allocates
    it and every id before it; a freed id stays gone."""
    store = ModelPageStore(page_size=8, grow=True)
    assert store.read(3) == bytes(8) and len(store) == 0
    store.write(2, b"x" * 8)
    assert store.page_ids() == [0, 1, 2] and store.read(1) == bytes(8) and store.read(2) == b"x" * 8
    assert store.new_page() == 3
    store.free(1)
    with pytest.raises(KeyError):
        store.read(1)
    with pytest.raises(KeyError):
        store.write(1, bytes(8))
    assert store.check_invariants() == []

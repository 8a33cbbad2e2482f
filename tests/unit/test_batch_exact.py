"""`engine.batch`, exactly: each state's refusal by message, what a batch
holds before and after its block, arguments of every bytes type and bad
ones, and the cache of tree names already checked."""

from __future__ import annotations

import pytest

import engine
from engine.arguments import NAMES_SEEN


class _Abort(Exception):
    pass


def test_each_misuse_names_the_state(open_db):
    db = open_db()
    b = db.batch()
    with pytest.raises(engine.BatchStateError, match=r"^batch used outside its with-block \(new\)$"):
        b.put("t", b"k", b"v")
    with pytest.raises(engine.BatchStateError, match=r"^batch used outside its with-block \(new\)$"):
        b.delete("t", b"k")
    with b:
        with pytest.raises(engine.BatchStateError, match=r"^a batch is used in one with-block only \(open\)$"):
            b.__enter__()
        b.put("t", b"k", b"v")
    with pytest.raises(engine.BatchStateError, match=r"^batch used outside its with-block \(done\)$"):
        b.put("t", b"k", b"v")
    with pytest.raises(engine.BatchStateError, match=r"^a batch is used in one with-block only \(done\)$"):
        b.__enter__()
    assert dict(db.tree("t").items()) == {b"k": b"v"}


def test_a_batch_counts_its_operations_and_is_empty_after_its_block(open_db):
    db = open_db()
    db.tree("t")[b"gone"] = b"x"
    with db.batch() as b:
        assert len(b) == 0
        b.put("t", b"a", b"1")
        b.put("t", b"a", b"2")  # the later put wins
        b.delete("t", b"gone")
        assert len(b) == 3
    assert len(b) == 0
    b.__exit__(None, None, None)  # out of turn: nothing happens, nothing is applied again
    assert dict(db.tree("t").items()) == {b"a": b"2"}
    with pytest.raises(_Abort), db.batch() as b2:
        b2.put("t", b"z", b"9")
        raise _Abort
    assert len(b2) == 0
    assert dict(db.tree("t").items()) == {b"a": b"2"}


def test_a_closed_database_refuses_a_batch_open_on_it(open_db):
    db = open_db()
    b = db.batch()
    with b:
        db.close()
        for call in (lambda: b.put("t", b"k", b"v"), lambda: b.delete("t", b"k")):
            with pytest.raises(engine.DatabaseClosedError):
                call()  # at once, not only when the block ends
        assert len(b) == 0


def test_arguments_of_every_bytes_type_and_bad_ones(open_db):
    db = open_db()
    with db.batch() as b:
        b.put("t", bytearray(b"a"), memoryview(b"1"))
        b.put("t", memoryview(b"b"), bytearray(b"2"))
        b.put("t", b"k" * 1024, b"")
        b.delete("t", bytearray(b"b"))
        for bad, error, message in ((b"", engine.KeyTooLargeError, r"^key of 0 bytes"),
                                    ("s", TypeError, r"^keys are bytes, not str$"),
                                    (b"k" * 1025, engine.KeyTooLargeError, r"^key of 1025 bytes")):
            with pytest.raises(error, match=message):
                b.put("t", bad, b"v")
            with pytest.raises(error, match=message):
                b.delete("t", bad)
        with pytest.raises(TypeError, match=r"^values are bytes, not str$"):
            b.put("t", b"k", "v")
        for name, error in ((b"t", TypeError), ("", engine.TreeLimitError), ("n" * 256, engine.TreeLimitError)):
            with pytest.raises(error):
                b.put(name, b"k", b"v")
            with pytest.raises(error):
                b.delete(name, b"k")
        assert len(b) == 4
    assert dict(db.tree("t").items()) == {b"a": b"1", b"k" * 1024: b""}


def test_tree_names_checked_once_are_remembered_up_to_1024(open_db):
    db = open_db()
    NAMES_SEEN.clear()
    with pytest.raises(_Abort), db.batch() as b:
        b.put("first", b"k", b"v")
        assert "first" in NAMES_SEEN
        for i in range(1100):
            b.put(f"n{i}", b"k", b"v")
        raise _Abort  # a catalog cannot hold 1101 trees: discard
    assert len(NAMES_SEEN) == 1024
    assert "n1022" in NAMES_SEEN and "n1023" not in NAMES_SEEN
    NAMES_SEEN.clear()

"""`engine.writes`: the transaction bodies a batch and a replay run, on trees
that exist or are gone, and the one-latch write of a key on both paths."""

from __future__ import annotations

import pytest

import engine
from engine.walformat import OP_CREATE, OP_DELETE, OP_DROP, OP_LOAD, OP_PUT
from engine.writes import apply_op, create_tree, drop_tree
from faults.crash import CrashDisk

PATH = "/virtual/writes.db"  # a CrashDisk path


def test_apply_op_is_idempotent_on_trees():
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    db.tree("t")[b"a"] = b"1"
    ops = [
        (OP_CREATE, "t", None, None),  # exists: nothing, its keys stay
        (OP_DELETE, "gone", b"k", None),  # no such tree: nothing
        (OP_DROP, "gone", None, None),
        (OP_LOAD, "gone", None, ([b"x"], [b"y"])),
        (OP_PUT, "new", b"k", b"v"),  # creates its tree
        (OP_CREATE, "empty", None, None),
        (OP_LOAD, "empty", None, ([b"p", b"q"], [b"1", b"2"])),
    ]

    def body(txn):
        for op in ops:
            apply_op(txn, *op)
        txn.ops = ops  # logged as a batch is: the list is the commit record

    db._write(body)
    want = {"t": {b"a": b"1"}, "new": {b"k": b"v"}, "empty": {b"p": b"1", b"q": b"2"}}
    assert {n: dict(db.tree(n).items()) for n in db.trees()} == want
    assert db.check().ok
    # the process dies: recovery replays the same list to the same state
    with engine.open(PATH, opener=CrashDisk(disk.images(None, "keep")).opener) as again:
        assert again.stats()["recovered_commits"] >= 1
        assert {n: dict(again.tree(n).items()) for n in again.trees()} == want
        assert again.check().ok


def test_a_batch_delete_from_a_tree_that_does_not_exist_changes_nothing(open_db):
    db = open_db()
    db.tree("t")[b"k"] = b"v"
    with db.batch() as b:
        b.delete("t", b"k")
        b.delete("never", b"k")  # a tree that does not exist: nothing
    assert dict(db.tree("t").items()) == {}
    assert db.trees() == ["t"]


def test_create_and_drop_bodies_on_a_tree_there_or_not(open_db):
    db = open_db()
    db.tree("t")

    def create_again(txn):
        create_tree(txn, "t")  # a second thread's create found it made: nothing
        return list(txn.ops)

    assert db._write(create_again) == []
    with pytest.raises(KeyError):
        db._write(drop_tree, "missing")  # a second thread's drop found it gone
    assert db.trees() == ["t"]


def test_a_first_put_creates_the_root_in_one_commit(open_db):
    db = open_db()
    t = db.tree("t")
    commits = db.stats()["commits"]
    t[b"k"] = b"v"  # the root and the key, one transaction under one latch hold
    assert db.stats()["commits"] == commits + 1
    assert db.tree_stats()["t"] == {"keys": 1, "height": 1}

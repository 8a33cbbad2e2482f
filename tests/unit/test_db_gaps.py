"""Edges of the Database API the larger suites do not reach: the items
view's membership test, a batch's bytes-like values and a by-hand exit,
read-only trees' len/first/last, tree_levels of a missing tree, a data file
whose metadata page is gone beside a log that needs it, and a reader that
rebuilds after its log file appears."""

from __future__ import annotations

import hashlib
import os

import pytest

import engine


def test_items_view_membership_is_false_for_what_is_not_a_pair(tmp_path):
    with engine.open(tmp_path / "a.db", sync="off") as db:
        t = db.tree("t")
        t[b"k"] = b"v"
        items = t.items()
        assert (b"k", b"v") in items
        assert (b"k", b"w") not in items
        for other in (b"k", (b"k",), (b"k", b"v", b"x"), 3, None):
            assert other not in items


def test_a_batch_copies_bytes_like_values_and_ignores_a_by_hand_exit(tmp_path):
    with engine.open(tmp_path / "b.db", sync="off") as db:
        b = db.batch()
        b.__exit__(None, None, None)  # out of turn: not entered yet, so nothing happens
        with b:
            value = bytearray(b"mutable")
            b.put("t", b"k", value)
            b.put("t", b"m", memoryview(b"view"))
            value[:] = b"changed"  # the batch copied it
        assert db.tree("t")[b"k"] == b"mutable" and db.tree("t")[b"m"] == b"view"
        b.__exit__(None, None, None)  # after the block: nothing more happens
        assert len(db.tree("t")) == 2


def test_read_only_trees_len_first_last_and_levels(tmp_path):
    path = tmp_path / "c.db"
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for i in range(50):
            t[b"k%03d" % i] = b"v"
    with engine.open(path, read_only=True) as ro:
        t = ro.tree("t", create=False)
        assert len(t) == 50
        assert t.first() == (b"k000", b"v") and t.last() == (b"k049", b"v")
        with pytest.raises(KeyError):
            ro.tree_levels("missing")


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_a_damaged_metadata_page_beside_a_log_that_needs_it_is_refused_untouched(tmp_path):
    """Page 0 overwritten with foreign bytes while the log holds commits
    after a checkpoint: no image restores it, so the open refuses with a
    typed error and changes neither file."""
    path = str(tmp_path / "d.db")
    db = engine.open(path, sync="full")
    t = db.tree("t")
    t[b"a"] = b"1"
    db.checkpoint()
    t[b"b"] = b"2"  # a commit in the log, after the checkpoint
    db._release()  # the process dies: files as they are, locks dropped
    with open(path, "r+b") as f:
        f.write(os.urandom(4096))
    before = (_sha(path), _sha(path + "-wal"))
    for ro in (False, True):
        with pytest.raises(engine.CorruptionError, match="metadata page"):
            engine.open(path, read_only=ro)
        assert (_sha(path), _sha(path + "-wal")) == before

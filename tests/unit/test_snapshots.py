"""`engine.snapshots`: a read-only handle beside a writer in the same process
(docs/processes.md): a read inside another read sees the same snapshot, the
log's spill records are stepped over, a failed refresh gives the readers
lock back, and a log that appears after the reader opened is read."""

from __future__ import annotations

import os
import shutil

import pytest

import engine
from faults.crash import CrashDisk
from faults.io import FaultPlan

PATH = "/virtual/snapshots.db"  # a CrashDisk path


def test_a_read_inside_a_scan_keeps_the_scans_snapshot(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        for i in range(10):
            t[b"k%d" % i] = b"v"
        r = engine.open(path, read_only=True)
        rt = r.tree("t")
        seen = []
        for k, _ in rt.scan():
            if not seen:
                t[b"new"] = b"x"  # committed while the scan's snapshot is held
                assert rt.get(b"new") is None, "the nested read refreshed its handle"
            seen.append(k)
        assert b"new" not in seen
        assert rt.get(b"new") == b"x", "the next snapshot sees the commit"
        r.close()


def test_a_reader_steps_over_the_writers_spills(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off", pool_pages=16) as w:
        t = w.tree("t")
        t[b"first"] = b"1"
        r = engine.open(path, read_only=True, pool_pages=16)
        rt = r.tree("t")
        assert rt.get(b"first") == b"1"
        want = {b"first": b"1"}
        with w.batch() as b:  # more leaves than 16 frames: dirty pages spill to the log
            for i in range(400):
                key, value = b"key%04d" % i, b"%04d" % i * 50
                b.put("t", key, value)
                want[key] = value
        assert w._wal.spilled_pages(), "the batch spilled pages to the log"
        assert dict(rt.items()) == want
        assert r.check().ok
        r.close()


def test_a_failed_refresh_gives_the_readers_lock_back(tmp_path):
    path = str(tmp_path / "s.db")
    plan = FaultPlan(5)
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        t[b"a"] = b"1"
        r = engine.open(path, read_only=True, opener=plan.opener())
        rt = r.tree("t")
        assert rt.get(b"a") == b"1"
        t[b"b"] = b"2"
        plan.fail("read", 1, file="-wal", persistent=True)
        with pytest.raises(engine.StorageIOError):
            rt.get(b"b")  # the refresh cannot read the log
        plan.disarm()
        w.checkpoint()  # waits for readers' snapshots: none is left held
        assert rt.get(b"b") == b"2"
        r.close()


def test_a_log_that_appears_after_the_reader_opened_is_read(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as w:
        w.tree("t")[b"a"] = b"1"
    os.unlink(path + "-wal")  # empty after the close's checkpoint: nothing is lost
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert rt.get(b"a") == b"1"
    with engine.open(path, sync="off") as w:  # the writer makes a new log
        w.tree("t")[b"b"] = b"2"
        assert rt.get(b"b") == b"2", "the reader rebuilt from both files"
        assert r.stats()["rebuilds"] >= 1
    r.close()


def test_a_reader_of_an_openers_own_files_takes_no_lock():
    disk = CrashDisk()  # no real path: no readers lock file, the snapshots hold nothing
    plan = FaultPlan(5)
    with engine.open(PATH, opener=disk.opener, sync="off") as w:
        t = w.tree("t")
        t[b"a"] = b"1"
        r = engine.open(PATH, read_only=True, opener=plan.opener(disk.opener))
        rt = r.tree("t")
        assert rt.get(b"a") == b"1"
        t[b"b"] = b"2"
        plan.fail("read", 1, file="-wal", persistent=True)
        with pytest.raises(engine.StorageIOError):
            rt.get(b"b")
        plan.disarm()
        assert rt.get(b"b") == b"2"
        r.close()


def test_a_checkpoint_whose_log_reset_failed_makes_the_reader_rebuild(tmp_path):
    path = str(tmp_path / "s.db")
    plan = FaultPlan(5)
    w = engine.open(path, sync="off", opener=plan.opener())
    t = w.tree("t")
    for i in range(40):  # a log longer than its first page: the appends never touch it
        t[b"k%02d" % i] = b"v" * 200
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert len(rt) == 40
    t[b"new"] = b"x"
    plan.fail("write", 1, file="-wal", page=0)  # the reset's new header: the log keeps its base
    with pytest.raises(engine.NeedsRecoveryError):
        w.checkpoint()  # the images went home, the old records stay behind the old header
    rebuilds = r.rebuilds  # the attribute: `stats()` would take a snapshot itself
    assert rt.get(b"new") == b"x" and len(rt) == 41
    assert r.rebuilds == rebuilds + 1, "the reader saw CKPT_END and rebuilt"
    r.close()
    w.close()  # poisoned: closes without a checkpoint
    with engine.open(path, sync="off") as again:  # the reopen sorts the log out
        assert len(again.tree("t")) == 41 and again.check().ok


def test_a_failed_rebuild_is_tried_again_at_the_next_snapshot(tmp_path):
    path = str(tmp_path / "s.db")
    plan = FaultPlan(5)
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        t[b"a"] = b"1"
        r = engine.open(path, read_only=True, opener=plan.opener())
        rt = r.tree("t")
        assert rt.get(b"a") == b"1"
        t[b"b"] = b"2"
        w.checkpoint()  # pages went home: the reader's next snapshot rebuilds
        plan.fail("read", 1, file=".db", persistent=True)
        with pytest.raises(engine.StorageIOError):
            rt.get(b"b")  # the rebuild cannot read the data file: the handle has no state
        plan.disarm()
        assert rt.get(b"b") == b"2" and rt.get(b"a") == b"1"
        assert r.check().ok
        r.close()


def test_a_readers_tree_list_and_stats_take_a_snapshot(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as w:
        w.tree("t")[b"a"] = b"1"
        r = engine.open(path, read_only=True)
        assert r.trees() == ["t"]
        w.tree("u")[b"b"] = b"2"
        assert r.trees() == ["t", "u"], "trees() brought the handle up to the log"
        w.tree("u")[b"c"] = b"3"
        assert r.stats()["keys"] == 3
        r.close()


def test_a_two_operation_commit_is_replayed_whole(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        t[b"a"], t[b"b"] = b"1", b"2"
        r = engine.open(path, read_only=True)
        rt = r.tree("t")
        assert rt.get(b"a") == b"1"
        with w.batch() as b:  # two puts that fit their leaf: one commit of two operations
            b.put("t", b"a", b"x")
            b.put("t", b"b", b"y")
        assert (rt.get(b"a"), rt.get(b"b")) == (b"x", b"y")
        r.close()


def test_a_reader_with_a_small_pool_follows_many_commits(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as w:
        t = w.tree("t")
        t[b"start"] = b"0"
        r = engine.open(path, read_only=True, pool_pages=16)
        rt = r.tree("t")
        assert rt.get(b"start") == b"0"
        want = {b"start": b"0"}
        for i in range(600):  # a commit each, over far more leaves than the reader's 16 frames
            key, value = b"key%04d" % ((i * 7919) % 600), b"%04d" % i * 40
            t[key] = value
            want[key] = value
            if i % 50 == 0:  # two operations: replayed on the general path, not in place
                with w.batch() as b:
                    b.put("t", key, value)
                    b.put("t", b"start", b"%d" % i)
                want[b"start"] = b"%d" % i
        t[b"start"] = b"1"  # an in-place replay after the evictions
        want[b"start"] = b"1"
        assert dict(rt.items()) == want
        assert r.check().ok
        r.close()


def test_rebuilds_are_counted_and_a_reader_keeps_the_state_it_showed(tmp_path):
    path = str(tmp_path / "s.db")
    w = engine.open(path, sync="off")
    t = w.tree("t")
    t[b"a"] = b"1"
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert rt.get(b"a") == b"1"
    for n in range(1, 4):  # each checkpoint leaves the reader's last commit as the log's base
        t[b"k%d" % n] = b"v"
        assert rt.get(b"k%d" % n) == b"v"  # followed in the log
        w.checkpoint()
        assert rt.get(b"a") == b"1"  # rebuilt: the same state, read from the data file
        assert r.rebuilds == n
    w.close()
    r.close()


def test_a_reader_whose_log_is_deleted_rebuilds_from_the_data_file(tmp_path):
    path = str(tmp_path / "s.db")
    w = engine.open(path, sync="off")
    w.tree("t")[b"a"] = b"1"
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert rt.get(b"a") == b"1"
    w.close()  # checkpointed: the log is empty
    os.unlink(path + "-wal")
    assert rt.get(b"a") == b"1" and r.rebuilds == 1
    r.close()


def test_a_reader_refuses_a_state_older_than_one_it_showed(tmp_path):
    path = str(tmp_path / "s.db")
    old = str(tmp_path / "old.db")
    w = engine.open(path, sync="off")
    t = w.tree("t")
    t[b"a"] = b"1"
    w.backup(old)
    engine.open(old).close()  # the old copy gets a log of its own, based on its state
    for i in range(5):
        t[b"k%d" % i] = b"v"
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert len(rt) == 6
    w.close()  # the log reset in place: the reader's next snapshot rebuilds
    os.replace(old, path)  # and finds the files put back to an older state
    os.replace(old + "-wal", path + "-wal")
    with pytest.raises(engine.StorageIOError) as err:
        rt.get(b"a")
    assert err.value.errno == 5
    assert str(err.value) == f"[Errno 5] {path}: the log reads older than a state already shown; reopen"
    r.close()


def _copy_files(src, dst):
    for tail in ("", "-wal"):
        shutil.copyfile(src + tail, dst + tail)


def _put_back(copy, path):
    for tail in ("", "-wal"):
        os.replace(copy + tail, path + tail)


def test_a_rebuild_reading_the_very_state_shown_is_taken(tmp_path):
    path, copy = str(tmp_path / "s.db"), str(tmp_path / "copy.db")
    w = engine.open(path, sync="off")
    t = w.tree("t")
    t[b"a"], t[b"b"] = b"1", b"2"
    _copy_files(path, copy)  # the files as a crash would leave them: the log ends at the last commit
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert rt.get(b"b") == b"2"
    w.close()  # the log reset in place: the next snapshot rebuilds
    _put_back(copy, path)  # the same state again: its last commit is the one the reader showed
    assert (rt.get(b"a"), rt.get(b"b")) == (b"1", b"2") and r.rebuilds == 1
    with engine.open(path, sync="off") as again:  # recovers and checkpoints: another rebuild
        again.tree("t")[b"c"] = b"3"
    assert rt.get(b"c") == b"3" and r.rebuilds == 2
    r.close()


def test_a_rebuild_reading_one_commit_less_than_shown_is_refused(tmp_path):
    path, copy = str(tmp_path / "s.db"), str(tmp_path / "copy.db")
    w = engine.open(path, sync="off")
    t = w.tree("t")
    t[b"a"] = b"1"
    _copy_files(path, copy)
    t[b"b"] = b"2"
    r = engine.open(path, read_only=True)
    rt = r.tree("t")
    assert rt.get(b"b") == b"2"
    w.close()
    _put_back(copy, path)  # one commit older than what the reader showed
    with pytest.raises(engine.StorageIOError, match="reads older than a state already shown"):
        rt.get(b"a")
    r.close()

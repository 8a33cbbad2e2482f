"""`engine.checkpoint` pinned: an automatic checkpoint that readers defer is
retried only once the log has grown by a quarter of `checkpoint_bytes` (or
1 MiB), a failed one is recorded and logged while the commit stands, a
failed data sync or log reset poisons the handle with its errno and reason,
and what a checkpoint writes home and counts."""

from __future__ import annotations

import errno

import pytest

import engine
from engine.checkpoint import CHECKPOINT_RETRY_BYTES, MIN_CHECKPOINT_BYTES
from faults.io import FaultPlan


def _grow_past(db, t, target, start=0):
    """Commit puts until the log's end passes `target`; the next key index."""
    i = start
    while db._wal.end <= target:
        t[b"k%06d" % i] = b"v" * 200
        i += 1
    return i


def test_an_automatic_checkpoint_readers_defer_is_retried_a_quarter_limit_later(tmp_path):
    path = str(tmp_path / "a.db")
    w = engine.open(path, sync="off", checkpoint_bytes=MIN_CHECKPOINT_BYTES)
    t = w.tree("t")
    t[b"first"] = b"1"
    r = engine.open(path, read_only=True)
    it = iter(r.tree("t"))
    next(it)  # a snapshot held: checkpoints must not write pages home
    i = _grow_past(w, t, MIN_CHECKPOINT_BYTES)
    assert (w.checkpoints, w.checkpoints_deferred) == (0, 1)
    retry_at = w._wal.end + MIN_CHECKPOINT_BYTES // 4  # the quarter is less than 1 MiB here
    assert w._ckpt_retry_at == retry_at
    while True:  # no new try until a commit leaves the log at the retry point or past it
        t[b"k%06d" % i] = b"v" * 200
        i += 1
        if w._wal.end >= retry_at:
            break
        assert w.checkpoints_deferred == 1
    assert w.checkpoints_deferred == 2 and w._ckpt_retry_at > retry_at
    list(it)  # the snapshot ends
    retry_at = w._ckpt_retry_at
    while w.checkpoints == 0:
        end = w._wal.end
        t[b"k%06d" % i] = b"v" * 200
        i += 1
    assert end < retry_at <= end + 1024  # at the first commit reaching the retry point
    assert (w.checkpoints, w.checkpoints_deferred, w._ckpt_retry_at) == (1, 2, 0)
    assert w._wal.end == 512
    r.close()
    w.close()
    with engine.open(path) as db:
        assert len(db.tree("t")) == i + 1


def test_the_retry_step_is_at_most_a_mebibyte(tmp_path):
    path = str(tmp_path / "m.db")
    limit = 8 * CHECKPOINT_RETRY_BYTES
    w = engine.open(path, sync="off", checkpoint_bytes=limit)
    t = w.tree("t")
    t[b"first"] = b"1"
    r = engine.open(path, read_only=True)
    it = iter(r.tree("t"))
    next(it)
    _grow_past(w, t, limit)
    assert w.checkpoints_deferred == 1
    assert w._ckpt_retry_at == w._wal.end + CHECKPOINT_RETRY_BYTES
    list(it)
    r.close()
    w.close()


def test_a_failed_automatic_checkpoint_is_recorded_and_logged_and_the_commit_stands(tmp_path):
    from loguru import logger

    from engine import log

    path = str(tmp_path / "f.db")
    plan = FaultPlan(1)
    w = engine.open(path, sync="off", checkpoint_bytes=MIN_CHECKPOINT_BYTES, opener=plan.opener())
    t = w.tree("t")
    records: list[str] = []
    log.enable()
    sink = logger.add(records.append, format="{name}: {message}")
    try:
        plan.fail("write", 1, file=".db")  # the first page written home
        i = _grow_past(w, t, MIN_CHECKPOINT_BYTES)
    finally:
        logger.remove(sink)
        log.disable()
    assert plan.injected and w.checkpoints == 0
    err = w.last_checkpoint_error
    assert isinstance(err, engine.StorageIOError) and err.errno == errno.EIO
    assert [r.strip() for r in records] == [f"engine.checkpoint: automatic checkpoint failed: {err}"]
    t[b"after"] = b"x"  # the next commit past the limit tries again, and succeeds
    assert w.checkpoints == 1
    w.close()
    with engine.open(path) as db:
        assert len(db.tree("t")) == i + 1


def test_a_failed_data_sync_in_an_automatic_checkpoint_poisons_the_handle(tmp_path):
    path = str(tmp_path / "s.db")
    plan = FaultPlan(1)
    w = engine.open(path, sync="off", checkpoint_bytes=MIN_CHECKPOINT_BYTES, opener=plan.opener())
    t = w.tree("t")
    plan.fail("sync", 1, file=".db", errno=errno.ENOSPC)
    with pytest.raises(engine.NeedsRecoveryError) as err:
        _grow_past(w, t, MIN_CHECKPOINT_BYTES)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"[Errno {errno.ENOSPC}] data file fsync failed (")
    assert str(err.value).endswith("); reopen to recover")
    with pytest.raises(engine.NeedsRecoveryError):
        t[b"x"] = b"y"
    w.close()


def test_a_failed_log_reset_poisons_the_handle(tmp_path):
    path = str(tmp_path / "r.db")
    plan = FaultPlan(1)
    w = engine.open(path, sync="off", opener=plan.opener())
    t = w.tree("t")
    for i in range(40):
        t[b"k%02d" % i] = b"v" * 200
    plan.fail("write", 1, file="-wal", page=0, errno=errno.EROFS)  # the reset's new header
    with pytest.raises(engine.NeedsRecoveryError) as err:
        w.checkpoint()
    assert err.value.errno == errno.EROFS
    assert str(err.value).startswith(f"[Errno {errno.EROFS}] log reset failed (")
    assert str(err.value).endswith("); reopen to recover")
    assert w.checkpoints == 0
    w.close()
    with engine.open(path) as db:
        assert len(db.tree("t")) == 40 and db.check().ok


def test_each_checkpoint_is_counted_and_empties_the_log(tmp_path):
    with engine.open(tmp_path / "c.db", sync="off") as db:
        t = db.tree("t")
        for n in range(1, 4):
            t[b"k%d" % n] = b"v"
            db.checkpoint()
            assert db.checkpoints == n and db.stats()["log_bytes"] == 512


class _CountingFile:
    def __init__(self, inner, counts, name):
        self._inner, self._counts, self._name = inner, counts, name

    def sync(self):
        self._counts[self._name] += 1
        self._inner.sync()

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def test_a_checkpoint_syncs_its_end_record_the_data_file_and_the_reset_log(tmp_path):
    from engine.disk import default_opener

    base = default_opener(False)
    counts = {"wal": 0, "data": 0}

    def opener(p, create):
        return _CountingFile(base(p, create), counts, "wal" if p.endswith("-wal") else "data")

    with engine.open(tmp_path / "s.db", sync="off", opener=opener) as db:
        db.tree("t")[b"k"] = b"v"
        before = dict(counts)
        db.checkpoint()  # in every sync mode
        assert counts == {"wal": before["wal"] + 2, "data": before["data"] + 1}


def test_a_checkpoint_by_hand_waits_for_the_readers_snapshot(tmp_path):
    import threading

    path = str(tmp_path / "w.db")
    w = engine.open(path, sync="off")
    w.tree("t")[b"k"] = b"v"
    r = engine.open(path, read_only=True)
    it = iter(r.tree("t"))
    next(it)
    done = threading.Event()

    def checkpoint():
        w.checkpoint()
        done.set()

    thread = threading.Thread(target=checkpoint)
    thread.start()
    try:
        assert not done.wait(0.3), "the checkpoint did not wait for the snapshot"
        assert w.checkpoints == 0
    finally:
        list(it)  # the snapshot ends: the checkpoint goes ahead
        thread.join(30)
    assert done.is_set() and w.checkpoints == 1 and w.checkpoints_deferred == 0
    r.close()
    w.close()


def test_an_automatic_checkpoint_of_an_openers_own_files_clears_the_retry_point():
    from faults.crash import CrashDisk

    disk = CrashDisk()  # no real path: no readers lock, nothing can defer a checkpoint
    with engine.open("/virtual/c.db", opener=disk.opener, sync="off",
                     checkpoint_bytes=MIN_CHECKPOINT_BYTES) as db:
        t = db.tree("t")
        i = 0
        while db.checkpoints == 0 and i < 1000:
            t[b"k%06d" % i] = b"v" * 200
            i += 1
        assert (db.checkpoints, db.checkpoints_deferred, db._ckpt_retry_at) == (1, 0, 0)


def test_a_backup_waits_for_the_readers_snapshot_to_checkpoint(tmp_path):
    import threading

    path, dest = str(tmp_path / "b.db"), str(tmp_path / "copy.db")
    w = engine.open(path, sync="off")
    w.tree("t")[b"a"] = b"1"
    r = engine.open(path, read_only=True)
    it = iter(r.tree("t"))
    next(it)
    w.tree("t")[b"b"] = b"2"  # in the log only
    thread = threading.Thread(target=w.backup, args=(dest,))
    thread.start()
    try:
        thread.join(0.3)
        assert thread.is_alive(), "the backup's checkpoint did not wait for the snapshot"
    finally:
        list(it)
        thread.join(30)
    with engine.open(dest) as copy:
        assert dict(copy.tree("t").items()) == {b"a": b"1", b"b": b"2"}
    r.close()
    w.close()

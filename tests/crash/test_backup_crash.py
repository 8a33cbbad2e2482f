"""Power loss at every event of `db.backup()`: the source recovers intact
and equal to the model, and the destination is either absent (or the old
database it replaces, whose log the backup empties just before the switch)
or a complete database equal to the model at the commit the backup copied. After `backup` returns, the copy survives power loss.

The backup writes through the database's opener (here a `CrashDisk`), so
every write, sync, rename and directory sync of the copy is an event a crash
can follow.
"""

from __future__ import annotations

import threading

import pytest

import engine
from faults.crash import CrashDisk

PATH = "/crash/backup.db"  # CrashDisk paths: never touch the real file system
DEST = "/crash/copy.db"
MODES = ("drop", "keep", "torn", "reorder")

Model = dict[str, dict[bytes, bytes]]


def _contents(db) -> Model:
    return {name: dict(db.tree(name, create=False).items()) for name in db.trees()}


def _open(images: dict[str, bytes], path: str):
    return engine.open(path, opener=CrashDisk(images).opener, pool_pages=16, create=False)


def _source(disk: CrashDisk, model: Model):
    """A source with data on disk, spilled pages and commits in the log only."""
    db = engine.open(PATH, opener=disk.opener, pool_pages=16)
    t = db.tree("t")
    for i in range(600):
        t[b"k%04d" % i] = b"v%d" % i * 20
    db.tree("big")[b"b"] = b"B" * 9000  # an overflow chain
    db.checkpoint()
    for i in range(0, 600, 3):  # after the checkpoint: in the log and the pool only
        t[b"k%04d" % i] = b"w%d" % i * 30
    writer = threading.Thread(target=lambda: db.tree("u").put(b"from", b"another thread"))
    writer.start()  # a write of another thread, committed before the backup starts
    writer.join()
    model.update(_contents(db))
    return db


def _old_copy(disk: CrashDisk) -> tuple[Model, ...]:
    """An older database at DEST, which the backup replaces: checkpointed,
    then one more commit durable in its log only (its handle abandoned).
    Its two states: with that commit, and without it once the backup has
    emptied its log (the copy must never replay that log)."""
    old = engine.open(DEST, opener=disk.opener, pool_pages=16)
    old.tree("old")[b"stale"] = b"1"
    old.close()
    checkpointed = {"old": {b"stale": b"1"}}
    old = engine.open(DEST, opener=disk.opener, pool_pages=16)
    old.tree("old")[b"stale"] = b"2"  # sync="full": durable in DEST-wal
    _abandoned.append(old)
    return ({"old": {b"stale": b"2"}}, checkpointed)


_abandoned: list = []  # handles left open, as a crashed process leaves them


@pytest.mark.parametrize("replace", [False, True], ids=["fresh", "replace"])
def test_backup_survives_a_crash_at_every_event(replace: bool) -> None:
    disk = CrashDisk()
    old = _old_copy(disk) if replace else ()
    model: Model = {}
    db = _source(disk, model)
    start = disk.mark("before backup")
    db.backup(DEST)
    returned = disk.mark("backup returned")
    db.tree("t")[b"after"] = b"not in the copy"
    acked = disk.mark("write after the backup returned")
    after = {**model, "t": {**model["t"], b"after": b"not in the copy"}}
    db.close()
    seen = {"absent": 0, "old": 0, "new": 0}
    for at in range(start, acked + 1):
        for mode in MODES:
            images = disk.images(at, mode, seed=at)
            where = f"crash at event {at} ({mode})"
            src = _open(images, PATH)
            try:
                got = _contents(src)
                assert got == after if at >= acked else got in (model, after), f"{where}: the source differs"
                src.check(strict=True)
            finally:
                src.close()
            if DEST not in images:
                assert at < returned, f"{where}: the backup returned, yet no copy survived"
                seen["absent"] += 1
                continue
            copy = _open(images, DEST)
            try:
                got = _contents(copy)
                copy.check(strict=True)
            finally:
                copy.close()
            if got in old and at < returned:
                seen["old"] += 1
            else:
                assert got == model, f"{where}: the copy is neither the old one nor the backup's state"
                seen["new"] += 1
    assert seen["new"] > 0 and (seen["old"] > 0 if replace else seen["absent"] > 0), seen


def test_a_finished_backup_needs_no_more_syncs() -> None:
    """Losing every unsynced change right after `backup` returns keeps the
    whole copy: its pages, its name (the directory was synced) and no stale
    log of the copy it replaced."""
    disk = CrashDisk()
    _old_copy(disk)
    model: Model = {}
    db = _source(disk, model)
    db.backup(DEST)
    images = disk.images(None, "drop")
    assert not any(path.startswith(DEST + ".tmp") for path in images), sorted(images)
    copy = _open(images, DEST)
    try:
        assert _contents(copy) == model
        copy.check(strict=True)
    finally:
        copy.close()
    db.close()

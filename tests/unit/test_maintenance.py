"""`db.backup` and `db.compact` (engine/maintenance.py)."""

from __future__ import annotations

import os
import threading

import pytest

import engine


def _contents(db):
    return {name: dict(db.tree(name, create=False).items()) for name in db.trees()}


# -- backup ------------------------------------------------------------------------

def test_backup_is_the_committed_state_while_open(open_db, db_path, tmp_path):
    db = open_db(pool_pages=16)
    t = db.tree("t")
    t.update({b"k%05d" % i: b"v" * 50 for i in range(3000)})
    t[b"big"] = b"B" * 50_000
    db.tree("u")[b"x"] = b"y"
    del t[b"k00007"]
    want = _contents(db)
    dest = str(tmp_path / "copy.db")
    db.backup(dest)
    t[b"after"] = b"not in the copy"  # the source stays open and writable
    assert not os.path.exists(dest + ".tmp")
    with engine.open(dest, sync="off") as copy:
        assert _contents(copy) == want
        copy.check(strict=True)
    assert t[b"after"] == b"not in the copy"
    db.check(strict=True)


def test_backup_refuses_the_source_and_its_log(open_db, db_path, tmp_path):
    db = open_db()
    db.tree("t")[b"a"] = b"1"
    os.symlink(db_path, str(tmp_path / "link.db"))
    for dest in (db_path, str(tmp_path / "link.db"), db_path + "-wal",
                 os.path.relpath(db_path)):
        with pytest.raises(engine.BackupTargetError):
            db.backup(dest)
    assert issubclass(engine.BackupTargetError, ValueError)
    assert db.tree("t")[b"a"] == b"1"
    db.check(strict=True)


def test_backup_replaces_an_old_copy_and_its_stale_log(open_db, tmp_path):
    dest = str(tmp_path / "copy.db")
    with engine.open(dest, sync="off") as other:
        other.tree("old")[b"stale"] = b"1"
    with open(dest + "-wal", "wb") as f:  # a log of the old copy: must not be replayed onto the new one
        f.write(b"DRGNWAL1" + bytes(600))
    db = open_db()
    db.tree("t")[b"new"] = b"2"
    db.backup(dest)
    assert not os.path.exists(dest + "-wal") or os.path.getsize(dest + "-wal") <= 512
    with engine.open(dest) as copy:
        assert _contents(copy) == {"t": {b"new": b"2"}}


def test_backup_of_a_read_only_or_closed_handle(open_db, db_path, tmp_path):
    db = open_db()
    db.tree("t")[b"a"] = b"1"
    db.close()
    with pytest.raises(engine.DatabaseClosedError):
        db.backup(str(tmp_path / "c.db"))
    ro = open_db(read_only=True)
    with pytest.raises(engine.ReadOnlyError):
        ro.backup(str(tmp_path / "c.db"))
    assert not os.path.exists(str(tmp_path / "c.db"))


def test_backup_while_writers_commit_is_one_consistent_state(open_db, tmp_path):
    """Each batch writes the same counter to two trees: a copy holding two
    different counters would be a torn state."""
    db = open_db(pool_pages=64)
    stop = threading.Event()
    errors = []

    def writer():
        i = 0
        try:
            while not stop.is_set():
                i += 1
                with db.batch() as b:
                    b.put("a", b"n", b"%d" % i)
                    b.put("b", b"n", b"%d" % i)
                    b.put("a", b"k%d" % i, b"x" * 100)
        except Exception as exc:  # reported below
            errors.append(exc)

    th = threading.Thread(target=writer)
    th.start()
    try:
        for j in range(5):
            dest = str(tmp_path / f"c{j}.db")
            db.backup(dest)
            with engine.open(dest, sync="off") as copy:
                names = copy.trees()
                if names:
                    a, b = copy.tree("a", create=False), copy.tree("b", create=False)
                    assert a[b"n"] == b[b"n"]
                    assert len(a) == int(a[b"n"]) + 1
                copy.check(strict=True)
    finally:
        stop.set()
        th.join()
    assert not errors

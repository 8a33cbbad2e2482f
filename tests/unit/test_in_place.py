"""Puts and deletes that change one cached leaf run without a transaction:
the commit is logged first, then the leaf changed (`Database._write_key`).
A failed append must change nothing; the changes must survive a reopen and
power loss like any other commit."""

from __future__ import annotations

import pytest

import engine
from faults.crash import CrashDisk
from faults.io import FaultPlan

PATH = "/virtual/in_place.db"


def loaded(plan: FaultPlan, path: str, n: int = 50):
    db = engine.open(path, opener=plan.opener(), sync="full")
    t = db.tree()
    for i in range(n):
        t[b"k%03d" % i] = b"v%03d" % i
    return db, t


@pytest.mark.parametrize("op", ["insert", "overwrite", "delete"])
def test_a_failed_append_changes_nothing(tmp_path, op: str) -> None:
    path = str(tmp_path / "test.db")
    plan = FaultPlan()
    db, t = loaded(plan, path)
    before = dict(t.items())
    plan.fail("write", 1, file="-wal")
    with pytest.raises(engine.StorageIOError):
        if op == "insert":
            t[b"k0105"] = b"new"
        elif op == "overwrite":
            t[b"k010"] = b"new"
        else:
            t.delete(b"k010")
    assert len(plan.injected) == 1
    assert dict(t.items()) == before and len(t) == len(before)
    report = db.check()
    assert report.ok and report.pages_leaked == 0, report
    t[b"k011"] = b"after"  # the database goes on working
    db.close()
    with engine.open(path) as db:
        assert dict(db.tree().items()) == {**before, b"k011": b"after"}


def test_in_place_changes_survive_power_loss() -> None:
    """Under sync="full" each put returns durable: drop every unsynced write
    at the end and every acknowledged change is there after recovery."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    t = db.tree()
    for i in range(40):
        t[b"k%03d" % i] = b"v"
    db.checkpoint()  # the leaf is home; what follows lives only in the log
    t[b"k005"] = b"overwritten"
    t[b"k0055"] = b"inserted"
    assert t.delete(b"k006")
    assert not t.delete(b"missing")
    images = disk.images(None, "keep")
    with engine.open(PATH, opener=CrashDisk(images).opener) as db2:
        t2 = db2.tree()
        assert t2[b"k005"] == b"overwritten" and t2[b"k0055"] == b"inserted"
        assert b"k006" not in t2 and len(t2) == 40
        assert db2.check().ok


def test_in_place_and_general_paths_agree_on_counts(tmp_path) -> None:
    """Deletes of missing keys, overwrites and inserts keep len() exact while
    splits and merges (the general path) interleave with in-place changes."""
    with engine.open(str(tmp_path / "c.db"), sync="off", pool_pages=64) as db:
        t = db.tree()
        model: dict[bytes, bytes] = {}
        for i in range(3000):
            k = b"%05d" % (i * 7919 % 3001)
            if i % 5 == 4:
                assert t.delete(k) == (k in model)
                model.pop(k, None)
            else:
                t[k] = b"x" * (i % 300)
                model[k] = b"x" * (i % 300)
            if i % 500 == 0:
                assert len(t) == len(model)
        assert dict(t.items()) == model and len(t) == len(model)
        assert db.check().ok


def _armed(disk: CrashDisk):
    plan = FaultPlan(seed=4)
    db = engine.open(PATH, opener=plan.opener(disk.opener), sync="full")
    t = db.tree()
    for i in range(20):
        t[b"k%03d" % i] = b"v"
    # the append persists its record whole (a short write that still raises), then
    # the erase's overwrite fails: only cutting the file can take the record back
    plan.short("write", 1, keep=300, file="-wal")
    plan.fail("write", 2, file="-wal")
    return plan, db, t


def test_a_failed_append_is_cut_off_when_it_cannot_be_overwritten() -> None:
    disk = CrashDisk()
    plan, db, t = _armed(disk)
    with pytest.raises(engine.StorageIOError) as info:
        t[b"k005"] = b"failed"
    assert not isinstance(info.value, engine.NeedsRecoveryError)
    assert [i.kind for i in plan.injected] == ["write", "write"]
    images = disk.images(None, "keep")  # power loss now, every write landed: the failed put must not come back
    with engine.open(PATH, opener=CrashDisk(images).opener) as db2:
        assert db2.tree()[b"k005"] == b"v"


def test_a_failed_append_that_cannot_be_undone_poisons_the_database() -> None:
    disk = CrashDisk()
    plan, db, t = _armed(disk)
    plan.fail("truncate", 1, file="-wal")
    with pytest.raises(engine.NeedsRecoveryError):
        t[b"k005"] = b"failed"
    with pytest.raises(engine.NeedsRecoveryError):
        t[b"k006"] = b"refused"  # nothing more until a reopen decides the outcome
    images = disk.images(None, "keep")
    with engine.open(PATH, opener=CrashDisk(images).opener) as db2:
        t2 = db2.tree()
        assert t2[b"k005"] in (b"v", b"failed") and t2[b"k006"] == b"v"
        assert db2.check().ok

"""Edges of the `Database` API that the main suites pass by: argument types,
files that are not (yet) databases, read-only no-ops, strict checks, tree
handles that outlive their tree, the metadata page's room for trees, and the
replay of logged tree creation and dropping."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

import engine
from engine.codec import PAGE_SIZE
from engine.metapage import decode_meta, encode_meta


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Key(bytes):
    pass


def test_key_types(open_db):
    db = open_db()
    t = db.tree("t")
    t.put(_Key(b"sub"), b"1")
    t.put(bytearray(b"ba"), b"2")
    t.put(memoryview(b"mv"), b"3")
    keys = list(t.keys())
    assert keys == [b"ba", b"mv", b"sub"]
    assert all(type(k) is bytes for k in keys), "keys are stored as plain bytes"
    with pytest.raises(TypeError, match="keys are bytes, not str"):
        t.put("text", b"x")
    with pytest.raises(TypeError, match="values are bytes, not int"):
        t.put(b"k", 5)
    assert len(t) == 3


def test_read_only_open_of_an_empty_file(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(engine.NotADatabaseError, match="empty file"):
        engine.open(str(path), read_only=True)
    assert path.read_bytes() == b""
    assert sorted(os.listdir(tmp_path)) == ["empty.db"], "no log was created"


def test_read_only_open_of_an_unfinished_creation(tmp_path):
    # The first sector of a new database's page 0 and nothing else (the file
    # is shorter than a page): its creation was cut short. Read-only says so
    # and leaves nothing behind; read-write starts afresh. A whole creation
    # page (its sectors past the first are zeros) is an empty database.
    path = str(tmp_path / "new.db")
    engine.open(path, sync="off").close()
    for name in os.listdir(tmp_path):
        if name != "new.db":
            os.unlink(tmp_path / name)
    with open(path, "rb") as f:
        whole = f.read()
    with engine.open(path, read_only=True) as db:
        assert db.trees() == []
    os.unlink(path + "-readers")  # the readers lock file that open made
    for cut in (whole[:512], whole[:512] + bytes(512)):
        with open(path, "wb") as f:
            f.write(cut)
        with pytest.raises(engine.NotADatabaseError, match="creation never finished"):
            engine.open(path, read_only=True)
        with open(path, "rb") as f:
            assert f.read() == cut
        assert sorted(os.listdir(tmp_path)) == ["new.db"]
    with engine.open(path, sync="off") as db:
        assert db.trees() == []
        assert db.check().ok


def test_magic_with_a_flipped_bit_is_damage_not_another_format(tmp_path):
    path = str(tmp_path / "m.db")
    with engine.open(path, sync="off") as db:
        db.tree("t").put(b"k", b"v")
    for name in os.listdir(tmp_path):
        if name != "m.db":
            os.unlink(tmp_path / name)
    with open(path, "r+b") as f:
        f.seek(33)
        b = f.read(1)
        f.seek(33)
        f.write(bytes([b[0] ^ 0x01]))
    before = _digest(path)
    with pytest.raises(engine.CorruptionError, match="1 flipped bits"):
        engine.open(path)
    assert _digest(path) == before


def test_read_only_checkpoint_is_a_no_op(tmp_path):
    path = str(tmp_path / "r.db")
    with engine.open(path, sync="off") as db:
        db.tree("t").put(b"k", b"v")
    before = {n: _digest(str(tmp_path / n)) for n in os.listdir(tmp_path)}
    with engine.open(path, read_only=True) as db:
        db.checkpoint()
        assert db.tree("t", create=False).get(b"k") == b"v"
    assert {n: _digest(str(tmp_path / n)) for n in os.listdir(tmp_path)} == before


def test_strict_check_raises_on_damage(tmp_path):
    path = str(tmp_path / "s.db")
    with engine.open(path, sync="off") as db:
        db.tree("t").put(b"k", b"v")
        assert db.check(strict=True).ok
    with open(path, "r+b") as f:
        meta = decode_meta(f.read(PAGE_SIZE))
        root, count = meta.trees["t"]
        meta.trees["t"] = (root, count + 1)
        page = bytearray(PAGE_SIZE)
        encode_meta(meta, page)
        f.seek(0)
        f.write(page)
    with engine.open(path, create=False, sync="off") as db:
        with pytest.raises(engine.CorruptionError, match="1 keys but count says 2"):
            db.check(strict=True)
        assert not db.check().ok


def test_levels_of_a_missing_tree(open_db):
    db = open_db()
    with pytest.raises(KeyError):
        db.tree_levels("nope")


def test_close_twice_and_reprs(tmp_path):
    path = str(tmp_path / "c.db")
    db = engine.open(path, sync="off")
    t = db.tree("t")
    assert repr(t) == f"<engine.Tree 't' of {path!r}>"
    assert repr(db) == f"<engine.Database {path!r}>"
    db.close()
    db.close()
    assert repr(db) == f"<engine.Database {path!r} closed>"


def test_items_and_values_views(open_db):
    t = open_db().tree("t")
    t.put(b"a", b"1")
    t.put(b"b", b"2")
    assert (b"a", b"1") in t.items()
    assert (b"a", b"2") not in t.items()
    assert (b"z", b"1") not in t.items()
    assert b"2" in t.values()
    assert b"3" not in t.values()


def test_batch_length_counts_its_writes(open_db):
    db = open_db()
    with db.batch() as b:
        assert len(b) == 0
        b.put("t", b"a", b"1")
        b.delete("t", b"a")
        b.put("t", b"b", b"2")
        assert len(b) == 3
    assert dict(db.tree("t").items()) == {b"b": b"2"}


def test_a_handle_outlives_its_dropped_tree(open_db):
    db = open_db()
    t = db.tree("gone")
    t.put(b"k", b"v")
    db.drop_tree("gone")
    before = db.stats()["pages_allocated"], db.stats()["pages_free"]
    with pytest.raises(KeyError):
        t.put(b"k2", b"v")
    with pytest.raises(KeyError):
        t.delete(b"k")
    with pytest.raises(KeyError):
        db.drop_tree("gone")
    assert db.trees() == [], "a failed write through the old handle recreates nothing"
    assert (db.stats()["pages_allocated"], db.stats()["pages_free"]) == before


def test_the_metadata_page_runs_out_of_room_for_trees(open_db):
    db = open_db()
    made = []
    with pytest.raises(engine.TreeLimitError, match="no room for another tree"):
        for i in range(100):
            name = f"{i:03d}" + "n" * 250
            db.tree(name)
            made.append(name)
    assert 10 < len(made) < 100
    assert db.trees() == sorted(made), "the refused tree was not half-created"
    assert db.check().ok
    db.tree(made[0])  # an existing tree is still found, no room needed


def test_recovery_replays_logged_tree_creation_and_dropping(tmp_path):
    # A crash image taken after commits that create and drop trees, before
    # any checkpoint: recovery must replay the log's create and drop records.
    path = str(tmp_path / "a.db")
    db = engine.open(path, sync="full")
    try:
        db.tree("kept").put(b"k", b"v")
        db.tree("dropped").put(b"x", b"y")
        db.drop_tree("dropped")
        db.tree("empty")
        with db.batch() as b:  # a batch that creates a tree by writing to it
            b.put("made", b"m", b"1")
        db.commit()
        crash = tmp_path / "crash"
        crash.mkdir()
        for name in os.listdir(tmp_path):
            if name.startswith("a.db"):
                shutil.copy(tmp_path / name, crash / name)
    finally:
        db.close()
    with engine.open(str(crash / "a.db"), sync="off") as db:
        assert db.trees() == ["empty", "kept", "made"]
        assert dict(db.tree("kept").items()) == {b"k": b"v"}
        assert dict(db.tree("made").items()) == {b"m": b"1"}
        assert len(db.tree("empty")) == 0
        assert db.check().ok


def _without_log(tmp_path, name: str) -> str:
    path = str(tmp_path / name)
    with engine.open(path, sync="off") as db:
        db.tree("t").put(b"k", b"v")
    for other in os.listdir(tmp_path):
        if other != name:
            os.unlink(tmp_path / other)
    return path


def test_read_only_open_of_a_database_without_its_log(tmp_path):
    # A checkpointed database whose log file is gone: read-only reads it
    # as it is and creates nothing.
    path = _without_log(tmp_path, "n.db")
    before = _digest(path)
    with engine.open(path, read_only=True) as db:
        t = db.tree("t", create=False)
        assert t.get(b"k") == b"v"
        assert list(t.items()) == [(b"k", b"v")]
        assert db.check().ok
        with pytest.raises(engine.ReadOnlyError):
            t.put(b"k2", b"v")
    # no log was created (the readers lock file of docs/processes.md is the one file a reader may create)
    assert sorted(os.listdir(tmp_path)) == ["n.db", "n.db-readers"]
    assert _digest(path) == before


def test_writable_open_of_a_database_without_its_log_starts_one(tmp_path):
    path = _without_log(tmp_path, "w.db")
    with engine.open(path, sync="full") as db:
        assert os.path.exists(path + "-wal")
        db.tree("t").put(b"k2", b"v2")
    with engine.open(path, read_only=True) as db:
        assert dict(db.tree("t", create=False).items()) == {b"k": b"v", b"k2": b"v2"}


def test_a_value_past_max_value_size_is_refused_before_it_is_copied(open_db):
    """A memoryview of MAX_VALUE_SIZE + 1 bytes over an untouched anonymous
    mapping: the put and the batch put raise `ValueTooLargeError` without
    copying the 2 GiB (the process's peak memory stays where it was), and
    nothing is written."""
    import mmap
    import resource

    db = open_db()
    t = db.tree("t")
    t[b"k"] = b"old"
    big = mmap.mmap(-1, engine.MAX_VALUE_SIZE + 1)
    view = memoryview(big)
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(engine.ValueTooLargeError, match=f"value of {engine.MAX_VALUE_SIZE + 1} bytes"):
            t.put(b"k", view)
        with pytest.raises(engine.ValueTooLargeError), db.batch() as b:
            b.put("t", b"k", view)
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
        assert grown_kib < 256 * 1024, f"the value was copied: peak memory grew {grown_kib} KiB"
    finally:
        view.release()
        big.close()
    assert t[b"k"] == b"old" and len(t) == 1


@pytest.mark.parametrize("log", [None, b""], ids=["no log", "empty log"])
def test_an_open_that_finishes_a_cut_short_creation_leaves_no_file_open(log):
    """An empty data file (a creation that never finished), with or without
    an empty log: the open creates the database, and once it is closed every
    file it opened is closed (the first handle of the log leaked)."""
    from faults.crash import CrashDisk

    disk = CrashDisk({"/d/x.db": b"", **({"/d/x.db-wal": log} if log is not None else {})})
    handles = []

    def opener(path, create):
        handles.append(disk.opener(path, create))
        return handles[-1]

    db = engine.open("/d/x.db", opener=opener)
    db.tree("t")[b"k"] = b"v"
    db.close()
    assert len(handles) >= 2 and [h.path for h in handles if not h.closed] == []

"""Readers beside a writer, piece by piece: `wal.follow`, `locks.ReaderLock`,
a read-only open that writes nothing, and the locks across fork()
(docs/processes.md)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap

import pytest

import engine
from engine.disk import DirectFile
from engine.errors import DragonDBError, StorageIOError
from engine.locks import ReaderLock
from engine.wal import Wal, follow, read_base
from engine.walformat import COMMIT, HEADER_BYTES


def _log(tmp_path, sync="off") -> Wal:
    wal = Wal(DirectFile.open(str(tmp_path / "x-wal"), True, False), sync)
    wal.reset(41, sync=False)
    return wal


def test_follow_reads_new_records_and_stops_at_a_torn_one(tmp_path):
    wal = _log(tmp_path)
    assert read_base(wal.file) == 41
    assert follow(wal.file, HEADER_BYTES, 42) == []
    wal.commit(b"one")
    wal.commit(b"two" * 3000)  # longer than one read of the follower
    got = follow(wal.file, HEADER_BYTES, 42)
    assert [(lsn, t, p) for lsn, t, p, _ in got] == [(42, COMMIT, b"one"), (43, COMMIT, b"two" * 3000)]
    end = got[-1][3]
    assert follow(wal.file, got[0][3], 43)[0][2] == b"two" * 3000  # from the middle
    wal.commit(b"three")
    wal.file.write(end + 26, b"\xff")  # a record being written, or torn: not yet
    assert follow(wal.file, end, 44) == []
    assert follow(wal.file, end, 45) == []  # an LSN out of order is not taken either
    wal.close()


def test_follow_steps_over_the_gap_after_a_sync(tmp_path):
    wal = _log(tmp_path, sync="full")
    lsn = wal.commit(b"a")
    wal.sync_to(lsn)
    wal.commit(b"b")  # rule 7: starts at the next sector
    got = follow(wal.file, HEADER_BYTES, 42)
    assert [p for _, _, p, _ in got] == [b"a", b"b"]
    assert got[1][3] > 2 * HEADER_BYTES
    wal.close()


def test_follow_never_trusts_a_garbage_length(tmp_path):
    wal = _log(tmp_path)
    wal.file.write(HEADER_BYTES, b"\xff\xff\xff\x7f" + bytes(60))  # claims 2 GiB
    assert follow(wal.file, HEADER_BYTES, 42) == []
    wal.file.write(0, b"junk")
    assert read_base(wal.file) is None
    wal.close()


def test_reader_lock_shared_holds_exclude_the_writer_until_released(tmp_path):
    p = str(tmp_path / "db-readers")
    a, b, w = ReaderLock(p), ReaderLock(p), ReaderLock(p)
    a.hold()
    b.hold()
    assert not w.exclusive(wait=False)
    a.release()
    assert not w.exclusive(wait=False)
    b.release()
    b.release()  # idempotent
    assert w.exclusive(wait=False)
    b2 = ReaderLock(p)
    assert not b2._flock(fcntl.LOCK_SH | fcntl.LOCK_NB)  # a reader asking without waiting is excluded
    w.release()
    for lock in (a, b, w, b2):
        lock.close()
        lock.close()


def test_reader_lock_without_a_file_is_a_no_op_for_readers(tmp_path):
    missing = str(tmp_path / "no" / "such-readers")
    lock = ReaderLock(missing, create=False)
    assert lock.fd is None
    lock.hold()
    assert lock.exclusive(wait=False)
    lock.release()
    with pytest.raises(StorageIOError):
        ReaderLock(missing, create=True)  # a writer needs it


def test_read_only_open_beside_a_writer_writes_nothing(tmp_path):
    path = str(tmp_path / "w.db")
    w = engine.open(path, sync="off")
    t = w.tree("t")
    for i in range(500):
        t.put(b"k%03d" % i, b"v" * (i % 50))  # commits only in the log: the writer stays open
    files = {p: (open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in (path, path + "-wal")}
    with engine.open(path, read_only=True) as r:
        assert len(r.tree("t")) == 500 and r.tree("t")[b"k499"] == b"v" * 49
        assert r.check().ok
    assert {p: (open(p, "rb").read(), os.stat(p).st_mtime_ns) for p in files} == files
    w.close()


def test_a_readers_handle_in_a_forked_child_raises_and_the_parent_keeps_its_lock(tmp_path):
    path = str(tmp_path / "f.db")
    with engine.open(path, sync="off") as w:
        w.tree("t").put(b"k", b"v")
    r = engine.open(path, read_only=True)
    it = r.tree("t").scan()
    next(it)  # the parent holds a snapshot across the fork
    pid = os.fork()
    if pid == 0:  # the child: its handle raises, and it holds no lock of the parent's
        code = 0
        try:
            r.tree("t").get(b"k")
            code = 1
        except DragonDBError:
            pass
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    w = engine.open(path, sync="off")
    assert not w._rlock.exclusive(wait=False), "the parent's snapshot lost its lock"
    list(it)
    assert w._rlock.exclusive(wait=False)
    w._rlock.release()
    w.close()
    r.close()


_DIES_WITH_A_FORKED_CHILD = """
import os, sys, time
sys.path.insert(0, {root!r})
import engine
db = engine.open({path!r}, sync="off")
db.tree("t").put(b"k", b"v")
child = os.fork()
if child == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(30)  # a child that outlives the writer
    os._exit(0)
print(child, flush=True)
os._exit(0)  # the writer dies without closing
"""


def test_a_forked_child_does_not_keep_a_dead_writers_lock(tmp_path):
    path = str(tmp_path / "c.db")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_DIES_WITH_A_FORKED_CHILD).format(root=root, path=path)],
                         capture_output=True, timeout=60)
    child = int(out.stdout)
    try:
        with engine.open(path, sync="off") as db:  # the sleeping child holds nothing
            assert db.tree("t").get(b"k") == b"v"
    finally:
        os.kill(child, 9)


def test_a_reader_follows_single_puts_and_deletes_in_place_as_the_model_says(tmp_path):
    import random

    path = str(tmp_path / "i.db")
    rng = random.Random(7)
    w = engine.open(path, sync="off")
    t = w.tree("t")
    model: dict[bytes, bytes] = {}
    r = engine.open(path, read_only=True, pool_pages=16)
    rt = r.tree("t")
    for step in range(3000):
        key = b"k%04d" % rng.randrange(400)
        if rng.random() < 0.3:
            t.delete(key)  # most are one-leaf changes: the reader replays them in place
            model.pop(key, None)
        else:
            value = b"%d" % step * rng.randrange(1, 40)
            t.put(key, value)
            model[key] = value
        if step % 97 == 0:
            assert len(rt) == len(model)
            assert dict(rt.items()) == model
    assert dict(rt.items()) == model and len(rt) == len(model)
    r.check(strict=True)
    r.close()
    w.close()


class _CutOnFirstRead:
    """The log of a reader's open: before its first read, `cut()` runs (a
    writer's open that cuts the log's tail meanwhile)."""

    def __init__(self, inner, cut) -> None:
        self.inner, self.cut = inner, cut

    def read_into(self, offset, buf):
        if self.cut is not None:
            cut, self.cut = self.cut, None
            cut()
        return self.inner.read_into(offset, buf)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_read_only_open_reads_a_log_a_writers_open_cuts_meanwhile(tmp_path):
    # A writer opening beside readers cannot checkpoint, so it cuts the bytes
    # after the log's valid records instead; a reader opening at that moment
    # read the log's size before the cut and the bytes after it.
    path = str(tmp_path / "c.db")
    w = engine.open(path, sync="off")
    w.tree("t").put(b"a", b"1")
    held = engine.open(path, read_only=True)
    it = held.tree("t").scan()
    next(it)  # the writer's close defers its checkpoint: the record stays in the log
    w.close()
    it.close()
    held.close()
    with open(path + "-wal", "ab") as f:
        f.write(b"\xee" * 300)  # the torn tail of an append cut short
    size = os.path.getsize(path + "-wal")
    writers = []

    def opener(p, create):
        f = DirectFile.open(p, create, False, read_only=True)
        if p.endswith("-wal"):
            return _CutOnFirstRead(f, lambda: writers.append(engine.open(path, sync="off")))
        return f

    with engine.open(path, read_only=True, opener=opener) as r:
        assert r.tree("t").get(b"a") == b"1"
        assert writers and os.path.getsize(path + "-wal") < size, "the writer's open did not cut the log"
        writers[0].tree("t").put(b"b", b"2")
        assert dict(r.tree("t").items()) == {b"a": b"1", b"b": b"2"}
    writers[0].close()
    with engine.open(path, read_only=True) as r:
        assert dict(r.tree("t").items()) == {b"a": b"1", b"b": b"2"}
        r.check(strict=True)

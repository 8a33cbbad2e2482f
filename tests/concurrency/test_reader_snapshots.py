"""Readers beside a writer, deterministically (docs/processes.md).

A reader's snapshot taken just before a checkpoint copies pages home: the
checkpoint waits (explicit) or is deferred (automatic, close) until the
snapshot ends, and the snapshot reads only the state it started on, though
its small pool makes it read most pages from the data file meanwhile. A
reader killed with SIGKILL inside a snapshot blocks no checkpoint after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import engine

N = 3000


def _fill(db, tag: bytes) -> dict[bytes, bytes]:
    db.tree("t")
    state = {b"k%05d" % i: tag * 50 + b"%d" % i for i in range(N)}
    with db.batch() as b:
        for k, v in state.items():
            b.put("t", k, v)
    return state


def test_checkpoint_waits_for_a_snapshot_taken_just_before_it(tmp_path):
    path = str(tmp_path / "s.db")
    w = engine.open(path, sync="off")
    old = _fill(w, b"o")
    w.checkpoint()
    r = engine.open(path, read_only=True, pool_pages=16)  # most leaves are read from disk mid-scan
    it = r.tree("t").scan()
    seen = [next(it)]  # the snapshot starts here, on the old state
    new = _fill(w, b"N")  # every leaf changes: the checkpoint rewrites each one home
    done = threading.Event()
    ckpt = threading.Thread(target=lambda: (w.checkpoint(), done.set()))
    ckpt.start()
    assert not done.wait(0.3), "the checkpoint wrote pages home while a reader's snapshot was open"
    seen += list(it)  # reads home pages the checkpoint is waiting to overwrite
    assert dict(seen) == old, "a snapshot saw pages of two states"
    assert done.wait(10), "the checkpoint did not go on after the snapshot ended"
    ckpt.join()
    assert os.path.getsize(path + "-wal") == 512
    assert dict(r.tree("t").items()) == new  # the next snapshot rebuilds on the new base
    assert r.rebuilds == 1
    r.check(strict=True)
    r.close()
    w.close()


def test_automatic_checkpoints_and_close_defer_to_a_snapshot(tmp_path):
    path = str(tmp_path / "a.db")
    w = engine.open(path, sync="off", checkpoint_bytes=64 * 1024)
    old = _fill(w, b"o")
    w.checkpoint()
    before = w.checkpoints
    r = engine.open(path, read_only=True, pool_pages=16)
    it = r.tree("t").scan()
    seen = [next(it)]
    t = w.tree("t")
    for i in range(2000):
        t.put(b"k%05d" % (i % N), b"x%d" % i)  # commits go on beside the reader
    assert w.checkpoints_deferred >= 1 and w.checkpoints == before
    grown = os.path.getsize(path + "-wal")
    assert grown > 64 * 1024, "the log did not grow while checkpoints were deferred"
    seen += list(it)
    assert dict(seen) == old
    for i in range(2000, 4000):  # the snapshot has ended: the next try checkpoints
        t.put(b"k%05d" % (i % N), b"x%d" % i)
    assert w.checkpoints > before
    assert os.path.getsize(path + "-wal") < grown
    # close beside a snapshot keeps the log (durable) and writes nothing home
    it = r.tree("t").scan()
    first = next(it)
    data_before = open(path, "rb").read()
    t.put(b"zz", b"last")
    w.close()
    assert open(path, "rb").read() == data_before
    rest = list(it)
    assert b"zz" not in dict([first, *rest])
    assert r.tree("t").get(b"zz") == b"last"  # a new snapshot sees the commit in the log
    r.close()
    with engine.open(path) as again:
        assert again.tree("t").get(b"zz") == b"last"
        again.check(strict=True)


_HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
import engine
db = engine.open({path!r}, read_only=True)
it = db.tree("t").scan()
next(it)
print("holding", flush=True)
time.sleep(60)
"""


def test_a_reader_killed_inside_a_snapshot_blocks_nothing(tmp_path):
    path = str(tmp_path / "k.db")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    w = engine.open(path, sync="off")
    _fill(w, b"o")
    w.checkpoint()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER.format(root=root, path=path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"holding\n"
        new = _fill(w, b"N")
        done = threading.Event()
        ckpt = threading.Thread(target=lambda: (w.checkpoint(), done.set()))
        ckpt.start()
        assert not done.wait(0.3), "the checkpoint did not wait for the live reader"
        holder.kill()
        t0 = time.monotonic()
        assert done.wait(10), "a killed reader's lock outlived it"
        assert time.monotonic() - t0 < 5
        ckpt.join()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert dict(w.tree("t").items()) == new
    w.close()
    assert os.path.getsize(path + "-wal") == 512

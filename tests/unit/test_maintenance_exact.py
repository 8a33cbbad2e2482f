"""`engine.maintenance`, exactly: the files a backup leaves, its I/O a
megabyte at a time and its errors by text; a compaction of a tree longer
than one read of its items and of a layout longer than one write, its write
home in runs, the log's fsync as its commit point, its error's errno and
text, and the iterators and checkpoint count it updates."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource

import pytest

import engine
from engine import PAGE_SIZE
from faults.crash import CrashDisk
from faults.io import FaultPlan

RUN = 256  # pages per read and write of a backup, and per write home of a compaction (1 MiB)


def _contents(db):
    return {name: dict(db.tree(name, create=False).items()) for name in db.trees()}


def _grown(disk: CrashDisk, n: int = 12_000):
    """A database on `disk` whose tree "t" keeps 8000 of `n` items (more
    than the 4096 a compaction reads at a time) on ~1000 pages, ~340 once
    packed (more than a 256-page write)."""
    db = engine.open("/m/d.db", opener=disk.opener, pool_pages=64)
    db.tree("t").update({b"k%05d" % i: b"v" * 150 for i in range(n)})
    with db.batch() as b:
        for i in range(0, n, 3):
            b.delete("t", b"k%05d" % i)
    db.checkpoint()
    return db


def _reopened(images: dict[str, bytes]):
    return _reopened_at("/m/d.db", images)


def _reopened_at(path: str, images: dict[str, bytes]):
    return engine.open(path, opener=CrashDisk(images).opener, create=False)


@contextlib.contextmanager
def _address_space_cap(extra: int = 512 << 20):
    """A compaction whose read of the items does not advance loops, each
    round holding 4096 more items (~150 MB a second): under this cap it
    ends in MemoryError within seconds instead of taking the machine's
    memory until the test's timeout."""
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# -- backup ------------------------------------------------------------------------

def test_backup_leaves_one_file_and_empties_a_stale_log(open_db, db_path, tmp_path):
    db = open_db()
    db.tree("t")[b"k"] = b"v"
    out = tmp_path / "out"
    out.mkdir()
    db.backup(out / "copy.db")
    assert sorted(os.listdir(out)) == ["copy.db"]  # no log created beside the copy, no .tmp left
    (out / "copy.db-wal").write_bytes(b"DRGNWAL1" + bytes(600))
    db.backup(out / "copy.db")
    assert os.path.getsize(out / "copy.db-wal") == 0  # emptied, not cut to a stub
    with engine.open(out / "copy.db") as copy:
        assert _contents(copy) == {"t": {b"k": b"v"}}
    for dest in (db_path, db_path + "-wal"):
        with pytest.raises(engine.BackupTargetError,
                           match=f"^backup: {re.escape(repr(dest))} is the database itself or its log$"):
            db.backup(dest)


def test_backup_reads_and_writes_a_megabyte_at_a_time():
    disk = CrashDisk()
    db = _grown(disk)
    want = _contents(db)
    n = db.stats()["pages_allocated"]
    assert n > 3 * RUN
    mark = len(disk.events)
    db.backup("/m/copy.db")
    writes = [(ev.offset, ev.length) for ev in disk.events[mark:]
              if ev.kind == "write" and ev.path == "/m/copy.db.tmp"]
    assert writes == [(first * PAGE_SIZE, min(RUN, n - first) * PAGE_SIZE) for first in range(0, n, RUN)]
    copy = engine.open("/m/copy.db", opener=CrashDisk(disk.images(None, "drop")).opener, create=False)
    assert _contents(copy) == want
    assert copy.check(strict=True).ok
    db.close()


def test_backup_reads_a_flipped_last_page_again_alone():
    """A bit flipped on the way in the file's last page: that page alone is
    read again (the page after it is past the end of the file, which a
    compaction cut to its pages)."""
    for seed in range(100):
        disk, plan = CrashDisk(), FaultPlan(seed)
        db = engine.open("/m/d.db", opener=plan.opener(disk.opener), pool_pages=16)
        db.tree("t").update({b"k%d" % i: b"v" * 10 for i in range(10)})
        db.compact()
        n = db.stats()["pages_allocated"]
        assert len(disk.content("/m/d.db")) == n * PAGE_SIZE and db.stats()["pages_free"] == 0
        want = _contents(db)
        plan.bitflip(1, file=".db")
        db.backup("/m/copy.db")
        (flip,) = plan.injected
        if (flip.offset + int(flip.detail.split()[1]) // 8) // PAGE_SIZE == n - 1:
            break
        db.close()
    else:
        raise AssertionError("no seed flipped a bit of the last page")
    copy = engine.open("/m/copy.db", opener=CrashDisk(disk.images(None, "drop")).opener, create=False)
    assert _contents(copy) == want
    assert copy.check(strict=True).ok
    db.close()


def test_backup_refuses_a_short_read_as_an_io_error(tmp_path):
    plan = FaultPlan(seed=1)
    db = engine.open(tmp_path / "src.db", opener=plan.opener(), pool_pages=16)
    db.tree("t").update({b"k%03d" % i: b"v" * 100 for i in range(100)})
    db.checkpoint()
    n = db.stats()["pages_allocated"]
    want = _contents(db)
    plan.short("read", 1, file="src.db", keep=1000)
    dest = tmp_path / "copy.db"
    with pytest.raises(engine.StorageIOError) as raised:
        db.backup(dest)
    assert plan.injected
    assert raised.value.errno == errno.EIO
    assert raised.value.strerror == f"backup: short read of the data file (1000 of {n * PAGE_SIZE} bytes)"
    assert not os.path.exists(dest) and not os.path.exists(str(dest) + ".tmp")
    assert _contents(db) == want
    db.close()


# -- compact -----------------------------------------------------------------------

def test_compact_of_a_tree_longer_than_one_read_writes_home_in_runs():
    disk = CrashDisk()
    db = _grown(disk)
    want = _contents(db)
    assert len(want["t"]) == 8000
    checkpoints = db.stats()["checkpoints"]
    mark = len(disk.events)
    with _address_space_cap():
        got = db.compact()
    n = got["pages_after"]
    assert RUN + 1 < n < got["pages_before"]
    assert db.stats()["checkpoints"] == checkpoints + 2  # the one it starts with, and itself
    assert _contents(db) == want
    # from the commit point (the log's fsync) to the cut of the file: pages
    # 1-256 in one write, then the metadata page and the rest
    events = disk.events[mark:]
    cut = next(i for i, ev in enumerate(events) if ev.kind == "truncate" and ev.path == "/m/d.db")
    commit = max(i for i, ev in enumerate(events[:cut]) if ev.kind == "sync" and ev.path == "/m/d.db-wal")
    home = [(ev.offset // PAGE_SIZE, ev.length // PAGE_SIZE) for ev in events[commit:cut]
            if ev.kind == "write" and ev.path == "/m/d.db"]
    assert home == [(1, RUN), (0, 1), (RUN + 1, n - RUN - 1)]
    db.close()
    again = _reopened(disk.images(None, "drop"))
    assert _contents(again) == want
    assert again.check(strict=True).ok
    assert again.stats()["pages_allocated"] == n


def test_compact_is_committed_by_the_log_fsync_before_any_page_goes_home():
    """Power lost right after the first write home, which the OS had put on
    the disk while the log kept only what was synced: recovery replays the
    new layout from the log, so the log's records must be synced (the
    commit point) before any page of the old layout is overwritten."""
    disk = CrashDisk()
    db = _grown(disk)
    want = _contents(db)
    mark = len(disk.events)
    with _address_space_cap():
        db.compact()
    first_home = next(ev.index for ev in disk.events[mark:]  # pages 1-256, the first run home
                      if ev.kind == "write" and ev.path == "/m/d.db"
                      and (ev.offset, ev.length) == (PAGE_SIZE, RUN * PAGE_SIZE))
    images = disk.images(first_home, "drop")
    images["/m/d.db"] = disk.images(first_home, "keep")["/m/d.db"]
    db.close()
    again = _reopened(images)
    assert _contents(again) == want
    assert again.check(strict=True).ok


def test_compact_syncs_the_emptied_log_before_later_commits_reuse_it():
    """The log of a compaction is synced whole (its commit point); emptying
    it must be synced too before later records overwrite it: a power loss
    that keeps some of a later commit's writes and not the new header
    would leave the old synced records broken by the new ones, and
    recovery would refuse the file (rule 5a: a damaged durable record)."""
    disk = CrashDisk()
    db = engine.open("/m/d.db", opener=disk.opener, pool_pages=16, sync="off")
    t = db.tree("t")
    t.update({b"k%04d" % i: b"v" * 120 for i in range(1500)})
    with db.batch() as b:
        for i in range(0, 1500, 2):
            b.delete("t", b"k%04d" % i)
    db.checkpoint()
    db.compact()
    states = [_contents(db)]
    start = len(disk.events)
    t[b"after"] = b"x" * 3000
    states.append(_contents(db))
    for at in range(start, len(disk.events) + 1):
        for seed in range(4):
            again = _reopened_at("/m/d.db", disk.images(at, "reorder", seed=seed))
            assert _contents(again) in states, (at, seed)
            assert again.check(strict=True).ok
            again.close()
    db.close()


def test_compact_gives_back_the_preallocated_tail_when_it_frees_no_page(open_db, db_path):
    """A rebuild exactly as long as the file's pages still rewrites the
    file and cuts it to them: the tail the pager allocated ahead goes back."""
    db = open_db()
    db.tree("t").update({b"k%d" % i: b"v" * 10 for i in range(10)})
    db.checkpoint()
    n = db.stats()["pages_allocated"]
    assert os.path.getsize(db_path) > n * PAGE_SIZE
    assert db.compact() == {"pages_before": n, "pages_after": n}
    assert os.path.getsize(db_path) == n * PAGE_SIZE
    assert _contents(db) == {"t": {b"k%d" % i: b"v" * 10 for i in range(10)}}


def test_an_iterator_across_a_compaction_sees_a_later_delete(tmp_path):
    """Compaction counts as a change for open iterators, whatever the count
    of commits before it: the iterator re-reads after it, so a key deleted
    after the compaction is not returned from its old chunk."""
    for commits in range(4):
        path = tmp_path / f"{commits}.db"
        with engine.open(path, sync="off") as db:
            db.tree("t").update({b"k%d" % i: b"v" for i in range(5)})
        with engine.open(path, sync="off") as db:
            t = db.tree("t")
            for i in range(commits):
                t[b"x%d" % i] = b"w"
            it = t.scan()
            assert next(it) == (b"k0", b"v")
            db.compact()
            del t[b"k1"]
            assert [k for k, _ in it] == [b"k2", b"k3", b"k4"] + [b"x%d" % i for i in range(commits)]

"""Power loss at every event of `db.compact()`: recovery always opens the
same contents, a clean database, either the old layout or the new one; a
crash after the commit point (CKPT_END synced) gives the compact one."""

from __future__ import annotations

import engine
from faults.crash import CrashDisk

PATH = "/crash/compact.db"  # a CrashDisk path: never touches the real file system


def _open(images):
    return engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16)


def _contents(db):
    return {name: dict(db.tree(name, create=False).items()) for name in db.trees()}


def test_compact_survives_a_crash_at_every_event():
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, pool_pages=16)
    db.tree("t").update({b"k%04d" % i: b"v" * 120 for i in range(1500)})
    db.tree("big").update({b"b%d" % i: b"B" * 9000 for i in range(6)})
    db.tree("gone")[b"x"] = b"y"
    with db.batch() as b:
        for i in range(1500):
            if i % 10:
                b.delete("t", b"k%04d" % i)
        for i in range(5):
            b.delete("big", b"b%d" % i)
    db.drop_tree("gone")
    db.checkpoint()
    want = _contents(db)
    pages_before = db.stats()["pages_allocated"]
    start = disk.mark("before compact")
    pages_after = db.compact()["pages_after"]
    end = disk.mark("after compact")
    layouts = set()
    for at in range(start, end + 1):
        for mode in ("drop", "keep", "torn", "reorder"):
            images = disk.images(at, mode, seed=at)
            rec = _open(images)
            try:
                assert _contents(rec) == want, f"crash at event {at} ({mode}): contents differ"
                report = rec.check()
                assert report.ok, (at, mode, report.problems)
                pages = rec.stats()["pages_allocated"]
                assert pages in (pages_before, pages_after), (at, mode, pages)
                layouts.add(pages)
                rec.tree("t")[b"probe"] = b"after the crash"
            finally:
                rec.close()
    assert layouts == {pages_before, pages_after}
    # after the last event the compaction is durable, the file cut short
    final = disk.images(end, "drop")
    assert len(final[PATH]) == pages_after * engine.PAGE_SIZE

"""Power loss during the whole-tree writes: `Tree.clear`, `Tree.update` and
`Tree.load` are each all or nothing at every crash point."""

from __future__ import annotations

import engine
from faults.crash import CrashDisk

PATH = "/crash/tree-ops.db"  # CrashDisk paths never touch the real file system


def _recovered(images: dict[str, bytes]) -> dict[bytes, bytes] | None:
    disk = CrashDisk(images)
    db = engine.open(PATH, opener=disk.opener, pool_pages=16)
    try:
        db.check(strict=True)
        if "t" not in db.trees():
            return None
        return dict(db.tree("t").items())
    finally:
        db.close()


def _states(disk: CrashDisk, start: int, modes=("drop", "keep", "torn")):
    for at in range(start, len(disk.events) + 1):
        for mode in modes:
            yield at, mode, disk.images(at, mode, seed=at)


def _crash_everywhere(prepare, op, before_state, after_state):
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, pool_pages=16)
    prepare(db)
    start = disk.mark("prepared")
    op(db)
    disk.mark("done")
    seen = set()
    for at, mode, images in _states(disk, start):
        got = _recovered(images)
        assert got in (before_state, after_state), f"crash at event {at} ({mode}): a state in between"
        seen.add(got == after_state)
    # the last point is after a synced commit: the operation must be there
    assert _recovered(disk.images(len(disk.events), "drop")) == after_state
    return seen


def _prepare(n):
    def prepare(db):
        t = db.tree("t")
        with db.batch() as b:
            for i in range(n):
                b.put("t", b"k%04d" % i, b"v" * 40)
        t[b"big"] = b"x" * 20_000
        db.checkpoint()
    return prepare


def _contents(n):
    d = {b"k%04d" % i: b"v" * 40 for i in range(n)}
    d[b"big"] = b"x" * 20_000
    return d


def test_clear_is_all_or_nothing_at_every_crash_point():
    seen = _crash_everywhere(_prepare(400), lambda db: db.tree("t").clear(), _contents(400), {})
    assert seen == {False, True}


def test_update_is_all_or_nothing_at_every_crash_point():
    new = {b"n%04d" % i: b"w" * 60 for i in range(300)}
    new[b"k0001"] = b"overwritten"
    after = {**_contents(100), **new}
    seen = _crash_everywhere(_prepare(100), lambda db: db.tree("t").update(new), _contents(100), after)
    assert seen == {False, True}


def test_load_is_all_or_nothing_at_every_crash_point():
    """Spilled leaves (pool of 16), an overflow value, the commit record;
    a crash before the commit's sync leaves the tree empty, after it whole
    (redone from the log's OP_LOAD when no checkpoint ran)."""
    items = [(b"n%05d" % i, b"w" * 150) for i in range(700)]
    items.insert(3, (b"n00002big", b"B" * 30_000))

    def prepare(db):
        db.tree("t")
        db.tree("u")[b"x"] = b"y"
        db.checkpoint()

    seen = _crash_everywhere(prepare, lambda db: db.tree("t").load(items), {}, dict(items))
    assert seen == {False, True}

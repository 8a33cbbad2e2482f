"""Batched I/O: a checkpoint writes each run of consecutive pages, and its log
images, with one call per run instead of one per page; a miss in a pool with
many free frames reads the window of pages around it with one call. Each
batch can fail or be damaged without losing or corrupting anything."""

from __future__ import annotations

import pytest

import engine
from engine.bufferpool import PREWARM_WINDOW, READ_AHEAD
from engine.codec import OVERFLOW, PAGE_SIZE
from engine.disk import default_opener
from faults.io import FaultPlan


class Recording:
    """A BlockFile wrapper that records (kind, path, offset, length) of each call."""

    def __init__(self, inner, path: str, log: list) -> None:
        self.inner, self.path, self.log = inner, path, log

    @property
    def direct(self) -> bool:
        return self.inner.direct

    def read_into(self, offset, buf):
        self.log.append(("read", self.path, offset, len(buf)))
        return self.inner.read_into(offset, buf)

    def write(self, offset, data):
        self.log.append(("write", self.path, offset, len(data)))
        self.inner.write(offset, data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def recording_opener(log: list):
    base = default_opener("auto")
    return lambda path, create: Recording(base(path, create), str(path), log)


def fill(db, n: int = 4000) -> dict[bytes, bytes]:
    t = db.tree()
    data = {b"k%06d" % i: b"%06d" % i * 17 for i in range(n)}
    for k, v in data.items():
        t.put(k, v)
    return data


def test_checkpoint_writes_runs_of_pages_with_few_calls(tmp_path) -> None:
    log: list = []
    path = str(tmp_path / "db")
    db = engine.open(path, opener=recording_opener(log), sync="normal", pool_pages=4096)
    data = fill(db)
    pages = db.stats()["pages_allocated"]
    assert pages > 200
    del log[:]
    db.checkpoint()
    home = [e for e in log if e[0] == "write" and not e[1].endswith("-wal")]
    images = [e for e in log if e[0] == "write" and e[1].endswith("-wal")]
    assert sum(e[3] for e in home) >= pages * PAGE_SIZE - PAGE_SIZE  # every page went home
    assert len(home) <= pages // 100, f"{len(home)} home writes for {pages} pages"
    assert len(images) <= pages // 100 + 4, f"{len(images)} log writes for {pages} images"
    db.close()
    with engine.open(path, sync="off") as db:
        assert dict(db.tree().items()) == data
        assert db.check().ok


def cold_pool(pages: int) -> int:
    """A pool with room to read ahead but too small (under twice the file) to be prewarmed at open."""
    return 2 * pages - 4


def filled_file(path: str, n: int = 4000) -> tuple[dict[bytes, bytes], int]:
    """A closed database of `n` keys at `path`: its contents and page count."""
    with engine.open(path, sync="off") as db:
        data = fill(db, n)
        return data, db.stats()["pages_allocated"]


def read_back(db, data: dict[bytes, bytes], damaged: bool) -> None:
    """Every key reads back right; with `damaged`, some may raise CorruptionError instead."""
    t = db.tree()
    got = {}
    for k in data:
        try:
            got[k] = t[k]
        except engine.CorruptionError:
            assert damaged
    assert all(got[k] == data[k] for k in got)
    if not damaged:
        assert got == data


def test_a_cold_pool_reads_ahead_a_window_per_miss(tmp_path) -> None:
    path = str(tmp_path / "db")
    data, pages = filled_file(path)
    log: list = []
    with engine.open(path, opener=recording_opener(log), sync="off", pool_pages=cold_pool(pages)) as db:
        assert db.stats()["pool_prefetched"] == 0
        pages = db.stats()["pages_allocated"]
        del log[:]
        t = db.tree()
        for k, v in data.items():
            assert t[k] == v
        stats = db.stats()
        reads = [e for e in log if e[0] == "read"]
        assert stats["pool_prefetched"] >= pages * 3 // 4
        assert stats["pool_misses"] <= pages // 8
        assert len(reads) <= 2 * (pages // READ_AHEAD + 2)
        assert max(e[3] for e in reads) == READ_AHEAD * PAGE_SIZE
        assert db.check().ok


def test_a_full_pool_never_reads_ahead(tmp_path) -> None:
    path = str(tmp_path / "db")
    data, _ = filled_file(path)
    with engine.open(path, sync="off", pool_pages=2 * READ_AHEAD - 1) as db:
        t = db.tree()
        for k, v in data.items():
            assert t[k] == v
        assert db.stats()["pool_prefetched"] == 0


def test_failed_or_damaged_read_ahead_loses_nothing(tmp_path) -> None:
    """A failing read-ahead is skipped; a flipped bit in a neighbour keeps that
    neighbour out of the pool, and reading it later reports the damage."""
    path = str(tmp_path / "test.db")
    data, pages = filled_file(path)
    for arm in ("fail", "short", "bitflip"):
        plan = FaultPlan(seed=3)
        with engine.open(path, opener=plan.opener(), sync="off", pool_pages=cold_pool(pages)) as db:
            db.tree()
            # counted from here: the first data-file read is the root's miss, the second
            # the read-ahead around it (a window of READ_AHEAD pages)
            if arm == "fail":
                plan.fail("read", 2, file=".db")
            elif arm == "short":
                plan.short("read", 2, keep=5 * PAGE_SIZE + 100, file=".db")
            else:
                plan.bitflip(2, file=".db")
            read_back(db, data, damaged=arm == "bitflip")
            assert len(plan.injected) == 1, plan.injected
            page = plan.injected[0].page
            assert page == 1 or page % READ_AHEAD == 0, page  # it hit a read-ahead window
        with engine.open(path, sync="off") as db:  # the file itself was never damaged
            assert dict(db.tree().items()) == data


def test_a_database_that_fits_half_the_pool_is_read_at_open(tmp_path) -> None:
    """Prewarm: a megabyte per read at open, then no operation waits for a read."""
    path = str(tmp_path / "db")
    data, pages = filled_file(path)
    log: list = []
    with engine.open(path, opener=recording_opener(log), sync="off", pool_pages=2 * pages) as db:
        home_reads = [e for e in log if e[0] == "read" and not e[1].endswith("-wal")]
        assert len(home_reads) <= 2 + pages // PREWARM_WINDOW + 1
        assert db.stats()["pool_prefetched"] == pages - 1
        misses = db.stats()["pool_misses"]
        t = db.tree()
        for k, v in data.items():
            assert t[k] == v
        t.put(b"k000001", b"new")
        assert db.stats()["pool_misses"] == misses
        assert db.check().ok
    with engine.open(path, sync="off", pool_pages=2 * pages - 4) as db:
        assert db.stats()["pool_prefetched"] == 0, "a file over half the pool is not prewarmed"


def test_failed_or_damaged_prewarm_loses_nothing(tmp_path) -> None:
    """A prewarm read that fails, comes back short or has a flipped bit only
    leaves pages out of the pool; reading them later reports the damage."""
    path = str(tmp_path / "test.db")
    data, pages = filled_file(path, 12_000)
    assert pages > PREWARM_WINDOW + 2  # the prewarm takes more than one read
    for arm in ("fail", "short", "bitflip"):
        plan = FaultPlan(seed=4)
        # data-file reads at open: the metadata page, then the prewarm windows
        if arm == "fail":
            plan.fail("read", 2, file=".db")
        elif arm == "short":
            plan.short("read", 3, keep=7 * PAGE_SIZE + 100, file=".db")
        else:
            plan.bitflip(2, file=".db")
        with engine.open(path, opener=plan.opener(), sync="off", pool_pages=4 * pages) as db:
            assert len(plan.injected) == 1, plan.injected
            assert 0 < db.stats()["pool_prefetched"] < pages - 1
            read_back(db, data, damaged=arm == "bitflip")
        with engine.open(path, sync="off") as db:  # the file itself was never damaged
            assert dict(db.tree().items()) == data


def test_read_ahead_never_takes_a_home_copy_older_than_a_spilled_image(tmp_path) -> None:
    """Pages evicted dirty live in the log until the next checkpoint; their home
    copies are stale. Free frames (after dropping a tree) let a miss read ahead
    over them: it must skip them, so every value read is the latest."""
    path = str(tmp_path / "db")
    with engine.open(path, sync="off") as db:
        fill(db, 6000)
    with engine.open(path, sync="normal", pool_pages=400) as db:
        t = db.tree()
        # rewrite blocks of ~10 leaves, skip blocks of ~10: read-ahead windows then
        # hold both spilled pages and pages whose home copy is current
        new = {b"k%06d" % i: b"new%06d" % i * 9 for i in range(6000) if i // 300 % 2 == 0}
        for k, v in new.items():
            t[k] = v
        other = db.tree("other")
        for i in range(6000):
            other[b"o%06d" % i] = b"x" * 100  # the pool is smaller: dirty pages spill to the log
        assert len(db._wal.spilled_pages()) > 100
        db.drop_tree("other")  # its frames come back free
        before = db.stats()["pool_prefetched"]
        for i in range(6000):
            k = b"k%06d" % i
            assert t[k] == new.get(k, b"%06d" % i * 17), k
        assert db.stats()["pool_prefetched"] > before
        assert db.check().ok


def test_a_large_value_is_read_a_run_at_a_time_past_the_pool(tmp_path) -> None:
    """An overflow chain is read with a call per megabyte, and its pages do
    not take the pool's frames."""
    path = str(tmp_path / "db")
    big = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MiB: 774 overflow pages
    with engine.open(path, sync="off") as db:
        fill(db, 2000)
        db.tree().put(b"big", big)
        pages = db.stats()["pages_allocated"]
    log: list = []
    pool = 2 * READ_AHEAD + 8  # no prewarm, no read-ahead left to speak of
    with engine.open(path, opener=recording_opener(log), sync="off", pool_pages=pool) as db:
        assert pages > pool
        del log[:]
        assert db.tree()[b"big"] == big
        reads = [e for e in log if e[0] == "read" and not e[1].endswith("-wal")]
        assert len(reads) <= 10, f"{len(reads)} reads for a {len(big)}-byte value"
        assert db.stats()["pool_misses"] <= 6  # the path to the leaf, not the chain


def test_a_large_value_reads_right_whatever_state_its_pages_are_in(tmp_path) -> None:
    """Chain pages still dirty in the pool, spilled to the log by a small
    pool, scattered over freed pages, or damaged: the run read takes only
    pages the pool does not hold and the log does not supersede, and the
    rest goes through the pool, which reads the right copy or reports it."""
    path = str(tmp_path / "db")
    big = bytes(range(251)) * 5000  # 1.2 MiB, 309 pages
    with engine.open(path, sync="normal", pool_pages=16) as db:
        t = db.tree()
        data = fill(db, 3000)
        for k in list(data)[::2]:  # free scattered pages for the chain to reuse
            t.delete(k)
        t.put(b"big", big)
        assert t[b"big"] == big  # pages in the pool or spilled to the log
        db.commit()
        assert t[b"big"] == big
        db.checkpoint()
        assert t[b"big"] == big
    with engine.open(path, sync="off", pool_pages=16) as db:
        assert db.tree()[b"big"] == big
        assert db.check().ok
    with engine.open(path, sync="normal", pool_pages=4096) as db:
        # pages of a freed chain reused by a new one: their home copies are
        # valid overflow pages of the old value until the next checkpoint
        t = db.tree()
        for n in range(1, 4):
            value = bytes([n]) * len(big)
            t.put(b"big", value)
            assert t[b"big"] == value
        db.checkpoint()
        for n in range(4, 6):
            value = bytes([n]) * len(big)
            t.put(b"big", value)
            assert t[b"big"] == value
        t.put(b"big", big)
    with open(path, "r+b") as f:  # damage an overflow page in the middle of the file's run of them
        raw = f.read()
        chain = [pid for pid in range(len(raw) // PAGE_SIZE) if raw[pid * PAGE_SIZE + 4] == OVERFLOW]
        assert len(chain) >= 300
        victim = chain[len(chain) // 2]
        f.seek(victim * PAGE_SIZE + 1000)
        f.write(bytes([raw[victim * PAGE_SIZE + 1000] ^ 0x10]))
    with engine.open(path, sync="off") as db:
        with pytest.raises(engine.CorruptionError):
            db.tree()[b"big"]

"""`engine.pager`: page I/O with checksums, allocation (lowest free page
first, file growth in extents) and the free list persisted in trunk pages,
beyond what one trunk page holds."""

from __future__ import annotations

import random

import pytest

import engine
from engine.codec import FREELIST_CAPACITY, PAGE_SIZE, seal
from engine.disk import DirectFile
from engine.errors import CorruptionError, StorageIOError
from engine.pager import Pager
from faults.io import FaultPlan


class CountingFile:
    """A `BlockFile` forwarding to a real one, recording every `extend`."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.direct = inner.direct
        self.extends: list[int] = []

    def read_into(self, offset, buf):
        return self.inner.read_into(offset, buf)

    def write(self, offset, data):
        self.inner.write(offset, data)

    def sync(self):
        self.inner.sync()

    def size(self):
        return self.inner.size()

    def extend(self, new_size):
        self.extends.append(new_size)
        self.inner.extend(new_size)

    def truncate(self, new_size):
        self.inner.truncate(new_size)

    def close(self):
        self.inner.close()


def _sealed(fill: int) -> bytes:
    page = bytearray([fill]) * PAGE_SIZE
    seal(page)
    return bytes(page)


@pytest.fixture
def file(tmp_path):
    f = CountingFile(DirectFile.open(tmp_path / "pager.db", create=True, direct="auto"))
    f.write(0, _sealed(0))  # page 0 exists, as the metadata page does
    yield f
    f.close()


def test_allocation_grows_the_file_in_extents(file):
    pager = Pager(file, 1)
    ids = [pager.allocate() for _ in range(3000)]
    assert ids == list(range(1, 3001)), "new pages are handed out in order"
    assert pager.page_count == 3001
    assert file.size() >= 3001 * PAGE_SIZE
    # each extend adds at least 64 pages and 1/8 of the file, so growth is
    # geometric: 3000 pages take about 24 extends, not 3000 (or 47 linear ones)
    assert 1 <= len(file.extends) <= 30, file.extends
    old = PAGE_SIZE
    for new in file.extends:
        grown = (new - old) // PAGE_SIZE
        assert grown >= 64, f"grew by {grown} pages"
        assert grown >= (old // PAGE_SIZE) // 8
        old = new
    assert pager.check_invariants() == []


def test_allocation_reuses_the_lowest_freed_page_first(file):
    pager = Pager(file, 1)
    for _ in range(600):
        pager.allocate()
    extends = len(file.extends)
    for pid in (7, 3, 500, 4, 599):
        pager.free(pid)
    assert pager.free_count == 5
    assert pager.free_pages() == {3, 4, 7, 500, 599}
    assert [pager.allocate() for _ in range(6)] == [3, 4, 7, 500, 599, 601]
    assert pager.free_count == 0
    # reuse touches no file size; page 601 fits in the last extent
    assert len(file.extends) == extends
    pager.free(4)
    pager.free(2)
    assert pager.allocate() == 2
    assert pager.allocate() == 4
    assert pager.check_invariants() == []


def test_free_refuses_bad_ids(file):
    pager = Pager(file, 1)
    pid = pager.allocate()
    pager.free(pid)
    for bad in (pid, 0, 99):  # double free, the metadata page, beyond the file
        with pytest.raises(AssertionError):
            pager.free(bad)
    assert pager.free_pages() == {pid}


def test_failed_growth_leaves_the_pager_as_it_was(tmp_path):
    plan = FaultPlan()
    plan.fail("extend", 1)
    f = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))(str(tmp_path / "g.db"), True)
    try:
        f.write(0, _sealed(0))
        pager = Pager(f, 1)
        with pytest.raises(StorageIOError):
            pager.allocate()
        assert pager.page_count == 1
        assert pager.allocate() == 1, "the same page is handed out once growth works"
        assert pager.check_invariants() == []
    finally:
        f.close()


def test_read_checks_range_length_and_checksum(file):
    pager = Pager(file, 1)
    a, b = pager.allocate(), pager.allocate()
    pager.write(a, _sealed(0xAB))
    buf = memoryview(bytearray(PAGE_SIZE))
    pager.read(a, buf)
    assert bytes(buf) == _sealed(0xAB)
    assert pager.reads == 1 and pager.writes == 1
    with pytest.raises(CorruptionError):
        pager.read(b, buf)  # never written: zeros, no valid checksum
    bad = bytearray(_sealed(0xCD))
    bad[100] ^= 1
    pager.write(a, bytes(bad))
    with pytest.raises(CorruptionError):
        pager.read(a, buf)
    with pytest.raises(CorruptionError):
        pager.read(pager.page_count, buf)
    with pytest.raises(CorruptionError):
        pager.read(-1, buf)
    file.truncate(a * PAGE_SIZE + 10)  # cut the file inside page a
    with pytest.raises(CorruptionError):
        pager.read(a, buf)
    assert "pager: file shorter than page count" in pager.check_invariants()


def _persist(pager: Pager) -> tuple[int, int]:
    head, images = pager.freelist_images()
    for pid, image in images:
        pager.write(pid, image)
    return head, len(images)


def test_free_list_round_trips_through_several_trunk_pages(file):
    pager = Pager(file, 1)
    for _ in range(4000):
        pager.allocate()
    rng = random.Random(3)
    freed = set(rng.sample(range(1, 4001), 2600))
    for pid in freed:
        pager.free(pid)
    head, trunks = _persist(pager)
    assert len(freed) > 2 * FREELIST_CAPACITY
    assert trunks == -(-len(freed) // (FREELIST_CAPACITY + 1)) == 3
    assert head == min(freed), "trunks are chosen among the lowest free pages"

    again = Pager(file, pager.page_count)
    again.load_freelist(head, len(freed))
    assert again.free_pages() == freed
    assert again.check_invariants() == []
    assert [again.allocate() for _ in range(5)] == sorted(freed)[:5]

    with pytest.raises(CorruptionError):
        Pager(file, pager.page_count).load_freelist(head, len(freed) + 1)
    with pytest.raises(CorruptionError):
        Pager(file, pager.page_count).load_freelist(4000 + 5, len(freed))


def test_empty_free_list_has_no_trunks(file):
    pager = Pager(file, 1)
    pager.allocate()
    assert pager.freelist_images() == (0, [])
    fresh = Pager(file, 2)
    fresh.load_freelist(0, 0)
    assert fresh.free_count == 0


def test_free_list_beyond_one_trunk_survives_reopen(tmp_path):
    path = tmp_path / "big.db"
    big = random.Random(1).randbytes(5 * 1024 * 1024)  # about 1290 overflow pages
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        t[b"small"] = b"s"
        t[b"big"] = big
        allocated = db.stats()["pages_allocated"]
        del t[b"big"]
        freed = db.stats()["pages_free"]
    assert freed > FREELIST_CAPACITY + 1, "needs more than one trunk page"
    with engine.open(path, sync="off") as db:
        stats = db.stats()
        assert stats["pages_free"] == freed
        assert stats["pages_allocated"] == allocated
        assert db.check().ok, db.check().problems
        t = db.tree("t")
        t[b"big2"] = big  # reuses the free pages: the file does not grow
        assert db.stats()["pages_allocated"] == allocated
        assert db.stats()["pages_free"] < freed
    with engine.open(path, sync="off") as db:
        report = db.check()
        assert report.ok, report.problems
        assert db.tree("t")[b"big2"] == big
        assert db.tree("t")[b"small"] == b"s"

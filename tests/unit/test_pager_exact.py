"""Exact pager facts that mutation testing found unpinned (docs/verification.md
"Mutation score"): the readable range, the I/O counters, one write per run of
consecutive pages, the number of free-list trunks, free-list ids that are
out of range, and what `check_invariants` reports."""

from __future__ import annotations

import pytest

from engine.codec import FREELIST_CAPACITY, PAGE_SIZE, encode_freelist, seal
from engine.disk import DirectFile
from engine.errors import CorruptionError
from engine.pager import Pager


class Calls:
    """A BlockFile that counts the writes passed to it."""

    def __init__(self, inner):
        self.inner = inner
        self.writes: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def write(self, offset, data):
        self.writes.append((offset // PAGE_SIZE, len(data) // PAGE_SIZE))
        self.inner.write(offset, data)


def _sealed(fill: int) -> bytes:
    page = bytearray([fill]) * PAGE_SIZE
    seal(page)
    return bytes(page)


@pytest.fixture
def file(tmp_path):
    f = Calls(DirectFile.open(tmp_path / "px.db", create=True, direct=False))
    for pid in range(4):
        f.inner.write(pid * PAGE_SIZE, _sealed(pid + 1))
    yield f
    f.close()


def test_read_range_is_zero_to_the_last_page(file):
    pager = Pager(file, 4)
    buf = memoryview(bytearray(PAGE_SIZE))
    pager.read(0, buf)
    assert bytes(buf) == _sealed(1)
    pager.read(3, buf)
    assert bytes(buf) == _sealed(4)
    for bad in (4, -1):
        with pytest.raises(CorruptionError, match=f"page {bad} is outside the file"):
            pager.read(bad, buf)
    assert pager.reads == 2


def test_counters_count_every_page(file):
    pager = Pager(file, 4)
    buf = memoryview(bytearray(PAGE_SIZE))
    pager.read(1, buf)
    pager.read(2, buf)
    assert pager.reads == 2
    pager.write(1, _sealed(7))
    pager.write(2, _sealed(8))
    assert pager.writes == 2
    pager.write_pages([(3, _sealed(9)), (1, _sealed(9))])  # two runs: 1, then 3
    assert pager.writes == 4


@pytest.mark.parametrize("ids, calls", [
    ([2, 1], [(1, 2)]),
    ([1, 2, 3, 5, 6, 9], [(1, 3), (5, 2), (9, 1)]),
    ([3], [(3, 1)]),
])
def test_one_write_per_run_of_consecutive_pages(file, ids, calls):
    pager = Pager(file, 10)
    pager.write_pages([(pid, _sealed(pid + 20)) for pid in ids])
    assert file.writes == calls
    buf = memoryview(bytearray(PAGE_SIZE))
    for pid in ids:
        pager.read(pid, buf)
        assert bytes(buf) == _sealed(pid + 20)


def test_long_runs_split_at_the_run_limit(file):
    from engine import pager as pager_module

    run = pager_module._RUN
    pager = Pager(file, 2 * run + 10)
    pages = [(pid, _sealed(1)) for pid in range(5, 5 + 2 * run + 3)]
    pager.write_pages(pages)
    assert file.writes == [(5, run), (5 + run, run), (5 + 2 * run, 3)]


@pytest.mark.parametrize("free, trunks", [
    (1, 1), (FREELIST_CAPACITY + 1, 1), (FREELIST_CAPACITY + 2, 2), (2 * FREELIST_CAPACITY + 2, 2),
])
def test_free_list_trunk_count(file, free, trunks):
    pager = Pager(file, free + 1)
    for pid in range(1, free + 1):
        pager.free(pid)
    head, images = pager.freelist_images()
    assert len(images) == trunks
    assert head == 1 and [pid for pid, _ in images] == list(range(1, trunks + 1))
    assert pager.freelist_trunks() == list(range(1, trunks + 1))  # what a backup checks as data


@pytest.mark.parametrize("bad", [0, 4])
def test_free_list_holding_an_id_out_of_range(file, bad):
    page = bytearray(PAGE_SIZE)
    encode_freelist([2, bad], 0, page)
    file.inner.write(1 * PAGE_SIZE, bytes(page))
    with pytest.raises(CorruptionError, match="free list"):
        Pager(file, 4).load_freelist(1, 3)


def test_free_list_trunk_chain_out_of_range(file):
    page = bytearray(PAGE_SIZE)
    encode_freelist([2], 7, page)  # the next trunk is past the file
    file.inner.write(1 * PAGE_SIZE, bytes(page))
    with pytest.raises(CorruptionError, match="bad trunk page 7"):
        Pager(file, 4).load_freelist(1, 3)


@pytest.mark.parametrize("bad", [0, 4])
def test_check_invariants_reports_a_free_page_out_of_range(file, bad):
    # No API frees page 0 or a page past the file (free asserts), so the test
    # plays the bug by editing the free set, and again the heap beside it.
    pager = Pager(file, 4)
    pager.free(2)
    assert pager.check_invariants() == []
    pager._free_set.add(bad)
    assert pager.check_invariants() == [
        "pager: free heap and free set disagree", "pager: free page out of range"]
    pager._free_heap.append(bad)
    assert pager.check_invariants() == ["pager: free page out of range"]


def test_check_invariants_reports_a_heap_with_a_duplicate(file):
    pager = Pager(file, 4)
    pager.free(2)
    pager._free_heap.append(2)
    assert pager.check_invariants() == ["pager: free heap and free set disagree"]


def test_read_refusals_name_the_page_and_the_reason(file):
    buf = memoryview(bytearray(PAGE_SIZE))
    pager = Pager(file, 5)  # page 4 is past the file's end: a short read
    pager.free(2)
    with pytest.raises(CorruptionError, match=r"^page 2 is free, yet something links to it$"):
        pager.read(2, buf)
    with pytest.raises(CorruptionError, match=r"^page 4: short read \(0 bytes\), file truncated\?$"):
        pager.read(4, buf)
    file.inner.write(3 * PAGE_SIZE + 100, b"\xff")  # a flipped byte
    with pytest.raises(CorruptionError, match=r"^page 3: checksum mismatch$"):
        pager.read(3, buf)


def test_read_ahead_leaves_out_free_pages_at_their_own_ids(file):
    pager = Pager(file, 4)
    pager.free(2)
    buf = memoryview(bytearray(3 * PAGE_SIZE))
    assert pager.read_ahead(1, 3, buf) == [1, 3]


def test_a_file_grows_by_exactly_one_extent(file):
    pager = Pager(file, 4)  # the file holds its 4 pages and no more
    assert pager.allocate() == 4
    assert file.size() == (4 + 64) * PAGE_SIZE  # the page asked for and 63 ahead: 64 in all
    assert [pager.allocate() for _ in range(63)] == list(range(5, 68))
    assert file.size() == 68 * PAGE_SIZE


def test_free_refuses_what_it_cannot_free_by_name(file):
    pager = Pager(file, 4)
    for bad in (0, 4):
        with pytest.raises(AssertionError, match=r"^free: page id out of range$"):
            pager.free(bad)
    pager.free(2)
    with pytest.raises(AssertionError, match=r"^free: page already free$"):
        pager.free(2)


def test_reset_leaves_every_page_in_use(file):
    pager = Pager(file, 4)
    pager.free(2)
    pager.free(3)
    pager.reset(3)  # a compaction rewrote the file as pages 0-2, all in use
    assert pager.page_count == 3 and pager.free_pages() == set() and pager.free_count == 0
    assert pager.freelist_images() == (0, [])
    assert pager.allocate() == 3 and pager.check_invariants() == []


def test_a_trunk_at_the_end_of_the_file_and_a_bad_trunk_page_are_named(file):
    page = bytearray(PAGE_SIZE)
    encode_freelist([2], 4, page)  # the next trunk is the page just past the file
    file.inner.write(1 * PAGE_SIZE, bytes(page))
    with pytest.raises(CorruptionError, match=r"^free list: bad trunk page 4$"):
        Pager(file, 4).load_freelist(1, 3)
    page = bytearray(PAGE_SIZE)
    encode_freelist([2], 0, page)
    page[6:8] = (FREELIST_CAPACITY + 1).to_bytes(2, "little")  # a count no trunk holds, checksum valid
    seal(page)
    file.inner.write(1 * PAGE_SIZE, bytes(page))
    with pytest.raises(CorruptionError, match=rf"^page 1: free-list count {FREELIST_CAPACITY + 1} too large$"):
        Pager(file, 4).load_freelist(1, 3)


def test_a_file_that_cannot_be_stated_is_reported():
    from engine.errors import StorageIOError

    class NoStat:
        def size(self):
            raise StorageIOError(5, "stat broke")

    assert Pager(NoStat(), 1).check_invariants() == ["pager: cannot stat file: [Errno 5] stat broke"]

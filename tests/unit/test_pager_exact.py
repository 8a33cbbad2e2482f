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

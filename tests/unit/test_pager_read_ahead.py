"""`Pager.read_ahead`: one read of a run of pages, clipped to the file,
returning exactly the ids whose checksums hold (found by mutation testing:
docs/verification.md "Mutation score"). And `free` refuses the id one past
the last page."""

from __future__ import annotations

import pytest

from engine.codec import PAGE_SIZE, seal
from engine.disk import DirectFile, aligned_buffer
from engine.pager import Pager


def _sealed(fill: int) -> bytes:
    page = bytearray([fill]) * PAGE_SIZE
    seal(page)
    return bytes(page)


@pytest.fixture
def pager(tmp_path):
    f = DirectFile.open(tmp_path / "ra.db", create=True, direct="auto")
    for pid in range(6):
        f.write(pid * PAGE_SIZE, _sealed(pid + 1))
    yield Pager(f, 6)
    f.close()


@pytest.fixture
def buf():
    mem = aligned_buffer(8 * PAGE_SIZE)
    view = memoryview(mem)
    yield view
    view.release()
    mem.close()


def test_a_run_of_pages_in_one_read(pager, buf):
    assert pager.read_ahead(2, 3, buf) == [2, 3, 4]
    assert pager.reads == 1
    for i, pid in enumerate((2, 3, 4)):
        assert bytes(buf[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]) == _sealed(pid + 1)


def test_clipped_at_the_end_of_the_file(pager, buf):
    assert pager.read_ahead(4, 8, buf) == [4, 5]
    assert pager.read_ahead(1, 8, buf) == [1, 2, 3, 4, 5]
    assert pager.reads == 2


@pytest.mark.parametrize("first, count", [(6, 1), (9, 2), (0, 0), (2, -1), (-1, 2), (-1, 1)])
def test_nothing_to_read_reads_nothing(pager, buf, first, count):
    assert pager.read_ahead(first, count, buf) == []
    assert pager.reads == 0


def test_one_page_and_page_zero(pager, buf):
    assert pager.read_ahead(0, 1, buf) == [0]
    assert bytes(buf[:PAGE_SIZE]) == _sealed(1)


def test_damaged_pages_are_left_out(pager, buf):
    damaged = bytearray(_sealed(9))
    damaged[100] ^= 1
    pager.file.write(3 * PAGE_SIZE, bytes(damaged))
    assert pager.read_ahead(1, 5, buf) == [1, 2, 4, 5]


def test_free_refuses_the_id_past_the_last_page(pager):
    with pytest.raises(AssertionError):
        pager.free(pager.page_count)
    assert pager.free_pages() == set()

"""`engine.overflow` over a dict-backed page store: chains written and read
back (through the pool, and a run at a time through `read_uncached`), freed
whole or not at all, and crafted chains refused with `CorruptionError`
before any wrong byte is returned.

The same damage seen through a whole database (a file rewritten under it)
is in tests/crash/test_crafted_pages.py; here each link rule is driven
alone, on chains laid out by hand.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bufferpool import BufferPool
from engine.codec import OVERFLOW_PAYLOAD, PAGE_SIZE, Node, Overflow, encode_node, encode_overflow
from engine.errors import CorruptionError
from engine.overflow import (
    OVERFLOW_RUN,
    free_overflow,
    overflow_pages,
    read_overflow,
    write_overflow,
)

P = OVERFLOW_PAYLOAD


class DictStore:
    """A `PageStore` in a dict; unwritten pages read as zeros. `reads` lists
    the pages read one at a time (through the pool)."""

    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.reads: list[int] = []

    def read_page(self, page_id: int, buf: memoryview) -> None:
        self.reads.append(page_id)
        buf[:] = self.pages.get(page_id, bytes(PAGE_SIZE))

    def write_page(self, page_id: int, buf: memoryview) -> None:
        self.pages[page_id] = bytes(buf)


class RunStore(DictStore):
    """A store that also reads runs of pages with one call (`read_ahead`),
    as the pager does; `runs` lists each call's (first, count)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[int, int]] = []

    def read_ahead(self, first: int, count: int, buf: memoryview) -> list[int]:
        self.runs.append((first, count))
        good = []
        for pid in range(first, first + count):
            if pid in self.pages:
                at = (pid - first) * PAGE_SIZE
                buf[at : at + PAGE_SIZE] = self.pages[pid]
                good.append(pid)
        return good


def _pool(store: DictStore, n_frames: int = 64) -> BufferPool:
    return BufferPool(store, n_frames)


def _counter(first: int = 1):
    """An `allocate` handing out first, first+1, ... and remembering them."""
    given_out: list[int] = []

    def allocate() -> int:
        given_out.append(first + len(given_out))
        return given_out[-1]

    return allocate, given_out


def _lay(store: DictStore, links: list[tuple[int, bytes, int]]) -> None:
    """Write overflow pages (page id, payload, next page id) into the store."""
    for pid, payload, nxt in links:
        page = bytearray(PAGE_SIZE)
        encode_overflow(payload, nxt, page)
        store.pages[pid] = bytes(page)


# -- round trip ----------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(
    size=st.one_of(st.integers(1, 3 * P + 1), st.sampled_from([P - 1, P, P + 1, 2 * P, 5 * P])),
    seed=st.integers(0, 255),
    first=st.integers(1, 50),
    flushed=st.booleans(),
    runs=st.booleans(),
)
def test_a_written_chain_reads_back_exactly(size: int, seed: int, first: int, flushed: bool, runs: bool) -> None:
    """Any value is stored in ceil(len / payload) distinct new pages, in the
    order `allocate` gave them, and reads back byte for byte: from the pool,
    or (written home and dropped from the pool) from the store a run at a time."""
    value = bytes((seed + i * 7) % 256 for i in range(size))
    store = RunStore() if runs else DictStore()
    pool = _pool(store)
    allocate, ids = _counter(first)
    ov = write_overflow(pool, allocate, value)
    assert ov == Overflow(first, size)
    assert ids == list(range(first, first + -(-size // P)))
    assert pool.check_invariants(expect_unpinned=True) == []
    if flushed:
        pool.flush()
        pool.close()
        pool = _pool(store)
    assert read_overflow(pool, ov) == value
    if flushed and runs and len(ids) > 1:
        assert store.reads == [] and store.runs == [(first, len(ids))]  # one call, no page one by one
    assert overflow_pages(pool, ov) == ids
    assert pool.check_invariants(expect_unpinned=True) == []
    pool.close()


def test_a_long_chain_is_read_a_run_at_a_time() -> None:
    """Pages ahead are read with one call per OVERFLOW_RUN pages, never one by one."""
    store = RunStore()
    pool = _pool(store, 16)  # far fewer frames than the chain has pages
    allocate, ids = _counter()
    value = bytes(range(256)) * ((OVERFLOW_RUN + 10) * P // 256 + 1)
    ov = write_overflow(pool, allocate, value)  # evicts as it goes: the early pages reach the store
    pool.flush()
    pool.close()
    pool = _pool(store, 16)
    assert read_overflow(pool, ov) == value
    assert store.runs == [(1, OVERFLOW_RUN), (1 + OVERFLOW_RUN, len(ids) - OVERFLOW_RUN)]
    assert store.reads == []
    pool.close()


def test_pages_in_the_pool_are_not_read_from_the_store() -> None:
    """A run leaves out the pages the pool holds (its copy may be newer than
    the store's): they are read through the pool, not from the stale copy."""
    store = RunStore()
    pool = _pool(store)
    allocate, ids = _counter()
    value = b"a" * P + b"b" * P + b"c" * 10
    ov = write_overflow(pool, allocate, value)
    pool.flush()
    store.pages[ids[1]] = bytes(PAGE_SIZE)  # a stale store copy: the pool's must win
    assert read_overflow(pool, ov) == value
    pool.close()


def test_a_page_the_run_left_out_is_read_through_the_pool_without_another_run() -> None:
    store = RunStore()
    pool = _pool(store)
    allocate, ids = _counter()
    value = b"a" * P + b"b" * P + b"c" * 10
    ov = write_overflow(pool, allocate, value)
    pool.flush()
    pool.close()
    pool = _pool(store)
    with pool.read(ids[1]):  # cached: the run leaves it out
        pass
    store.reads.clear()
    assert read_overflow(pool, ov) == value
    assert store.runs == [(1, 3)] and store.reads == []
    pool.close()


@pytest.mark.parametrize("size", [1, P - 1, P])
def test_a_chain_of_one_page_is_read_through_the_pool(size: int) -> None:
    """A run is for the pages still ahead: a value that fits one page (or
    the last page of a chain) is one read, through the pool."""
    store = RunStore()
    pool = _pool(store)
    allocate, ids = _counter(3)
    ov = write_overflow(pool, allocate, bytes(range(256)) * (size // 256) + bytes(size % 256))
    pool.flush()
    pool.close()
    pool = _pool(store)
    assert len(read_overflow(pool, ov)) == size
    assert store.runs == [] and store.reads == [3]
    pool.close()


# -- freeing -------------------------------------------------------------------------------

def test_free_passes_every_page_in_order() -> None:
    pool = _pool(DictStore())
    allocate, ids = _counter(7)
    ov = write_overflow(pool, allocate, bytes(2 * P + 1))
    freed: list[int] = []
    free_overflow(pool, freed.append, ov)
    assert freed == ids == [7, 8, 9]
    pool.close()


def test_a_damaged_chain_frees_nothing() -> None:
    """The whole chain is checked before the first page is given to `free`."""
    store = DictStore()
    _lay(store, [(1, bytes(P), 2), (2, bytes(P), 1)])  # a cycle after two good pages
    pool = _pool(store)
    freed: list[int] = []
    with pytest.raises(CorruptionError, match="a cycle at page 1"):
        free_overflow(pool, freed.append, Overflow(1, 3 * P))
    assert freed == []
    assert pool.check_invariants(expect_unpinned=True) == []
    pool.close()


# -- crafted chains ------------------------------------------------------------------------

NODE_PAGE = bytearray(PAGE_SIZE)
encode_node(Node(True), NODE_PAGE)

# (what, pages laid out, the cell's Overflow, the message's tail)
CRAFTED = [
    ("empty value", [(1, b"x", 0)], Overflow(1, 0), "an empty value or no first page at page 1"),
    ("no first page", [], Overflow(0, 10), "an empty value or no first page at page 0"),
    ("self loop of an empty page", [(1, b"", 1)], Overflow(1, 10), "a page of 0 bytes with 10 to go at page 1"),
    ("cycle of full pages", [(1, bytes(P), 2), (2, bytes(P), 1)], Overflow(1, 3 * P), "a cycle at page 1"),
    ("short page mid-chain", [(1, bytes(100), 2), (2, bytes(P), 0)], Overflow(1, P + 100),
     f"a page of 100 bytes with {P + 100} to go at page 1"),
    ("last page too long", [(1, bytes(P), 2), (2, bytes(P), 0)], Overflow(1, P + 5),
     f"a page of {P} bytes with 5 to go at page 2"),
    ("link past the end", [(1, bytes(P), 2), (2, bytes(5), 3), (3, bytes(5), 0)], Overflow(1, P + 5),
     "a link past the end (to 3) at page 2"),
    ("end too soon", [(1, bytes(P), 0), (2, bytes(5), 0)], Overflow(1, P + 5), "the end at page 1"),
]


@pytest.mark.parametrize("runs", [False, True], ids=["pool", "runs"])
@pytest.mark.parametrize(("what", "links", "ov", "message"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_chains_are_refused(what: str, links, ov: Overflow, message: str, runs: bool) -> None:
    """Every walk refuses each broken link rule, naming the chain and the page."""
    store = RunStore() if runs else DictStore()
    _lay(store, links)
    pool = _pool(store)
    for walk in (overflow_pages, read_overflow):
        with pytest.raises(CorruptionError) as caught:
            walk(pool, ov)
        assert str(caught.value) == f"overflow chain of {ov.length} bytes from page {ov.page}: {message}", what
    assert pool.check_invariants(expect_unpinned=True) == []
    pool.close()


@pytest.mark.parametrize("runs", [False, True], ids=["pool", "runs"])
def test_a_page_of_another_kind_in_the_chain_is_refused(runs: bool) -> None:
    """A link to a tree node (or any page not an overflow page) fails its
    decode, whether the page came in a run or through the pool; no pin is left."""
    store = RunStore() if runs else DictStore()
    _lay(store, [(1, bytes(P), 2)])
    store.pages[2] = bytes(NODE_PAGE)
    for walk in (overflow_pages, read_overflow):
        pool = _pool(store)  # a fresh pool: the bad page is not cached from the walk before
        with pytest.raises(CorruptionError, match="^page 2: type "):
            walk(pool, Overflow(1, P + 5))
        assert pool.check_invariants(expect_unpinned=True) == []
        pool.close()
    if runs:
        assert store.runs == [(1, 2)]  # read_overflow took page 2 from a run

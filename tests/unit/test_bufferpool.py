"""`engine.bufferpool.BufferPool` over a dict-backed page store.

Guards unpin on every exit path; a full pool refuses with no effect; a
failed eviction write-back leaves the victim where it was, dirty, the page
table unchanged and the mutex free; flush; counters; `check_invariants`;
the double-checked fetch (the seed's duplicate-frame race); and real
threads hammering a tiny pool with a 1 microsecond switch interval.
"""

from __future__ import annotations

import random
import sys
import threading

import pytest
from seed_bugs import SeedFetchPool

from engine import syncpoints
from engine.bufferpool import BufferPool
from engine.codec import PAGE_SIZE, Node, decode_node, encode_node
from engine.errors import BufferPoolFullError, CorruptionError, StorageIOError
from engine.latch import RWLatch
from models import ModelPageStore

WAIT = 5.0  # a call that must not block gets this long in a helper thread


class DictStore(ModelPageStore):
    """`models.ModelPageStore` growing like a file (unwritten pages read as
    zeros), recording the pool's reads and writes. Faults are switched on by
    the test: `fail_writes` / `fail_reads` (True or a set of page ids)."""

    def __init__(self) -> None:
        super().__init__(grow=True)
        self.reads: list[int] = []
        self.writes: list[int] = []
        self.fail_writes: bool | set[int] = False
        self.fail_reads: bool | set[int] = False

    @staticmethod
    def _fails(rule, page_id) -> bool:
        return rule is True or (isinstance(rule, set) and page_id in rule)

    def read_page(self, page_id: int, buf: memoryview) -> None:
        if self._fails(self.fail_reads, page_id):
            raise StorageIOError(5, f"injected read error on page {page_id}")
        self.reads.append(page_id)
        super().read_page(page_id, buf)

    def write_page(self, page_id: int, buf: memoryview) -> None:
        if self._fails(self.fail_writes, page_id):
            raise StorageIOError(5, f"injected write error on page {page_id}")
        self.writes.append(page_id)
        super().write_page(page_id, buf)


def image(page_id: int, version: int = 0) -> bytes:
    return (b"%08d:%08d|" % (page_id, version)) * (PAGE_SIZE // 18) + bytes(PAGE_SIZE % 18)


@pytest.fixture
def store():
    s = DictStore()
    for pid in range(1, 40):
        s.write(pid, image(pid))
    return s


@pytest.fixture
def make_pool(store, pools):
    return lambda n_frames: pools(store, n_frames)


def in_thread(fn, timeout: float = WAIT):
    """Run `fn` in a helper thread; fail (instead of hanging) if it blocks."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # reported to the caller
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the call blocked: is the pool's mutex still held?"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def use(guard) -> bytes:
    """Enter and leave a guard; the page's bytes as seen inside."""
    with guard as page:
        return bytes(page)


def snapshot(pool: BufferPool, store: DictStore) -> tuple:
    frames = tuple((f.page_id, f.pin, f.dirty, bytes(f.buf)) for f in pool.frames)
    return (
        sorted(pool.page_ids()),
        frames,
        (pool.hits, pool.misses, pool.evictions),
        (len(store.reads), len(store.writes)),
        store.images(),
    )


def pins(pool: BufferPool) -> int:
    return sum(f.pin for f in pool.frames)


# -- guards -------------------------------------------------------------------


def test_guards_pin_while_open_and_unpin_after(make_pool, store):
    pool = make_pool(4)
    with pool.read(1) as page:
        frame = pool.cached(1)
        assert frame.page_id == 1 and frame.pin == 1
        assert bytes(page) == image(1)
        with pool.read(1) as again:
            assert bytes(again) == image(1) and frame.pin == 2
        assert frame.pin == 1
    assert frame.pin == 0 and not frame.dirty, "a read guard leaves the frame clean"
    with pool.write(2) as page:
        page[:4] = b"new!"
    frame = pool.cached(2)
    assert frame.pin == 0 and frame.dirty, "a write guard marks the frame dirty"
    assert bytes(frame.buf[:4]) == b"new!"
    assert store.writes == [], "no write-back before eviction or flush"


def test_write_guard_on_a_new_page_reads_nothing(make_pool, store):
    pool = make_pool(4)
    with pool.write(1, new=True) as page:
        assert bytes(page) == bytes(PAGE_SIZE), "a new page starts zeroed"
        assert pool.cached(1).pin == 1
        page[:3] = b"new"
    assert store.reads == [], "a new page is not read"
    assert pool.cached(1).pin == 0 and pool.cached(1).dirty
    assert pool.flush() == 1 and store.read(1)[:3] == b"new"


@pytest.mark.parametrize("guard", ["read", "write"])
@pytest.mark.parametrize("exc", [ValueError, KeyError, KeyboardInterrupt, GeneratorExit])
def test_guards_unpin_when_the_body_raises(make_pool, guard, exc):
    pool = make_pool(2)
    with pytest.raises(exc):
        with getattr(pool, guard)(3):
            frame = pool.cached(3)
            assert frame.pin == 1
            raise exc("boom")
    assert frame.pin == 0
    assert not frame.writer and frame.readers == 0, "the latch is released"
    assert pool.check_invariants(expect_unpinned=True) == []
    # the latch really is free: an exclusive guard in another thread gets it at once
    in_thread(lambda: use(pool.write(3)))
    assert pool.check_invariants(expect_unpinned=True) == []


def test_write_guard_that_raises_still_marks_dirty(make_pool, store):
    # the body may have changed bytes before raising: never drop them silently
    pool = make_pool(2)
    with pytest.raises(RuntimeError):
        with pool.write(4) as page:
            page[:5] = b"half-"
            raise RuntimeError
    assert pool.cached(4).dirty
    assert pool.flush() == 1
    assert store.read(4)[:5] == b"half-"


def test_guard_unpins_when_a_generator_is_closed_early(make_pool):
    pool = make_pool(3)

    def scan(ids):
        for pid in ids:
            with pool.read(pid) as page:
                yield bytes(page[:8])

    it = scan([1, 2, 3])
    assert next(it) == image(1)[:8]
    assert pins(pool) == 1
    it.close()  # GeneratorExit inside the guard
    assert pins(pool) == 0


def test_failed_read_on_a_miss_leaves_nothing_pinned(make_pool, store):
    pool = make_pool(2)
    store.fail_reads = {5}
    for guard in (pool.read, pool.write):
        with pytest.raises(StorageIOError):
            with guard(5):
                raise AssertionError("the body must not run")
    with pytest.raises(StorageIOError):
        pool.fetch(5)
    assert pool.cached(5) is None
    assert pins(pool) == 0
    assert pool.check_invariants(expect_unpinned=True) == []
    store.fail_reads = False
    with pool.read(5) as page:
        assert bytes(page) == image(5)


# -- decoded nodes ----------------------------------------------------------------


def leaf_image(*keys: bytes) -> bytes:
    page = bytearray(PAGE_SIZE)
    encode_node(Node(True, list(keys), [b"v" + k for k in keys]), page)
    return bytes(page)


@pytest.fixture
def node_store(store):
    for pid in range(1, 8):
        store.write(pid, leaf_image(b"a%d" % pid, b"b%d" % pid))
    return store


def test_node_decodes_once_and_holds_no_pin(make_pool, node_store):
    pool = make_pool(4)
    node = pool.node(1)
    assert node.keys == [b"a1", b"b1"] and pins(pool) == 0
    assert pool.node(1) is node, "decoded once, cached on the frame"
    assert pool.peek(1) is node
    assert pool.peek(2) is None, "peek never reads"
    with pytest.raises(CorruptionError):
        pool.node(20)  # not a node page
    assert pins(pool) == 0


def test_pin_node_holds_its_pin_until_unpin_nodes(make_pool, node_store):
    pool = make_pool(4)
    a, b = pool.pin_node(1), pool.pin_node(2)
    assert pool.pin_node(1) is a and pins(pool) == 3
    pool.unpin_nodes([1, 1, 2], changed=False)
    assert pins(pool) == 0 and pool.dirty_pages() == []
    with pytest.raises(CorruptionError):
        pool.pin_node(20)
    assert pins(pool) == 0, "a page that does not decode is not left pinned"
    b.keys.append(b"c2")
    b.vals.append(b"vc2")
    b.size = b.compute_size()
    pool.pin_node(2)
    pool.unpin_nodes([2], changed=True)
    assert [pid for pid, _ in pool.dirty_pages()] == [2], "a changed node's page is dirty"
    assert pool.flush() == 1
    assert decode_node(node_store.read(2)).keys == [b"a2", b"b2", b"c2"]


def test_changed_node_bytes_are_encoded_at_write_back(make_pool, node_store):
    pool = make_pool(4)
    node = pool.node(3)
    node.vals[0] = b"new"
    node.size = node.compute_size()
    pool.node_changed(3)
    assert pool.flush() == 1
    assert decode_node(node_store.read(3)).vals == [b"new", b"vb3"]
    assert pool.corrupt_clean_nodes() == []
    pool.cached(3).buf[100] ^= 1  # damage clean cached bytes
    assert pool.corrupt_clean_nodes() == [3]
    pool.cached(3).buf[100] ^= 1


@pytest.mark.parametrize("pinned", [True, False])
def test_add_node_pinned_or_not(make_pool, node_store, pinned):
    pool = make_pool(4)
    pool.add_node(30, Node(True, [b"k"], [b"v"]), pinned=pinned)
    assert pins(pool) == (1 if pinned else 0)
    assert node_store.reads == [], "a new page is not read"
    if pinned:
        pool.unpin_nodes([30], changed=False)
    assert pool.flush() == 1
    assert decode_node(node_store.read(30)).keys == [b"k"]


def test_restore_node_pinned_and_released(make_pool, node_store):
    pool = make_pool(2)
    node = pool.pin_node(4)
    before = node.copy()
    node.keys[0] = b"a4x"
    pool.restore_node(4, before, pinned=True)  # the page was held: only unpinned
    assert pins(pool) == 0 and pool.peek(4) is before and pool.dirty_pages() == []
    node = pool.pin_node(5)
    before = node.copy()
    node.vals[0] = b"changed"
    node.size = node.compute_size()
    pool.unpin_nodes([5], changed=True)
    for pid in (6, 7):
        pool.node(pid)  # page 5 is evicted: its change written back
    assert pool.cached(5) is None and decode_node(node_store.read(5)).vals[0] == b"changed"
    pool.restore_node(5, before, pinned=False)  # read back, given the copy, dirty
    assert pins(pool) == 0 and pool.peek(5) is before
    pool.flush()
    assert decode_node(node_store.read(5)).vals[0] == b"va5"


def test_search_leaf_searches_an_undecoded_leaf_of_a_full_pool_once(make_pool, node_store):
    pool = make_pool(2)
    seen = []

    def search(page, what):
        seen.append(bytes(page[:8]))
        return what

    assert type(pool.search_leaf(1, search, "found")) is Node, "a pool with room decodes"
    pool.node(2)  # the pool is full now
    assert pool.search_leaf(3, search, "found") == "found" and len(seen) == 1
    assert pool.peek(3) is None, "searched, not decoded"
    node = pool.search_leaf(3, search, "found")
    assert type(node) is Node and len(seen) == 1, "met again: decoded for the hits to come"
    assert pins(pool) == 0


# -- a full pool ----------------------------------------------------------------


def test_full_pool_refuses_with_no_effect(make_pool, store):
    pool = make_pool(3)
    held = [pool.fetch(pid) for pid in (1, 2, 3)]
    held[0].buf[:3] = b"abc"
    pool.unpin(held[0], dirty=True)
    held[0] = pool.fetch(1)
    before = snapshot(pool, store)
    for attempt in (
        lambda: pool.fetch(9),
        lambda: use(pool.read(9)),
        lambda: use(pool.write(9)),
        lambda: pool.new_page(10),
    ):
        with pytest.raises(BufferPoolFullError):
            attempt()
        assert snapshot(pool, store) == before, "a refused request changed something"
        assert pool.check_invariants() == []
    # resident pages are still served while full
    with pool.read(2):
        assert pool.cached(2) is held[1]
    pool.unpin(held[2])
    with pool.read(9) as page:
        assert pool.cached(9) is held[2], "the one unpinned frame is reused"
        assert bytes(page) == image(9)
    for f in held[:2]:
        pool.unpin(f)


# -- eviction write-back failure --------------------------------------------------------


@pytest.mark.parametrize("how", ["fetch", "read", "write", "new_page"])
def test_failed_write_back_leaves_the_victim_in_place(make_pool, store, how):
    pool = make_pool(2)
    with pool.write(1) as page:
        page[:] = image(1, 7)
    with pool.write(2) as page:
        page[:] = image(2, 7)
    f1 = pool.cached(1)
    with pool.read(2):
        pass  # page 1 is now the least recently used: the victim
    store.fail_writes = True
    before = snapshot(pool, store)
    table = {pid: pool.cached(pid) for pid in pool.page_ids()}
    request = {
        "fetch": lambda: pool.fetch(3),
        "read": lambda: use(pool.read(3)),
        "write": lambda: use(pool.write(3)),
        "new_page": lambda: pool.new_page(3),
    }[how]

    for _ in range(2):  # failing again changes nothing either
        with pytest.raises(StorageIOError):
            in_thread(request)
        assert snapshot(pool, store) == before
        assert {pid: pool.cached(pid) for pid in pool.page_ids()} == table
        assert pool.cached(1) is f1 and f1.page_id == 1 and f1.dirty
        assert bytes(f1.buf) == image(1, 7)
        assert pool.cached(3) is None
        assert pool.check_invariants(expect_unpinned=True) == []
        # the mutex is free: a hit and a query from another thread return at once
        assert in_thread(lambda: use(pool.read(2))) == image(2, 7)
        assert in_thread(pool.pinned) == []
        before = snapshot(pool, store)  # the hit moved counters and LRU order only

    store.fail_writes = False
    got = in_thread(request)
    assert store.read(1) == image(1, 7), "the victim was written back once the store recovered"
    assert pool.cached(1) is None and pool.cached(3) is not None
    assert pool.evictions == before[2][2] + 1
    if how in ("fetch", "new_page"):
        assert got is pool.cached(3)
        pool.unpin(got, dirty=how == "new_page")
        got = bytes(got.buf)
    assert got == (bytes(PAGE_SIZE) if how == "new_page" else image(3))


def test_failed_write_back_of_one_page_does_not_lose_others(make_pool, store):
    pool = make_pool(3)
    for pid in (1, 2, 3):
        with pool.write(pid) as page:
            page[:] = image(pid, 1)
    store.fail_writes = {1}
    with pytest.raises(StorageIOError):
        pool.fetch(4)
    store.fail_writes = False
    for pid in (4, 5, 6, 7):
        with pool.read(pid) as page:
            assert bytes(page) == image(pid)
    pool.flush()
    for pid in (1, 2, 3):
        assert store.read(pid) == image(pid, 1)


# -- flush ---------------------------------------------------------------------------


def test_flush_writes_every_dirty_frame_once(make_pool, store):
    pool = make_pool(8)
    for pid in (1, 2, 3):
        with pool.write(pid) as page:
            page[:] = image(pid, 2)
    with pool.read(4):
        pass
    assert sorted(pid for pid, _ in pool.dirty_pages()) == [1, 2, 3]
    assert pool.flush() == 3
    assert sorted(store.writes) == [1, 2, 3]
    assert all(store.read(pid) == image(pid, 2) for pid in (1, 2, 3))
    assert pool.dirty_pages() == []
    assert pool.flush() == 0, "nothing left to write"
    assert sorted(store.writes) == [1, 2, 3]


def test_flush_failure_keeps_the_unwritten_frames_dirty(make_pool, store):
    pool = make_pool(8)
    for pid in (1, 2, 3):
        with pool.write(pid) as page:
            page[:] = image(pid, 3)
    store.fail_writes = {2}
    with pytest.raises(StorageIOError):
        pool.flush()
    assert pool.cached(2).dirty, "the page that failed is still dirty"
    for pid in (1, 3):
        frame = pool.cached(pid)
        assert frame.dirty or store.read(pid) == image(pid, 3), "clean means written"
    assert in_thread(pool.pinned) == [], "the mutex was released"
    store.fail_writes = False
    pool.flush()
    assert all(store.read(pid) == image(pid, 3) for pid in (1, 2, 3))
    assert pool.dirty_pages() == []


# -- counters, LRU order, new_page, discard -------------------------------------------


def test_hit_miss_eviction_counters_and_lru_order(make_pool, store):
    pool = make_pool(2)
    script = [1, 1, 2, 3, 2, 1, 1]
    for pid in script:
        with pool.read(pid):
            pass
    # 1 miss, 1 hit, 2 miss, 3 miss (evicts 1), 2 hit, 1 miss (evicts 3), 1 hit
    assert (pool.hits, pool.misses, pool.evictions) == (3, 4, 2)
    assert sorted(pool.page_ids()) == [1, 2]
    assert store.reads == [1, 2, 3, 1]
    with pool.read(2):
        pass
    with pool.read(5):
        pass  # 1 is now least recent
    assert sorted(pool.page_ids()) == [2, 5]
    assert store.writes == [], "clean victims are not written"


def test_new_page_is_zeroed_dirty_and_pinned(make_pool, store):
    pool = make_pool(2)
    frame = pool.new_page(100)
    assert frame.pin == 1 and frame.dirty and bytes(frame.buf) == bytes(PAGE_SIZE)
    assert store.reads == [], "a new page is not read"
    frame.buf[:4] = b"data"
    again = pool.new_page(100)  # re-initialising a resident page: same frame, one more pin
    assert again is frame and frame.pin == 2 and bytes(frame.buf[:4]) == bytes(4)
    pool.unpin(frame)
    pool.unpin(frame, dirty=True)
    assert pool.flush() == 1 and store.writes == [100] and store.read(100) == bytes(PAGE_SIZE)


def test_discard_forgets_without_writing_back(make_pool, store):
    pool = make_pool(2)
    with pool.write(1) as page:
        page[:] = image(1, 9)
    pool.discard(1)
    pool.discard(1)  # a page not in the pool: nothing to do
    assert pool.cached(1) is None and store.writes == []
    with pool.read(1) as page:
        assert bytes(page) == image(1), "the store still has the old image"
        frame = pool.cached(1)
    with pytest.raises(AssertionError):
        pool.unpin(frame)  # already unpinned by the guard


def test_discard_of_a_pinned_page_changes_nothing(store):
    pool = BufferPool(store, 2)
    try:
        frame = pool.fetch(1)
        with pytest.raises(AssertionError):
            pool.discard(1)
        assert pool.cached(1) is frame
        pool.unpin(frame)
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


# -- check_invariants can fail --------------------------------------------------------


def test_check_invariants_reports_each_broken_rule(store):
    pool = BufferPool(store, 4)
    try:
        with pool.read(1):
            pass
        with pool.read(2):
            pass
        assert pool.check_invariants(expect_unpinned=True) == []
        held = pool.fetch(1)
        assert any("still pinned" in p for p in pool.check_invariants(expect_unpinned=True))
        pool.unpin(held)
        # break rules on this private pool by hand, one at a time
        f1, f2 = pool.cached(1), pool.cached(2)
        pool._table[2] = f1  # two pages in one frame
        problems = pool.check_invariants()
        assert any("page table" in p for p in problems), problems
        pool._table[2] = f2
        with pool.read(3):
            pass
        pool.discard(3)  # its frame goes back on the free list
        free = pool._free[-1]
        free.pin = 1  # a free frame in use
        assert any("free frame" in p for p in pool.check_invariants())
        free.pin = 0
        f2.pin = -1
        assert any("< 0" in p for p in pool.check_invariants())
        f2.pin = 0
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


# -- the double-checked fetch -------------------------------------------------------------


class Park:
    """A sync-point hook that parks one thread at one named point until the
    test lets it go; every other thread and point passes straight through."""

    def __init__(self, point: str) -> None:
        self.point = point
        self.victim: threading.Thread | None = None
        self.parked = threading.Event()
        self.go = threading.Event()

    def __call__(self, name: str) -> None:
        if name == self.point and threading.current_thread() is self.victim:
            self.parked.set()
            assert self.go.wait(WAIT), "Park: never released"


@pytest.mark.parametrize("point", ["bufferpool.fetch.miss", "bufferpool.fetch.install"])
@pytest.mark.parametrize("double_check", [True, False])
def test_two_fetches_of_one_page_share_one_frame(store, point, double_check):
    # without the double check: the seed's pool, re-created on the test side
    pool = (BufferPool if double_check else SeedFetchPool)(store, 4)
    park = Park(point)
    got: dict[str, object] = {}

    def slow():
        got["a"] = pool.fetch(7)

    park.victim = threading.Thread(target=slow, daemon=True)
    syncpoints.install(park)
    try:
        park.victim.start()
        assert park.parked.wait(WAIT)
        if double_check and point == "bufferpool.fetch.install":
            # the page is in the table as a loading placeholder: the second
            # fetch waits for the first read instead of reading a second copy
            other = threading.Thread(target=lambda: got.__setitem__("b", pool.fetch(7)), daemon=True)
            other.start()
            other.join(0.3)
            assert other.is_alive(), "the second fetch did not wait for the load"
            park.go.set()
            other.join(WAIT)
            assert store.reads.count(7) == 1
        else:
            got["b"] = pool.fetch(7)  # the other thread's fetch completes meanwhile
        park.go.set()
        park.victim.join(WAIT)
    finally:
        syncpoints.uninstall()
        park.go.set()
    try:
        assert not park.victim.is_alive()
        holders = [f for f in pool.frames if f.page_id == 7]
        if double_check:
            assert got["a"] is got["b"], "one page, one frame"
            assert len(holders) == 1 and holders[0].pin == 2
            pool.unpin(got["a"])
            pool.unpin(got["b"])
            assert pool.check_invariants(expect_unpinned=True) == []
        elif point == "bufferpool.fetch.miss":
            # without the double check the seed's race is back, and the checker sees it
            assert got["a"] is not got["b"] and len(holders) == 2
            pool.unpin(got["a"])
            pool.unpin(got["b"])
            assert pool.check_invariants() != []
        else:
            # parked after the read: the second fetch read the page too
            assert store.reads.count(7) == 2
    finally:
        pool.close()


def test_stale_read_is_not_installed_over_a_newer_write_back(store):
    pool = BufferPool(store, 2)
    park = Park("bufferpool.fetch.install")
    got: dict[str, bytes] = {}

    def slow_reader():
        with pool.read(7) as page:
            got["a"] = bytes(page)

    def writer():
        with pool.write(7) as page:  # fetch and write ...
            page[:] = image(7, 1)
        with pool.read(8):  # ... then evict page 7 (write-back)
            pass

    park.victim = threading.Thread(target=slow_reader, daemon=True)
    other = threading.Thread(target=writer, daemon=True)
    syncpoints.install(park)
    try:
        park.victim.start()
        assert park.parked.wait(WAIT)  # it has read page 7 and not yet installed it
        other.start()
        other.join(0.3)
        assert other.is_alive(), "the writer did not wait for the page being loaded"
        park.go.set()
        park.victim.join(WAIT)
        other.join(WAIT)
    finally:
        syncpoints.uninstall()
        park.go.set()
    try:
        with pool.read(7) as page:
            now = bytes(page)
        pool.flush()
        assert store.read(7) == image(7, 1)
        assert now == image(7, 1), "the write was lost: a stale copy is in the pool"
        # once the load ends, either waiter may take the page's latch first
        assert got["a"] in (image(7, 0), image(7, 1)), "the reader saw a page torn or stale"
    finally:
        pool.close()


# -- real threads -----------------------------------------------------------------------

N_THREADS = 8
N_PAGES = 24
SLOT = 8  # bytes per thread at the start of each page
FILL_AT = N_THREADS * SLOT  # a byte naming the fill, then the fill to the end


def hammer(
    pool: BufferPool, ops: int, db_latch: RWLatch | None
) -> tuple[list, list[str], list[list[int]]]:
    """`N_THREADS` threads read and write overlapping pages through `pool`
    with a 1 microsecond switch interval, while a monitor thread checks the
    pool's invariants. Thread t owns an 8-byte counter in every page and
    checks it on every access; each write also refills the page's tail, which
    readers check is uniform (a torn page means two writers at once).
    With `db_latch`, writers hold it exclusively and readers shared, as
    `engine.db` drives the pool. Returns (thread errors, invariant problems,
    expected counters)."""
    expect = [[0] * N_PAGES for _ in range(N_THREADS)]
    errors: list[BaseException] = []
    problems: list[str] = []
    stop = threading.Event()

    def check_page(buf: bytes, t: int, pid: int) -> None:
        got = int.from_bytes(buf[t * SLOT : (t + 1) * SLOT], "little")
        assert got == expect[t][pid], (
            f"thread {t} page {pid}: counter {got}, wrote {expect[t][pid]}"
        )
        fill = buf[FILL_AT]
        assert buf[FILL_AT + 1 :] == bytes([fill]) * (PAGE_SIZE - FILL_AT - 1), (
            f"page {pid} is torn"
        )

    def access(t: int, pid: int, write: bool, fill: int) -> None:
        with (pool.write if write else pool.read)(pid) as buf:
            check_page(bytes(buf), t, pid)
            if write:
                expect[t][pid] += 1
                buf[t * SLOT : (t + 1) * SLOT] = expect[t][pid].to_bytes(SLOT, "little")
                buf[FILL_AT:] = bytes([fill]) * (PAGE_SIZE - FILL_AT)

    def worker(t: int) -> None:
        rng = random.Random(t)
        try:
            for _ in range(ops):
                pid, write, fill = rng.randrange(N_PAGES), rng.random() < 0.5, rng.randrange(256)
                if db_latch is not None:
                    (db_latch.acquire_write if write else db_latch.acquire_read)()
                try:
                    access(t, pid, write, fill)
                except BufferPoolFullError:
                    pass  # every frame pinned by other threads: legal, try another page
                finally:
                    if db_latch is not None:
                        (db_latch.release_write if write else db_latch.release_read)()
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        while not stop.is_set():
            found = pool.check_invariants()
            if found:
                problems.extend(found)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(N_THREADS)]
        watcher = threading.Thread(target=monitor)
        watcher.start()
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        stop.set()
        watcher.join(60)
    finally:
        sys.setswitchinterval(old)
    return errors, problems, expect


def check_after(pool: BufferPool, store: DictStore, expect: list[list[int]]) -> None:
    assert pool.check_invariants(expect_unpinned=True) == []
    owners = [f.page_id for f in pool.frames if f.page_id is not None]
    assert len(owners) == len(set(owners)), "a page is held in two frames"
    pool.flush()
    for pid in range(N_PAGES):
        page = store.read(pid)
        for t in range(N_THREADS):
            assert int.from_bytes(page[t * SLOT : (t + 1) * SLOT], "little") == expect[t][pid]


def test_threads_share_a_tiny_pool():
    # readers fetch, miss and evict (dirty victims too) concurrently; writers are
    # exclusive, as under the database latch
    store = DictStore()
    pool = BufferPool(store, 6)  # fewer frames than threads
    try:
        errors, problems, expect = hammer(pool, 600, RWLatch())
        assert not errors, errors[0]
        assert not problems, problems[:5]
        assert pool.misses > N_PAGES and pool.evictions > 0, "the pool was under pressure"
        assert sum(map(sum, expect)) > 100, "threads really wrote"
        check_after(pool, store, expect)
    finally:
        pool.close()


def test_the_hammer_catches_the_seed_duplicate_frame_race():
    # the same workload with the double-checked fetch switched off (the seed's
    # behaviour) must be caught; about one round in four shows it, so allow
    # up to 60 (a miss is then a one-in-ten-million event)
    caught = []
    for _ in range(60):
        store = DictStore()
        pool = SeedFetchPool(store, 6)
        try:
            errors, problems, expect = hammer(pool, 600, RWLatch())
            try:
                assert not errors and not problems
                check_after(pool, store, expect)
            except AssertionError as exc:
                caught.append(exc)
                break
        finally:
            pool.close()
    assert caught, "two frames for one page went unnoticed in 60 rounds"


def test_threads_write_concurrently_through_a_tiny_pool():
    # the race needs a specific interleaving; it shows in most rounds here
    # (about 4 in 5), so repeating makes the expected failure reliable, and a
    # fixed engine passes every round
    for _ in range(12):
        store = DictStore()
        pool = BufferPool(store, 6)
        try:
            errors, problems, expect = hammer(pool, 600, None)
            assert not problems, problems[:5]
            assert not errors, errors[0]
            check_after(pool, store, expect)
        finally:
            pool.close()

"""`engine.bufferpool.BufferPool`, exactly: the counters, the read-ahead
window around a miss (its bounds, the free frames it needs, the frames it
takes), prewarm, `read_uncached`, and what a read-ahead in flight looks
like to other threads (its pages pinned once and loading, a second
read-ahead skipped, not waited for).

The store here has the pager's `read_ahead` (pages clipped at the end of
the "file", the ids whose checksums hold) and records each call, so a test
can say which window was read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from engine import syncpoints
from engine.bufferpool import MIN_FRAMES, PREWARM_WINDOW, READ_AHEAD, BufferPool
from engine.codec import PAGE_SIZE, Node, encode_node
from engine.errors import BufferPoolFullError, StorageIOError
from models import ModelPageStore

WAIT = 5.0  # a call that must not block gets this long


def image(page_id: int) -> bytes:
    return (b"%08d|" % page_id) * (PAGE_SIZE // 9) + bytes(PAGE_SIZE % 9)


class WindowStore(ModelPageStore):
    """Pages 1..size-1 written; `read_ahead` like the pager's, recording
    (first, count) of each call. `bad`: ids it reads but does not vouch for
    (a checksum failed); `gate`: an event each call waits on (after setting
    `entered`); `fail`: an exception each call raises."""

    def __init__(self, size: int) -> None:
        super().__init__(grow=True)
        self.size = size
        for pid in range(1, size):
            self.write(pid, image(pid))
        self.reads: list[int] = []
        self.windows: list[tuple[int, int]] = []
        self.buffers: list[int] = []  # len(buf) of each read_ahead call
        self.bad: set[int] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: BaseException | None = None

    def read_page(self, page_id: int, buf: memoryview) -> None:
        self.reads.append(page_id)
        super().read_page(page_id, buf)

    def read_ahead(self, first: int, count: int, buf: memoryview) -> list[int]:
        self.windows.append((first, count))
        self.buffers.append(len(buf))
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(WAIT), "WindowStore: never released"
        if self.fail is not None:
            raise self.fail
        count = min(count, self.size - first)
        out = []
        for i in range(max(count, 0)):
            buf[i * PAGE_SIZE : (i + 1) * PAGE_SIZE] = self.read(first + i)
            if first + i not in self.bad:
                out.append(first + i)
        return out


def cached_ids(pool: BufferPool) -> list[int]:
    return sorted(pool.page_ids())


def pins(pool: BufferPool) -> int:
    return sum(f.pin for f in pool.frames)


def bytes_of(pool: BufferPool, page_id: int) -> bytes:
    with pool.read(page_id) as page:
        return bytes(page)


# -- counters -------------------------------------------------------------------


def test_stats_are_exact_from_a_fresh_pool_on():
    store = ModelPageStore(grow=True)
    pool = BufferPool(store, 20)  # no read_ahead: nothing is prefetched
    try:
        assert pool.stats() == {
            "pool_pages": 20, "pool_bytes": 0, "pool_cap_bytes": 20 * PAGE_SIZE,
            "pool_hits": 0, "pool_misses": 0, "pool_hit_rate": 0.0,
            "pool_prefetched": 0, "evictions": 0,
        }
        for _ in range(4):
            pool.unpin(pool.fetch(3))
        stats = pool.stats()
        assert (stats["pool_hits"], stats["pool_misses"], stats["pool_hit_rate"]) == (3, 1, 0.75)
        assert stats["pool_bytes"] == PAGE_SIZE, "one frame made"
    finally:
        pool.close()


# -- the read-ahead window --------------------------------------------------------


def test_a_miss_reads_the_aligned_window_around_it_once():
    store = WindowStore(100)
    pool = BufferPool(store, 100)
    try:
        pool.unpin(pool.fetch(40))
        assert store.reads == [40] and store.windows == [(32, READ_AHEAD)]
        assert cached_ids(pool) == list(range(32, 64))
        assert pool.prefetched == 31 and pool.misses == 1
        assert len(pool.frames) == 32, "frames made for the window's pages only"
        assert all(bytes_of(pool, pid) == image(pid) for pid in range(32, 64))
        assert pool.misses == 1 and store.reads == [40], "the window's pages are hits"
        # page 0 is the pager's: the first window starts at 1
        pool.unpin(pool.fetch(5))
        assert store.windows[1:] == [(1, READ_AHEAD - 1)]
        assert cached_ids(pool) == list(range(1, 64)) and pool.prefetched == 31 + 30
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


@pytest.mark.parametrize("n_frames", [2 * READ_AHEAD + 1, 2 * READ_AHEAD])
def test_read_ahead_needs_twice_a_window_of_frames_left_after_the_miss(n_frames):
    store = WindowStore(100)
    pool = BufferPool(store, n_frames)
    try:
        pool.unpin(pool.fetch(40))
        if n_frames == 2 * READ_AHEAD + 1:  # 64 frames left: read ahead
            assert store.windows == [(32, READ_AHEAD)] and pool.prefetched == 31
        else:  # 63 left: not
            assert store.windows == [] and cached_ids(pool) == [40] and pool.prefetched == 0
    finally:
        pool.close()


def test_pages_the_window_does_not_vouch_for_are_left_out():
    store = WindowStore(100)
    store.bad = {33, 50}
    pool = BufferPool(store, 100)
    try:
        pool.unpin(pool.fetch(40))
        assert cached_ids(pool) == [p for p in range(32, 64) if p not in (33, 50)]
        assert pool.prefetched == 29 and len(pool._free) == 2
        assert bytes_of(pool, 33) == image(33) and store.reads == [40, 33]
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


def test_a_window_past_the_end_of_the_file_keeps_what_it_read():
    store = WindowStore(40)  # pages 1..39
    pool = BufferPool(store, 100)
    try:
        pool.unpin(pool.fetch(35))
        assert store.windows == [(32, READ_AHEAD)]
        assert cached_ids(pool) == list(range(32, 40))
        assert len(pool._free) == 24, "the frames taken for pages past the end come back"
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


def _leaves(*pids: int) -> ModelPageStore:
    """A store holding one single-key leaf (b"k<pid>") at each page id."""
    store = ModelPageStore(grow=True)
    for pid in pids:
        page = bytearray(PAGE_SIZE)
        encode_node(Node(True, [b"k%d" % pid], [b"v"]), page)
        store.write(pid, page)
    return store


def test_a_leaf_searched_once_is_the_next_victim():
    store = _leaves(1, 2, 3, 4)
    pool = BufferPool(store, 2)
    try:
        pool.node(1)
        assert pool.peek(1) is not None  # page 1 referenced since the replacer last looked
        pool.node(2)  # the pool is full
        assert pool.search_leaf(3, lambda page, key: key, b"k3") == b"k3"  # evicts 2
        assert sorted(pool.page_ids()) == [1, 3]
        pool.node(4)  # the searched leaf goes first, whatever its reference bit
        assert sorted(pool.page_ids()) == [1, 4]
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


class FailingStore(ModelPageStore):
    """Reads of the pages in `bad` raise, as a failing disk's would."""

    def __init__(self) -> None:
        super().__init__(grow=True)
        self.bad: set[int] = set()

    def read_page(self, page_id: int, buf: memoryview) -> None:
        if page_id in self.bad:
            raise StorageIOError(5, f"injected read error on page {page_id}")
        super().read_page(page_id, buf)


def test_the_frame_of_a_failed_read_is_reused_like_any_other():
    store = FailingStore()
    store.bad = {3}
    pool = BufferPool(store, 1)
    try:
        with pytest.raises(StorageIOError):
            pool.fetch(3)
        pool.unpin(pool.new_page(5))  # takes the frame the failed read gave back
        done = threading.Event()

        def fetch_again():
            pool.unpin(pool.fetch(5))
            done.set()

        threading.Thread(target=fetch_again, daemon=True).start()
        assert done.wait(WAIT), "a hit on the reused frame waited for a load that never ends"
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


def test_a_store_without_read_ahead_is_never_asked_for_one():
    pool = BufferPool(ModelPageStore(grow=True), 4 * READ_AHEAD)  # room for a window
    try:
        pool.unpin(pool.fetch(40))
        assert pool.page_ids() == [40] and pool.prefetched == 0
    finally:
        pool.close()


def test_the_last_frame_made_is_searched_like_any_other():
    store = _leaves(1, 2)
    pool = BufferPool(store, 2)
    try:
        pool.node(1)
        # page 2 takes the pool's last frame, never used before: the pool is full
        assert pool.search_leaf(2, lambda page, key: key, b"k2") == b"k2"
        assert pool.peek(2) is None, "searched, not decoded"
    finally:
        pool.close()


def test_a_frame_pinned_through_a_scan_is_not_spared_after():
    pool = BufferPool(ModelPageStore(grow=True), 3)
    try:
        held = pool.fetch(1)
        for pid in (2, 3, 4):  # 4 evicts 2: the held frame is passed over
            pool.unpin(pool.fetch(pid))
        assert sorted(pool.page_ids()) == [1, 3, 4]
        pool.unpin(held)
        pool.unpin(pool.fetch(5))  # page 1 is the oldest and was never hit since: it goes
        assert sorted(pool.page_ids()) == [3, 4, 5]
    finally:
        pool.close()


def test_a_pool_of_pinned_frames_says_how_many():
    pool = BufferPool(ModelPageStore(grow=True), 2)
    held = [pool.fetch(1), pool.fetch(2)]
    try:
        with pytest.raises(BufferPoolFullError, match="^all 2 frames are pinned$"):
            pool.fetch(3)
    finally:
        for frame in held:
            pool.unpin(frame)
        pool.close()


def test_mark_clean_forgets_only_the_pages_named():
    store = ModelPageStore(grow=True)
    pool = BufferPool(store, 8)
    try:
        for pid in (1, 2, 3):
            with pool.write(pid, new=True) as page:
                page[:] = image(pid)
        pool.mark_clean([1, 3])
        assert [pid for pid, _ in pool.dirty_pages()] == [2]
        assert pool.flush() == 1 and store.read(2) == image(2) and store.read(1) == bytes(PAGE_SIZE)
    finally:
        pool.close()


def test_a_new_page_is_never_a_stale_node():
    store = ModelPageStore(grow=True)
    store.write(5, image(5))
    pool = BufferPool(store, 4)
    try:
        with pool.write(5, new=True) as page:  # not read: a freshly allocated page
            encode_node(Node(True, [b"k"], [b"v"]), page)
        assert pool.node(5).keys == [b"k"]
    finally:
        pool.close()


@pytest.mark.parametrize("full", [False, True])
def test_an_eviction_is_announced_at_its_sync_point(full):
    store = ModelPageStore(grow=True)
    pool = BufferPool(store, 2)
    seen: list[str] = []
    try:
        if full:
            pool.unpin(pool.fetch(1))
            pool.unpin(pool.fetch(2))
        syncpoints.install(seen.append)
        try:
            pool.unpin(pool.new_page(7))
            pool.unpin(pool.fetch(8))
            pool.unpin(pool.fetch(8))  # a hit reaches no sync point
        finally:
            syncpoints.uninstall()
        if full:
            assert seen == ["bufferpool.evict", "bufferpool.fetch.miss", "bufferpool.evict",
                            "bufferpool.fetch.install"]
        else:
            assert seen == ["bufferpool.fetch.miss", "bufferpool.fetch.install"]
    finally:
        pool.close()


_MAP = """
import resource, sys
from engine.bufferpool import BufferPool
from models import ModelPageStore
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
store = ModelPageStore(grow=True)
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), resource.RLIM_INFINITY))
try:
    print(BufferPool(store, 1 << 20).n_frames)
except (OSError, MemoryError):  # the mapping refused, or Python's own allocation after it
    print("refused")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status")
@pytest.mark.parametrize("room", [16 << 20, 16 << 10])
def test_a_cap_that_cannot_be_mapped_is_halved_down_to_the_minimum(room):
    """An address space `room` bytes larger than the process: the 4 GiB cap
    is halved until it maps (a power of two of frames), and a space too small
    for the minimum pool refuses at once instead of halving forever."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _MAP, str(room)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    if room < MIN_FRAMES * PAGE_SIZE:
        assert out.stdout.split() == ["refused"]
    else:
        n = int(out.stdout)
        assert MIN_FRAMES <= n < (1 << 20) and n & (n - 1) == 0, n


def test_bug_asserts_name_their_function():
    with pytest.raises(AssertionError, match="^BufferPool: need at least one frame$"):
        BufferPool(ModelPageStore(grow=True), 0)
    pool = BufferPool(ModelPageStore(grow=True), 4)
    try:
        frame = pool.fetch(1)
        with pytest.raises(AssertionError, match="^discard: page is pinned$"):
            pool.discard(1)
        pool.unpin(frame)
        with pytest.raises(AssertionError, match="^unpin: frame is not pinned$"):
            pool.unpin(frame)
        with pytest.raises(AssertionError, match="^unpin: frame is not pinned$"):
            pool._unpin_cold(frame)  # search_leaf's unpin of a leaf read once
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


def test_check_invariants_names_each_broken_rule_exactly():
    pool = BufferPool(ModelPageStore(grow=True), 4)
    try:
        for pid in (1, 2, 3):
            pool.unpin(pool.fetch(pid))
        pool.discard(3)  # frame 2 back on the free list
        f0, f1, f2 = pool.frames
        assert pool.check_invariants(expect_unpinned=True) == []
        # break one rule at a time on this private pool, by hand
        pool._table[2] = f0
        assert pool.check_invariants() == [
            "page table: page 2 -> frame 0 holding 1",
            "page table: frame 0 holds pages 1 and 2",
            "frame 1 is neither free, cached nor reserved",
            *pool._replacer.check_invariants({0}),
        ]
        pool._table[2] = f1
        pool._free.append(f2)
        assert pool.check_invariants() == ["free list holds a frame twice"]
        pool._free.pop()
        for field, value in (("pin", 1), ("page_id", 9)):
            setattr(f2, field, value)
            assert pool.check_invariants() == ["free frame 2 is in use"]
            setattr(f2, field, 0 if field == "pin" else None)
        pool.frames[0], pool.frames[1] = f1, f0
        assert pool.check_invariants() == ["frame count mismatch"]
        pool.frames[0], pool.frames[1] = f0, f1
        pool.n_frames = 2
        assert pool.check_invariants() == ["frame count mismatch"]
        pool.n_frames = 4
        f1.pin = -1
        assert pool.check_invariants() == ["frame 1 pin -1 < 0"]
        f1.pin = 0
        held = pool.fetch(1)
        assert pool.check_invariants(expect_unpinned=True) == ["frame 0 (page 1) still pinned (1)"]
        assert pool.check_invariants() == []
        pool.unpin(held)
        for field, value in (("writer", True), ("readers", 1)):
            setattr(f0, field, value)
            assert pool.check_invariants() == ["frame 0 latched while unpinned"]
            setattr(f0, field, type(value)())
        pool._free.pop()
        assert pool.check_invariants() == ["frame 2 is neither free, cached nor reserved"]
        pool._free.append(f2)
        assert pool.check_invariants(expect_unpinned=True) == []
    finally:
        pool.close()


# -- prewarm ------------------------------------------------------------------------


def test_prewarm_reads_every_page_a_window_at_a_time():
    pages = PREWARM_WINDOW + 11
    store = WindowStore(pages)
    pool = BufferPool(store, 2 * (pages - 1))  # exactly half the pool
    try:
        assert pool.prewarm(pages) == pages - 1
        assert store.windows == [(1, PREWARM_WINDOW), (1 + PREWARM_WINDOW, pages - 1 - PREWARM_WINDOW)]
        assert cached_ids(pool) == list(range(1, pages)) and store.reads == []
        assert pool.misses == 0 and pins(pool) == 0
        assert pool.prewarm(pages) == 0, "nothing left to read"
    finally:
        pool.close()


def test_prewarm_skips_a_file_over_half_the_pool_or_a_small_pool():
    store = WindowStore(300)
    pool = BufferPool(store, 2 * 299 - 1)
    try:
        assert pool.prewarm(300) == 0 and store.windows == [], "over half the pool"
    finally:
        pool.close()
    pool = BufferPool(store, 40)
    try:
        assert pool.prewarm(20) == 0, "under twice a window of frames: never read ahead"
        assert store.windows == [] and cached_ids(pool) == [] and len(pool.frames) == 0
    finally:
        pool.close()
    pool = BufferPool(ModelPageStore(grow=True), 1000)  # a store without read_ahead
    try:
        assert pool.prewarm(20) == 0 and pool.read_uncached(1, 10) == {}
    finally:
        pool.close()


def test_a_read_ahead_that_raises_gives_its_frames_back():
    store = WindowStore(100)
    store.fail = ValueError("read_ahead broke")
    pool = BufferPool(store, 200)
    try:
        with pytest.raises(ValueError, match="read_ahead broke"):
            pool.prewarm(60)
        assert cached_ids(pool) == [] and pool.prefetched == 0
        assert len(pool._free) == len(pool.frames) == 59
        assert pool.check_invariants(expect_unpinned=True) == []
        store.fail = None
        assert pool.prewarm(60) == 59
    finally:
        pool.close()


def test_a_read_ahead_that_raises_after_a_miss_leaves_the_missed_page_unpinned():
    # The miss itself was read; the guess around it failed: the caller gets
    # the error, and the frame it never received holds no pin.
    store = WindowStore(100)
    store.fail = ValueError("read_ahead broke")
    pool = BufferPool(store, 200)
    try:
        with pytest.raises(ValueError, match="read_ahead broke"):
            pool.fetch(5)
        assert pins(pool) == 0
        assert pool.check_invariants(expect_unpinned=True) == []
        store.fail = None
        frame = pool.fetch(5)  # still cached, or read again: either way whole
        assert bytes(frame.buf) == image(5)
        pool.unpin(frame)
    finally:
        pool.close()


# -- read_uncached ----------------------------------------------------------------------


def test_read_uncached_reads_only_what_the_pool_does_not_hold():
    store = WindowStore(50)
    store.bad = {12}
    pool = BufferPool(store, 20)  # too small to read ahead
    try:
        pool.unpin(pool.fetch(11))
        pool.unpin(pool.fetch(14))
        got = pool.read_uncached(10, 6)
        assert store.windows == [(10, 6)] and store.buffers == [6 * PAGE_SIZE], "a buffer for the run only"
        assert sorted(got) == [10, 13, 15] and all(got[p] == image(p) for p in got)
        assert cached_ids(pool) == [11, 14], "nothing enters the pool"
        # the read ends at the last page wanted
        pool.unpin(pool.fetch(15))
        got = pool.read_uncached(10, 6)
        assert store.windows[1:] == [(10, 4)] and store.buffers[1:] == [4 * PAGE_SIZE]
        assert sorted(got) == [10, 13]
        # every page cached: nothing is read
        assert pool.read_uncached(11, 1) == {} and len(store.windows) == 2
    finally:
        pool.close()


# -- a read-ahead in flight -----------------------------------------------------------------


def test_a_read_ahead_in_flight_holds_its_pages_and_is_not_waited_for():
    store = WindowStore(100)
    store.gate = threading.Event()
    pool = BufferPool(store, 100)
    got: dict[str, object] = {}

    def run(name, fn):
        t = threading.Thread(target=lambda: got.__setitem__(name, fn()), daemon=True)
        t.start()
        return t

    first = run("a", lambda: pool.fetch(40))
    try:
        assert store.entered.wait(WAIT)
        window = [p for p in range(32, 64) if p != 40]
        # the window's pages wait in the table, each pinned once, and the
        # missed page is pinned for its caller
        assert sorted(pool.pinned()) == list(range(32, 64))
        assert [pool.cached(p).pin for p in window] == [1] * len(window)
        assert pool.check_invariants() == []
        pool.unpin(pool.fetch(40))  # installed before its read-ahead: a hit
        # a fetch of a page being read ahead waits for that read
        waiter = run("b", lambda: bytes_of(pool, 33))
        waiter.join(0.3)
        assert waiter.is_alive(), "a fetch took a page the read-ahead had not filled"
        # a miss elsewhere skips its read-ahead instead of waiting for this one
        other = run("c", lambda: pool.fetch(80))
        other.join(WAIT)
        assert not other.is_alive(), "a second read-ahead waited for the first"
        assert store.windows == [(32, READ_AHEAD)] and store.reads == [40, 80]
    finally:
        store.gate.set()
        first.join(WAIT)
    waiter.join(WAIT)
    assert not first.is_alive() and not waiter.is_alive()
    assert got["b"] == image(33) and 33 not in store.reads
    assert (pool.hits, pool.misses) == (2, 2), "a fetch that waited for a load is a hit"
    pool.unpin(got["a"])
    pool.unpin(got["c"])
    assert pool.check_invariants(expect_unpinned=True) == []
    pool.close()

"""The buffer pool: fixed frames over one aligned mmap, a page table, pins,
dirty flags, an LRU replacer, per-frame read/write latches and guards.

Rules (checked by `check_invariants`):

1. The page table is injective: a page is in at most one frame, and a frame
   in the table says so in `frame.page_id`.
2. A frame is either free (`page_id is None`, on the free list, pin 0) or in
   the table, never both.
3. Pins never go negative; a frame with pin > 0 is never evicted.
4. A frame whose bytes (or decoded node) differ from the backing store is
   dirty; eviction writes a dirty frame back before reuse.
5. If that write-back fails the victim stays in its frame, still dirty, the
   table is unchanged and no mutex is held (the seed's eviction bug).

Frame states and the function making each transition::

    FREE --fetch/new_page--> PINNED --unpin--> CACHED --evict--> FREE
                               ^                  |
                               +-----fetch--------+
    (discard: CACHED/PINNED-by-caller -> FREE without write-back)

Decoded nodes: `frame.obj` caches the decoded page and `frame.obj_dirty`
says it is newer than the bytes (encoded at write-back, `Frame.sync_bytes`).
Only this module and engine/nodecache.py (`NodeCache`, the decoded-node half
of `BufferPool`: `peek`, `node`, `search_leaf`, `node_changed`, `pin_node`,
`add_node`, `unpin_nodes`, `restore_node`) touch a `Frame`'s fields; the rest
of the engine works with page ids and nodes, or with page bytes (overflow
pages) through the guards `read` and `write`, and checkpoints and checks use
`dirty_pages`, `mark_clean` and `corrupt_clean_nodes`.

Read-ahead: while at least `2 * READ_AHEAD` frames are free, a miss also
reads the aligned window of `READ_AHEAD` pages around it with one call and
keeps the pages whose checksums hold as clean cached frames (loading
placeholders first, like any miss). A cold pool then warms a window per disk
access instead of a page; a full pool never evicts for a guess. Opening a
database that takes at most half the pool reads all of it this way
(`prewarm`), so its first operations find their pages cached.

Sizing: frames are carved from one reservation of `n_frames` pages
(`reserved_buffer`: address space, backed by memory only where a frame is
used) and made on first use, so a pool holds no more frames than the pages
it has met. A miss takes a free frame, else makes a new one, and evicts only
when all `n_frames` exist: the pool grows with the working set up to its cap
and a small database keeps a small pool. The cap comes from the open options
(engine/poolsize.py). Decoded nodes (Python objects) come on top of the
frames' bytes. A cap that cannot be mapped (a strict commit limit) is halved
until it can.

Concurrency: one mutex guards the table, pins and replacer. A miss reads
outside the mutex into a reserved frame that waits in the table as a loading
placeholder; a second miss on the page checks the table again under the
mutex (`_join_load`, the double-checked fetch) and waits for that read, so
two threads missing on one page never create two frames.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol

from engine import syncpoints
from engine.codec import PAGE_SIZE, encode_node
from engine.disk import aligned_buffer, reserved_buffer
from engine.errors import BufferPoolFullError
from engine.latch import wait
from engine.nodecache import NodeCache
from engine.poolsize import (
    DEFAULT_POOL_MAX,
    DEFAULT_POOL_MIN,
    MIN_FRAMES,
    default_pool_bytes,
    parse_pool_size,
    pool_frames,
)
from engine.replacer import LRUReplacer
from engine.typedefs import PoolStats

__all__ = ["BufferPool", "Frame", "PageStore", "PREWARM_WINDOW", "READ_AHEAD", "DEFAULT_POOL_MIN",
           "DEFAULT_POOL_MAX", "MIN_FRAMES", "default_pool_bytes", "parse_pool_size", "pool_frames"]

READ_AHEAD = 32  # pages per read-ahead window (128 KiB)
PREWARM_WINDOW = 256  # pages per read when the pool is warmed at open (1 MiB)
PREWARM_MAX = 65536  # pages: a larger database warms as it is used (open stays well under a second)
def hit_rate(hits: int, misses: int) -> float:
    """Share of page requests the pool served from memory (0.0 before any)."""
    total = hits + misses
    return hits / total if total else 0.0


class PageStore(Protocol):
    """Where the pool's pages live: the pager, or the log-spilling store."""

    def read_page(self, page_id: int, buf: memoryview) -> None: ...
    def write_page(self, page_id: int, buf: memoryview) -> None: ...
    # optional: read_ahead(first, count, buf) -> ids of the pages read intact


class Frame:
    __slots__ = ("frame_id", "page_id", "buf", "pin", "dirty", "obj", "obj_dirty", "readers", "writer", "ref",
                 "loading", "searched")

    def __init__(self, frame_id: int, buf: memoryview) -> None:
        self.frame_id = frame_id
        self.page_id: int | None = None
        self.buf = buf
        self.pin = 0
        self.dirty = False
        self.obj = None  # decoded node cache
        self.obj_dirty = False  # obj newer than buf
        self.readers = 0
        self.writer = False
        self.ref = False  # hit on the lock-free read path since the replacer last looked
        self.loading = False  # in the table as a placeholder while its page is read
        self.searched = False  # a get searched the undecoded page once (see `btree.get`)

    def sync_bytes(self) -> None:
        """Bring `buf` up to date with the decoded node."""
        if self.obj_dirty:
            encode_node(self.obj, self.buf)
            self.obj_dirty = False


class BufferPool(NodeCache):
    def __init__(self, store: PageStore, n_frames: int) -> None:
        assert n_frames >= 1, "BufferPool: need at least one frame"
        self.store = store
        while True:
            try:
                self._mem = reserved_buffer(n_frames * PAGE_SIZE)
                break
            except OSError:  # a strict commit limit (vm.overcommit_memory=2) or a small address space
                if n_frames <= MIN_FRAMES:
                    raise
                n_frames = max(MIN_FRAMES, n_frames // 2)  # the cap shrinks to what can be mapped
        self.n_frames = n_frames
        self._view = memoryview(self._mem)
        self.frames: list[Frame] = []  # made on first use, so a large pool opens at once
        self._free: list[Frame] = []  # frames given back (made ones not holding a page)
        self._table: dict[int, Frame] = {}
        self._replacer = LRUReplacer()
        self._mutex = threading.Lock()
        self._latch_cond = threading.Condition(self._mutex)
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.prefetched = 0
        self._read_ahead = getattr(store, "read_ahead", None)
        self._ra_lock = threading.Lock()
        self._ra_mem = None

    def stats(self) -> PoolStats:
        """Size (frames made, in bytes), cap, hit rate and counters."""
        return {
            "pool_pages": self.n_frames,
            "pool_bytes": len(self.frames) * PAGE_SIZE,
            "pool_cap_bytes": self.n_frames * PAGE_SIZE,
            "pool_hits": self.hits,
            "pool_misses": self.misses,
            "pool_hit_rate": hit_rate(self.hits, self.misses),
            "pool_prefetched": self.prefetched,
            "evictions": self.evictions,
        }

    # -- pin / unpin --------------------------------------------------------

    def full(self) -> bool:
        """Every frame holds a page: the next miss evicts."""
        return not self._free and len(self.frames) == self.n_frames

    def fetch(self, page_id: int) -> Frame:
        """Pin the frame holding `page_id`, reading it on a miss."""
        with self._mutex:
            frame = self._table.get(page_id)
            if frame is not None and not frame.loading:
                frame.pin += 1
                self._replacer.touch(frame.frame_id)
                self.hits += 1
                return frame
        return self._fetch_miss(page_id)

    def _fetch_miss(self, page_id: int) -> Frame:
        """Read `page_id` into a reserved frame outside the mutex. The frame
        enters the table at once as a loading placeholder, so a second thread
        missing on the same page waits for this read (`_join_load`) instead of
        reading a second copy, and a write-back of a newer copy cannot race
        with the install."""
        syncpoints.reach("bufferpool.fetch.miss")
        if not self._spare():
            syncpoints.reach("bufferpool.evict")  # outside the mutex, so a scheduler may park here
        with self._mutex:
            frame = self._join_load(page_id)
            if frame is not None:
                return frame
            frame = self._reserve()
            self.misses += 1
            frame.page_id = page_id
            frame.loading = True
            self._table[page_id] = frame
            self._replacer.touch(frame.frame_id)
        try:
            self.store.read_page(page_id, frame.buf)
        except BaseException:
            with self._mutex:
                del self._table[page_id]
                self._replacer.remove(frame.frame_id)
                frame.loading = False
                self._latch_cond.notify_all()
                frame.page_id = None
                frame.pin = 0
                self._free.append(frame)
            raise
        syncpoints.reach("bufferpool.fetch.install")
        with self._mutex:
            frame.loading = False
            self._latch_cond.notify_all()
        if self._read_ahead is not None and self._spare() >= 2 * READ_AHEAD:
            try:
                self._read_around(page_id)
            except BaseException:  # the caller never gets the frame: its pin goes too
                self.unpin(frame)
                raise
        return frame

    def _join_load(self, page_id: int) -> Frame | None:
        """The double check of a miss (caller holds the mutex): once no read
        of `page_id` is in progress, its frame pinned if another thread
        brought it in meanwhile; else None, and the caller reads it. Without
        this check two threads missing on one page would each install a
        frame for it (the seed's race)."""
        frame = self._table.get(page_id)
        while frame is not None and frame.loading:
            self._wait()
            frame = self._table.get(page_id)
        if frame is not None:
            frame.pin += 1
            self._replacer.touch(frame.frame_id)
            self.hits += 1
        return frame

    def _read_around(self, page_id: int) -> None:
        """Read the window around a miss into free frames (see the module doc)."""
        if not self._ra_lock.acquire(blocking=False):
            return  # another thread is reading ahead: skip, it is only a guess
        try:
            first = max(1, page_id - page_id % READ_AHEAD)  # page 0 is the pager's
            if self._ra_mem is None:
                self._ra_mem = aligned_buffer(READ_AHEAD * PAGE_SIZE)
            self._read_window(first, page_id - page_id % READ_AHEAD + READ_AHEAD, self._ra_mem)
        finally:
            self._ra_lock.release()

    def prewarm(self, page_count: int) -> int:
        """Read pages 1..page_count-1 into free frames, a megabyte per call,
        when they take at most half the pool (so read-ahead and growth keep
        their room): a database that fits its pool then never waits for a
        read after opening. Best effort, like read-ahead; returns pages read."""
        if self._read_ahead is None or page_count - 1 > min(self.n_frames // 2, PREWARM_MAX):
            return 0
        before = self.prefetched
        mem = aligned_buffer(PREWARM_WINDOW * PAGE_SIZE)
        with self._ra_lock:
            for first in range(1, page_count, PREWARM_WINDOW):
                self._read_window(first, min(first + PREWARM_WINDOW, page_count), mem)
        return self.prefetched - before

    def read_uncached(self, first: int, count: int) -> dict[int, bytes]:
        """Pages of [first, first+count) read from the store with one call,
        bypassing the pool: those not cached here (a cached copy may be newer
        than the store's), not superseded in the log, whose checksums hold.
        For long overflow chains, so reading a large value neither costs a
        call per page nor evicts the pool's working set. Best effort: a page
        left out is fetched through the pool, which reports its error."""
        if self._read_ahead is None:
            return {}
        with self._mutex:
            table = self._table
            wanted = [pid for pid in range(first, first + count) if pid not in table]
        if not wanted:
            return {}
        end = wanted[-1] + 1
        mem = aligned_buffer((end - first) * PAGE_SIZE)
        view = memoryview(mem)
        try:
            good = set(self._read_ahead(first, end - first, view))
            out = {}
            for pid in wanted:
                if pid in good:
                    at = (pid - first) * PAGE_SIZE
                    out[pid] = view[at : at + PAGE_SIZE].tobytes()
            return out
        finally:
            view.release()
            mem.close()

    def _read_window(self, first: int, end: int, mem) -> None:
        """Read pages [first, end) that are not cached into free frames with
        one call (caller holds `_ra_lock`); a page whose read or checksum
        fails is left out, for a real read to report."""
        taken: dict[int, Frame] = {}
        with self._mutex:
            if self._spare() < 2 * READ_AHEAD:
                return
            table = self._table
            for pid in range(first, end):
                if pid not in table:
                    frame = self._pop_free()
                    frame.pin = 1
                    frame.page_id = pid
                    frame.loading = True
                    table[pid] = frame
                    self._replacer.touch(frame.frame_id)
                    taken[pid] = frame
        if not taken:
            return
        view = memoryview(mem)
        good: set[int] = set()
        try:
            good = set(self._read_ahead(first, end - first, view)) & taken.keys()
            for pid in good:
                at = (pid - first) * PAGE_SIZE
                taken[pid].buf[:] = view[at : at + PAGE_SIZE]
        finally:
            view.release()
            with self._mutex:
                for pid, frame in taken.items():
                    frame.loading = False
                    frame.pin = 0
                    if pid not in good:
                        del self._table[pid]
                        self._replacer.remove(frame.frame_id)
                        frame.page_id = None
                        self._free.append(frame)
                self.prefetched += len(good)
                self._latch_cond.notify_all()

    def _wait(self) -> None:
        """Wait for a latch or a load to finish (caller holds the mutex)."""
        wait(self._latch_cond, self._mutex)

    def new_page(self, page_id: int) -> Frame:
        """Pin a frame for a freshly allocated page without reading it.
        The caller fills it; the frame starts dirty with zeroed bytes."""
        if not self._spare():
            syncpoints.reach("bufferpool.evict")
        with self._mutex:
            frame = self._table.get(page_id)
            if frame is None:
                frame = self._reserve()
                frame.page_id = page_id
                self._table[page_id] = frame
            else:
                frame.pin += 1
            self._replacer.touch(frame.frame_id)
            frame.buf[:] = bytes(PAGE_SIZE)
            frame.obj = None
            frame.obj_dirty = False
            frame.dirty = True
            return frame

    def unpin(self, frame: Frame, dirty: bool = False) -> None:
        with self._mutex:
            assert frame.pin > 0, "unpin: frame is not pinned"
            frame.pin -= 1
            if dirty:
                frame.dirty = True

    def _unpin_cold(self, frame: Frame) -> None:
        """`unpin` a frame read for one use: it goes to the old end of the
        replacer, so pages met once (a leaf read for a single get) are
        evicted before the internal nodes every get walks through."""
        with self._mutex:
            assert frame.pin > 0, "unpin: frame is not pinned"
            frame.pin -= 1
            frame.ref = False
            self._replacer.demote(frame.frame_id)

    def _reserve(self) -> Frame:
        """A pinned frame outside the table (caller holds the mutex)."""
        frame = self._pop_free()
        if frame is not None:
            frame.pin = 1
            return frame
        frames = self.frames
        fid = self._replacer.victim(lambda i: frames[i].pin > 0, self._take_ref)
        if fid is None:
            raise BufferPoolFullError(f"all {self.n_frames} frames are pinned")
        victim = self.frames[fid]
        if victim.dirty:
            victim.sync_bytes()
            self.store.write_page(victim.page_id, victim.buf)  # raises: victim untouched, mutex released by `with`
            victim.dirty = False
        del self._table[victim.page_id]
        self._replacer.remove(fid)
        self.evictions += 1
        victim.page_id = None
        victim.obj = None
        victim.obj_dirty = victim.searched = False
        victim.pin = 1
        return victim

    def _spare(self) -> int:
        """Frames holding no page: given back, or not made yet."""
        return len(self._free) + self.n_frames - len(self.frames)

    def _pop_free(self) -> Frame | None:
        if self._free:
            return self._free.pop()
        i = len(self.frames)
        if i == self.n_frames:
            return None
        frame = Frame(i, self._view[i * PAGE_SIZE : (i + 1) * PAGE_SIZE])
        self.frames.append(frame)
        return frame

    def _take_ref(self, frame_id: int) -> bool:
        frame = self.frames[frame_id]
        ref, frame.ref = frame.ref, False
        return ref

    def discard(self, page_id: int) -> None:
        """Forget a freed page without writing it back (pin must be 0)."""
        with self._mutex:
            frame = self._table.get(page_id)
            if frame is None:
                return
            assert frame.pin == 0, "discard: page is pinned"
            del self._table[page_id]
            self._replacer.remove(frame.frame_id)
            frame.page_id = None
            frame.obj = None
            frame.obj_dirty = frame.dirty = frame.searched = False
            self._free.append(frame)

    def cached(self, page_id: int) -> Frame | None:
        """The frame holding `page_id`, if any, without pinning (for checks)."""
        return self._table.get(page_id)

    # -- guards -------------------------------------------------------------

    @contextmanager
    def read(self, page_id: int) -> Iterator[memoryview]:
        """Pin and share-latch `page_id`; its bytes, for reading. Unpinned
        on every exit path."""
        frame = self.fetch(page_id)
        try:
            self._latch(frame, write=False)
        except BaseException:
            self.unpin(frame)
            raise
        try:
            yield frame.buf
        finally:
            self._unlatch(frame, write=False, dirty=False)

    @contextmanager
    def write(self, page_id: int, new: bool = False) -> Iterator[memoryview]:
        """Pin and exclusively latch `page_id`; its bytes, to change (a `new`
        page is not read: its bytes start zeroed). The page is dirty on
        release, on every exit path."""
        frame = self.new_page(page_id) if new else self.fetch(page_id)
        try:
            self._latch(frame, write=True)
        except BaseException:
            self.unpin(frame)
            raise
        try:
            yield frame.buf
        finally:
            self._unlatch(frame, write=True, dirty=True)

    def _latch(self, frame: Frame, write: bool) -> None:
        with self._mutex:
            while frame.writer or (write and frame.readers):
                self._wait()
            if write:
                frame.writer = True
            else:
                frame.readers += 1

    def _unlatch(self, frame: Frame, write: bool, dirty: bool) -> None:
        with self._mutex:
            if write:
                frame.writer = False
            else:
                frame.readers -= 1
            frame.pin -= 1
            if dirty:
                frame.dirty = True
            self._latch_cond.notify_all()

    # -- write-back ---------------------------------------------------------

    def flush(self) -> int:
        """Write every dirty frame to the store; returns how many."""
        n = 0
        with self._mutex:
            for frame in self._table.values():
                if frame.dirty:
                    frame.sync_bytes()
                    self.store.write_page(frame.page_id, frame.buf)
                    frame.dirty = False
                    n += 1
        return n

    def dirty_pages(self) -> list[tuple[int, memoryview]]:
        """(page id, bytes) of every dirty page, its bytes brought up to date
        with its node: the images a checkpoint writes home. The bytes stay
        the pool's; they are current until the caller's latch is released."""
        with self._mutex:
            out = []
            for frame in self._table.values():
                if frame.dirty:
                    frame.sync_bytes()
                    out.append((frame.page_id, frame.buf))
            return out

    def mark_clean(self, page_ids: Iterable[int]) -> None:
        """The pages' current bytes reached the store (a checkpoint)."""
        with self._mutex:
            table = self._table
            for page_id in page_ids:
                table[page_id].dirty = False

    def pinned(self) -> list[int]:
        """Page ids whose frames are pinned now."""
        with self._mutex:
            return [pid for pid, f in self._table.items() if f.pin]

    def page_ids(self) -> list[int]:
        with self._mutex:
            return list(self._table)

    def close(self) -> None:
        try:
            for f in self.frames:
                f.buf.release()
            self._view.release()
            self._mem.close()
            if self._ra_mem is not None:
                self._ra_mem.close()
        except BufferError:  # a failed write's traceback may still hold a frame; GC frees it
            pass

    def check_invariants(self, expect_unpinned: bool = False) -> list[str]:
        """Problems with the pool's rules, one string each:
        page table injective and consistent with frame.page_id;
        free frames hold no page, are unpinned and not in the table;
        pins non-negative (and zero when `expect_unpinned`);
        replacer tracks exactly the frames in the table;
        latches released when unpinned.
        """
        out = []
        with self._mutex:
            seen: dict[int, int] = {}
            for pid, f in self._table.items():
                if f.page_id != pid:
                    out.append(f"page table: page {pid} -> frame {f.frame_id} holding {f.page_id}")
                if f.frame_id in seen:
                    out.append(f"page table: frame {f.frame_id} holds pages {seen[f.frame_id]} and {pid}")
                seen[f.frame_id] = pid
            free_ids = {f.frame_id for f in self._free}
            if len(free_ids) != len(self._free):
                out.append("free list holds a frame twice")
            for f in self._free:
                if f.page_id is not None or f.pin or f.frame_id in seen:
                    out.append(f"free frame {f.frame_id} is in use")
            if len(self.frames) > self.n_frames or any(f.frame_id != i for i, f in enumerate(self.frames)):
                out.append("frame count mismatch")
            for f in self.frames:
                if f.pin < 0:
                    out.append(f"frame {f.frame_id} pin {f.pin} < 0")
                if expect_unpinned and f.pin:
                    out.append(f"frame {f.frame_id} (page {f.page_id}) still pinned ({f.pin})")
                if f.pin == 0 and (f.writer or f.readers):
                    out.append(f"frame {f.frame_id} latched while unpinned")
                if f.frame_id not in seen and f.frame_id not in free_ids and not f.pin:
                    out.append(f"frame {f.frame_id} is neither free, cached nor reserved")
            out += self._replacer.check_invariants(set(seen))
        return out

"""The pager: page reads and writes on the data file, allocation and the
free list.

Each page is owned exactly once: by the metadata page (page 0), by a tree
(as a node or an overflow page), or by the free list (as a free page or a
free-list trunk page). `check()` proves it by counting.

Allocation reuses the lowest free page first (a heap), so files stay compact,
and grows the file in extents (1/8 of its size, at least 64 pages) so
appends do not extend the file one page at a time. The free list lives in
memory and is written to trunk pages at each checkpoint, so it is not limited
to what fits in one metadata page.
"""

from __future__ import annotations

import heapq

from engine.codec import FREELIST_CAPACITY, PAGE_SIZE, decode_freelist, encode_freelist, verify
from engine.disk import BlockFile, aligned_buffer
from engine.errors import CorruptionError, StorageIOError

__all__ = ["Pager"]

_MIN_EXTENT = 64  # pages added at least per file growth (256 KiB)
_RUN = 256  # consecutive pages joined into one write (1 MiB)


class Pager:
    def __init__(self, file: BlockFile, page_count: int) -> None:
        self.file = file
        self.page_count = page_count  # high-water mark: pages 0..page_count-1 exist
        self._free_heap: list[int] = []
        self._free_set: set[int] = set()
        self.reads = 0
        self.writes = 0

    # -- I/O ------------------------------------------------------------------

    def read(self, page_id: int, buf: memoryview) -> None:
        """Read `page_id` into `buf`, verifying its checksum. Nothing reads a
        free page (a new page is never read, a freed one is dropped from the
        pool), so a link to one is a crafted or damaged file: its stale
        bytes are not data."""
        if not 0 <= page_id < self.page_count:
            raise CorruptionError(f"page {page_id} is outside the file ({self.page_count} pages)")
        if page_id in self._free_set:
            raise CorruptionError(f"page {page_id} is free, yet something links to it")
        got = self.file.read_into(page_id * PAGE_SIZE, buf)
        self.reads += 1
        if got != PAGE_SIZE:
            raise CorruptionError(f"page {page_id}: short read ({got} bytes), file truncated?")
        if not verify(buf):
            raise CorruptionError(f"page {page_id}: checksum mismatch")

    def read_ahead(self, first: int, count: int, buf: memoryview) -> list[int]:
        """Read up to `count` pages from `first` into `buf` with one call, best
        effort: returns the ids whose checksums hold. Speculative, so a failed
        or short read returns what it can and raises nothing; a page that was
        wanted is read again (and its error raised) by `read`."""
        count = min(count, self.page_count - first)
        if count <= 0 or first < 0:
            return []
        try:
            got = self.file.read_into(first * PAGE_SIZE, buf[: count * PAGE_SIZE])
        except StorageIOError:
            return []
        self.reads += 1
        free = self._free_set  # never handed out: `read` reports a link to one
        return [first + i for i in range(got // PAGE_SIZE)
                if first + i not in free and verify(buf[i * PAGE_SIZE : (i + 1) * PAGE_SIZE])]

    def write(self, page_id: int, buf: memoryview | bytes) -> None:
        self.file.write(page_id * PAGE_SIZE, buf)
        self.writes += 1

    def write_pages(self, pages: list[tuple[int, memoryview | bytes]]) -> None:
        """Write many pages, each run of consecutive ids with one call (a
        checkpoint writes thousands of pages; one syscall each dominated it)."""
        pages = sorted(pages, key=lambda p: p[0])
        n = len(pages)
        if n < 2:
            for p in pages:
                self.write(*p)
            return
        mem = aligned_buffer(min(n, _RUN) * PAGE_SIZE)
        view = memoryview(mem)
        try:
            i = 0
            while i < n:
                j = i + 1
                while j < n and j - i < _RUN and pages[j][0] == pages[j - 1][0] + 1:
                    j += 1
                for k in range(i, j):
                    at = (k - i) * PAGE_SIZE
                    view[at : at + PAGE_SIZE] = pages[k][1]
                run = view[: (j - i) * PAGE_SIZE]
                try:
                    self.file.write(pages[i][0] * PAGE_SIZE, run)
                finally:
                    run.release()
                self.writes += j - i
                i = j
        finally:
            view.release()
            try:
                mem.close()
            except BufferError:  # a failed write's traceback may still hold a slice; GC frees it
                pass

    # -- allocation -------------------------------------------------------------

    def allocate(self) -> int:
        """A page id to use: the lowest free one, else a new one at the end
        (growing the file by an extent when needed; `StorageIOError` leaves
        everything as it was)."""
        if self._free_heap:
            pid = heapq.heappop(self._free_heap)
            self._free_set.discard(pid)
            return pid
        pid = self.page_count
        need = (pid + 1) * PAGE_SIZE
        if self.file.size() < need:
            extent = max(_MIN_EXTENT, self.page_count // 8) * PAGE_SIZE
            self.file.extend(need + extent - PAGE_SIZE)
        self.page_count = pid + 1
        return pid

    def reset(self, page_count: int) -> None:
        """Pages 0..page_count-1 all in use, none free (after a compaction
        rewrote the file)."""
        self.page_count = page_count
        self._free_heap = []
        self._free_set = set()

    def free(self, page_id: int) -> None:
        assert 0 < page_id < self.page_count, "free: page id out of range"
        assert page_id not in self._free_set, "free: page already free"
        heapq.heappush(self._free_heap, page_id)
        self._free_set.add(page_id)

    def free_pages(self) -> set[int]:
        return set(self._free_set)

    @property
    def free_count(self) -> int:
        return len(self._free_set)

    # -- the persistent free list -------------------------------------------------

    def load_freelist(self, head: int, expect: int) -> None:
        """Read the trunk chain from `head`; trunk pages are free pages too."""
        buf = memoryview(bytearray(PAGE_SIZE))
        seen: set[int] = set()
        pid = head
        while pid:
            if pid in seen or not 0 < pid < self.page_count:
                raise CorruptionError(f"free list: bad trunk page {pid}")
            seen.add(pid)
            self.read(pid, buf)
            ids, nxt = decode_freelist(buf, pid)
            seen.update(ids)
            pid = nxt
        if len(seen) != expect or any(not 0 < p < self.page_count for p in seen):
            raise CorruptionError(f"free list: {len(seen)} pages, metadata says {expect}")
        self._free_heap = sorted(seen)
        self._free_set = seen

    def freelist_trunks(self) -> list[int]:
        """The free pages that hold the free list (the next checkpoint's trunks):
        the smallest ids, one per FREELIST_CAPACITY + 1 free pages."""
        return _trunks_of(sorted(self._free_set))

    def freelist_images(self) -> tuple[int, list[tuple[int, bytes]]]:
        """Trunk pages describing the current free list: (head, [(page id, image)]).
        Trunks are chosen among the free pages themselves."""
        free = sorted(self._free_set)
        if not free:
            return 0, []
        trunks = _trunks_of(free)
        n_trunks = len(trunks)
        rest = free[n_trunks:]
        images = []
        for i, tpid in enumerate(trunks):
            ids = rest[i * FREELIST_CAPACITY : (i + 1) * FREELIST_CAPACITY]
            page = bytearray(PAGE_SIZE)
            encode_freelist(ids, trunks[i + 1] if i + 1 < n_trunks else 0, page)
            images.append((tpid, bytes(page)))
        return trunks[0], images

    def sync(self) -> None:
        self.file.sync()

    def check_invariants(self) -> list[str]:
        """Free ids are distinct, in range, and the heap and set agree."""
        out = []
        if set(self._free_heap) != self._free_set or len(self._free_heap) != len(self._free_set):
            out.append("pager: free heap and free set disagree")
        if any(not 0 < p < self.page_count for p in self._free_set):
            out.append("pager: free page out of range")
        try:
            if self.file.size() < self.page_count * PAGE_SIZE:
                out.append("pager: file shorter than page count")
        except StorageIOError as exc:
            out.append(f"pager: cannot stat file: {exc}")
        return out


def _trunks_of(free: list[int]) -> list[int]:
    """The trunks among sorted free page ids: the smallest, one per FREELIST_CAPACITY + 1."""
    return free[: -(-len(free) // (FREELIST_CAPACITY + 1))]

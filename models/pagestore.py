"""`ModelPageStore`: the pager as a dict of page id -> page image.

The reference for the buffer pool's state machine: whatever sequence of
fetches, writes, evictions and flushes the pool goes through, reading a page
through the pool must give what was last written to it here. Page ids come
from a counter and are never reused, so a stale id cannot alias a new page.

It is also the page store the pool's tests run the pool over: `read_page`
and `write_page` are the engine's `PageStore` protocol. With `grow=True` it
behaves like a file instead of an allocator: a page never written reads as
zeros, and writing a page allocates it and every id before it.
"""

from __future__ import annotations

import threading

__all__ = ["PAGE_SIZE", "ModelPageStore"]

PAGE_SIZE = 4096  # bytes per page, as in the engine's file format


class ModelPageStore:
    """Pages of `page_size` bytes in a dict; a new page reads as zeros.
    Safe to share between threads (a pool's tests call it from several)."""

    def __init__(self, page_size: int = PAGE_SIZE, first_page_id: int = 0, *, grow: bool = False) -> None:
        if page_size <= 0:
            raise ValueError(f"page_size must be positive, not {page_size}")
        if first_page_id < 0:
            raise ValueError(f"first_page_id must be >= 0, not {first_page_id}")
        self.page_size = page_size
        self.grow = grow
        self._next_id = first_page_id
        self._pages: dict[int, bytes] = {}
        self._zeros = bytes(page_size)
        self._latch = threading.Lock()  # allocation reads and bumps the next id

    def new_page(self) -> int:
        """Allocate a zero-filled page; ids strictly increase."""
        with self._latch:
            return self._allocate()

    def _allocate(self) -> int:
        page_id = self._next_id
        self._next_id += 1
        self._pages[page_id] = self._zeros
        return page_id

    def write(self, page_id: int, data: bytes | bytearray | memoryview) -> None:
        """Replace the image of an allocated page (`grow`: of any page at or
        past the next id, allocating up to it) with a copy of `data`."""
        image = bytes(data)
        if len(image) != self.page_size:
            raise ValueError(f"page image is {len(image)} bytes, not {self.page_size}")
        with self._latch:
            while self.grow and self._next_id <= page_id:
                self._allocate()
            self._require(page_id)
            self._pages[page_id] = image

    def read(self, page_id: int) -> bytes:
        """The last image written to `page_id` (zeros if never written; with
        `grow`, also for a page at or past the next id)."""
        if self.grow and page_id >= self._next_id:
            return self._zeros
        self._require(page_id)
        return self._pages[page_id]

    def read_page(self, page_id: int, buf: memoryview) -> None:
        """`PageStore.read_page`: copy the page's image into `buf`."""
        buf[:] = self.read(page_id)

    def write_page(self, page_id: int, buf: memoryview) -> None:
        """`PageStore.write_page`: the page's image becomes a copy of `buf`."""
        self.write(page_id, buf)

    def free(self, page_id: int) -> None:
        """Forget a page; later reads and writes of its id raise KeyError."""
        with self._latch:
            self._require(page_id)
            del self._pages[page_id]

    def page_ids(self) -> list[int]:
        """Allocated page ids, ascending."""
        return sorted(self._pages)

    def images(self) -> dict[int, bytes]:
        """Every allocated page's image, by id (a copy)."""
        return dict(self._pages)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._pages

    def __len__(self) -> int:
        return len(self._pages)

    def _require(self, page_id: int) -> None:
        if page_id not in self._pages:
            raise KeyError(page_id)

    def check_invariants(self) -> list[str]:
        """Return every broken rule:
        - every image is exactly `page_size` bytes;
        - every id is below the next id to hand out.
        """
        problems = []
        for page_id, image in self._pages.items():
            if len(image) != self.page_size:
                problems.append(f"page {page_id}: image is {len(image)} bytes")
            if page_id >= self._next_id:
                problems.append(f"page {page_id}: id not below next id {self._next_id}")
        return problems

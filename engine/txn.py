"""A write transaction: the unit that commits or leaves no trace.

Every page a write operation reads for modification stays pinned until the
transaction ends, and its decoded node is copied before the first change
(`modify`). On failure (`rollback`) the copies go back into the pool, new
pages are dropped and returned to the free list, and frees that were only
planned are never applied, so an operation that raised leaves no half-applied
change, no leaked page and no pinned frame. Nothing in `rollback` does I/O, so
it cannot fail.

Frees are deferred to `finish` because a page freed by a merge must still be
restorable if a later step of the same operation fails.

Between the operations of a batch the pinned pages are released (`release`,
once `pins()` passes a share of the pool) while their first copies are
kept; a rollback then re-fetches a page that was evicted meanwhile (from its
spilled image in the log). If that read fails the database cannot be
restored in memory and the caller poisons it.
"""

from __future__ import annotations

from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import (
    OVERFLOW_PAYLOAD,
    PAGE_SIZE,
    Node,
    Overflow,
    decode_overflow,
    encode_node,
    encode_overflow,
)
from engine.errors import CorruptionError
from engine.pager import Pager

__all__ = ["Txn"]

_NEW = object()  # snapshot marker: the page was created by this transaction
OVERFLOW_RUN = 256  # overflow pages read with one call (1 MiB)


class Txn:
    __slots__ = ("pool", "pager", "wal", "trees", "_pinned", "_snap", "_new", "_to_free", "_meta", "ops", "overflow_new")

    def __init__(self, pool: BufferPool, pager: Pager, wal, trees: dict[str, TreeEntry]) -> None:
        self.pool = pool
        self.pager = pager
        self.wal = wal
        self.trees = trees
        self._pinned: dict[int, Node] = {}  # page id -> node pinned by this txn
        self._snap: dict[int, object] = {}  # page id -> Node copy before first change, or _NEW
        self._new: list[int] = []  # pages allocated, in order
        self._to_free: list[int] = []
        self._meta: dict[str, tuple[int, int] | None] = {}  # tree -> entry before, None if absent
        self.ops: list = []  # logical operations for the commit record

    # -- nodes --------------------------------------------------------------

    def node(self, page_id: int) -> Node:
        """The decoded node of `page_id`, pinned until the transaction ends."""
        node = self._pinned.get(page_id)
        if node is None:
            node = self._pinned[page_id] = self.pool.pin_node(page_id)
        return node

    def modify(self, page_id: int) -> Node:
        """The node of `page_id` to change: pinned until the transaction ends
        and copied before its first change. Use the node it returns: a node
        read earlier without a pin (a path node) may have been evicted and
        read again since, as an equal but different object."""
        node = self.node(page_id)
        if page_id not in self._snap:
            self._snap[page_id] = node.copy()
        return node

    def new_node(self, leaf: bool) -> tuple[int, Node]:
        page_id = self.pager.allocate()
        self._new.append(page_id)
        node = Node(leaf)
        self.pool.add_node(page_id, node, pinned=True)
        self._pinned[page_id] = node
        self._snap[page_id] = _NEW
        return page_id, node

    def allocate(self) -> int:
        """A new page for the caller to fill with `put_node` (freed again on rollback)."""
        page_id = self.pager.allocate()
        self._new.append(page_id)
        return page_id

    def put_node(self, page_id: int, node: Node) -> None:
        """Give the pool a finished node for a page from `allocate`, unpinned
        and dirty: a bulk build holds no pins, so it is not bound by the pool."""
        self.pool.add_node(page_id, node, pinned=False)

    def spill_nodes(self, nodes: list[tuple[int, Node]]) -> None:
        """`put_node` for many nodes at once, written straight to the log as
        spilled images (read from there until a checkpoint takes them home)."""
        pages = []
        for page_id, node in nodes:
            page = bytearray(PAGE_SIZE)
            encode_node(node, page)
            pages.append((page_id, page))
        self.wal.spill_many(pages)

    def free(self, page_id: int) -> None:
        """Free `page_id` when the transaction commits."""
        self._to_free.append(page_id)

    # -- overflow chains ------------------------------------------------------

    def write_overflow(self, value: bytes) -> Overflow:
        """Store `value` in a chain of new overflow pages."""
        n = -(-len(value) // OVERFLOW_PAYLOAD)
        ids = []
        for _ in range(n):
            pid = self.pager.allocate()
            self._new.append(pid)
            ids.append(pid)
        view = memoryview(value)
        for i in range(n - 1, -1, -1):
            with self.pool.write(ids[i], new=True) as page:
                encode_overflow(view[i * OVERFLOW_PAYLOAD : (i + 1) * OVERFLOW_PAYLOAD], ids[i + 1] if i + 1 < n else 0, page)
        return Overflow(ids[0], len(value))

    def free_overflow(self, ov: Overflow) -> None:
        """Plan to free every page of the chain (reads the chain now)."""
        for pid in overflow_pages(self.pool, ov):
            self._to_free.append(pid)

    # -- tree metadata ----------------------------------------------------------

    def entry(self, name: str) -> TreeEntry:
        """The tree's entry, remembered before its first change."""
        if name not in self._meta:
            e = self.trees.get(name)
            self._meta[name] = None if e is None else (e.root, e.count)
        return self.trees[name]

    def create_tree(self, name: str) -> None:
        if name not in self._meta:
            e = self.trees.get(name)
            self._meta[name] = None if e is None else (e.root, e.count)
        self.trees[name] = TreeEntry()

    def drop_tree_entry(self, name: str) -> None:
        self.entry(name)
        del self.trees[name]

    # -- ending -------------------------------------------------------------------

    def pins(self) -> dict[int, Node]:
        """The nodes this transaction holds pinned (a live view, by page id)."""
        return self._pinned

    def touched(self) -> bool:
        return bool(self._snap or self._new or self._to_free or self._meta)

    def release(self) -> None:
        """Unpin this transaction's pages (between the operations of a batch),
        keeping the first copies for a rollback."""
        snap = self._snap
        pool = self.pool
        pool.unpin_nodes([pid for pid in self._pinned if pid in snap], changed=True)
        pool.unpin_nodes([pid for pid in self._pinned if pid not in snap], changed=False)
        self._pinned.clear()

    def finish(self, lsn: int) -> list[int]:
        """Commit in memory: stamp changed nodes with `lsn`, unpin them (dirty),
        apply the planned frees. Returns the freed page ids."""
        pinned = self._pinned
        for pid in self._snap:
            node = pinned.get(pid)
            if node is not None:
                node.lsn = lsn
        self.release()
        freed = self._to_free
        for pid in freed:
            self.pool.discard(pid)
            self.wal.forget(pid)
            self.pager.free(pid)
        self._snap.clear()
        self._new.clear()
        self._to_free = []
        self._meta.clear()
        return freed

    def rollback(self) -> None:
        """Undo everything in memory. Pages released earlier in a batch are
        fetched again to restore them (may raise; the caller poisons)."""
        pool = self.pool
        for pid, snap in self._snap.items():
            if snap is not _NEW and pid in self._pinned:
                pool.restore_node(pid, snap, pinned=True)  # type: ignore[arg-type]
        pool.unpin_nodes([pid for pid in self._pinned if self._snap.get(pid, _NEW) is _NEW], changed=False)
        new = set(self._new)
        for pid, snap in self._snap.items():
            if snap is not _NEW and pid not in new and pid not in self._pinned:
                pool.restore_node(pid, snap, pinned=False)  # type: ignore[arg-type]
        self._pinned.clear()
        for pid in self._new:
            pool.discard(pid)
            self.wal.forget(pid)
            self.pager.free(pid)
        for name, before in self._meta.items():
            if before is None:
                self.trees.pop(name, None)
            else:
                self.trees[name] = TreeEntry(*before)
        self._snap.clear()
        self._new.clear()
        self._to_free = []
        self._meta.clear()


def _bad_chain(ov: Overflow, pid: int, what: str) -> CorruptionError:
    return CorruptionError(f"overflow chain of {ov.length} bytes from page {ov.page}: {what} at page {pid}")


def _check_link(ov: Overflow, pid: int, seen: set[int], remaining: int, got: int, nxt: int) -> None:
    """One page of a chain as `write_overflow` lays it out: new to this walk,
    holding min(remaining, OVERFLOW_PAYLOAD) bytes, linking on exactly while
    bytes remain after it. So a chain is ceil(length / OVERFLOW_PAYLOAD)
    distinct pages, and a cycle, an empty page or a length mismatch is refused."""
    if pid in seen:
        raise _bad_chain(ov, pid, "a cycle")
    if got != min(remaining, OVERFLOW_PAYLOAD):
        raise _bad_chain(ov, pid, f"a page of {got} bytes with {remaining} to go")
    if (nxt == 0) != (remaining <= OVERFLOW_PAYLOAD):
        raise _bad_chain(ov, pid, "the end" if nxt == 0 else f"a link past the end (to {nxt})")
    seen.add(pid)


def overflow_pages(pool: BufferPool, ov: Overflow) -> list[int]:
    """Page ids of an overflow chain, in order (see `_check_link`)."""
    out: list[int] = []
    seen: set[int] = set()
    pid = ov.page
    remaining = ov.length
    if remaining <= 0 or pid == 0:
        raise _bad_chain(ov, pid, "an empty value or no first page")
    while remaining > 0:
        with pool.read(pid) as page:
            payload, nxt = decode_overflow(page, pid)
        _check_link(ov, pid, seen, remaining, len(payload), nxt)
        out.append(pid)
        remaining -= len(payload)
        pid = nxt
    return out


def read_overflow(pool: BufferPool, ov: Overflow) -> bytes:
    """The value of an overflow chain (checked as `overflow_pages` checks it).
    Chains are mostly runs of consecutive pages, so the pages still ahead are
    read from the store a run at a time (`read_uncached`, up to OVERFLOW_RUN
    pages per call) and a page the run did not bring (cached, spilled,
    elsewhere or damaged) through the pool."""
    parts = []
    seen: set[int] = set()
    pid = ov.page
    remaining = ov.length
    if remaining <= 0 or pid == 0:
        raise _bad_chain(ov, pid, "an empty value or no first page")
    run: dict[int, bytes] = {}
    tried = range(0)  # the page ids the last run read covered
    while remaining > 0:
        page = run.pop(pid, None)
        if page is None and remaining > OVERFLOW_PAYLOAD and pid not in tried:
            tried = range(pid, pid + min(-(-remaining // OVERFLOW_PAYLOAD), OVERFLOW_RUN))
            run = pool.read_uncached(tried.start, len(tried))
            page = run.pop(pid, None)
        if page is not None:
            payload, nxt = decode_overflow(page, pid)
        else:
            with pool.read(pid) as page:
                payload, nxt = decode_overflow(page, pid)
        _check_link(ov, pid, seen, remaining, len(payload), nxt)
        parts.append(payload)
        remaining -= len(payload)
        pid = nxt
    return b"".join(parts)

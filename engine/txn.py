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
from engine.codec import PAGE_SIZE, Node, Overflow, encode_node
from engine.overflow import write_overflow
from engine.pager import Pager

__all__ = ["Txn"]

_NEW = object()  # snapshot marker: the page was created by this transaction


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
        """Store `value` in a chain of new overflow pages (a page sink's
        method, see `bulk.build`; freed again on rollback)."""
        return write_overflow(self.pool, self.allocate, value)

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

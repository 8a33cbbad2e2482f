"""The buffer pool's decoded nodes: the half of `BufferPool` that hands the
B+ tree its pages as `codec.Node` objects instead of bytes.

`frame.obj` caches the decoded page; `frame.obj_dirty` means the object is
newer than the bytes, so the bytes are re-encoded only when they must reach
the store (eviction, flush: `Frame.sync_bytes`): encoding is deferred to
write-back. The callers work with page ids and nodes, never with a frame:

- readers and the writer: `peek` (a cached node, no pin), `node` (pinned
  only for the call, decoded once), `search_leaf` (a get's first look at an
  undecoded leaf of a full pool), all valid while the caller's database
  latch excludes other writers of the node;
- the in-place writer: `node_changed` after editing a node it read so;
- a transaction: `pin_node`, `add_node`, `unpin_nodes`, `restore_node`;
- checks: `corrupt_clean_nodes`.

`NodeCache` is a mixin: its state (the page table, the mutex, the counters)
and the frame operations it builds on (`fetch`, `new_page`, `unpin`) are
`BufferPool`'s, whose rules (engine/bufferpool.py) these methods keep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine.codec import LEAF, Node, decode_node, page_type, verify

if TYPE_CHECKING:
    from engine.bufferpool import Frame

__all__ = ["NodeCache"]


class NodeCache:
    """Decoded nodes on the pool's frames (a mixin: the state is `BufferPool`'s)."""

    _table: dict[int, Frame]
    _mutex: threading.Lock
    hits: int

    if TYPE_CHECKING:  # `BufferPool`'s own
        def fetch(self, page_id: int) -> Frame: ...
        def new_page(self, page_id: int) -> Frame: ...
        def unpin(self, frame: Frame, dirty: bool = False) -> None: ...
        def _unpin_cold(self, frame: Frame) -> None: ...
        def full(self) -> bool: ...

    def peek(self, page_id: int):
        """The cached decoded node of `page_id`, or None, without pinning or
        locking. Only for callers that exclude every writer of that node (the
        database's shared latch): the node object then cannot change, and a
        concurrent eviction is detected by re-reading `frame.page_id` after
        `frame.obj` (eviction clears `page_id` before `obj`)."""
        frame = self._table.get(page_id)
        if frame is not None:
            obj = frame.obj
            if obj is not None and frame.page_id == page_id:
                frame.ref = True
                self.hits += 1
                return obj
        return None

    def node(self, page_id: int) -> Node:
        """The decoded node of `page_id`: the cached one, or the page read on
        a miss and decoded once (cached on its frame). Pinned only during the
        call, so no guard is needed: the caller's database latch excludes every
        other writer of the node (readers share it, the writer holds it
        alone), so the node object cannot change while the caller uses it, and
        an eviction meanwhile only drops the frame, never the node."""
        node = self.peek(page_id)
        if node is not None:
            return node
        frame = self.fetch(page_id)
        try:
            return self._decoded(frame)
        finally:
            self.unpin(frame)

    def _decoded(self, frame: Frame) -> Node:
        """The pinned frame's node, decoded and cached on first use."""
        node = frame.obj
        if node is None:
            node = frame.obj = decode_node(frame.buf, frame.page_id)
        return node

    def search_leaf(self, page_id: int, search: Callable[..., object], *args: object) -> object:
        """For a get: the decoded node of `page_id`; or, when the pool is full
        and the page is an undecoded leaf no get has searched yet,
        `search(page bytes, *args)` without decoding, the frame then going to the
        old end of the replacer. A leaf read once and evicted (a pool smaller
        than the tree) never pays for a full decode, and one read again
        decodes for the hits to come. The caller tells a node from a search
        result by its type."""
        frame = self.fetch(page_id)
        cold = False
        try:
            node = frame.obj
            if node is not None:
                return node
            if not frame.searched and page_type(frame.buf) == LEAF and self.full():
                frame.searched = cold = True
                return search(frame.buf, *args)
            return self._decoded(frame)
        finally:
            if cold:
                self._unpin_cold(frame)
            else:
                self.unpin(frame)

    def node_changed(self, page_id: int) -> None:
        """The writer changed the cached node of `page_id` in place (a node it
        read through `peek` or `node` under the write latch, during which
        nothing else uses the pool, so the node is still cached): the page
        is dirty and its bytes stale."""
        with self._mutex:
            frame = self._table[page_id]
            assert frame.obj is not None, "node_changed: the node is not cached"
            frame.dirty = True
            frame.obj_dirty = True

    def pin_node(self, page_id: int) -> Node:
        """`node`, kept pinned until `unpin_nodes` (a transaction's pages)."""
        frame = self.fetch(page_id)
        try:
            return self._decoded(frame)
        except BaseException:
            self.unpin(frame)
            raise

    def add_node(self, page_id: int, node: Node, pinned: bool) -> None:
        """A freshly allocated page holding `node` (dirty, its bytes encoded
        only at write-back), kept pinned until `unpin_nodes` if `pinned`."""
        frame = self.new_page(page_id)
        frame.obj = node
        frame.obj_dirty = True
        if not pinned:
            self.unpin(frame, dirty=True)

    def unpin_nodes(self, page_ids: Iterable[int], changed: bool) -> None:
        """Unpin pages of `pin_node`/`add_node` under one acquisition of the
        mutex; `changed`: their nodes were changed (dirty, bytes stale)."""
        with self._mutex:
            table = self._table
            for page_id in page_ids:
                frame = table[page_id]
                assert frame.pin > 0, "unpin_nodes: frame is not pinned"
                frame.pin -= 1
                if changed:
                    frame.dirty = frame.obj_dirty = True

    def restore_node(self, page_id: int, node: Node, pinned: bool) -> None:
        """A rollback: `node` (a copy taken before the first change) becomes
        the page's node again. A page the caller holds pinned (`pinned`) got
        no write-back since, so its bytes still match the copy: it is only
        unpinned. Any other page was released and may have been changed on
        the way to the store: it is fetched (read back if evicted, which may
        raise) and marked changed."""
        frame = self._table[page_id] if pinned else self.fetch(page_id)
        frame.obj = node
        if not pinned:
            frame.obj_dirty = True
        self.unpin(frame, dirty=not pinned)

    def corrupt_clean_nodes(self) -> list[int]:
        """Ids of cached decoded pages whose bytes are current (clean, node
        not newer) yet fail their checksum: a page damaged in memory."""
        with self._mutex:
            return [pid for pid, f in self._table.items()
                    if f.obj is not None and not f.obj_dirty and not f.dirty and not verify(f.buf)]


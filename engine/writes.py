"""The write path: how a `Database` changes its trees, and the bodies of its
transactions.

Every write holds the database's write latch once, from its first read of
the tree to its commit in memory, and takes one of two paths; the order of
log and page is what keeps each safe:

1. In place, log first (`_write_key`, most puts and deletes): when
   `btree.in_place` finds the key's leaf cached and the edit keeps it within
   its bounds (no split, merge or overflow chain), the commit record is
   appended first and the leaf changed after (`btree.apply_in_place`). A
   failed append has changed no page, so there is nothing to undo; once the
   append returned, the edit cannot fail (memory only).
2. A transaction, page then log (`_run_txn`, everything else): `txn.Txn`
   changes the tree in memory, keeping a copy of each page before its first
   change, then appends one logical commit record. On any exception, the
   append's included, `Txn.rollback` puts the copies back, so the operation
   has no effect. Changing pages before logging is safe because no changed
   page outlives a crash without its record: pages reach the data file only
   at checkpoints, and an evicted one only as a spill to the log, which
   recovery ignores (rule 2 of `wal`).
3. Both paths end in `_committed` (iterators notice, a long log is
   checkpointed), and the log fsync (rule 1 of `wal`) happens after the
   latch is released, so threads committing together share one fsync.

Both paths edit a leaf the same way (`btree.plan_leaf_edit`,
`btree.apply_leaf_edit`). Recovery and a reader following the log replay
commit records through the same bodies (`_replay`, `_replay_in_place`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import btree, bulk
from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.errors import DragonDBError, NeedsRecoveryError, TreeLimitError
from engine.latch import RWLatch
from engine.metapage import META_TREES_ROOM, Meta
from engine.pager import Pager
from engine.txn import Txn
from engine.wal import Wal
from engine.walformat import OP_CREATE, OP_DELETE, OP_DROP, OP_LOAD, OP_PUT, encode_op, encode_ops

__all__ = ["Writes", "apply_batch", "apply_op", "create_tree", "delete", "drop_tree", "put"]


class Writes:
    """The write path of `Database` (a mixin: the state is the database's)."""

    _pool: BufferPool
    _pager: Pager
    _wal: Wal
    _trees: dict[str, TreeEntry]
    _latch: RWLatch
    _closed: bool
    _version: int
    read_only: bool
    checkpoint_bytes: int

    if TYPE_CHECKING:  # the database's own, and `checkpoint.Checkpoints`'s
        def _ensure_usable(self) -> None: ...
        def _ensure_writable(self) -> None: ...
        def _auto_checkpoint(self) -> None: ...

    def _txn(self) -> Txn:
        return Txn(self._pool, self._pager, self._wal, self._trees)

    def _write(self, fn, *args):
        """Run `fn(txn, *args)` as one atomic commit (rule 2)."""
        self._ensure_writable()
        latch = self._latch
        latch.acquire_write()
        try:
            self._ensure_writable()
            result, lsn = self._run_txn(fn, args)
        finally:
            latch.release_write()
        if lsn:
            self._wal.sync_to(lsn)
        return result

    def _write_key(self, name: str, key: bytes, value: bytes | None) -> bool:
        """A put (`value` bytes) or delete (`value` None) of one key under one
        hold of the write latch: in place when `btree.in_place` finds one
        cached leaf that stays within its bounds (rule 1: most puts and
        deletes), else as a transaction (rule 2). Whether the key existed."""
        latch = self._latch
        latch.acquire_write()
        try:
            wal = self._wal
            if self._closed or self.read_only or wal.failed:
                self._ensure_writable()  # raises the right error
            entry = self._trees.get(name)
            if entry is None or not entry.root or (planned := btree.in_place(self._pool, entry.root, key, value)) is None:
                found, lsn = self._run_txn(delete if value is None else put, (name, key, value))
            else:
                found = planned[2][1]
                if value is None and not found:
                    return False
                lsn = wal.commit(encode_op(OP_DELETE if value is None else OP_PUT, name, key, value))
                btree.apply_in_place(self._pool, entry, planned, key, value, lsn)
                self._committed()
        finally:
            latch.release_write()
        if lsn:
            wal.sync_to(lsn)
        return found

    def _run_txn(self, fn, args: tuple) -> tuple[Any, int]:
        """`fn(txn, *args)` as a transaction (rule 2), under the write latch:
        (its result, the lsn of its commit record, 0 when it changed nothing)."""
        txn = self._txn()
        wal = self._wal
        try:
            result = fn(txn, *args)
            lsn = wal.commit(encode_ops(txn.ops)) if txn.ops else 0
        except BaseException:
            self._rollback(txn)
            raise
        txn.finish(lsn or wal.lsn)
        if lsn:
            self._committed()
        return result, lsn

    def _committed(self) -> None:
        """After each commit, under the write latch, on both paths (rule 3):
        iterators notice, and a long log is checkpointed."""
        self._version += 1
        if self._wal.end > self.checkpoint_bytes:
            self._auto_checkpoint()

    def _rollback(self, txn: Txn) -> None:
        try:
            txn.rollback()
        except DragonDBError as exc:
            # A page released earlier in a batch could not be read back.
            self._wal.mark_failed()
            raise NeedsRecoveryError(f"rollback could not restore a page ({exc}); reopen to recover") from exc

    def _replay(self, ops: list, lsn: int) -> None:
        """Redo one logged commit (recovery, a reader following the log)."""
        txn = self._txn()
        try:
            for op, name, key, value in ops:
                apply_op(txn, op, name, key, value)
                txn.release()
        except BaseException:
            txn.rollback()
            raise
        txn.finish(lsn)

    def _replay_in_place(self, op: tuple, lsn: int) -> bool:
        """Replay one put or delete the way the writer's common case made it
        (rule 1): within one cached leaf. False when the general path must
        run. A reader follows a writer's commits at about the writer's own
        cost this way."""
        kind, name, key, value = op
        if kind not in (OP_PUT, OP_DELETE):
            return False
        entry = self._trees.get(name)
        if entry is None or not entry.root:
            return False
        if kind == OP_DELETE:
            value = None
        planned = btree.in_place(self._pool, entry.root, key, value)
        if planned is None:
            return False
        if value is not None or planned[2][1]:
            btree.apply_in_place(self._pool, entry, planned, key, value, lsn)
        return True


# -- transaction bodies: fn(txn, ...) for `Writes._write` ---------------------------

def apply_op(txn: Txn, op: int, name: str, key, value) -> None:
    """One operation of a logged commit, as a batch or a replay runs it (the
    caller's commit record is the list of operations, so none is logged
    here). Idempotent on trees: a put creates its tree, a create of one that
    exists does nothing, and so does anything else on a tree that is gone."""
    exists = name in txn.trees
    if op == OP_PUT:
        if not exists:
            create_tree(txn, name, log=False)
        btree.put(txn, name, key, value)
    elif op == OP_CREATE:
        if not exists:
            create_tree(txn, name, log=False)
    elif not exists:
        return  # a delete, drop or load of a tree dropped before it in the same commit
    elif op == OP_DELETE:
        btree.delete(txn, name, key)
    elif op == OP_DROP:
        btree.drop(txn, name)
    else:
        assert op == OP_LOAD, f"apply_op: unknown operation {op}"
        bulk.load(txn, name, *value)  # redo of a bulk load: the tree was empty when it ran


def create_tree(txn: Txn, name: str, log: bool = True) -> None:
    if name in txn.trees:
        return
    room = Meta.trees_size({n: (0, 0) for n in [*txn.trees, name]})
    if room > META_TREES_ROOM:
        raise TreeLimitError("the metadata page has no room for another tree")
    txn.create_tree(name)
    if log:
        txn.ops.append((OP_CREATE, name, None, None))


def drop_tree(txn: Txn, name: str) -> None:
    if name not in txn.trees:
        raise KeyError(name)
    btree.drop(txn, name)
    txn.ops.append((OP_DROP, name, None, None))


def put(txn: Txn, name: str, key: bytes, value: bytes) -> None:
    if name not in txn.trees:
        raise KeyError(name)
    btree.put(txn, name, key, value)
    txn.ops.append((OP_PUT, name, key, value))


def delete(txn: Txn, name: str, key: bytes, _value: None = None) -> bool:
    if name not in txn.trees:
        raise KeyError(name)
    found = btree.delete(txn, name, key)
    if found:
        txn.ops.append((OP_DELETE, name, key, None))
    return found


def apply_batch(txn: Txn, ops: list) -> None:
    """A batch's operations in one transaction. Its pins are released once
    they pass a quarter of the pool beyond what one operation may pin (so
    the pool keeps frames to evict; a tiny pool releases every time), not
    after every operation: a batch meets its leaves again and again. The
    commit record is the batch's own list: replay creates a tree a put names
    as this does (`apply_op`), so no create needs logging."""
    trees = txn.trees
    bput = btree.put
    pins = txn.pins()
    keep = (txn.pool.n_frames - 64) // 4
    for op, name, key, value in ops:
        if op == OP_PUT and name in trees:
            bput(txn, name, key, value)
        else:
            apply_op(txn, op, name, key, value)
        if len(pins) > keep:
            txn.release()
    txn.ops = ops

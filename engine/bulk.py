"""Whole-tree writes: clear a tree, and build one bottom-up from sorted items.

Each function here is the body of one transaction (`Txn`): `db` runs it under
the write latch and logs its `txn.ops` as one commit record, so each is
atomic under a crash like a batch, and a failure rolls back in memory.

- `clear`: frees every page of the tree (a walk of its pages, never of its
  keys) and leaves it empty. Logged as OP_DROP + OP_CREATE in one record,
  which recovery already redoes.
- `update`, `pop`, `popitem`, `setdefault`: the mapping methods as single
  commits, so each is atomic and isolated (MutableMapping's defaults are a
  commit per key, or a read and a write another thread can come between).
"""

from __future__ import annotations

from engine import btree
from engine.txn import Txn
from engine.wal import OP_CREATE, OP_DELETE, OP_DROP, OP_PUT

__all__ = ["clear", "update", "pop", "popitem", "setdefault"]


def clear(txn: Txn, name: str) -> None:
    """Empty tree `name`, freeing its pages at commit; KeyError if missing."""
    if name not in txn.trees:
        raise KeyError(name)
    if not txn.entry(name).root:
        return  # nothing stored, not even a root leaf: no commit
    btree.drop(txn, name)
    txn.create_tree(name)
    txn.ops += [(OP_DROP, name, None, None), (OP_CREATE, name, None, None)]


def _entry_root(txn: Txn, name: str) -> int:
    if name not in txn.trees:
        raise KeyError(name)
    return txn.entry(name).root


def update(txn: Txn, name: str, pairs: list[tuple[bytes, bytes]]) -> None:
    """Put every (key, value) of `pairs` (validated), later ones winning."""
    _entry_root(txn, name)
    ops = txn.ops
    for key, value in pairs:
        btree.put(txn, name, key, value)
        ops.append((OP_PUT, name, key, value))
        txn.release()  # pins end with each put; the first copies stay for a rollback


def pop(txn: Txn, name: str, key: bytes) -> bytes | None:
    """Remove `key` and return its value; None (no commit) when absent."""
    root = _entry_root(txn, name)
    value = btree.get(txn.pool, root, key) if root else None
    if value is not None:
        btree.delete(txn, name, key)
        txn.ops.append((OP_DELETE, name, key, None))
    return value


def popitem(txn: Txn, name: str) -> tuple[bytes, bytes] | None:
    """Remove and return the item with the smallest key; None when empty."""
    root = _entry_root(txn, name)
    item = btree.edge(txn.pool, root, False) if root else None
    if item is not None:
        btree.delete(txn, name, item[0])
        txn.ops.append((OP_DELETE, name, item[0], None))
    return item


def setdefault(txn: Txn, name: str, key: bytes, default: bytes) -> bytes:
    """The value of `key`, storing `default` first when it is absent."""
    root = _entry_root(txn, name)
    value = btree.get(txn.pool, root, key) if root else None
    if value is not None:
        return value
    btree.put(txn, name, key, default)
    txn.ops.append((OP_PUT, name, key, default))
    return default

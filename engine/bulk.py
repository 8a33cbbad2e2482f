"""Whole-tree writes: clear a tree, and build one bottom-up from sorted items.

Each function here is the body of one transaction (`Txn`): `db` runs it under
the write latch and logs its `txn.ops` as one commit record, so each is
atomic under a crash like a batch, and a failure rolls back in memory.

- `clear`: frees every page of the tree (a walk of its pages, never of its
  keys) and leaves it empty. Logged as OP_DROP + OP_CREATE in one record,
  which recovery already redoes.
"""

from __future__ import annotations

from engine import btree
from engine.txn import Txn
from engine.wal import OP_CREATE, OP_DROP

__all__ = ["clear"]


def clear(txn: Txn, name: str) -> None:
    """Empty tree `name`, freeing its pages at commit; KeyError if missing."""
    if name not in txn.trees:
        raise KeyError(name)
    if not txn.entry(name).root:
        return  # nothing stored, not even a root leaf: no commit
    btree.drop(txn, name)
    txn.create_tree(name)
    txn.ops += [(OP_DROP, name, None, None), (OP_CREATE, name, None, None)]

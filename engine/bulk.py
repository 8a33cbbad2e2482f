"""Whole-tree writes: clear a tree, and build one bottom-up from sorted items.

Each function here is the body of one transaction (`Txn`): `db` runs it under
the write latch and logs its `txn.ops` as one commit record, so each is
atomic under a crash like a batch, and a failure rolls back in memory.

- `clear`: frees every page of the tree (a walk of its pages, never of its
  keys) and leaves it empty. Logged as OP_DROP + OP_CREATE in one record,
  which recovery already redoes.
- `load`: builds an empty tree bottom-up from items in strictly ascending
  key order: leaves packed full left to right, then each internal level
  packed full over the one below, so pages are written once, in key order,
  and the file ends smaller than random puts leave it. The last node of a
  level, if under its minimum fill, shares cells with its left neighbour
  (`split_point`/`internal_split_point`, whose contracts prove both end
  within bounds). The log holds the load as one commit record with one
  OP_LOAD (its keys and values, packed as arrays): a crash leaves all or
  none of it, and recovery redoes it by building the tree again (logical
  redo needs no particular page layout).
- `update`, `pop`, `popitem`, `setdefault`: the mapping methods as single
  commits, so each is atomic and isolated (MutableMapping's defaults are a
  commit per key, or a read and a write another thread can come between).
"""

from __future__ import annotations

from engine import btree
from engine.codec import (
    INTERNAL_MIN_FILL,
    LEAF_MIN_FILL,
    MAX_KEY_SIZE,
    MAX_LEAF_CELL,
    USABLE,
    Node,
    internal_split_point,
    leaf_cell_size,
    split_point,
)
from engine.errors import UnsortedItemsError
from engine.txn import Txn
from engine.walformat import OP_CREATE, OP_DELETE, OP_DROP, OP_LOAD, OP_PUT

_SPILL_RUN = 256  # leaves encoded and logged per batch (1 MiB)

__all__ = ["build", "check_items", "clear", "load", "update", "pop", "popitem", "setdefault"]


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


def check_items(items, key_fn, value_fn, max_value: int) -> tuple[list[bytes], list[bytes]]:
    """The keys and values of `items`, (key, value) pairs each checked as a
    put checks them (`key_fn`/`value_fn` raise the right error) and strictly
    ascending (`UnsortedItemsError`). Reads all before anything is written."""
    keys: list[bytes] = []
    vals: list[bytes] = []
    add_key, add_val = keys.append, vals.append
    prev = b""
    for item in items:
        try:
            k, v = item
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"load: item #{len(keys)} is not a (key, value) pair") from exc
        if type(k) is not bytes or not 0 < len(k) <= MAX_KEY_SIZE:
            k = key_fn(k)
        if type(v) is not bytes or len(v) > max_value:
            v = value_fn(v)
        if k <= prev:
            raise UnsortedItemsError(f"load: item #{len(keys)} has key {k[:40]!r}, not above the key before it")
        prev = k
        add_key(k)
        add_val(v)
    return keys, vals


def load(txn: Txn, name: str, keys: list[bytes], vals: list[bytes]) -> bool:
    """Build tree `name` from `keys` and `vals` (from `check_items`). False
    (nothing done) when the tree holds keys; KeyError if it is missing."""
    root = _entry_root(txn, name)
    entry = txn.entry(name)
    if entry.count:
        return False
    if not keys:
        return True
    if root:  # an empty root leaf left by deletes
        txn.free(root)
    entry.root = build(txn, keys, vals)
    entry.count = len(keys)
    txn.ops.append((OP_LOAD, name, None, (keys, vals)))
    return True


def build(txn, keys: list[bytes], vals: list[bytes]) -> int:
    """Pages of a tree holding `keys`/`vals` (non-empty, strictly ascending),
    bottom-up; returns the root's page id. `txn` is the page sink: a `Txn`,
    or anything with its `allocate`, `put_node`, `spill_nodes`,
    `write_overflow` and `pool.n_frames` (compaction writes to the log)."""
    level = _place(txn, _pack_leaves(txn, keys, vals))
    while len(level) > 1:
        level = _place(txn, _pack_internal(level))
    return level[0][0]


def _pack_leaves(txn: Txn, keys: list[bytes], vals: list[bytes]) -> list[tuple[Node, bytes]]:
    """(leaf, lowest key) for leaves filled in order up to a page each (values
    too large for a cell go to overflow chains, written as they come)."""
    out: list[Node] = []
    start = size = 0
    stored = vals
    for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
        cell = 9 + len(k) + len(v)
        if cell > MAX_LEAF_CELL:
            if stored is vals:
                stored = list(vals)
            stored[i] = txn.write_overflow(v)
            cell = 13 + len(k)
        if size + cell > USABLE:
            out.append(_node(True, keys[start:i], stored[start:i], [], size))
            start, size = i, 0
        size += cell
    out.append(_node(True, keys[start:], stored[start:], [], size))
    if len(out) > 1 and out[-1].size < LEAF_MIN_FILL:
        left, right = out[-2], out[-1]
        both_keys, both_vals = left.keys + right.keys, left.vals + right.vals
        sizes = list(map(leaf_cell_size, both_keys, both_vals))
        i = split_point(sizes)
        left.keys, left.vals, left.size = both_keys[:i], both_vals[:i], sum(sizes[:i])
        right.keys, right.vals, right.size = both_keys[i:], both_vals[i:], sum(sizes[i:])
    return [(n, n.keys[0]) for n in out]


def _pack_internal(level: list[tuple[int, bytes]]) -> list[tuple[Node, bytes]]:
    """(node, lowest key) for internal nodes over `level`'s (page id, lowest
    key) pairs, each filled up to a page; separators are the children's
    lowest keys."""
    out: list[Node] = []
    lows: list[bytes] = []
    node = _node(False, [], [], [], 0)
    for pid, low in level:
        cell = 8 + len(low)
        if not node.children or node.size + cell > USABLE:
            node = _node(False, [], [], [pid], 0)
            out.append(node)
            lows.append(low)
            continue
        node.keys.append(low)
        node.children.append(pid)
        node.size += cell
    if len(out) > 1 and node.size < INTERNAL_MIN_FILL:
        left = out[-2]
        keys = left.keys + [lows[-1]] + node.keys
        children = left.children + node.children
        sizes = [8 + len(k) for k in keys]
        m = internal_split_point(sizes)
        left.keys, left.children, left.size = keys[:m], children[: m + 1], sum(sizes[:m])
        node.keys, node.children, node.size = keys[m + 1 :], children[m + 1 :], sum(sizes[m + 1 :])
        lows[-1] = keys[m]
    return list(zip(out, lows, strict=True))


def _node(leaf: bool, keys: list[bytes], vals: list, children: list[int], size: int) -> Node:
    node = Node.__new__(Node)  # fields set directly: the size is already summed
    node.leaf = leaf
    node.keys, node.vals, node.children = keys, vals, children
    node.next = node.prev = node.lsn = 0
    node.size = size
    return node


def _place(txn: Txn, nodes: list[tuple[Node, bytes]]) -> list[tuple[int, bytes]]:
    """Give each node a page (in key order, so a level's pages run in order),
    link leaves both ways and hand them to the pool; (page id, lowest key)
    each. Leaves past half the pool go straight to the log as spilled
    images, many to a write, rather than through one eviction each."""
    pids = [txn.allocate() for _ in nodes]
    keep = 0
    if nodes[0][0].leaf:
        last = len(pids) - 1
        for i, (node, _) in enumerate(nodes):
            node.prev = pids[i - 1] if i else 0
            node.next = pids[i + 1] if i < last else 0
        keep = max(0, len(nodes) - txn.pool.n_frames // 2)
        for i in range(0, keep, _SPILL_RUN):
            txn.spill_nodes([(pids[j], nodes[j][0]) for j in range(i, min(keep, i + _SPILL_RUN))])
    for pid, (node, _) in zip(pids[keep:], nodes[keep:], strict=True):
        txn.put_node(pid, node)
    return [(pid, low) for pid, (_, low) in zip(pids, nodes, strict=True)]

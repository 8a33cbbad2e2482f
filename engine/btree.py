"""The B+ tree: get, put, delete with merge-or-redistribute, range chunks,
single-root creation, overflow chains for large values.

Threads. The scheme is one reader/writer latch per database (readers share
it, a writer holds it alone) plus the buffer pool's own mutex and frame
latches. Why not latch crabbing (BusTub): under the GIL only one thread runs
Python at a time, so crabbing's finer latches buy parallelism only during
I/O, which the shared mode already gives readers (a read that misses releases
the GIL in `preadv` while other readers go on). A writer alone on the tree
never sees a half-split node, a batch across trees is isolated for free, and
the durability fsync happens after the latch is released, so committers still
overlap there (group commit). Readers never block each other.

Structure. Leaves hold keys and values (or an `Overflow` reference to a chain
of pages for values over `MAX_LEAF_CELL`), chained both ways for scans.
Internal node i separates child i (keys < keys[i]) from child i+1
(keys >= keys[i]). After each change `_fix` walks up the path: a node over a
page is split (balanced by bytes); a non-root node under its minimum fill
borrows from or merges with a sibling under the same parent; an internal root
left with one child is replaced by it, so the tree shrinks as it empties.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from engine import syncpoints
from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import (
    INTERNAL_MIN_FILL,
    LEAF_MIN_FILL,
    MAX_LEAF_CELL,
    USABLE,
    Node,
    Overflow,
    inline_fits,
    internal_split_point,
    leaf_cell_size,
    leaf_search,
    split_point,
)
from engine.errors import CorruptionError
from engine.overflow import free_overflow, overflow_pages, read_overflow
from engine.txn import Txn

__all__ = ["get", "put", "delete", "chunk", "walk_pages", "levels", "create_root", "in_place", "apply_in_place",
           "plan_leaf_edit", "apply_leaf_edit"]

MAX_HEIGHT = 48  # fanout >= 2 and 2**32 pages bound a real tree far below this


def _too_deep(root: int) -> CorruptionError:
    return CorruptionError(f"tree at page {root} is deeper than {MAX_HEIGHT} levels: a cycle of child pointers")


def _next_leaf(pool: BufferPool, node: Node, pid: int, last_key: bytes | None, forward: bool) -> Node:
    """Follow a leaf link, refusing links that break the key order (cycles):
    the next leaf's keys must all lie beyond both this leaf's and `last_key`
    (the last key returned, or the one the walk resumes after), so a walk
    never returns to a leaf or a key, even from a leaf a crafted parent
    chose wrongly."""
    if pid == 0:
        raise CorruptionError("leaf link to page 0")
    if node.keys:
        edge = node.keys[-1] if forward else node.keys[0]
        if last_key is None or (edge > last_key if forward else edge < last_key):
            last_key = edge
    nxt = pool.node(pid)
    if not nxt.leaf or not nxt.keys or (
        last_key is not None and (nxt.keys[0] <= last_key if forward else nxt.keys[-1] >= last_key)):
        raise CorruptionError(f"leaf link to page {pid} breaks the key order")
    return nxt


def _value(pool: BufferPool, v):
    return read_overflow(pool, v) if type(v) is Overflow else v


def get(pool: BufferPool, root: int, key: bytes) -> bytes | None:
    if not root:
        return None
    peek = pool.peek
    pid = root
    depth = 0
    while True:
        node = peek(pid)
        if node is None:
            node = pool.search_leaf(pid, leaf_search, key, pid)  # no closure: `key` stays a fast local
            if type(node) is not Node:  # the leaf was searched undecoded: the value or None
                return None if node is None else _value(pool, node)
        if node.leaf:
            break
        pid = node.children[bisect_right(node.keys, key)]
        depth += 1
        if depth > MAX_HEIGHT:
            raise _too_deep(root)
    keys = node.keys
    i = bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        return _value(pool, node.vals[i])
    return None


# -- writes ---------------------------------------------------------------------

def create_root(txn: Txn, name: str) -> int:
    """Give tree `name` its first page, an empty root leaf: the one place a
    root is created, always inside a transaction under the write latch, so
    no second writer can have created one meanwhile (the seed's race)."""
    syncpoints.reach("btree.root.create")
    pid, _ = txn.new_node(True)
    txn.entry(name).root = pid
    return pid


# The leaf edit: one rule for both write paths. `plan_leaf_edit` says where a
# key goes, the leaf's size after the edit and whether the edit fits (its
# cell inline, the leaf within its bounds); `apply_leaf_edit` makes the edit
# and keeps the tree's key count. A transaction (`put`, `delete`) plans, copies the leaf
# (`txn.modify`), applies, and restores the bounds (`_fix`) when they break;
# the in-place path (`in_place`, `apply_in_place`) plans, and applies only
# when the edit fits, after its commit record is logged.

def plan_leaf_edit(leaf: Node, key: bytes, value: bytes | Overflow | None, root: bool) -> tuple[int, bool, int, bool]:
    """(index, found, size, fits) for putting `value` under `key` in `leaf`
    (None: deleting `key`): the index where `key` is or goes, whether it is
    there, the leaf's size once the edit is made, and whether the edit
    fits: its cell within MAX_LEAF_CELL (else the value belongs in an
    overflow chain) and the size within the leaf's bounds, so no split or
    merge follows (a `root` leaf has no minimum)."""
    keys = leaf.keys
    i = bisect_left(keys, key)
    found = i < len(keys) and keys[i] == key
    size = leaf.size
    if found:
        size -= leaf_cell_size(key, leaf.vals[i])
    cell = 0 if value is None else leaf_cell_size(key, value)
    size += cell
    return i, found, size, cell <= MAX_LEAF_CELL and size <= USABLE and (root or size >= LEAF_MIN_FILL)


def apply_leaf_edit(entry: TreeEntry, leaf: Node, plan: tuple[int, bool, int, bool], key: bytes,
                    value: bytes | Overflow | None) -> None:
    """Make the edit `plan_leaf_edit` planned, and count a key added or removed."""
    i, found, size, _ = plan
    if value is None:
        del leaf.keys[i]
        del leaf.vals[i]
        entry.count -= 1
    elif found:
        leaf.vals[i] = value
    else:
        leaf.keys.insert(i, key)
        leaf.vals.insert(i, value)
        entry.count += 1
    leaf.size = size


def _descend(txn: Txn, root: int, key: bytes) -> tuple[list, int]:
    """The path of (page, node, child index) from the root, and the leaf's
    page id (the caller takes the leaf through `txn.node` or `txn.modify`).
    Cached internal nodes are read without a pin (the writer is alone on the
    tree); whoever changes one takes it again through `txn.modify`."""
    path = []
    pid = root
    peek = txn.pool.peek
    pins = txn.pins()  # a batch keeps its leaves pinned: take them without asking the pool
    node = peek(pid) or txn.node(pid)
    while not node.leaf:
        if len(path) > MAX_HEIGHT:
            raise _too_deep(root)
        i = bisect_right(node.keys, key)
        path.append((pid, node, i))
        pid = node.children[i]
        node = pins.get(pid) or peek(pid) or txn.node(pid)
    return path, pid


def put(txn: Txn, name: str, key: bytes, value: bytes) -> bool:
    """Insert or overwrite; True when the key is new. A value too large for
    a leaf cell goes to an overflow chain; a tree without pages gets its root."""
    entry = txn.entry(name)
    root = entry.root or create_root(txn, name)
    path, pid = _descend(txn, root, key)
    leaf = txn.modify(pid)
    plan = plan_leaf_edit(leaf, key, value, not path)
    val: bytes | Overflow = value
    if not plan[3] and not inline_fits(len(key), len(value)):
        # the chain's pages may evict the path's unpinned nodes: `_fix` takes
        # each again by page id, and the leaf is pinned
        val = txn.write_overflow(value)
        plan = plan_leaf_edit(leaf, key, val, not path)
    found = plan[1]
    if found:
        old = leaf.vals[plan[0]]
        if type(old) is Overflow:
            free_overflow(txn.pool, txn.free, old)
    apply_leaf_edit(entry, leaf, plan, key, val)
    if not plan[3]:
        _fix(txn, name, path, pid, leaf)
    return not found


def delete(txn: Txn, name: str, key: bytes) -> bool:
    entry = txn.entry(name)
    if not entry.root:
        return False
    path, pid = _descend(txn, entry.root, key)
    leaf = txn.node(pid)
    plan = plan_leaf_edit(leaf, key, None, not path)
    if not plan[1]:
        return False
    txn.modify(pid)
    old = leaf.vals[plan[0]]
    if type(old) is Overflow:
        free_overflow(txn.pool, txn.free, old)
    apply_leaf_edit(entry, leaf, plan, key, None)
    if not plan[3]:
        _fix(txn, name, path, pid, leaf)
    return True


def in_place(pool: BufferPool, root: int, key: bytes, value: bytes | None):
    """Plan a put (`value` bytes) or delete (`value` None) that changes one
    leaf and leaves it within its size bounds, so it needs no split, merge,
    overflow chain, pin or undo copy: the caller logs the commit, then calls
    `apply_in_place`. Returns (page id, leaf, plan of `plan_leaf_edit`), or
    None when the general path must run (an overflow value, old or new; a
    size out of bounds). Writers only: under the write latch nothing else
    uses the pool, and appending to the log does not, so the leaf read here
    stays cached, unpinned, until the plan is applied."""
    peek = pool.peek
    pid = root
    depth = 0
    while True:
        node = peek(pid) or pool.node(pid)
        if node.leaf:
            break
        pid = node.children[bisect_right(node.keys, key)]
        depth += 1
        if depth > MAX_HEIGHT:
            raise _too_deep(root)
    plan = plan_leaf_edit(node, key, value, pid == root)
    if not plan[3] or (plan[1] and type(node.vals[plan[0]]) is Overflow):
        return None
    return pid, node, plan


def apply_in_place(pool: BufferPool, entry: TreeEntry, planned: tuple, key: bytes, value: bytes | None,
                   lsn: int) -> None:
    """Carry out a plan of `in_place` once its commit record is logged at `lsn`
    (the writer), or is being replayed (a reader following the log)."""
    pid, leaf, plan = planned
    apply_leaf_edit(entry, leaf, plan, key, value)
    leaf.lsn = lsn
    pool.node_changed(pid)


def drop(txn: Txn, name: str) -> None:
    """Free every page of the tree and remove it."""
    entry = txn.entry(name)
    if entry.root:
        for pid in walk_pages(txn.pool, entry.root):
            txn.free(pid)
    txn.drop_tree_entry(name)


def _fix(txn: Txn, name: str, path: list, pid: int, node: Node) -> None:
    """Restore size bounds from `node` up to the root."""
    while True:
        if node.size > USABLE:
            sep, rpid = _split(txn, pid, node)
            if not path:
                new_pid, root = txn.new_node(False)
                root.keys = [sep]
                root.children = [pid, rpid]
                root.size = 8 + len(sep)
                txn.entry(name).root = new_pid
                return
            ppid, _, idx = path.pop()
            parent = txn.modify(ppid)
            parent.keys.insert(idx, sep)
            parent.children.insert(idx + 1, rpid)
            parent.size += 8 + len(sep)
            pid, node = ppid, parent
            continue
        if not path:
            if not node.leaf and not node.keys:  # root with one child: shrink the tree
                txn.entry(name).root = node.children[0]
                txn.free(pid)
            return
        if node.size >= (LEAF_MIN_FILL if node.leaf else INTERNAL_MIN_FILL):
            return
        ppid, _, idx = path.pop()
        parent = txn.modify(ppid)
        _rebalance(txn, parent, idx, pid, node)
        pid, node = ppid, parent


def _split(txn: Txn, pid: int, node: Node) -> tuple[bytes, int]:
    syncpoints.reach("btree.split")
    rpid, right = txn.new_node(node.leaf)
    if node.leaf:
        sizes = list(map(leaf_cell_size, node.keys, node.vals))
        i = split_point(sizes)
        right.keys, node.keys = node.keys[i:], node.keys[:i]
        right.vals, node.vals = node.vals[i:], node.vals[:i]
        right.size = sum(sizes[i:])
        node.size -= right.size
        right.next, right.prev = node.next, pid
        if node.next:
            txn.modify(node.next).prev = rpid
        node.next = rpid
        return right.keys[0], rpid
    sizes = [8 + len(k) for k in node.keys]
    m = internal_split_point(sizes)
    sep = node.keys[m]
    right.keys, node.keys = node.keys[m + 1 :], node.keys[:m]
    right.children, node.children = node.children[m + 1 :], node.children[: m + 1]
    right.size = sum(sizes[m + 1 :])
    node.size -= right.size + sizes[m]
    return sep, rpid


def _rebalance(txn: Txn, parent: Node, idx: int, pid: int, node: Node) -> None:
    """`node` (child `idx` of `parent`) is under its minimum: merge it with a
    sibling when both fit in one page, else move cells to balance them."""
    syncpoints.reach("btree.merge")
    if idx > 0:
        s = idx - 1  # separator between left and right
        lpid, rpid = parent.children[s], pid
        left = txn.modify(lpid)
        right = node
    else:
        s = 0
        lpid, rpid = pid, parent.children[1]
        left = node
        right = txn.modify(rpid)
    if lpid == rpid or left.leaf != right.leaf:  # a crafted parent: merging would mix the two
        raise CorruptionError(f"pages {lpid} and {rpid} cannot be siblings")
    sep = parent.keys[s]
    if left.leaf:
        if left.size + right.size <= USABLE:
            left.keys += right.keys
            left.vals += right.vals
            left.size += right.size
            left.next = right.next
            if right.next:
                txn.modify(right.next).prev = lpid
            _remove_separator(parent, s)
            txn.free(rpid)
            return
        keys = left.keys + right.keys
        vals = left.vals + right.vals
        sizes = list(map(leaf_cell_size, keys, vals))
        i = split_point(sizes)
        left.keys, right.keys = keys[:i], keys[i:]
        left.vals, right.vals = vals[:i], vals[i:]
        left.size = sum(sizes[:i])
        right.size = sum(sizes[i:])
        new_sep = right.keys[0]
    else:
        if left.size + 8 + len(sep) + right.size <= USABLE:
            left.keys += [sep] + right.keys
            left.children += right.children
            left.size += 8 + len(sep) + right.size
            _remove_separator(parent, s)
            txn.free(rpid)
            return
        keys = left.keys + [sep] + right.keys
        children = left.children + right.children
        sizes = [8 + len(k) for k in keys]
        m = internal_split_point(sizes)
        left.keys, right.keys = keys[:m], keys[m + 1 :]
        left.children, right.children = children[: m + 1], children[m + 1 :]
        left.size = sum(sizes[:m])
        right.size = sum(sizes[m + 1 :])
        new_sep = keys[m]
    parent.keys[s] = new_sep
    parent.size += len(new_sep) - len(sep)


def _remove_separator(parent: Node, s: int) -> None:
    parent.size -= 8 + len(parent.keys[s])
    del parent.keys[s]
    del parent.children[s + 1]


# -- reads over ranges -------------------------------------------------------------

def chunk(pool: BufferPool, root: int, lo: bytes | None, hi: bytes | None, after: bytes | None,  # noqa: C901 - forward and reverse walks share one body; split by direction
          reverse: bool, limit: int = 256) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Up to `limit` (key, value) pairs in [lo, hi), strictly after `after` in
    the walk's direction; `done` is True when nothing follows them."""
    out: list[tuple[bytes, bytes]] = []
    if not root:
        return out, True
    node = pool.node(root)
    if not reverse:
        seek = after if after is not None else lo
        depth = 0
        while not node.leaf:
            node = pool.node(node.children[bisect_right(node.keys, seek) if seek is not None else 0])
            depth += 1
            if depth > MAX_HEIGHT:
                raise _too_deep(root)
        if after is not None:
            i = bisect_right(node.keys, after)
        else:
            i = bisect_left(node.keys, lo) if lo is not None else 0
        while True:
            keys = node.keys
            n = len(keys)
            while i < n:
                k = keys[i]
                if hi is not None and k >= hi:
                    return out, True
                out.append((k, _value(pool, node.vals[i])))
                i += 1
                if len(out) >= limit:
                    return out, (i == n and not node.next)
            if not node.next:
                return out, True
            node = _next_leaf(pool, node, node.next, out[-1][0] if out else after, True)
            i = 0
    seek = after if after is not None else hi
    depth = 0
    while not node.leaf:
        node = pool.node(node.children[bisect_left(node.keys, seek) if seek is not None else len(node.keys)])
        depth += 1
        if depth > MAX_HEIGHT:
            raise _too_deep(root)
    i = (bisect_left(node.keys, seek) if seek is not None else len(node.keys)) - 1
    while True:
        keys = node.keys
        while i >= 0:
            k = keys[i]
            if lo is not None and k < lo:
                return out, True
            out.append((k, _value(pool, node.vals[i])))
            i -= 1
            if len(out) >= limit:
                return out, (i < 0 and not node.prev)
        if not node.prev:
            return out, True
        node = _next_leaf(pool, node, node.prev, out[-1][0] if out else after, False)
        i = len(node.keys) - 1


def edge(pool: BufferPool, root: int, last: bool) -> tuple[bytes, bytes] | None:
    if not root:
        return None
    node = pool.node(root)
    depth = 0
    while not node.leaf:
        node = pool.node(node.children[-1 if last else 0])
        depth += 1
        if depth > MAX_HEIGHT:
            raise _too_deep(root)
    while not node.keys:  # only an empty root leaf has no keys
        return None
    i = -1 if last else 0
    return node.keys[i], _value(pool, node.vals[i])


# -- whole-tree walks (check, drop, show) ------------------------------------------

def walk_pages(pool: BufferPool, root: int) -> list[int]:
    """Every page of the tree: nodes and overflow pages."""
    out = []
    seen = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            raise CorruptionError(f"page {pid} is reachable twice in the tree at {root}")
        seen.add(pid)
        out.append(pid)
        node = pool.node(pid)
        if node.leaf:
            for v in node.vals:
                if type(v) is Overflow:
                    out += overflow_pages(pool, v)
        else:
            stack += node.children
    return out


def height(pool: BufferPool, root: int) -> int:
    """Levels from the root to the leaves (0: no root page), down the leftmost path."""
    if not root:
        return 0
    node = pool.node(root)
    depth = 1
    while not node.leaf:
        node = pool.node(node.children[0])
        depth += 1
        if depth > MAX_HEIGHT:
            raise _too_deep(root)
    return depth


def levels(pool: BufferPool, root: int, depth: int | None = None) -> list[list[tuple[int, Node]]]:
    """Nodes level by level, root first, left to right; the first `depth` levels only if given."""
    if not root:
        return []
    out: list[list[tuple[int, Node]]] = []
    level = [root]
    seen: set[int] = set()
    while level and (depth is None or len(out) < depth):
        if seen.intersection(level) or len(out) > MAX_HEIGHT:
            raise CorruptionError(f"tree at page {root} has a cycle of child pointers")
        seen.update(level)
        nodes = [(pid, pool.node(pid)) for pid in level]
        out.append(nodes)
        level = [c for _, n in nodes if not n.leaf for c in n.children]
    return out

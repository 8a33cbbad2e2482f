"""`Tree`: an ordered mapping bytes -> bytes over one B+ tree of a
`Database` (docs/api.md), its items and values views, and `_SnapshotTree`,
the tree of a read-only handle, whose every read is one snapshot.

Reads hold the database latch shared; writes go through the database's
write path (`writes.Writes`): one key at a time by `_write_key`, a whole
tree or many keys in one commit by `_write` with a body from `engine.bulk`.
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    ValuesView,
)
from typing import TYPE_CHECKING, Any, TypeVar, overload

from engine import btree, bulk
from engine.arguments import as_bound, as_key, as_value, prefix_end
from engine.catalog import TreeEntry
from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE
from engine.errors import TreeNotEmptyError
from engine.typedefs import BytesLike

if TYPE_CHECKING:
    from engine.db import Database

__all__ = ["Tree"]

_D = TypeVar("_D")  # the type of a default returned for a missing key

_NO_DEFAULT = object()


class Tree(MutableMapping[bytes, bytes]):
    """An ordered mapping bytes -> bytes stored in a B+ tree."""

    __slots__ = ("_db", "name")

    def __init__(self, db: Database, name: str) -> None:
        self._db = db
        self.name = name

    def _entry(self) -> TreeEntry:
        entry = self._db._trees.get(self.name)
        if entry is None:
            raise KeyError(f"tree {self.name!r} was dropped")
        return entry

    def put(self, key: BytesLike, value: BytesLike) -> None:
        # `as_key` and `as_value` run only when the inlined common case fails: a hot path
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = as_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = as_value(value)
        self._db._write_key(self.name, key, value)

    @overload
    def get(self, key: BytesLike, default: None = None) -> bytes | None: ...
    @overload
    def get(self, key: BytesLike, default: _D) -> bytes | _D: ...

    def get(self, key: BytesLike, default: Any = None) -> Any:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = as_key(key)
        db = self._db
        latch = db._latch
        latch.acquire_read()
        try:
            db._ensure_usable()
            value = btree.get(db._pool, self._entry().root, key)
        finally:
            latch.release_read()
        return default if value is None else value

    def delete(self, key: BytesLike) -> bool:
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = as_key(key)
        return self._db._write_key(self.name, key, None)

    def __getitem__(self, key: BytesLike) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: BytesLike, value: BytesLike) -> None:
        self.put(key, value)

    def __delitem__(self, key: BytesLike) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[call-overload]  # a non-bytes key raises TypeError, as get does

    def __len__(self) -> int:
        db = self._db
        db._latch.acquire_read()  # a batch updates the count key by key under the write latch
        try:
            db._ensure_usable()
            return self._entry().count
        finally:
            db._latch.release_read()

    def __iter__(self) -> Iterator[bytes]:
        for k, _ in self.scan():
            yield k

    def __repr__(self) -> str:
        return f"<engine.Tree {self.name!r} of {self._db.path!r}>"

    def items(self) -> ItemsView[bytes, bytes]:
        return _ItemsView(self)

    def values(self) -> ValuesView[bytes]:
        return _ValuesView(self)

    def scan(self, start: BytesLike | None = None, end: BytesLike | None = None, *, reverse: bool = False,
             prefix: BytesLike | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with start <= key < end (and key starting with
        `prefix`), ascending or, with `reverse`, descending. The tree may
        change meanwhile: the walk resumes after the last key it returned."""
        lo, hi, pre = as_bound(start), as_bound(end), as_bound(prefix)
        self._db._ensure_usable()
        self._entry()
        if pre is not None:
            if lo is None or lo < pre:
                lo = pre
            pe = prefix_end(pre)
            if pe is not None and (hi is None or hi > pe):
                hi = pe
        return self._scan(lo, hi, reverse)

    def _scan(self, lo, hi, reverse):
        db = self._db
        after = None
        while True:
            if lo is not None and hi is not None and lo >= hi:
                return
            latch = db._latch
            latch.acquire_read()
            try:
                db._ensure_usable()
                version = db._version
                items, done = btree.chunk(db._pool, self._entry().root, lo, hi, after, reverse)
            finally:
                latch.release_read()
            changed = False
            for k, v in items:
                yield k, v
                after = k
                if db._version != version:
                    changed = True
                    break
            if not changed and (done or not items):
                return

    def first(self) -> tuple[bytes, bytes] | None:
        return self._edge(False)

    def last(self) -> tuple[bytes, bytes] | None:
        return self._edge(True)

    def _edge(self, last: bool):
        db = self._db
        db._latch.acquire_read()
        try:
            db._ensure_usable()
            return btree.edge(db._pool, self._entry().root, last)
        finally:
            db._latch.release_read()

    # -- whole-tree writes (engine.bulk) ------------------------------------------

    def clear(self) -> None:
        """Remove every key in one atomic commit; costs the tree's pages, not its keys."""
        self._db._write(bulk.clear, self.name)

    def load(self, items: Iterable[tuple[BytesLike, BytesLike]]) -> None:
        """Fill this EMPTY tree from (key, value) pairs in strictly ascending
        key order, built bottom-up (packed pages, written once) in ONE atomic
        commit. Every item is checked first: a bad key or value raises as
        `put` would, an out-of-order or repeated key `UnsortedItemsError`, a
        tree holding keys `TreeNotEmptyError`; each changes nothing."""
        keys, vals = bulk.check_items(items, as_key, as_value, MAX_VALUE_SIZE)
        db = self._db
        db._ensure_writable()
        self._entry()
        if not db._write(bulk.load, self.name, keys, vals):
            raise TreeNotEmptyError(f"load: tree {self.name!r} holds {len(self)} keys; load fills an empty tree")

    def update(self, other: Mapping[bytes, BytesLike] | Iterable[tuple[BytesLike, BytesLike]] = (), /,  # type: ignore[override]
               **kw: BytesLike) -> None:
        """Put every item of a mapping or of (key, value) pairs, and of `kw`
        (whose str names raise TypeError, as any str key does), in ONE
        atomic commit; every item is checked first, so a bad one changes
        nothing."""
        if hasattr(other, "keys"):
            mapping: Mapping[bytes, BytesLike] = other  # type: ignore[assignment]
            pairs = [(as_key(k), as_value(mapping[k])) for k in mapping.keys()]
        else:
            pairs = []
            for i, item in enumerate(other):
                try:
                    k, v = item
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"update: item #{i} is not a (key, value) pair") from exc
                pairs.append((as_key(k), as_value(v)))
        pairs += [(as_key(k), as_value(v)) for k, v in kw.items()]
        self._db._ensure_writable()
        self._entry()
        if pairs:
            self._db._write(bulk.update, self.name, pairs)

    @overload
    def pop(self, key: BytesLike) -> bytes: ...
    @overload
    def pop(self, key: BytesLike, default: _D) -> bytes | _D: ...

    def pop(self, key: BytesLike, default: Any = _NO_DEFAULT) -> Any:
        """Remove `key` and return its value in one commit; absent: `default`,
        or KeyError without one (as dict)."""
        key = as_key(key)
        try:
            value = self._db._write(bulk.pop, self.name, key)
        except KeyError:  # the tree was dropped: as if the key were missing
            value = None
        if value is None:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
        return value

    def popitem(self) -> tuple[bytes, bytes]:
        """Remove and return the (key, value) with the smallest key in one
        commit; KeyError when the tree is empty."""
        item = self._db._write(bulk.popitem, self.name)
        if item is None:
            raise KeyError("popitem(): tree is empty")
        return item

    def setdefault(self, key: BytesLike, default: BytesLike | None = None) -> bytes:
        """`t[key]` if present, else store `default` (bytes) and return it,
        atomically. The default None is not a value: TypeError when absent."""
        value = self.get(key)
        if value is not None:
            return value
        return self._db._write(bulk.setdefault, self.name, as_key(key), as_value(default))


class _ItemsView(ItemsView[bytes, bytes]):
    """`Tree.items()`: one scan, not a get per key."""

    __slots__ = ("_tree",)

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree)
        self._tree = tree

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self._tree.scan()

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False  # as dict's items view
        k, v = item
        return self._tree.get(k) == v


class _ValuesView(ValuesView[bytes]):
    """`Tree.values()`: one scan."""

    __slots__ = ("_tree",)

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree)
        self._tree = tree

    def __iter__(self) -> Iterator[bytes]:
        for _, v in self._tree.scan():
            yield v

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, value: object) -> bool:
        return any(v == value for v in self)


class _SnapshotTree(Tree):
    """A tree of a read-only handle: each read is one snapshot (docs/processes.md):
    a get, `len`, `first`/`last`, or a whole scan from its first item until
    it is exhausted or closed."""

    __slots__ = ()

    def _in_snapshot(self, read: Callable[..., Any], *args: Any) -> Any:
        db = self._db
        db._enter()
        try:
            return read(self, *args)
        finally:
            db._leave()

    def get(self, key: BytesLike, default: Any = None) -> Any:
        return self._in_snapshot(Tree.get, key, default)

    def __len__(self) -> int:
        return self._in_snapshot(Tree.__len__)

    def _edge(self, last: bool):
        return self._in_snapshot(Tree._edge, last)

    def _scan(self, lo, hi, reverse):
        db = self._db
        db._enter()
        try:
            yield from Tree._scan(self, lo, hi, reverse)
        finally:
            db._leave()

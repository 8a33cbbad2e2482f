"""The reference model of the public API: `ModelDatabase`, `ModelTree`, `ModelBatch`.

Each tree is a `dict` plus a sorted `list` of its keys, searched with
`bisect`. Nothing is clever, so anything the engine does differently from
this module is an engine bug (or a gap in docs/api.md). The model raises
the same errors as the engine:

| call | error |
|---|---|
| key or value not `bytes`/`bytearray`/`memoryview` | `TypeError` |
| key empty or longer than `MAX_KEY_SIZE` | `KeyTooLargeError` |
| value longer than `MAX_VALUE_SIZE` | `ValueTooLargeError` |
| `t[k]`, `del t[k]` on a missing key | `KeyError` |
| `tree(name, create=False)`, `drop_tree(name)` on a missing tree | `KeyError` |
| tree name not `str` | `TypeError` |
| tree name empty or above 255 UTF-8 bytes | `TreeLimitError` |
| any call after `close()` | `DatabaseClosedError` |
| a batch used outside its one `with` block | `BatchStateError` |
| any write on a read-only database | `ReadOnlyError` |
| `load` of keys not strictly ascending | `UnsortedItemsError` |
| `load` into a tree holding keys | `TreeNotEmptyError` |
| `backup`/`compact` on a read-only database | `ReadOnlyError` |

Checks run in the engine's order: arguments first, then closed, then
read-only, then whether the tree exists.

Iterators re-find their place on every step: each yields the smallest key
after the last one it returned (the largest before it, in reverse), so a
tree may change under an open iterator, as the API allows.
"""

from __future__ import annotations

import bisect
import copy
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from engine.errors import (
    BatchStateError,
    DatabaseClosedError,
    KeyTooLargeError,
    ReadOnlyError,
    TreeLimitError,
    TreeNotEmptyError,
    UnsortedItemsError,
    ValueTooLargeError,
)

__all__ = [
    "MAX_KEY_SIZE",
    "MAX_TREE_NAME_BYTES",
    "MAX_VALUE_SIZE",
    "ModelBatch",
    "ModelCheckReport",
    "ModelDatabase",
    "ModelTree",
]

MAX_KEY_SIZE = 1024  # equal to engine.MAX_KEY_SIZE; keys of 1..1024 bytes are accepted
MAX_VALUE_SIZE = 2**31 - 1  # equal to engine.MAX_VALUE_SIZE: log records carry u32 lengths
MAX_TREE_NAME_BYTES = 255  # a tree name is stored as 1..255 UTF-8 bytes in the metadata page

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _as_bytes(obj: object, what: str) -> bytes:
    """Copy a bytes-like argument to `bytes`; anything else is a `TypeError`."""
    if isinstance(obj, _BYTES_LIKE):
        return bytes(obj)
    raise TypeError(f"{what} must be bytes, bytearray or memoryview, not {type(obj).__name__}")


def check_key(key: object) -> bytes:
    """Validate a key and return it as `bytes`."""
    raw = _as_bytes(key, "key")
    if not 1 <= len(raw) <= MAX_KEY_SIZE:
        raise KeyTooLargeError(f"key length {len(raw)} outside 1..{MAX_KEY_SIZE}")
    return raw


def check_value(value: object) -> bytes:
    """Validate a value and return it as `bytes`."""
    raw = _as_bytes(value, "value")
    if len(raw) > MAX_VALUE_SIZE:
        raise ValueTooLargeError(f"value length {len(raw)} above {MAX_VALUE_SIZE}")
    return raw


def _check_bound(bound: object, what: str) -> bytes | None:
    """Scan bounds are optional byte strings of any length (they are not keys)."""
    if bound is None:
        return None
    return _as_bytes(bound, what)


def check_tree_name(name: object) -> str:
    """Validate a tree name: a `str` of 1..255 UTF-8 bytes."""
    if not isinstance(name, str):
        raise TypeError(f"tree name must be str, not {type(name).__name__}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TreeLimitError(f"tree name {name!r} is not valid UTF-8") from exc
    if not 1 <= size <= MAX_TREE_NAME_BYTES:
        raise TreeLimitError(f"tree name is {size} UTF-8 bytes; must be 1..{MAX_TREE_NAME_BYTES}")
    return name


def _next_key(
    keys: list[bytes],
    last: bytes | None,
    lo: bytes | None,
    hi: bytes | None,
    pre: bytes | None,
    reverse: bool,
) -> bytes | None:
    """The first key of sorted `keys` in [lo, hi) starting with `pre` that
    comes after `last` in walk order, or None. Keys with a given prefix are
    contiguous in sorted order, which is what lets the walk stop early."""
    if reverse:
        pos = len(keys) if last is None else bisect.bisect_left(keys, last)
        if hi is not None:
            pos = min(pos, bisect.bisect_left(keys, hi))
        for i in range(pos - 1, -1, -1):
            key = keys[i]
            if (lo is not None and key < lo) or (pre is not None and key < pre):
                return None
            if pre is None or key.startswith(pre):
                return key
        return None
    pos = 0 if last is None else bisect.bisect_right(keys, last)
    if lo is not None:
        pos = max(pos, bisect.bisect_left(keys, lo))
    if pre is not None:
        pos = max(pos, bisect.bisect_left(keys, pre))
    if pos < len(keys):
        key = keys[pos]
        if (hi is None or key < hi) and (pre is None or key.startswith(pre)):
            return key
    return None


class _Store:
    """The contents of one tree: a dict and the sorted list of its keys."""

    __slots__ = ("data", "keys")

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.data:
            bisect.insort(self.keys, key)
        self.data[key] = value

    def delete(self, key: bytes) -> bool:
        if key not in self.data:
            return False
        del self.data[key]
        del self.keys[bisect.bisect_left(self.keys, key)]
        return True

    def check_invariants(self) -> list[str]:
        """Return every broken rule:
        - `keys` is strictly ascending;
        - `keys` holds exactly the keys of `data`.
        """
        problems = []
        if any(a >= b for a, b in zip(self.keys, self.keys[1:], strict=False)):
            problems.append("keys list is not strictly ascending")
        if set(self.keys) != set(self.data) or len(self.keys) != len(self.data):
            problems.append("keys list differs from the dict's keys")
        return problems


@dataclass
class ModelCheckReport:
    """Same fields as `engine.CheckReport`; the model has no pages, so the
    page counts are 0 and `ok` reflects only the model's own invariants."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    pages_allocated: int = 0
    pages_reachable: int = 0
    pages_free: int = 0
    pages_leaked: int = 0


class ModelTree(MutableMapping[bytes, bytes]):
    """A named, ordered mapping of `bytes` to `bytes`; the twin of `engine.Tree`.

    A handle names its tree; after `drop_tree` the handle raises `KeyError`.
    """

    def __init__(self, db: ModelDatabase, name: str) -> None:
        self._db = db
        self.name = name

    def __repr__(self) -> str:
        return f"ModelTree({self.name!r})"

    # -- access --------------------------------------------------------------

    def _store(self, write: bool = False) -> _Store:
        """The tree's contents, after the closed (and, for writes, read-only)
        checks; a dropped tree raises KeyError. Callers validate their
        arguments first, as the engine does."""
        self._db._check_open()
        if write:
            self._db._check_writable()
        store = self._db._trees.get(self.name)
        if store is None:
            raise KeyError(self.name)
        return store

    # -- single-key operations -----------------------------------------------

    def put(self, key: object, value: object) -> None:
        """Insert or overwrite."""
        raw_key, raw_value = check_key(key), check_value(value)
        self._store(write=True).put(raw_key, raw_value)

    def get(self, key: object, default: Any = None) -> Any:
        """The value of `key`, or `default`."""
        raw = check_key(key)
        return self._store().data.get(raw, default)

    def delete(self, key: object) -> bool:
        """Remove `key`; True if it existed."""
        raw = check_key(key)
        return self._store(write=True).delete(raw)

    def __getitem__(self, key: object) -> bytes:
        raw = check_key(key)
        store = self._store()
        try:
            return store.data[raw]
        except KeyError:
            raise KeyError(raw) from None

    def __setitem__(self, key: object, value: object) -> None:
        self.put(key, value)

    def __delitem__(self, key: object) -> None:
        raw = check_key(key)
        if not self._store(write=True).delete(raw):
            raise KeyError(raw)

    def __contains__(self, key: object) -> bool:
        raw = check_key(key)
        return raw in self._store().data

    def __len__(self) -> int:
        return len(self._store().data)

    # -- ordered access ------------------------------------------------------

    def first(self) -> tuple[bytes, bytes] | None:
        """The smallest (key, value), or None when empty."""
        store = self._store()
        if not store.keys:
            return None
        key = store.keys[0]
        return key, store.data[key]

    def last(self) -> tuple[bytes, bytes] | None:
        """The largest (key, value), or None when empty."""
        store = self._store()
        if not store.keys:
            return None
        key = store.keys[-1]
        return key, store.data[key]

    def scan(
        self,
        start: object = None,
        end: object = None,
        *,
        reverse: bool = False,
        prefix: object = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with start <= key < end and key starting with
        `prefix`, ascending (descending if `reverse`). Arguments are checked
        now; the walk happens lazily and tolerates changes to the tree."""
        lo = _check_bound(start, "start")
        hi = _check_bound(end, "end")
        pre = _check_bound(prefix, "prefix")
        self._store()
        return self._walk(lo, hi, pre, reverse)

    def _walk(
        self, lo: bytes | None, hi: bytes | None, pre: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        last: bytes | None = None
        while True:
            store = self._store()
            found = _next_key(store.keys, last, lo, hi, pre, reverse)
            if found is None:
                return
            last = found
            yield found, store.data[found]

    def __iter__(self) -> Iterator[bytes]:
        self._store()
        return (key for key, _ in self._walk(None, None, None, False))

    # keys(), values() and items() are the MutableMapping views: re-iterable,
    # sized, and walking the tree afresh each time, as the engine's are.

    # -- whole-tree writes -----------------------------------------------------

    def clear(self) -> None:
        """Remove every key at once (one commit in the engine)."""
        store = self._store(write=True)
        store.data.clear()
        store.keys.clear()

    def load(self, items: Any) -> None:
        """Fill an empty tree from (key, value) pairs in strictly ascending key
        order. Every item is checked first (bad key/value as `put`, a key not
        above the one before it `UnsortedItemsError`), then closed, read-only
        and a missing tree, then a tree holding keys (`TreeNotEmptyError`)."""
        pairs: list[tuple[bytes, bytes]] = []
        for item in items:
            k, v = item
            raw_key, raw_value = check_key(k), check_value(v)
            if pairs and raw_key <= pairs[-1][0]:
                raise UnsortedItemsError("keys must be strictly ascending")
            pairs.append((raw_key, raw_value))
        store = self._store(write=True)
        if store.data:
            raise TreeNotEmptyError("load fills an empty tree")
        for k, v in pairs:
            store.put(k, v)

    def update(self, other: Any = (), /, **kw: Any) -> None:
        """Put every item of a mapping or of (key, value) pairs and of `kw`,
        all checked first (a bad one changes nothing); one commit in the engine.
        A write even when there is nothing to put (ReadOnlyError)."""
        if hasattr(other, "keys"):
            pairs = [(check_key(k), check_value(other[k])) for k in other.keys()]
        else:
            pairs = []
            for item in other:
                k, v = item
                pairs.append((check_key(k), check_value(v)))
        pairs += [(check_key(k), check_value(v)) for k, v in kw.items()]
        store = self._store(write=True)
        for k, v in pairs:
            store.put(k, v)

    def pop(self, key: object, *default: Any) -> Any:
        """Remove `key` and return its value; absent (or the tree dropped):
        the default, or KeyError. A write: ReadOnlyError even on a miss."""
        raw = check_key(key)
        self._db._check_open()
        self._db._check_writable()
        store = self._db._trees.get(self.name)
        if store is not None and raw in store.data:
            value = store.data[raw]
            store.delete(raw)
            return value
        if default:
            return default[0]
        raise KeyError(raw)

    def popitem(self) -> tuple[bytes, bytes]:
        """Remove and return the item with the smallest key; KeyError when empty."""
        store = self._store(write=True)
        if not store.keys:
            raise KeyError("popitem(): tree is empty")
        key = store.keys[0]
        value = store.data[key]
        store.delete(key)
        return key, value

    def setdefault(self, key: object, default: Any = None) -> Any:
        """`self[key]` if present, else store `default` (which must be bytes)."""
        raw = check_key(key)
        value = self.get(raw)
        if value is not None:
            return value
        raw_value = check_value(default)
        self._store(write=True).put(raw, raw_value)
        return raw_value

    def check_invariants(self) -> list[str]:
        """Return every broken rule of this tree's store (see `_Store`)."""
        return self._store().check_invariants()


class ModelBatch:
    """Writes collected inside `with db.batch() as b:` and applied together on
    a clean exit; an exception in the block discards everything. A batch is
    used in one `with` block only:

    | state | `__enter__`     | `put`/`delete`  | `__exit__`                    |
    |-------|-----------------|-----------------|-------------------------------|
    | new   | -> open         | BatchStateError | -                             |
    | open  | BatchStateError | recorded        | -> done (applied or discarded) |
    | done  | BatchStateError | BatchStateError | -                             |

    `put`/`delete` check closed, then the state, then their arguments."""

    def __init__(self, db: ModelDatabase) -> None:
        self._db = db
        self._ops: list[tuple[str, str, bytes, bytes | None]] = []
        self._state = "new"

    def __enter__(self) -> ModelBatch:
        self._db._check_open()
        self._db._check_writable()
        if self._state != "new":
            raise BatchStateError(f"a batch is used in one with-block only ({self._state})")
        self._state = "open"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != "open":
            return
        self._state = "done"
        ops, self._ops = self._ops, []
        if exc_type is not None or not ops:
            return
        self._db._check_open()
        for op, name, key, value in ops:
            if op == "put":
                assert value is not None, "ModelBatch.__exit__: put without value"
                self._db._trees.setdefault(name, _Store()).put(key, value)
            else:
                store = self._db._trees.get(name)
                if store is not None:
                    store.delete(key)

    def _record(self, op: str, name: object, key: object, value: object) -> None:
        self._db._check_open()
        if self._state != "open":
            raise BatchStateError(f"batch used outside its with-block ({self._state})")
        tree_name = check_tree_name(name)
        raw_key = check_key(key)
        raw_value = check_value(value) if op == "put" else None
        self._ops.append((op, tree_name, raw_key, raw_value))

    def put(self, tree: object, key: object, value: object) -> None:
        """Record a put into tree `tree` (created at commit if missing)."""
        self._record("put", tree, key, value)

    def delete(self, tree: object, key: object) -> None:
        """Record a delete from tree `tree` (a missing key or tree is a no-op)."""
        self._record("delete", tree, key, None)


class ModelDatabase:
    """The twin of `engine.Database`: named trees, batches, close, read-only."""

    def __init__(self, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self._trees: dict[str, _Store] = {}
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ModelDatabase({state}, trees={sorted(self._trees)})"

    def _check_open(self) -> None:
        if self._closed:
            raise DatabaseClosedError("database is closed")

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("database is read-only")

    # -- trees ---------------------------------------------------------------

    def tree(self, name: object = "default", create: bool = True) -> ModelTree:
        """A handle on tree `name`, created if missing unless `create` is False."""
        tree_name = check_tree_name(name)
        self._check_open()
        if tree_name not in self._trees:
            if not create:
                raise KeyError(tree_name)
            self._check_writable()
            self._trees[tree_name] = _Store()
        return ModelTree(self, tree_name)

    def trees(self) -> list[str]:
        """Sorted tree names."""
        self._check_open()
        return sorted(self._trees)

    def drop_tree(self, name: object) -> None:
        """Remove a tree and its contents; KeyError if missing."""
        tree_name = check_tree_name(name)
        self._check_open()
        self._check_writable()
        if tree_name not in self._trees:
            raise KeyError(tree_name)
        del self._trees[tree_name]

    # -- durability and lifecycle --------------------------------------------

    def batch(self) -> ModelBatch:
        """An all-or-nothing group of writes (use as a context manager)."""
        self._check_open()
        self._check_writable()
        return ModelBatch(self)

    def commit(self) -> None:
        """Nothing to make durable; checks the database is open."""
        self._check_open()

    def checkpoint(self) -> None:
        """Nothing to write home; checks the database is open."""
        self._check_open()

    def backup(self, dest_path: object) -> None:
        """The engine's checks only (the model has no file): a path, open.
        A read-only handle backs up the state it sees too. Tests compare the
        engine's copy with `snapshot()`."""
        os.fspath(dest_path)  # type: ignore[call-overload]
        self._check_open()

    def compact(self) -> dict[str, int]:
        """Contents unchanged; the model has no pages to give back."""
        self._check_open()
        self._check_writable()
        return {"pages_before": 0, "pages_after": 0}

    def check(self, strict: bool = False) -> ModelCheckReport:
        """The model's own invariants as a report shaped like `engine.CheckReport`."""
        self._check_open()
        problems = self.check_invariants()
        if strict and problems:
            raise AssertionError("; ".join(problems))
        return ModelCheckReport(ok=not problems, problems=problems)

    def check_invariants(self) -> list[str]:
        """Return every broken rule:
        - every tree name is valid;
        - every tree's store is consistent (see `_Store.check_invariants`).
        """
        problems = []
        for name, store in self._trees.items():
            try:
                check_tree_name(name)
            except (TypeError, TreeLimitError) as exc:
                problems.append(f"tree {name!r}: {exc}")
            problems.extend(f"tree {name!r}: {p}" for p in store.check_invariants())
        return problems

    def close(self) -> None:
        """Idempotent; every later call raises `DatabaseClosedError`."""
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def reopen(self, *, read_only: bool = False) -> ModelDatabase:
        """A new open database holding this one's contents, as reopening the
        file would give; works on a closed database."""
        other = type(self)(read_only=read_only)
        other._trees = copy.deepcopy(self._trees)
        return other

    def snapshot(self) -> dict[str, dict[bytes, bytes]]:
        """Every tree's contents as plain dicts (for assertions)."""
        self._check_open()
        return {name: dict(store.data) for name, store in self._trees.items()}

    @classmethod
    def from_snapshot(cls, trees: dict[str, dict[bytes, bytes]]) -> ModelDatabase:
        """A database holding `trees` (the inverse of `snapshot`), e.g. the
        contents an engine database was found with."""
        db = cls()
        for name, items in trees.items():
            db.tree(name).update(items)
        return db

    def __enter__(self) -> ModelDatabase:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

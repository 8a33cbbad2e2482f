"""`Batch`: writes collected in memory and applied as one atomic commit
(docs/api.md), through the database's write path (`writes.apply_batch`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.arguments import NAMES_SEEN, as_key, as_tree_name, as_value
from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE
from engine.errors import BatchStateError
from engine.typedefs import BytesLike
from engine.walformat import OP_DELETE, OP_PUT
from engine.writes import apply_batch

if TYPE_CHECKING:
    from engine.db import Database

__all__ = ["Batch"]


class Batch:
    """Writes collected in memory and applied as one atomic commit on exit.

    A batch is used inside its `with` block only; anything else raises
    `BatchStateError` at once and records nothing (checked after the
    database is found open, before the arguments)::

        NEW --__enter__--> OPEN --__exit__--> DONE

    | state | `__enter__`        | `put`/`delete` | `__exit__`                              |
    |-------|--------------------|----------------|-----------------------------------------|
    | NEW   | -> OPEN            | BatchStateError | -                                      |
    | OPEN  | BatchStateError    | recorded       | -> DONE: applied, or discarded on error |
    | DONE  | BatchStateError    | BatchStateError | -                                      |
    """

    __slots__ = ("_db", "_ops", "_state")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list = []
        self._state = _NEW

    def _recording(self) -> None:
        db = self._db
        if db._closed:
            db._ensure_usable()
        if self._state is not _OPEN:
            raise BatchStateError(f"batch used outside its with-block ({self._state})")

    def put(self, tree: str, key: BytesLike, value: BytesLike) -> None:
        # `_recording`, `as_tree_name`, `as_key` and `as_value` run only when the inlined common case fails
        if self._state is not _OPEN or self._db._closed:
            self._recording()
        if tree not in NAMES_SEEN:
            tree = as_tree_name(tree)
            if len(NAMES_SEEN) < 1024:
                NAMES_SEEN.add(tree)
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = as_key(key)
        if type(value) is not bytes or len(value) > MAX_VALUE_SIZE:
            value = as_value(value)
        self._ops.append((OP_PUT, tree, key, value))

    def delete(self, tree: str, key: BytesLike) -> None:
        self._recording()
        self._ops.append((OP_DELETE, as_tree_name(tree), as_key(key), None))

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        self._db._ensure_writable()
        if self._state is not _NEW:
            raise BatchStateError(f"a batch is used in one with-block only ({self._state})")
        self._state = _OPEN
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._state is not _OPEN:  # called by hand, out of turn
            return
        self._state = _DONE
        ops, self._ops = self._ops, []
        if exc_type is None and ops:
            self._db._write(apply_batch, ops)


_NEW, _OPEN, _DONE = "new", "open", "done"  # Batch states

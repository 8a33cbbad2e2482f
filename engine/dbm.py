"""Stdlib `dbm` compatibility: `engine.dbm.open(file, flag="r", mode=0o666)`.

The returned object behaves like the stdlib `dbm.gnu`/`dbm.dumb` objects, so
`shelve.Shelf(engine.dbm.open(path, "c"))` works. Keys and values are `bytes`
(`str` is encoded as UTF-8) kept in the tree "default" of an ordinary
DragonDB file, readable with `engine.open` and the `dragondb` command.

Flags: "r" read-only, "w" read-write (file must exist), "c" read-write
(created if missing), "n" always a new, empty database. A second letter "f"
(fast) commits with sync="normal"; "s" (synchronized) with sync="full", the
default.

Errors: `engine.dbm.error` is both an `engine.DragonDBError` and an
`OSError` (the stdlib tests ask `issubclass(module.error, OSError)`). An
engine error (or `FileNotFoundError` on open) reaches the caller as an
instance of both `error` and its original class, so `except dbm.error`,
`except engine.dbm.error` and `except engine.ReadOnlyError` all work.
Argument errors stay what they are: `TypeError`.

The engine forbids the empty key; dbm allows it, so it lives alone in the
tree "dbm.empty-key" (created only when used). Keys longer than the
engine's `MAX_KEY_SIZE` are allowed too, as `dbm.dumb`, `dbm.gnu` and
`dbm.sqlite3` allow them: such a key lives in the tree "dbm.long-keys" under
its SHA-256, with the whole key stored before the value (a u32 length, the
key, the value), so it is checked on every read and listed by `keys()`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator, MutableMapping
from typing import Any, NoReturn, TypeVar, overload

import engine
from engine.errors import (
    DatabaseClosedError,
    DragonDBError,
    NotADatabaseError,
    ReadOnlyError,
)

__all__ = ["error", "open", "Dbm"]

_TREE = "default"
_EMPTY_KEY_TREE = "dbm.empty-key"
_EMPTY_KEY_SLOT = b"\x00"  # the one key of _EMPTY_KEY_TREE; stands for b""
_LONG_KEY_TREE = "dbm.long-keys"
_LONG = struct.Struct("<I")  # length of the whole key stored before its value
_FLAG_MESSAGE = "Flag must be one of 'r', 'w', 'c', or 'n'"
_SYNC_BY_MODIFIER = {"": "full", "s": "full", "f": "normal"}
_D = TypeVar("_D")  # the type of a default returned for a missing key


class error(DragonDBError, OSError):  # noqa: N801 - the stdlib name
    """A dbm-level failure: closed object, write on a read-only object, a
    file that is missing, locked or not a database."""


_combined: dict[type[BaseException], type[error]] = {}


def _dbm_error(exc: BaseException) -> error:
    """`exc` re-made as an instance of both `error` and its own class."""
    cls = type(exc)
    if isinstance(exc, error):
        return exc
    combined = _combined.get(cls)
    if combined is None:
        combined = type(cls.__name__, (error, cls), {"__module__": __name__})
        _combined[cls] = combined
    new = combined(*exc.args)
    return new


def _raise(cls: type[DragonDBError], message: str) -> NoReturn:
    raise _dbm_error(cls(message))


def _encode(obj: object, what: str) -> bytes:
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"dbm {what}s must be bytes or str, not {type(obj).__name__}")


def _translated(exc: Exception) -> Exception:
    """Engine state errors become dbm errors; argument errors pass as they are."""
    if isinstance(exc, DragonDBError) and not isinstance(exc, ValueError):
        return _dbm_error(exc)
    return exc


class Dbm(MutableMapping[bytes, bytes]):
    """A dbm object over one DragonDB database (see the module docstring)."""

    def __init__(self, db: Any, read_only: bool) -> None:
        self._db: Any = db
        self._read_only = read_only
        # A read-only file without the tree reads as empty.
        self._main = self._tree(_TREE, create=not read_only)

    # -- state checks ----------------------------------------------------------

    def _live(self) -> Any:
        db = self._db  # read once: close() in another thread may clear it
        if db is None:
            _raise(DatabaseClosedError, "DBM object has already been closed")
        return db

    def _writable(self) -> Any:
        db = self._live()
        if self._read_only:
            _raise(ReadOnlyError, "The database is opened for reading only")
        return db

    def _tree(self, name: str, create: bool) -> Any:
        """The tree `name`, or None if it is missing and not to be created."""
        try:
            return self._live().tree(name, create=create)
        except KeyError:
            return None

    def _locate(self, raw: bytes, create: bool = False) -> tuple[Any, bytes]:
        """(tree, engine key) for a dbm key; the tree is None if missing."""
        if 0 < len(raw) <= engine.MAX_KEY_SIZE:
            return self._main, raw
        if raw:
            return self._tree(_LONG_KEY_TREE, create), hashlib.sha256(raw).digest()
        return self._tree(_EMPTY_KEY_TREE, create), _EMPTY_KEY_SLOT

    @staticmethod
    def _long(raw: bytes) -> bool:
        return len(raw) > engine.MAX_KEY_SIZE

    @staticmethod
    def _unwrap(raw: bytes, stored: bytes | None) -> bytes | None:
        """The value of long key `raw` from its stored record (None: not this key)."""
        if stored is None:
            return None
        (n,) = _LONG.unpack_from(stored)
        if stored[4 : 4 + n] != raw:
            return None
        return stored[4 + n :]

    # -- mapping ---------------------------------------------------------------

    def __getitem__(self, key: object) -> bytes:
        raw = _encode(key, "key")
        self._live()
        try:
            tree, slot = self._locate(raw)
            if tree is None:
                raise KeyError(key)
            if self._long(raw):
                value = self._unwrap(raw, tree.get(slot))
                if value is None:
                    raise KeyError(key)
                return value
            return tree[slot]
        except KeyError:
            raise KeyError(key) from None
        except Exception as exc:
            raise _translated(exc) from exc

    def __setitem__(self, key: object, value: object) -> None:
        raw = _encode(key, "key")
        data = _encode(value, "value")
        self._writable()
        try:
            tree, slot = self._locate(raw, create=True)
            tree.put(slot, _LONG.pack(len(raw)) + raw + data if self._long(raw) else data)
        except Exception as exc:
            raise _translated(exc) from exc

    def __delitem__(self, key: object) -> None:
        raw = _encode(key, "key")
        self._writable()
        try:
            tree, slot = self._locate(raw)
            if tree is not None and self._long(raw) and self._unwrap(raw, tree.get(slot)) is None:
                tree = None
            found = tree is not None and tree.delete(slot)
        except Exception as exc:
            raise _translated(exc) from exc
        if not found:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        raw = _encode(key, "key")
        self._live()
        try:
            tree, slot = self._locate(raw)
            if tree is not None and self._long(raw):
                return self._unwrap(raw, tree.get(slot)) is not None
            return tree is not None and slot in tree
        except Exception as exc:
            raise _translated(exc) from exc

    def __len__(self) -> int:
        self._live()
        try:
            trees = (self._main, self._tree(_EMPTY_KEY_TREE, create=False),
                     self._tree(_LONG_KEY_TREE, create=False))
            return sum(len(tree) for tree in trees if tree is not None)
        except Exception as exc:
            raise _translated(exc) from exc

    def __iter__(self) -> Iterator[bytes]:
        """Keys in byte order (the empty key first, keys longer than
        `MAX_KEY_SIZE` last); tolerates writes meanwhile."""
        self._live()
        return self._iter_keys()

    def _iter_keys(self) -> Iterator[bytes]:
        try:
            if b"" in self:
                yield b""
            if self._main is not None:
                yield from self._main
            long_keys = self._tree(_LONG_KEY_TREE, create=False)
            if long_keys is not None:
                for stored in long_keys.values():
                    (n,) = _LONG.unpack_from(stored)
                    yield stored[4 : 4 + n]
        except Exception as exc:
            raise _translated(exc) from exc

    def keys(self) -> list[bytes]:  # type: ignore[override]
        """All keys, as a list (as the stdlib dbm modules return)."""
        return list(iter(self))

    def items(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        """All (key, value) pairs, as a list."""
        return [(key, self[key]) for key in self.keys()]

    def values(self) -> list[bytes]:  # type: ignore[override]
        """All values, as a list."""
        return [value for _, value in self.items()]

    @overload
    def get(self, key: str | bytes, default: None = None) -> bytes | None: ...
    @overload
    def get(self, key: str | bytes, default: _D) -> bytes | _D: ...

    def get(self, key: object, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: object, default: object = b"") -> bytes:
        """`self[key]`, after storing `default` there if the key was missing."""
        try:
            return self[key]
        except KeyError:
            self[key] = default
            return self[key]

    def clear(self) -> None:
        """Remove every key."""
        db = self._writable()
        try:
            for name in (_TREE, _EMPTY_KEY_TREE, _LONG_KEY_TREE):
                if name in db.trees():
                    db.drop_tree(name)
            self._main = db.tree(_TREE)
        except Exception as exc:
            raise _translated(exc) from exc

    # -- lifecycle -------------------------------------------------------------

    def sync(self) -> None:
        """Make every write so far durable."""
        try:
            self._live().commit()
        except Exception as exc:
            raise _translated(exc) from exc

    def close(self) -> None:
        """Close the database; idempotent."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> Dbm:
        self._live()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else ("read-only" if self._read_only else "open")
        return f"<engine.dbm.Dbm {state}>"


def _parse_flag(flag: object) -> tuple[str, str]:
    if not isinstance(flag, str) or not 1 <= len(flag) <= 2:
        raise ValueError(_FLAG_MESSAGE)
    kind, modifier = flag[0], flag[1:]
    if kind not in "rwcn" or modifier not in _SYNC_BY_MODIFIER:
        raise ValueError(_FLAG_MESSAGE)
    return kind, _SYNC_BY_MODIFIER[modifier]


def _apply_mode(paths: list[str], mode: int) -> None:
    """Give newly created files `mode` minus the umask, as dbm.dumb does."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        try:
            os.chmod(path, mode & ~umask)
        except FileNotFoundError:
            pass


def _remove(path: str) -> None:
    for name in (path, path + "-wal"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def _open_new(path: str, sync: str) -> tuple[Any, bool]:
    """Flag "n": an empty database at `path`, whatever was there before.
    Returns the database and whether its files were made anew."""
    try:
        db = engine.open(path, create=False, sync=sync)
    except (FileNotFoundError, NotADatabaseError):
        _remove(path)
        return engine.open(path, create=True, sync=sync), True
    try:
        # Emptying through the engine keeps its lock: no other writer can
        # be holding a file we are about to reuse.
        for name in db.trees():
            db.drop_tree(name)
    except BaseException:
        db.close()
        raise
    return db, False


def open(file: str | bytes | os.PathLike[Any], flag: str = "r", mode: int = 0o666) -> Dbm:  # noqa: A001
    """Open a DragonDB file as a dbm object (see the module docstring)."""
    kind, sync = _parse_flag(flag)
    path = os.fsdecode(file)
    fresh = [name for name in (path, path + "-wal") if not os.path.exists(name)]
    try:
        if kind == "r":
            db = engine.open(path, create=False, read_only=True, sync=sync)
        elif kind == "w":
            db = engine.open(path, create=False, sync=sync)
        elif kind == "c":
            db = engine.open(path, create=True, sync=sync)
        else:
            db, recreated = _open_new(path, sync)
            fresh = [path, path + "-wal"] if recreated else []
    except (DragonDBError, FileNotFoundError) as exc:
        if isinstance(exc, ValueError):
            raise
        raise _dbm_error(exc) from exc
    try:
        if kind != "r":
            _apply_mode(fresh, mode)
        return Dbm(db, read_only=kind == "r")
    except BaseException as exc:
        db.close()
        if isinstance(exc, DragonDBError) and not isinstance(exc, ValueError):
            raise _dbm_error(exc) from exc
        raise

"""One exception hierarchy for the engine, rooted at `DragonDBError`.

Each class says when it is raised and what state it leaves behind. Where a
caller already catches a stdlib type, the engine error inherits it too
(`StorageIOError` is an `OSError`, `KeyTooLargeError` a `ValueError`).
A missing key is a plain `KeyError`, as with `dict`.
"""

from __future__ import annotations

__all__ = [
    "DragonDBError",
    "StorageIOError",
    "NeedsRecoveryError",
    "CorruptionError",
    "NotADatabaseError",
    "DatabaseLockedError",
    "DatabaseClosedError",
    "ForkedError",
    "BatchStateError",
    "ReadOnlyError",
    "KeyTooLargeError",
    "BufferPoolFullError",
    "TreeLimitError",
    "ValueTooLargeError",
    "TreeNotEmptyError",
    "UnsortedItemsError",
    "BackupTargetError",
    "OptionError",
]


class DragonDBError(Exception):
    """Base of every engine error. Not raised directly."""

    def __init__(self, *args: object) -> None:
        if type(self) is DragonDBError:
            raise TypeError("DragonDBError is abstract; raise a subclass")
        super().__init__(*args)


class StorageIOError(DragonDBError, OSError):
    """An I/O call failed. The operation had no effect: nothing half-applied,
    no page leaked, no frame left pinned."""


class NeedsRecoveryError(StorageIOError):
    """A sync of the log or data file failed, so the engine cannot know what
    is durable. Every later operation raises this until the database is
    closed and reopened, which recovers to the last durable commit."""


class CorruptionError(DragonDBError):
    """A checksum or structure check failed. Nothing wrong is returned; the
    database is unchanged by the failed read."""


class NotADatabaseError(DragonDBError):
    """The file is not a DragonDB database (wrong magic, version or size).
    Nothing on disk was written."""


class DatabaseLockedError(DragonDBError):
    """Another writer (this process or another) holds the file lock.
    Nothing was opened."""


class DatabaseClosedError(DragonDBError):
    """The database (or a tree, batch or iterator of it) was used after
    `close()`, or while `close()` ran. The call had no effect."""


class ForkedError(DatabaseClosedError):
    """A handle opened by a parent process was used in a child made by
    `os.fork()`. The call had no effect, and the parent's handle and files
    are unharmed; open the database again in the child."""


class BatchStateError(DragonDBError, RuntimeError):
    """A batch was used outside its `with` block: `put`/`delete` before
    entering or after leaving it, or a second `with`. Nothing was recorded
    or applied."""


class ReadOnlyError(DragonDBError):
    """A write on a database opened with `read_only=True`. Nothing changed."""


class KeyTooLargeError(DragonDBError, ValueError):
    """A key is empty or longer than `MAX_KEY_SIZE`. Nothing changed."""


class BufferPoolFullError(DragonDBError):
    """Every frame of the buffer pool is pinned, so no page can be brought
    in. The request had no effect."""


class TreeLimitError(DragonDBError, ValueError):
    """A tree name is empty, too long, or the metadata page has no room for
    another tree. Nothing changed."""


class ValueTooLargeError(DragonDBError, ValueError):
    """A value is longer than `MAX_VALUE_SIZE`. Nothing changed."""


class TreeNotEmptyError(DragonDBError, ValueError):
    """`Tree.load` on a tree that holds keys: a bulk load builds a tree from
    nothing. Nothing changed."""


class UnsortedItemsError(DragonDBError, ValueError):
    """`Tree.load` met a key not strictly greater than the one before it
    (unsorted or duplicate). Nothing changed."""


class BackupTargetError(DragonDBError, ValueError):
    """`backup` was given the database itself (or its log) as the
    destination. Nothing was written."""


class OptionError(DragonDBError, ValueError):
    """An `open()` option has a bad value (its type or range). Raised before
    any file is touched: nothing was opened or created."""

"""DragonDB for Python: a B+ tree storage engine, tested against a reference model under injected faults.

    import engine
    with engine.open("data.db") as db:
        t = db.tree("default")
        t[b"key"] = b"value"

See docs/api.md for the contract. The library logs through loguru and is
silent by default; `engine.log.enable()` turns diagnostics on (loguru is
imported only then).
"""

from engine import log
from engine.check import CheckReport
from engine.codec import MAX_KEY_SIZE, PAGE_SIZE
from engine.db import MAX_VALUE_SIZE, Batch, Database, PageInfo, Tree, open
from engine.errors import (
    BackupTargetError,
    BatchStateError,
    BufferPoolFullError,
    CorruptionError,
    DatabaseClosedError,
    DatabaseLockedError,
    DragonDBError,
    ForkedError,
    KeyTooLargeError,
    NeedsRecoveryError,
    NotADatabaseError,
    OptionError,
    ReadOnlyError,
    StorageIOError,
    TreeLimitError,
    TreeNotEmptyError,
    UnsortedItemsError,
    ValueTooLargeError,
)

__all__ = [
    "open", "log", "Database", "Tree", "Batch", "CheckReport", "PageInfo",
    "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "PAGE_SIZE",
    "DragonDBError", "StorageIOError", "NeedsRecoveryError", "CorruptionError", "NotADatabaseError",
    "DatabaseLockedError", "DatabaseClosedError", "ReadOnlyError", "KeyTooLargeError",
    "BufferPoolFullError", "TreeLimitError", "ValueTooLargeError",
    "TreeNotEmptyError", "UnsortedItemsError", "BackupTargetError", "ForkedError", "BatchStateError",
    "OptionError",
]

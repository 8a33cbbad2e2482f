"""DragonDB for Python: a verified B+ tree storage engine.

    import engine
    with engine.open("data.db") as db:
        t = db.tree("default")
        t[b"key"] = b"value"

See shared/API.md for the contract. The library logs through loguru and is
silent by default (`logger.enable("engine")` turns diagnostics on).
"""

from loguru import logger

from engine.check import CheckReport
from engine.codec import MAX_KEY_SIZE, PAGE_SIZE
from engine.db import MAX_VALUE_SIZE, Batch, Database, PageInfo, Tree, open
from engine.errors import (
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
    ReadOnlyError,
    StorageIOError,
    TreeLimitError,
    ValueTooLargeError,
)

logger.disable("engine")

__all__ = [
    "open", "Database", "Tree", "Batch", "CheckReport", "PageInfo",
    "MAX_KEY_SIZE", "MAX_VALUE_SIZE", "PAGE_SIZE",
    "DragonDBError", "StorageIOError", "NeedsRecoveryError", "CorruptionError", "NotADatabaseError",
    "DatabaseLockedError", "DatabaseClosedError", "ReadOnlyError", "KeyTooLargeError",
    "BufferPoolFullError", "TreeLimitError", "ValueTooLargeError", "ForkedError", "BatchStateError",
]

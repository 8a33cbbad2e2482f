"""The public API's arguments: keys, values, scan bounds and tree names,
checked and copied to bytes, with the typed error docs/api.md gives for each.

The hot paths (`Tree.put`, `Tree.get`, `Batch.put`) inline the common case,
exact bytes of a valid length, and call these only when it fails.
"""

from __future__ import annotations

from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE
from engine.errors import KeyTooLargeError, TreeLimitError, ValueTooLargeError

__all__ = ["NAMES_SEEN", "as_bound", "as_key", "as_tree_name", "as_value", "prefix_end"]


def as_key(key) -> bytes:
    """`key` as bytes (a bytearray or memoryview copied): TypeError for any
    other type, KeyTooLargeError for an empty or oversized key."""
    if type(key) is not bytes:
        if isinstance(key, (bytearray, memoryview)):
            key = bytes(key)
        elif isinstance(key, bytes):
            key = bytes(key)
        else:
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_SIZE:
        raise KeyTooLargeError(f"key of {len(key)} bytes; keys are 1..{MAX_KEY_SIZE} bytes")
    return key


def as_value(value) -> bytes:
    """`value` as bytes: TypeError for another type, ValueTooLargeError past MAX_VALUE_SIZE."""
    if type(value) is not bytes:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"values are bytes, not {type(value).__name__}")
        _at_most_max(memoryview(value).nbytes)  # before the copy: an oversized view is not copied
        value = bytes(value)
    _at_most_max(len(value))
    return value


def _at_most_max(size: int) -> None:
    if size > MAX_VALUE_SIZE:
        raise ValueTooLargeError(f"value of {size} bytes; at most {MAX_VALUE_SIZE}")


def as_bound(b) -> bytes | None:
    """A scan bound (or prefix) as bytes, None for none."""
    if b is None:
        return None
    if isinstance(b, (bytes, bytearray, memoryview)):
        return bytes(b)
    raise TypeError(f"scan bounds are bytes, not {type(b).__name__}")


def prefix_end(prefix: bytes) -> bytes | None:
    """The least key greater than every key starting with `prefix`."""
    p = prefix.rstrip(b"\xff")
    return p[:-1] + bytes([p[-1] + 1]) if p else None


NAMES_SEEN: set[str] = set()  # tree names `as_tree_name` accepted (`Batch.put` keeps the first 1024)


def as_tree_name(name) -> str:
    """A tree name: a str of 1..255 UTF-8 bytes (TypeError, TreeLimitError)."""
    if not isinstance(name, str):
        raise TypeError(f"tree names are str, not {type(name).__name__}")
    try:
        n = len(name.encode())
    except UnicodeEncodeError as exc:
        raise TreeLimitError("tree names must be encodable as UTF-8") from exc
    if not 0 < n <= 255:
        raise TreeLimitError(f"tree name of {n} bytes; names are 1..255 UTF-8 bytes")
    return name

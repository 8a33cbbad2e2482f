"""Types of the public API for type checkers: what keys and values may be,
and the dictionaries `Database.stats()`, `Database.tree_stats()` and
`Database.compact()` return. Nothing here runs on a hot path."""

from __future__ import annotations

from typing import TypeAlias, TypedDict

__all__ = ["BytesLike", "PoolStats", "Stats", "TreeStats", "CompactResult"]

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""A key, value or bound: bytes, or a bytearray/memoryview (copied)."""


class PoolStats(TypedDict):
    """A buffer pool's part of `Database.stats()`."""

    pool_pages: int  # frames made so far
    pool_bytes: int
    pool_cap_bytes: int
    pool_hits: int
    pool_misses: int
    pool_hit_rate: float
    pool_prefetched: int
    evictions: int


class Stats(PoolStats):
    """`Database.stats()`: the file, this handle's buffer pool and log counters."""

    page_size: int
    pages_allocated: int
    pages_free: int
    direct_io: bool
    trees: int  # how many trees
    keys: int  # keys in all trees
    sync: str
    read_only: bool
    log_bytes: int  # log bytes in use (a reader: up to where it followed)
    log_syncs: int
    commits: int
    checkpoints: int
    recovered_commits: int
    checkpoints_deferred: int
    rebuilds: int
    file_bytes: int  # the data file's size


class TreeStats(TypedDict):
    """One tree in `Database.tree_stats()`."""

    keys: int
    height: int  # levels from the root to the leaves; 0 before the first put


class CompactResult(TypedDict):
    """`Database.compact()`: the file's pages before and after."""

    pages_before: int
    pages_after: int

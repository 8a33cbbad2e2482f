"""Overflow chains: values too large for a leaf cell, stored on pages of their own.

A value of `length` bytes takes ceil(length / OVERFLOW_PAYLOAD) overflow
pages; each holds min(remaining, OVERFLOW_PAYLOAD) bytes and the id of the
next page, 0 on the last (page layout: `codec.encode_overflow`). The leaf cell
keeps an `Overflow(first page, length)`. Every walk checks each link
(`_check_link`), so a damaged chain (a cycle, a page of the wrong length, a
link past the end or an end too soon) raises `CorruptionError` instead of
looping or returning a wrong value.

The pages are reached through the buffer pool's guards only; allocating and freeing
are the caller's (a transaction's `allocate` and `free`), so a chain written
by a transaction that rolls back is freed with its other new pages.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.bufferpool import BufferPool
from engine.codec import OVERFLOW_PAYLOAD, Overflow, decode_overflow, encode_overflow
from engine.errors import CorruptionError

__all__ = ["OVERFLOW_RUN", "write_overflow", "free_overflow", "overflow_pages", "read_overflow"]

OVERFLOW_RUN = 256  # overflow pages read with one call (1 MiB)


def write_overflow(pool: BufferPool, allocate: Callable[[], int], value: bytes) -> Overflow:
    """Store `value` (non-empty) in a chain of new pages, each from `allocate()`,
    written dirty into the pool and left unpinned."""
    n = -(-len(value) // OVERFLOW_PAYLOAD)
    ids = [allocate() for _ in range(n)]
    view = memoryview(value)
    for i in range(n - 1, -1, -1):
        with pool.write(ids[i], new=True) as page:
            encode_overflow(view[i * OVERFLOW_PAYLOAD : (i + 1) * OVERFLOW_PAYLOAD], ids[i + 1] if i + 1 < n else 0, page)
    return Overflow(ids[0], len(value))


def free_overflow(pool: BufferPool, free: Callable[[int], None], ov: Overflow) -> None:
    """Pass every page of the chain to `free` (the whole chain is read and
    checked first, so a damaged chain frees nothing)."""
    for pid in overflow_pages(pool, ov):
        free(pid)


def _bad_chain(ov: Overflow, pid: int, what: str) -> CorruptionError:
    return CorruptionError(f"overflow chain of {ov.length} bytes from page {ov.page}: {what} at page {pid}")


def _check_link(ov: Overflow, pid: int, seen: set[int], remaining: int, got: int, nxt: int) -> None:
    """One page of a chain as `write_overflow` lays it out: new to this walk,
    holding min(remaining, OVERFLOW_PAYLOAD) bytes, linking on exactly while
    bytes remain after it. So a chain is ceil(length / OVERFLOW_PAYLOAD)
    distinct pages, and a cycle, an empty page or a length mismatch is refused."""
    if pid in seen:
        raise _bad_chain(ov, pid, "a cycle")
    if got != min(remaining, OVERFLOW_PAYLOAD):
        raise _bad_chain(ov, pid, f"a page of {got} bytes with {remaining} to go")
    if (nxt == 0) != (remaining <= OVERFLOW_PAYLOAD):
        raise _bad_chain(ov, pid, "the end" if nxt == 0 else f"a link past the end (to {nxt})")
    seen.add(pid)


def overflow_pages(pool: BufferPool, ov: Overflow) -> list[int]:
    """Page ids of an overflow chain, in order (see `_check_link`)."""
    out: list[int] = []
    seen: set[int] = set()
    pid = ov.page
    remaining = ov.length
    if remaining <= 0 or pid == 0:
        raise _bad_chain(ov, pid, "an empty value or no first page")
    while remaining > 0:
        with pool.read(pid) as page:
            payload, nxt = decode_overflow(page, pid)
        _check_link(ov, pid, seen, remaining, len(payload), nxt)
        out.append(pid)
        remaining -= len(payload)
        pid = nxt
    return out


def read_overflow(pool: BufferPool, ov: Overflow) -> bytes:
    """The value of an overflow chain (checked as `overflow_pages` checks it).
    Chains are mostly runs of consecutive pages, so the pages still ahead are
    read from the store a run at a time (`read_uncached`, up to OVERFLOW_RUN
    pages per call) and a page the run did not bring (cached, spilled,
    elsewhere or damaged) through the pool."""
    parts = []
    seen: set[int] = set()
    pid = ov.page
    remaining = ov.length
    if remaining <= 0 or pid == 0:
        raise _bad_chain(ov, pid, "an empty value or no first page")
    run: dict[int, bytes] = {}
    tried = range(0)  # the page ids the last run read covered
    while remaining > 0:
        page = run.pop(pid, None)
        if page is None and remaining > OVERFLOW_PAYLOAD and pid not in tried:
            tried = range(pid, pid + min(-(-remaining // OVERFLOW_PAYLOAD), OVERFLOW_RUN))
            run = pool.read_uncached(tried.start, len(tried))
            page = run.pop(pid, None)
        if page is not None:
            payload, nxt = decode_overflow(page, pid)
        else:
            with pool.read(pid) as page:
                payload, nxt = decode_overflow(page, pid)
        _check_link(ov, pid, seen, remaining, len(payload), nxt)
        parts.append(payload)
        remaining -= len(payload)
        pid = nxt
    return b"".join(parts)

"""How large the buffer pool is: its cap in frames from the open options
(`pool_pages`, or `pool_size` in bytes or as text such as "256MiB"), or by
default an eighth of physical memory, clamped to [DEFAULT_POOL_MIN,
DEFAULT_POOL_MAX]. The pool grows to its cap as it meets pages (see
engine/bufferpool.py)."""

from __future__ import annotations

import os
import re

from engine.codec import PAGE_SIZE
from engine.errors import OptionError

__all__ = ["DEFAULT_POOL_MAX", "DEFAULT_POOL_MIN", "MIN_FRAMES", "default_pool_bytes", "parse_pool_size",
           "pool_frames"]

MIN_FRAMES = 16  # a B+ tree operation pins a path and its siblings
DEFAULT_POOL_MIN = 64 << 20  # the default cap on a small machine: 16k frames
DEFAULT_POOL_MAX = 2 << 30  # the default cap on a large one: 512k frames (~10M keys of 100 bytes)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "tb": 1000**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([a-z]*)\s*", re.IGNORECASE)
_MACHINE = object()


def _physical_memory() -> int | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * size if pages > 0 and size > 0 else None


def default_pool_bytes(physical=_MACHINE) -> int:
    """The default pool's cap: 1/8 of `physical` memory bytes (this
    machine's when not given), clamped to [DEFAULT_POOL_MIN,
    DEFAULT_POOL_MAX], in whole pages; DEFAULT_POOL_MIN when unknown."""
    if physical is _MACHINE:
        physical = _physical_memory()
    if physical is None:
        return DEFAULT_POOL_MIN
    cap = min(max(physical // 8, DEFAULT_POOL_MIN), DEFAULT_POOL_MAX)
    return cap - cap % PAGE_SIZE


def parse_pool_size(value) -> int:
    """Bytes from an int or a string such as "256MiB", "1.5 GiB", "100MB"
    (KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise OptionError(f"pool_size must not be negative, not {value!r}")
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value)
        unit = m and _UNITS.get(m.group(2).lower())
        if m and unit:
            return int(float(m.group(1)) * unit)
    raise OptionError(f"pool_size must be bytes (an int) or a size such as '256MiB', not {value!r}")


def pool_frames(pool_size=None, pool_pages=None) -> int:
    """The frame count (cap) a pool gets from the open options: exactly
    `pool_pages`, or `pool_size` bytes in whole pages, or the default."""
    if pool_size is not None and pool_pages is not None:
        raise OptionError("give pool_size or pool_pages, not both")
    if pool_pages is not None:
        if isinstance(pool_pages, bool) or not isinstance(pool_pages, int) or pool_pages < MIN_FRAMES:
            raise OptionError(f"pool_pages must be an int >= {MIN_FRAMES}, not {pool_pages!r}")
        return pool_pages
    size = default_pool_bytes() if pool_size is None else parse_pool_size(pool_size)
    if size // PAGE_SIZE < MIN_FRAMES:
        raise OptionError(f"pool_size must be at least {MIN_FRAMES * PAGE_SIZE // 1024} KiB, not {pool_size!r}")
    return size // PAGE_SIZE

"""`engine.poolsize`, exactly: the machine's memory as the OS reports it,
whole int page counts, the bounds of `pool_size` and `pool_pages` at their
edges, and every refusal's message."""

from __future__ import annotations

import os

import pytest

from engine.codec import PAGE_SIZE
from engine.errors import OptionError
from engine.poolsize import (
    DEFAULT_POOL_MAX,
    DEFAULT_POOL_MIN,
    MIN_FRAMES,
    _physical_memory,
    default_pool_bytes,
    parse_pool_size,
    pool_frames,
)


def test_physical_memory_is_what_the_os_reports():
    want = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    got = _physical_memory()
    assert got == want and type(got) is int
    cap = min(max(want // 8, DEFAULT_POOL_MIN), DEFAULT_POOL_MAX)
    assert default_pool_bytes() == cap - cap % PAGE_SIZE  # this machine's, not the fallback


def test_the_default_cap_is_whole_pages_as_an_int():
    for physical in (8 << 30, (8 << 30) + 8, (3 << 30) + 12345, 1 << 40, 1):
        got = default_pool_bytes(physical)
        assert type(got) is int and got % PAGE_SIZE == 0, (physical, got)
    assert default_pool_bytes((3 << 30) + 8 * 4097) == (3 << 30) // 8 + PAGE_SIZE


def test_pool_size_zero_bytes_parses_and_is_then_too_small():
    assert parse_pool_size(0) == 0
    with pytest.raises(OptionError, match=r"^pool_size must not be negative, not -1$"):
        parse_pool_size(-1)
    with pytest.raises(OptionError, match=r"^pool_size must be at least 64 KiB, not 0$"):
        pool_frames(pool_size=0)


def test_pool_size_and_pages_at_their_least():
    assert pool_frames(pool_size=MIN_FRAMES * PAGE_SIZE) == MIN_FRAMES
    assert pool_frames(pool_size=MIN_FRAMES * PAGE_SIZE + PAGE_SIZE - 1) == MIN_FRAMES
    with pytest.raises(OptionError, match=r"^pool_size must be at least 64 KiB, not 65535$"):
        pool_frames(pool_size=MIN_FRAMES * PAGE_SIZE - 1)
    with pytest.raises(OptionError, match=r"^pool_size must be at least 64 KiB, not '4KiB'$"):
        pool_frames(pool_size="4KiB")
    assert pool_frames(pool_pages=MIN_FRAMES) == MIN_FRAMES
    for bad in (MIN_FRAMES - 1, True, "20", 20.0, None.__class__):
        with pytest.raises(OptionError, match=r"^pool_pages must be an int >= 16, not "):
            pool_frames(pool_pages=bad)
    with pytest.raises(OptionError, match=r"^pool_pages must be an int >= 16, not '20'$"):
        pool_frames(pool_pages="20")
    with pytest.raises(OptionError, match=r"^give pool_size or pool_pages, not both$"):
        pool_frames(pool_size="1MiB", pool_pages=256)
    assert pool_frames() == default_pool_bytes() // PAGE_SIZE

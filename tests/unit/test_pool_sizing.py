"""Pool sizing: `pool_size=` / `pool_pages=` / the default pool that sizes
itself, what `stats()` reports about it, and that its reservation costs no
memory until frames are used."""

from __future__ import annotations

import os

import pytest

import engine
from engine.bufferpool import (
    DEFAULT_POOL_MAX,
    DEFAULT_POOL_MIN,
    default_pool_bytes,
    parse_pool_size,
)
from engine.codec import PAGE_SIZE

MiB = 1 << 20
GiB = 1 << 30


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("text, size", [
    ("256MiB", 256 * MiB), ("256 MiB", 256 * MiB), ("1GiB", GiB), ("64KiB", 64 << 10),
    ("2gib", 2 * GiB), ("100MB", 100_000_000), ("1048576", MiB), ("1.5GiB", 3 * GiB // 2),
    (8 * MiB, 8 * MiB),
])
def test_pool_size_parses_bytes_and_units(text, size):
    assert parse_pool_size(text) == size


@pytest.mark.parametrize("bad", ["", "lots", "12 parsecs", "-4MiB", "MiB", True, 1.5, b"4MiB", -4096])
def test_pool_size_rejects_what_is_not_a_size(bad):
    with pytest.raises(ValueError, match="pool_size"):
        parse_pool_size(bad)


def test_default_cap_is_an_eighth_of_memory_clamped():
    assert default_pool_bytes(8 * GiB) == GiB
    assert default_pool_bytes(8 * GiB + 12345) == GiB  # whole pages
    assert default_pool_bytes(128 * MiB) == DEFAULT_POOL_MIN
    assert default_pool_bytes(1 << 40) == DEFAULT_POOL_MAX
    assert default_pool_bytes(None) == DEFAULT_POOL_MIN  # memory size unknown
    assert default_pool_bytes() % PAGE_SIZE == 0
    assert DEFAULT_POOL_MIN <= default_pool_bytes() <= DEFAULT_POOL_MAX


def test_open_takes_pool_size_or_pool_pages_not_both(open_db, db_path):
    db = open_db(pool_size="1MiB")
    assert db.stats()["pool_cap_bytes"] == MiB
    assert db.stats()["pool_pages"] == MiB // PAGE_SIZE
    db.close()
    db = open_db(pool_pages=100)
    assert db.stats()["pool_cap_bytes"] == 100 * PAGE_SIZE
    db.close()
    with pytest.raises(ValueError, match="not both"):
        engine.open(db_path, pool_size="1MiB", pool_pages=256)
    for bad in ("4KiB", 15 * PAGE_SIZE, "x"):
        with pytest.raises(ValueError, match="pool_size"):
            engine.open(db_path, pool_size=bad)


def test_default_pool_is_capped_by_the_machine_and_starts_small(open_db):
    db = open_db()
    st = db.stats()
    assert st["pool_cap_bytes"] == default_pool_bytes()
    assert st["pool_pages"] == default_pool_bytes() // PAGE_SIZE
    t = db.tree("t")
    for i in range(200):
        t.put(b"%05d" % i, b"v" * 20)
    st = db.stats()
    assert 0 < st["pool_bytes"] <= 64 * PAGE_SIZE, "a small database keeps a small pool"
    assert st["evictions"] == 0


def test_pool_grows_with_the_working_set_up_to_its_cap(open_db):
    db = open_db(pool_pages=64)
    t = db.tree("t")
    sizes = []
    for i in range(6000):
        t.put(b"%08d" % i, b"v" * 100)
        if i % 1000 == 999:
            sizes.append(db.stats()["pool_bytes"])
    assert sizes[0] < sizes[-1] == 64 * PAGE_SIZE
    st = db.stats()
    assert st["evictions"] > 0 and st["pool_cap_bytes"] == 64 * PAGE_SIZE
    for i in range(0, 6000, 7):
        assert t.get(b"%08d" % i) == b"v" * 100
    st = db.stats()
    assert 0.0 <= st["pool_hit_rate"] <= 1.0
    assert st["pool_hit_rate"] == pytest.approx(st["pool_hits"] / (st["pool_hits"] + st["pool_misses"]))


def test_a_large_pool_reserves_no_memory_up_front(open_db):
    before = _rss()
    db = open_db(pool_size="512MiB")
    grown = _rss() - before
    assert grown < 32 * MiB, f"opening a 512 MiB pool made RSS grow by {grown / MiB:.0f} MiB"
    t = db.tree("t")
    for i in range(3000):
        t.put(b"%08d" % i, b"v" * 100)
    assert db.stats()["pool_bytes"] < 4 * MiB


def test_a_cap_beyond_what_the_machine_can_map_shrinks_to_what_it_can(open_db):
    db = open_db(pool_size="1000TiB")  # past any 64-bit address space in use
    cap = db.stats()["pool_cap_bytes"]
    assert 64 * PAGE_SIZE <= cap < 1000 << 40
    t = db.tree("t")
    t[b"k"] = b"v"
    assert t[b"k"] == b"v"

"""Hypothesis strategies shared by the suite.

Keys lean short and share prefixes, so a few dozen inserts split leaves and
collide with each other; a few are the maximum size. Values are mostly
small; some pass 4 KiB to reach overflow pages. Long byte strings are
expanded from a drawn seed rather than drawn byte by byte, which keeps each
example well inside hypothesis' data budget and still shrinks well.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st

from models import MAX_KEY_SIZE, MAX_TREE_NAME_BYTES, PAGE_SIZE

__all__ = [
    "PAGE_SIZE",
    "bad_keys",
    "bad_tree_names",
    "bad_values",
    "bounds",
    "filled",
    "huge_values",
    "keys",
    "large_values",
    "max_size_keys",
    "tree_names",
    "values",
]

# Bytes around which ordering bugs hide: the extremes, a printable run, 0x7f/0x80.
_EDGE_BYTES = [0x00, 0x01, 0x41, 0x61, 0x62, 0x7F, 0x80, 0xFE, 0xFF]

# Shared prefixes: several keys land in one leaf, then split it.
_PREFIXES = [b"a", b"ab", b"abc", b"user:", b"user:0", b"\x00", b"\xff\xff", b"k" * 64]


def filled(seed: int, size: int) -> bytes:
    """`size` pseudo-random bytes derived from `seed` (deterministic)."""
    return random.Random(seed).randbytes(size)


def _seeded(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    return st.builds(filled, st.integers(0, 2**16), st.integers(min_size, max_size))


_edge_keys = st.lists(st.sampled_from(_EDGE_BYTES), min_size=1, max_size=6).map(bytes)
_prefixed_keys = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(_PREFIXES),
    st.binary(max_size=6),
)
_short_keys = st.binary(min_size=1, max_size=24)
_long_keys = st.builds(
    lambda prefix, tail: (prefix + tail)[:MAX_KEY_SIZE],
    st.sampled_from(_PREFIXES),
    _seeded(100, MAX_KEY_SIZE),
)


def max_size_keys() -> st.SearchStrategy[bytes]:
    """Keys of exactly `MAX_KEY_SIZE` bytes, sharing prefixes with the rest."""
    return st.builds(
        lambda prefix, tail: prefix + tail[: MAX_KEY_SIZE - len(prefix)],
        st.sampled_from(_PREFIXES),
        _seeded(MAX_KEY_SIZE, MAX_KEY_SIZE),
    )


def keys() -> st.SearchStrategy[bytes]:
    """Valid keys, 1..MAX_KEY_SIZE bytes, mostly short and prefix-sharing."""
    # one_of picks branches uniformly; repeats weight the common shapes.
    return st.one_of(
        _edge_keys,
        _prefixed_keys,
        _edge_keys,
        _prefixed_keys,
        _short_keys,
        _long_keys,
        max_size_keys(),
    )


def values() -> st.SearchStrategy[bytes]:
    """Values of 0..~6000 bytes: mostly small, some past one page."""
    return st.one_of(
        st.binary(max_size=16),
        st.binary(max_size=16),
        st.binary(max_size=200),
        _seeded(300, 2000),
        _seeded(PAGE_SIZE - 64, PAGE_SIZE + 64),
        _seeded(PAGE_SIZE + 1, 6000),
    )


def large_values() -> st.SearchStrategy[bytes]:
    """Values over one page (overflow chains), up to ~6000 bytes."""
    return _seeded(PAGE_SIZE + 1, 6000)


def huge_values() -> st.SearchStrategy[bytes]:
    """Values of about 100 KB (long overflow chains)."""
    return _seeded(90_000, 110_000)


def bounds() -> st.SearchStrategy[bytes | None]:
    """Scan bounds and prefixes: None, or short byte strings near the keys."""
    return st.one_of(
        st.none(),
        _edge_keys,
        st.sampled_from(_PREFIXES),
        _prefixed_keys,
        st.just(b""),
    )


def bad_keys() -> st.SearchStrategy[object]:
    """Keys the API rejects: wrong types (TypeError) or sizes (KeyTooLargeError)."""
    return st.one_of(
        st.text(min_size=1, max_size=4),
        st.integers(),
        st.none(),
        st.just(b""),
        st.builds(filled, st.integers(0, 2**16), st.integers(MAX_KEY_SIZE + 1, MAX_KEY_SIZE + 64)),
    )


def bad_values() -> st.SearchStrategy[object]:
    """Values the API rejects with TypeError."""
    return st.one_of(
        st.text(max_size=4), st.integers(), st.none(), st.lists(st.integers(), max_size=2)
    )


def tree_names() -> st.SearchStrategy[str]:
    """Valid tree names: 1..255 UTF-8 bytes."""
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(
        lambda name: len(name.encode("utf-8")) <= MAX_TREE_NAME_BYTES
    ) | st.just("x" * MAX_TREE_NAME_BYTES)


def bad_tree_names() -> st.SearchStrategy[object]:
    """Tree names the API rejects with TreeLimitError: empty, too long, not UTF-8."""
    return st.one_of(
        st.just(""),
        st.integers(MAX_TREE_NAME_BYTES + 1, 400).map(lambda n: "n" * n),
        st.just("é" * (MAX_TREE_NAME_BYTES // 2 + 1)),
        st.just("\ud800"),  # a lone surrogate has no UTF-8 form
    )

"""Exact codec facts that sampled tests can miss (found by mutation testing,
docs/verification.md "Mutation score"): split points are optimal on every
small input, not just on sampled ones; an internal cell's size is the one the
node accounting uses; an empty slotted page's header is the documented one.
"""

from __future__ import annotations

import itertools
import struct

from engine import codec
from engine.codec import HEADER_SIZE, INTERNAL, LEAF, PAGE_SIZE, Node


def _small_lists(min_len: int, max_len: int, top: int):
    for n in range(min_len, max_len + 1):
        yield from itertools.product(range(1, top + 1), repeat=n)


def test_split_point_is_optimal_on_every_small_input():
    # every list of 2..5 sizes in 1..4: small gaps are where an off-by-one
    # in the running total changes the choice
    for sizes in map(list, _small_lists(2, 5, 4)):
        total = sum(sizes)
        best = min(abs(2 * sum(sizes[:i]) - total) for i in range(1, len(sizes)))
        i = codec.split_point(sizes)
        assert 1 <= i < len(sizes), sizes
        assert abs(2 * sum(sizes[:i]) - total) == best, (sizes, i)


def test_internal_split_point_is_optimal_on_every_small_input():
    for sizes in map(list, _small_lists(3, 6, 3)):
        m = codec.internal_split_point(sizes)
        assert 1 <= m <= len(sizes) - 2, sizes

        gaps = [abs(sum(sizes[:j]) - sum(sizes[j + 1:])) for j in range(len(sizes))]
        assert gaps[m] == min(gaps[1:-1]), (sizes, m)


def test_internal_cell_size_is_what_an_internal_node_accounts():
    for keys in ([b"a"], [b"a", b"bb"], [b"k" * 100, b"l" * 1024]):
        node = Node(False, list(keys), children=list(range(2, len(keys) + 3)))
        assert node.size == sum(codec.internal_cell_size(k) for k in keys)
        page = bytearray(PAGE_SIZE)
        codec.encode_node(node, page)
        assert codec.free_space(page) == codec.USABLE - node.size


def test_an_empty_slotted_page_has_the_documented_header():
    # offset table at the top of engine/codec.py: flags, reserved, lsn, next
    # and prev are 0 on a new page; the free gap spans the whole body
    for ptype in (LEAF, INTERNAL):
        page = bytearray(b"\xff" * PAGE_SIZE)
        codec.init_slotted(page, ptype)
        (_, kind, flags, slots, free_start, free_end, garbage, reserved, lsn, nxt, prev) = (
            struct.unpack_from("<IBBHHHHHQII", page, 0))
        assert (kind, flags, slots, free_start, free_end, garbage, reserved, lsn, nxt, prev) == (
            ptype, 0, 0, HEADER_SIZE, PAGE_SIZE, 0, 0, 0, 0, 0)
        assert page[HEADER_SIZE:] == bytes(PAGE_SIZE - HEADER_SIZE)
        assert codec.verify(page)

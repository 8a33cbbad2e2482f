"""`engine.nodecache.NodeCache` (the buffer pool's decoded nodes), exactly:
what a lock-free `peek` counts and tells the replacer, which pages
`search_leaf` searches undecoded, which cached nodes `corrupt_clean_nodes`
reports, and the bug asserts' messages.
"""

from __future__ import annotations

import pytest

from engine.codec import PAGE_SIZE, Node, encode_node
from engine.errors import CorruptionError
from models import ModelPageStore


def leaf(pid: int) -> bytes:
    page = bytearray(PAGE_SIZE)
    encode_node(Node(True, [b"a%d" % pid, b"b%d" % pid], [b"v", b"w"]), page)
    return bytes(page)


def internal(pid: int) -> bytes:
    page = bytearray(PAGE_SIZE)
    encode_node(Node(False, [b"m%d" % pid], [], children=[90, 91]), page)
    return bytes(page)


@pytest.fixture
def pool(pools):
    store = ModelPageStore(grow=True)
    for pid in range(1, 9):
        store.write(pid, leaf(pid))
    store.write(9, internal(9))
    return lambda n_frames: pools(store, n_frames)


def test_peek_counts_a_hit_and_only_a_hit(pool):
    p = pool(4)
    assert p.peek(1) is None and (p.hits, p.misses) == (0, 0), "peek never reads"
    node = p.node(1)
    assert (p.hits, p.misses) == (0, 1)
    assert p.peek(1) is node and p.hits == 1
    assert p.peek(1) is node and p.hits == 2
    assert p.node(1) is node and (p.hits, p.misses) == (3, 1)
    p.unpin(p.fetch(2))  # cached, not decoded: peek has nothing to give
    assert p.peek(2) is None and p.hits == 3


def test_a_peeked_page_gets_a_second_chance(pool):
    p = pool(2)
    p.node(1)
    p.node(2)
    p.node(3)  # nothing referenced: the oldest (1) goes
    assert sorted(p.page_ids()) == [2, 3]
    assert p.peek(2) is not None
    p.node(4)  # 2 was hit through peek since the replacer looked: 3 goes
    assert sorted(p.page_ids()) == [2, 4]


def test_a_cached_node_is_a_lock_free_hit_that_leaves_the_lru_order(pool):
    p = pool(3)
    for pid in (1, 2, 3):
        p.node(pid)
    p.node(2)  # through peek: referenced, not moved to the young end
    for pid in (4, 5, 6):  # 4 evicts 1; 5 spares 2 once and evicts 3; 6 evicts 4
        p.node(pid)
    assert sorted(p.page_ids()) == [2, 5, 6]


def test_a_page_that_does_not_decode_is_named(pool):
    p = pool(4)
    p.unpin(p.fetch(30))  # zeros: no node
    with pytest.raises(CorruptionError, match="^page 30: "):
        p.node(30)
    with pytest.raises(CorruptionError, match="^page 30: "):
        p.pin_node(30)


def test_search_leaf_searches_only_an_undecoded_leaf_of_a_full_pool(pool):
    p = pool(2)
    calls = []

    def search(page, key):
        calls.append(key)
        return ("searched", key)

    p.node(1)
    p.node(2)  # full
    assert p.search_leaf(1, search, b"x") is p.peek(1) and calls == [], "a decoded leaf is not searched"
    assert isinstance(p.search_leaf(9, search, b"x"), Node), "an internal node is decoded"
    assert calls == [] and p.peek(9) is not None
    assert p.search_leaf(3, search, b"k") == ("searched", b"k") and calls == [b"k"]
    assert p.peek(3) is None, "searched, not decoded"
    node = p.search_leaf(3, search, b"k")
    assert isinstance(node, Node) and calls == [b"k"], "searched once: decoded the second time"
    assert p.search_leaf(3, search, b"k") is node and calls == [b"k"], "a cached node is returned"
    assert p.misses == 4 and p.hits == 5


def test_corrupt_clean_nodes_reports_only_current_decoded_bytes(pool):
    p = pool(8)
    for pid in (1, 2, 3):
        p.node(pid)
    p.unpin(p.fetch(4))  # cached, never decoded
    p.add_node(20, Node(True, [b"k"], [b"v"]), pinned=False)  # bytes not encoded yet
    for pid in (1, 2, 4):
        p.cached(pid).buf[200] ^= 1
    p.node_changed(2)  # 2's bytes are stale: they will be encoded again
    assert p.corrupt_clean_nodes() == [1]
    p.mark_clean([20])  # clean, yet its node is newer than its (zero) bytes
    assert p.corrupt_clean_nodes() == [1]
    p.cached(1).buf[200] ^= 1
    p.cached(4).buf[200] ^= 1
    assert p.corrupt_clean_nodes() == []
    p.discard(20)


def test_bug_asserts_name_their_function(pool):
    p = pool(4)
    p.unpin(p.fetch(1))
    with pytest.raises(AssertionError, match="^node_changed: the node is not cached$"):
        p.node_changed(1)
    p.node(2)
    with pytest.raises(AssertionError, match="^unpin_nodes: frame is not pinned$"):
        p.unpin_nodes([2], changed=False)

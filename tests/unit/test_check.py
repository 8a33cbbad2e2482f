"""`db.check()` finds each kind of damage and names it.

Each test takes a valid three-level database, rewrites one page with the
engine's own codec (so the checksum holds; the structure is one no engine
writes), reopens it and asserts that the report is not ok and carries the
problem that describes this damage. A checker that misses a family, or
reports it under another name, fails here.
"""

from __future__ import annotations

import os
import shutil

import pytest

import engine
from engine.codec import PAGE_SIZE, Node, Overflow, decode_node, encode_node
from engine.metapage import decode_meta, encode_meta

N = 1500  # keys of ~300 bytes: four levels


def _key(i: int) -> bytes:
    return b"k%05d" % i + b"." * 300


def _value(i: int) -> bytes:
    return b"x" * 9000 if i == 7 else b"v%d" % i  # one value in an overflow chain


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("check") / "t.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")
        with db.batch() as b:
            for i in range(N):
                b.put("t", _key(i), _value(i))
        levels = db.tree_levels("t")
        assert len(levels) >= 3, "the template needs an internal level under the root"
    return path


@pytest.fixture
def path(template, tmp_path):
    p = str(tmp_path / "c.db")
    shutil.copy(template, p)
    wal = template + "-wal"
    if os.path.exists(wal):
        shutil.copy(wal, p + "-wal")
    return p


def _read(path: str, pid: int) -> bytearray:
    with open(path, "rb") as f:
        f.seek(pid * PAGE_SIZE)
        return bytearray(f.read(PAGE_SIZE))


def _write(path: str, pid: int, page: bytearray) -> None:
    with open(path, "r+b") as f:
        f.seek(pid * PAGE_SIZE)
        f.write(bytes(page))


def _node(path: str, pid: int) -> Node:
    return decode_node(_read(path, pid), pid)


def _put_node(path: str, pid: int, node: Node) -> None:
    node.size = node.compute_size()
    page = bytearray(PAGE_SIZE)
    encode_node(node, page)
    _write(path, pid, page)


def _levels(path: str) -> list[list[engine.PageInfo]]:
    with engine.open(path, read_only=True) as db:
        return db.tree_levels("t")


def _problems(path: str) -> list[str]:
    with engine.open(path, create=False, sync="off") as db:
        report = db.check()
    assert not report.ok and not bool(report), "damage must make the report not ok"
    assert report.problems
    return report.problems


def _has(problems: list[str], *words: str) -> None:
    assert any(all(w in p for w in words) for p in problems), (words, problems)


def test_a_sound_database_checks_ok(template):
    with engine.open(template, read_only=True) as db:
        report = db.check()
    assert report.ok and bool(report), report.problems
    assert report.keys == N and report.trees == 1
    assert report.pages_leaked == 0 and report.pages_double_owned == 0
    assert report.pages_reachable > 0


def test_unsorted_leaf_keys_on_disk(path):
    pid = _levels(path)[-1][0].page_id
    node = _node(path, pid)
    node.keys[0], node.keys[1] = node.keys[1], node.keys[0]
    _put_node(path, pid, node)
    # the decoder refuses the page; the checker reports that and walks on
    problems = _problems(path)
    _has(problems, f"page {pid}", "keys out of order")
    _has(problems, "keys but count says")


def test_decoded_node_broken_in_memory(path):
    # A bug that breaks a decoded node kept with its frame (never encoded, so
    # its page still verifies) is caught by the node's own invariants. No API
    # edits that node, so the test reaches into the pool to play the bug.
    with engine.open(path, create=False, sync="off") as db:
        assert db.tree("t").get(_key(0)) == _value(0)
        pid = db.tree_levels("t")[-1][0].page_id
        frame = db._pool.cached(pid)
        assert frame is not None and frame.obj is not None
        keys = frame.obj.keys
        keys[0], keys[1] = keys[1], keys[0]
        problems = db.check().problems
        keys[0], keys[1] = keys[1], keys[0]
    _has(problems, f"page {pid}: keys not strictly ascending")


def test_key_outside_its_separator_bounds(path):
    pid = _levels(path)[-1][1].page_id  # the second leaf: its keys are >= a separator
    node = _node(path, pid)
    node.keys[0] = b"a"  # still sorted within the leaf, but below the separator
    _put_node(path, pid, node)
    _has(_problems(path), f"page {pid}", "outside the separator bounds")


def test_underfull_leaf_and_wrong_count(path):
    pid = _levels(path)[-1][0].page_id
    node = _node(path, pid)
    dropped = len(node.keys) - 1
    node.keys, node.vals = node.keys[:1], node.vals[:1]
    _put_node(path, pid, node)
    problems = _problems(path)
    _has(problems, f"page {pid}", "under minimum fill")
    _has(problems, f"{N - dropped} keys but count says {N}")


def test_internal_root_with_one_child(path):
    root = _levels(path)[0][0].page_id
    node = _node(path, root)
    node.keys, node.children = [], node.children[:1]
    _put_node(path, root, node)
    problems = _problems(path)
    _has(problems, f"internal root {root} has one child")
    _has(problems, "pages leaked")  # the other subtrees are now unreachable


def test_leaves_at_two_depths(path):
    levels = _levels(path)
    root = levels[0][0].page_id
    node = _node(path, root)
    node.children[0] = levels[-1][0].page_id  # the first leaf, right under the root
    _put_node(path, root, node)
    _has(_problems(path), f"leaves at depths [1, {len(levels) - 1}]")


def test_page_owned_twice(path):
    root = _levels(path)[0][0].page_id
    node = _node(path, root)
    node.children[1] = node.children[0]
    _put_node(path, root, node)
    problems = _problems(path)
    _has(problems, f"page {node.children[0]} owned twice")


def test_child_outside_the_file(path):
    levels = _levels(path)
    root = levels[0][0].page_id
    node = _node(path, root)
    with engine.open(path, read_only=True) as db:
        far = db.stats()["pages_allocated"] + 3
    node.children[-1] = far
    _put_node(path, root, node)
    _has(_problems(path), f"page {far} outside the file")


def test_broken_leaf_chain(path):
    pid = _levels(path)[-1][0].page_id
    node = _node(path, pid)
    want = node.next
    node.next = 0
    _put_node(path, pid, node)
    _has(_problems(path), f"leaf {pid} links (0, 0) != (0, {want})")


def test_broken_overflow_chain(path):
    for info in _levels(path)[-1]:
        node = _node(path, info.page_id)
        ovs = [v for v in node.vals if type(v) is Overflow]
        if ovs:
            break
    else:
        raise AssertionError("the template has an overflow value")
    # the chain's first page now holds a leaf: a valid page of the wrong kind
    _put_node(path, ovs[0].page, Node(True, [b"a"], [b"b"]))
    _has(_problems(path), f"overflow chain at {ovs[0].page}")


def test_tree_count_and_an_empty_tree_with_a_count(path):
    meta = decode_meta(_read(path, 0))
    root, count = meta.trees["t"]
    meta.trees["t"] = (root, count + 5)
    page = bytearray(PAGE_SIZE)
    encode_meta(meta, page)
    _write(path, 0, page)
    problems = _problems(path)
    _has(problems, f"{N} keys but count says {N + 5}")
    # a tree with no root but a count is impossible on its face: refused at open
    meta.trees["e"] = (0, 3)
    meta_problems = meta.check_invariants()
    assert any("'e'" in p for p in meta_problems), meta_problems


def test_cached_page_whose_bytes_changed_in_memory(path):
    # A stray write into a clean cached frame (memory corruption) is caught by
    # the checksum check of cached pages. No API writes frame memory, so the
    # test reaches into the pool to play the stray write.
    with engine.open(path, create=False, sync="off") as db:
        assert db.tree("t").get(_key(0)) == _value(0)
        pid = db.tree_levels("t")[-1][0].page_id
        frame = db._pool.cached(pid)
        assert frame is not None and not frame.dirty
        frame.buf[PAGE_SIZE - 1] ^= 0xFF
        problems = db.check().problems
        frame.buf[PAGE_SIZE - 1] ^= 0xFF  # undo, so close writes nothing odd
    _has(problems, f"page {pid}: cached bytes fail their checksum")


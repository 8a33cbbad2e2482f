"""`engine.arguments`, exactly: the bounds of keys, values and tree names at
their edges through the slow path (a bytearray or memoryview, which the
inlined checks hand over), every error's message, and `prefix_end`."""

from __future__ import annotations

import pytest

import engine
from engine import arguments
from engine.arguments import as_bound, as_key, as_tree_name, as_value, prefix_end
from engine.codec import MAX_KEY_SIZE, MAX_VALUE_SIZE


def test_keys_of_the_largest_size_pass_the_slow_path(open_db):
    longest = bytearray(b"k" * MAX_KEY_SIZE)
    assert as_key(longest) == bytes(longest)
    assert as_key(memoryview(longest)) == bytes(longest)
    t = open_db().tree("t")
    t[longest] = b"v"  # a bytearray key goes through `as_key`
    assert t[bytes(longest)] == b"v"
    with pytest.raises(engine.KeyTooLargeError, match=r"^key of 1025 bytes; keys are 1\.\.1024 bytes$"):
        as_key(bytearray(MAX_KEY_SIZE + 1))
    with pytest.raises(engine.KeyTooLargeError, match=r"^key of 0 bytes; keys are 1\.\.1024 bytes$"):
        as_key(b"")


def test_value_errors_say_what_was_refused():
    assert as_value(memoryview(b"abc")) == b"abc"
    assert as_value(bytearray()) == b""
    with pytest.raises(TypeError, match=r"^values are bytes, not str$"):
        as_value("x")
    with pytest.raises(TypeError, match=r"^keys are bytes, not int$"):
        as_key(5)


def test_a_value_of_exactly_max_value_size_passes_the_size_check():
    """The bound itself, by the size check `as_value` applies before and
    after its copy: a value of MAX_VALUE_SIZE bytes through the public
    path would copy 2 GiB (one byte more is refused uncopied, in
    test_db_edges.py)."""
    assert arguments._at_most_max(MAX_VALUE_SIZE) is None
    with pytest.raises(engine.ValueTooLargeError, match=rf"^value of {MAX_VALUE_SIZE + 1} bytes; at most {MAX_VALUE_SIZE}$"):
        arguments._at_most_max(MAX_VALUE_SIZE + 1)


def test_bounds_and_their_error():
    assert as_bound(None) is None
    assert as_bound(bytearray(b"ab")) == b"ab"
    with pytest.raises(TypeError, match=r"^scan bounds are bytes, not str$"):
        as_bound("a")


def test_prefix_end_is_the_least_key_above_the_prefix():
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"aX") == b"aY"  # only 0xff bytes are carried, never another byte
    assert prefix_end(b"XX") == b"XY"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") is None  # no key is above every key starting with 0xff
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None


def test_scans_by_prefix_at_the_edges(open_db):
    t = open_db().tree("t")
    for k in (b"aW", b"aX", b"aXa", b"aY", b"\xfe", b"\xff", b"\xff\x01"):
        t[k] = b"v"
    assert [k for k, _ in t.scan(prefix=b"aX")] == [b"aX", b"aXa"]
    assert [k for k, _ in t.scan(prefix=b"\xff")] == [b"\xff", b"\xff\x01"]


def test_tree_names_at_their_edges(open_db):
    longest = "n" * 255
    assert as_tree_name(longest) == longest
    assert as_tree_name("é" * 127) == "é" * 127  # 254 UTF-8 bytes
    db = open_db()
    db.tree(longest)[b"k"] = b"v"
    assert db.trees() == [longest]
    with pytest.raises(engine.TreeLimitError, match=r"^tree name of 256 bytes; names are 1\.\.255 UTF-8 bytes$"):
        as_tree_name("é" * 128)
    with pytest.raises(engine.TreeLimitError, match=r"^tree name of 0 bytes; names are 1\.\.255 UTF-8 bytes$"):
        as_tree_name("")
    with pytest.raises(engine.TreeLimitError, match=r"^tree names must be encodable as UTF-8$"):
        as_tree_name("\ud800")  # a lone surrogate
    with pytest.raises(TypeError, match=r"^tree names are str, not bytes$"):
        as_tree_name(b"t")

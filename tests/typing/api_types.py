"""Static checks of the public API's types, run by `make typecheck` (mypy),
never executed: each `assert_type` fails the type check if an annotation
drifts, and each `type: ignore[...]` fails it (warn_unused_ignores) if the
call it marks stops being an error."""

from __future__ import annotations

from typing import assert_type

import engine
import engine.dbm
from engine.typedefs import CompactResult, Stats, TreeStats


def database(db: engine.Database) -> None:
    assert_type(engine.open("x.db", read_only=True, pool_size="64MiB"), engine.Database)
    assert_type(db.tree("t"), engine.Tree)
    assert_type(db.trees(), list[str])
    assert_type(db.stats(), Stats)
    assert_type(db.stats()["pool_hit_rate"], float)
    assert_type(db.stats()["direct_io"], bool)
    assert_type(db.tree_stats(), dict[str, TreeStats])
    assert_type(db.compact(), CompactResult)
    assert_type(db.check(strict=True), engine.CheckReport)
    assert_type(db.tree_levels("t", 2), list[list[engine.PageInfo]])
    db.stats()["no_such_key"]  # type: ignore[typeddict-item]
    with db as same:
        assert_type(same, engine.Database)
    with db.batch() as b:
        assert_type(b, engine.Batch)
        b.put("t", b"k", bytearray(b"v"))
        b.delete("t", memoryview(b"k"))
        b.put("t", "k", b"v")  # type: ignore[arg-type]


def tree(t: engine.Tree) -> None:
    assert_type(t.get(b"k"), bytes | None)
    assert_type(t.get(b"k", None), bytes | None)
    assert_type(t.get(b"k", b"d"), bytes)
    assert_type(t.get(b"k", 0), bytes | int)
    assert_type(t[b"k"], bytes)
    assert_type(t.delete(b"k"), bool)
    assert_type(t.put(bytearray(b"k"), memoryview(b"v")), None)
    assert_type(t.first(), tuple[bytes, bytes] | None)
    assert_type(t.last(), tuple[bytes, bytes] | None)
    assert_type(list(t.scan(b"a", b"z", reverse=True, prefix=b"a")), list[tuple[bytes, bytes]])
    assert_type(list(t), list[bytes])
    assert_type(list(t.items()), list[tuple[bytes, bytes]])
    assert_type(list(t.values()), list[bytes])
    assert_type(t.pop(b"k"), bytes)
    assert_type(t.pop(b"k", None), bytes | None)
    assert_type(t.popitem(), tuple[bytes, bytes])
    assert_type(t.setdefault(b"k", b"v"), bytes)
    assert_type(len(t), int)
    t.update({b"a": b"1"})
    t.update([(b"a", b"1")])
    t.load([(b"a", b"1")])
    t.put("k", b"v")  # type: ignore[arg-type]
    t.put(b"k", "v")  # type: ignore[arg-type]
    t.get("k")  # type: ignore[call-overload]


def dbm(path: str) -> None:
    d = engine.dbm.open(path, "c")
    assert_type(d, engine.dbm.Dbm)
    assert_type(d[b"k"], bytes)
    assert_type(d.get("k"), bytes | None)
    assert_type(d.get(b"k", b"d"), bytes)
    assert_type(d.get(b"k", 0), bytes | int)
    assert_type(d.keys(), list[bytes])
    d["k"] = "v"
    d.close()

"""The `dragondb` command beside the model: subprocesses on small databases.

A drawn sequence of writes runs through the command (`put` of one pair or
several, `put --value-file` from a file or stdin, `delete` of several keys,
`drop-tree`, `load` of a dump, `compact`) and on `models.ModelDatabase`;
the exit status must say what the model says (1: a missing key or tree).
Then every reading command must print the model's data: `get` and `scan`
(`--format json`, with start/end/prefix/reverse/limit), `trees --format
json`, `dump`, `stats`, `check`, and `dump` of a `backup` copy. Keys and
values are arbitrary bytes, passed as `--hex`. Each example runs about 25
subprocesses (0.15 to 0.4 s each), so the examples are few.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import ModelDatabase

ROOT = Path(__file__).resolve().parents[2]
TREES = ("default", "t1", "\u00e9t\u00e9")

_keys = st.one_of(st.sampled_from([b"a", b"ab", b"0x12", b"\x00", b"\xff\xfe", b"k" * 300]),
                  st.binary(min_size=1, max_size=5))
_values = st.one_of(st.binary(max_size=6), st.sampled_from([b"", b"text", b"\x80" * 5000]))
_trees = st.sampled_from(TREES)
_pairs = st.lists(st.tuples(_keys, _values), min_size=1, max_size=3)
_ops = st.one_of(
    st.tuples(st.just("put"), _trees, _pairs),
    st.tuples(st.just("put-file"), _trees, _keys, _values, st.booleans()),
    st.tuples(st.just("delete"), _trees, st.lists(_keys, min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("drop-tree"), _trees),
    st.tuples(st.just("load"), _trees, st.dictionaries(_keys, _values, max_size=6)),
    st.tuples(st.just("compact")),
)
_scans = st.tuples(_trees, st.one_of(st.none(), _keys), st.one_of(st.none(), _keys),
                   st.one_of(st.none(), _keys.map(lambda k: k[:1])), st.booleans(),
                   st.one_of(st.none(), st.integers(0, 4)))


def sh(*argv: object, stdin: bytes | None = None) -> tuple[int, bytes, str]:
    """`python -m engine ARGV` in a subprocess -> (exit status, stdout, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], input=stdin,
                       capture_output=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode()


def _field(record: dict, name: str) -> bytes:
    """A key or value of the dump / --format json records: text or base64."""
    if name in record:
        return record[name].encode("utf-8")
    return base64.b64decode(record[name + "_b64"])


def _parse_dump(out: bytes) -> dict[str, dict[bytes, bytes]]:
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0] == {"format": "dragondb-dump", "version": 1}, lines[0]
    trees: dict[str, dict[bytes, bytes]] = {}
    current = None
    for record in lines[1:]:
        if "tree" in record:
            current = trees.setdefault(record["tree"], {})
        else:
            assert current is not None, record
            current[_field(record, "key")] = _field(record, "value")
    return trees


def _dump_text(trees: dict[str, dict[bytes, bytes]]) -> bytes:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    lines = [{"format": "dragondb-dump", "version": 1}]
    for name, items in trees.items():
        lines.append({"tree": name})
        lines += [{"key_b64": b64(k), "value_b64": b64(v)} for k, v in sorted(items.items())]
    return "\n".join(json.dumps(line) for line in lines).encode() + b"\n"


def apply(path: Path, model: ModelDatabase, op: tuple, work: Path) -> None:
    """Run `op` through the command and on the model; the exit status must agree."""
    kind = op[0]
    if kind == "put":
        _, tree, pairs = op
        code, _, err = sh("put", path, "--hex", "-t", tree, *[x.hex() for p in pairs for x in p])
        with model.batch() as b:
            for key, value in pairs:
                b.put(tree, key, value)
        assert code == 0, err
    elif kind == "put-file":
        _, tree, key, value, use_stdin = op
        if use_stdin:
            code, _, err = sh("put", path, "--hex", "-t", tree, key.hex(), "--value-file", "-", stdin=value)
        else:
            f = work / "value.bin"
            f.write_bytes(value)
            code, _, err = sh("put", path, "--hex", "-t", tree, key.hex(), "--value-file", f)
        model.tree(tree).put(key, value)
        assert code == 0, err
    elif kind == "delete":
        _, tree, keys = op
        code, _, err = sh("delete", path, "--hex", "-t", tree, *[k.hex() for k in keys])
        missing = [k for k in keys if k not in model.snapshot().get(tree, {})]
        with model.batch() as b:
            for key in keys:
                b.delete(tree, key)
        assert code == (1 if missing else 0), (code, err, missing)
    elif kind == "drop-tree":
        _, tree = op
        code, _, err = sh("drop-tree", path, tree)
        present = tree in model.trees()
        if present:
            model.drop_tree(tree)
        assert code == (0 if present else 1), (code, err)
    elif kind == "load":
        _, tree, items = op
        code, _, err = sh("load", path, "-", stdin=_dump_text({tree: items}))
        t = model.tree(tree)
        if len(t):
            t.update(items)
        else:
            t.load(sorted(items.items()))
        assert code == 0, err
    else:
        code, out, err = sh("compact", path)
        assert code == 0 and b"pages" in out, (code, out, err)


def assert_reads_match(path: Path, model: ModelDatabase, scans: list, probes: list[bytes],
                       work: Path) -> None:
    want = model.snapshot()
    code, out, err = sh("trees", path, "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [{"name": n, "keys": len(want[n])} for n in sorted(want)]
    code, out, err = sh("dump", path)
    assert code == 0, err
    assert _parse_dump(out) == want
    for tree, start, end, prefix, reverse, limit in scans:
        argv: list[Any] = ["scan", path, "--hex", "-t", tree, "--format", "json"]
        argv += ["--start", start.hex()] if start is not None else []
        argv += ["--end", end.hex()] if end is not None else []
        argv += ["--prefix", prefix.hex()] if prefix is not None else []
        argv += ["--reverse"] if reverse else []
        argv += ["--limit", limit] if limit is not None else []
        code, out, err = sh(*argv)
        if tree not in want:
            assert code == 1, (code, err)
            continue
        expect = list(model.tree(tree).scan(start, end, reverse=reverse, prefix=prefix))
        expect = expect[:limit] if limit is not None else expect
        got = [(_field(r, "key"), _field(r, "value")) for r in map(json.loads, out.decode().splitlines())]
        assert code == 0 and got == expect, (argv, code, err, got, expect)
    for i, key in enumerate(probes):
        tree = TREES[i % len(TREES)]
        code, out, err = sh("get", path, "--hex", "-t", tree, key.hex(), "--format", "json")
        value = want.get(tree, {}).get(key)
        if value is None:
            assert code == 1 and out == b"", (tree, key, code, out, err)
        else:
            record = json.loads(out)
            assert code == 0 and (_field(record, "key"), _field(record, "value")) == (key, value)
    code, out, err = sh("stats", path, "--format", "json")
    assert code == 0 and json.loads(out)["trees"] == len(want), (out, err)
    code, out, err = sh("check", path, "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True, (out, err)
    dest = work / "copy.db"
    code, _, err = sh("backup", path, dest)
    assert code == 0, err
    code, out, err = sh("dump", dest)
    assert code == 0 and _parse_dump(out) == want, err


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_ops, min_size=4, max_size=10), scans=st.lists(_scans, min_size=1, max_size=3),
       probes=st.lists(_keys, min_size=1, max_size=2))
def test_cli_matches_the_model(tmp_path_factory: pytest.TempPathFactory, ops: list, scans: list,
                               probes: list) -> None:
    work = tmp_path_factory.mktemp("cli")
    path = work / "db"
    model = ModelDatabase()
    for op in [("put", "default", [(b"first", b"makes the file")]), *ops]:
        apply(path, model, op, work)
    put_keys = [k for op in ops if op[0] == "put" for k, _ in op[2]]
    assert_reads_match(path, model, scans, probes + put_keys[:3], work)


def test_every_write_command_then_every_read_command(tmp_path: Path) -> None:
    """A fixed sequence touching each command and each exit status once."""
    path, model = tmp_path / "db", ModelDatabase()
    for argv in (["delete", path, "a"], ["drop-tree", path, "t"], ["compact", path], ["get", path, "a"]):
        code, _, err = sh(*argv)
        assert code == 3 and "no database" in err and not path.exists(), (argv, code, err)
    ops = [
        ("put", "default", [(b"a", b"1"), (b"\x00bin", b"\xff\x00")]),
        ("put-file", "t1", b"big", b"\x80" * 5000, False),
        ("put-file", "t1", b"in", b"from stdin", True),
        ("load", "\u00e9t\u00e9", {b"x": b"1", b"y": b""}),
        ("load", "default", {b"a": b"over", b"z": b"26"}),
        ("delete", "default", [b"z", b"missing"]),
        ("drop-tree", "t1"),
        ("drop-tree", "t1"),
        ("put", "t1", [(b"again", b"v")]),
        ("compact",),
    ]
    for op in ops:
        apply(path, model, op, tmp_path)
    scans = [("default", None, None, None, True, None), ("default", b"\x00", b"b", None, False, 1),
             ("\u00e9t\u00e9", None, None, b"y", False, None), ("nope", None, None, None, False, None)]
    assert_reads_match(path, model, scans, [b"a", b"\x00bin", b"z"], tmp_path)


def test_dump_reads_beside_a_writer_and_writing_commands_wait_for_it(tmp_path: Path) -> None:
    """`dump` opens read-only (it works while a writer holds the file);
    `backup` reads too and copies the committed state; `load`, `compact` and
    `drop-tree` open for writing, so they wait for the writer (5 s by default)
    and then fail with exit 3, changing nothing."""
    import engine

    path = tmp_path / "db"
    model = ModelDatabase()
    with engine.open(path) as db:
        for d in (db, model):
            d.tree("t").update({b"a": b"1", b"\xff": b"2"})
            d.tree("u")
        code, out, err = sh("dump", path)
        assert code == 0 and _parse_dump(out) == model.snapshot(), err
        dump = tmp_path / "in.jsonl"
        dump.write_bytes(_dump_text({"t": {b"new": b"x"}}))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        code, _, err = sh("backup", path, tmp_path / "copy")
        assert code == 0, err
        with engine.open(tmp_path / "copy", read_only=True) as copy:
            assert contents_of(copy) == model.snapshot()
        argvs = [["load", path, dump], ["compact", path], ["drop-tree", path, "u"]]
        procs = [subprocess.Popen([sys.executable, "-m", "engine", *map(str, argv)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
        for argv, p in zip(argvs, procs, strict=True):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 3 and b"DatabaseLockedError" in err, (argv, p.returncode, err)
        assert contents_of(db) == model.snapshot()


def contents_of(db: Any) -> dict[str, dict[bytes, bytes]]:
    return {n: dict(db.tree(n, create=False).items()) for n in db.trees()}

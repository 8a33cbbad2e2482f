"""The December command-line additions: dump, load, compact, backup,
drop-tree, `--format json`, `put --value-file`, hex output marked as hex.
Each command runs as a subprocess on a small database; the dump -> load
round trip is property-tested in-process on arbitrary bytes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import cli

ROOT = Path(__file__).resolve().parents[2]


def sh(*argv, stdin: bytes | None = None):
    """`python -m engine ARGV` in a subprocess -> (exit status, stdout bytes, stderr text)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], input=stdin,
                       capture_output=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode()


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "s.db"
    with engine.open(path) as db:
        db.tree("default").update({b"apple": b"red", b"bin\x00\xff": b"\xfe\x00v", b"0xabc": b"looks hex"})
        db.tree("other")[b"k"] = b"v" * 3000
        db.tree("empty")
    return path


def _contents(path):
    with engine.open(path, create=False, read_only=True) as db:
        return {n: dict(db.tree(n, create=False).items()) for n in db.trees()}


def test_dump_is_json_lines_with_a_versioned_header(small):
    code, out, err = sh("dump", small)
    assert code == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0]["format"] == "dragondb-dump" and lines[0]["version"] == 1
    records = lines[1:]
    assert {"tree": "empty"} in [{k: v for k, v in r.items() if k == "tree"} for r in records]
    items = [r for r in records if "tree" not in r]
    assert {"key": "apple", "value": "red"} in items
    binary = [r for r in items if "key_b64" in r]
    assert binary == [{"key_b64": base64.b64encode(b"bin\x00\xff").decode(),
                       "value_b64": base64.b64encode(b"\xfe\x00v").decode()}]
    code, out, _ = sh("dump", small, "--tree", "default", "--binary")
    recs = [json.loads(line) for line in out.decode().splitlines()][1:]
    assert recs[0] == {"tree": "default"}
    assert all("key_b64" in r and "value_b64" in r for r in recs[1:]) and len(recs) == 4


def test_dump_then_load_round_trips_through_files_and_stdin(small, tmp_path):
    code, out, _ = sh("dump", small)
    assert code == 0
    dump = tmp_path / "d.jsonl"
    dump.write_bytes(out)
    for i, how in enumerate(("file", "stdin")):
        target = tmp_path / f"t{i}.db"
        if how == "file":
            code, _, err = sh("load", target, dump)
        else:
            code, _, err = sh("load", target, "-", stdin=out)
        assert code == 0, err
        assert _contents(target) == _contents(small)
        with engine.open(target, create=False) as db:
            db.check(strict=True)


def test_load_refuses_a_bad_dump_and_changes_nothing(small, tmp_path):
    for bad in (b'{"format": "other", "version": 1}\n',
                b'{"format": "dragondb-dump", "version": 99}\n',
                b'{"format": "dragondb-dump", "version": 1}\n{"key": "a", "value": "b"}\n',  # no tree line
                b'{"format": "dragondb-dump", "version": 1}\n{"tree": "t"}\n{"key": "a"}\n',
                b'{"format": "dragondb-dump", "version": 1}\n{"tree": "t"}\nnot json\n'):
        before = _contents(small)
        code, _, err = sh("load", small, "-", stdin=bad)
        assert code in (2, 3), err
        assert err.startswith("dragondb: error:") and "Traceback" not in err
        assert _contents(small) == before


def test_load_into_trees_with_keys_is_one_commit_per_tree(small, tmp_path):
    dump = b"\n".join([b'{"format": "dragondb-dump", "version": 1}', b'{"tree": "default"}',
                       b'{"key": "apple", "value": "green"}', b'{"key": "new", "value": "1"}',
                       b'{"tree": "fresh"}', b'{"key": "z", "value": "2"}', b'{"key": "a", "value": "3"}'])
    code, _, err = sh("load", small, "-", stdin=dump + b"\n")
    assert code == 0, err
    got = _contents(small)
    assert got["default"][b"apple"] == b"green" and got["default"][b"new"] == b"1"
    assert got["fresh"] == {b"a": b"3", b"z": b"2"}


def test_compact_backup_and_drop_tree(small, tmp_path):
    with engine.open(small) as db:
        db.tree("bulk").update({b"%05d" % i: b"x" * 200 for i in range(3000)})
    with engine.open(small) as db:
        db.tree("bulk").clear()
    before = os.path.getsize(small)
    code, out, err = sh("compact", small)
    assert code == 0, err
    assert os.path.getsize(small) < before / 4
    assert b"pages" in out
    dest = tmp_path / "copy.db"
    code, _, err = sh("backup", small, dest)
    assert code == 0, err
    assert _contents(dest) == _contents(small)
    code, _, err = sh("backup", small, small)
    assert code == 3 and "itself" in err
    code, _, err = sh("drop-tree", small, "other")
    assert code == 0, err
    assert "other" not in _contents(small)
    code, _, err = sh("drop-tree", small, "other")
    assert code == 1 and "other" in err


def test_format_json_on_get_scan_trees_stats_check(small):
    code, out, _ = sh("get", small, "apple", "--format", "json")
    assert code == 0 and json.loads(out) == {"key": "apple", "value": "red"}
    code, out, _ = sh("get", small, "--hex", "62696e00ff", "--format", "json")
    assert json.loads(out) == {"key_b64": base64.b64encode(b"bin\x00\xff").decode(),
                               "value_b64": base64.b64encode(b"\xfe\x00v").decode()}
    code, out, _ = sh("scan", small, "--format", "json")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r.get("key") for r in rows] == ["0xabc", "apple", None]
    code, out, _ = sh("trees", small, "--format", "json")
    assert json.loads(out) == [{"name": "default", "keys": 3}, {"name": "empty", "keys": 0},
                               {"name": "other", "keys": 1}]
    code, out, _ = sh("stats", small, "--format", "json")
    assert json.loads(out)["trees"] == 3
    code, out, _ = sh("check", small, "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_hex_output_is_always_marked(small):
    code, out, _ = sh("scan", small)
    lines = out.decode().splitlines()
    # text that merely looks like hex stays distinguishable from real hex
    assert lines == ["0x3078616263\tlooks hex", "apple\tred", "0x62696e00ff\t0xfe0076"]
    code, out, _ = sh("get", small, "apple", "-X")
    assert out == b"0x726564\n"


def test_put_value_file_and_stdin(tmp_path):
    path = tmp_path / "p.db"
    big = os.urandom(200_000)  # too long for an argument list as text
    f = tmp_path / "v.bin"
    f.write_bytes(big)
    code, _, err = sh("put", path, "big", "--value-file", f)
    assert code == 0, err
    code, _, err = sh("put", path, "piped", "--value-file", "-", stdin=b"\x00from stdin\xff")
    assert code == 0, err
    code, _, _ = sh("put", path, "dash", "-")  # without --value-file, "-" is the text "-"
    assert code == 0
    with engine.open(path, create=False, read_only=True) as db:
        t = db.tree("default", create=False)
        assert t[b"big"] == big and t[b"piped"] == b"\x00from stdin\xff" and t[b"dash"] == b"-"
    code, out, _ = sh("get", path, "big", "--raw")
    assert out == big
    code, _, err = sh("put", path, "k", "v", "--value-file", f)
    assert code == 2 and "value-file" in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trees=st.dictionaries(st.text(min_size=1, max_size=8),
                             st.dictionaries(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                                             max_size=20), max_size=3),
       binary=st.booleans())
def test_dump_load_round_trip_of_arbitrary_bytes(tmp_path_factory, capsysbinary, trees, binary):
    d = tmp_path_factory.mktemp("rt")
    src, dst, dump = d / "src.db", d / "dst.db", d / "dump.jsonl"
    with engine.open(src, sync="off") as db:
        for name, items in trees.items():
            db.tree(name).update(items)
    capsysbinary.readouterr()
    assert cli.main(["dump", str(src), *(["--binary"] if binary else [])]) == 0
    out, _ = capsysbinary.readouterr()
    dump.write_bytes(out)
    assert cli.main(["load", str(dst), str(dump)]) == 0
    assert _contents(dst) == {n: dict(i) for n, i in trees.items()}

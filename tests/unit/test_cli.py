"""The `dragondb` command: every subcommand in-process through `main(argv)`,
exit codes, one-line errors, the renderers, and the installed entry point
in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections import namedtuple
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import cli

ROOT = Path(__file__).resolve().parents[2]

PageInfo = namedtuple("PageInfo", "page_id kind keys fill first_key last_key children")

SUBCOMMANDS = [
    "put",
    "get",
    "delete",
    "scan",
    "trees",
    "stats",
    "check",
    "show",
    "bench",
    "serve",
    "ping",
    "remote-get",
    "remote-put",
    "remote-delete",
    "remote-scan",
    "remote-shutdown",
]


def run(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dragondb: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "cli.db"


@pytest.fixture
def filled(db_path, capsys):
    """A database with a few text keys in "default" and one in "other"."""
    pairs = ["apple", "red", "apricot", "orange", "banana", "yellow", "cherry", "dark red"]
    assert run(capsys, "put", db_path, *pairs)[0] == 0
    assert run(capsys, "put", "--tree", "other", db_path, "k", "v")[0] == 0
    yield db_path
    with engine.open(db_path, create=False, read_only=True) as db:
        assert db.check().ok


# ---------------------------------------------------------------- pure helpers


def test_parse_bytes_text_and_hex():
    assert cli.parse_bytes("héllo", hex_input=False) == "héllo".encode()
    assert cli.parse_bytes("00ff10", hex_input=True) == b"\x00\xff\x10"
    assert cli.parse_bytes("0xAB cd", hex_input=True) == b"\xab\xcd"
    with pytest.raises(ValueError, match="not valid hex"):
        cli.parse_bytes("xyz", hex_input=True)


def test_format_bytes_printable_text_else_hex():
    assert cli.format_bytes(b"plain text") == "plain text"
    assert cli.format_bytes("ünï".encode()) == "ünï"
    assert cli.format_bytes(b"tab\there") == "0x" + b"tab\there".hex()  # would break the line format
    assert cli.format_bytes(b"\xff\xfe") == "0xfffe"  # hex is always marked as hex
    assert cli.format_bytes(b"0xab") == "0x30786162"  # text that looks marked is shown as hex
    assert cli.format_bytes(b"text", hex_output=True) == "0x74657874"
    assert cli.format_bytes(b"") == ""
    assert cli.format_bytes(None) == "-"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_shown_bytes_parse_back(data):
    shown = cli.format_bytes(data)
    is_text = not shown.startswith("0x")
    assert cli.parse_bytes(shown, hex_input=not is_text) == data
    assert cli.parse_bytes(cli.format_bytes(data, hex_output=True), hex_input=True) == data


LEVELS = [
    [PageInfo(7, "internal", 2, 0.03, b"f", b"p", [3, 5, 6])],
    [
        PageInfo(3, "leaf", 40, 0.5, b"a", b"e", []),
        PageInfo(5, "leaf", 38, 0.48, b"f", b"o\x00", []),
        PageInfo(6, "leaf", 41, 1.0, b"p", b'quote"back\\slash', []),
    ],
]


def test_render_text_draws_each_level():
    text = cli.render_levels_text("default", LEVELS)
    lines = text.splitlines()
    assert lines[0] == "tree 'default': height 2, 4 pages, 119 entries"
    assert lines[1] == "level 0 (root): 1 page, 2 keys, average fill 3%"
    assert "page 7" in lines[2] and "internal" in lines[2] and "-> 3 5 6" in lines[2]
    assert lines[3] == "level 1 (leaves): 3 pages, 119 keys, average fill 66%"
    assert "f .. 0x6f00" in lines[5]  # a non-printable key is shown as hex
    assert "[##########] 100%" in lines[6]
    # One alignment for all levels: the kind column starts at the same place.
    assert len({line.index("leaf") for line in lines[4:7]} | {lines[2].index("internal")}) == 1


def test_render_text_single_empty_root_and_clipping():
    empty = [[PageInfo(1, "leaf", 0, 0.0, None, None, [])]]
    text = cli.render_levels_text("t", empty)
    assert "level 0 (root, leaf): 1 page" in text and "(empty)" in text
    long = [[PageInfo(1, "leaf", 1, 0.1, b"k" * 100, b"k" * 100, [])]]
    assert "k" * 7 + "..." in cli.render_levels_text("t", long, key_width=10)
    assert "k" * 11 not in cli.render_levels_text("t", long, key_width=10)


def test_render_dot_is_a_graph_with_child_and_chain_edges():
    dot = cli.render_levels_dot("default", LEVELS)
    assert dot.startswith('digraph "dragondb default" {') and dot.endswith("}")
    for child in (3, 5, 6):
        assert f"p7 -> p{child};" in dot
    assert "p3 -> p5 [style=dashed" in dot and "p5 -> p6 [style=dashed" in dot
    assert "{ rank=same; p3; p5; p6; }" in dot
    assert 'quote\\"back\\\\slash' in dot  # label text escaped for Graphviz
    assert dot.count("{") == dot.count("}")


def test_render_table_flat_sections_and_matrix():
    flat = cli.render_table(
        {"page_size": 4096, "direct_io": False, "ratio": 0.25, "trees": ["a", "b"]}
    )
    assert flat.splitlines() == [
        "page_size  4,096",
        "direct_io  no",
        "ratio      0.25",
        "trees      a, b",
    ]
    matrix = cli.render_table(
        {"put": {"ops_per_s": 12345.6, "seconds": 0.81}, "get": {"ops_per_s": 99.5}}
    )
    lines = matrix.splitlines()
    assert lines[0].split() == ["ops_per_s", "seconds"]
    assert lines[1].split() == ["put", "12,345.6", "0.81"]
    assert lines[2].split() == ["get", "99.5"]
    assert lines[1].index("12,345.6") + len("12,345.6") == lines[2].index("99.5") + len("99.5")
    nested = cli.render_table(
        {"n": 10, "phases": {"put": {"ops": 10}}, "machine": {"cores": 2, "fs": {"type": "ext4"}}}
    )
    assert nested.splitlines() == [
        "n  10",
        "",
        "phases:",
        "       ops",
        "  put   10",
        "",
        "machine:",
        "  cores  2",
        "",
        "  fs:",
        "    type  ext4",
    ]


# ---------------------------------------------------------------- help and usage


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(capsys, name):
    code, out, _ = run(capsys, name, "--help")
    assert code == 0
    assert out.startswith(f"usage: dragondb {name}")
    assert "exit status" in out


def test_top_level_help_lists_subcommands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in [*SUBCOMMANDS, "campaign"]:
        assert f"    {name}" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["get"],
        ["put", "x.db", "only-a-key"],
        ["put", "x.db", "k1", "v1", "k2"],
        ["scan", "x.db", "--limit", "many"],
        ["show", "x.db", "--format", "png"],
        ["put", "--hex", "x.db", "zz", "00"],
        ["get", "--hex", "x.db", "0g"],
    ],
)
def test_usage_errors_exit_2_and_create_nothing(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "usage: dragondb" in err and "error:" in err
    assert out == ""
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- put / get / delete


def test_put_then_get(filled, capsys):
    assert run(capsys, "get", filled, "apple") == (0, "red\n", "")
    assert run(capsys, "get", filled, "cherry") == (0, "dark red\n", "")
    assert run(capsys, "get", "--tree", "other", filled, "k") == (0, "v\n", "")


def test_put_overwrites_and_creates_trees(filled, capsys):
    assert run(capsys, "put", filled, "apple", "green")[0] == 0
    assert run(capsys, "get", filled, "apple")[1] == "green\n"
    assert run(capsys, "put", "-t", "third", filled, "a", "b")[0] == 0
    assert run(capsys, "trees", filled)[1] == "default\nother\nthird\n"


def test_put_several_pairs_is_one_batch(db_path, capsys):
    assert run(capsys, "put", db_path, "a", "1", "b", "2", "c", "3")[0] == 0
    assert run(capsys, "scan", db_path)[1] == "a\t1\nb\t2\nc\t3\n"


def test_hex_input_and_output(db_path, capsys):
    assert run(capsys, "put", "--hex", db_path, "00ff", "0x0102")[0] == 0
    assert run(capsys, "put", db_path, "text", "")[0] == 0
    assert run(capsys, "get", "--hex", db_path, "00FF") == (0, "0x0102\n", "")
    assert run(capsys, "get", db_path, "text") == (0, "\n", "")
    assert run(capsys, "get", "-X", db_path, "text") == (0, "0x\n", "")
    assert run(capsys, "put", db_path, "word", "hi")[0] == 0
    assert run(capsys, "get", "--hex-output", db_path, "word") == (0, "0x6869\n", "")
    with engine.open(db_path, create=False, read_only=True) as db:
        assert db.tree("default", create=False).get(b"\x00\xff") == b"\x01\x02"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.binary(min_size=1, max_size=64), value=st.binary(max_size=300))
def test_any_bytes_round_trip_through_hex(db_path, capsys, key, value):
    assert run(capsys, "put", "--hex", db_path, key.hex(), value.hex()) == (0, "", "")
    assert run(capsys, "get", "--hex", "-X", db_path, key.hex()) == (0, "0x" + value.hex() + "\n", "")
    code, out, _ = run(capsys, "get", "--hex", db_path, key.hex())
    shown = out[:-1]
    assert code == 0
    assert shown == "0x" + value.hex() or shown.encode() == value


def test_get_raw_writes_bytes(db_path, capsysbinary):
    assert cli.main(["put", "--hex", str(db_path), "6b", "00ff0a"]) == 0
    capsysbinary.readouterr()
    assert cli.main(["get", "--raw", str(db_path), "k"]) == 0
    assert capsysbinary.readouterr().out == b"\x00\xff\n"


def test_get_missing_key_or_tree_exits_1(filled, capsys):
    code, out, err = run(capsys, "get", filled, "durian")
    assert (code, out) == (1, "")
    assert err == "dragondb: not found: key durian not in tree 'default'\n"
    code, out, err = run(capsys, "get", "--tree", "nope", filled, "apple")
    assert (code, out) == (1, "")
    assert err.startswith("dragondb: not found: no tree 'nope'")
    assert run(capsys, "trees", filled)[1] == "default\nother\n"  # nothing created


def test_delete(filled, capsys):
    assert run(capsys, "delete", filled, "apple") == (0, "", "")
    assert run(capsys, "get", filled, "apple")[0] == 1
    code, _, err = run(capsys, "delete", filled, "apple")
    assert code == 1 and err == "dragondb: not found: not in tree 'default': apple\n"


def test_delete_several_deletes_present_and_reports_missing(filled, capsys):
    code, _, err = run(capsys, "delete", filled, "banana", "nope", "cherry")
    assert code == 1 and err == "dragondb: not found: not in tree 'default': nope\n"
    assert run(capsys, "scan", "--keys-only", filled)[1] == "apple\napricot\n"


# ---------------------------------------------------------------- scan / trees


def test_scan_in_order_with_bounds(filled, capsys):
    assert (
        run(capsys, "scan", filled)[1]
        == "apple\tred\napricot\torange\nbanana\tyellow\ncherry\tdark red\n"
    )
    assert run(capsys, "scan", "--keys-only", "--start", "apricot", "--end", "cherry", filled)[
        1
    ] == ("apricot\nbanana\n")
    assert run(capsys, "scan", "--keys-only", "--prefix", "ap", filled)[1] == "apple\napricot\n"
    assert (
        run(capsys, "scan", "--keys-only", "--reverse", "--limit", "2", filled)[1]
        == "cherry\nbanana\n"
    )
    assert run(capsys, "scan", "--limit", "0", filled) == (0, "", "")


def test_scan_hex_bounds_and_non_printable_keys(db_path, capsys):
    assert run(capsys, "put", "--hex", db_path, "0001", "aa", "0002", "bb", "0100", "cc")[0] == 0
    assert run(capsys, "scan", "--hex", "--prefix", "00", db_path)[1] == "0x0001\t0xaa\n0x0002\t0xbb\n"
    assert run(capsys, "scan", "--hex", "--start", "0002", db_path)[1] == "0x0002\t0xbb\n0x0100\t0xcc\n"


def test_scan_negative_limit_is_usage_error(filled, capsys):
    code, _, err = run(capsys, "scan", "--limit", "-1", filled)
    assert code == 2 and "--limit must be >= 0" in err


def test_trees_long(filled, capsys):
    code, out, _ = run(capsys, "trees", "-l", filled)
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [["default", "4"], ["other", "1"]]


# ---------------------------------------------------------------- stats / check / show


def test_stats_text_and_json(filled, capsys):
    code, out, _ = run(capsys, "stats", "--json", filled)
    assert code == 0
    stats = json.loads(out)
    assert stats["page_size"] == 4096 and stats["pages_allocated"] >= 1
    code, out, _ = run(capsys, "stats", filled)
    assert code == 0
    scalars = out.split("\n\n")[0].splitlines()  # then the per_tree section
    rows = dict(line.split(None, 1) for line in scalars)
    assert rows["page_size"] == "4,096"
    columns = {line.index(line.split(None, 1)[1]) for line in scalars}
    assert len(columns) == 1  # values aligned in one column


def test_check_clean_database(filled, capsys):
    code, out, _ = run(capsys, "check", filled)
    assert code == 0 and out.startswith("ok: ") and "0 leaked" in out
    code, out, _ = run(capsys, "check", "--json", filled)
    report = json.loads(out)
    assert (
        code == 0
        and report["ok"] is True
        and report["problems"] == []
        and report["pages_leaked"] == 0
    )


def test_check_reports_a_corrupted_page(tmp_path, capsys):
    path = tmp_path / "corrupt.db"
    with engine.open(path) as db:
        tree = db.tree("default")
        for i in range(400):  # several leaves
            tree.put(f"key{i:05d}".encode(), b"v" * 40)
        db.checkpoint()
        leaf = db.tree_levels("default")[-1][1].page_id
    with open(path, "r+b") as fh:  # flip 16 bytes in the middle of a leaf
        offset = leaf * engine.PAGE_SIZE + engine.PAGE_SIZE // 2
        fh.seek(offset)
        old = fh.read(16)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in old))
    code, out, err = run(capsys, "check", path)
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert (
        lines[0].startswith(("1 problem: ", "2 problems: ", "3 problems: "))
        or "problems:" in lines[0]
    )
    assert len(lines) >= 2 and any(str(leaf) in line for line in lines[1:])  # names the page
    code, out, _ = run(capsys, "check", "--json", path)
    assert code == 1 and json.loads(out)["ok"] is False


def test_show_text_and_dot_after_splits(db_path, capsys):
    pairs = []
    for i in range(300):
        pairs += [f"key{i:04d}", "x" * 60]
    assert run(capsys, "put", db_path, *pairs)[0] == 0
    with engine.open(db_path, create=False, read_only=True) as db:
        levels = db.tree_levels("default")
    assert len(levels) >= 2
    code, out, _ = run(capsys, "show", "--max-pages", "0", db_path)
    assert code == 0
    assert out.splitlines()[0].startswith(f"tree 'default': height {len(levels)}, ")
    assert "level 0 (root): 1 page" in out and "internal" in out
    assert "leaf" in out and "key0000 .. " in out
    for level in levels:
        for info in level:
            assert f"page {info.page_id} " in out
    code, dot, _ = run(capsys, "show", "--format", "dot", "--max-pages", "0", db_path)
    assert code == 0 and dot.startswith("digraph") and dot.rstrip().endswith("}")
    root = levels[0][0]
    for child in root.children:
        assert f"p{root.page_id} -> p{child};" in dot
    assert dot.count("style=dashed") == len(levels[-1]) - 1


def test_show_empty_tree_and_missing_tree(db_path, capsys):
    with engine.open(db_path) as db:
        db.tree("empty")
    code, out, _ = run(capsys, "show", "--tree", "empty", db_path)
    assert code == 0
    assert (
        out
        == "tree 'empty': height 0, 0 pages, 0 entries\n(no pages: an empty tree gets its root page on the first put)\n"
    )
    code, out, _ = run(capsys, "show", "--format", "dot", "--tree", "empty", db_path)
    assert code == 0 and "(empty tree: no pages)" in out and "->" not in out
    code, _, err = run(capsys, "show", "--tree", "absent", db_path)
    assert code == 1 and err.startswith("dragondb: not found: no tree 'absent'")


# ---------------------------------------------------------------- engine errors: one line, exit 3


READ_COMMANDS = [
    ["get", "{p}", "k"],
    ["scan", "{p}"],
    ["trees", "{p}"],
    ["stats", "{p}"],
    ["check", "{p}"],
    ["show", "{p}"],
]


@pytest.mark.parametrize("argv", READ_COMMANDS + [["delete", "{p}", "k"]], ids=lambda a: a[0])
def test_missing_database_is_an_error_and_is_not_created(tmp_path, capsys, argv):
    path = tmp_path / "absent.db"
    code, out, err = run(capsys, *(a.format(p=path) for a in argv))
    assert code == 3 and out == ""
    assert_one_error_line(err, f"no database at {path}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", READ_COMMANDS + [["put", "{p}", "k", "v"]], ids=lambda a: a[0])
def test_garbage_file_is_not_a_database(tmp_path, capsys, argv):
    path = tmp_path / "garbage.db"
    garbage = bytes(range(256)) * 32
    path.write_bytes(garbage)
    code, out, err = run(capsys, *(a.format(p=path) for a in argv))
    assert code == 3 and out == ""
    assert_one_error_line(err, "NotADatabaseError")
    assert path.read_bytes() == garbage  # nothing written


def test_locked_database_is_an_error(db_path, capsys):
    with engine.open(db_path) as db:
        db.tree("default").put(b"k", b"v")
        code, out, err = run(capsys, "put", db_path, "k", "other")
        assert code == 3 and out == ""
        assert_one_error_line(err, "DatabaseLockedError")
        assert db.tree("default").get(b"k") == b"v"


def test_key_too_large_is_an_engine_error(db_path, capsys):
    code, _, err = run(capsys, "put", db_path, "k" * (engine.MAX_KEY_SIZE + 1), "v")
    assert code == 3
    assert_one_error_line(err, "KeyTooLargeError")


# ---------------------------------------------------------------- --verbose


def test_verbose_logs_to_stderr_and_quiet_otherwise(filled, capsys):
    assert run(capsys, "get", filled, "apple") == (0, "red\n", "")
    code, out, err = run(capsys, "-v", "get", filled, "apple")
    assert (code, out) == (0, "red\n")
    assert "DEBUG" in err and "opening" in err
    code, out, err = run(capsys, "get", filled, "apple", "--verbose")
    assert (code, out) == (0, "red\n") and "opening" in err
    assert run(capsys, "get", filled, "apple") == (0, "red\n", "")  # silent again


# ---------------------------------------------------------------- dispatch: campaign, bench


@pytest.fixture
def fake_campaign(monkeypatch):
    import faults

    calls = []
    module = types.ModuleType("faults.campaign")
    module.main = lambda argv: calls.append(list(argv)) or 5
    monkeypatch.setitem(sys.modules, "faults.campaign", module)
    monkeypatch.setattr(faults, "campaign", module, raising=False)
    return calls


def test_campaign_gets_every_argument_untouched(fake_campaign, capsys):
    argv = ["--seconds", "3", "--workers", "1", "--help", "--json", "x.json", "merge"]
    assert run(capsys, "campaign", *argv)[0] == 5
    assert run(capsys, "-v", "campaign")[0] == 5
    assert fake_campaign == [argv, []]


@pytest.fixture
def fake_bench(monkeypatch):
    calls = []
    module = types.ModuleType("bench")

    def engine_only(path, n):
        calls.append((path, n))
        if n == 13:
            raise RuntimeError("unlucky")
        return {
            "put": {"ops_per_s": 2000.0, "seconds": 0.5},
            "get": {"ops_per_s": 9000.0, "seconds": 0.1},
        }

    module.engine_only = engine_only
    monkeypatch.setitem(sys.modules, "bench", module)
    return calls


def test_bench_prints_the_result_as_a_table(fake_bench, tmp_path, capsys):
    code, out, _ = run(capsys, "bench", tmp_path, "-n", "100")
    assert code == 0 and fake_bench == [(str(tmp_path), 100)]
    assert [line.split() for line in out.splitlines()] == [
        ["ops_per_s", "seconds"],
        ["put", "2,000.0", "0.5"],
        ["get", "9,000.0", "0.1"],
    ]
    code, out, _ = run(capsys, "bench", "--json", tmp_path, "-n", "5")
    assert code == 0 and json.loads(out)["get"]["ops_per_s"] == 9000.0


def test_unexpected_exception_is_one_line_exit_4(fake_bench, tmp_path, capsys):
    code, out, err = run(capsys, "bench", tmp_path, "-n", "13")
    assert code == 4 and out == ""
    assert (
        err
        == "dragondb: error: internal error: unlucky (RuntimeError) (run with --verbose for the traceback)\n"
    )
    code, _, err = run(capsys, "-v", "bench", tmp_path, "-n", "13")
    assert code == 4 and "Traceback" in err and "RuntimeError: unlucky" in err


def test_bench_rejects_non_positive_n(fake_bench, tmp_path, capsys):
    code, _, err = run(capsys, "bench", tmp_path, "-n", "0")
    assert code == 2 and "-n must be >= 1" in err and fake_bench == []


# ---------------------------------------------------------------- subprocess: the installed entry point


def _entry_point() -> list[str]:
    script = Path(sys.executable).with_name("dragondb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine"]


def _cli(*argv, entry=None):
    return subprocess.run(
        [*(entry or _entry_point()), *(str(a) for a in argv)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_entry_point_in_a_subprocess(tmp_path):
    path = tmp_path / "sub.db"
    done = _cli("put", path, "hello", "world")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = _cli("get", path, "hello")
    assert (done.returncode, done.stdout, done.stderr) == (0, "world\n", "")
    done = _cli("get", path, "nope", entry=[sys.executable, "-m", "engine"])
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "dragondb: not found: key nope not in tree 'default'\n"
    done = _cli("check", path, entry=[sys.executable, "-m", "engine"])
    assert done.returncode == 0 and done.stdout.startswith("ok: ")


def test_subprocess_errors_are_one_line(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00not a database\xff" * 600)
    done = _cli("get", garbage, "k")
    assert done.returncode == 3 and done.stdout == ""
    assert_one_error_line(done.stderr, "NotADatabaseError")
    done = _cli("get", tmp_path / "absent.db", "k")
    assert done.returncode == 3
    assert_one_error_line(done.stderr, "no database at")
    assert not (tmp_path / "absent.db").exists()
    done = _cli("scan", tmp_path / "x.db", "--limit")
    assert done.returncode == 2 and "usage: dragondb scan" in done.stderr


def test_subprocess_locked_by_another_process(tmp_path):
    path = tmp_path / "locked.db"
    with engine.open(path) as db:
        db.tree("default").put(b"k", b"v")
        db.commit()
        done = _cli("put", path, "k", "w")
    assert done.returncode == 3 and done.stdout == ""
    assert_one_error_line(done.stderr, "DatabaseLockedError")


def test_python_dash_m_engine_help():
    done = _cli("--help", entry=[sys.executable, "-m", "engine"])
    assert done.returncode == 0 and done.stdout.startswith("usage: dragondb")
    assert "    campaign" in done.stdout


# ---------------------------------------------------------------- serve and the remote-* client commands


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_and_remote_commands(tmp_path, capsys):
    import time

    path, ready = tmp_path / "served.db", tmp_path / "ready"
    server = subprocess.Popen(
        [
            *_entry_point(),
            "serve",
            str(path),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--allow-shutdown",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        host, port = ready.read_text().split()
        at = ["--host", host, "--port", port]
        assert run(capsys, "ping", *at) == (0, f"pong from {host}:{port}\n", "")
        assert run(capsys, "remote-put", *at, "apple", "red")[0] == 0
        assert run(capsys, "remote-put", "--hex", *at, "00ff", "0102")[0] == 0
        assert run(capsys, "remote-put", *at, "banana", "yellow")[0] == 0
        assert run(capsys, "remote-get", *at, "apple") == (0, "red\n", "")
        assert run(capsys, "remote-get", "--hex", "-X", *at, "00ff") == (0, "0x0102\n", "")
        assert run(capsys, "remote-scan", *at, "--keys-only") == (0, "0x00ff\napple\nbanana\n", "")
        assert run(capsys, "remote-scan", *at, "--reverse", "--limit", "1") == (
            0,
            "banana\tyellow\n",
            "",
        )
        assert run(capsys, "remote-delete", *at, "apple")[0] == 0
        code, out, err = run(capsys, "remote-get", *at, "apple")
        assert (code, out) == (
            1,
            "",
        ) and err == "dragondb: not found: key apple not on the server\n"
        assert run(capsys, "remote-shutdown", *at)[0] == 0
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
        assert f"serving {path} on {host}:{port}" in err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert run(capsys, "get", path, "banana") == (0, "yellow\n", "")
    assert run(capsys, "get", path, "apple")[0] == 1


def test_remote_command_without_a_server_is_one_line(capsys):
    port = _free_port()
    code, out, err = run(capsys, "ping", "--port", port, "--timeout", "5")
    assert code == 3 and out == ""
    assert_one_error_line(err, f"cannot connect to 127.0.0.1:{port}")


# ---------------------------------------------------------------- beside a live writer


def test_read_only_subcommands_work_while_serve_writes(tmp_path, capsys):
    """`dragondb get/scan/trees/stats/check/show/dump/backup` while `dragondb serve` holds
    the database open for writing (docs/processes.md)."""
    import time

    from engine.net.client import Client

    db_path, ready = tmp_path / "live.db", tmp_path / "ready"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", str(db_path), "--port", "0",
                             "--ready-file", str(ready)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        host, port = ready.read_text().split()
        with Client(host, int(port)) as c:
            for i in range(300):
                c.insert(b"k%03d" % i, b"v%d" % i)
            assert run(capsys, "get", db_path, "k007") == (0, "v7\n", "")
            code, out, _ = run(capsys, "scan", db_path, "--prefix", "k29")
            assert code == 0 and out.splitlines() == [f"k29{i}\tv29{i}" for i in range(10)]
            assert run(capsys, "trees", db_path)[:2] == (0, "default\n")
            assert run(capsys, "check", db_path)[0] == 0
            code, out, _ = run(capsys, "stats", db_path, "--json")
            assert code == 0 and json.loads(out)["keys"] == 300
            assert run(capsys, "show", db_path)[0] == 0
            code, out, _ = run(capsys, "dump", db_path)
            assert code == 0 and len(out.splitlines()) == 1 + 1 + 300  # header, tree line, items
            copy = tmp_path / "copy.db"
            assert run(capsys, "backup", db_path, copy)[0] == 0
            with engine.open(copy, read_only=True) as backup:
                backup.check(strict=True)
                assert len(backup.tree("default")) == 300
            c.insert(b"k007", b"again")  # the next command sees the new commit
            assert run(capsys, "get", db_path, "k007") == (0, "again\n", "")
            code, _, err = run(capsys, "put", db_path, "x", "y")  # a second writer is refused
            assert code == 3
            assert_one_error_line(err, "writer")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0

"""`dragondb stats`, `show` and `check --strict`: facts about the file (not
the command's own process), a bounded drawing of a large tree, and a strict
check that fails with the engine-error exit."""

from __future__ import annotations

import json
import os
import re

import pytest

import engine
from engine import cli


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _keys(n: int, width: int = 16):
    return [(b"%0*d" % (width, i), b"v" * 20) for i in range(n)]


@pytest.fixture
def three(tmp_path):
    """Trees "a" (several levels), "b" (empty, no root page), "c" (one key)."""
    path = tmp_path / "s.db"
    with engine.open(path) as db:
        db.tree("a").load(_keys(3000))
        db.tree("b")
        db.tree("c")[b"k"] = b"v"
    return path


# ---------------------------------------------------------------- stats


def test_tree_stats_gives_keys_and_height_per_tree(three):
    with engine.open(three) as db:
        levels = db.tree_levels("a")
        assert len(levels) >= 2
        assert db.tree_stats() == {"a": {"keys": 3000, "height": len(levels)},
                                   "b": {"keys": 0, "height": 0},
                                   "c": {"keys": 1, "height": 1}}
        db.tree("a").clear()
        db.tree("c").delete(b"k")  # an empty root leaf is one level
        assert db.tree_stats()["a"] == {"keys": 0, "height": 0}
        assert db.tree_stats()["c"] == {"keys": 0, "height": len(db.tree_levels("c"))}
    with engine.open(three, read_only=True, create=False) as db:
        assert set(db.tree_stats()) == {"a", "b", "c"}


def test_stats_reports_the_file_not_the_process(three, capsys):
    with engine.open(three, read_only=True, create=False) as db:
        report = db.check()
        height = len(db.tree_levels("a"))
    code, out, err = run(capsys, "stats", "--format", "json", three)
    assert code == 0, err
    stats = json.loads(out)
    wal = f"{three}-wal"
    assert stats["file_bytes"] == os.path.getsize(three)
    assert stats["log_file_bytes"] == (os.path.getsize(wal) if os.path.exists(wal) else 0)
    assert stats["page_size"] == engine.PAGE_SIZE
    assert stats["pages_allocated"] == report.pages_allocated
    assert stats["pages_free"] == report.pages_free
    assert stats["trees"] == 3 and stats["keys"] == 3001
    assert stats["per_tree"] == {"a": {"keys": 3000, "height": height},
                                 "b": {"keys": 0, "height": 0},
                                 "c": {"keys": 1, "height": 1}}
    # the command's own pool and log counters say nothing about the file
    for key in ("pool_hits", "pool_misses", "evictions", "commits", "log_syncs", "rebuilds"):
        assert key not in stats
    code, text, _ = run(capsys, "stats", three)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["file_bytes"] == [f"{os.path.getsize(three):,}"]
    assert rows["a"] == ["3,000", str(height)] and rows["b"] == ["0", "0"]
    assert "pool_hits" not in text


def test_stats_of_a_file_beside_a_live_writer(tmp_path, capsys):
    path = tmp_path / "live.db"
    with engine.open(path) as db:
        db.tree("t").load(_keys(500))
        db.tree("t")[b"extra"] = b"x"  # in the log, not yet home
        code, out, err = run(capsys, "stats", "--format", "json", path)
        assert code == 0, err
        stats = json.loads(out)
        assert stats["per_tree"]["t"]["keys"] == 501
        assert stats["log_file_bytes"] == os.path.getsize(f"{path}-wal") > 0


# ---------------------------------------------------------------- show


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("show") / "big.db"
    with engine.open(path) as db:
        db.tree("default").load(_keys(100_000))
        levels = db.tree_levels("default")
    return path, levels


def test_show_of_100k_keys_is_a_screenful_with_a_summary_per_level(big, capsys):
    path, levels = big
    assert len(levels) == 3 and len(levels[-1]) > 500
    code, out, err = run(capsys, "show", path)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) <= 50, len(lines)
    assert max(map(len, lines)) <= 160  # a child list of 170 pages is abbreviated
    pages = sum(len(level) for level in levels)
    assert lines[0] == f"tree 'default': height 3, {pages} pages, 100000 entries"
    for depth, level in enumerate(levels):
        keys = sum(info.keys for info in level)
        fill = sum(info.fill for info in level) / len(level)
        noun = "page" if len(level) == 1 else "pages"
        summary = f"level {depth} ({('root', 'internal', 'leaves')[depth]}): {len(level)} {noun}, " \
                  f"{keys} keys, average fill {fill:.0%}"
        assert summary in lines, summary
        shown = [info for info in level if f"page {info.page_id} " in out]
        assert len(shown) == min(len(level), 8)
        if len(level) > 8:
            assert f"  ... {len(level) - 8} more pages" in lines
    code, everything, _ = run(capsys, "show", "--max-pages", "0", path)
    assert code == 0 and len(everything.splitlines()) == 1 + len(levels) + pages


def test_show_depth_stops_the_walk(big, capsys):
    path, levels = big
    code, out, _ = run(capsys, "show", "--depth", "1", "--max-pages", "0", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "tree 'default': height 3 (1 level shown), 1 page shown, 100000 entries"
    assert lines[1].startswith("level 0 (root): 1 page, ")
    assert len(lines) == 3 and "level 1" not in out
    code, out, _ = run(capsys, "show", "--depth", "2", "--max-pages", "3", path)
    assert "level 1 (internal): " in out and "level 2" not in out
    assert f"... {len(levels[1]) - 3} more pages" in out


def test_show_dot_stays_small_and_consistent(big, capsys):
    path, levels = big
    code, dot, _ = run(capsys, "show", "--format", "dot", path)
    assert code == 0 and dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert len(dot.splitlines()) < 120
    declared = set(re.findall(r"^\s+(\w+) \[label=", dot, re.M))
    for src, dst in re.findall(r"^\s+(\w+) -> (\w+)", dot, re.M):
        assert src in declared and dst in declared, (src, dst)
    assert f"{len(levels[-1]) - 8} more pages" in dot


def test_show_rejects_bad_limits(big, capsys):
    path, _ = big
    for args in (["--depth", "0"], ["--max-pages", "-1"]):
        code, _, err = run(capsys, "show", *args, path)
        assert code == 2 and "must be" in err, err


# ---------------------------------------------------------------- check --strict


def _corrupt(path):
    with engine.open(path) as db:
        tree = db.tree("default")
        for i in range(400):
            tree.put(f"key{i:05d}".encode(), b"v" * 40)
        db.checkpoint()
        leaf = db.tree_levels("default")[-1][1].page_id
    with open(path, "r+b") as fh:
        offset = leaf * engine.PAGE_SIZE + engine.PAGE_SIZE // 2
        fh.seek(offset)
        old = fh.read(16)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in old))


def test_check_strict_exits_with_the_engine_error_code(tmp_path, capsys):
    path = tmp_path / "c.db"
    with engine.open(path) as db:
        db.tree("default").load(_keys(100))
    code, out, err = run(capsys, "check", "--strict", path)
    assert code == cli.EXIT_OK and out.startswith("ok: ") and not err
    _corrupt(path)
    code, out, err = run(capsys, "check", path)
    assert code == cli.EXIT_NOT_FOUND and "problem" in out
    code, out, err = run(capsys, "check", "--strict", path)
    assert code == cli.EXIT_ERROR and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dragondb: error: ")
    assert lines[0].endswith("(CorruptionError)")

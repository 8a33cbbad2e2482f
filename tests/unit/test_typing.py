"""The public API's annotations: the TypedDicts list exactly the keys the
methods return, and (where mypy is installed, as `make test` installs it)
the static checks of tests/typing pass under the project's mypy config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine.typedefs import CompactResult, Stats, TreeStats

ROOT = Path(__file__).resolve().parents[2]


def test_stats_typeddict_lists_every_key(tmp_path):
    path = tmp_path / "t.db"
    with engine.open(path) as db:
        db.tree("t")[b"k"] = b"v"
        assert set(db.stats()) == set(Stats.__annotations__)
        assert set(db.tree_stats()["t"]) == set(TreeStats.__annotations__)
        assert set(db.compact()) == set(CompactResult.__annotations__)
    with engine.open(path, read_only=True, create=False) as db:
        assert set(db.stats()) == set(Stats.__annotations__)


def test_mypy_passes_on_the_public_modules():
    pytest.importorskip("mypy", reason="mypy is in the test extra; `make typecheck` runs it")
    p = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr

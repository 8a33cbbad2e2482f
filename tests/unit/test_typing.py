"""The public API's annotations: the TypedDicts list exactly the keys the
methods return. The static checks of tests/typing run under mypy in `make
lint` (so in `make test`)."""

from __future__ import annotations

import engine
from engine.typedefs import CompactResult, Stats, TreeStats


def test_stats_typeddict_lists_every_key(tmp_path):
    path = tmp_path / "t.db"
    with engine.open(path) as db:
        db.tree("t")[b"k"] = b"v"
        assert set(db.stats()) == set(Stats.__annotations__)
        assert set(db.tree_stats()["t"]) == set(TreeStats.__annotations__)
        assert set(db.compact()) == set(CompactResult.__annotations__)
    with engine.open(path, read_only=True, create=False) as db:
        assert set(db.stats()) == set(Stats.__annotations__)

"""Shared fixtures. Every database a fixture opens is checked on teardown."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

import engine

sys.path.insert(0, os.path.dirname(__file__))  # tests/strategies.py

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "long", deadline=None, max_examples=2000, suppress_health_check=list(HealthCheck)
)
# `make mutate`: the same examples every run, so a mutant's verdict is reproducible.
settings.register_profile(
    "mutation", deadline=None, derandomize=True, database=None, max_examples=50,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "test.db")


@pytest.fixture
def open_db(db_path, tmp_path):
    """`open_db(path=None, **options)` opens the test database (`db_path`), or
    `path`, a relative one in the test's temporary directory; `sync` is "off"
    unless given. Every database it opened and the test left open is checked
    (no leaks, no pins, shape, CRCs) and closed when the test ends."""
    opened = []

    def _open(path=None, **kw):
        kw.setdefault("sync", "off")
        db = engine.open(db_path if path is None else os.path.join(tmp_path, path), **kw)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        if not db.closed:
            report = db.check()
            db.close()
            assert report.ok, report.problems


@pytest.fixture
def pools():
    """`pools(store, n_frames)` makes a `BufferPool`; every pool it made is
    checked (nothing pinned, invariants hold) and closed when the test ends."""
    from engine.bufferpool import BufferPool

    made = []

    def make(store, n_frames: int):
        pool = BufferPool(store, n_frames)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        assert pool.check_invariants(expect_unpinned=True) == []
        pool.close()

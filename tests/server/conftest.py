"""Fixtures for the server tests: a real engine database in tmp_path and a
server on a loopback ephemeral port, stopped (and the database checked) on
teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server_harness import ServerThread

import engine


@pytest.fixture
def open_db(tmp_path) -> Iterator[Callable[..., Any]]:
    """open_db(name="db", **kw) -> an engine database; checked and closed after."""
    opened: list[Any] = []

    def _open(name: str = "db", **kwargs: Any) -> Any:
        db = engine.open(tmp_path / name, **kwargs)
        opened.append(db)
        return db

    yield _open
    for db in opened:
        try:
            report = db.check()
        except engine.DatabaseClosedError:
            continue
        assert report.ok, report.problems
        db.close()


@pytest.fixture
def start_server(open_db) -> Iterator[Callable[..., ServerThread]]:
    """start_server(db=None, **server_kwargs) -> a running ServerThread."""
    servers: list[ServerThread] = []

    def _start(db: Any = None, **kwargs: Any) -> ServerThread:
        st = ServerThread(db if db is not None else open_db(), **kwargs)
        servers.append(st)
        return st

    yield _start
    for st in servers:
        st.stop()

"""Fixtures for the server tests: a server on a loopback ephemeral port over a
real engine database (the shared `open_db`, which checks it on teardown),
stopped on teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from server_harness import ServerThread


@pytest.fixture
def start_server(open_db) -> Iterator[Callable[..., ServerThread]]:
    """start_server(db=None, **server_kwargs) -> a running ServerThread."""
    servers: list[ServerThread] = []

    def _start(db: Any = None, **kwargs: Any) -> ServerThread:
        st = ServerThread(db if db is not None else open_db("db", sync="full"), **kwargs)
        servers.append(st)
        return st

    yield _start
    for st in servers:
        st.stop()

"""engine.net.serve.serve() in this process: a database object is served and
left open, and every way a start can fail leaves nothing open or half-made
(options checked before opening, a tree or a port that fails closes what
serve() opened, an unwritable ready file leaves no temporary file)."""

from __future__ import annotations

import argparse
import socket
import threading

import pytest

import engine
from engine.net.client import Client
from engine.net.options import add_serve_arguments
from engine.net.serve import main, serve, serve_from_args


def _reopen_for_writing(path) -> None:
    """Fails with DatabaseLockedError if serve() left the database open."""
    with engine.open(path, timeout=0) as db:
        assert db.check().ok


def test_a_database_object_is_served_and_left_open(tmp_path):
    with engine.open(tmp_path / "db.ddb") as db:
        address: list[tuple[str, int]] = []
        failures: list[BaseException] = []

        def run() -> None:
            try:
                serve(db, port=0, allow_shutdown=True, ready=lambda h, p: address.append((h, p)))
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                failures.append(exc)

        thread = threading.Thread(target=run)  # not the main thread: no signal handlers
        thread.start()
        try:
            for _ in range(500):
                if address or failures:
                    break
                thread.join(0.01)
            assert address, failures
            with Client(*address[0], timeout=10) as client:
                client.insert(b"k", b"v")
                client.shutdown()
        finally:
            thread.join(30)
        assert not thread.is_alive() and failures == []
        assert db.tree("default").get(b"k") == b"v"  # still open, and the write is there


def test_bad_options_open_nothing(tmp_path):
    with pytest.raises(ValueError, match="port must be 0..65535"):
        serve(tmp_path / "db.ddb", port=70000)
    with pytest.raises(TypeError):
        serve(tmp_path / "db.ddb", colour="red")
    assert list(tmp_path.iterdir()) == []


def test_a_tree_the_server_cannot_open_closes_the_database(tmp_path):
    path = tmp_path / "db.ddb"
    with pytest.raises(engine.TreeLimitError):
        serve(path, port=0, tree="n" * 300)
    _reopen_for_writing(path)


def test_a_port_in_use_closes_the_database(tmp_path):
    path = tmp_path / "db.ddb"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            serve(path, port=taken.getsockname()[1])
    _reopen_for_writing(path)


def test_an_unwritable_ready_file_stops_the_server_and_leaves_no_temporary_file(tmp_path):
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([str(tmp_path / "db.ddb"), "--port", "0", "--ready-file", "r"])
    (tmp_path / "ready").mkdir()  # the temporary file is written, but cannot replace this
    (tmp_path / "ready" / "x").touch()
    args.ready_file = str(tmp_path / "ready")
    with pytest.raises(OSError):
        serve_from_args(args)
    assert not (tmp_path / "ready.tmp").exists()
    _reopen_for_writing(tmp_path / "db.ddb")


def test_main_turns_a_failure_into_one_line_and_status_1(tmp_path, capsys):
    ready = tmp_path / "missing" / "ready"
    assert main([str(tmp_path / "db.ddb"), "--port", "0", "--ready-file", str(ready)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dragondb: FileNotFoundError: ") and len(err.splitlines()) == 1

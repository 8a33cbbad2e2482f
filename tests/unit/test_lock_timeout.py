"""`timeout=`: a second writer waits for the file lock, polling, up to
`timeout` seconds, then raises `DatabaseLockedError` naming the holder;
`timeout=0` raises at once. Two opens in one process conflict like two
processes do, so one process shows all of it."""

from __future__ import annotations

import os
import threading
import time

import pytest

import engine
from engine.errors import DatabaseLockedError
from engine.locks import FileLock


def test_timeout_zero_raises_at_once_and_names_the_holder(tmp_path):
    path = tmp_path / "a.db"
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            engine.open(path, sync="off", timeout=0)
        assert time.monotonic() - t0 < 0.5
        msg = str(info.value)
        assert str(path) in msg
        assert f"process {os.getpid()}" in msg and "this process" in msg, msg
        assert db.tree("t")[b"k"] == b"v"


def test_second_writer_waits_up_to_its_timeout(tmp_path):
    path = tmp_path / "b.db"
    with engine.open(path, sync="off"):
        t0 = time.monotonic()
        with pytest.raises(DatabaseLockedError, match="waited 0.3"):
            engine.open(path, sync="off", timeout=0.3)
        waited = time.monotonic() - t0
        assert 0.3 <= waited < 2.0, waited


def test_second_writer_gets_the_file_when_the_first_closes(tmp_path):
    path = tmp_path / "c.db"
    first = engine.open(path, sync="off")
    first.tree("t")[b"a"] = b"1"
    closer = threading.Timer(0.3, first.close)
    closer.start()
    t0 = time.monotonic()
    try:
        second = engine.open(path, sync="off", timeout=10)
    finally:
        closer.join()
    try:
        assert 0.2 <= time.monotonic() - t0 < 5
        assert second.tree("t")[b"a"] == b"1"
    finally:
        second.close()


@pytest.mark.parametrize("bad", [-1, "5", True, None, float("nan")])
def test_timeout_must_be_a_non_negative_number(tmp_path, bad):
    with pytest.raises(ValueError, match="timeout"):
        engine.open(tmp_path / "d.db", timeout=bad)
    assert not (tmp_path / "d.db").exists()


def test_file_lock_polls_for_a_shared_holder_to_leave(tmp_path):
    path = tmp_path / "e"
    path.write_bytes(b"x")
    reader = FileLock(path, shared=True)
    threading.Timer(0.2, reader.release).start()
    lock = FileLock(path, timeout=5)
    lock.release()
    reader2 = FileLock(path, shared=True)
    with pytest.raises(DatabaseLockedError, match="shared"):
        FileLock(path, timeout=0)
    reader2.release()

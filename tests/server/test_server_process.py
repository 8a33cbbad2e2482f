"""`python -m engine.server` as a real process: SIGTERM/SIGINT stop it
cleanly with every client told `S`, and every acknowledged insert survives
a restart, even after SIGKILL (sync="full": an ack means fsynced)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from server_harness import recv_all

import engine
from engine import server
from engine.net.client import Client, ServerShutdownError

ROOT = Path(__file__).resolve().parents[2]


def _spawn(db_path: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, tuple[str, int]]:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.server",
            str(db_path),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.communicate()}")
        time.sleep(0.02)
    host, port = ready.read_text().split()
    return proc, (host, int(port))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_data_is_durable(tmp_path, signum):
    db_path = tmp_path / "db"
    proc, address = _spawn(db_path, tmp_path)
    try:
        with Client(*address) as c:
            for i in range(200):
                c.insert(b"k%03d" % i, b"v%d" % i)
            c.delete(b"k007")
        watcher = Client(*address)
        watcher.ping()
        raw = Client(*address)._sock  # a bare socket: must receive exactly S, then EOF
        proc.send_signal(signum)
        assert recv_all(raw) == b"S"
        raw.close()
        with pytest.raises(ServerShutdownError):
            watcher.ping()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert b"serving" in err and b"Traceback" not in err
    with engine.open(db_path) as db:
        tree = db.tree("default")
        assert len(tree) == 199 and tree.get(b"k007") is None and tree.get(b"k123") == b"v123"
        assert db.check().ok


def test_acknowledged_inserts_survive_sigkill(tmp_path):
    db_path = tmp_path / "db"
    proc, address = _spawn(db_path, tmp_path)
    acked: list[list[bytes]] = [[] for _ in range(8)]
    stop = threading.Event()

    def writer(n: int) -> None:
        try:
            with Client(*address, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    key = b"w%d-%06d" % (n, i)
                    c.insert(key, key)
                    acked[n].append(key)  # only after the O came back
                    i += 1
        except (ServerShutdownError, OSError):
            pass  # the kill cut us off; the unacknowledged insert may or may not be there

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.7)
    proc.kill()  # no shutdown, no checkpoint: only the log protects the acks
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    total = sum(map(len, acked))
    assert total > 0
    with engine.open(db_path) as db:
        tree = db.tree("default")
        missing = [k for keys in acked for k in keys if tree.get(k) != k]
        assert not missing, f"{len(missing)} of {total} acknowledged inserts lost"
        assert db.check().ok


def test_allow_shutdown_flag_lets_a_client_stop_the_process(tmp_path):
    db_path = tmp_path / "db"
    proc, address = _spawn(db_path, tmp_path, "--allow-shutdown")
    try:
        with Client(*address) as c:
            c.insert(b"x", b"y")
        Client(*address).shutdown()
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    with engine.open(db_path) as db:
        assert db.tree("default").get(b"x") == b"y"


def test_main_reports_open_errors_with_status_1(tmp_path, capsys):
    not_a_db = tmp_path / "junk"
    not_a_db.write_bytes(os.urandom(8192))
    assert server.main([str(not_a_db), "--port", "0"]) == 1
    assert "NotADatabaseError" in capsys.readouterr().err
    assert not_a_db.stat().st_size == 8192


def test_second_sigterm_drops_a_client_that_blocks_the_graceful_stop(tmp_path):
    db_path = tmp_path / "db"
    proc, address = _spawn(db_path, tmp_path)
    try:
        with Client(*address) as c:
            c.insert(b"big", b"x" * (1 << 20))
        hog = Client(*address)._sock
        hog.sendall(b"G\x07\x00\x00\x00\x03\x00\x00\x00big" * 64)  # 64 MiB of replies, never read
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.5)  # graceful: waits for the hog (up to --request-timeout)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        hog.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    with engine.open(db_path) as db:
        assert db.tree("default").get(b"big") == b"x" * (1 << 20)

"""Regression tests for data lost from outside: a killed process whose
unsynced writes the next process builds on, `sync="off"` checkpoints, an
empty data file beside a full log, and read-only opens that wrote.

Every test runs both processes through one `CrashDisk`: the first process's
handle is abandoned where it was "killed" (its writes stay visible, as in the
page cache), the second opens through the same disk, and then the power
fails, keeping only what some process synced.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import engine
from engine import syncpoints
from faults.crash import MODES, CrashDisk

PATH = "/crash/findings.ddb"
VALUE = b"v" * 100


class Killed(BaseException):
    """The process died here: nothing after this point ran."""


class KillAt:
    """A BlockFile opener that kills the process at its `n`-th I/O call
    (write, extend, truncate or sync on any file), before the call runs."""

    def __init__(self, disk: CrashDisk, n: int) -> None:
        self.disk, self.n, self.calls = disk, n, 0

    def opener(self, path, create):
        inner = self.disk.opener(path, create)
        killer = self

        class _File:
            direct = inner.direct

            def __getattr__(self, name):
                attr = getattr(inner, name)
                if name in ("write", "extend", "truncate", "sync"):
                    def call(*args):
                        killer.calls += 1
                        if killer.calls == killer.n:
                            raise Killed(name)
                        return attr(*args)
                    return call
                return attr

        return _File()


def _p1_workload(opener, acked: list[bytes], sync: str = "full") -> None:
    """Process 1: puts, a checkpoint in the middle, more puts; `acked` gets
    each key whose put returned (durable under sync="full")."""
    db = engine.open(PATH, opener=opener, sync=sync)
    t = db.tree("t")
    for i in range(12):
        if i == 6:
            db.checkpoint()
        t.put(b"k%02d" % i, VALUE)
        acked.append(b"k%02d" % i)
    db.close()


def _state(images: dict[str, bytes]) -> dict[bytes, bytes] | None:
    disk = CrashDisk(images)
    with engine.open(PATH, opener=disk.opener) as db:
        db.check(strict=True)
        if "t" not in db.trees():
            return None
        return dict(db.tree("t").items())


def _assert_prefix(state, acked: list[bytes], tried: int) -> None:
    """The state holds the first j keys of the workload for some j with
    every acknowledged key among them."""
    keys = sorted(state or {})
    assert keys == [b"k%02d" % i for i in range(len(keys))], keys
    assert len(acked) <= len(keys) <= tried, (len(acked), len(keys), tried)
    assert all(v == VALUE for v in (state or {}).values())


P1_CALLS = 52  # I/O calls of `_p1_workload`; the test below checks it


def test_the_kill_points_cover_the_workload() -> None:
    killer = KillAt(CrashDisk(), 0)
    _p1_workload(killer.opener, [])
    assert killer.calls == P1_CALLS


@pytest.mark.parametrize("kill_at", range(1, P1_CALLS + 1, 2))
def test_recovery_builds_only_on_what_it_made_durable(kill_at: int) -> None:
    """Finding 1: process 1 is killed at its `kill_at`-th I/O call; process 2
    recovers and writes; then power fails at every point of process 2's
    run. Each image opens, passes check, and holds a prefix of process 1's
    puts with every acknowledged one."""
    disk = CrashDisk()
    killer = KillAt(disk, kill_at)
    acked: list[bytes] = []
    with pytest.raises(Killed):
        _p1_workload(killer.opener, acked)
    start = len(disk.events)
    db = engine.open(PATH, opener=disk.opener)
    db.tree("t").put(b"zz", b"p2")
    db.close()
    for crash_at in range(start, len(disk.events) + 1):
        for mode in ("drop", "torn", "reorder"):
            images = disk.images(crash_at, mode, seed=crash_at)
            if PATH not in images:
                continue
            state = _state(images)
            if state is not None:
                state.pop(b"zz", None)
            _assert_prefix(state, acked, len(acked) + 1)


def test_killed_before_the_commit_fsync_then_power_loss() -> None:
    """Finding 1, the reported case: killed after k1's log write and before
    its fsync; the next open recovers; power fails before it syncs again."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener)
    t = db.tree("t")
    t.put(b"k00", VALUE)

    def kill(name: str) -> None:
        if name == "wal.sync":
            raise Killed(name)

    syncpoints.install(kill)
    try:
        with pytest.raises(Killed):
            t.put(b"k01", VALUE)
    finally:
        syncpoints.uninstall()
    start = len(disk.events)
    engine.open(PATH, opener=disk.opener).close()
    for crash_at in range(start, len(disk.events) + 1):
        for mode in MODES:
            state = _state(disk.images(crash_at, mode, seed=crash_at))
            _assert_prefix(state, [b"k00"], 2)


@pytest.mark.parametrize("mode", ["off", "normal", "full"])
def test_checkpoint_never_undoes_a_returned_commit(mode: str) -> None:
    """Finding 2: everything before the last returned `commit()` survives a
    power loss in every sync mode, and the state is a prefix."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync=mode)
    t = db.tree("t")
    committed_at: list[tuple[int, int]] = []  # (event count, keys committed)
    for i in range(8):
        t.put(b"k%02d" % i, VALUE)
        if i % 2 == 1:
            db.commit()
            committed_at.append((len(disk.events), i + 1))
        if i % 3 == 2:
            db.checkpoint()
    db.close()
    for crash_at in range(len(disk.events) + 1):
        durable = max((n for at, n in committed_at if at <= crash_at), default=0)
        for m in ("drop", "torn", "reorder"):
            images = disk.images(crash_at, m, seed=crash_at)
            if PATH not in images or not images[PATH]:
                continue
            _assert_prefix(_state(images), [b"k%02d" % i for i in range(durable)], 8)


def _digest(disk: CrashDisk) -> dict[str, str]:
    return {p: hashlib.sha256(disk.content(p)).hexdigest() for p in disk.paths()}


def _killed_writer(sync: str = "full", checkpoint: bool = False) -> tuple[CrashDisk, list[bytes]]:
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync=sync)
    t = db.tree("t")
    keys = []
    for i in range(5):
        t.put(b"k%02d" % i, VALUE)
        keys.append(b"k%02d" % i)
        if checkpoint and i == 1:
            db.checkpoint()
    return disk, keys  # the handle is abandoned: the process died


def test_empty_data_file_beside_a_log_is_recovered() -> None:
    """Finding 3: a data file cut to 0 bytes beside a log whose records start
    at the creation: every acknowledged put comes back, nothing is wiped."""
    disk, keys = _killed_writer()
    images = disk.images(None, "keep")
    images[PATH] = b""
    disk2 = CrashDisk(images)
    with engine.open(PATH, opener=disk2.opener) as db:
        db.check(strict=True)
        assert sorted(db.tree("t").keys()) == keys


def test_empty_data_file_beside_a_checkpointed_log_is_refused_untouched() -> None:
    """Finding 3: when the log builds on a checkpoint the empty data file
    lost, the open raises a typed error and changes neither file."""
    disk, _ = _killed_writer(checkpoint=True)
    images = disk.images(None, "keep")
    images[PATH] = b""
    disk2 = CrashDisk(images)
    before = _digest(disk2)
    for ro in (False, True):
        with pytest.raises(engine.CorruptionError):
            engine.open(PATH, opener=disk2.opener, read_only=ro)
        assert _digest(disk2) == before
    assert len(disk2.events) == 0


@pytest.mark.parametrize("checkpoint", [False, True])
def test_read_only_open_after_a_crash_writes_nothing(checkpoint: bool) -> None:
    """Finding 6: a read-only open of a crashed database recovers into
    memory, serves the recovered state, and changes no byte of either file."""
    disk, keys = _killed_writer(checkpoint=checkpoint)
    start = len(disk.events)
    before = _digest(disk)
    with engine.open(PATH, opener=disk.opener, read_only=True) as db:
        assert sorted(db.tree("t").keys()) == keys
        assert db.tree("t")[keys[-1]] == VALUE
        assert db.check().ok
        with pytest.raises(engine.ReadOnlyError):
            db.tree("t").put(b"x", b"y")
    assert _digest(disk) == before
    assert len(disk.events) == start
    # a later writable open still recovers everything
    with engine.open(PATH, opener=disk.opener) as db:
        assert sorted(db.tree("t").keys()) == keys


def test_read_only_open_of_a_crashed_read_only_file(tmp_path) -> None:
    """Finding 6 on real files: after a writer died without closing, a
    read-only open of 0444 files works and leaves both files as they were."""
    import subprocess
    import sys

    path = str(tmp_path / "ro.ddb")
    code = (
        "import os, engine\n"
        f"db = engine.open({path!r}); t = db.tree('t')\n"
        "for i in range(50): t.put(b'k%03d' % i, b'v')\n"
        "os._exit(0)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    files = [path, path + "-wal"]
    before = {f: (open(f, "rb").read(), os.path.getsize(f)) for f in files}
    for f in files:
        os.chmod(f, 0o444)
    try:
        with engine.open(path, read_only=True) as db:
            assert len(db.tree("t")) == 50
    finally:
        for f in files:
            os.chmod(f, 0o644)
    assert {f: (open(f, "rb").read(), os.path.getsize(f)) for f in files} == before


def test_read_only_open_of_a_new_database_whose_creator_died() -> None:
    """Found by the campaign's `readonly` kind: a database created and never
    written (the creation page and a log with no records) is an empty
    database for a read-only open too, not a "creation never finished"."""
    disk = CrashDisk()
    engine.open(PATH, opener=disk.opener)  # the creator dies with it open
    before, start = _digest(disk), len(disk.events)
    with engine.open(PATH, opener=disk.opener, read_only=True) as db:
        assert db.trees() == [] and db.check().ok
    assert _digest(disk) == before and len(disk.events) == start

"""`engine.wal`'s syncs: when `sync_to` fsyncs (rule 1), that one fsync of
the log runs at a time whoever leads it (a committer or a checkpoint's end),
the sync points a scheduler orders threads by, and what a failed fsync says
(rule 6). Written against the mutants the unit tests let through
(docs/verification.md, "Mutation score")."""

from __future__ import annotations

import errno
import threading
import time

import pytest
from logfiles import SpyFile, new_wal, put_payload

from engine import syncpoints
from engine.disk import DirectFile
from engine.errors import NeedsRecoveryError
from engine.wal import Wal
from engine.walformat import CKPT_BEGIN, CKPT_END, COMMIT, scan
from faults.io import FaultPlan

# -- sync_to -------------------------------------------------------------------------


def test_sync_to_syncs_only_when_the_mode_or_force_asks(tmp_path):
    wal = new_wal(tmp_path, sync="normal")
    lsn = wal.commit(put_payload(0))
    wal.sync_to(lsn)
    assert wal.syncs == 0 and wal.durable_lsn == 0
    wal.sync_to(lsn, force=True)
    assert wal.syncs == 1 and wal.durable_lsn == lsn
    wal.sync_to(lsn, force=True)
    assert wal.syncs == 1, "an LSN already durable costs no fsync"
    assert wal.commits == 1
    wal.close()
    full = new_wal(tmp_path, sync="full", name="full")
    lsn = full.commit(put_payload(0))
    full.sync_to(lsn)
    assert full.syncs == 1 and full.durable_lsn == lsn
    full.close()


def test_checkpoint_end_durable_syncs_everything_appended(tmp_path):
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=False)
    assert wal.syncs == 0 and wal.durable_lsn == 0
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=True)
    assert wal.syncs == 1 and wal.durable_lsn == wal.lsn == 5
    kinds = [r.rtype for r in scan(wal.read_all())[1]]
    assert kinds == [COMMIT, CKPT_BEGIN, CKPT_END, CKPT_BEGIN, CKPT_END]
    wal.close()


# -- failures: what they say ---------------------------------------------------------


_REOPEN = "an earlier log sync failed; reopen the database to recover"


@pytest.mark.parametrize("code, expect", [(errno.ENOSPC, errno.ENOSPC), (0, errno.EIO)])
def test_a_failed_log_fsync_keeps_its_errno(tmp_path, code, expect):
    plan = FaultPlan()
    plan.fail("sync", 1, errno=code)
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(opener(str(tmp_path / "log"), True), "full")
    wal.reset(0, sync=False)
    lsn = wal.commit(put_payload(0))
    with pytest.raises(NeedsRecoveryError) as info:
        wal.sync_to(lsn)
    assert info.value.errno == expect, "EIO when the failure gave no errno"
    assert info.value.strerror.startswith("log fsync failed (")
    assert info.value.strerror.endswith("); reopen the database to recover")
    for call in (lambda: wal.sync_to(lsn), lambda: wal.commit(put_payload(1))):
        with pytest.raises(NeedsRecoveryError) as info:
            call()
        assert str(info.value) == _REOPEN
    wal.close()


# -- sync points and the one-fsync-at-a-time rule -----------------------------------------


class _Points:
    """A sync-point hook that records (thread, name) and yields a moment at
    "latch.wait" (where, under a hook, a waiter spins instead of blocking)."""

    def __init__(self, on=None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.on = on

    def __call__(self, name: str) -> None:
        self.seen.append((threading.current_thread().name, name))
        if self.on is not None:
            self.on(name)
        if name == "latch.wait":
            time.sleep(0.001)

    def __enter__(self):
        syncpoints.install(self)
        return self

    def __exit__(self, *exc) -> None:
        syncpoints.uninstall()


def test_commit_and_sync_reach_their_sync_points(tmp_path):
    wal = new_wal(tmp_path)
    with _Points() as points:
        lsn = wal.commit(put_payload(0))
        assert points.seen == [("MainThread", "wal.append")]
        wal.sync_to(lsn, force=True)
        assert points.seen[1:] == [("MainThread", "wal.sync")]
        wal.sync_to(lsn, force=True)
        assert len(points.seen) == 2, "an LSN already durable reaches no sync point"
    wal.close()


def test_a_sync_made_by_another_leader_meanwhile_is_not_repeated(tmp_path):
    """A committer that finds its LSN durable once it holds the lock returns
    without an fsync of its own."""
    wal = new_wal(tmp_path)
    lsn = wal.commit(put_payload(0))
    nested = []

    def other_leader(name: str) -> None:
        if name == "wal.sync" and not nested:
            nested.append(name)
            wal.sync_to(lsn, force=True)  # another committer's fsync covers lsn

    with _Points(other_leader):
        wal.sync_to(lsn, force=True)
    assert wal.syncs == 1 and wal.durable_lsn == lsn
    wal.close()


class _InFlight(SpyFile):
    """Counts fsyncs running at once; runs `during` inside the first one."""

    def __init__(self, inner) -> None:
        super().__init__(inner)
        self.running = self.most = 0
        self.guard = threading.Lock()

    def sync(self):
        with self.guard:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            super().sync()
        finally:
            with self.guard:
                self.running -= 1


def _second_committer(wal: Wal, work, hooked: bool) -> tuple[list[BaseException], _Points]:
    """Run `work` in a thread while the main thread's fsync is running;
    return its errors. With a sync-point hook the thread must be seen
    waiting; without, it is given half a second to park."""
    errors: list[BaseException] = []
    appended = threading.Event()

    def run() -> None:
        try:
            work(appended)
        except BaseException as exc:
            errors.append(exc)

    def during() -> None:
        other = threading.Thread(target=run, name="second")
        other.start()
        assert appended.wait(10)
        if hooked:
            for _ in range(10_000):
                if ("second", "latch.wait") in points.seen or not other.is_alive():
                    break
                time.sleep(0.001)
        else:
            other.join(0.5)
        wal.file.join_later = other

    wal.file.on_sync = during
    points = _Points()
    if hooked:
        syncpoints.install(points)
    return errors, points


@pytest.mark.parametrize("hooked", [False, True], ids=["blocking", "sync-points"])
def test_a_durable_checkpoint_end_waits_for_the_running_fsync(tmp_path, hooked):
    wal = Wal(_InFlight(DirectFile.open(tmp_path / "log", True, "auto")), "off")
    wal.reset(0, sync=False)
    lsn = wal.commit(put_payload(0))

    def checkpoint(appended) -> None:
        wal.checkpoint_begin(0)
        appended.set()
        wal.checkpoint_end(0, durable=True)

    _one_fsync_at_a_time(wal, checkpoint, lambda: wal.sync_to(lsn, force=True), hooked)


@pytest.mark.parametrize("hooked", [False, True], ids=["blocking", "sync-points"])
def test_a_committer_waits_for_a_durable_checkpoint_end(tmp_path, hooked):
    wal = Wal(_InFlight(DirectFile.open(tmp_path / "log", True, "auto")), "off")
    wal.reset(0, sync=False)
    wal.checkpoint_begin(0)

    def commit(appended) -> None:
        lsn = wal.commit(put_payload(1))
        appended.set()
        wal.sync_to(lsn, force=True)

    _one_fsync_at_a_time(wal, commit, lambda: wal.checkpoint_end(0, durable=True), hooked)


def _one_fsync_at_a_time(wal: Wal, second, first, hooked: bool) -> None:
    """Run `second` in a thread beside `first` (whose fsync is held in
    flight): the log saw one fsync at a time, two in all, and everything
    durable; with sync points, the second waited on the latch."""
    errors, points = _second_committer(wal, second, hooked)
    try:
        first()
        wal.file.join_later.join(30)
    finally:
        if hooked:
            syncpoints.uninstall()
    assert not errors, errors
    assert wal.file.most == 1, "two fsyncs of the log at once"
    assert wal.syncs == 2 and wal.durable_lsn == wal.lsn == 3
    if hooked:
        assert ("second", "latch.wait") in points.seen
    wal.close()

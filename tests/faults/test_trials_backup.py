"""The campaign's `backup` trial kind (`faults.trials_backup`): it replays,
counts, judges wrong states as wrong, and finds a backup that skips a sync.

The planted bugs are disks that lie about one sync of the backup (a
wrapped opener: the fault seam, never a patch of the engine): the copy's
fsync, or the directory's after the rename. Each is what a backup without
that fsync would leave, and the kind must report it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

import engine
from faults import campaign as C
from faults import trials_backup as B
from faults.crash import CrashDisk
from faults.io import FaultPlan
from faults.report import Tally
from faults.session import PATH
from faults.workload import contents

MODES = ("drop", "torn", "reorder", "random")


def seed_where(want) -> int:
    """The first trial seed whose scenario `want` accepts."""
    return next(s for s in range(1000) if want(B.scenario(s)))


THREAD = seed_where(lambda sc: sc.thread and sc.old and not sc.fault)
AFTER = seed_where(lambda sc: not sc.thread and not sc.old and not sc.fault)
FAULT = seed_where(lambda sc: sc.fault and sc.old)


def test_the_kind_is_in_the_campaign() -> None:
    assert C.TRIAL_MODULES["backup"] == "faults.trials_backup" and C.KIND_WEIGHTS["backup"] > 0
    kinds = {tk.split(":")[0] for tk, _ in zip(C.tokens(7), range(400), strict=False)}
    assert "backup" in kinds


@pytest.mark.parametrize("seed", [THREAD, AFTER, FAULT], ids=["thread", "after", "fault"])
def test_a_backup_trial_runs_counts_and_replays(seed: int) -> None:
    token = f"backup:{seed}"
    first, again = C.run_trial(token), C.run_trial(token)
    assert first == again
    assert first["failures"] == [] and first["trials"] == {"backup": 1}
    assert first["operations"] == C.planned_ops(token) > 0
    assert first["crashes_simulated"] >= 15
    assert first["recoveries_verified"] == first["crashes_simulated"]
    assert 0 < first["recoveries_run"] <= 2 * first["crashes_simulated"]
    assert set(first["crash_modes"]) <= {f"backup-{m}" for m in MODES}
    assert sum(first["crash_modes"].values()) == first["crashes_simulated"]
    if seed == FAULT:
        assert sum(first["faults_injected"].values()) == 1 and first["ops_failed"] == 1


def test_the_writer_thread_commits_during_the_backup() -> None:
    """Across seeds, the copy holds states the writer thread made while the
    backup ran, not only the one before it: the interleavings are real."""
    picked = set()
    for seed in range(60):
        sc = B.scenario(seed)
        if not sc.thread:
            continue
        src = B._Source(sc)
        before = src.model.snapshot()
        _, _, copies = B._backup(src)
        src.db.close()
        copy, why = B.BackupRun(src.disk, PATH, B.DEST, start=0, returned=0, copies=copies, old=(),
                                source_states=src.states).state(src.disk.images(None, "keep"), B.DEST)
        assert why is None and copy in copies and copies[0] == before
        picked.add(copy == before)
    assert picked == {True, False}


def test_fault_trials_fail_the_backups_own_calls() -> None:
    tally = Tally()
    for seed in range(20):
        if B.scenario(seed).fault:
            tally.merge(Tally.from_dict(C.run_trial(f"backup:{seed}")))
    assert tally.failures == [] and tally.n["ops_failed"] == sum(tally.faults.values()) > 0
    assert tally.sites <= tally.seen  # seen: the backup's own call sites, its copy's among them
    assert {("write", "engine.maintenance._copy_pages < engine.maintenance._backup_to"),
            ("sync", "engine.maintenance.backup < engine.db.Database.backup")} <= tally.seen
    assert len({(k, site) for k, site in tally.sites if site.startswith("engine.maintenance.")}) >= 2, tally.sites


def test_a_backup_whose_checkpoint_cannot_sync_leaves_the_source_to_recover() -> None:
    """The data file's fsync fails in the backup's checkpoint: `NeedsRecoveryError`,
    then the trial reopens the source, which holds the model and keeps working."""
    sc = replace(B.scenario(AFTER), sync="full", writes=[])
    plan = FaultPlan(1)
    plan.fail("sync", 1, file="/c.db")
    src = B._Source(sc, plan)
    src.db.tree("t").put(b"dirty", b"page")  # a page for the checkpoint to write home
    src.model.tree("t").put(b"dirty", b"page")
    src.hist.note(src.model.snapshot(), True, "put")
    tally = Tally()
    B._failing_backup("backup:1", tally, src, plan, "a failing checkpoint", MODES, 1)
    assert [i.kind for i in plan.injected] == ["sync"] and tally.failures == []
    assert tally.n["ops_failed"] == 1 and "reopen" in src.hist.ops
    assert tally.n["crashes_simulated"] == tally.n["recoveries_verified"] > 0


# -- the oracle reports wrong states ------------------------------------------------------------

def _one_backup(old: bool):
    disk = CrashDisk()
    olds = B._old_database(disk, (5, 2, 300)) if old else ()
    db = engine.open(PATH, opener=disk.opener, pool_pages=16)
    db.tree("t").update({b"k%03d" % i: b"v" * 200 for i in range(80)})
    model = contents(db)
    start = disk.mark("backup")
    db.backup(B.DEST)
    returned = disk.mark("returned")
    db.close()
    return disk, olds, model, start, returned


def test_the_oracle_reports_a_wrong_copy_a_lost_copy_and_a_wrong_source() -> None:
    disk, old, model, start, returned = _one_backup(old=False)

    def judged(**kw) -> B.BackupRun:
        args = dict(start=start, returned=returned, copies=[model], old=old, source_states=lambda at: [model])
        return B.BackupRun(disk, PATH, B.DEST, **{**args, **kw})

    assert judged().judge(returned, "drop") == ("new", None)
    outcome, problem = judged(copies=[{"t": {}}]).judge(returned, "drop")
    assert outcome == "new" and problem.startswith("the copy is neither the old database nor the backup's state")
    outcome, problem = judged(returned=start).judge(start, "drop")  # claims it returned before it ran
    assert (outcome, problem) == ("absent", "the backup returned, yet no copy survived")
    outcome, problem = judged(source_states=lambda at: [{}]).judge(returned, "drop")
    assert problem.startswith("the source is no allowed state")
    run = judged()
    for at in range(start, returned + 1):  # a copy pinned once stays the one state allowed
        run.judge(at, "keep")
    run.copies.append({"t": {}})
    assert run.copy == model and run.judge(returned, "keep") == ("new", None)


def test_the_oracle_allows_the_old_database_only_before_the_backup_returned() -> None:
    disk, old, model, start, returned = _one_backup(old=True)
    run = B.BackupRun(disk, PATH, B.DEST, start=start, returned=returned, copies=[model], old=old,
                      source_states=lambda at: [model])
    assert run.judge(start, "drop") == ("old", None)
    late = B.BackupRun(disk, PATH, B.DEST, start=start, returned=start, copies=[model], old=old,
                       source_states=lambda at: [model])
    outcome, problem = late.judge(start, "drop")
    assert outcome == "new" and problem.startswith("the copy is neither"), problem


# -- planted bugs: a disk that drops one sync of the backup ----------------------------------------

class _Lying:
    """A file whose `sync` (or `sync_dir`) returns without syncing."""

    def __init__(self, inner, sync: bool, sync_dir: bool) -> None:
        self.inner, self._sync, self._sync_dir = inner, sync, sync_dir

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def sync(self) -> None:
        if self._sync:
            self.inner.sync()

    def sync_dir(self) -> None:
        if self._sync_dir:
            self.inner.sync_dir()


def _skipping(what: str):
    def wrap(opener):
        def open_(path: str, create: bool):
            copy = path.endswith(".tmp")  # the copy: its fsync, and its rename's directory fsync
            return _Lying(opener(path, create), sync=not (copy and what == "sync"),
                          sync_dir=not (copy and what == "sync_dir"))
        return open_
    return wrap


@pytest.mark.parametrize("what", ["sync", "sync_dir"])
def test_a_backup_skipping_a_sync_is_found(what: str) -> None:
    found = []
    for seed in range(6):
        tally = Tally()
        B.check(f"backup:{seed}", seed, tally, MODES, wrap=_skipping(what))
        found += [f["error"] for f in tally.failures]
    assert len(found) >= 5, found
    assert all(e.startswith("divergences: ") for e in found)
    # no fsync: the renamed copy's pages are lost; no directory fsync: the rename is
    expect = "the copy: refused" if what == "sync" else "copy.db.tmp'] is left"
    assert any(expect in e for e in found), found


def test_a_page_flipped_while_the_backup_reads_it_is_not_copied() -> None:
    """A read the checksums would catch (a bit flipped on the way) must not
    make a backup that returns a copy failing `check`."""
    disk, plan = CrashDisk(), FaultPlan(5)
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16)
    db.tree("t").update({b"k%04d" % i: b"v" * 100 for i in range(300)})
    db.checkpoint()
    want = contents(db)
    plan.bitflip(1, file=".db", page=3)
    try:
        db.backup(B.DEST)
    except engine.CorruptionError:
        return  # refused: as good as a clean copy
    plan.disarm()
    copy = engine.open(B.DEST, opener=CrashDisk(disk.images(None, "keep")).opener, create=False)
    assert contents(copy) == want
    copy.check(strict=True)


def test_a_backup_read_may_return_a_flipped_bit() -> None:
    """The trial that found a free-list trunk flipped on its way into a copy
    that would not open ("page 3: checksum mismatch"); it passes now."""
    rep = C.run_trial("backup:167948304512415")
    assert rep["faults_by_effect"] == {"bitflip": 1}
    assert rep["failures"] == [] and rep["recoveries_verified"] == rep["crashes_simulated"] > 0

"""The campaign's oracle (`faults.session`, `faults.recovery`) reports what it must.

A harness that never fails proves nothing: each test hands the oracle a
wrong state (a model the engine disagrees with, a damaged or foreign data
file, a recovery that gives the wrong state or none) and sees it report a
failure with the command that replays it; the paths an injected fault takes
(a failed fsync, a creation that never returned) pass.
"""

from __future__ import annotations

import random

import pytest

from faults.crash import CrashDisk
from faults.io import FaultPlan
from faults.recovery import Recovery, check_recovery
from faults.report import Tally, TrialFailure
from faults.session import PATH, Session
from faults.trials_readonly import record

TOKEN = "faults:1"
OPS = [("tree", "t"), *(("put", "t", b"k%03d" % i, b"v" * 300) for i in range(40))]


def session(plan: FaultPlan | None = None, armed: list[bool] | None = None, **kw) -> Session:
    switch = armed if armed is not None else [False]
    return Session(Tally(), TOKEN, plan or FaultPlan(1), random.Random(1), sync="full",
                   armed=lambda: switch[0], **kw)


def run(s: Session, ops: list[tuple]) -> None:
    for i, op in enumerate(ops, 1):
        s.step(op, i)


def test_a_model_the_engine_disagrees_with_is_a_divergence() -> None:
    s = session()
    s.open("open")
    run(s, OPS[:3])
    s.model.tree("t").put(b"planted", b"x")  # the model now claims a key the engine never got
    with pytest.raises(TrialFailure):
        s.finish()
    assert s.tally.n["divergences"] == 1
    [failure] = s.tally.failures
    assert failure["error"].startswith("divergences: final reopen: tree 't'")
    assert "missing [b'planted']" in failure["error"]
    assert failure["replay"] == f"dragondb campaign --replay {TOKEN}"
    s.abandon()


def test_a_failed_log_fsync_reopens_and_finds_the_model_before_or_after() -> None:
    plan = FaultPlan(1)
    plan.fail("sync", 1, file="-wal")
    armed = [False]
    s = session(plan, armed)
    s.open("open")
    run(s, OPS[:2])
    armed[0] = True
    s.step(("put", "t", b"late", b"v"), 3)  # its commit's fsync fails
    armed[0] = False
    assert plan.injected and s.tally.n["ops_failed"] == 1
    assert s.model.tree("t").get(b"late") in (None, b"v")
    s.finish()
    assert s.tally.failures == []


def test_a_database_that_cannot_be_read_back_is_a_divergence() -> None:
    s = session()
    s.open("open")
    run(s, OPS)
    s.close()  # checkpoints: every page is home
    images = s.disk.images(None, "keep")
    data = bytearray(images[PATH])
    for at in range(4096, len(data), 4096):  # every page but the header: their checksums fail
        data[at + 100] ^= 0xFF
    images[PATH] = bytes(data)
    s.disk = CrashDisk(images)
    with pytest.raises(TrialFailure):
        s.open("open after the damage")
    assert s.tally.n["divergences"] == 1
    assert "open after the damage" in s.tally.failures[0]["error"]
    s.abandon()


def test_a_foreign_file_after_the_database_was_created_is_a_divergence() -> None:
    s = session()
    s.open("open")
    run(s, OPS[:2])
    s.close()
    s.disk = CrashDisk({PATH: b"not a database" * 1000})
    with pytest.raises(TrialFailure):
        s.open("reopen")
    assert "after the database was created" in s.tally.failures[0]["error"]


@pytest.mark.parametrize("where", ["memory", "real files"])
def test_a_creation_that_never_returned_may_be_refused(where: str, tmp_path) -> None:
    """No operation returned yet: a half-made file is removed and the open
    starts again, and that is no failure."""
    if where == "memory":
        s = session()
        s.disk = CrashDisk({PATH: b"half-made" * 100})
    else:
        s = session(real_dir=str(tmp_path))
        (tmp_path / "c.db").write_bytes(b"half-made" * 100)
    s.open("open")
    assert s.tally.n["ops_failed"] == 1 and s.tally.failures == []
    run(s, OPS[:2])
    s.finish()
    assert s.tally.failures == []


# -- recovery ------------------------------------------------------------------------------------

def test_recovery_is_judged_against_the_states_the_history_allows(tmp_path) -> None:
    hist = record(OPS[:10], "full", 1 << 30)
    end = len(hist.disk.events)
    recover = Recovery(str(tmp_path), "full")
    tally = Tally()
    images = hist.disk.images(end, "drop")
    check_recovery(tally, TOKEN, hist, recover, images, hist.allowed(end), "at the end", "drop")
    check_recovery(tally, TOKEN, hist, recover, dict(images), hist.allowed(end), "at the end again", "drop")
    assert tally.n["recoveries_verified"] == 2 and recover.runs == 1, "identical images are recovered once"
    check_recovery(tally, TOKEN, hist, recover, images, [0], "only the empty state allowed", "drop")
    assert tally.n["divergences"] == 1
    assert "recovered state matches no allowed step" in tally.failures[0]["error"]
    check_recovery(tally, TOKEN, hist, recover, images, [], "before the creation returned", "drop")
    assert tally.n["divergences"] == 2 and len(tally.failures) == 1, "a trial reports its first failure only"


def test_a_refused_recovery_fails_unless_the_creation_never_returned(tmp_path) -> None:
    hist = record(OPS[:3], "full", 1 << 30)
    recover = Recovery(str(tmp_path), "full")
    tally = Tally()
    garbage = {PATH: b"\xff" * 8192, PATH + "-wal": b""}
    check_recovery(tally, TOKEN, hist, recover, garbage, [], "creation in flight", "drop")
    assert tally.n["recoveries_verified"] == 1 and not tally.failures
    check_recovery(tally, TOKEN, hist, recover, garbage, [1], "after the creation", "drop")
    assert tally.failures[0]["error"].startswith("divergences: after the creation: refused:")

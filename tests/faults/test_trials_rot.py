"""The campaign's `rot` trial kind (`faults.trials_rot`): a bit of the log
flipped at rest after `sync="normal"` commits of hundreds of records.

Recovery of the engine before rule 5a's voucher search walked past 256 LSNs
failed 71 of 320 of these trials (campaign seed 1, 30 s); here the oracle is
shown to call such an outcome a loss, on a log cut where that engine cut it.
"""

from __future__ import annotations

import engine
from faults import campaign as C
from faults import trials_rot as R
from faults.crash import CrashDisk
from faults.recovery import open_writable
from faults.workload import contents

SEEDS = range(40)


def test_the_kind_is_in_the_campaign() -> None:
    assert C.TRIAL_MODULES["rot"] == "faults.trials_rot" and C.KIND_WEIGHTS["rot"] > 0
    kinds = {tk.split(":")[0] for tk, _ in zip(C.tokens(7), range(400), strict=False)}
    assert "rot" in kinds


def test_the_workload_commits_more_than_256_records_at_once_in_most_trials() -> None:
    rounds = [r for s in SEEDS for r in R.workload(s)]
    assert min(len(r) for r in rounds) >= 20 and max(len(r) for r in rounds) <= 700
    assert sum(len(r) > 256 for r in rounds) >= len(rounds) // 3


def test_rot_trials_pass_both_ways_and_replay() -> None:
    outcomes = {"rot-refused": 0, "rot-opened": 0}
    for seed in SEEDS:
        rep = C.run_trial(f"rot:{seed}")
        assert rep["failures"] == [], rep["failures"]
        assert rep["trials"] == {"rot": 1} and rep["recoveries_verified"] == rep["crashes_simulated"] == 1
        assert rep["operations"] == C.planned_ops(f"rot:{seed}") > 20
        for mode, n in rep["crash_modes"].items():
            outcomes[mode] += n
    assert outcomes["rot-refused"] >= 30 and outcomes["rot-opened"] >= 1, outcomes  # 39 and 1
    assert C.run_trial("rot:3") == C.run_trial("rot:3")


def test_the_oracle_calls_a_log_cut_at_a_damaged_durable_record_a_loss() -> None:
    """What recovery without the voucher search did: treat the damaged
    record as the log's torn end, so every commit from it on is gone."""
    images, last_start, before, after = R._write(5)
    assert len(after["a"]) > 100 and after != before
    log = images[R.LOG]
    cut = dict(images)
    cut[R.LOG] = log[: last_start // 3] + bytes(len(log) - last_start // 3)
    why = open_writable(cut, "normal", [after])
    assert why is not None and why.startswith("opened and lost acknowledged data: tree 'a'"), why
    assert open_writable(images, "normal", [after]) is None
    assert open_writable(images, "normal", [before]) is not None


def test_the_oracle_accepts_a_refusal_that_changed_nothing_and_reports_a_damaged_page() -> None:
    images, last_start, before, after = R._write(5)
    log = bytearray(images[R.LOG])
    log[600] ^= 0x10  # an early record of the first commit: durable, vouched for later
    refused = dict(images, **{R.LOG: bytes(log)})
    assert open_writable(refused, "normal", [after]) is None
    disk = CrashDisk()
    db = engine.open(R.PATH, opener=disk.opener)
    db.tree("a").update({b"k%04d" % i: b"v" * 40 for i in range(300)})
    want = contents(db)
    leaf = db.tree_levels("a")[-1][0].page_id
    db.close()  # checkpointed: the pages are home, the log empty
    images = disk.images(None, "keep")
    data = bytearray(images[R.PATH])
    data[leaf * 4096 + 200] ^= 0x10  # a leaf: the open does not read it, the read-back does
    why = open_writable(dict(images, **{R.PATH: bytes(data)}), "normal", [want])
    assert why is not None and why.startswith("the opened database raised CorruptionError"), why

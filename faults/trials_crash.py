"""Campaign trial kind `crash`: power loss at sampled crash points, and compound faults.

A workload runs on a `CrashDisk` with `sync="full"` or `"normal"`; about 90
crash points are sampled (the end, random events, both sides of sampled
syncs), each in one of the campaign's modes (drop, torn, reorder, random).
Each disk is materialized into a scratch directory and recovered by
`engine.open` (`faults.recovery`); recovery must give the model after some
step between the last durable one and the one in flight (`faults.history`).
Every sixth point also gets compound faults: a crash during that recovery,
and an I/O error at a seeded call site of recovery.
"""

from __future__ import annotations

import random

import engine
from engine.errors import DragonDBError
from faults.crash import CrashDisk
from faults.history import History
from faults.io import FaultPlan
from faults.recovery import Recovery, check_recovery
from faults.report import Tally
from faults.session import ERRNOS, EXPECTED, PATH, POOL_PAGES, SITE_DEPTH
from faults.trials_readonly import record
from faults.trials_sweep import SitePlan
from faults.workload import make_ops

__all__ = ["STATES", "planned_ops", "run", "workload"]

STATES = 90  # crash states sampled per trial


def workload(seed: int) -> tuple[list[tuple], str, int]:
    """(operations, sync mode, checkpoint_bytes) of crash trial `seed`."""
    rng = random.Random(f"crash:{seed}")
    sync = "full" if rng.random() < 0.6 else "normal"
    return make_ops(rng, rng.randint(30, 90), sync=sync), sync, rng.choice((48 * 1024, 128 * 1024, 1 << 30))


def planned_ops(seed: int) -> int:
    return len(workload(seed)[0])


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    ops, sync, checkpoint_bytes = workload(seed)
    hist = record(ops, sync, checkpoint_bytes)  # its last handle abandoned: the crash comes after it at the latest
    tally.n["operations"] += len(ops)
    recover = Recovery(tmp, sync)
    n_events = len(hist.disk.events)
    syncs = [e.index for e in hist.disk.events if e.kind == "sync"]
    points = {n_events, *rng.sample(range(n_events + 1), min(n_events + 1, STATES // 2))}
    points.update(s + d for s in rng.sample(syncs, min(len(syncs), STATES // 4)) for d in (-1, 0) if s + d >= 0)
    points = sorted(points)[:STATES] if len(points) > STATES else sorted(points)
    for k, crash_at in enumerate(points):
        mode = modes[k % len(modes)]
        allowed = hist.allowed(crash_at)
        images = hist.disk.images(crash_at, mode, seed=seed + k)
        where = f"crash at event {crash_at}/{n_events} mode {mode} (steps {allowed[:1]}..{allowed[-1:]})"
        check_recovery(tally, token, hist, recover, images, allowed, where, mode)
        if k % 6 == 5:
            _compound(tally, token, hist, recover, images, allowed, rng, where)
    tally.n["recoveries_run"] += recover.runs


def _compound(tally: Tally, token: str, hist: History, recover: Recovery, images: dict[str, bytes],
              allowed: list[int], rng: random.Random, where: str) -> None:
    """A crash during recovery; an I/O error at a seeded call site of recovery."""
    disk = CrashDisk(images)
    dry = SitePlan(0, site_depth=SITE_DEPTH)  # learns recovery's I/O call sites
    try:
        db = engine.open(PATH, opener=dry.opener(disk.opener), pool_pages=POOL_PAGES, sync=recover.sync)
        db.close()
    except DragonDBError:
        return  # refused (creation never returned); the plain check judged it already
    tally.seen.update(dry.sites)
    if disk.events:
        at = rng.randint(0, len(disk.events))
        mode = rng.choice(("drop", "torn", "reorder"))
        again = disk.images(at, mode, seed=rng.getrandbits(32))
        check_recovery(tally, token, hist, recover, again, allowed,
                       f"{where}, then a crash during recovery at event {at} mode {mode}", "recovery-" + mode)
    # kind first, then a site of it: recovery has many read and write sites and
    # one rare extend (file growth lost with the crash), which must get failed too
    kind = rng.choice(sorted({k for k, _ in dry.first}))
    (kind, site), nth = rng.choice(sorted(item for item in dry.first.items() if item[0][0] == kind))
    plan = FaultPlan(rng.getrandbits(32), site_depth=SITE_DEPTH)
    plan.fail(kind, nth, errno=rng.choice(ERRNOS))
    disk = CrashDisk(images)
    try:
        db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=POOL_PAGES, sync=recover.sync)
        db.close()
    except EXPECTED:
        pass  # the failed recovery must have left the disk recoverable
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        tally.add_plan(plan)
        tally.fail_once(token, "unexpected_errors", f"{where}, recovery failing {kind} at {site} raised {exc!r}")
        return
    tally.add_plan(plan)
    check_recovery(tally, token, hist, recover, disk.images(None, "keep"), allowed,
                   f"{where}, after recovery failed {kind} at {site}", "recovery-ioerror")

"""Campaign trial kind `syncmodes`: the durability rule in every sync mode.

A short workload dense in `commit()` and `checkpoint()` (`history.small_ops`)
runs on a `CrashDisk` in a seeded sync mode ("full", "normal" or "off",
equally often). Power is then lost at sampled moments (always at the end with
only synced bytes kept, then both sides of sampled syncs and random events,
in the campaign's modes), and each disk is recovered. The rule checked
(`faults.history`): everything before the last returned `commit()`
survives, in every mode ("full": every returned write, "normal": every
checkpoint too), and the state is a prefix of the operations: never a
checkpoint undoing an earlier commit.
"""

from __future__ import annotations

import random

import engine
from faults.crash import CrashDisk
from faults.history import History, seeded_workload
from faults.recovery import Recovery, check_recovery
from faults.report import Tally
from faults.session import PATH as _PATH
from faults.session import POOL_PAGES
from models import ModelDatabase

KIND = "syncmodes"
STATES = 40


def workload(seed: int) -> tuple[list[tuple], str, int]:
    """(operations, sync mode, checkpoint_bytes) of trial `seed`."""
    return seeded_workload(KIND, seed, 8, 40)


def planned_ops(seed: int) -> int:
    return len(workload(seed)[0])


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    ops, sync, checkpoint_bytes = workload(seed)
    tally.n["operations"] += len(ops)
    disk = CrashDisk()
    hist = History(disk)
    model = ModelDatabase()
    db = engine.open(_PATH, opener=disk.opener, pool_pages=POOL_PAGES, sync=sync, checkpoint_bytes=checkpoint_bytes)
    hist.note(model.snapshot(), False, "open")
    hist.run(db, model, ops, path=_PATH, sync=sync, opener=disk.opener,
             checkpoint_bytes=checkpoint_bytes, pool_pages=POOL_PAGES)  # abandoned: power fails
    recover = Recovery(tmp, sync)
    n = len(disk.events)
    syncs = [e.index for e in disk.events if e.kind == "sync"]
    points = [(n, "drop")]
    picked = sorted({s + d for s in rng.sample(syncs, min(len(syncs), STATES // 4)) for d in (-1, 0)}
                    | set(rng.sample(range(n + 1), min(n + 1, STATES // 2))))
    points += [(p, modes[k % len(modes)]) for k, p in enumerate(picked[: STATES - 1])]
    for k, (at, mode) in enumerate(points):
        allowed = hist.allowed(at)
        where = (f"sync={sync}: power lost after event {at}/{n} mode {mode} "
                 f"(states {allowed[:1]}..{allowed[-1:]} of {len(hist.models) - 1})")
        check_recovery(tally, token, hist, recover, disk.images(at, mode, seed=seed + k), allowed,
                       where, f"{KIND}-{mode}")
    tally.n["recoveries_run"] += recover.runs

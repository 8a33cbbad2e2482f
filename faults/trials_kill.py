"""Campaign trial kind `killpower`: kill -> recovery by the next process -> power loss.

Process 1 runs a short workload (`history.small_ops`) on a `CrashDisk` in a
seeded sync mode and is killed at a seeded event (mostly right after a
write, so unsynced bytes sit in the page cache; sometimes inside its
creation). Its handles are abandoned: `CrashDisk.kill` undoes later events
and keeps its pending writes visible but not durable. Process 2 opens through
the same disk (it sees the page cache), must find the state process 1 last
returned or the one in flight, recovers and runs a few operations. Power
then fails at every event of process 2's open and at sampled later ones, in
the campaign's modes, over whatever is still unsynced from either process;
each disk is recovered. A recovery that built on bytes nobody synced (log
records vouching for a tail that never became durable, checkpoint images or
metadata written home before the log under them was synced) shows up as a
refused or wrong recovery there. Oracle: `faults.history` (process 2 found
state j; then its own steps; the floor is process 1's until process 2 makes
something durable). The abandoned handles must never be touched again.
"""

from __future__ import annotations

import random

import engine
from engine.errors import CorruptionError, DragonDBError, NotADatabaseError
from faults.history import kill_point, small_ops
from faults.recovery import Recovery, check_recovery
from faults.report import Tally
from faults.session import PATH, POOL_PAGES
from faults.trials_readonly import record
from faults.workload import contents, diff
from models import ModelDatabase

KIND = "killpower"
STATES = 48


def workload(seed: int) -> tuple[list[tuple], list[tuple], str, str, int]:
    """(process 1's operations, process 2's, process 1's sync mode, process 2's, checkpoint_bytes)."""
    rng = random.Random(f"{KIND}:{seed}")
    sync1 = ("full", "normal", "off")[rng.randrange(3)]
    sync2 = sync1 if rng.random() < 0.7 else ("full", "normal", "off")[rng.randrange(3)]
    ops1 = small_ops(rng, rng.randint(2, 30))
    ops2 = small_ops(rng, rng.randint(0, 6), reopen=False)[2:]  # its trees exist or get created by use
    return ops1, ops2, sync1, sync2, rng.choice((16 * 1024, 64 * 1024, 1 << 30))


def planned_ops(seed: int) -> int:
    ops1, ops2 = workload(seed)[:2]
    return len(ops1) + len(ops2)


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    ops1, ops2, sync1, sync2, checkpoint_bytes = workload(seed)
    tally.n["operations"] += len(ops1) + len(ops2)
    hist = record(ops1, sync1, checkpoint_bytes)
    disk = hist.disk
    at = kill_point(rng, hist)
    n1 = len(disk.events)
    disk.kill(at)  # process 1's handles are abandoned, never closed
    found = hist.after_kill(at)
    where = f"sync={sync1} killed after event {at}/{n1} (states {found[:1]}..{found[-1:]}), process 2 sync={sync2}"
    try:
        db = engine.open(PATH, opener=disk.opener, pool_pages=POOL_PAGES, sync=sync2,
                         checkpoint_bytes=checkpoint_bytes)
    except (NotADatabaseError, CorruptionError) as exc:
        if hist.returned(at) >= 0:
            tally.fail_once(token, "divergences", f"{where}: process 2's open raised {exc!r}")
        return  # a creation that never returned may be refused
    except DragonDBError as exc:
        tally.fail_once(token, "unexpected_errors", f"{where}: process 2's open raised {exc!r}")
        return
    got = contents(db)
    j = hist.find(got, found)
    if j is None:
        tally.fail_once(token, "divergences", f"{where}: process 2 found {diff(got, hist.models[found[-1]])}")
        return
    created = hist.returned(at) < 0  # process 1's creation never returned: process 2's open creates
    hist.cut(j, at)
    opened = len(disk.events)
    if created:
        hist.marks[0] = opened
    model = ModelDatabase.from_snapshot(got)
    hist.note(model.snapshot(), False, "open 2")
    hist.run(db, model, ops2, path=PATH, sync=sync2, opener=disk.opener,
             checkpoint_bytes=checkpoint_bytes, pool_pages=POOL_PAGES)
    if disk.zombie_calls:
        tally.fail_once(token, "unexpected_errors", f"{where}: {disk.zombie_calls[0]}")
    n = len(disk.events)
    later = list(range(opened + 1, n + 1))
    syncs = [e.index for e in disk.events[opened:] if e.kind == "sync"]
    points = list(range(at, opened + 1))  # every moment of process 2's recovery
    points += sorted({s + d for s in syncs for d in (-1, 0)} | set(rng.sample(later, min(len(later), 8))))
    if len(points) > STATES:
        points = sorted(rng.sample(points, STATES))
    recover = Recovery(tmp, sync2)
    for k, p in enumerate(points):
        mode = modes[k % len(modes)]
        allowed = hist.allowed(p)
        check_recovery(tally, token, hist, recover, disk.images(p, mode, seed=seed + k), allowed,
                       f"{where}, found state {j}, then power lost after event {p}/{n} mode {mode} "
                       f"(process 2 opened by event {opened}; states {allowed[:1]}..{allowed[-1:]})",
                       f"{KIND}-{mode}")
    tally.n["recoveries_run"] += recover.runs

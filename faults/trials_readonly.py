"""Campaign trial kind `readonly`: a read-only open after a kill or a crash writes nothing.

A short workload (`history.small_ops`) runs on a `CrashDisk` in a seeded
sync mode. Six disks are taken from it: three as a killed writer leaves them
(the page cache at a seeded event, mostly right after a write: pending
writes visible, a log still to replay) and three as a power loss leaves them
(a sampled event, in the campaign's modes). Each is opened with
`read_only=True` on its own `CrashDisk`, read back, checked and closed.

Oracle: the open made no event and changed no byte, created or removed no
file (`CrashDisk.changes_since`); what it reads is a state the history
allows (after a kill: the last returned step or the one in flight). A typed
refusal is a failure only where a writable open recovers the same disk.
"""

from __future__ import annotations

import random

import engine
from engine.errors import DragonDBError
from faults.crash import CrashDisk
from faults.history import History, kill_point, seeded_workload
from faults.recovery import Recovery
from faults.report import Tally
from faults.session import PATH as _PATH
from faults.session import POOL_PAGES
from faults.workload import contents, diff
from models import ModelDatabase

KIND = "readonly"
DISKS = 6


def workload(seed: int) -> tuple[list[tuple], str, int]:
    """(operations, sync mode, checkpoint_bytes) of trial `seed`."""
    return seeded_workload(KIND, seed, 4, 30)


def planned_ops(seed: int) -> int:
    return len(workload(seed)[0])


def record(ops: list[tuple], sync: str, checkpoint_bytes: int) -> History:
    """Run `ops` on a fresh `CrashDisk`; the history (its `disk` holds the
    events). The last handle is abandoned, never closed."""
    disk = CrashDisk()
    hist = History(disk)
    model = ModelDatabase()
    db = engine.open(_PATH, opener=disk.opener, pool_pages=POOL_PAGES, sync=sync, checkpoint_bytes=checkpoint_bytes)
    hist.note(model.snapshot(), False, "open")
    hist.run(db, model, ops, path=_PATH, sync=sync, opener=disk.opener,
             checkpoint_bytes=checkpoint_bytes, pool_pages=POOL_PAGES)
    return hist


def check_read_only(images: dict[str, bytes], sync: str) -> tuple[dict | None, str | None, list[str]]:
    """Open `images` read-only on their own disk, read everything, check, close:
    (contents or None, why it failed or None, what changed on the disk)."""
    disk = CrashDisk(images)
    snap = disk.snapshot()
    try:
        db = engine.open(_PATH, read_only=True, opener=disk.opener, pool_pages=POOL_PAGES, sync=sync)
    except (DragonDBError, FileNotFoundError) as exc:
        return None, f"refused: {exc!r}", disk.changes_since(snap)
    try:
        got = contents(db)
        rep = db.check()
        why = None if rep.ok else f"check() of the read-only database: {rep.problems[:3]}"
    except DragonDBError as exc:
        got, why = None, f"reading the read-only database raised {exc!r}"
    finally:
        try:
            db.close()
        except DragonDBError as exc:
            why = why or f"closing the read-only database raised {exc!r}"
    return got, why, disk.changes_since(snap)


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    ops, sync, checkpoint_bytes = workload(seed)
    tally.n["operations"] += len(ops)
    hist = record(ops, sync, checkpoint_bytes)
    disk = hist.disk
    n = len(disk.events)
    recover = Recovery(tmp, sync)
    for k in range(DISKS):
        if k % 2 == 0:
            at, mode = kill_point(rng, hist), "kill"
            images, allowed = disk.images(at, "keep"), hist.after_kill(at)
            if hist.returned(at) < 0:
                allowed = []  # a creation that never returned may be refused
        else:
            at, mode = rng.randrange(n + 1), modes[k % len(modes)]
            images, allowed = disk.images(at, mode, seed=seed + k), hist.allowed(at)
        where = f"sync={sync}: read-only open after a {mode} at event {at}/{n} (states {allowed[:1]}..{allowed[-1:]})"
        tally.n["crashes_simulated"] += 1
        tally.modes[f"{KIND}-{mode}"] += 1
        got, why, changed = check_read_only(images, sync)
        if changed:
            tally.fail_once(token, "divergences", f"{where} changed the disk: {changed[:4]}")
            continue
        if why is None and (got in [hist.models[s] for s in allowed] or (not allowed and got == {})):
            tally.n["recoveries_verified"] += 1
            continue
        if why is not None and why.startswith("refused"):
            state, writable = recover(images)
            if writable is not None or (not allowed and state == {}):
                tally.n["recoveries_verified"] += 1  # refused, like a writable open (judged by the crash kinds)
                continue
            why = f"{why}, yet a writable open recovers it"
        elif why is None:
            why = f"read {diff(got, hist.models[allowed[-1]] if allowed else {})}"
        tally.fail_once(token, "divergences", f"{where}: {why}")
    tally.n["recoveries_run"] += recover.runs

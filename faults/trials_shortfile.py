"""Campaign trial kind `shortfile`: a short or empty data file beside a log with records.

A short workload (`history.small_ops`, no automatic checkpoint, so a
returned put's record stays in the log until the next checkpoint) runs on a
`CrashDisk`. Four disks are taken right after a put or batch returned: as a
killed writer leaves them (the page cache) or, with `sync="full"`, as a
power loss keeping only synced bytes leaves them. Their data file is then cut:
to nothing, to a page boundary below its size, or to an unaligned length (a
file system that lost the data file's growth or content). The disk is opened
read-only, then writable.

Oracle: never silent loss. Either the open recovers a state the history
allows (nothing acknowledged lost) with `check()` clean, or it raises a
typed `DragonDBError` and both files are byte for byte as they were. The
read-only open never changes anything.
"""

from __future__ import annotations

import random

import engine
from faults.history import seeded_workload
from faults.recovery import open_writable
from faults.report import Tally
from faults.session import PATH
from faults.trials_readonly import check_read_only, record

KIND = "shortfile"
DISKS = 4


def workload(seed: int) -> tuple[list[tuple], str]:
    ops, sync, _ = seeded_workload(KIND, seed, 3, 20)  # no automatic checkpoint: records stay in the log
    return ops, sync


def planned_ops(seed: int) -> int:
    return len(workload(seed)[0])


def cut(rng: random.Random, data: bytes) -> int:
    """A shorter length for the data file: 0, a page boundary, or unaligned."""
    r = rng.random()
    if r < 0.4 or len(data) <= 1:
        return 0
    if r < 0.7 and len(data) > engine.PAGE_SIZE:
        return engine.PAGE_SIZE * rng.randrange(1, (len(data) - 1) // engine.PAGE_SIZE + 1)
    return rng.randrange(1, len(data))


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    ops, sync = workload(seed)
    tally.n["operations"] += len(ops)
    hist = record(ops, sync, 1 << 30)
    disk = hist.disk
    logged = [s for s, op in enumerate(hist.ops) if op in ("put", "batch")]
    for _ in range(DISKS if logged else 0):
        s = rng.choice(logged)
        at = hist.marks[s]
        if sync == "full" and rng.random() < 0.5:
            how, images, allowed = "power loss (drop)", disk.images(at, "drop"), hist.allowed(at)
        else:
            how, images, allowed = "kill", disk.images(at, "keep"), hist.after_kill(at)
        size = cut(rng, images[PATH])
        images[PATH] = images[PATH][:size]
        where = (f"sync={sync}: {how} after state {s} ({hist.ops[s]}), data file cut to {size} bytes "
                 f"beside a {len(images[PATH + '-wal'])}-byte log (states {allowed[:1]}..{allowed[-1:]})")
        tally.n["crashes_simulated"] += 1
        tally.modes[f"{KIND}-{'kill' if how == 'kill' else 'drop'}"] += 1
        why = open_writable(images, sync, [hist.models[i] for i in allowed])  # each open on its own copy
        changed = check_read_only(images, sync)[2]
        if why is None and changed:
            why = f"the read-only open changed the disk: {changed[:4]}"
        if why is None:
            tally.n["recoveries_verified"] += 1
        else:
            tally.fail_once(token, "divergences", f"{where}: {why}")


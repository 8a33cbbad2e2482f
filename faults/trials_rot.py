"""Campaign trial kind `rot`: one bit of the log flipped at rest, after a kill.

A bit flipped on its way (the `faults` kind) differs between two reads, and
recovery reads a log twice before it cuts it short. A bit flipped at rest
reads the same every time: recovery must tell a damaged durable record from
a torn tail. Rule 5a of the log does: a later record says which LSNs were
durable when it was appended. Under `sync="normal"` one `commit()` makes
hundreds of records durable with one fsync, and only the first record
appended after it says so, however far past the damaged one it lies.

Each trial writes seeded rounds of 20 to 700 puts and deletes, each ended by
`commit()`, then one more put and `commit()` (its record vouches for all
before it), on a `CrashDisk` under `sync="normal"`. The process is killed
(the disk as it stands), one seeded bit of the log's written bytes is
flipped, and the disk opened writable and read-only, each on its own copy.

Oracle, for each open: it raises a typed `DragonDBError` and changes no
byte of either file, or it opens with `check()` clean and exactly the last
commit's contents, or (only when the bit lies in what the last `commit()`
wrote, which nothing later vouches for) the contents before that commit.
Anything else lost an acknowledged commit.
"""

from __future__ import annotations

import random

import engine
from faults.crash import CrashDisk
from faults.recovery import open_writable
from faults.report import Tally
from faults.session import PATH, POOL_PAGES
from faults.trials_readonly import check_read_only
from faults.workload import Model, contents, diff

__all__ = ["KIND", "planned_ops", "run", "workload"]

KIND = "rot"
LOG = PATH + "-wal"


def workload(seed: int) -> list[list[tuple]]:
    """The rounds of trial `seed`: each a list of ("put", key, value) and ("delete", key)."""
    rng = random.Random(f"{KIND}:{seed}")
    rounds = []
    for _ in range(rng.randint(1, 3)):
        ops: list[tuple] = []
        for _ in range(rng.choice((rng.randint(20, 256), rng.randint(257, 700)))):
            key = b"k%05d" % rng.randrange(3000)
            ops.append(("delete", key) if rng.random() < 0.1 else ("put", key, rng.randbytes(rng.randint(4, 60))))
        rounds.append(ops)
    return rounds


def planned_ops(seed: int) -> int:
    return sum(len(r) for r in workload(seed)) + 2


def _write(seed: int) -> tuple[dict[str, bytes], int, Model, Model]:
    """The disk after the kill, where the last commit's bytes start in the
    log, and the contents before and after the last commit."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, pool_pages=POOL_PAGES, sync="normal")
    t = db.tree("a")
    for ops in workload(seed):
        for op in ops:
            if op[0] == "put":
                t[op[1]] = op[2]
            else:
                t.delete(op[1])
        db.commit()
    before = contents(db)
    last_start = len(disk.images(None, "keep")[LOG].rstrip(b"\0"))
    t[b"voucher"] = b"v"
    db.commit()
    after = contents(db)
    return disk.images(None, "keep"), last_start, before, after  # killed: never closed


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    tally.n["operations"] += planned_ops(seed)
    images, last_start, before, after = _write(seed)
    log = bytearray(images[LOG])
    end = len(log.rstrip(b"\0"))
    bit = rng.randrange(end * 8)
    log[bit // 8] ^= 1 << (bit % 8)
    images[LOG] = bytes(log)
    allowed = [before, after] if bit // 8 >= last_start else [after]
    where = (f"bit {bit % 8} of byte {bit // 8} of the log's {end} written bytes flipped "
             f"(the last commit's bytes start at {last_start})")
    tally.n["crashes_simulated"] += 1
    why = open_writable(images, "normal", allowed)
    got, ro_why, changed = check_read_only(images, "normal")
    tally.modes[f"{KIND}-refused" if got is None else f"{KIND}-opened"] += 1
    if why is None and changed:
        why = f"the read-only open changed the disk: {changed[:4]}"
    if why is None and got is not None and got not in allowed:
        why = f"the read-only open lost acknowledged data: {diff(got, after)}"
    if why is None and got is not None and ro_why is not None:
        why = ro_why
    if why is None:
        tally.n["recoveries_verified"] += 1
    else:
        tally.fail_once(token, "divergences", f"{where}: {why}")


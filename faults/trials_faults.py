"""Campaign trial kind `faults`: FoundationDB-style random fault sites (BUGGIFY).

Each of 18 fault sites (call kind x file x effect) is switched on with
p = 0.25 for the trial and, while the plan is armed, fires with p = 0.25 per
call. The plan is armed for a seeded 30% of operations so the trees still
grow between faulty ones. A quarter of the trials run on real files in a
temporary directory, the rest on an in-memory `CrashDisk` (which also
allows simulated kills). A quarter of the trials (their own draw) cut the
files down to the six calls a user's `opener=` may return
(`faults.io.MinimalFile`): the engine supplies the rest. The oracle is
`faults.session`'s.
"""

from __future__ import annotations

import random
import shutil
import tempfile

from faults.io import FaultPlan
from faults.report import Tally
from faults.session import ERRNOS, SITE_DEPTH, Session
from faults.workload import make_ops

__all__ = ["TEMPLATES", "planned_ops", "run", "workload"]

TEMPLATES = [
    *[("error", k, f) for f in (".db", "-wal") for k in ("open", "read", "write", "sync")],
    ("error", "extend", ".db"), ("error", "truncate", "-wal"),
    *[("short", k, f) for f in (".db", "-wal") for k in ("read", "write")],
    ("torn", "write", ".db"), ("torn", "write", "-wal"),
    ("bitflip", "read", ".db"), ("bitflip", "read", "-wal"),
]


def workload(seed: int) -> tuple[list[tuple], str, bool]:
    """(operations, sync mode, on real files?) of faults trial `seed`."""
    rng = random.Random(f"faults:{seed}")
    sync = rng.choice(("full", "normal", "off"))
    real = rng.random() < 0.25  # a quarter on real files (DirectFile), the rest in memory
    return make_ops(rng, rng.randint(40, 120), sync=sync, crash=not real), sync, real


def planned_ops(seed: int) -> int:
    return len(workload(seed)[0])


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    plan = FaultPlan(seed, site_depth=SITE_DEPTH)
    for effect, kind, file in TEMPLATES:
        if rng.random() >= 0.25:
            continue  # this site is off for the whole trial
        persistent = rng.random() < 0.15
        if effect == "error":
            plan.fail(kind, probability=0.25, persistent=persistent, errno=rng.choice(ERRNOS), file=file)
        elif effect == "short":
            plan.short(kind, probability=0.25, persistent=persistent, file=file)
        elif effect == "torn":
            plan.torn(probability=0.25, pattern=rng.choice(("prefix", "any")), file=file)
        else:
            plan.bitflip(probability=0.25, file=file)
    ops, sync, real = workload(seed)
    tally.n["operations"] += len(ops)
    real_dir = tempfile.mkdtemp(dir=tmp) if real else None
    arm_rng = random.Random(seed + 1)
    s = Session(tally, token, plan, rng, sync=sync, armed=lambda: arm_rng.random() < 0.3,
                real_dir=real_dir, checkpoint_bytes=rng.choice((64 * 1024, 256 * 1024, None)),
                minimal=random.Random(f"minimal:{seed}").random() < 0.25)
    try:
        s.open("open")
        for i, op in enumerate(ops, 1):
            s.step(op, i)
        s.finish()
    finally:
        tally.add_plan(plan)
        s.abandon()
        if real_dir:
            shutil.rmtree(real_dir, ignore_errors=True)

"""Campaign trial kind `interleave`: thread interleavings under the deterministic scheduler.

Five scenarios per trial: 2-3 threads under `faults.interleave.run` with a
seeded schedule (a third of them with a fault plan too), each thread
writing, deleting, reading and scanning its own keys in shared trees, one
of them created empty so the first puts race to create its root. The pool
is cold, so the first reads race on the buffer pool's miss path. Oracle:
each thread reads its own writes and the base keys; afterwards every
thread's keys are what it wrote (or, after `NeedsRecoveryError`, that plus
its last operation), and `db.check()` is clean.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import engine
from engine.errors import DragonDBError, NeedsRecoveryError
from faults.crash import CrashDisk
from faults.interleave import InterleaveError
from faults.interleave import run as run_threads
from faults.io import FaultPlan
from faults.report import Tally, TrialFailure
from faults.session import ERRNOS, EXPECTED, PATH, SITE_DEPTH, audit
from faults.workload import apply_op, contents, diff

__all__ = ["INTERLEAVINGS_PER_TRIAL", "planned_ops", "run"]

# A pool large enough never to evict: the engine reaches "bufferpool.evict" with
# the pool mutex held, so a scheduler parking a thread there blocks every other
# thread (tests/faults/test_seed_claims.py pins it); misses still happen.
INTERLEAVE_POOL = 256
INTERLEAVINGS_PER_TRIAL = 5


def planned_ops(seed: int) -> int:
    return sum(len(p) for k in range(INTERLEAVINGS_PER_TRIAL)
               for p in _setup(seed * INTERLEAVINGS_PER_TRIAL + k)[4])


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    """Several scenarios, each under one seeded schedule."""
    for k in range(INTERLEAVINGS_PER_TRIAL):
        _one(token, seed * INTERLEAVINGS_PER_TRIAL + k, tally)


def _setup(seed: int) -> tuple[int, str, bool, dict[bytes, bytes], list[list[tuple]]]:
    """(threads, sync mode, with faults?, base keys, each thread's operations)."""
    rng = random.Random(f"interleave:{seed}")
    n_threads = rng.choice((2, 2, 3))
    sync = rng.choice(("full", "normal", "off"))
    faulty = rng.random() < 0.3
    base = {b"base:%04d" % i: rng.randbytes(rng.randint(20, 400)) for i in range(rng.randint(40, 160))}
    programs = [_thread_ops(random.Random(f"interleave:{seed}:{i}"), i, base) for i in range(n_threads)]
    return n_threads, sync, faulty, base, programs


def _one(token: str, seed: int, tally: Tally) -> None:
    """One scenario: set up, run the threads under the schedule, judge."""
    n_threads, sync, faulty, base, programs = _setup(seed)
    rng = random.Random(seed)
    plan = FaultPlan(seed, site_depth=SITE_DEPTH)
    if faulty:
        for kind in ("read", "write", "sync"):
            plan.fail(kind, probability=0.03, errno=rng.choice(ERRNOS))
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, pool_pages=INTERLEAVE_POOL, sync=sync)
    with db.batch() as b:
        for k, v in base.items():
            b.put("base", k, v)
    db.close()  # reopen cold, so the first reads miss
    plan.disarm()
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=INTERLEAVE_POOL, sync=sync)
    db.tree("fresh")  # empty: the threads' first puts race to create its root
    plan.arm()
    owned: list[dict[str, dict[bytes, bytes]]] = [{"base": {}, "fresh": {}} for _ in range(n_threads)]
    maybe: list[tuple | None] = [None] * n_threads
    problems: list[str] = []
    tally.n["operations"] += sum(len(p) for p in programs)
    bodies = [_thread(db, i, programs[i], base, owned[i], maybe, problems) for i in range(n_threads)]
    try:
        result = run_threads(bodies, seed, timeout=5.0, raise_errors=False)
    except InterleaveError as exc:
        plan.disarm()
        tally.fail(token, "unexpected_errors", f"scheduler: {type(exc).__name__}: {str(exc)[:300]}")
        raise TrialFailure(str(exc)) from None
    plan.disarm()
    tally.n["interleavings"] += 1
    tally.traces.add(hashlib.blake2b(repr(result.trace).encode(), digest_size=8).hexdigest())
    tally.add_plan(plan)
    where = f"interleaving of {n_threads} threads, schedule seed {seed}"
    for i, err in enumerate(result.errors):
        if err is not None:
            tally.fail(token, "unexpected_errors", f"{where}: thread {i} raised {err!r}")
            raise TrialFailure(where)
    if problems:
        tally.fail(token, "divergences", f"{where}: {problems[:3]}")
        raise TrialFailure(where)
    if any(m is not None for m in maybe):
        try:
            db.close()
        except DragonDBError:
            pass
        db = engine.open(PATH, opener=disk.opener, pool_pages=INTERLEAVE_POOL, sync=sync)
    _judge(token, tally, where, db, base, owned, maybe)
    audit(db, tally, token, where)
    db.close()


def _thread(db, i: int, program: list[tuple], base: dict[bytes, bytes], mine: dict[str, dict[bytes, bytes]],
            maybe: list[tuple | None], problems: list[str]) -> Callable[[], None]:
    """Thread `i`: runs its program, checking each read of its own keys and
    the base keys as it goes; `mine` follows its writes, `maybe[i]` is the
    operation `NeedsRecoveryError` left either way."""
    def body() -> None:
        for op in program:
            try:
                got = apply_op(db, op)
            except NeedsRecoveryError:
                maybe[i] = op
                return  # the database refuses everything until reopened
            except EXPECTED:
                continue  # no effect: the final comparison checks it
            if op[0] == "get":
                want = base.get(op[2]) if op[2].startswith(b"base:") else mine[op[1]].get(op[2])
                if got != want:
                    problems.append(f"thread {i}: get {op[2]!r} returned {got!r:.40}, expected {want!r:.40}")
            elif op[0] == "scan":
                keys = [k for k, _ in got]
                if keys != sorted(keys, reverse=op[4]):
                    problems.append(f"thread {i}: scan out of order")
                own = {k: v for k, v in got if k.startswith(b"t%d:" % i)}
                if own != mine[op[1]]:
                    problems.append(f"thread {i}: scan shows {len(own)} own keys, expected {len(mine[op[1]])}")
            _apply_own(mine, op)
    return body


def _judge(token: str, tally: Tally, where: str, db, base: dict[bytes, bytes],
           owned: list[dict[str, dict[bytes, bytes]]], maybe: list[tuple | None]) -> None:
    """After the threads: every base key as it was; each thread's keys as it
    wrote them (plus, after `NeedsRecoveryError`, maybe its last operation)."""
    got = contents(db)
    for k, v in base.items():
        if got.get("base", {}).get(k) != v:
            tally.fail(token, "divergences", f"{where}: base key {k!r} lost or changed")
            raise TrialFailure(where)
    for i, mine in enumerate(owned):
        prefix = b"t%d:" % i
        found = {name: {k: v for k, v in got.get(name, {}).items() if k.startswith(prefix)} for name in ("base", "fresh")}
        options = [mine]
        if maybe[i] is not None:
            alt = {name: dict(t) for name, t in mine.items()}
            _apply_own(alt, maybe[i])
            options.append(alt)
        if found not in options:
            tally.fail(token, "divergences", f"{where}: thread {i}'s keys: {diff(found, mine)}")
            raise TrialFailure(where)


def _thread_ops(rng: random.Random, i: int, base: dict[bytes, bytes]) -> list[tuple]:
    keys = [b"t%d:%03d" % (i, j) + b"." * rng.choice((0, 0, 300)) for j in range(12)]
    ops: list[tuple] = []
    for _ in range(rng.randint(6, 16)):
        r = rng.random()
        t = rng.choice(("base", "fresh"))
        if r < 0.45:
            ops.append(("put", t, rng.choice(keys), rng.randbytes(rng.choice((30, 300, 5000)))))
        elif r < 0.6:
            ops.append(("delete", t, rng.choice(keys)))
        elif r < 0.72:
            ops.append(("get", t, rng.choice(keys)))
        elif r < 0.82:
            ops.append(("get", "base", rng.choice(sorted(base))))
        elif r < 0.9:
            ops.append(("scan", "fresh", None, None, rng.random() < 0.5))
        else:
            ops.append(("batch", [("put", rng.choice(("base", "fresh")), rng.choice(keys), b"b%d" % n) for n in range(3)]))
    return ops


def _apply_own(mine: dict[str, dict[bytes, bytes]], op: tuple) -> None:
    if op[0] == "put":
        mine[op[1]][op[2]] = op[3]
    elif op[0] == "delete":
        mine[op[1]].pop(op[2], None)
    elif op[0] == "batch":
        for sub in op[1]:
            _apply_own(mine, sub)

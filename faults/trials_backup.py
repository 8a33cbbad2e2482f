"""Campaign trial kind `backup`: power loss at the events of `db.backup()`, and I/O faults in it.

Per seed, on a `CrashDisk`: a short workload (`history.small_ops`) in a
seeded sync mode; sometimes an older database at the destination
(checkpointed, then commits durable in its log only, its handle abandoned);
then `db.backup(DEST)`, alone or beside a writer thread under the
deterministic scheduler (`faults.interleave`, a seeded schedule, so a
replay runs the same interleaving); then writes right after it returned.
Power then fails at every event of the backup (up to `STATES`) and sampled
later ones, in the campaign's modes, and `BackupRun.judge` decides each
disk (tests/crash/test_backup_crash.py judges every event with it too):

- the source recovers a state its history allows, `check(strict=True)` clean;
- before `backup` returned, the destination may be absent or the old
  database (with or without its log's commits: the backup empties that log
  before the switch); otherwise it opens, passes `check(strict=True)` and
  equals the committed state the backup copied (one state, the same at
  every crash point, among those the source passed through during it), and
  no `.tmp` copy is left.

Half of the trials also fail one I/O call of a backup (a call site, then
its first call or any call of its kind, learnt by a dry run; an error, or a
short or torn write, a short read or a flipped bit): the backup must raise a typed error
(or, where the engine absorbs the fault by design, such as the log's
best-effort preallocation, return a copy that survives), the source must
stay equal to the model and clean (after `NeedsRecoveryError`, once
reopened) and keep working, and a power loss then leaves the destination
absent, old or complete. A read may also return a flipped bit: the backup
verifies each page it copies and reads a damaged one again, so it returns
a copy equal to the model or raises `CorruptionError`.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import engine
from engine.errors import DragonDBError, NeedsRecoveryError
from faults.crash import CrashDisk
from faults.history import History, made_durable, seeded_workload, small_ops
from faults.interleave import InterleaveError
from faults.interleave import run as run_threads
from faults.io import FaultPlan
from faults.report import Tally, TrialFailure
from faults.session import ERRNOS, EXPECTED, PATH, POOL_PAGES, SITE_DEPTH, audit
from faults.trials_sweep import SitePlan
from faults.workload import Model, apply_op, contents, describe, diff
from models import ModelDatabase

__all__ = ["DEST", "BackupRun", "Scenario", "planned_ops", "run", "scenario"]

KIND = "backup"
DEST = "/campaign/copy.db"  # beside PATH: a rename stays in one directory
STATES = 40  # crash states judged per trial (every event of a short backup)
Opener = Callable[[str, bool], object]


# -- judging one crash state ----------------------------------------------------------------------

class BackupRun:
    """A backup's run on `disk`, and what a power loss at any event may leave.

    `start`: the event count when `backup` was called; `returned`: when it
    returned (None: it raised). `copies`: the states the copy may hold (the
    first one a crash state shows is then the only one). `old`: the states
    of an older database at `dest`. `source_states(at)`: the states the
    source may recover after a crash at event `at`.
    """

    def __init__(self, disk: CrashDisk, path: str, dest: str, *, start: int, returned: int | None,
                 copies: Sequence[Model], old: Sequence[Model], source_states: Callable[[int], list[Model]],
                 pool_pages: int = POOL_PAGES) -> None:
        self.disk, self.path, self.dest = disk, path, dest
        self.start, self.returned = start, returned
        self.copies, self.old, self.source_states = list(copies), list(old), source_states
        self.pool_pages = pool_pages
        self.copy: Model | None = None  # the state the copy holds, once a crash state showed it
        self.opened = 0  # distinct images opened
        self._cache: dict[bytes, tuple[Model | None, str | None]] = {}

    def state(self, images: dict[str, bytes], path: str) -> tuple[Model | None, str | None]:
        """Open `path` of `images` on its own disk (recovering), read it and
        `check(strict=True)`: (contents, None) or (None, why not). Cached."""
        h = hashlib.blake2b(path.encode(), digest_size=16)
        for name in (path, path + "-wal"):
            h.update(hashlib.blake2b(images.get(name, b"\0absent"), digest_size=16).digest())
        key = h.digest()
        if key not in self._cache:
            self._cache[key] = self._open(images, path)
        return self._cache[key]

    def _open(self, images: dict[str, bytes], path: str) -> tuple[Model | None, str | None]:
        self.opened += 1
        try:
            db = engine.open(path, opener=CrashDisk(images).opener, pool_pages=self.pool_pages, create=False)
        except (DragonDBError, OSError) as exc:
            return None, f"refused: {exc!r}"
        try:
            got = contents(db)
            db.check(strict=True)
            return got, None
        except DragonDBError as exc:
            return None, f"reading and checking it raised {exc!r}"
        finally:
            try:
                db.close()
            except DragonDBError:
                pass

    def judge(self, at: int | None, mode: str, seed: int = 0) -> tuple[str, str | None]:
        """Power lost right after event `at` (None: after the last) in `mode`:
        (what is at the destination: "absent", "old" or "new"; the problem, or None)."""
        images = self.disk.images(at, mode, seed=seed)
        n = len(self.disk.events) if at is None else at
        got, why = self.state(images, self.path)
        allowed = self.source_states(n)
        done = self.returned is not None and n >= self.returned
        outcome = "absent" if self.dest not in images else "new"
        if why is not None:
            return outcome, f"the source: {why}"
        if got not in allowed:
            return outcome, f"the source is no allowed state: {diff(got, allowed[-1])}"
        left = sorted(p for p in images if p.startswith(self.dest + ".tmp"))
        if done and left:
            return outcome, f"the backup returned, yet {left} is left"
        if outcome == "absent":
            return outcome, "the backup returned, yet no copy survived" if done else None
        copy, why = self.state(images, self.dest)
        if why is not None:
            return outcome, f"the copy: {why}"
        if not done and copy in self.old:
            return "old", None
        if self.copy is None and copy in self.copies:
            self.copy = copy
        if copy != self.copy:
            want = self.copy if self.copy is not None else self.copies[-1]
            return outcome, f"the copy is neither the old database nor the backup's state: {diff(copy, want)}"
        return outcome, None


# -- the scenario -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    """What trial `seed` runs (all drawn from the token)."""

    ops: list[tuple]  # the source's workload
    sync: str
    checkpoint_bytes: int
    old: tuple[int, int, int] | None  # an old database at DEST: (keys, keys in its log only, value bytes)
    thread: bool  # the writer runs beside the backup (else its writes come right after it)
    writes: list[tuple]  # the writer's operations
    after: list[tuple]  # written right after the backup returned
    schedule: int  # the scheduler's seed
    fault: bool  # also fail one I/O call of a backup


def scenario(seed: int) -> Scenario:
    ops, sync, checkpoint_bytes = seeded_workload(KIND, seed, 4, 30)
    rng = random.Random(f"{KIND}:{seed}:scenario")
    old = (rng.randint(1, 40), rng.randint(1, 4), rng.choice((10, 300, 6000))) if rng.random() < 0.5 else None
    thread = rng.random() < 0.5
    writes = small_ops(rng, rng.randint(1, 5), reopen=False)[2:]  # its trees exist: the workload made them
    after = small_ops(rng, rng.randint(1, 3), reopen=False)[2:]
    return Scenario(ops, sync, checkpoint_bytes, old, thread, writes, after, rng.getrandbits(32),
                    rng.random() < 0.5)


def planned_ops(seed: int) -> int:
    sc = scenario(seed)
    return len(sc.ops) + len(sc.writes) + len(sc.after)


def _old_database(disk: CrashDisk, old: tuple[int, int, int]) -> tuple[Model, Model]:
    """An older database at DEST: `keys` puts checkpointed by a close, then
    `logged` more durable in its log only (the handle abandoned). Its states:
    with the log, and without it (once a backup emptied the log)."""
    keys, logged, size = old
    db = engine.open(DEST, opener=disk.opener, pool_pages=POOL_PAGES, checkpoint_bytes=1 << 30)
    t = db.tree("old")
    for i in range(keys):
        t[b"o%03d" % i] = b"%03d" % i * (size // 3)
    db.close()
    checkpointed = {"old": {b"o%03d" % i: b"%03d" % i * (size // 3) for i in range(keys)}}
    db = engine.open(DEST, opener=disk.opener, pool_pages=POOL_PAGES, checkpoint_bytes=1 << 30)
    t = db.tree("old")
    for i in range(logged):
        t[b"o%03d" % i] = b"new"  # sync="full": durable in DEST-wal
    return {"old": {**checkpointed["old"], **{b"o%03d" % i: b"new" for i in range(logged)}}}, checkpointed


class _Source:
    """The source database of one run: its disk, history, model and handle."""

    def __init__(self, sc: Scenario, plan: FaultPlan | None = None, wrap: Callable[[Opener], Opener] | None = None):
        self.sc = sc
        self.disk = CrashDisk()
        self.old = _old_database(self.disk, sc.old) if sc.old else ()
        base = self.disk.opener if wrap is None else wrap(self.disk.opener)
        self.plan = plan
        if plan is not None:
            plan.disarm()  # armed for the backup only
        self.opener = plan.opener(base) if plan is not None else base
        self.hist = History(self.disk)
        self.model = ModelDatabase()
        self.db = self._open()
        self.hist.note(self.model.snapshot(), False, "open")
        self.db = self.hist.run(self.db, self.model, sc.ops, path=PATH, sync=sc.sync, opener=self.opener,
                                checkpoint_bytes=sc.checkpoint_bytes, pool_pages=POOL_PAGES)

    def _open(self):
        return engine.open(PATH, opener=self.opener, pool_pages=POOL_PAGES, sync=self.sc.sync,
                           checkpoint_bytes=self.sc.checkpoint_bytes)

    def write(self, op: tuple) -> None:
        """One operation beside the model, noted in the history; automatic
        checkpoints are not counted durable (the backup's may run meanwhile)."""
        got, want = apply_op(self.db, op), apply_op(self.model, op)
        if got != want:
            raise TrialFailure(f"{describe(op)} returned {got!r:.80}, model {want!r:.80}")
        self.hist.note(self.model.snapshot(), made_durable(op[0], self.sc.sync, op[0] in ("checkpoint", "compact")),
                       op[0])

    def after(self) -> None:
        self.db = self.hist.run(self.db, self.model, self.sc.after, path=PATH, sync=self.sc.sync,
                                opener=self.opener, checkpoint_bytes=self.sc.checkpoint_bytes, pool_pages=POOL_PAGES)

    def states(self, at: int) -> list[Model]:
        """The states a power loss right after event `at` may leave."""
        return [self.hist.models[s] for s in self.hist.allowed(at)]


def _backup(src: _Source) -> tuple[int, int, list[Model]]:
    """Back up alone, or beside the writer thread: (the event count at the
    start, when it returned, the states the copy may hold)."""
    sc, disk, hist = src.sc, src.disk, src.hist
    first = len(hist.models) - 1
    start = disk.mark("backup")
    if not sc.thread:
        src.db.backup(DEST)
        returned = disk.mark("backup returned")
        copies = [hist.models[first]]
        # its checkpoint made everything durable, as a checkpoint does in this sync mode
        hist.note(src.model.snapshot(), made_durable("checkpoint", sc.sync, True), "backup")
        for op in sc.writes:
            src.write(op)
        return start, returned, copies
    at_return: list[int] = []

    def backup() -> None:
        src.db.backup(DEST)
        at_return.append(disk.mark("backup returned"))
        at_return.append(len(hist.models) - 1)

    def writer() -> None:
        for op in sc.writes:
            src.write(op)

    try:
        result = run_threads([backup, writer], sc.schedule, timeout=5.0, raise_errors=False)
    except InterleaveError as exc:
        raise TrialFailure(f"scheduler: {type(exc).__name__}: {str(exc)[:300]}") from None
    for name, err in zip(("backup", "writer"), result.errors, strict=True):
        if isinstance(err, TrialFailure):
            raise err
        if err is not None:
            raise TrialFailure(f"the {name} thread raised {err!r}") from err
    # a committed write of the writer may still be in flight when the backup returns
    return start, at_return[0], hist.models[first : at_return[1] + 2]


def _points(disk: CrashDisk, start: int, returned: int | None, rng: random.Random, limit: int) -> list[int]:
    """Every event of the backup (both sides of each), then sampled later ones, `limit` in all."""
    end = len(disk.events)
    stop = returned if returned is not None else end
    during = list(range(start, stop + 1))
    if len(during) > limit - 4:
        syncs = [e.index for e in disk.events[start:stop] if e.kind in ("sync", "syncdir", "rename", "truncate")]
        keep = {start, stop, *syncs, *(s - 1 for s in syncs)}
        rest = sorted(set(during) - keep)
        during = sorted(keep | set(rng.sample(rest, max(0, min(len(rest), limit - 4 - len(keep))))))
    later = list(range(stop + 1, end + 1))
    return during + sorted(set(rng.sample(later, min(len(later), max(2, limit - len(during))))) | {end} - {stop})


def _judge(tally: Tally, token: str, run: BackupRun, points: list[int], modes: Sequence[str], seed: int,
           label: str) -> None:
    """Judge each point in the next mode; count every state, report the trial's first failure."""
    for k, at in enumerate(points):
        mode = "drop" if at == run.returned else modes[k % len(modes)]  # a returned backup needs no more syncs
        outcome, problem = run.judge(at, mode, seed + k)
        tally.n["crashes_simulated"] += 1
        tally.modes[f"{KIND}-{mode}"] += 1
        if problem is None:
            tally.n["recoveries_verified"] += 1
        else:
            tally.fail_once(token, "divergences", f"{label}: power lost after event {at}/{len(run.disk.events)} "
                            f"({mode}, backup from event {run.start}, returned at {run.returned}): {problem}")
    tally.n["recoveries_run"] += run.opened


# -- the trial ---------------------------------------------------------------------------------------

def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    check(token, seed, tally, modes)


def check(token: str, seed: int, tally: Tally, modes: Sequence[str],
          wrap: Callable[[Opener], Opener] | None = None) -> None:
    """Trial `seed`; `wrap` wraps the disk's opener (a test plants a lying disk with it)."""
    sc = scenario(seed)
    rng = random.Random(seed)
    tally.n["operations"] += len(sc.ops) + len(sc.writes) + len(sc.after)
    src = _Source(sc, wrap=wrap)
    start, returned, copies = _backup(src)
    src.after()
    label = f"sync={sc.sync}, {'a writer thread beside' if sc.thread else 'writes after'} the backup" + (
        ", an old database at the destination" if sc.old else "")
    judged = BackupRun(src.disk, PATH, DEST, start=start, returned=returned, copies=copies, old=src.old,
                       source_states=src.states)
    _judge(tally, token, judged, _points(src.disk, start, returned, rng, STATES), modes, seed, label)
    if sc.fault:
        _fault(token, seed, sc, tally, modes, rng, wrap)


def _fault(token: str, seed: int, sc: Scenario, tally: Tally, modes: Sequence[str], rng: random.Random,
           wrap: Callable[[Opener], Opener] | None) -> None:
    """One I/O call of a backup failed: a typed error, the source as the
    model and working, the destination absent, old or complete."""
    sc = Scenario(sc.ops, sc.sync, sc.checkpoint_bytes, sc.old, False, [], sc.after, sc.schedule, True)
    dry = SitePlan(seed, site_depth=SITE_DEPTH)  # learns the backup's I/O calls
    src = _Source(sc, dry, wrap)
    dry.arm()
    src.db.backup(DEST)
    dry.disarm()
    # a call site first (a backup has a dozen, each worth failing), then its first
    # call or any call of its kind
    (kind, site), nth = rng.choice(sorted(dry.first.items()))
    if rng.random() < 0.5:
        site, nth = "any", rng.randint(1, dry.armed_calls[kind])
    plan = FaultPlan(rng.getrandbits(32), site_depth=SITE_DEPTH)
    effect = rng.choice({"write": ("error", "short", "torn"),
                         "read": ("error", "short", "bitflip")}.get(kind, ("error",)))
    if effect == "error":
        plan.fail(kind, nth, errno=rng.choice(ERRNOS))
    elif effect == "short":
        plan.short(kind, nth, errno=rng.choice(ERRNOS))
    elif effect == "bitflip":
        plan.bitflip(nth)
    else:
        plan.torn(nth, pattern=rng.choice(("prefix", "any")))
    src = _Source(sc, plan, wrap)
    where = f"sync={sc.sync}, a backup failing {kind} call {nth} ({effect}, site {site})"
    try:
        _failing_backup(token, tally, src, plan, where, modes, seed)
    finally:
        plan.sites = Counter(dry.first)  # sites seen: the backup's own calls, not the workload's
        tally.add_plan(plan)


def _failing_backup(token: str, tally: Tally, src: _Source, plan: FaultPlan, where: str, modes: Sequence[str],
                    seed: int) -> None:
    copy = src.model.snapshot()
    start = src.disk.mark("backup")
    plan.arm()
    try:
        src.db.backup(DEST)
    except EXPECTED as exc:
        raised: BaseException | None = exc
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        plan.disarm()
        tally.fail(token, "unexpected_errors", f"{where}: backup raised {exc!r}")
        raise TrialFailure(where) from None
    else:
        raised = None
    plan.disarm()
    returned = None if raised is not None else src.disk.mark("backup returned")
    if raised is not None and not plan.injected:
        tally.fail(token, "unexpected_errors", f"{where}: backup raised {raised!r} but no fault was injected")
        raise TrialFailure(where)
    # a fault the engine absorbs (the log's best-effort preallocation) may let it
    # return: then it is judged as a returned backup, whose copy must survive
    tally.n["ops_failed"] += raised is not None
    try:
        got = contents(src.db)
    except NeedsRecoveryError:  # its checkpoint failed: the database waits for recovery
        try:
            src.db.close()
        except DragonDBError:
            pass
        src.db = src._open()
        src.hist.note(src.model.snapshot(), False, "reopen")
        got = contents(src.db)
    if got != src.model.snapshot():
        tally.fail(token, "divergences", f"{where}: the source after it: {diff(got, src.model.snapshot())}")
        raise TrialFailure(where)
    audit(src.db, tally, token, f"{where}: the source after it")
    src.after()
    judged = BackupRun(src.disk, PATH, DEST, start=start, returned=returned, copies=[copy], old=src.old,
                       source_states=src.states)
    rng = random.Random(seed + 1)
    _judge(tally, token, judged, _points(src.disk, start, returned, rng, 8), modes, seed, where)

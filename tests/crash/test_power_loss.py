"""Power loss at every write and sync boundary of a mixed workload.

A seeded workload of K operations (puts, deletes, batches across trees,
overflow values, tree create/drop, explicit checkpoints; `pool_pages=16`
so dirty pages spill to the log; a small `checkpoint_bytes` so automatic
checkpoints run too) is run once on a `CrashDisk`. After every operation
returns, the test marks the disk and snapshots the model. Then, for every
event boundary 0..N and each variant ("drop": unsynced writes lost,
"keep": all landed, "torn": each 512-byte sector of each unsynced write
lands or not, "reorder": a seeded subset of whole unsynced writes lands in
a seeded order), the crash images are recovered by a fresh `engine.open` and
the oracle asks:

- contents equal the model after the last acknowledged operation, or after
  the operation in flight (it may land on either side); never anything else;
- `check()` is clean;
- a new write works and reads back.

With `sync="full"` every put/delete/batch is acknowledged when it returns.
With `sync="normal"` only `db.commit()` (and checkpoints) acknowledge: the
recovered state is the model after some operation at or after the last
`commit()`, never a half batch and never a state that did not exist.

The "random" variant (each unsynced sector old, new or garbage) is run with
a weaker oracle (a state the history passed through, clean check) because
the engine loses acknowledged commits there: see
`test_random_sector_garbage_keeps_acknowledged_commits`.

The helpers here (`make_ops`, `record`, `Recording`, `recover`) are shared
by the other crash test modules; operations run on the engine and on
`models.ModelDatabase` through `faults.workload.apply_op`.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

import engine
from engine import syncpoints
from faults.crash import CrashDisk
from faults.history import History
from faults.workload import Mix, Model, apply_op, contents, generate
from models import ModelDatabase

PATH = "/crash/power-loss.db"  # a CrashDisk path: never touches the real file system
K = 200
SEED = 20240601
# The short workload of the exhaustive tests: 60 operations whose run leaves
# ~870 crash states with their pending-write subsets (the floor below).
SHORT_K, SHORT_SEED = 60, 13


# -- the workload ------------------------------------------------------------------

# Two trees, then puts early (splits), deletes late (merges): overflow values,
# batches across trees, a third tree filled and dropped, explicit checkpoints
# throughout. Most keys are long, so internal nodes hold few separators and
# the trees grow a third level.
MIX = Mix(first=0.0, keys=400, key_bytes=(300, 1000),
          weights=(("checkpoint", 0.05), ("batch", 0.10), ("overflow", 0.07), ("delete", 0.10)),
          drain=(0.5, 0.55), values=(100, 900))


def make_ops(k: int, seed: int) -> list[tuple]:
    """The trees of `MIX`, then `k` of its seeded operations."""
    return list(generate(random.Random(seed), MIX, k))


# -- recording a run ----------------------------------------------------------------

class Recording(History):
    """One workload run on a CrashDisk: a `faults.history.History` whose
    state i is the model after step i (state 0: the open), with the run's
    path, sync mode and operations (`workload`), and the structure it reached."""

    def __init__(self, disk: CrashDisk, path: str, sync: str, ops: list[tuple]) -> None:
        super().__init__(disk)
        self.path, self.sync, self.workload = path, sync, ops
        self.structure: Counter = Counter()
        self.stats: dict = {}

    @property
    def n_events(self) -> int:
        return len(self.disk.events)

    step_at = History.returned  # the last step that had returned by event `crash_at` (-1: none)


def record(ops: list[tuple], *, sync: str = "full", pool_pages: int = 16,
           checkpoint_bytes: int = 96 * 1024, path: str = PATH, disk: CrashDisk | None = None) -> Recording:
    """Run `ops` on a fresh CrashDisk (open, ops; no close: the crash comes
    after the last op at the latest)."""
    disk = disk if disk is not None else CrashDisk()
    rec = Recording(disk, path, sync, ops)
    counts: Counter = Counter()

    def hook(name: str) -> None:
        counts[name] += 1

    syncpoints.install(hook)
    try:
        db = engine.open(path, opener=disk.opener, pool_pages=pool_pages, sync=sync, checkpoint_bytes=checkpoint_bytes)
        model = ModelDatabase()
        rec.note(model.snapshot(), False, "open")
        for op in ops:
            checkpoints = db.checkpoints
            apply_op(db, op)
            apply_op(model, op)
            durable = sync == "full" or op[0] in ("commit", "checkpoint") or db.checkpoints != checkpoints
            if op[0] == "checkpoint":  # every page is clean now: walking the trees writes nothing
                depth = max((len(db.tree_levels(n)) for n in db.trees()), default=0)
                counts["depth"] = max(counts["depth"], depth)
            rec.note(model.snapshot(), durable, op[0])  # an automatic checkpoint makes everything durable too
        rec.stats = db.stats()
        rec.structure = Counter({
            "splits": counts["btree.split"], "merges": counts["btree.merge"],
            "spills": rec.stats["evictions"], "checkpoints": rec.stats["checkpoints"],
            "depth": counts["depth"],
        })
        del db  # abandoned, never closed: the crash comes after the last step at the latest
    finally:
        syncpoints.uninstall()
    return rec


# -- recovering a crash image ---------------------------------------------------------

@dataclass
class Outcome:
    state: Model | None = None
    error: BaseException | None = None
    problems: list[str] = field(default_factory=list)


def recover(images: dict[str, bytes], path: str = PATH, *, sync: str = "full", new_write: bool = True,
            opener=None) -> Outcome:
    """Open (recover) the crash images, read everything, check, write once."""
    out = Outcome()
    disk = CrashDisk(images)
    try:
        db = engine.open(path, opener=opener or disk.opener, pool_pages=16, sync=sync)
    except engine.DragonDBError as exc:
        out.error = exc
        return out
    try:
        out.state = contents(db)
        report = db.check()
        out.problems = list(report.problems)
        if new_write:
            t = db.tree(min(out.state, default="after-crash"))
            t.put(b"\xffprobe", b"after the crash")
            if t.get(b"\xffprobe") != b"after the crash":
                out.problems.append("a new write did not read back")
    finally:
        db.close()
    return out


def describe(rec: Recording, crash_at: int, mode: str, seed: int) -> str:
    i = rec.step_at(crash_at)
    op = rec.workload[i - 1][0] if 1 <= i <= len(rec.workload) else "open" if i == 0 else "-"
    nxt = rec.workload[i][0] if 0 <= i < len(rec.workload) else "-"
    ev = rec.disk.events[crash_at - 1] if crash_at else None
    return (f"crash_at={crash_at} mode={mode} seed={seed} last step {i} ({op}), next {nxt}; "
            f"last event {ev}")


_OUTCOMES: dict[bytes, Outcome] = {}
STATS = Counter()  # crash states verified, distinct images recovered (reported in docs/durability.md)


def recover_cached(images: dict[str, bytes], path: str, sync: str) -> Outcome:
    """`recover`, once per distinct set of images (many crash points leave
    identical disks, e.g. every point between two syncs in "drop" mode)."""
    h = hashlib.sha1(sync.encode())
    for name in sorted(images):
        h.update(name.encode() + b"\0" + hashlib.sha1(images[name]).digest())
    key = h.digest()
    out = _OUTCOMES.get(key)
    if out is None:
        out = _OUTCOMES[key] = recover(images, path, sync=sync)
        STATS["distinct"] += 1
    STATS["states"] += 1
    return out


def verify_point(rec: Recording, crash_at: int, mode: str, seed: int = 0,
                 allowed: Iterable[int] | None = None, images: dict[str, bytes] | None = None,
                 refusal_ok: bool = False) -> str | None:
    """None if recovery from this crash state is correct, else why not.
    `refusal_ok`: a `CorruptionError` from recovery counts as correct."""
    images = rec.disk.images(crash_at, mode, seed=seed) if images is None else images
    steps = list(rec.allowed(crash_at) if allowed is None else allowed)
    out = recover_cached(images, rec.path, rec.sync)
    where = describe(rec, crash_at, mode, seed)
    if out.error is not None:
        if refusal_ok and isinstance(out.error, engine.CorruptionError):
            STATS["refused"] += 1
            return None
        if not steps and isinstance(out.error, (engine.NotADatabaseError, engine.CorruptionError)):
            return None  # the database's creation never returned: a half-made file may be refused
        return f"{where}: recovery raised {out.error!r}"
    if out.problems:
        return f"{where}: check() problems {out.problems[:3]}"
    if not steps:
        return None if out.state == {} else f"{where}: before open returned, got trees {sorted(out.state)}"
    if not any(out.state == rec.models[s] for s in steps):
        return f"{where}: state matches none of steps {steps[0]}..{steps[-1]} ({summary(out.state)})"
    return None


def summary(state: Model) -> str:
    return ", ".join(f"{n}:{len(t)}" for n, t in sorted(state.items()))


# -- the recording shared by this module's tests -----------------------------------------

_CACHE: dict[tuple, Recording] = {}


def recording(k: int = K, seed: int = SEED, sync: str = "full", commit_every: int = 0) -> Recording:
    """The recorded run of `make_ops(k, seed)` (cached per process)."""
    key = (k, seed, sync, commit_every)
    if key not in _CACHE:
        ops = make_ops(k, seed)
        if commit_every:
            ops = [o for i, op in enumerate(ops) for o in ((op, ("commit",)) if i % commit_every == commit_every - 1 else (op,))]
        _CACHE[key] = record(ops, sync=sync)
    return _CACHE[key]


def sweep(rec: Recording, modes: Iterable[str], points: Iterable[int] | None = None) -> tuple[int, list[str]]:
    """Verify every crash point in every mode; (states checked, failures)."""
    failures: list[str] = []
    n = 0
    for crash_at in (range(rec.n_events + 1) if points is None else points):
        for mode in modes:
            n += 1
            why = verify_point(rec, crash_at, mode, seed=crash_at)
            if why:
                failures.append(why)
    return n, failures


# -- tests ----------------------------------------------------------------------------------

def test_workload_reaches_every_structural_case() -> None:
    rec = recording()
    s = rec.structure
    assert s["splits"] >= 10 and s["merges"] >= 10 and s["depth"] >= 3, s
    assert s["spills"] >= 10, f"pool_pages=16 must spill dirty pages to the log: {s}"
    assert s["checkpoints"] >= 5, s
    kinds = Counter(op[0] for op in rec.workload)
    assert kinds["batch"] >= 10 and kinds["checkpoint"] >= 3 and kinds["drop"] == 1, kinds
    overflow = sum(1 for op in rec.workload if op[0] == "put" and len(op[3]) > 4096)
    assert overflow >= 5
    events = Counter(e.kind for e in rec.disk.events)
    assert events["sync"] >= K // 2 and events["write"] >= K, events
    # the final state is not trivial: both trees hold keys across several leaves
    final = rec.models[-1]
    assert len(final["a"]) + len(final["b"]) >= 30


@pytest.mark.parametrize("mode", ["drop", "keep", "torn", "reorder"])
def test_power_loss_at_every_boundary_sync_full(mode: str) -> None:
    rec = recording()
    n, failures = sweep(rec, [mode])
    assert n == rec.n_events + 1 >= 500
    assert not failures, f"{len(failures)} of {n} crash states wrong; first: {failures[:3]}"


@pytest.mark.parametrize("mode", ["drop", "torn", "reorder"])
def test_power_loss_at_every_boundary_sync_normal(mode: str) -> None:
    """sync="normal": after `db.commit()` returned, everything before it survives."""
    rec = recording(sync="normal", commit_every=7)
    assert sum(1 for op in rec.workload if op[0] == "commit") >= 20
    n, failures = sweep(rec, [mode])
    assert not failures, f"{len(failures)} of {n} crash states wrong; first: {failures[:3]}"


def test_sync_normal_loses_only_work_after_the_last_commit() -> None:
    """The oracle is not vacuous: some crash states do lose uncommitted work."""
    rec = recording(sync="normal", commit_every=7)
    lost = 0
    for crash_at in range(0, rec.n_events + 1, 3):
        i = rec.step_at(crash_at)
        if i < 1:
            continue
        out = recover(rec.disk.images(crash_at, "drop"), rec.path, sync="normal", new_write=False)
        assert out.error is None
        lost += out.state != rec.models[i]
    assert lost > 0, "sync='normal' never lost uncommitted work: the crash images are not exercising it"


def test_random_sector_damage_never_returns_wrong_data() -> None:
    """Random garbage in unsynced sectors (every other boundary): recovery
    either refuses with `CorruptionError` (an acknowledged record was in a
    damaged sector: wal rule 5a) or succeeds with a clean check() and the
    model after some step (no torn batch, no invented data). Whether
    acknowledged steps survive is the next test."""
    rec = recording()
    failures = []
    for crash_at in range(0, rec.n_events + 1, 2):
        i = rec.step_at(crash_at)
        steps = range(0, min(i + 1, len(rec.models) - 1) + 1) if i >= 0 else []
        why = verify_point(rec, crash_at, "random", seed=crash_at, allowed=steps, refusal_ok=True)
        if why:
            failures.append(why)
    assert not failures, f"{len(failures)} crash states wrong; first: {failures[:3]}"


def test_random_sector_garbage_keeps_acknowledged_commits() -> None:
    rec = recording()
    for crash_at in range(rec.n_events + 1):  # stops at the first failure
        why = verify_point(rec, crash_at, "random", seed=crash_at)
        assert why is None, why


def test_minimal_repro_garbage_in_rewritten_tail_sector() -> None:
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    t = db.tree("t")
    t.put(b"acknowledged", b"1")  # fsynced and returned: durable by rule 1
    acked = disk.mark("put returned")
    t.put(b"in-flight", b"2")
    write = next(e for e in disk.events[acked:] if e.kind == "write" and e.path.endswith("-wal"))
    images = disk.images(write.index, "drop")
    log = bytearray(images[PATH + "-wal"])
    first = write.offset // 512 * 512
    log[first : first + 512] = bytes(512)  # the rewritten sector lost power mid-write: garbage (zeros)
    images[PATH + "-wal"] = bytes(log)
    assert write.offset >= 1024, "rule 7: the next record starts on a sector of its own"
    out = recover(images, new_write=False)
    assert out.error is None
    assert out.state == {"t": {b"acknowledged": b"1"}}


def test_enumerated_pending_subsets_small_workload() -> None:
    """Every subset of pending writes landing, in order (up to 8 per point,
    else seeded samples), at every boundary of the short workload."""
    rec = recording(k=SHORT_K, seed=SHORT_SEED)
    n = 0
    failures = []
    for state in rec.disk.enumerate_states(unit="op", limit=8, seed=1):
        n += 1
        why = verify_point(rec, state.crash_at, f"subset{state.landed}", images=state.images)
        if why:
            failures.append(why)
    assert n >= 800  # ~870 states: a floor so a change that records fewer writes is noticed
    assert not failures, f"{len(failures)} of {n} states wrong; first: {failures[:3]}"


# -- long sweeps (campaign-nightly) ----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("seed", range(1, 6))
def test_power_loss_many_seeds(seed: int) -> None:
    rec = recording(seed=seed)
    n, failures = sweep(rec, ["drop", "keep", "torn", "reorder"])
    assert not failures, f"seed {seed}: {len(failures)} of {n} wrong; first: {failures[:3]}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_enumerated_sector_subsets() -> None:
    """Sector-granular subsets of the pending writes, 16 per crash point."""
    rec = recording(seed=11)
    n = 0
    failures = []
    for state in rec.disk.enumerate_states(unit="sector", limit=16, seed=3):
        n += 1
        why = verify_point(rec, state.crash_at, "sectors", images=state.images)
        if why:
            failures.append(why)
    assert not failures, f"{len(failures)} of {n} states wrong; first: {failures[:3]}"

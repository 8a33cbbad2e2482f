"""Fault campaigns: seeded workloads x fault plans x interleavings x crash points.

`dragondb campaign` (and `make campaign`) runs *trials*, each a pure
function of a token such as `crash:81723` (kind and seed), on `--workers`
processes, until `--seconds` pass or `--operations` workload operations
have run. Every trial compares the engine with `models.ModelDatabase`:

- `sweep` (SQLite's I/O-error loops): one fixed workload per campaign seed
  is dry-run to learn every I/O call site (the engine function calling the
  file, via `FaultPlan(site_depth=...)`) and the index of its first call;
  sweep trial j then fails one call: first each site's first call (transient,
  then persistent, then short/torn/bit-flip variants), then call N = 1, 2, ...
  of every kind, transient and persistent. So the first few hundred sweep
  trials fail every I/O call site the workload reaches.
- `faults` (FoundationDB's BUGGIFY): each of 18 fault sites (call kind x
  file x effect) is switched on with p = 0.25 for the trial and, while the
  plan is armed, fires with p = 0.25 per call. The plan is armed for a
  seeded 30% of operations so the trees still grow between faulty ones.
- `crash`: a workload on a `CrashDisk`; sampled crash points x modes
  (drop, torn, reorder, random) are materialized into a temporary directory
  and recovered by `engine.open`; plus compound faults: a crash during
  recovery, an I/O error during recovery.
- `interleave`: 2-3 threads under the deterministic scheduler with a seeded
  schedule (sometimes with a fault plan too), on disjoint keys of shared trees,
  one of them created empty so the first puts race to create its root.
- `killpower`, `syncmodes`, `readonly`, `shortfile` (modules in
  `TRIAL_MODULES`): kill -> recovery by the next process -> power loss; the
  commit rule in all three sync modes; a read-only open after a kill or
  crash changes nothing; a short or empty data file beside a log with
  records is recovered or refused untouched; a crafted file (valid
  checksums, impossible contents) gives data or a typed error, never a hang.
  See docs/campaign.md.

Oracle, after every operation that raised `StorageIOError` or
`CorruptionError`: the operation had no effect (contents equal the model),
`db.check()` is clean (no leaked or double-owned page, no pin held, no
duplicate frame); `NeedsRecoveryError` is followed by a reopen, after which
the contents equal the model before or after that operation. After a crash,
recovery gives the model after some operation between the last durable one
and the one in flight. Any other exception is a failure. A failure is
reported with its token and the one command that replays it:
`dragondb campaign --replay TOKEN`.

`dragondb campaign merge A.json B.json ...` adds up shard reports.
See docs/campaign.md for the report's shape.
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import errno as _errno
import gc
import hashlib
import importlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import engine
from engine.errors import (
    CorruptionError,
    DragonDBError,
    NeedsRecoveryError,
    NotADatabaseError,
    StorageIOError,
)
from faults.crash import CrashDisk, materialize
from faults.interleave import InterleaveError
from faults.interleave import run as run_threads
from faults.io import KINDS, FaultPlan
from models import ModelDatabase

__all__ = ["KIND_WEIGHTS", "TRIAL_MODULES", "Tally", "main", "make_ops", "merge_reports", "run_trial", "tokens"]

SITE_DEPTH = 2  # a call site is the two innermost engine functions on the stack
POOL_PAGES = 16  # the smallest pool: reads miss, dirty pages spill to the log
# The interleave trials use a pool large enough never to evict: the engine reaches
# "bufferpool.evict" with the pool mutex held, so a scheduler parking a thread there
# blocks every other thread (tests/faults/test_seed_claims.py pins it); misses still happen.
INTERLEAVE_POOL = 256
CRASH_MODES = ("drop", "torn", "reorder", "random")
# Trial kinds living in their own modules, imported when first run: each has
# `run(token, seed, tally, tmp, modes)` and `planned_ops(seed)`.
TRIAL_MODULES = {
    "killpower": "faults.trials_kill",  # kill -> recovery by the next process -> power loss
    "syncmodes": "faults.trials_sync",  # everything before the last returned commit() survives
    "readonly": "faults.trials_readonly",  # a read-only open after a kill or crash writes nothing
    "shortfile": "faults.trials_shortfile",  # a short or empty data file beside a log with records
    "crafted": "faults.trials_crafted",  # valid checksums over contents no engine could write
}
KIND_WEIGHTS = {"sweep": 3, "faults": 3, "crash": 2, "interleave": 3,  # a crash trial runs ~10x longer
                "killpower": 2, "syncmodes": 2, "readonly": 1, "shortfile": 1, "crafted": 1}
ERRNOS = (_errno.EIO, _errno.ENOSPC, _errno.EFBIG)
EXPECTED = (StorageIOError, CorruptionError)  # what an injected fault may surface as
_PATH = "/campaign/c.db"  # a CrashDisk path: never touches the real file system

Model = dict[str, dict[bytes, bytes]]


class TrialFailure(Exception):
    """A trial found the engine wrong; the trial stops at its first one."""


# -- the report ----------------------------------------------------------------------

_SUMS = (
    "operations", "interleavings", "crashes_simulated", "recoveries_verified", "recoveries_run",
    "divergences", "leaked_pages", "double_owned_pages", "duplicate_frames", "pins_held",
    "check_problems", "unexpected_errors", "ops_failed",
)


class Tally:
    """What one trial (or a whole campaign) counted; `as_dict` is the JSON report."""

    def __init__(self) -> None:
        self.n: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()  # call kind -> faults injected
        self.effects: Counter[str] = Counter()  # effect -> faults injected
        self.sites: set[tuple[str, str]] = set()  # (kind, site) failed at least once
        self.seen: set[tuple[str, str]] = set()  # (kind, site) called at least once
        self.traces: set[str] = set()  # hashes of the interleavings run
        self.trials: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()  # crash states per mode
        self.failures: list[dict] = []

    def fail(self, token: str, what: str, error: str) -> None:
        self.n[what] += 1
        kind, seed = token.split(":")[0], token.split(":")[1]
        self.failures.append({
            "seed": int(seed), "kind": kind, "token": token, "error": f"{what}: {error}"[:2000],
            "replay": f"dragondb campaign --replay {token}",
        })

    def add_plan(self, plan: FaultPlan) -> None:
        for inj in plan.injected:
            self.faults[inj.kind] += 1
            self.effects[inj.effect] += 1
            self.sites.add((inj.kind, inj.site or "?"))
        self.seen.update(plan.sites)

    def merge(self, other: Tally) -> None:
        self.n.update(other.n)
        self.faults.update(other.faults)
        self.effects.update(other.effects)
        self.sites |= other.sites
        self.seen |= other.seen
        self.traces |= other.traces
        self.trials.update(other.trials)
        self.modes.update(other.modes)
        self.failures.extend(other.failures)

    def as_dict(self) -> dict:
        d = {k: self.n[k] for k in _SUMS}
        d["faults_injected"] = dict(sorted(self.faults.items()))
        d["faults_by_effect"] = dict(sorted(self.effects.items()))
        d["fault_sites"] = sorted([k, s] for k, s in self.sites)
        d["io_sites_seen"] = sorted([k, s] for k, s in self.seen)
        d["io_sites_never_failed"] = sorted([k, s] for k, s in self.seen - self.sites)
        d["interleavings_distinct"] = len(self.traces)
        d["interleaving_traces"] = sorted(self.traces)
        d["trials"] = dict(sorted(self.trials.items()))
        d["crash_modes"] = dict(sorted(self.modes.items()))
        d["failures"] = self.failures
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Tally:
        t = cls()
        t.n.update({k: int(d.get(k, 0)) for k in _SUMS})
        t.faults.update(d.get("faults_injected", {}))
        t.effects.update(d.get("faults_by_effect", {}))
        t.sites = {(k, s) for k, s in d.get("fault_sites", [])}
        t.seen = {(k, s) for k, s in d.get("io_sites_seen", [])}
        t.traces = set(d.get("interleaving_traces", []))
        t.trials.update(d.get("trials", {}))
        t.modes.update(d.get("crash_modes", {}))
        t.failures = list(d.get("failures", []))
        return t


# -- workloads -------------------------------------------------------------------------

def make_ops(rng: random.Random, n: int, *, sync: str = "full", crash: bool = False,  # noqa: C901 - one branch per op kind; a table of op makers
             key_bytes: tuple[int, int] = (200, 900)) -> list[tuple]:
    """Two trees, then `n` seeded operations: puts early (leaf and internal
    splits: most keys are long, `key_bytes`, so internal nodes hold few
    separators), deletes late (merges), overflow values, batches across
    trees, a third tree created and dropped, reads, scans, checkpoints,
    reopens, and (`crash`) simulated kills."""
    keys = [b"k%04d:" % i + (rng.randbytes(rng.randint(*key_bytes)) if rng.random() < 0.8 else b"")
            for i in range(0, max(n, 20) * 2, 2)]
    live: dict[str, set[bytes]] = {"a": set(), "b": set(), "c": set()}
    ops: list[tuple] = [("tree", "a"), ("tree", "b")]
    names = "ab"

    def put(t: str, size: int) -> tuple:
        key = rng.choice(keys)
        live[t].add(key)
        return ("put", t, key, rng.randbytes(size))

    def victim(t: str) -> bytes:
        key = rng.choice(sorted(live[t])) if live[t] and rng.random() < 0.9 else rng.choice(keys)
        live[t].discard(key)
        return key

    for i in range(n):
        phase = i / n
        r = rng.random()
        t = "a" if rng.random() < 0.6 else rng.choice(names)  # one tree grows a third level
        if i == n // 3:
            ops.append(("tree", "c"))
            names = "abc"
        elif i == (2 * n) // 3:
            ops.append(("drop", "c"))
            live["c"].clear()
            names = "ab"
        elif r < 0.04:
            ops.append(("checkpoint",))
            if crash and rng.random() < 0.5:
                ops.append(("crash",))  # killed during or right after a checkpoint
        elif r < 0.07:
            ops.append(("crash",) if crash and rng.random() < 0.5 else ("reopen",))
        elif r < 0.10 and sync != "full":
            ops.append(("commit",))
        elif r < 0.18:
            batch = []
            for _ in range(rng.randint(2, 6)):
                bt = rng.choice(names)
                if rng.random() < 0.7:
                    batch.append(put(bt, rng.choice((rng.randint(10, 600), rng.randint(4500, 9000)))))
                else:
                    batch.append(("delete", bt, victim(bt)))
            ops.append(("batch", batch))
        elif r < 0.25:
            ops.append(put(t, rng.randint(4500, 13000)))
        elif r < 0.33:
            if rng.random() < 0.6:
                ops.append(("get", t, rng.choice(sorted(live[t])) if live[t] else rng.choice(keys)))
            else:
                lo, hi = sorted((rng.choice(keys), rng.choice(keys)))
                ops.append(("scan", t, lo, hi, rng.random() < 0.3))
        elif r < (0.38 if phase < 0.6 else 0.85):  # grow first (splits), then drain (merges)
            ops.append(("delete", t, victim(t)))
        else:
            ops.append(put(t, rng.randint(50, 900)))
    return ops


def apply_op(db, op: tuple):
    """Run `op` on an engine `Database` or a `ModelDatabase`; the result to compare."""
    kind = op[0]
    if kind == "put":
        db.tree(op[1]).put(op[2], op[3])
    elif kind == "delete":
        return db.tree(op[1]).delete(op[2])
    elif kind == "get":
        return db.tree(op[1]).get(op[2])
    elif kind == "scan":
        return list(db.tree(op[1]).scan(op[2], op[3], reverse=op[4]))
    elif kind == "batch":
        with db.batch() as b:
            for sub in op[1]:
                if sub[0] == "put":
                    b.put(sub[1], sub[2], sub[3])
                else:
                    b.delete(sub[1], sub[2])
    elif kind == "tree":
        db.tree(op[1])
    elif kind == "drop":
        db.drop_tree(op[1])
    elif kind == "checkpoint":
        db.checkpoint()
    elif kind == "compact":
        db.compact()  # the engine reports its pages, the model none: the result is not compared
    elif kind == "commit":
        db.commit()
    else:
        raise AssertionError(f"apply_op: {kind!r} is not a database operation")
    return None


def contents(db) -> Model:
    return {name: dict(db.tree(name).items()) for name in db.trees()}


def _describe(op: tuple) -> str:
    if op[0] == "batch":
        return f"batch of {len(op[1])}"
    parts = [op[0], *(repr(a[:12]) + (f"..({len(a)}B)" if len(a) > 12 else "") if isinstance(a, bytes) else repr(a) for a in op[1:])]
    return " ".join(parts)


def _diff(got: Model, want: Model) -> str:
    if sorted(got) != sorted(want):
        return f"trees {sorted(got)} != model {sorted(want)}"
    for name in sorted(got):
        g, w = got[name], want[name]
        if g != w:
            extra = sorted(set(g) - set(w))
            missing = sorted(set(w) - set(g))
            changed = sorted(k for k in set(g) & set(w) if g[k] != w[k])
            return (f"tree {name!r}: {len(g)} keys vs model {len(w)}; extra {[k[:12] for k in extra[:3]]}, "
                    f"missing {[k[:12] for k in missing[:3]]}, changed {[k[:12] for k in changed[:3]]}")
    return "equal"


# -- checking a live database -------------------------------------------------------------

def _pool_problem(p: str) -> bool:
    return p.startswith(("page table", "free frame", "free list holds a frame", "replacer")) or (
        p.startswith("frame ") and "pinned" not in p)


def audit(db, tally: Tally, token: str, where: str) -> None:
    """`db.check()`: count leaked/double-owned pages, pins and duplicate frames;
    raise `TrialFailure` on any problem."""
    rep = db.check()
    if rep.ok:
        return
    tally.n["leaked_pages"] += rep.pages_leaked
    tally.n["double_owned_pages"] += rep.pages_double_owned
    tally.n["duplicate_frames"] += sum(1 for p in rep.problems if _pool_problem(p))
    tally.n["pins_held"] += sum(1 for p in rep.problems if "still pinned" in p)
    tally.fail(token, "check_problems", f"{where}: {rep.problems[:4]}")
    raise TrialFailure(where)


# -- a database under a fault plan, beside the model ----------------------------------------

class _Session:
    """Runs a workload on a database opened through `plan`, checking every failure."""

    def __init__(self, tally: Tally, token: str, plan: FaultPlan, rng: random.Random, *,
                 sync: str, armed: Callable[[], bool], real_dir: str | None = None,
                 checkpoint_bytes: int | None = None) -> None:
        self.tally, self.token, self.plan, self.rng = tally, token, plan, rng
        self.sync = sync
        self.armed = armed
        self.real_dir = real_dir
        self.disk = None if real_dir else CrashDisk()
        self.path = os.path.join(real_dir, "c.db") if real_dir else _PATH
        self.checkpoint_bytes = checkpoint_bytes
        self.model = ModelDatabase()
        self.db = None
        self.acked = False  # some operation returned: the database exists
        self.before: Model = {}  # the model before the last operation (a kill may land on either side)
        self.mark = 0  # disk events before the last operation

    # -- helpers --

    def _arm(self, on: bool) -> None:
        if on:
            self.plan.arm()
        else:
            self.plan.disarm()

    def _opener(self):
        return self.plan.opener(self.disk.opener if self.disk is not None else None)

    def _fail(self, what: str, error: str) -> None:
        if self.real_dir:
            error = error.replace(self.real_dir, "<tmp>")  # the same message on replay
        self.tally.fail(self.token, what, error)
        raise TrialFailure(error)

    def _verify(self, where: str, *alternatives: Model) -> None:
        """Contents equal the model (or one of `alternatives`, adopted then); check() clean."""
        self._arm(False)
        want = self.model.snapshot()
        try:
            got = contents(self.db)
        except DragonDBError as exc:
            self._fail("divergences", f"{where}: reading everything back raised {exc!r}")
        if got != want:
            for alt in alternatives:
                if got == alt:
                    self.model = ModelDatabase()
                    for name, tree in alt.items():
                        t = self.model.tree(name)
                        for k, v in tree.items():
                            t.put(k, v)
                    break
            else:
                self._fail("divergences", f"{where}: {_diff(got, want)}")
        audit(self.db, self.tally, self.token, where)

    # -- opening --

    def open(self, where: str, *alternatives: Model) -> None:
        """Open (recover), retrying while injected faults make it fail, then verify."""
        last: BaseException | None = None
        for attempt in range(5):
            self._arm(attempt < 4 and self.armed())
            try:
                self.db = engine.open(self.path, opener=self._opener(), pool_pages=POOL_PAGES, sync=self.sync,
                                      **({"checkpoint_bytes": self.checkpoint_bytes} if self.checkpoint_bytes else {}))
                break
            except (*EXPECTED, NotADatabaseError) as exc:
                last = exc
                self.tally.n["ops_failed"] += 1
                if isinstance(exc, NotADatabaseError) and self.acked:
                    self._fail("divergences", f"{where}: {exc!r} after the database was created")
                if not self.acked and isinstance(exc, (NotADatabaseError, CorruptionError)):
                    self._remove()  # its creation never returned: a half-made file may be refused
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                self._fail("unexpected_errors", f"{where}: open raised {exc!r}")
        else:
            self._fail("divergences", f"{where}: cannot open with faults off: {last!r}")
        self._arm(False)
        self._verify(where, *alternatives)

    def _remove(self) -> None:
        if self.disk is not None:
            self.disk = CrashDisk()
        else:
            for name in ("c.db", "c.db-wal"):
                try:
                    os.unlink(os.path.join(self.real_dir, name))
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        self._arm(False)
        if self.db is not None:
            db, self.db = self.db, None
            try:
                db.close()
            except DragonDBError:
                pass  # a poisoned database; the next open recovers
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                self._fail("unexpected_errors", f"close raised {exc!r}")

    def abandon(self) -> None:
        """Release the database after a failure, whatever state it is in."""
        db, self.db = self.db, None
        if db is not None:
            try:
                db.close()
            except Exception:  # noqa: BLE001, S110 - the trial already failed or finished
                pass

    # -- one operation --

    def step(self, op: tuple, index: int) -> None:  # noqa: C901 - one branch per op kind; dispatch by table
        where = f"op {index} ({_describe(op)})"
        before = self.model.snapshot()
        self.mark = len(self.disk.events) if self.disk is not None else 0
        injected = len(self.plan.injected)
        kind = op[0]
        if kind == "crash":
            return self._crash(where)
        if kind in ("put", "delete", "get", "scan") and op[1] not in self.model.trees():
            # `db.tree(name)` creating the tree is a commit of its own: run it as one
            self.step(("tree", op[1]), index)
            before = self.model.snapshot()
            injected = len(self.plan.injected)
            if op[1] not in self.model.trees():
                self.before = before
                return  # its creation failed (and was checked): skip the operation
        self._arm(self.armed())
        try:
            if kind == "reopen":
                try:
                    self.db.close()
                finally:
                    self.db = None
                self.open(where)
                result = want = None
            else:
                result = apply_op(self.db, op)
        except NeedsRecoveryError as exc:
            self._expected(exc, injected, where)
            self.close()
            alt = self.model.reopen()
            self._model_apply(alt, op)
            self.open(f"{where}, reopened after {exc!r}", alt.snapshot())
        except EXPECTED as exc:
            self._expected(exc, injected, where)
            if self.db is None:  # a reopen failed
                self.open(f"{where}, after {exc!r}")
            else:
                try:
                    self._verify(f"{where} raised {exc!r}")
                except NeedsRecoveryError:  # the failure poisoned the database: same as above
                    self.close()
                    self.open(f"{where}, reopened after {exc!r}")
        except TrialFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            self._arm(False)
            try:
                self._model_apply(self.model.reopen(), op)
            except type(exc):
                pass  # the model raises it too (e.g. KeyError: dropping a tree whose creation failed)
            else:
                self._fail("unexpected_errors", f"{where} raised {exc!r}")
        else:
            self._arm(False)
            if kind != "reopen":
                want = self._model_apply(self.model, op)
                if result != want:
                    self._fail("divergences", f"{where} returned {str(result)[:120]}, model {str(want)[:120]}")
            self.acked = True
            if len(self.plan.injected) > injected:
                self._verify(f"{where} succeeded despite a fault")  # e.g. a failed automatic checkpoint
        self.before = before

    def _model_apply(self, model: ModelDatabase, op: tuple):
        return None if op[0] in ("reopen", "crash") else apply_op(model, op)

    def _expected(self, exc: BaseException, injected: int, where: str) -> None:
        self.tally.n["ops_failed"] += 1
        self._arm(False)
        if len(self.plan.injected) == injected:
            self._fail("unexpected_errors", f"{where} raised {exc!r} but no fault was injected")

    def _crash(self, where: str) -> None:
        """Kill the process at a seeded moment of the last operation (every
        write so far reached the page cache) and recover."""
        if self.disk is None or self.db is None:
            return
        crash_at = self.rng.randint(self.mark, len(self.disk.events))
        self.disk = CrashDisk(self.disk.images(crash_at, "keep"))
        self.db = None  # abandoned, never closed
        self.open(f"{where} at event {crash_at}", self.before)

    def finish(self) -> None:
        """Reopen with faults off: everything acknowledged is still there."""
        self._arm(False)
        self.plan.rules.clear()
        self.close()
        self.open("final reopen")
        self.close()


# -- trial: sweep every I/O call site -------------------------------------------------------

class _SitePlan(FaultPlan):
    """A plan that also remembers, per (kind, site), the armed-call index of
    its first call (the dry run of a sweep)."""

    def __init__(self, seed: int = 0, *, site_depth: int = 0) -> None:
        super().__init__(seed, site_depth=site_depth)
        self.armed_calls: Counter[str] = Counter()
        self.first: dict[tuple[str, str], int] = {}

    def decide(self, kind, path, offset=None, length=0, site=None):
        if self.armed:
            self.armed_calls[kind] += 1
            self.first.setdefault((kind, site or "?"), self.armed_calls[kind])
        return super().decide(kind, path, offset, length, site)


_SWEEP_OPS = 110
_ROUNDS = 3  # sweep workloads per cycle: one per sync mode, so every sync path is swept


def _sweep_workload(seed: int, rnd: int) -> tuple[list[tuple], str]:
    rng = random.Random(f"sweep:{seed}:{rnd}")
    sync = ("full", "normal", "off")[rnd % 3]
    return make_ops(rng, _SWEEP_OPS, sync=sync, crash=True, key_bytes=(700, 1000)), sync


def _dry_run(seed: int, rnd: int) -> _SitePlan:
    ops, sync = _sweep_workload(seed, rnd)
    plan = _SitePlan(seed, site_depth=SITE_DEPTH)
    s = _Session(Tally(), f"sweep:{seed}:dry", plan, random.Random(seed), sync=sync,
                 armed=lambda: True, checkpoint_bytes=128 * 1024)
    s.open("dry run open")
    for i, op in enumerate(ops, 1):
        s.step(op, i)
    s.close()
    return plan


_SWEEPS: dict[tuple[int, int], list[tuple]] = {}


def sweep_items(seed: int, cycle: int = 0) -> list[tuple]:
    """Sweep items of one cycle (rounds 3c..3c+2), each (round, kind, nth,
    effect, persistent, errno): first every call site's first call failed
    (transient, then persistent, then short/torn/bit-flip), a site seen in
    an earlier round only once; then call N = 1, 2, ... of every kind."""
    key = (seed, cycle)
    if key not in _SWEEPS:
        rounds = range(cycle * _ROUNDS, (cycle + 1) * _ROUNDS)
        plans = {r: _dry_run(seed, r) for r in rounds}
        firsts: list[tuple[int, str, int]] = []
        covered: set[tuple[str, str]] = set()
        for r in rounds:
            for (kind, site), nth in sorted(plans[r].first.items(), key=lambda kv: (kv[0][0], kv[1])):
                if (kind, site) not in covered:
                    covered.add((kind, site))
                    firsts.append((r, kind, nth))
        items: list[tuple] = []
        items += [(r, kind, nth, "error", False, ERRNOS[i % 3]) for i, (r, kind, nth) in enumerate(firsts)]
        items += [(r, kind, nth, "error", True, ERRNOS[(i + 1) % 3]) for i, (r, kind, nth) in enumerate(firsts)]
        for r, kind, nth in firsts:
            if kind == "write":
                items += [(r, kind, nth, "short", False, _errno.EIO), (r, kind, nth, "torn", False, _errno.EIO)]
            elif kind == "read":
                items += [(r, kind, nth, "short", False, 0), (r, kind, nth, "bitflip", False, 0)]
        top = max(max(p.armed_calls.values()) for p in plans.values())
        for nth in range(1, top + 1):
            for r in rounds:
                for kind in KINDS:
                    if nth <= plans[r].armed_calls[kind]:
                        items.append((r, kind, nth, "error", False, ERRNOS[nth % 3]))
                        items.append((r, kind, nth, "error", True, ERRNOS[(nth + 1) % 3]))
        _SWEEPS[key] = items
    return _SWEEPS[key]


def _sweep_trial(token: str, seed: int, j: int, tally: Tally) -> None:
    cycle = 0
    items = sweep_items(seed, 0)
    while j >= len(items):  # past the end of a cycle: the next cycle's workloads
        j -= len(items)
        cycle += 1
        items = sweep_items(seed, cycle)
    rnd, kind, nth, effect, persistent, err = items[j]
    ops, sync = _sweep_workload(seed, rnd)
    tally.n["operations"] += len(ops)
    plan = FaultPlan(seed ^ j, site_depth=SITE_DEPTH)
    if effect == "error":
        rule = plan.fail(kind, nth, persistent=persistent, errno=err)
    elif effect == "short":
        rule = plan.short(kind, nth)
    elif effect == "torn":
        rule = plan.torn(nth)
    else:
        rule = plan.bitflip(nth)
    s = _Session(tally, token, plan, random.Random(seed), sync=sync, armed=lambda: True,
                 checkpoint_bytes=128 * 1024)
    fired_at = None
    try:
        s.open("open")
        for i, op in enumerate(ops, 1):
            s.step(op, i)
            if rule.fired and fired_at is None:
                fired_at = i
            if fired_at is not None and i >= fired_at + 4:
                plan.rules.clear()  # the disk is replaced: the workload must go on working
        s.finish()
    finally:
        tally.add_plan(plan)
        s.abandon()
    if not rule.fired:
        tally.fail(token, "unexpected_errors", f"sweep item {items[j]} never fired (the workload is not deterministic?)")


# -- trial: FoundationDB-style random fault sites ---------------------------------------------

_TEMPLATES = [
    *[("error", k, f) for f in (".db", "-wal") for k in ("open", "read", "write", "sync")],
    ("error", "extend", ".db"), ("error", "truncate", "-wal"),
    *[("short", k, f) for f in (".db", "-wal") for k in ("read", "write")],
    ("torn", "write", ".db"), ("torn", "write", "-wal"),
    ("bitflip", "read", ".db"), ("bitflip", "read", "-wal"),
]


def _faults_workload(seed: int) -> tuple[list[tuple], str, bool]:
    """(operations, sync mode, on real files?) of faults trial `seed`."""
    rng = random.Random(f"faults:{seed}")
    sync = rng.choice(("full", "normal", "off"))
    real = rng.random() < 0.25  # a quarter on real files (DirectFile), the rest in memory
    return make_ops(rng, rng.randint(40, 120), sync=sync, crash=not real), sync, real


def _faults_trial(token: str, seed: int, tally: Tally, tmp: str) -> None:
    rng = random.Random(seed)
    plan = FaultPlan(seed, site_depth=SITE_DEPTH)
    for effect, kind, file in _TEMPLATES:
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
    ops, sync, real = _faults_workload(seed)
    tally.n["operations"] += len(ops)
    real_dir = tempfile.mkdtemp(dir=tmp) if real else None
    arm_rng = random.Random(seed + 1)
    s = _Session(tally, token, plan, rng, sync=sync, armed=lambda: arm_rng.random() < 0.3,
                 real_dir=real_dir, checkpoint_bytes=rng.choice((64 * 1024, 256 * 1024, None)))
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


# -- trial: power loss at sampled crash points ---------------------------------------------------

class _Recorder:
    """A workload run on a CrashDisk: `marks[i]` = events when step i had
    returned, `models[i]` the model then, `durable[i]` the last step step i
    made durable."""

    def __init__(self, ops: list[tuple], sync: str, checkpoint_bytes: int) -> None:
        self.disk = CrashDisk()
        self.sync = sync
        self.marks: list[int] = []
        self.models: list[Model] = []
        self.durable: list[int] = []
        model = ModelDatabase()
        db = engine.open(_PATH, opener=self.disk.opener, pool_pages=POOL_PAGES, sync=sync, checkpoint_bytes=checkpoint_bytes)
        self._note(model, 0)
        durable = 0
        for step, op in enumerate(ops, 1):
            cps = db.checkpoints
            if op[0] == "reopen":
                db.close()  # close checkpoints: durable unless sync="off"
                db = engine.open(_PATH, opener=self.disk.opener, pool_pages=POOL_PAGES, sync=sync,
                                 checkpoint_bytes=checkpoint_bytes)
                durable = step
            else:
                got, want = apply_op(db, op), apply_op(model, op)
                if got != want:
                    raise TrialFailure(f"step {step} ({_describe(op)}) returned {got!r:.80}, model {want!r:.80}")
                if sync == "full" or op[0] in ("commit", "checkpoint") or db.checkpoints != cps:
                    durable = step
            self._note(model, durable)
        self.final = db  # abandoned, never closed: the crash comes after the last step at the latest

    def _note(self, model: ModelDatabase, durable: int) -> None:
        self.marks.append(self.disk.mark(f"step {len(self.marks)}"))
        self.models.append(model.snapshot())
        self.durable.append(durable)

    def allowed(self, crash_at: int) -> list[int]:
        i = bisect.bisect_right(self.marks, crash_at) - 1
        if i < 0:
            return []
        return list(range(self.durable[i], min(i + 1, len(self.models) - 1) + 1))


class _Recovery:
    """Materializes crash images into a directory and recovers them (cached by content)."""

    def __init__(self, tmp: str, sync: str) -> None:
        self.tmp = tmp
        self.sync = sync
        self.cache: dict[bytes, tuple[Model | None, str | None]] = {}
        self.runs = 0

    def __call__(self, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        """(contents, None) or (None, why recovery failed)."""
        h = hashlib.blake2b(self.sync.encode(), digest_size=16)
        for name in sorted(images):
            h.update(name.encode() + b"\0" + hashlib.blake2b(images[name], digest_size=16).digest())
        key = h.digest()
        if key not in self.cache:
            self.cache[key] = self._recover(images)
        return self.cache[key]

    def _recover(self, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        self.runs += 1
        d = tempfile.mkdtemp(dir=self.tmp)
        state, why = self._recover_in(d, images)
        return state, None if why is None else why.replace(d, "<tmp>")  # the same message on replay

    def _recover_in(self, d: str, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        try:
            materialize(images, d)
            try:
                db = engine.open(os.path.join(d, os.path.basename(_PATH)), pool_pages=POOL_PAGES, sync=self.sync)
            except (NotADatabaseError, CorruptionError) as exc:
                return None, f"refused: {exc!r}"
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                return None, f"recovery raised {exc!r}"
            try:
                state = contents(db)
                rep = db.check()
                if not rep.ok:
                    return None, f"check() after recovery: {rep.problems[:3]}"
                t = db.tree("after-crash")
                t.put(b"probe", b"written after recovery")
                if t.get(b"probe") != b"written after recovery":
                    return None, "a write after recovery did not read back"
                return state, None
            except Exception as exc:  # noqa: BLE001
                return None, f"using the recovered database raised {exc!r}"
            finally:
                try:
                    db.close()
                except DragonDBError:
                    pass
        finally:
            shutil.rmtree(d, ignore_errors=True)


def _crash_workload(seed: int) -> tuple[list[tuple], str, int]:
    """(operations, sync mode, checkpoint_bytes) of crash trial `seed`."""
    rng = random.Random(f"crash:{seed}")
    sync = "full" if rng.random() < 0.6 else "normal"
    return make_ops(rng, rng.randint(30, 90), sync=sync), sync, rng.choice((48 * 1024, 128 * 1024, 1 << 30))


def _crash_trial(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...], states: int = 90) -> None:
    rng = random.Random(seed)
    ops, sync, checkpoint_bytes = _crash_workload(seed)
    rec = _Recorder(ops, sync, checkpoint_bytes)
    tally.n["operations"] += len(ops)
    recover = _Recovery(tmp, sync)
    n_events = len(rec.disk.events)
    syncs = [e.index for e in rec.disk.events if e.kind == "sync"]
    points = {n_events, *rng.sample(range(n_events + 1), min(n_events + 1, states // 2))}
    points.update(s + d for s in rng.sample(syncs, min(len(syncs), states // 4)) for d in (-1, 0) if s + d >= 0)
    points = sorted(points)[:states] if len(points) > states else sorted(points)
    for k, crash_at in enumerate(points):
        mode = modes[k % len(modes)]
        allowed = rec.allowed(crash_at)
        images = rec.disk.images(crash_at, mode, seed=seed + k)
        where = f"crash at event {crash_at}/{n_events} mode {mode} (steps {allowed[:1]}..{allowed[-1:]})"
        _check_recovery(tally, token, rec, recover, images, allowed, where, mode)
        if k % 6 == 5:
            _compound(tally, token, rec, recover, images, allowed, rng, where)
    tally.n["recoveries_run"] += recover.runs


def _check_recovery(tally: Tally, token: str, rec: _Recorder, recover: _Recovery,
                    images: dict[str, bytes], allowed: list[int], where: str, mode: str) -> None:
    """Recover one crash state and compare; crash states are independent, so a
    wrong one is counted and the trial goes on (its first one is reported)."""
    tally.n["crashes_simulated"] += 1
    tally.modes[mode] += 1
    state, why = recover(images)
    if why is None:
        if allowed:
            if any(state == rec.models[s] for s in allowed):
                tally.n["recoveries_verified"] += 1
                return
            why = (f"recovered state matches no allowed step; vs step {allowed[-1]}: "
                   f"{_diff(state, rec.models[allowed[-1]])}")
        elif state == {}:
            tally.n["recoveries_verified"] += 1
            return
        else:
            why = f"the database's creation never returned, yet it holds trees {sorted(state)}"
    elif not allowed and why.startswith("refused"):
        tally.n["recoveries_verified"] += 1  # creation never returned: a half-made file may be refused
        return
    _once(tally, token, "divergences", f"{where}: {why}")


def _once(tally: Tally, token: str, what: str, error: str) -> None:
    """Count a failure; report only a trial's first one (the rest replay with it)."""
    if any(f["token"] == token for f in tally.failures):
        tally.n[what] += 1
    else:
        tally.fail(token, what, error)


def _compound(tally: Tally, token: str, rec: _Recorder, recover: _Recovery, images: dict[str, bytes],
              allowed: list[int], rng: random.Random, where: str) -> None:
    """A crash during recovery; an I/O error at a seeded call site of recovery."""
    disk = CrashDisk(images)
    dry = _SitePlan(0, site_depth=SITE_DEPTH)  # learns recovery's I/O call sites
    try:
        db = engine.open(_PATH, opener=dry.opener(disk.opener), pool_pages=POOL_PAGES, sync=rec.sync)
        db.close()
    except DragonDBError:
        return  # refused (creation never returned); the plain check judged it already
    tally.seen.update(dry.sites)
    if disk.events:
        at = rng.randint(0, len(disk.events))
        mode = rng.choice(("drop", "torn", "reorder"))
        again = disk.images(at, mode, seed=rng.getrandbits(32))
        _check_recovery(tally, token, rec, recover, again, allowed,
                        f"{where}, then a crash during recovery at event {at} mode {mode}", "recovery-" + mode)
    # kind first, then a site of it: recovery has many read and write sites and
    # one rare extend (file growth lost with the crash), which must get failed too
    kind = rng.choice(sorted({k for k, _ in dry.first}))
    (kind, site), nth = rng.choice(sorted(item for item in dry.first.items() if item[0][0] == kind))
    plan = FaultPlan(rng.getrandbits(32), site_depth=SITE_DEPTH)
    plan.fail(kind, nth, errno=rng.choice(ERRNOS))
    disk = CrashDisk(images)
    try:
        db = engine.open(_PATH, opener=plan.opener(disk.opener), pool_pages=POOL_PAGES, sync=rec.sync)
        db.close()
    except EXPECTED:
        pass  # the failed recovery must have left the disk recoverable
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        tally.add_plan(plan)
        _once(tally, token, "unexpected_errors", f"{where}, recovery failing {kind} at {site} raised {exc!r}")
        return
    tally.add_plan(plan)
    _check_recovery(tally, token, rec, recover, disk.images(None, "keep"), allowed,
                    f"{where}, after recovery failed {kind} at {site}", "recovery-ioerror")


# -- trial: thread interleavings --------------------------------------------------------------------

INTERLEAVINGS_PER_TRIAL = 5


def _interleave_trial(token: str, seed: int, tally: Tally) -> None:
    """Several scenarios, each under one seeded schedule."""
    for k in range(INTERLEAVINGS_PER_TRIAL):
        _interleave_one(token, seed * INTERLEAVINGS_PER_TRIAL + k, tally)


def _interleave_setup(seed: int) -> tuple[int, str, bool, dict[bytes, bytes], list[list[tuple]]]:
    """(threads, sync mode, with faults?, base keys, each thread's operations)."""
    rng = random.Random(f"interleave:{seed}")
    n_threads = rng.choice((2, 2, 3))
    sync = rng.choice(("full", "normal", "off"))
    faulty = rng.random() < 0.3
    base = {b"base:%04d" % i: rng.randbytes(rng.randint(20, 400)) for i in range(rng.randint(40, 160))}
    programs = [_thread_ops(random.Random(f"interleave:{seed}:{i}"), i, base) for i in range(n_threads)]
    return n_threads, sync, faulty, base, programs


def _interleave_one(token: str, seed: int, tally: Tally) -> None:  # noqa: C901 - setup, run and verdict in one; split them
    n_threads, sync, faulty, base, programs = _interleave_setup(seed)
    rng = random.Random(seed)
    plan = FaultPlan(seed, site_depth=SITE_DEPTH)
    if faulty:
        for kind in ("read", "write", "sync"):
            plan.fail(kind, probability=0.03, errno=rng.choice(ERRNOS))
    disk = CrashDisk()
    db = engine.open(_PATH, opener=disk.opener, pool_pages=INTERLEAVE_POOL, sync=sync)
    with db.batch() as b:
        for k, v in base.items():
            b.put("base", k, v)
    db.close()  # reopen cold, so the first reads miss
    plan.disarm()
    db = engine.open(_PATH, opener=plan.opener(disk.opener), pool_pages=INTERLEAVE_POOL, sync=sync)
    db.tree("fresh")  # empty: the threads' first puts race to create its root
    plan.arm()
    owned: list[dict[str, dict[bytes, bytes]]] = [{"base": {}, "fresh": {}} for _ in range(n_threads)]
    maybe: list[tuple | None] = [None] * n_threads
    problems: list[str] = []
    tally.n["operations"] += sum(len(p) for p in programs)

    def thread(i: int) -> Callable[[], None]:
        def body() -> None:
            mine = owned[i]
            for op in programs[i]:
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

    try:
        result = run_threads([thread(i) for i in range(n_threads)], seed, timeout=5.0, raise_errors=False)
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
        db = engine.open(_PATH, opener=disk.opener, pool_pages=INTERLEAVE_POOL, sync=sync)
    got = contents(db)
    for k, v in base.items():
        if got.get("base", {}).get(k) != v:
            tally.fail(token, "divergences", f"{where}: base key {k!r} lost or changed")
            raise TrialFailure(where)
    for i in range(n_threads):
        prefix = b"t%d:" % i
        mine = {name: {k: v for k, v in got.get(name, {}).items() if k.startswith(prefix)} for name in ("base", "fresh")}
        options = [owned[i]]
        if maybe[i] is not None:
            alt = {name: dict(t) for name, t in owned[i].items()}
            _apply_own(alt, maybe[i])
            options.append(alt)
        if mine not in options:
            tally.fail(token, "divergences", f"{where}: thread {i}'s keys: {_diff(mine, owned[i])}")
            raise TrialFailure(where)
    audit(db, tally, token, where)
    db.close()


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


# -- trials -------------------------------------------------------------------------------------------

_TMP: str | None = None


def _tmp() -> str:
    """This process's scratch directory (tmpfs when there is one: crash images are many)."""
    global _TMP
    if _TMP is None:
        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        _TMP = tempfile.mkdtemp(prefix="dragondb-campaign-", dir=base)
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def run_trial(token: str, modes: tuple[str, ...] = CRASH_MODES) -> dict:
    """Run one trial (`kind:seed`, or `sweep:seed:j`); its report as a dict."""
    tally = Tally()
    parts = token.split(":")
    kind, seed = parts[0], int(parts[1])
    tally.trials[kind] += 1
    gc.collect()  # start every trial with the same collector state: a replay then runs the same way
    try:
        if kind == "sweep":
            _sweep_trial(token, seed, int(parts[2]), tally)
        elif kind == "faults":
            _faults_trial(token, seed, tally, _tmp())
        elif kind == "crash":
            _crash_trial(token, seed, tally, _tmp(), modes)
        elif kind == "interleave":
            _interleave_trial(token, seed, tally)
        elif kind in TRIAL_MODULES:
            importlib.import_module(TRIAL_MODULES[kind]).run(token, seed, tally, _tmp(), modes)
        else:
            raise ValueError(f"run_trial: unknown trial kind {kind!r}")
    except TrialFailure as exc:
        if not tally.failures:
            tally.fail(token, "divergences", str(exc))
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - a crash of the harness itself is reported too
        tally.fail(token, "unexpected_errors", f"trial raised {type(exc).__name__}: {exc}")
    return tally.as_dict()


def tokens(seed: int, shard: tuple[int, int] = (1, 1), kinds: dict[str, int] | None = None) -> Iterator[str]:
    """The campaign's trials in order: trial i belongs to shard (i mod N) + 1."""
    weights = kinds or KIND_WEIGHTS
    names = sorted(weights)
    shares = [weights[name] for name in names]
    k, n = shard
    sweeps = 0
    i = 0
    while True:
        rng = random.Random(f"{seed}:{i}")
        kind = rng.choices(names, shares)[0]
        if kind == "sweep":
            token = f"sweep:{seed}:{sweeps}"
            sweeps += 1
        else:
            token = f"{kind}:{rng.getrandbits(48)}"
        if i % n == k - 1:
            yield token
        i += 1


def planned_ops(token: str) -> int:
    """How many workload operations `token` runs (without running it)."""
    parts = token.split(":")
    kind, seed = parts[0], int(parts[1])
    if kind == "sweep":
        j, cycle = int(parts[2]), 0
        items = sweep_items(seed, 0)
        while j >= len(items):
            j -= len(items)
            cycle += 1
            items = sweep_items(seed, cycle)
        return len(_sweep_workload(seed, items[j][0])[0])
    if kind == "faults":
        return len(_faults_workload(seed)[0])
    if kind == "crash":
        return len(_crash_workload(seed)[0])
    if kind == "interleave":
        return sum(len(p) for k in range(INTERLEAVINGS_PER_TRIAL)
                   for p in _interleave_setup(seed * INTERLEAVINGS_PER_TRIAL + k)[4])
    if kind in TRIAL_MODULES:
        return importlib.import_module(TRIAL_MODULES[kind]).planned_ops(seed)
    raise ValueError(f"planned_ops: unknown trial kind {kind!r}")


# -- running a campaign ---------------------------------------------------------------------------------

class _Progress:
    """A progress line on stderr: redrawn in place on a terminal, a line every
    10 s otherwise (CI logs)."""

    def __init__(self, total: float, unit: str, enabled: bool) -> None:
        self.total, self.unit, self.enabled = total, unit, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done: float, t: Tally, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.25 if self.tty else 10.0):
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"[{bar:<24}] {frac:4.0%} {now - self.start:5.0f}s  trials {sum(t.trials.values())}  "
                f"ops {t.n['operations']}  faults {sum(t.faults.values())}  sites {len(t.sites)}  "
                f"interleavings {t.n['interleavings']}  crashes {t.n['crashes_simulated']}  "
                f"failures {len(t.failures)}")
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def campaign(seed: int, *, seconds: float | None = None, operations: int | None = None, workers: int = 1,
             shard: tuple[int, int] = (1, 1), modes: tuple[str, ...] = CRASH_MODES,
             kinds: dict[str, int] | None = None, progress: bool = False) -> Tally:
    """Run trials until `seconds` pass or `operations` (planned) are covered."""
    assert (seconds is None) != (operations is None), "campaign: give seconds or operations"
    start = time.monotonic()
    deadline = start + seconds if seconds is not None else None
    source = tokens(seed, shard, kinds)
    if operations is not None:
        chosen: list[str] = []
        total = 0
        for token in tokens(seed, (1, 1), kinds):  # the global prefix, so shards split one campaign
            if total >= operations:
                break
            total += planned_ops(token)
            chosen.append(token)
        mine = tokens_for_shard(chosen, shard)
        source = iter(mine)
        bar = _Progress(len(mine), "trials", progress)
    else:
        bar = _Progress(seconds or 0.0, "s", progress)
    tally = Tally()

    def more() -> str | None:
        if deadline is not None and time.monotonic() >= deadline:
            return None
        return next(source, None)

    def measure() -> float:
        return sum(tally.trials.values()) if operations is not None else time.monotonic() - start

    if workers <= 1:
        while (token := more()) is not None:
            tally.merge(Tally.from_dict(run_trial(token, modes)))
            bar.update(measure(), tally)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            pending = set()
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * workers:
                    token = more()
                    if token is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(run_trial, token, modes))
                if not pending:
                    break
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    tally.merge(Tally.from_dict(fut.result()))
                bar.update(measure(), tally)
    bar.update(measure(), tally, force=True)
    bar.done()
    return tally


def tokens_for_shard(chosen: list[str], shard: tuple[int, int]) -> list[str]:
    k, n = shard
    return [tk for i, tk in enumerate(chosen) if i % n == k - 1]


def report(tally: Tally, *, seed: int, shard: str, seconds: float, workers: int, extra: dict | None = None) -> dict:
    d = tally.as_dict()
    d.update({"seconds": round(seconds, 2), "seed": seed, "shard": shard, "workers": workers,
              "version": 1})
    if extra:
        d.update(extra)
    return d


def ok(rep: dict) -> bool:
    """Exit status 0 only when nothing diverged, leaked or duplicated (or failed otherwise)."""
    return not rep["failures"] and not any(rep.get(k) for k in (
        "divergences", "leaked_pages", "double_owned_pages", "duplicate_frames", "pins_held",
        "unexpected_errors", "check_problems"))


def table(rep: dict) -> str:
    faults = rep["faults_injected"]
    by = ", ".join(f"{k} {v}" for k, v in faults.items()) or "none"
    modes = ", ".join(f"{k} {v}" for k, v in rep.get("crash_modes", {}).items())
    rows = [
        ("operations", f"{rep['operations']}"),
        ("trials", ", ".join(f"{k} {v}" for k, v in rep.get("trials", {}).items())),
        ("faults injected", f"{sum(faults.values())} ({by})"),
        ("distinct fault sites", f"{len(rep['fault_sites'])} (of {len(rep.get('io_sites_seen', []))} I/O call sites seen)"),
        ("interleavings explored", f"{rep['interleavings']} ({rep.get('interleavings_distinct', 0)} distinct)"),
        ("crashes simulated", f"{rep['crashes_simulated']}" + (f" ({modes})" if modes else "")),
        ("recoveries verified", f"{rep['recoveries_verified']} ({rep.get('recoveries_run', 0)} distinct images opened)"),
        ("divergences from model", f"{rep['divergences']}"),
        ("leaked pages", f"{rep['leaked_pages']} (double-owned {rep.get('double_owned_pages', 0)})"),
        ("duplicate frames", f"{rep['duplicate_frames']} (pins held {rep.get('pins_held', 0)})"),
        ("unexpected errors", f"{rep.get('unexpected_errors', 0)}"),
        ("seconds", f"{rep['seconds']}  seed {rep['seed']}  shard {rep['shard']}"),
    ]
    if "kills" in rep:
        rows.append(("SIGKILL trials", json.dumps(rep["kills"], sort_keys=True)[:200]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    never = rep.get("io_sites_never_failed", [])
    if never:
        lines.append(f"I/O call sites seen but never failed ({len(never)}): "
                     + "; ".join(f"{k} {s}" for k, s in never[:8]))
    for f in rep["failures"][:20]:
        lines.append(f"FAILED seed {f['seed']}: {f['error'][:300]}\n  replay: {f['replay']}")
    if len(rep["failures"]) > 20:
        lines.append(f"... and {len(rep['failures']) - 20} more failures (see the JSON report)")
    lines.append("OK: nothing diverged, leaked or duplicated" if ok(rep) else "FAILED")
    return "\n".join(lines)


def merge_reports(reports: list[dict]) -> dict:
    """Add up shard reports into one."""
    total = Tally()
    for r in reports:
        total.merge(Tally.from_dict(r))
    seeds = sorted({r.get("seed") for r in reports}, key=str)
    shards = [r.get("shard") for r in reports]
    merged = report(total, seed=seeds[0] if len(seeds) == 1 else seeds,
                    shard="+".join(str(s) for s in shards), seconds=max((r.get("seconds", 0) for r in reports), default=0),
                    workers=sum(r.get("workers", 0) for r in reports))
    merged["cpu_seconds"] = round(sum(r.get("seconds", 0) * max(r.get("workers", 1), 1) for r in reports), 2)
    merged["merged_from"] = len(reports)
    kills = [r["kills"] for r in reports if isinstance(r.get("kills"), dict)]
    if kills:
        merged["kills"] = {k: sum(x.get(k, 0) for x in kills) for k in kills[0] if all(isinstance(x.get(k, 0), int | float) for x in kills)}
    return merged


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard is K/N, e.g. 2/4, not {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragondb campaign",
        description="Seeded workloads x fault plans x thread interleavings x crash points, checked "
                    "against the reference model. `dragondb campaign merge A.json B.json ...` adds up "
                    "shard reports. Exit status 0 only when nothing diverged, leaked or duplicated.")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=float, help="run for this long (default 60)")
    bound.add_argument("--operations", type=int, help="run trials covering this many workload operations")
    p.add_argument("--seed", type=int, help="campaign seed (default: random, printed in the report)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="K/N",
                   help="run only shard K of N (trial i belongs to shard i mod N + 1)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--kills", type=int, default=0, metavar="N",
                   help="also run N SIGKILL trials (faults.kill.run_kills), split across shards")
    p.add_argument("--modes", default=",".join(CRASH_MODES),
                   help=f"crash modes to simulate (default {','.join(CRASH_MODES)})")
    p.add_argument("--kinds", default=None,
                   help="trial kinds and weights, e.g. crash=1,sweep=2 (default " +
                        ",".join(f"{k}={v}" for k, v in KIND_WEIGHTS.items()) + ")")
    p.add_argument("--replay", metavar="TOKEN", help="run the one trial a failure names, e.g. crash:123")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return p


def _merge_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dragondb campaign merge", description="Add up campaign shard reports.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--json", metavar="FILE", help="write the merged report here")
    args = p.parse_args(argv)
    loaded = []
    for path in args.reports:
        try:
            with open(path, encoding="utf-8") as f:
                loaded.append(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"dragondb campaign merge: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    merged = merge_reports(loaded)
    _write(args.json, merged)
    print(table(merged))
    return 0 if ok(merged) else 1


def _write(path: str | None, rep: dict) -> None:
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)


def _kills(n: int, seed: int, shard: tuple[int, int], tally: Tally) -> dict:
    """This shard's share of `n` SIGKILL trials, by `faults.kill.run_kills`;
    its failures join the report's."""
    from faults import kill  # optional: main() checked it exists before the campaign started

    k, total = shard
    mine = n // total + (1 if k - 1 < n % total else 0)
    result = dict(kill.run_kills(mine, seed * total + k))
    for f in result.pop("failures", []) or []:
        trial = f.get("trial", "?")
        tally.failures.append({
            "seed": f.get("seed", seed), "kind": "kill", "token": f"kill:{f.get('seed', seed)}:{trial}",
            "error": f"SIGKILL trial {trial}: {f.get('error') or f.get('why') or f}"[:2000],
            "replay": f.get("replay") or f"python -m faults.kill run --seed {f.get('seed', seed)} --trials {mine}",
        })
    if result.get("lost") and not any(f["kind"] == "kill" for f in tally.failures):
        tally.failures.append({"seed": seed, "kind": "kill", "token": f"kill:{seed}", "replay":
                               f"python -m faults.kill run --seed {seed * total + k} --trials {mine}",
                               "error": f"SIGKILL trials lost {result['lost']} acknowledged operations"})
    return {key: v for key, v in result.items() if isinstance(v, int | float)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return _merge_main(argv[1:])
    args = _parser().parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    bad = set(modes) - set(CRASH_MODES)
    if bad or not modes:
        print(f"dragondb campaign: unknown crash modes {sorted(bad)}; choose from {CRASH_MODES}", file=sys.stderr)
        return 2
    kinds = None
    if args.kinds:
        try:
            kinds = {k: int(w) for k, w in (part.split("=") for part in args.kinds.split(","))}
        except ValueError:
            print(f"dragondb campaign: --kinds is kind=weight,..., not {args.kinds!r}", file=sys.stderr)
            return 2
        if set(kinds) - set(KIND_WEIGHTS) or not any(kinds.values()):
            print(f"dragondb campaign: trial kinds are {sorted(KIND_WEIGHTS)}", file=sys.stderr)
            return 2
    if args.workers < 1:
        print("dragondb campaign: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.kills:
        try:
            from faults import kill
            kill.run_kills  # noqa: B018 - the agreed entry point must exist
        except (ImportError, AttributeError) as exc:
            print(f"dragondb campaign: --kills needs faults.kill.run_kills, which is not available ({exc})",
                  file=sys.stderr)
            return 2
    if args.replay:
        start = time.monotonic()
        t = Tally.from_dict(run_trial(args.replay, modes))
        rep = report(t, seed=int(args.replay.split(":")[1]), shard="replay", seconds=time.monotonic() - start,
                     workers=1, extra={"replay": args.replay})
        _write(args.json, rep)
        print(table(rep))
        return 0 if ok(rep) else 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    seconds = args.seconds if args.operations is None and args.seconds is not None else None
    if args.operations is None and seconds is None:
        seconds = 60.0
    if not args.quiet:
        k, n = args.shard
        bound = f"{seconds:g} s" if seconds is not None else f"{args.operations} operations"
        print(f"dragondb campaign: seed {seed}, shard {k}/{n}, {args.workers} workers, {bound}", file=sys.stderr)
    start = time.monotonic()
    t = campaign(seed, seconds=seconds, operations=args.operations, workers=args.workers, shard=args.shard,
                 modes=modes, kinds=kinds, progress=not args.quiet)
    extra = {}
    if args.kills:
        extra["kills"] = _kills(args.kills, seed, args.shard, t)
    rep = report(t, seed=seed, shard=f"{args.shard[0]}/{args.shard[1]}", seconds=time.monotonic() - start,
                 workers=args.workers, extra=extra)
    _write(args.json, rep)
    print(table(rep))
    return 0 if ok(rep) else 1

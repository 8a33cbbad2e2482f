"""A database under a fault plan, run beside the model and audited after every failure.

`Session` runs a workload (`faults.workload`) on a database opened through
a `FaultPlan` (on a `CrashDisk`, or real files in a directory), one
operation at a time, and checks the oracle of docs/campaign.md after each:
an operation that raised `StorageIOError` or `CorruptionError` had no
effect and left `db.check()` clean (`audit`); `NeedsRecoveryError` is
followed by a reopen showing the model before or after the operation; a
simulated kill recovers the model before or after the last operation. Any
other exception is a failure (`TrialFailure`, counted in the `Tally`).
"""

from __future__ import annotations

import errno as _errno
import os
import random
from collections.abc import Callable

import engine
from engine.errors import (
    CorruptionError,
    DragonDBError,
    NeedsRecoveryError,
    NotADatabaseError,
    StorageIOError,
)
from faults.crash import CrashDisk
from faults.io import FaultPlan, minimal
from faults.report import Tally, TrialFailure
from faults.workload import Model, apply_op, contents, describe, diff
from models import ModelDatabase

__all__ = ["ERRNOS", "EXPECTED", "PATH", "POOL_PAGES", "SITE_DEPTH", "Session", "audit"]

SITE_DEPTH = 2  # a call site is the two innermost engine functions on the stack
POOL_PAGES = 16  # the smallest pool: reads miss, dirty pages spill to the log
ERRNOS = (_errno.EIO, _errno.ENOSPC, _errno.EFBIG)
EXPECTED = (StorageIOError, CorruptionError)  # what an injected fault may surface as
PATH = "/campaign/c.db"  # a CrashDisk path: never touches the real file system


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


class Session:
    """Runs a workload on a database opened through `plan`, checking every failure."""

    def __init__(self, tally: Tally, token: str, plan: FaultPlan, rng: random.Random, *,
                 sync: str, armed: Callable[[], bool], real_dir: str | None = None,
                 checkpoint_bytes: int | None = None, minimal: bool = False) -> None:
        self.tally, self.token, self.plan, self.rng = tally, token, plan, rng
        self.minimal = minimal  # files cut down to the six calls a user's opener= may offer
        self.sync = sync
        self.armed = armed
        self.real_dir = real_dir
        self.disk = None if real_dir else CrashDisk()
        self.path = os.path.join(real_dir, "c.db") if real_dir else PATH
        self.checkpoint_bytes = checkpoint_bytes
        self._options = {"checkpoint_bytes": checkpoint_bytes} if checkpoint_bytes else {}
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
        opener = self.plan.opener(self.disk.opener if self.disk is not None else None)
        return minimal(opener) if self.minimal else opener

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
                    self.model = ModelDatabase.from_snapshot(alt)
                    break
            else:
                self._fail("divergences", f"{where}: {diff(got, want)}")
        audit(self.db, self.tally, self.token, where)

    # -- opening --

    def open(self, where: str, *alternatives: Model) -> None:
        """Open (recover), retrying while injected faults make it fail, then verify.
        The fifth try runs with faults off; a sixth follows when the fifth
        refused a file whose creation never returned (removed meanwhile)."""
        last: BaseException | None = None
        opened = removed = False
        for attempt in range(6):
            if attempt == 5 and not removed:
                break
            removed = False
            self._arm(attempt < 4 and self.armed())
            try:
                self.db = engine.open(self.path, opener=self._opener(), pool_pages=POOL_PAGES, sync=self.sync,
                                      **self._options)
                opened = True
                break
            except (*EXPECTED, NotADatabaseError) as exc:
                last = exc
                self.tally.n["ops_failed"] += 1
                if isinstance(exc, NotADatabaseError) and self.acked:
                    self._fail("divergences", f"{where}: {exc!r} after the database was created")
                if not self.acked and isinstance(exc, (NotADatabaseError, CorruptionError)):
                    self._remove()  # its creation never returned: a half-made file may be refused
                    removed = True
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                self._fail("unexpected_errors", f"{where}: open raised {exc!r}")
        if not opened:
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

    def step(self, op: tuple, index: int) -> None:
        """Run `op` (the workload's `index`-th) and check the oracle after it."""
        where = f"op {index} ({describe(op)})"
        before = self.model.snapshot()
        self.mark = len(self.disk.events) if self.disk is not None else 0
        injected = len(self.plan.injected)
        if op[0] == "crash":
            return self._crash(where)
        if op[0] in ("put", "delete", "get", "scan") and op[1] not in self.model.trees():
            # `db.tree(name)` creating the tree is a commit of its own: run it as one
            self.step(("tree", op[1]), index)
            before = self.model.snapshot()
            injected = len(self.plan.injected)
            if op[1] not in self.model.trees():
                self.before = before
                return  # its creation failed (and was checked): skip the operation
        self._arm(self.armed())
        try:
            result = self._run(op, where)
        except NeedsRecoveryError as exc:
            self._expected(exc, injected, where)
            self.close()
            alt = self.model.reopen()
            self._model_apply(alt, op)
            self.open(f"{where}, reopened after {exc!r}", alt.snapshot())
        except EXPECTED as exc:
            self._expected(exc, injected, where)
            self._after_expected(exc, where)
        except TrialFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - any other exception is the finding
            self._unexpected(exc, op, where)
        else:
            self._returned(op, result, injected, where)
        self.before = before

    def _run(self, op: tuple, where: str):
        """The engine's result of `op` (a reopen: closes, opens and verifies)."""
        if op[0] != "reopen":
            return apply_op(self.db, op)
        try:
            self.db.close()
        finally:
            self.db = None
        self.open(where)
        return None

    def _after_expected(self, exc: BaseException, where: str) -> None:
        """An injected fault surfaced: the operation had no effect."""
        if self.db is None:  # a reopen failed
            self.open(f"{where}, after {exc!r}")
            return
        try:
            self._verify(f"{where} raised {exc!r}")
        except NeedsRecoveryError:  # the failure poisoned the database: reopen, as for one raised
            self.close()
            self.open(f"{where}, reopened after {exc!r}")

    def _unexpected(self, exc: BaseException, op: tuple, where: str) -> None:
        """Outside the contract, unless the model raises it too (e.g. KeyError:
        dropping a tree whose creation failed)."""
        self._arm(False)
        try:
            self._model_apply(self.model.reopen(), op)
        except type(exc):
            return
        self._fail("unexpected_errors", f"{where} raised {exc!r}")

    def _returned(self, op: tuple, result, injected: int, where: str) -> None:
        """The operation returned: the model's result, and a clean database
        even if a fault fired inside it (e.g. a failed automatic checkpoint)."""
        self._arm(False)
        if op[0] != "reopen":
            want = self._model_apply(self.model, op)
            if result != want:
                self._fail("divergences", f"{where} returned {str(result)[:120]}, model {str(want)[:120]}")
        self.acked = True
        if len(self.plan.injected) > injected:
            self._verify(f"{where} succeeded despite a fault")

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
        """Reopen with faults off: everything acknowledged is still there,
        and once closed, no file is left open."""
        self._arm(False)
        self.plan.rules.clear()
        self.close()
        self.open("final reopen")
        self.close()
        if self.disk is not None and (left := self.disk.open_files()):
            self._fail("leaked_files", f"after the final close, files left open: {left}")

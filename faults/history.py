"""A run's history of states, against a `CrashDisk`'s events: which states a crash may leave.

A history is a list of states (model snapshots), each noted when the step
that made it returned (`mark`: the disk's event count then) with its durable
floor (the latest state no crash may go back before). A power loss right
after event `e` may leave any state from the floor of the last returned step
to the step in flight: a prefix of the operations, never less than what was
made durable.

The durability rule, in every sync mode: everything before the last returned
`commit()` survives. Beyond it, `sync="full"` makes every returned write
durable, `sync="normal"` every checkpoint (explicit, automatic, or the close
of a reopen), `sync="off"` nothing else.

Across a kill (`CrashDisk.kill`): the next process finds one of the states a
crash may leave; `cut(j, at)` keeps the history up to that state and notes
that the next process found it at event `at`. Its own steps then continue
the same history, so a power loss during or after its work is judged against
process 1's floor until process 2 makes something durable.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import replace

import engine
from faults.crash import CrashDisk
from faults.report import TrialFailure
from faults.workload import Mix, apply_op, describe, generate

__all__ = ["SMALL", "WRITES", "History", "kill_point", "made_durable", "seeded_workload", "small_ops"]

Model = dict[str, dict[bytes, bytes]]
WRITES = ("put", "delete", "batch", "tree", "drop", "commit", "checkpoint", "compact")


def made_durable(op: str, sync: str, checkpointed: bool) -> bool:
    """Whether a returned step of kind `op` made everything before it durable.
    `checkpointed`: the step ran a checkpoint (explicit, automatic, or a close)."""
    if op == "commit":
        return True
    if sync == "full":
        return op in WRITES or op == "reopen"
    if sync == "normal":
        return checkpointed
    return False


class History:
    """States of one run on `disk`; `note` after each step returns."""

    def __init__(self, disk: CrashDisk) -> None:
        self.disk = disk
        self.marks: list[int] = []
        self.models: list[Model] = []
        self.durable: list[int] = []
        self.ops: list[str] = []

    def note(self, model: Model, durable: bool, op: str = "") -> int:
        """State `model` after a returned step (`durable`: it made all so far
        durable). Returns the state's index."""
        self.marks.append(self.disk.mark(f"state {len(self.models)}"))
        self.models.append(model)
        floor = self.durable[-1] if self.durable else 0
        self.durable.append(len(self.models) - 1 if durable else floor)
        self.ops.append(op)
        return len(self.models) - 1

    def allowed(self, crash_at: int) -> list[int]:
        """The states a power loss right after event `crash_at` may leave
        (empty: before the first state, the database's creation, returned)."""
        i = bisect.bisect_right(self.marks, crash_at) - 1
        if i < 0:
            return []
        return list(range(self.durable[i], min(i + 1, len(self.models) - 1) + 1))

    def returned(self, crash_at: int) -> int:
        """The last state whose step returned by event `crash_at` (-1: none)."""
        return bisect.bisect_right(self.marks, crash_at) - 1

    def after_kill(self, at: int) -> list[int]:
        """The states the next process may find after a kill at event `at`:
        a kill loses no write, so the last returned one or the one in flight
        (state 0, the empty database, when its creation never returned)."""
        i = self.returned(at)
        return list(range(max(i, 0), min(i + 1, len(self.models) - 1) + 1))

    def find(self, got: Model, among: list[int]) -> int | None:
        """The last of the states `among` equal to `got`."""
        for s in reversed(among):
            if self.models[s] == got:
                return s
        return None

    def run(self, db, model, ops: list[tuple], *, path: str, sync: str, opener,
            checkpoint_bytes: int, pool_pages: int, index: int = 0):
        """Run `ops` on `db` beside `model` (a `ModelDatabase`), noting each
        returned step; a reopen closes and opens again through `opener`.
        Returns the database handle of the last step (never closed here).
        A result different from the model raises `TrialFailure`."""
        step = index
        for op in ops:
            if op[0] in ("put", "delete", "get", "scan") and op[1] not in model.trees():
                step += 1  # `db.tree(name)` creating the tree is a commit of its own: a step
                db = self._step(db, model, ("tree", op[1]), step, path, sync, opener, checkpoint_bytes, pool_pages)
            step += 1
            db = self._step(db, model, op, step, path, sync, opener, checkpoint_bytes, pool_pages)
        return db

    def _step(self, db, model, op: tuple, step: int, path: str, sync: str, opener,
              checkpoint_bytes: int, pool_pages: int):
        cps = db.checkpoints
        if op[0] == "reopen":
            db.close()  # close checkpoints
            db = engine.open(path, opener=opener, pool_pages=pool_pages, sync=sync, checkpoint_bytes=checkpoint_bytes)
            checkpointed = True
        else:
            got, want = apply_op(db, op), apply_op(model, op)
            if got != want:
                raise TrialFailure(f"step {step} ({describe(op)}) returned {got!r:.80}, model {want!r:.80}")
            checkpointed = op[0] in ("checkpoint", "compact") or db.checkpoints != cps
        self.note(model.snapshot(), made_durable(op[0], sync, checkpointed), op[0])
        return db

    def cut(self, j: int, at: int) -> None:
        """The next process found state `j` after a kill at event `at`: later
        states never happened; `j` counts as returned at `at`."""
        del self.marks[j + 1 :], self.models[j + 1 :], self.durable[j + 1 :], self.ops[j + 1 :]
        if self.marks[j] > at:  # found in flight: it never returned, so it made nothing durable
            self.marks[j] = at
            self.durable[j] = self.durable[j - 1] if j else 0


def kill_point(rng: random.Random, hist: History) -> int:
    """Mostly right after a write (unsynced bytes in the page cache), some
    inside the creation, the rest uniform."""
    disk = hist.disk
    r = rng.random()
    writes = [e.index for e in disk.events if e.kind in ("write", "truncate", "extend")]
    if r < 0.1 and hist.marks:
        return rng.randrange(0, hist.marks[0] + 1)
    if r < 0.8 and writes:
        return rng.choice(writes)
    return rng.randrange(0, len(disk.events) + 1)


# Short workloads dense in commits and checkpoints: trees "t" and "u", short
# keys (some padded), small values and some overflow ones, no tree churn.
SMALL = Mix(trees=("t", "u"), churn=None, first=0.8, keys=24, long_keys=0.5, key_bytes=(40, 300),
            weights=(("commit", 0.2), ("checkpoint", 0.11), ("compact", 0.04), ("reopen", 0.03),
                     ("batch", 0.10), ("delete", 0.12), ("read", 0.05), ("overflow", 0.035)),
            drain=None, gets=1.0, batch=(2, 5), values=(1, 1500), big_values=(4500, 9000),
            batch_values=((1, 300),))


def small_ops(rng: random.Random, n: int, *, reopen: bool = True) -> list[tuple]:
    """The trees of `SMALL`, then `n` of its operations: `commit()` (p 0.2),
    `checkpoint()` (p 0.11) or `compact()` (p 0.04), (`reopen`) reopens,
    batches, deletes, gets and puts."""
    return list(generate(rng, SMALL if reopen else replace(SMALL, skip=frozenset({"reopen"})), n))


SYNC_MODES = ("full", "normal", "off")
CHECKPOINT_BYTES = (16 * 1024, 64 * 1024, 1 << 30)  # frequent, some, none automatic


def seeded_workload(kind: str, seed: int, lo: int, hi: int) -> tuple[list[tuple], str, int]:
    """(`small_ops` of lo..hi operations, a sync mode, a checkpoint_bytes of
    `CHECKPOINT_BYTES`), all from `kind:seed`, so a replay of the token
    rebuilds the same workload."""
    rng = random.Random(f"{kind}:{seed}")
    sync = SYNC_MODES[rng.randrange(3)]
    ops = small_ops(rng, rng.randint(lo, hi))
    return ops, sync, rng.choice(CHECKPOINT_BYTES)

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

import engine
from faults.campaign import TrialFailure, _describe, apply_op
from faults.crash import CrashDisk

__all__ = ["WRITES", "History", "made_durable", "small_ops"]

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
                raise TrialFailure(f"step {step} ({_describe(op)}) returned {got!r:.80}, model {want!r:.80}")
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


def small_ops(rng: random.Random, n: int, *, reopen: bool = True) -> list[tuple]:
    """A short workload dense in commits and checkpoints: tree "t" (and "u"),
    puts (short keys, some overflow values), deletes, batches, `commit()`
    (p 0.2), `checkpoint()` (p 0.11) or `compact()` (p 0.04), reads, and
    (`reopen`) reopens."""
    keys = [b"k%03d" % i + b"." * rng.choice((0, 0, 40, 300)) for i in range(24)]
    ops: list[tuple] = [("tree", "t"), ("tree", "u")]
    for _ in range(n):
        r = rng.random()
        t = "t" if rng.random() < 0.8 else "u"
        if r < 0.2:
            ops.append(("commit",))
        elif r < 0.35:
            ops.append(("compact",) if rng.random() < 0.25 else ("checkpoint",))
        elif r < 0.38 and reopen:
            ops.append(("reopen",))
        elif r < 0.48:
            ops.append(("batch", [("put", rng.choice("tu"), rng.choice(keys), rng.randbytes(rng.randint(1, 300)))
                                  if rng.random() < 0.7 else ("delete", rng.choice("tu"), rng.choice(keys))
                                  for _ in range(rng.randint(2, 5))]))
        elif r < 0.6:
            ops.append(("delete", t, rng.choice(keys)))
        elif r < 0.65:
            ops.append(("get", t, rng.choice(keys)))
        else:
            size = rng.randint(4500, 9000) if rng.random() < 0.1 else rng.randint(1, 1500)
            ops.append(("put", t, rng.choice(keys), rng.randbytes(size)))
    return ops


SYNC_MODES = ("full", "normal", "off")
CHECKPOINT_BYTES = (16 * 1024, 64 * 1024, 1 << 30)  # frequent, some, none automatic


def seeded_workload(kind: str, seed: int, lo: int, hi: int) -> tuple[random.Random, list[tuple], str]:
    """(the trial's rng, `small_ops` of lo..hi operations, a sync mode), all
    from `kind:seed`, so a replay of the token rebuilds the same workload."""
    rng = random.Random(f"{kind}:{seed}")
    sync = SYNC_MODES[rng.randrange(3)]
    return rng, small_ops(rng, rng.randint(lo, hi)), sync

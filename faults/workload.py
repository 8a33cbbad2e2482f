"""Workloads: one seeded operation generator, and running its operations on a database or the model.

An operation is a tuple: ("put", tree, key, value), ("delete", tree, key),
("get", tree, key), ("scan", tree, start, end, reverse), ("batch", [puts and
deletes]), ("tree", name), ("drop", name), ("checkpoint",), ("compact",),
("commit",), and for the harness only ("reopen",) and ("crash",).
`apply_op` runs one on an engine `Database` or a `models.ModelDatabase`
alike; `contents` reads either back for comparison.

`generate(rng, mix, n)` is the one generator every workload comes from (the
campaign's trials, the kill trials, the crash tests): it runs each write it
makes on a `ModelDatabase`, so deletes and gets pick keys that are live.
What the operations are made of is the caller's `Mix`; the same rng state
and mix give the same operations. `make_ops` is the campaign's mix.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from models import ModelDatabase

__all__ = ["CAMPAIGN", "Mix", "Model", "apply_op", "contents", "describe", "diff", "generate", "make_ops"]

Model = dict[str, dict[bytes, bytes]]

KINDS = ("checkpoint", "compact", "reopen", "commit", "batch", "overflow", "read", "delete")


@dataclass(frozen=True)
class Mix:
    """What a workload is made of.

    Each operation draws r in [0, 1) and takes the first kind of `weights`
    (in table order) whose running total exceeds r; beyond the last, a small
    put. A kind in `skip` gives its share to the next kind of the table.
    Kinds: "checkpoint" (then, with p `kills`, a simulated kill), "compact",
    "reopen" (with p `kills` a kill instead), "commit", "batch" (puts with p
    `batch_puts`, else deletes, across trees), "overflow" (a put of a
    `big_values` value), "read" (a get with p `gets`, else a scan), "delete"
    (of a live key with p 0.9). With `drain` = (at, weight), deletes take
    `weight` from that fraction of the run on (grow first, then merge).
    """

    trees: tuple[str, ...] = ("a", "b")  # created first, in this order
    churn: str | None = "c"  # a tree created a third of the way in, dropped at two thirds
    first: float = 0.6  # p a single-tree operation goes to trees[0], else to any tree
    keys: int | None = None  # distinct keys (None: one per operation, at least 20)
    long_keys: float = 0.8  # p a key gets `key_bytes` random bytes after its number
    key_bytes: tuple[int, int] = (200, 900)  # long keys: internal nodes hold few separators
    weights: tuple[tuple[str, float], ...] = (
        ("checkpoint", 0.04), ("reopen", 0.03), ("commit", 0.03), ("batch", 0.08),
        ("overflow", 0.07), ("read", 0.08), ("delete", 0.05),
    )
    drain: tuple[float, float] | None = (0.6, 0.52)
    skip: frozenset[str] = frozenset()
    kills: float = 0.0
    gets: float = 0.6
    batch: tuple[int, int] = (2, 6)  # operations per batch
    batch_puts: float = 0.7
    values: tuple[int, int] = (50, 900)  # bytes of a small put's value
    big_values: tuple[int, int] = (4500, 13000)  # overflow pages
    batch_values: tuple[tuple[int, int], ...] = ((10, 600), (4500, 9000))  # one range drawn per put

    def __post_init__(self) -> None:
        unknown = {kind for kind, _ in self.weights} - set(KINDS)
        if unknown:
            raise ValueError(f"Mix: unknown operation kinds {sorted(unknown)}; kinds are {KINDS}")


CAMPAIGN = Mix()  # the campaign's trials: splits, merges, overflow, batches, reads, reopens


def _bounds(mix: Mix, draining: bool) -> list[tuple[str, float]]:
    """The running totals of `mix.weights` (rounded: 0.04 + 0.03 is 0.07 exactly)."""
    out, total = [], 0.0
    for kind, weight in mix.weights:
        if kind == "delete" and draining and mix.drain is not None:
            weight = mix.drain[1]
        total = round(total + weight, 9)
        out.append((kind, total))
    return out


def generate(rng: random.Random, mix: Mix = CAMPAIGN, n: int | None = None) -> Iterator[tuple]:
    """The trees of `mix` created, then `n` seeded operations (None: without
    end, and with neither churn nor drain, which need the run's length)."""
    return _Generator(rng, mix, n).run()


class _Generator:
    """One run of `generate`: its keys, the model its writes run on, and a
    maker per operation kind (each returns the operations it made)."""

    def __init__(self, rng: random.Random, mix: Mix, n: int | None) -> None:
        self.rng, self.mix, self.n = rng, mix, n
        self.keys = [b"k%04d:" % (2 * i) + (rng.randbytes(rng.randint(*mix.key_bytes)) if rng.random() < mix.long_keys
                                            else b"")
                     for i in range(mix.keys or max(n or 0, 20))]
        self.model = ModelDatabase()  # each write runs here as it is made: deletes and gets find live keys
        self.names = list(mix.trees)

    def run(self) -> Iterator[tuple]:
        mix, n, rng = self.mix, self.n, self.rng
        grow, drain = _bounds(mix, False), _bounds(mix, True)
        churn = mix.churn if n is not None else None
        for name in self.names:
            yield self._write(("tree", name))
        i = 0
        while n is None or i < n:
            bounds = drain if n is not None and mix.drain is not None and i / n >= mix.drain[0] else grow
            r = rng.random()
            t = self.names[0] if rng.random() < mix.first else rng.choice(self.names)
            if churn is not None and i == n // 3:
                self.names.append(churn)
                yield self._write(("tree", churn))
            elif churn is not None and i == (2 * n) // 3:
                self.names.remove(churn)
                yield self._write(("drop", churn))
            else:
                kind = next((k for k, bound in bounds if r < bound and k not in mix.skip), "put")
                yield from getattr(self, "_" + kind)(t)
            i += 1

    # -- helpers --

    def _write(self, op: tuple) -> tuple:
        apply_op(self.model, op)
        return op

    def _put_of(self, t: str, size: int) -> tuple:
        key = self.rng.choice(self.keys)
        return self._write(("put", t, key, self.rng.randbytes(size)))

    def _live(self, t: str) -> list[bytes]:
        return list(self.model.tree(t)) if t in self.model.trees() else []

    def _victim(self, t: str) -> tuple:
        live = self._live(t)
        key = self.rng.choice(live) if live and self.rng.random() < 0.9 else self.rng.choice(self.keys)
        return self._write(("delete", t, key))

    # -- one maker per kind --

    def _checkpoint(self, t: str) -> list[tuple]:
        kills = self.mix.kills and self.rng.random() < self.mix.kills
        return [("checkpoint",), ("crash",)] if kills else [("checkpoint",)]  # killed during or right after it

    def _reopen(self, t: str) -> list[tuple]:
        return [("crash",) if self.mix.kills and self.rng.random() < self.mix.kills else ("reopen",)]

    def _commit(self, t: str) -> list[tuple]:
        return [("commit",)]

    def _compact(self, t: str) -> list[tuple]:
        return [("compact",)]

    def _batch(self, t: str) -> list[tuple]:
        rng, mix = self.rng, self.mix
        batch = []
        for _ in range(rng.randint(*mix.batch)):
            bt = rng.choice(self.names)
            if rng.random() < mix.batch_puts:
                batch.append(self._put_of(bt, rng.choice([rng.randint(lo, hi) for lo, hi in mix.batch_values])))
            else:
                batch.append(self._victim(bt))
        return [("batch", batch)]

    def _overflow(self, t: str) -> list[tuple]:
        return [self._put_of(t, self.rng.randint(*self.mix.big_values))]

    def _read(self, t: str) -> list[tuple]:
        rng = self.rng
        if rng.random() < self.mix.gets:
            live = self._live(t)
            return [("get", t, rng.choice(live) if live else rng.choice(self.keys))]
        lo, hi = sorted((rng.choice(self.keys), rng.choice(self.keys)))
        return [("scan", t, lo, hi, rng.random() < 0.3)]

    def _delete(self, t: str) -> list[tuple]:
        return [self._victim(t)]

    def _put(self, t: str) -> list[tuple]:
        return [self._put_of(t, self.rng.randint(*self.mix.values))]


def make_ops(rng: random.Random, n: int, *, sync: str = "full", crash: bool = False,
             key_bytes: tuple[int, int] = (200, 900)) -> list[tuple]:
    """The campaign's workload: two trees, then `n` operations of `CAMPAIGN`:
    puts early (leaf and internal splits: most keys are long, `key_bytes`),
    deletes late (merges), overflow values, batches across trees, a third
    tree created and dropped, reads, scans, checkpoints, reopens, commits
    (unless `sync` is "full", where every write is durable anyway) and
    (`crash`) simulated kills."""
    mix = replace(CAMPAIGN, key_bytes=key_bytes, kills=0.5 if crash else 0.0,
                  skip=frozenset({"commit"}) if sync == "full" else frozenset())
    return list(generate(rng, mix, n))


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
    """Every tree of an engine `Database` or a `ModelDatabase`, as plain dicts."""
    return {name: dict(db.tree(name).items()) for name in db.trees()}


def describe(op: tuple) -> str:
    """`op` in a line: long keys and values cut to their first bytes and length."""
    if op[0] == "batch":
        return f"batch of {len(op[1])}"
    parts = [op[0], *(repr(a[:12]) + (f"..({len(a)}B)" if len(a) > 12 else "") if isinstance(a, bytes) else repr(a) for a in op[1:])]
    return " ".join(parts)


def diff(got: Model, want: Model) -> str:
    """How `got` differs from `want`, briefly (the first tree that differs)."""
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

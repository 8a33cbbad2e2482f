"""Workloads: seeded operation lists, and running them on a database or the model.

An operation is a tuple: ("put", tree, key, value), ("delete", tree, key),
("get", tree, key), ("scan", tree, start, end, reverse), ("batch", [puts and
deletes]), ("tree", name), ("drop", name), ("checkpoint",), ("compact",),
("commit",), and for the harness only ("reopen",) and ("crash",).
`apply_op` runs one on an engine `Database` or a `models.ModelDatabase`
alike; `contents` reads either back for comparison.
"""

from __future__ import annotations

import random

__all__ = ["Model", "apply_op", "contents", "describe", "diff", "make_ops"]

Model = dict[str, dict[bytes, bytes]]


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

"""`Tree.load` against sqlite3's one-transaction insert, side by side.

    python -m bench.bulk_load [N] [TRIALS]

N items (default 100k) of 16-byte random keys and 100-byte values. Each
trial runs, in turn, on fresh files in one temporary directory:

- sqlite3, the benchmark's way (WAL, synchronous=FULL, WITHOUT ROWID, one
  BEGIN..COMMIT of single-row INSERT OR REPLACE in random key order);
- sqlite3 at its best: executemany of the sorted items in one transaction;
- `Tree.load` of the sorted items (sync="full": durable when it returns);
- `Tree.put` of the items in random order in one batch, for the file size.

Reported: items/s (best of the trials, as the machine is shared) and file
bytes after close. The load's time includes checking every item, building
every page and the fsynced commit; the checkpoint at close is not counted,
as sqlite's checkpoint is not.
"""

from __future__ import annotations

import os
import random
import sqlite3
import sys
import tempfile
import time

import engine


def _sqlite(path: str, items, many: bool) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
    cur = conn.cursor()
    t0 = time.perf_counter()
    cur.execute("BEGIN")
    if many:
        cur.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", items)
    else:
        ex = cur.execute
        for kv in items:
            ex("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", kv)
    cur.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return dt


def _load(path: str, items) -> float:
    with engine.open(path) as db:
        t = db.tree("t")
        t0 = time.perf_counter()
        t.load(items)
        return time.perf_counter() - t0


def _puts(path: str, items) -> float:
    with engine.open(path, sync="off") as db:
        t0 = time.perf_counter()
        with db.batch() as b:
            for k, v in items:
                b.put("t", k, v)
        return time.perf_counter() - t0


def run(n: int = 100_000, trials: int = 5) -> dict[str, tuple[float, int]]:
    rng = random.Random(20261206)
    shuffled = [(rng.randbytes(16), rng.randbytes(100)) for _ in range(n)]
    ordered = sorted(shuffled)
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as d:
        for trial in range(trials):
            for label, fn, items in (("sqlite3 single-row, random order", lambda p, i: _sqlite(p, i, False), shuffled),
                                     ("sqlite3 executemany, sorted", lambda p, i: _sqlite(p, i, True), ordered),
                                     ("Tree.load, sorted", _load, ordered),
                                     ("Tree.put in one batch, random order", _puts, shuffled)):
                path = os.path.join(d, f"{trial}-{len(best)}-{label[:6]}")
                dt = fn(path, items)
                size = sum(os.path.getsize(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p))
                if label not in best or dt < best[label][0]:
                    best[label] = (dt, size)
                for p in (path, path + "-wal", path + "-shm"):
                    if os.path.exists(p):
                        os.remove(p)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    best = run(n, trials)
    for label, (dt, size) in best.items():
        print(f"{label:40s} {n / dt:>12,.0f} items/s  {size:>12,} bytes")
    load = n / best["Tree.load, sorted"][0]
    print(f"load / sqlite3 single-row: {load / (n / best['sqlite3 single-row, random order'][0]):.2f}x; "
          f"load / sqlite3 executemany: {load / (n / best['sqlite3 executemany, sorted'][0]):.2f}x")


if __name__ == "__main__":
    main()

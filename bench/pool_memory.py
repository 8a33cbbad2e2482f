"""What the default pool costs and gives: `engine.open(path)` with no options
at N keys (16 B keys, 100 B values, random order), in this process.

    python -m bench.pool_memory [--n 1000000] [--dir DIR] [--pool-size 256MiB]

Inserts in batches of 10,000, closes, reopens (the open reads a database
that fits the pool's rule whole), gets every key in shuffled order, then
scans. Prints, as JSON: ops/s per phase, RSS after each phase, the pool's
bytes, cap and hit rate from `stats()`, the file's size, and the RSS above
the harness's own (its keys) against the pool's bytes: the share decoded
nodes add on top of the frames.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import engine
from bench.workload import KEY_SIZE, VALUE_SIZE, peak_rss_kib, rss_kib


def run(n: int, directory: str, pool_size: str | None) -> dict:
    rng = random.Random(1)
    blob = rng.randbytes(KEY_SIZE * n)
    values = [rng.randbytes(VALUE_SIZE) for _ in range(1024)]
    order = list(range(n))
    rng.shuffle(order)
    path = os.path.join(directory, "pool.ddb")
    opts = {} if pool_size is None else {"pool_size": pool_size}
    out: dict = {"n": n, "options": opts or "defaults", "rss_harness_mib": rss_kib() / 1024}

    def key(i: int) -> bytes:
        return blob[i * KEY_SIZE:(i + 1) * KEY_SIZE]

    db = engine.open(path, sync="normal", **opts)
    t0 = time.perf_counter()
    for start in range(0, n, 10_000):
        with db.batch() as b:
            for i in range(start, min(start + 10_000, n)):
                b.put("default", key(i), values[i & 1023])
    db.commit()
    out["insert_per_s"] = n / (time.perf_counter() - t0)
    out["rss_after_insert_mib"] = rss_kib() / 1024
    db.close()
    base = rss_kib() / 1024
    out["rss_closed_mib"] = base
    t0 = time.perf_counter()
    db = engine.open(path, **opts)
    out["open_s"] = time.perf_counter() - t0
    out["rss_after_open_mib"] = rss_kib() / 1024
    get = db.tree("default").get
    t0 = time.perf_counter()
    missing = sum(get(key(i)) is None for i in order)
    out["get_per_s"] = n / (time.perf_counter() - t0)
    out["get_missing"] = missing
    out["rss_after_get_mib"] = rss_kib() / 1024
    t0 = time.perf_counter()
    items = sum(1 for _ in db.tree("default").scan())
    out["scan_per_s"] = items / (time.perf_counter() - t0)
    st = db.stats()
    out["pool_mib"] = st["pool_bytes"] / 2**20
    out["pool_cap_mib"] = st["pool_cap_bytes"] / 2**20
    out["pool_hit_rate"] = round(st["pool_hit_rate"], 4)
    out["evictions"] = st["evictions"]
    out["file_mib"] = st["file_bytes"] / 2**20
    out["rss_over_pool"] = round((rss_kib() / 1024 - base) / max(out["pool_mib"], 1e-9), 2)
    db.close()
    out["peak_rss_mib"] = peak_rss_kib() / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pool_memory", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dir", default=None, help="where the database goes (default: the system temp dir)")
    p.add_argument("--pool-size", default=None, help="pass pool_size= instead of the default")
    args = p.parse_args(argv)
    where = tempfile.mkdtemp(prefix="dragondb-pool-", dir=args.dir)
    try:
        result = run(args.n, where, args.pool_size)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    json.dump({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Operations figures: space given back by compaction, compaction and backup
time, a writer's stall during a backup, dump and load rates.

    python -m bench.ops [--n 1000000] [--dir DIR] [--only space,compact,backup,dump]

- space: file bytes after writing N_SPACE keys (100-byte values) or
  N_LARGE keys (8 KiB values, in overflow pages), after deleting 90% of
  them (every key whose index is not a multiple of 10, in batches), and
  after `db.compact()`.
- compact: a database of N keys (16-byte random keys, 100-byte values) built
  with `Tree.load`, then `db.compact()` timed (the file is already packed
  by the load, so this is the cost of reading and rewriting every page).
- backup: the same database; one thread puts (sync="full", each put
  acknowledged = committed) while a backup runs, first `db.backup()` on the
  writer's own handle (it holds the write latch for the copy), then
  `dragondb backup` in another process (a read-only handle beside the
  writer). Reported: backup seconds, and the longest gap between two
  acknowledged puts during the backup, against the longest gap before it.
- dump: `dragondb dump` of the N-key database to a file and `dragondb load`
  of that file into a new database, each as a subprocess, items/s.

The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

import engine

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dragondb(*args: str, stdout=None) -> float:
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine", *args], check=True, stdout=stdout, env=env)
    return time.perf_counter() - t0


def _items(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    keys = sorted({rng.randbytes(16) for _ in range(n + n // 100)})[:n]
    return [(k, rng.randbytes(100)) for k in keys]


def _size(path: str) -> int:
    return os.path.getsize(path) + (os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0)


def space(workdir: str, n: int, value_size: int) -> dict:
    path = os.path.join(workdir, f"space-{value_size}.db")
    value = bytes(value_size)
    keys = [b"key%013d" % i for i in range(n)]
    with engine.open(path, sync="normal") as db:
        t = db.tree("t")
        for i in range(0, n, 1000):
            with db.batch() as b:
                for k in keys[i:i + 1000]:
                    b.put("t", k, value)
        db.checkpoint()
        before = os.path.getsize(path)
        doomed = [k for i, k in enumerate(keys) if i % 10]
        for i in range(0, len(doomed), 1000):
            with db.batch() as b:
                for k in doomed[i:i + 1000]:
                    b.delete("t", k)
        db.checkpoint()
        after_delete = os.path.getsize(path)
        t0 = time.perf_counter()
        db.compact()
        dt = time.perf_counter() - t0
        after_compact = os.path.getsize(path)
        assert len(t) == n - len(doomed)
        assert db.check().ok
    return {"keys": n, "value_bytes": value_size, "file_bytes_before": before,
            "file_bytes_after_delete_90pct": after_delete, "file_bytes_after_compact": after_compact,
            "compact_s": round(dt, 3)}


def build(path: str, n: int) -> float:
    items = _items(n)
    t0 = time.perf_counter()
    with engine.open(path) as db:
        db.tree("t").load(items)
    return time.perf_counter() - t0


def compact(path: str) -> dict:
    with engine.open(path) as db:
        t0 = time.perf_counter()
        res = db.compact()
        dt = time.perf_counter() - t0
    return {"compact_s": round(dt, 2), **res, "file_bytes": os.path.getsize(path)}


class _Writer(threading.Thread):
    """Puts fresh keys back to back, recording when each was acknowledged."""

    def __init__(self, db) -> None:
        super().__init__(daemon=True)
        self.tree = db.tree("w")
        self.acks: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        put, acks, now = self.tree.put, self.acks, time.perf_counter
        while not self.stop.is_set():
            put(b"w%015d" % i, b"x" * 100)
            acks.append(now())
            i += 1

    def max_gap(self, lo: float, hi: float) -> float:
        ts = [lo, *(t for t in self.acks if lo <= t <= hi), hi]
        return max(b - a for a, b in zip(ts, ts[1:], strict=False))


def backup(path: str, workdir: str) -> dict:
    out = {}
    with engine.open(path) as db:
        w = _Writer(db)
        w.start()
        time.sleep(2.0)
        quiet = (time.perf_counter() - 2.0, time.perf_counter())
        for how in ("same_handle", "cli_read_only"):
            dest = os.path.join(workdir, f"backup-{how}.db")
            t0 = time.perf_counter()
            if how == "same_handle":
                db.backup(dest)
            else:
                _dragondb("backup", path, dest)
            t1 = time.perf_counter()
            time.sleep(0.5)
            out[how] = {"backup_s": round(t1 - t0, 2),
                        "writer_max_gap_ms": round(w.max_gap(t0, t1) * 1000, 1),
                        "puts_during": sum(1 for t in w.acks if t0 <= t <= t1),
                        "backup_bytes": os.path.getsize(dest)}
            os.remove(dest)
        w.stop.set()
        w.join()
        out["writer_max_gap_before_ms"] = round(w.max_gap(*quiet) * 1000, 1)
        out["writer_puts_per_s_before"] = round(sum(1 for t in w.acks if quiet[0] <= t <= quiet[1]) / 2.0)
    return out


def dump_load(path: str, workdir: str, n: int) -> dict:
    dump_file = os.path.join(workdir, "dump.jsonl")
    with open(dump_file, "wb") as f:
        dump_s = _dragondb("dump", path, "--tree", "t", stdout=f)
    copy = os.path.join(workdir, "loaded.db")
    load_s = _dragondb("load", copy, dump_file)
    with engine.open(copy, read_only=True, create=False) as db:
        assert len(db.tree("t", create=False)) == n
    return {"dump_s": round(dump_s, 2), "dump_items_per_s": round(n / dump_s),
            "dump_file_bytes": os.path.getsize(dump_file),
            "load_s": round(load_s, 2), "load_items_per_s": round(n / load_s)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ops")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--n-space", type=int, default=100_000)
    ap.add_argument("--n-large", type=int, default=5_000)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--only", default="space,compact,backup,dump")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    report: dict = {"load_avg_start": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        if "space" in parts:
            report["space_small"] = space(workdir, args.n_space, 100)
            report["space_large"] = space(workdir, args.n_large, 8192)
            print(json.dumps(report), file=sys.stderr, flush=True)  # progress
        path = os.path.join(workdir, "big.db")
        if parts & {"compact", "backup", "dump"}:
            report["build_with_load_s"] = round(build(path, args.n), 2)
            report["big_file_bytes"] = os.path.getsize(path)
        if "compact" in parts:
            report["compact"] = compact(path)
            print(json.dumps(report), file=sys.stderr, flush=True)
        if "backup" in parts:
            report["backup"] = backup(path, workdir)
            print(json.dumps(report), file=sys.stderr, flush=True)
        if "dump" in parts:
            report["dump_load"] = dump_load(path, workdir, args.n)
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()

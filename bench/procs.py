"""Many processes on one database: the figures of docs/processes.md.

    PYTHONPATH=. python -m bench.procs [--seconds S] [--dir D]

1. gets/s of one reader process while one writer commits puts as fast as it
   can, and the writer's puts/s with and without that reader;
2. the aggregate gets/s of 1, 2 and 4 reader processes (no writer);
3. the log's size while a reader holds one snapshot for 10 s under a steady
   writer, and how fast it shrinks after;
4. how long a second writer waits with the default timeout.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import tempfile
import time

import engine

N = 10_000  # the data fits the default pool: the log holds commits, not spilled pages
VALUE = b"v" * 100


def _key(i: int) -> bytes:
    return b"key%012d" % i


def _fill(path: str) -> None:
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for i in range(N):
            t.put(_key(i), VALUE)


def _writer(path: str, seconds: float, out, start, sync: str = "off", rate: float = 0, ckpt: int = 0) -> None:
    db = engine.open(path, sync=sync, **({"checkpoint_bytes": ckpt} if ckpt else {}))
    t = db.tree("t")
    rng = random.Random(1)
    start.wait()
    n = 0
    t0 = time.perf_counter()
    while (now := time.perf_counter()) - t0 < seconds:
        t.put(_key(rng.randrange(N)), VALUE)
        n += 1
        if rate and n > rate * (now - t0):
            time.sleep(0.001)
    out.put(("writer", n / (time.perf_counter() - t0), db.checkpoints, db.checkpoints_deferred))
    db.close()


def _reader(path: str, seconds: float, out, start) -> None:
    db = engine.open(path, read_only=True)
    t = db.tree("t")
    rng = random.Random(os.getpid())
    start.wait()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            t.get(_key(rng.randrange(N)))
        n += 100
    out.put(("reader", n / (time.perf_counter() - t0), db.rebuilds))
    db.close()


def _run(path: str, writers: int, readers: int, seconds: float) -> list:
    ctx = mp.get_context("fork")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, seconds, out, start)) for _ in range(writers)]
    procs += [ctx.Process(target=_reader, args=(path, seconds, out, start)) for _ in range(readers)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every process has opened
    start.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return results


def _hold(path: str, hold: float, ready, out) -> None:
    db = engine.open(path, read_only=True)
    it = db.tree("t").scan()
    next(it)
    ready.set()
    time.sleep(hold)
    for _ in it:
        pass
    out.put("released")
    db.close()


def log_growth(path: str, hold: float = 10.0, rate: float = 0, ckpt: int = 1 << 20) -> list[tuple[float, int]]:
    """(seconds, log bytes) samples: a writer at `rate` puts/s (0: as fast as
    it can) checkpointing past `ckpt` log bytes; a reader holds one snapshot
    from 1 s to 1 + hold s."""
    ctx = mp.get_context("fork")
    out, start, ready = ctx.Queue(), ctx.Event(), ctx.Event()
    w = ctx.Process(target=_writer, args=(path, hold + 6, out, start, "off", rate, ckpt))
    w.start()
    time.sleep(1.0)
    start.set()
    samples = []
    t0 = time.perf_counter()
    r = None
    while (el := time.perf_counter() - t0) < hold + 5.5:
        if r is None and el >= 1.0:
            r = ctx.Process(target=_hold, args=(path, hold, ready, out))
            r.start()
        samples.append((round(el, 2), os.path.getsize(path + "-wal")))
        time.sleep(0.25)
    w.join()
    r.join()
    return samples


def _second_writer(path: str, held, done, out) -> None:
    with engine.open(path, sync="off"):
        held.set()
        done.wait()


def second_writer_wait(path: str) -> tuple[float, str]:
    ctx = mp.get_context("fork")
    held, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_second_writer, args=(path, held, done, out))
    p.start()
    held.wait()
    t0 = time.perf_counter()
    try:
        engine.open(path).close()
        msg = "opened?"
    except engine.DatabaseLockedError as exc:
        msg = str(exc)
    waited = time.perf_counter() - t0
    done.set()
    p.join()
    return waited, msg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--hold", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = os.path.join(d, "procs.db")
        _fill(path)
        s = args.seconds
        alone = _run(path, 1, 0, s)
        print(f"writer alone: {alone[0][1]:,.0f} puts/s (checkpoints {alone[0][2]})")
        both = _run(path, 1, 1, s)
        wr = next(r for r in both if r[0] == "writer")
        rd = next(r for r in both if r[0] == "reader")
        print(f"writer beside 1 reader: {wr[1]:,.0f} puts/s (checkpoints {wr[2]}, deferred {wr[3]}); "
              f"reader: {rd[1]:,.0f} gets/s (rebuilds {rd[2]})")
        for k in (1, 2, 4):
            res = _run(path, 0, k, s)
            print(f"{k} reader(s), no writer: {sum(r[1] for r in res):,.0f} gets/s in all")
        engine.open(path, sync="off").close()  # the last run's close may have been deferred: start from a reset log
        samples = log_growth(path, args.hold)
        print("log bytes over time, writer as fast as it can, checkpoints past 1 MiB; "
              "a reader holds a snapshot from 1 s to %.0f s:" % (1 + args.hold))
        print("  " + "  ".join(f"{t:g}s:{b // 1024}K" for t, b in samples[::4]))
        waited, msg = second_writer_wait(path)
        print(f"second writer waited {waited:.2f} s: {msg}")


if __name__ == "__main__":
    main()

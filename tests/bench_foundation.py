"""Foundation micro-benchmarks (a script, not a test): the buffer pool and
the pager on their own, below the B+ tree.

    .venv/bin/python tests/bench_foundation.py [--seconds 1.0] [--pages 8192] [--dir DIR]

Prints:
- read-guard round trips per second on a pool hit (`with pool.read(pid)`
  on a resident page), and raw fetch/unpin pairs for comparison;
- page reads per second on a miss, through a 16-frame pool over the
  engine's `Pager` and a `DirectFile`, with O_DIRECT and with buffered I/O:
  steady state over random ids (buffered misses are then mostly served by
  the kernel's page cache, the double buffering O_DIRECT avoids), and cold
  (every page once after `posix_fadvise(DONTNEED)`). Every miss evicts a
  clean victim, reads 4 KiB and verifies the page checksum.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bufferpool import BufferPool  # noqa: E402
from engine.codec import PAGE_SIZE, seal  # noqa: E402
from engine.disk import DirectFile  # noqa: E402
from engine.errors import StorageIOError  # noqa: E402
from engine.pager import Pager  # noqa: E402
from models import ModelPageStore  # noqa: E402


class PagerStore:
    def __init__(self, pager: Pager) -> None:
        self.pager = pager

    def read_page(self, page_id, buf):
        self.pager.read(page_id, buf)

    def write_page(self, page_id, buf):
        self.pager.write(page_id, buf)


def timed(fn, seconds: float) -> float:
    """Calls of `fn(batch)` per second, where each call does `batch` operations."""
    batch = 1000
    fn(batch)  # warm up
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        fn(batch)
        done += batch
    return done / (time.perf_counter() - start)


def bench_hits(seconds: float) -> dict[str, float]:
    pool = BufferPool(ModelPageStore(grow=True), 64)
    with pool.read(7):
        pass

    def guards(n: int) -> None:
        read = pool.read
        for _ in range(n):
            with read(7):
                pass

    def write_guards(n: int) -> None:
        write = pool.write
        for _ in range(n):
            with write(7):
                pass

    def fetch_unpin(n: int) -> None:
        fetch, unpin = pool.fetch, pool.unpin
        for _ in range(n):
            unpin(fetch(7))

    out = {
        "read guard on a hit": timed(guards, seconds),
        "write guard on a hit": timed(write_guards, seconds),
        "fetch+unpin on a hit": timed(fetch_unpin, seconds),
    }
    assert pool.check_invariants(expect_unpinned=True) == []
    pool.close()
    return out


def make_file(path: str, pages: int) -> None:
    f = DirectFile.open(path, True, False)
    chunk = 256
    block = bytearray(chunk * PAGE_SIZE)
    for start in range(0, pages, chunk):
        n = min(chunk, pages - start)
        for i in range(n):
            page = memoryview(block)[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
            page[:8] = (start + i).to_bytes(8, "little")
            seal(page)
        f.write(start * PAGE_SIZE, bytes(block[: n * PAGE_SIZE]))
    f.sync()
    f.close()


def _pool_over(path: str, pages: int, direct) -> tuple[BufferPool, DirectFile]:
    f = DirectFile.open(path, False, direct)
    return BufferPool(PagerStore(Pager(f, pages)), 16), f


def _read_all(pool: BufferPool, ids) -> None:
    read = pool.read
    for pid in ids:
        with read(pid):
            pass


def bench_misses(path: str, pages: int, direct, seconds: float) -> float:
    """Steady state: random page ids, each read a miss in the 16-frame pool."""
    pool, f = _pool_over(path, pages, direct)
    rng = random.Random(1)
    ids = [rng.randrange(pages) for _ in range(1 << 16)]
    pos = 0

    def misses(n: int) -> None:
        nonlocal pos
        _read_all(pool, ids[pos : pos + n])
        pos = (pos + n) % len(ids)

    rate = timed(misses, seconds)
    miss_share = pool.misses / max(1, pool.misses + pool.hits)
    assert miss_share > 0.99, f"expected misses, got {miss_share:.3f}"
    pool.close()
    f.close()
    return rate


def bench_first_touch(path: str, pages: int, direct) -> float:
    """Every page once, in random order, after dropping the file's cached pages:
    what a miss costs when the kernel has no copy either."""
    pool, f = _pool_over(path, pages, direct)
    os.posix_fadvise(f.fd, 0, 0, os.POSIX_FADV_DONTNEED)
    ids = list(range(pages))
    random.Random(2).shuffle(ids)
    start = time.perf_counter()
    _read_all(pool, ids)
    rate = pages / (time.perf_counter() - start)
    assert pool.misses == pages
    pool.close()
    f.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    ap.add_argument(
        "--pages", type=int, default=8192, help="data file size in 4 KiB pages for the miss test"
    )
    ap.add_argument(
        "--dir", default=None, help="where to put the data file (default: the system temp dir)"
    )
    args = ap.parse_args(argv)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    for name, rate in bench_hits(args.seconds).items():
        print(f"{name:<34} {rate:>12,.0f} /s")

    d = tempfile.mkdtemp(prefix="dragondb-bench-", dir=args.dir)
    try:
        path = os.path.join(d, "pages.db")
        make_file(path, args.pages)
        mib = args.pages * PAGE_SIZE / 2**20
        print(
            f"miss test: {args.pages} pages ({mib:.0f} MiB) in {d}, 16-frame pool, random page ids"
        )
        rows = [("O_DIRECT", True), ("buffered", False)]
        for label, direct in rows:
            try:
                steady = bench_misses(path, args.pages, direct, args.seconds)
                first = bench_first_touch(path, args.pages, direct)
            except StorageIOError as exc:
                print(f"page read on a miss, {label:<13} refused here ({exc})")
                continue
            print(
                f"page read on a miss, {label:<13} {steady:>12,.0f} /s  (random ids, steady state)"
            )
            print(
                f"page read on a miss, {label + ' cold':<13} {first:>12,.0f} /s  (each page once, cache dropped first)"
            )
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The raw floors: what the disk does for a Python caller with no store at all.

- pread_cached: random 4 KiB `os.pread` of a file already in the page cache
  (the best any store that reads through the kernel can do per lookup);
- pread_direct: random 4 KiB `os.preadv` with `O_DIRECT` into page-aligned
  memory (what a buffer-pool miss costs the engine on this disk);
- pwrite_fsync: `pwrite` of one 4 KiB page in place + `fsync`, and the same
  with `fdatasync`; append_fsync writes each page past the end (the file
  grows, so the metadata must be synced too): a durable commit's floor.

Results use the same phase record as the stores: {"ops", "seconds", "ops_per_s"}.
"""

from __future__ import annotations

import mmap
import os
import random
import time

__all__ = ["run_floors"]

_PAGE = 4096


def _timed(ops: int, fn, budget: float) -> dict:
    """Call fn(i) for i in range(ops) until done or `budget` seconds pass."""
    clock = time.perf_counter
    t0 = clock()
    deadline = t0 + budget
    done = 0
    for i in range(ops):
        fn(i)
        done += 1
        if (done & 63) == 0 and clock() > deadline:
            break
    seconds = clock() - t0
    rec = {"ops": done, "seconds": seconds, "ops_per_s": done / seconds if seconds else 0.0}
    if done < ops:
        rec["partial"] = True
    return rec


def run_floors(directory: str, *, reads: int = 100_000, direct_reads: int = 20_000,
               writes: int = 1000, file_mib: int = 64, budget: float = 10.0,
               seed: int = 1) -> dict:
    """Measure the floors in `directory`; returns a result shaped like a store's."""
    result: dict = {"store": "floors", "job": "floors", "phases": {}, "skipped": {}, "errors": {}}
    rng = random.Random(seed)
    path = os.path.join(directory, "floor.bin")
    pages = file_mib * (1 << 20) // _PAGE
    with open(path, "wb") as f:
        chunk = rng.randbytes(1 << 20)
        for _ in range(file_mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    offsets = [rng.randrange(pages) * _PAGE for _ in range(max(reads, direct_reads))]

    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 1 << 20):  # warm the page cache with the whole file
            pass
        pread = os.pread
        result["phases"]["pread_cached"] = _timed(
            reads, lambda i: pread(fd, _PAGE, offsets[i]), budget)
    finally:
        os.close(fd)

    o_direct = getattr(os, "O_DIRECT", 0)
    if not o_direct:
        result["skipped"]["pread_direct"] = "this platform has no O_DIRECT"
    else:
        try:
            fd = os.open(path, os.O_RDONLY | o_direct)
        except OSError as exc:  # tmpfs and some others refuse O_DIRECT (EINVAL)
            result["skipped"]["pread_direct"] = f"O_DIRECT refused here: {exc}"
        else:
            buf = mmap.mmap(-1, _PAGE)  # anonymous mmap: page-aligned, as O_DIRECT needs
            bufs = [buf]
            preadv = os.preadv
            try:
                result["phases"]["pread_direct"] = _timed(
                    direct_reads, lambda i: preadv(fd, bufs, offsets[i]), budget)
            except OSError as exc:
                result["skipped"]["pread_direct"] = f"O_DIRECT read failed: {exc}"
            finally:
                os.close(fd)
                buf.close()

    page = rng.randbytes(_PAGE)
    wpath = os.path.join(directory, "floor-write.bin")
    fd = os.open(wpath, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, page, 0)
        os.fsync(fd)
        pwrite, fsync = os.pwrite, os.fsync

        def in_place(_i: int) -> None:
            pwrite(fd, page, 0)
            fsync(fd)

        result["phases"]["pwrite_fsync"] = _timed(writes, in_place, budget)
        fdatasync = getattr(os, "fdatasync", None)
        if fdatasync is None:
            result["skipped"]["pwrite_fdatasync"] = "this platform has no fdatasync"
        else:
            def in_place_data(_i: int) -> None:
                pwrite(fd, page, 0)
                fdatasync(fd)

            result["phases"]["pwrite_fdatasync"] = _timed(writes, in_place_data, budget)

        def append(i: int) -> None:
            pwrite(fd, page, (i + 1) * _PAGE)
            fsync(fd)

        result["phases"]["append_fsync"] = _timed(writes, append, budget)
    finally:
        os.close(fd)
    return result

"""The side-by-side benchmark: DragonDB against the stores a Python user would
pick instead, measured in the same run on the same machine.

    python -m bench --n 100000            # make bench: every store, two rounds
    python -m bench --n 10000 --quick     # make bench-quick: under a minute
    python -m bench --million --profile   # + engine at 10k/100k/1M, + cProfile files

Every store runs in its own fresh subprocess and temporary directory, and the
order of the stores is reversed between rounds so drift on a shared machine
shows. Results go to bench/results/latest.{json,txt,png}. See bench/README.md
for the workload, the peers and how to read the table.

`engine_only(path, n)` measures the engine alone on a user's own disk; it is
what `dragondb bench PATH` runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

__all__ = ["engine_only", "format_engine_only"]


def engine_only(path: str | os.PathLike, n: int = 10_000, *, seed: int = 1,
                commits: int = 1000, floors: bool = True, keep: bool = False) -> dict:
    """Measure the engine alone, in this process, on the disk holding `path`.

    `path` is a directory (created if missing) or a file name whose directory
    is used; an existing file is never touched. The run works in a fresh
    temporary subdirectory there and removes it afterwards unless `keep`.
    Returns the "main" job's result (see `bench.workload`): "phases" maps each
    phase to {"ops", "seconds", "ops_per_s"}, plus "skipped", "disk_final",
    "peak_rss_kib", "stats_final" (engine.stats()), and "directory", "machine",
    "workload" and, with `floors`, "floors" (the raw disk floors measured in
    the same directory). Failures of the engine are reported in "error", not raised.
    """
    from bench.floors import run_floors
    from bench.runner import machine_info
    from bench.workload import Workload, run_job

    if n < 1:
        raise ValueError("engine_only: n must be at least 1")
    path = os.fspath(path)
    if os.path.isdir(path) or not os.path.exists(path) and not os.path.splitext(path)[1]:
        parent = path
    elif os.path.exists(path):
        raise FileExistsError(f"engine_only: {path} exists and is not a directory; "
                              "give a directory (or a new name) on the disk to measure")
    else:
        parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    root = tempfile.mkdtemp(prefix="dragondb-bench-", dir=parent)
    wl = Workload(n=n, seed=seed, commits=min(commits, max(n, 1)), budget=60.0)
    try:
        store_dir = os.path.join(root, "engine")
        os.mkdir(store_dir)
        result = run_job("main", "engine", store_dir, wl)
        result["directory"] = root
        result["machine"] = machine_info(root)
        result["workload"] = wl.to_dict()
        if floors:
            floor_dir = os.path.join(root, "floors")
            os.mkdir(floor_dir)
            result["floors"] = run_floors(floor_dir, reads=min(n, 100_000),
                                          direct_reads=min(n, 5_000),
                                          writes=wl.commits, file_mib=16, budget=5.0,
                                          seed=seed)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return result


def format_engine_only(result: dict) -> str:
    """A short human-readable table of `engine_only`'s result."""
    from bench.report import format_engine_only as fmt

    return fmt(result)

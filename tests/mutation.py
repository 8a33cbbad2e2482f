"""Mutation testing of engine/ with mutmut, split into shards, and its report.

    python tests/mutation.py run [--shard K/N] [--modules "codec pager"] [--json FILE] [--recheck]
    python tests/mutation.py report FILE... [--json merged.json]

`run` mutates each module of its shard on its own, in build/mutate/<module>/
(a copy of the tree whose pyproject.toml holds only the test configuration
and that module's mutmut settings), against that module's test subset in
SUBSETS below. mutmut maps every selected test to the functions it runs and
runs a mutant against only those tests, stopping at the first failure. A
shard is a set of whole modules: the modules, largest first, each go to the
shard with the fewest lines so far, so N machines get about equal work and
every module is in exactly one shard. `report` adds shard files up (a module
seen in two files is an error: the shards overlapped) and prints the table
docs/verification.md quotes.

Per module: mutants, killed, timeout, survived, no_tests (no selected test
runs the mutated function: a survivor too), other (suspicious, segfault,
skipped), and score = (killed + timeout) / (mutants - skipped), mutmut's own.

Hypothesis runs derandomized with 50 examples (the `mutation` profile in
tests/conftest.py), so the same code gives the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The package glue and the adapters: the selected tests (tests/unit, the
# seed claims) barely run the adapters, whose suites (tests/server,
# tests/compat, the CLI's subprocesses) are too slow to run per mutant.
NOT_MUTATED = {"__init__", "__main__", "cli", "server", "client", "dbm", "dump",
               "log", "typedefs"}  # log: two cold calls; typedefs: type declarations only


# Each module's tests: its own unit file(s), the unit files that drive it
# through the layers above, and the seed-claim tests (every I/O call failing in
# turn, the races) where the module takes part in them. All are fast and
# deterministic; the slow tiers (crash, stateful, concurrency) are left out.
SEED = "tests/faults/test_seed_claims.py"
SUBSETS: dict[str, list[str]] = {
    "codec": ["tests/unit/test_codec.py", "tests/unit/test_codec_exact.py", "tests/unit/test_pager.py",
              "tests/unit/test_check.py"],
    "metapage": ["tests/unit/test_metapage.py", "tests/unit/test_codec.py", "tests/unit/test_codec_exact.py",
                 "tests/unit/test_check.py",
                 "tests/unit/test_check_exact.py", "tests/unit/test_db_edges.py"],
    "pager": ["tests/unit/test_pager.py", "tests/unit/test_pager_read_ahead.py", "tests/unit/test_pager_exact.py",
              "tests/unit/test_check.py",
              "tests/unit/test_db.py", SEED],
    "disk": ["tests/unit/test_disk.py", "tests/unit/test_disk_errors.py",
             "tests/unit/test_blockfile_conformance.py", "tests/unit/test_fakefs.py",
             "tests/unit/test_overlay.py", "tests/unit/test_lock_timeout.py", "tests/unit/test_readers.py",
             "tests/unit/test_disk_exact.py"],
    "locks": ["tests/unit/test_disk.py", "tests/unit/test_disk_errors.py", "tests/unit/test_disk_exact.py",
              "tests/unit/test_lock_timeout.py", "tests/unit/test_readers.py"],
    "replacer": ["tests/unit/test_replacer.py", "tests/unit/test_bufferpool.py"],
    "latch": ["tests/unit/test_latch.py", "tests/unit/test_bufferpool.py"],
    "bufferpool": ["tests/unit/test_bufferpool.py", "tests/unit/test_bufferpool_exact.py", "tests/unit/test_io_batching.py",
                   "tests/unit/test_in_place.py", "tests/unit/test_latch.py", "tests/unit/test_pool_sizing.py",
                   SEED],
    "nodecache": ["tests/unit/test_nodecache_exact.py", "tests/unit/test_bufferpool.py", "tests/unit/test_in_place.py", "tests/unit/test_btree.py",
                  "tests/unit/test_check.py", "tests/unit/test_db.py", SEED],
    "wal": ["tests/unit/test_wal.py", "tests/unit/test_wal_exact.py", "tests/unit/test_wal_follow.py",
            "tests/unit/test_wal_sync.py", "tests/unit/test_db.py", SEED],
    "walformat": ["tests/unit/test_wal.py", "tests/unit/test_wal_exact.py", "tests/unit/test_wal_follow.py",
                  "tests/unit/test_wal_sync.py", "tests/unit/test_db.py", SEED],
    "txn": ["tests/unit/test_txn.py", "tests/unit/test_btree_exact.py", "tests/unit/test_db.py",
            "tests/unit/test_btree.py", "tests/unit/test_in_place.py", SEED],
    "overflow": ["tests/unit/test_overflow.py", "tests/unit/test_btree.py", "tests/unit/test_check.py"],
    "btree": ["tests/unit/test_btree.py", "tests/unit/test_btree_exact.py", "tests/unit/test_in_place.py",
              "tests/unit/test_db.py", SEED],
    "check": ["tests/unit/test_check.py", "tests/unit/test_check_exact.py", "tests/unit/test_db.py"],
    "db": ["tests/unit/test_db.py", "tests/unit/test_db_edges.py", "tests/unit/test_db_gaps.py",
           "tests/unit/test_db_exact.py", "tests/unit/test_check.py", "tests/unit/test_snapshots.py",
           "tests/unit/test_recovery_exact.py", SEED],
    "recovery": ["tests/unit/test_db.py", "tests/unit/test_db_edges.py", "tests/unit/test_db_gaps.py",
                 "tests/unit/test_snapshots.py", "tests/unit/test_recovery_exact.py", SEED],
    "snapshots": ["tests/unit/test_readers.py", "tests/unit/test_snapshots.py"],
    "writes": ["tests/unit/test_writes.py", "tests/unit/test_writes_exact.py", "tests/unit/test_db.py",
               "tests/unit/test_in_place.py", "tests/unit/test_batch_path.py", "tests/unit/test_batch_lifecycle.py",
               "tests/unit/test_readers.py", "tests/unit/test_snapshots.py", SEED],
    "checkpoint": ["tests/unit/test_checkpoint.py", "tests/unit/test_db.py", "tests/unit/test_readers.py", SEED],
    "tree": ["tests/unit/test_tree_exact.py", "tests/unit/test_db.py", "tests/unit/test_db_edges.py",
             "tests/unit/test_tree_ops.py", "tests/unit/test_api_gaps.py", "tests/unit/test_snapshots.py"],
    "batch": ["tests/unit/test_batch_exact.py", "tests/unit/test_batch_lifecycle.py", "tests/unit/test_batch_path.py",
              "tests/unit/test_db.py", "tests/unit/test_writes.py"],
    "arguments": ["tests/unit/test_arguments_exact.py", "tests/unit/test_db.py", "tests/unit/test_db_edges.py",
                  "tests/unit/test_batch_lifecycle.py", "tests/unit/test_tree_ops.py", "tests/unit/test_api_gaps.py"],
    "catalog": ["tests/unit/test_db.py", "tests/unit/test_check.py"],
    "poolsize": ["tests/unit/test_pool_sizing.py", "tests/unit/test_poolsize_exact.py"],
    "openers": ["tests/unit/test_openers.py"],
    "errors": ["tests/unit/test_errors.py", "tests/unit/test_db.py", "tests/unit/test_disk_errors.py"],
    "syncpoints": ["tests/unit/test_syncpoints.py", SEED],
    "bulk": ["tests/unit/test_bulk_exact.py", "tests/unit/test_tree_ops.py", "tests/unit/test_batch_path.py",
             "tests/unit/test_db.py", "tests/unit/test_maintenance.py"],
    "maintenance": ["tests/unit/test_maintenance.py", "tests/unit/test_maintenance_exact.py",
                    "tests/unit/test_api_gaps.py::test_compact_keeps_the_name_and_inode_and_other_descriptors"],
}


def engine_modules() -> list[str]:
    """The modules of engine/ whose mutants are run: the core."""
    return sorted(p.stem for p in (ROOT / "engine").glob("*.py") if p.stem not in NOT_MUTATED)


def shard_modules(modules: list[str], k: int, n: int) -> list[str]:
    """The modules of shard k (1-based) of n: greedy by line count, largest first."""
    def size(m: str) -> int:
        return len((ROOT / "engine" / f"{m}.py").read_text().splitlines())

    loads = [0] * n
    owned: list[list[str]] = [[] for _ in range(n)]
    for m in sorted(modules, key=lambda m: (-size(m), m)):
        i = loads.index(min(loads))
        loads[i] += size(m)
        owned[i].append(m)
    return sorted(owned[k - 1])


def codes(module: str) -> dict[str, int | None]:
    """Each mutant's exit code: mutmut's result file mutants/engine/<module>.py.meta,
    over the verdicts kept by the last --recheck (mutmut drops every cached
    verdict when the test selection changes; a mutant killed before is still
    killed by a selection that only grew)."""
    where = workdir(module)
    meta = where / "mutants" / "engine" / f"{module}.py.meta"
    now = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    kept = where / "kept-verdicts.json"
    before = json.loads(kept.read_text()) if kept.exists() else {}
    return {name: now[name] if now.get(name) is not None else before.get(name) for name in now}


def figures(module: str) -> dict:
    """Per-module counts."""
    from mutmut.stats import status_by_exit_code

    codes_ = codes(module)
    out = {"mutants": 0, "killed": 0, "timeout": 0, "survived": 0, "no_tests": 0,
           "skipped": 0, "other": 0, "not_checked": 0, "survivors": []}
    for name, code in sorted(codes_.items()):
        status = status_by_exit_code[code]
        out["mutants"] += 1
        key = {"killed": "killed", "timeout": "timeout", "survived": "survived",
               "no tests": "no_tests", "skipped": "skipped",
               "not checked": "not_checked"}.get(status, "other")
        out[key] += 1
        if key in ("survived", "no_tests"):
            out["survivors"].append(name)
    return out


def workdir(module: str) -> Path:
    return ROOT / "build" / "mutate" / module


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def prepare(module: str, fresh: bool = True) -> Path:
    """A fresh copy of the tree for one module's run, configured for it; with
    `fresh=False`, only its tests and configuration are brought up to date
    (the mutants and their results stay)."""
    import tomllib

    where = workdir(module)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    if fresh:
        shutil.rmtree(where, ignore_errors=True)
        for d in ("engine", "models", "faults", "bench"):
            shutil.copytree(ROOT / d, where / d, ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore, dirs_exist_ok=True)
    pytest_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    mutmut_cfg = {
        "source_paths": ["engine/"],
        "only_mutate": [f"engine/{module}.py"],
        "also_copy": ["models/", "faults/", "bench/"],
        "pytest_add_cli_args_test_selection": SUBSETS[module],
        "pytest_add_cli_args": ["-m", "not slow", "-p", "no:xdist", "--timeout=120"],
    }
    text = "[tool.pytest.ini_options]\n"
    text += "".join(f"{k} = {_toml(v)}\n" for k, v in pytest_cfg.items())
    text += "\n[tool.mutmut]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in mutmut_cfg.items())
    (where / "pyproject.toml").write_text(text)
    return where


def score(f: dict) -> float | None:
    tested = f["mutants"] - f["skipped"]
    return None if tested <= 0 else 100.0 * (f["killed"] + f["timeout"]) / tested


def table(results: dict[str, dict]) -> str:
    cols = ("mutants", "killed", "timeout", "survived", "no_tests", "other")
    lines = [f"{'module':12}" + "".join(f"{c:>10}" for c in cols) + f"{'score':>9}"]
    for m in sorted(results):
        f = results[m]
        s = score(f)
        lines.append(f"{m:12}" + "".join(f"{f[c]:>10}" for c in cols)
                     + (f"{s:8.1f}%" if s is not None else f"{'-':>9}"))
        if f.get("not_checked"):
            lines[-1] += f"  ({f['not_checked']} not checked: the run was cut short)"
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    k, n = (int(x) for x in args.shard.split("/"))
    if not 1 <= k <= n:
        raise SystemExit(f"--shard {args.shard}: want K/N with 1 <= K <= N")
    modules = args.modules.split() if args.modules else engine_modules()
    unknown = set(modules) - set(engine_modules())
    if unknown:
        raise SystemExit(f"not engine modules: {sorted(unknown)}")
    unplaced = set(engine_modules()) - set(SUBSETS)
    if unplaced:
        raise SystemExit(f"no test subset for {sorted(unplaced)}: add them to SUBSETS")
    mine = shard_modules(modules, k, n)
    print(f"shard {k}/{n}: {' '.join(mine) or '(nothing)'}", flush=True)
    env = dict(os.environ, HYPOTHESIS_PROFILE="mutation")
    for m in mine:
        names: list[str] = []
        if args.recheck:  # only the survivors of the last run, against today's tests
            names = figures(m)["survivors"]
            if not names:
                continue
            kept = {k: v for k, v in codes(m).items() if k not in names}
            (workdir(m) / "kept-verdicts.json").write_text(json.dumps(kept))
        where = prepare(m, fresh=not args.recheck)
        print(f"== engine/{m}.py against {' '.join(SUBSETS[m])}", flush=True)
        cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs), *names]
        code = subprocess.call(cmd, cwd=where, env=env)
        if code != 0:
            print(f"mutmut exited {code} on {m}", file=sys.stderr)
            return code
    results = {m: figures(m) for m in mine}
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"shard": args.shard, "modules": results},
                                              indent=2) + "\n")
    return 0


def report(args: argparse.Namespace) -> int:
    merged: dict[str, dict] = {}
    for path in args.files:
        for m, f in json.loads(Path(path).read_text())["modules"].items():
            if m in merged:
                raise SystemExit(f"{m} is in two shard files: the shards overlap")
            merged[m] = f
    print(table(merged))
    missing = sorted(set(engine_modules()) - set(merged))
    if missing:
        print(f"not measured: {' '.join(missing)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"modules": merged}, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--shard", default="1/1")
    r.add_argument("--modules", default="")
    r.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    r.add_argument("--json")
    r.add_argument("--recheck", action="store_true",
                   help="rerun only the last run's survivors (after adding tests)")
    r.set_defaults(func=run)
    m = sub.add_parser("report")
    m.add_argument("files", nargs="+")
    m.add_argument("--json")
    m.set_defaults(func=report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

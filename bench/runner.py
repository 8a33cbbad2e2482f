"""Orchestration: rounds of fresh subprocesses, one per store and job.

Round 1 runs the stores in the listed order, round 2 in reverse, and so on,
so drift on a shared machine (another tenant, thermal throttling, the page
cache filling) shows up as a difference between rounds instead of hiding in
one store's number. Each job gets its own new temporary directory, removed
afterwards. The floors run once per round. With `million`, the engine alone
runs at 10k, 100k and 1M keys to show cost per operation against tree height
and its peak RSS at 1M keys; with `profile`, one extra engine run records a
cProfile file per phase.
"""

from __future__ import annotations

import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from bench import report
from bench.stores import DEFAULT_STORES, STORES
from bench.workload import Workload

__all__ = ["Config", "run", "machine_info", "REPO"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALE_SIZES = (10_000, 100_000, 1_000_000)
#: phases whose profiles go into the JSON (all phases get a .pstats file)
PROFILE_PHASES = ("insert", "get", "scan", "overwrite", "delete", "commit", "get_pool64")


@dataclass
class Config:
    """One benchmark run. `quick` shrinks the extras so N=10k runs in under a minute."""

    n: int = 100_000
    quick: bool = False
    rounds: int = 2
    stores: list[str] = field(default_factory=lambda: list(DEFAULT_STORES))
    million: bool = False  # run the engine alone at each of scale_sizes
    scale_sizes: tuple[int, ...] = SCALE_SIZES
    profile: bool = False
    out_dir: str = os.path.join(REPO, "bench", "results")
    base_dir: str | None = None  # where the stores' temp dirs go; None: the system temp dir
    chart: bool = True
    floors: bool = True
    big: bool = True
    seed: int = 1
    commits: int | None = None  # durable single puts; None: 1000 (quick: 250)
    big_count: int | None = None
    budget: float | None = None
    timeout: float = 3600.0  # per subprocess

    def workload(self, n: int | None = None) -> Workload:
        return Workload(
            n=self.n if n is None else n,
            seed=self.seed,
            commits=self.n_commits(),
            big_count=self.big_count if self.big_count is not None else (16 if self.quick else 100),
            budget=self.budget if self.budget is not None else (5.0 if self.quick else 90.0),
        )

    def n_commits(self) -> int:
        if self.commits is not None:
            return self.commits
        return 250 if self.quick else 1000

    def floor_sizes(self) -> dict:
        """Floors scale with N (a tiny smoke run must stay tiny), capped at the full sizes."""
        quick = self.quick or self.n < 10_000
        return {
            "reads": max(1000, min(self.n, 100_000)),
            "direct_reads": max(500, min(self.n, 5_000 if quick else 20_000)),
            "writes": min(self.n_commits(), 1000),
            "file_mib": 64 if not quick else max(4, min(16, self.n // 256)),
            "budget": 2.0 if quick else 10.0,
            "seed": self.seed,
        }


def _mount_of(path: str) -> dict:
    """Filesystem type and device holding `path` (from /proc/mounts; Linux)."""
    path = os.path.realpath(path)
    best = {"mount": "", "fstype": "unknown", "device": ""}
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
                        best["mount"]):
                    best = {"mount": mnt, "fstype": fstype, "device": dev}
    except OSError:
        pass
    return best


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(base_dir: str) -> dict:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "mem_mib": _mem_total_mib(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "bench_dir": base_dir,
        "filesystem": _mount_of(base_dir),
    }


def _run_worker(spec: dict, base_dir: str, timeout: float) -> dict:
    """Run one job in a fresh interpreter and a fresh directory; never raises."""
    root = tempfile.mkdtemp(prefix=f"dragondb-bench-{spec.get('store', 'floors')}-", dir=base_dir)
    try:
        store_dir = os.path.join(root, "store")
        os.mkdir(store_dir)
        spec = dict(spec, dir=store_dir)
        spec_path = os.path.join(root, "spec.json")
        result_path = os.path.join(root, "result.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.worker", spec_path, result_path],
                                  cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"store": spec.get("store"), "job": spec["job"], "phases": {},
                    "error": f"timed out after {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(result_path):
            tail = (proc.stderr or "").strip().splitlines()[-5:]
            return {"store": spec.get("store"), "job": spec["job"], "phases": {},
                    "error": f"worker exited {proc.returncode}: " + " | ".join(tail)}
        with open(result_path) as f:
            result = json.load(f)
        result["wall_s"] = wall
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _merge(main: dict | None, big: dict | None) -> dict:
    """One store's row for one round: the main job plus the big-value phases."""
    out = dict(main or {"phases": {}, "skipped": {}, "errors": {}})
    out["phases"] = dict(out.get("phases", {}))
    out["skipped"] = dict(out.get("skipped", {}))
    if big:
        out["phases"].update(big.get("phases", {}))
        out["skipped"].update(big.get("skipped", {}))
        if big.get("error"):
            out["error_big"] = big["error"]
        out["disk_big"] = big.get("disk_final")
        out["peak_rss_kib_big"] = big.get("peak_rss_kib")
    return out


def _profile_top(path: str, limit: int = 12) -> list[dict]:
    """The top entries of a pstats file by own time, as plain dicts."""
    st = pstats.Stats(path)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"function": f"{os.path.relpath(filename, REPO) if filename.startswith(REPO) else filename}:{line}({func})",
                     "calls": nc, "primitive_calls": cc, "tottime": tt, "cumtime": ct})
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return rows[:limit]


def _write_profile_text(path: str, out_path: str) -> None:
    with open(out_path, "w") as f:
        st = pstats.Stats(path, stream=f)
        st.sort_stats("tottime").print_stats(25)
        st.sort_stats("cumulative").print_stats(25)


def run(config: Config, progress: Callable[[str], None] | None = None) -> dict:  # noqa: C901 - setup, per-store phases and output in one; split by phase
    """Run the whole benchmark; write latest.json (and latest.png) to out_dir."""
    say = progress or (lambda _msg: None)
    base = config.base_dir or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    wl = config.workload()
    unknown = [s for s in config.stores if s not in STORES]
    if unknown:
        raise ValueError(f"unknown stores: {unknown}; known: {sorted(STORES)}")
    stores_info: dict = {}
    runnable: list[str] = []
    for name in config.stores:
        cls = STORES[name]
        reason = cls.available()
        stores_info[name] = {"note": cls.note, "available": reason is None}
        if reason is None:
            stores_info[name]["version"] = cls.version()
            runnable.append(name)
        else:
            stores_info[name]["unavailable"] = reason
            say(f"skip {name}: {reason}")

    results: dict = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": _git_rev(),
            "machine": machine_info(base),
            "config": {k: v for k, v in asdict(config).items() if k not in ("out_dir", "base_dir")},
            "workload": wl.to_dict(),
            "floor_sizes": config.floor_sizes(),
            "sqlite_version": STORES["sqlite3"].version(),
        },
        "stores": stores_info,
        "rounds": [],
    }
    t_start = time.perf_counter()
    for r in range(config.rounds):
        order = runnable if r % 2 == 0 else runnable[::-1]
        rnd: dict = {"order": list(order), "results": {}}
        mains: dict = {}
        bigs: dict = {}
        for name in order:
            say(f"round {r + 1}/{config.rounds}: {name} (N={wl.n})")
            mains[name] = _run_worker({"job": "main", "store": name, "workload": wl.to_dict()},
                                      base, config.timeout)
            if mains[name].get("error"):
                say(f"  {name} failed: {mains[name]['error']}")
        if config.big:
            for name in order:
                say(f"round {r + 1}/{config.rounds}: {name} 1 MiB values (x{wl.big_count})")
                bigs[name] = _run_worker({"job": "big", "store": name, "workload": wl.to_dict()},
                                         base, config.timeout)
                if bigs[name].get("error"):
                    say(f"  {name} big failed: {bigs[name]['error']}")
        for name in runnable:
            rnd["results"][name] = _merge(mains.get(name), bigs.get(name))
        if config.floors:
            say(f"round {r + 1}/{config.rounds}: raw disk floors")
            rnd["floors"] = _run_worker({"job": "floors", "floors": config.floor_sizes()},
                                        base, config.timeout)
        results["rounds"].append(rnd)

    if config.million and "engine" in runnable:
        results["scaling"] = []
        for store in [s for s in ("engine", "engine-4MiB") if s in runnable]:
            for size in config.scale_sizes:
                say(f"scaling: {store} at N={size:,}")
                swl = config.workload(size)
                swl.budget = config.timeout  # a cut-short 1M run would say nothing about 1M keys
                res = _run_worker({"job": "scale", "store": store, "workload": swl.to_dict()},
                                  base, config.timeout)
                res["store"] = store
                results["scaling"].append(res)
                if res.get("error"):
                    say(f"  scale {size} failed: {res['error']}")

    if config.profile and "engine" in runnable:
        prof_dir = os.path.join(config.out_dir, "profile")
        os.makedirs(prof_dir, exist_ok=True)
        say(f"profile: engine under cProfile (N={wl.n}) -> {prof_dir}")
        pwl = config.workload()
        pwl.profile_dir = prof_dir
        res = _run_worker({"job": "main", "store": "engine", "workload": pwl.to_dict()},
                          base, config.timeout)
        results["profile"] = {"dir": prof_dir, "error": res.get("error"), "phases": {},
                              "profiled_ops_per_s": {p: v.get("ops_per_s") for p, v in
                                                     res.get("phases", {}).items()}}
        for phase in res.get("phases", {}):
            path = os.path.join(prof_dir, f"engine-{phase}.pstats")
            if not os.path.exists(path):
                continue
            _write_profile_text(path, path[:-len(".pstats")] + ".txt")
            if phase in PROFILE_PHASES:
                results["profile"]["phases"][phase] = _profile_top(path)

    results["meta"]["elapsed_s"] = time.perf_counter() - t_start
    report.summarize(results)
    os.makedirs(config.out_dir, exist_ok=True)
    if config.chart:
        png = os.path.join(config.out_dir, "latest.png")
        why = report.write_chart(results, png)
        results["chart"] = {"path": png} if why is None else {"skipped": why}
    report.write_json(results, os.path.join(config.out_dir, "latest.json"))
    with open(os.path.join(config.out_dir, "latest.txt"), "w") as f:
        f.write(report.format_report(results))
    return results

"""A campaign's report: what its trials counted, and its JSON and table forms.

`Tally` is what one trial (or a whole campaign) counted; `report` adds the
run's settings and is the JSON report (see docs/campaign.md for its keys);
`table` renders it for a terminal; `merge_reports` adds up shard reports;
`ok` is the exit status's verdict.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from faults.io import FaultPlan

__all__ = ["Tally", "TrialFailure", "merge_reports", "ok", "report", "table", "write"]


class TrialFailure(Exception):
    """A trial found the engine wrong; the trial stops at its first one."""


_SUMS = (
    "operations", "interleavings", "crashes_simulated", "recoveries_verified", "recoveries_run",
    "divergences", "leaked_pages", "double_owned_pages", "duplicate_frames", "pins_held",
    "check_problems", "unexpected_errors", "ops_failed", "leaked_files",
)


class Tally:
    """What one trial (or a whole campaign) counted; `as_dict` is the JSON report."""

    def __init__(self) -> None:
        self.n: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()  # call kind -> faults injected
        self.effects: Counter[str] = Counter()  # effect -> faults injected
        self.sites: set[tuple[str, str]] = set()  # (kind, site) failed at least once
        self.seen: set[tuple[str, str]] = set()  # (kind, site) called at least once
        self.traces: set[str] = set()  # hashes of the interleavings run
        self.trials: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()  # crash states per mode
        self.failures: list[dict] = []

    def fail(self, token: str, what: str, error: str) -> None:
        self.n[what] += 1
        kind, seed = token.split(":")[0], token.split(":")[1]
        self.failures.append({
            "seed": int(seed), "kind": kind, "token": token, "error": f"{what}: {error}"[:2000],
            "replay": f"dragondb campaign --replay {token}",
        })

    def fail_once(self, token: str, what: str, error: str) -> None:
        """Count a failure; report only a trial's first one (the rest replay with it)."""
        if any(f["token"] == token for f in self.failures):
            self.n[what] += 1
        else:
            self.fail(token, what, error)

    def add_plan(self, plan: FaultPlan) -> None:
        for inj in plan.injected:
            self.faults[inj.kind] += 1
            self.effects[inj.effect] += 1
            self.sites.add((inj.kind, inj.site or "?"))
        self.seen.update(plan.sites)

    def merge(self, other: Tally) -> None:
        self.n.update(other.n)
        self.faults.update(other.faults)
        self.effects.update(other.effects)
        self.sites |= other.sites
        self.seen |= other.seen
        self.traces |= other.traces
        self.trials.update(other.trials)
        self.modes.update(other.modes)
        self.failures.extend(other.failures)

    def as_dict(self) -> dict:
        d = {k: self.n[k] for k in _SUMS}
        d["faults_injected"] = dict(sorted(self.faults.items()))
        d["faults_by_effect"] = dict(sorted(self.effects.items()))
        d["fault_sites"] = sorted([k, s] for k, s in self.sites)
        d["io_sites_seen"] = sorted([k, s] for k, s in self.seen)
        d["io_sites_never_failed"] = sorted([k, s] for k, s in self.seen - self.sites)
        d["interleavings_distinct"] = len(self.traces)
        d["interleaving_traces"] = sorted(self.traces)
        d["trials"] = dict(sorted(self.trials.items()))
        d["crash_modes"] = dict(sorted(self.modes.items()))
        d["failures"] = self.failures
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Tally:
        t = cls()
        t.n.update({k: int(d.get(k, 0)) for k in _SUMS})
        t.faults.update(d.get("faults_injected", {}))
        t.effects.update(d.get("faults_by_effect", {}))
        t.sites = {(k, s) for k, s in d.get("fault_sites", [])}
        t.seen = {(k, s) for k, s in d.get("io_sites_seen", [])}
        t.traces = set(d.get("interleaving_traces", []))
        t.trials.update(d.get("trials", {}))
        t.modes.update(d.get("crash_modes", {}))
        t.failures = list(d.get("failures", []))
        return t


def report(tally: Tally, *, seed: int, shard: str, seconds: float, workers: int, extra: dict | None = None) -> dict:
    d = tally.as_dict()
    d.update({"seconds": round(seconds, 2), "seed": seed, "shard": shard, "workers": workers,
              "version": 1})
    if extra:
        d.update(extra)
    return d


def ok(rep: dict) -> bool:
    """Exit status 0 only when nothing diverged, leaked or duplicated (or failed otherwise)."""
    return not rep["failures"] and not any(rep.get(k) for k in (
        "divergences", "leaked_pages", "double_owned_pages", "duplicate_frames", "pins_held",
        "unexpected_errors", "check_problems", "leaked_files"))


def table(rep: dict) -> str:
    faults = rep["faults_injected"]
    by = ", ".join(f"{k} {v}" for k, v in faults.items()) or "none"
    modes = ", ".join(f"{k} {v}" for k, v in rep.get("crash_modes", {}).items())
    rows = [
        ("operations", f"{rep['operations']}"),
        ("trials", ", ".join(f"{k} {v}" for k, v in rep.get("trials", {}).items())),
        ("faults injected", f"{sum(faults.values())} ({by})"),
        ("distinct fault sites", f"{len(rep['fault_sites'])} (of {len(rep.get('io_sites_seen', []))} I/O call sites seen)"),
        ("interleavings explored", f"{rep['interleavings']} ({rep.get('interleavings_distinct', 0)} distinct)"),
        ("crashes simulated", f"{rep['crashes_simulated']}" + (f" ({modes})" if modes else "")),
        ("recoveries verified", f"{rep['recoveries_verified']} ({rep.get('recoveries_run', 0)} distinct images opened)"),
        ("divergences from model", f"{rep['divergences']}"),
        ("leaked pages", f"{rep['leaked_pages']} (double-owned {rep.get('double_owned_pages', 0)}; "
                         f"files left open {rep.get('leaked_files', 0)})"),
        ("duplicate frames", f"{rep['duplicate_frames']} (pins held {rep.get('pins_held', 0)})"),
        ("unexpected errors", f"{rep.get('unexpected_errors', 0)}"),
        ("seconds", f"{rep['seconds']}  seed {rep['seed']}  shard {rep['shard']}"),
    ]
    if "kills" in rep:
        rows.append(("SIGKILL trials", json.dumps(rep["kills"], sort_keys=True)[:200]))
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    never = rep.get("io_sites_never_failed", [])
    if never:
        lines.append(f"I/O call sites seen but never failed ({len(never)}): "
                     + "; ".join(f"{k} {s}" for k, s in never[:8]))
    for f in rep["failures"][:20]:
        lines.append(f"FAILED seed {f['seed']}: {f['error'][:300]}\n  replay: {f['replay']}")
    if len(rep["failures"]) > 20:
        lines.append(f"... and {len(rep['failures']) - 20} more failures (see the JSON report)")
    lines.append("OK: nothing diverged, leaked or duplicated" if ok(rep) else "FAILED")
    return "\n".join(lines)


def merge_reports(reports: list[dict]) -> dict:
    """Add up shard reports into one."""
    total = Tally()
    for r in reports:
        total.merge(Tally.from_dict(r))
    seeds = sorted({r.get("seed") for r in reports}, key=str)
    shards = [r.get("shard") for r in reports]
    merged = report(total, seed=seeds[0] if len(seeds) == 1 else seeds,
                    shard="+".join(str(s) for s in shards), seconds=max((r.get("seconds", 0) for r in reports), default=0),
                    workers=sum(r.get("workers", 0) for r in reports))
    merged["cpu_seconds"] = round(sum(r.get("seconds", 0) * max(r.get("workers", 1), 1) for r in reports), 2)
    merged["merged_from"] = len(reports)
    kills = [r["kills"] for r in reports if isinstance(r.get("kills"), dict)]
    if kills:
        merged["kills"] = {k: sum(x.get(k, 0) for x in kills) for k in kills[0] if all(isinstance(x.get(k, 0), int | float) for x in kills)}
    return merged


def write(path: str | None, rep: dict) -> None:
    """Write `rep` as JSON to `path` (atomically: a reader never sees half a report)."""
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)

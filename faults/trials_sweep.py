"""Campaign trial kind `sweep`: SQLite's I/O-error loops, every call site failed.

One fixed workload per campaign seed and sync mode is dry-run through a
`SitePlan` to learn every I/O call site (the engine function calling the
file, via `FaultPlan(site_depth=...)`) and the index of its first call.
Sweep trial j then fails one call: first each site's first call (transient,
then persistent, then short/torn/bit-flip variants), then call N = 1, 2, ...
of every kind, transient and persistent. So the first few hundred sweep
trials fail every I/O call site the workloads reach. Tokens are
`sweep:SEED:J`; the oracle is `faults.session`'s.
"""

from __future__ import annotations

import errno as _errno
import random
from collections import Counter

from faults.io import KINDS, FaultPlan
from faults.report import Tally
from faults.session import ERRNOS, SITE_DEPTH, Session
from faults.workload import make_ops

__all__ = ["SitePlan", "dry_run", "planned_ops", "run", "sweep_items", "workload"]


class SitePlan(FaultPlan):
    """A plan that also remembers, per (kind, site), the armed-call index of
    its first call (the dry run of a sweep)."""

    def __init__(self, seed: int = 0, *, site_depth: int = 0) -> None:
        super().__init__(seed, site_depth=site_depth)
        self.armed_calls: Counter[str] = Counter()
        self.first: dict[tuple[str, str], int] = {}

    def decide(self, kind, path, offset=None, length=0, site=None):
        if self.armed:
            self.armed_calls[kind] += 1
            self.first.setdefault((kind, site or "?"), self.armed_calls[kind])
        return super().decide(kind, path, offset, length, site)


_SWEEP_OPS = 110
_ROUNDS = 3  # sweep workloads per cycle: one per sync mode, so every sync path is swept


def workload(seed: int, rnd: int) -> tuple[list[tuple], str]:
    rng = random.Random(f"sweep:{seed}:{rnd}")
    sync = ("full", "normal", "off")[rnd % 3]
    return make_ops(rng, _SWEEP_OPS, sync=sync, crash=True, key_bytes=(700, 1000)), sync


def dry_run(seed: int, rnd: int) -> SitePlan:
    ops, sync = workload(seed, rnd)
    plan = SitePlan(seed, site_depth=SITE_DEPTH)
    s = Session(Tally(), f"sweep:{seed}:dry", plan, random.Random(seed), sync=sync,
                armed=lambda: True, checkpoint_bytes=128 * 1024)
    s.open("dry run open")
    for i, op in enumerate(ops, 1):
        s.step(op, i)
    s.close()
    return plan


_SWEEPS: dict[tuple[int, int], list[tuple]] = {}


def sweep_items(seed: int, cycle: int = 0) -> list[tuple]:
    """Sweep items of one cycle (rounds 3c..3c+2), each (round, kind, nth,
    effect, persistent, errno): first every call site's first call failed
    (transient, then persistent, then short/torn/bit-flip), a site seen in
    an earlier round only once; then call N = 1, 2, ... of every kind."""
    key = (seed, cycle)
    if key not in _SWEEPS:
        rounds = range(cycle * _ROUNDS, (cycle + 1) * _ROUNDS)
        plans = {r: dry_run(seed, r) for r in rounds}
        firsts: list[tuple[int, str, int]] = []
        covered: set[tuple[str, str]] = set()
        for r in rounds:
            for (kind, site), nth in sorted(plans[r].first.items(), key=lambda kv: (kv[0][0], kv[1])):
                if (kind, site) not in covered:
                    covered.add((kind, site))
                    firsts.append((r, kind, nth))
        items: list[tuple] = []
        items += [(r, kind, nth, "error", False, ERRNOS[i % 3]) for i, (r, kind, nth) in enumerate(firsts)]
        items += [(r, kind, nth, "error", True, ERRNOS[(i + 1) % 3]) for i, (r, kind, nth) in enumerate(firsts)]
        for r, kind, nth in firsts:
            if kind == "write":
                items += [(r, kind, nth, "short", False, _errno.EIO), (r, kind, nth, "torn", False, _errno.EIO)]
            elif kind == "read":
                items += [(r, kind, nth, "short", False, 0), (r, kind, nth, "bitflip", False, 0)]
        top = max(max(p.armed_calls.values()) for p in plans.values())
        for nth in range(1, top + 1):
            for r in rounds:
                for kind in KINDS:
                    if nth <= plans[r].armed_calls[kind]:
                        items.append((r, kind, nth, "error", False, ERRNOS[nth % 3]))
                        items.append((r, kind, nth, "error", True, ERRNOS[(nth + 1) % 3]))
        _SWEEPS[key] = items
    return _SWEEPS[key]


def _locate(seed: int, j: int) -> tuple[list[tuple], int]:
    """The items of the cycle holding sweep trial `j`, and its index there."""
    cycle = 0
    items = sweep_items(seed, 0)
    while j >= len(items):  # past the end of a cycle: the next cycle's workloads
        j -= len(items)
        cycle += 1
        items = sweep_items(seed, cycle)
    return items, j


def planned_ops(seed: int, j: int) -> int:
    items, j = _locate(seed, j)
    return len(workload(seed, items[j][0])[0])


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    items, j = _locate(seed, int(token.split(":")[2]))
    rnd, kind, nth, effect, persistent, err = items[j]
    ops, sync = workload(seed, rnd)
    tally.n["operations"] += len(ops)
    plan = FaultPlan(seed ^ j, site_depth=SITE_DEPTH)
    if effect == "error":
        rule = plan.fail(kind, nth, persistent=persistent, errno=err)
    elif effect == "short":
        rule = plan.short(kind, nth)
    elif effect == "torn":
        rule = plan.torn(nth)
    else:
        rule = plan.bitflip(nth)
    s = Session(tally, token, plan, random.Random(seed), sync=sync, armed=lambda: True,
                checkpoint_bytes=128 * 1024)
    fired_at = None
    try:
        s.open("open")
        for i, op in enumerate(ops, 1):
            s.step(op, i)
            if rule.fired and fired_at is None:
                fired_at = i
            if fired_at is not None and i >= fired_at + 4:
                plan.rules.clear()  # the disk is replaced: the workload must go on working
        s.finish()
    finally:
        tally.add_plan(plan)
        s.abandon()
    if not rule.fired:
        tally.fail(token, "unexpected_errors", f"sweep item {items[j]} never fired (the workload is not deterministic?)")

"""Fault campaigns: seeded workloads x fault plans x interleavings x crash points.

`dragondb campaign` (and `make campaign`) runs *trials*, each a pure
function of a token such as `crash:81723` (kind and seed), on `--workers`
processes, until `--seconds` pass or `--operations` workload operations
have run. Every trial compares the engine with `models.ModelDatabase`.
Each kind lives in its own module (`TRIAL_MODULES`), with
`run(token, seed, tally, tmp, modes)` and `planned_ops(*numbers of the token)`:

- `sweep` (`faults.trials_sweep`): SQLite's I/O-error loops, every I/O call
  site of fixed workloads failed in turn.
- `faults` (`faults.trials_faults`): FoundationDB's BUGGIFY, seeded fault
  sites switched on per trial.
- `crash` (`faults.trials_crash`): power loss at sampled crash points in
  each mode, plus a crash or an I/O error during recovery.
- `interleave` (`faults.trials_interleave`): 2-3 threads under the
  deterministic scheduler with a seeded schedule.
- `killpower`, `syncmodes`, `readonly`, `shortfile`, `crafted`
  (`faults.trials_kill`, `_sync`, `_readonly`, `_shortfile`, `_crafted`):
  kill -> recovery by the next process -> power loss; the commit rule in all
  three sync modes; a read-only open after a kill or crash changes nothing;
  a short or empty data file beside a log with records; a crafted file
  (valid checksums, impossible contents) gives data or a typed error.
- `backup` (`faults.trials_backup`): power loss at every event of
  `db.backup()` (beside a scheduled writer thread, or over an old database
  at the destination), and an I/O fault in one backup.

The pieces they share: `faults.workload` (the operations, run on the engine
or the model alike), `faults.session` (a database under a fault plan beside
the model, audited after every failure), `faults.history` and
`faults.recovery` (which states a crash may leave; recovering crash images),
`faults.report` (the tally, the JSON report and its table). A failure is
reported with its token and the one command that replays it:
`dragondb campaign --replay TOKEN`.

`dragondb campaign merge A.json B.json ...` adds up shard reports.
See docs/campaign.md for the oracle and the report's shape.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from faults.report import Tally, TrialFailure, merge_reports, ok, report, table, write
from faults.workload import make_ops

__all__ = ["KIND_WEIGHTS", "TRIAL_MODULES", "Tally", "main", "make_ops", "merge_reports", "run_trial", "tokens"]

CRASH_MODES = ("drop", "torn", "reorder", "random")
# Each trial kind's module, imported when first run.
TRIAL_MODULES = {
    "sweep": "faults.trials_sweep",  # every I/O call site of fixed workloads failed in turn
    "faults": "faults.trials_faults",  # seeded fault sites switched on per trial
    "crash": "faults.trials_crash",  # power loss at sampled crash points; compound faults in recovery
    "interleave": "faults.trials_interleave",  # threads under a seeded schedule
    "killpower": "faults.trials_kill",  # kill -> recovery by the next process -> power loss
    "syncmodes": "faults.trials_sync",  # everything before the last returned commit() survives
    "readonly": "faults.trials_readonly",  # a read-only open after a kill or crash writes nothing
    "shortfile": "faults.trials_shortfile",  # a short or empty data file beside a log with records
    "crafted": "faults.trials_crafted",  # valid checksums over contents no engine could write
    "backup": "faults.trials_backup",  # power loss at every event of db.backup(); an I/O fault in one
    "rot": "faults.trials_rot",  # a bit of the log flipped at rest after long sync="normal" commits
}
KIND_WEIGHTS = {"sweep": 3, "faults": 3, "crash": 2, "interleave": 3,  # a crash trial runs ~10x longer
                "killpower": 2, "syncmodes": 2, "readonly": 1, "shortfile": 1, "crafted": 1, "backup": 2,
                "rot": 1}


# -- trials -------------------------------------------------------------------------------------------

_TMP: str | None = None


def _tmp() -> str:
    """This process's scratch directory (tmpfs when there is one: crash images are many)."""
    global _TMP
    if _TMP is None:
        shm = "/dev/shm"
        base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
        _TMP = tempfile.mkdtemp(prefix="dragondb-campaign-", dir=base)
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def run_trial(token: str, modes: tuple[str, ...] = CRASH_MODES) -> dict:
    """Run one trial (`kind:seed`, or `sweep:seed:j`); its report as a dict."""
    tally = Tally()
    parts = token.split(":")
    kind, seed = parts[0], int(parts[1])
    tally.trials[kind] += 1
    gc.collect()  # start every trial with the same collector state: a replay then runs the same way
    if kind not in TRIAL_MODULES:
        raise ValueError(f"run_trial: unknown trial kind {kind!r}")
    try:
        importlib.import_module(TRIAL_MODULES[kind]).run(token, seed, tally, _tmp(), modes)
    except TrialFailure as exc:
        if not tally.failures:
            tally.fail(token, "divergences", str(exc))
    except Exception as exc:  # noqa: BLE001 - a crash of the harness itself is reported too
        tally.fail(token, "unexpected_errors", f"trial raised {type(exc).__name__}: {exc}")
    return tally.as_dict()


def tokens(seed: int, shard: tuple[int, int] = (1, 1), kinds: dict[str, int] | None = None) -> Iterator[str]:
    """The campaign's trials in order: trial i belongs to shard (i mod N) + 1."""
    weights = kinds or KIND_WEIGHTS
    names = sorted(weights)
    shares = [weights[name] for name in names]
    k, n = shard
    sweeps = 0
    i = 0
    while True:
        rng = random.Random(f"{seed}:{i}")
        kind = rng.choices(names, shares)[0]
        if kind == "sweep":
            token = f"sweep:{seed}:{sweeps}"
            sweeps += 1
        else:
            token = f"{kind}:{rng.getrandbits(48)}"
        if i % n == k - 1:
            yield token
        i += 1


def planned_ops(token: str) -> int:
    """How many workload operations `token` runs (without running it)."""
    kind, *numbers = token.split(":")
    if kind not in TRIAL_MODULES:
        raise ValueError(f"planned_ops: unknown trial kind {kind!r}")
    return importlib.import_module(TRIAL_MODULES[kind]).planned_ops(*map(int, numbers))


# -- running a campaign ---------------------------------------------------------------------------------

class _Progress:
    """A progress line on stderr: redrawn in place on a terminal, a line every
    10 s otherwise (CI logs)."""

    def __init__(self, total: float, unit: str, enabled: bool) -> None:
        self.total, self.unit, self.enabled = total, unit, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done: float, t: Tally, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.25 if self.tty else 10.0):
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"[{bar:<24}] {frac:4.0%} {now - self.start:5.0f}s  trials {sum(t.trials.values())}  "
                f"ops {t.n['operations']}  faults {sum(t.faults.values())}  sites {len(t.sites)}  "
                f"interleavings {t.n['interleavings']}  crashes {t.n['crashes_simulated']}  "
                f"failures {len(t.failures)}")
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def campaign(seed: int, *, seconds: float | None = None, operations: int | None = None, workers: int = 1,
             shard: tuple[int, int] = (1, 1), modes: tuple[str, ...] = CRASH_MODES,
             kinds: dict[str, int] | None = None, progress: bool = False) -> Tally:
    """Run trials until `seconds` pass or `operations` (planned) are covered."""
    assert (seconds is None) != (operations is None), "campaign: give seconds or operations"
    start = time.monotonic()
    deadline = start + seconds if seconds is not None else None
    source = tokens(seed, shard, kinds)
    if operations is not None:
        chosen: list[str] = []
        total = 0
        for token in tokens(seed, (1, 1), kinds):  # the global prefix, so shards split one campaign
            if total >= operations:
                break
            total += planned_ops(token)
            chosen.append(token)
        mine = tokens_for_shard(chosen, shard)
        source = iter(mine)
        bar = _Progress(len(mine), "trials", progress)
    else:
        bar = _Progress(seconds or 0.0, "s", progress)
    tally = Tally()

    def more() -> str | None:
        if deadline is not None and time.monotonic() >= deadline:
            return None
        return next(source, None)

    def measure() -> float:
        return sum(tally.trials.values()) if operations is not None else time.monotonic() - start

    if workers <= 1:
        while (token := more()) is not None:
            tally.merge(Tally.from_dict(run_trial(token, modes)))
            bar.update(measure(), tally)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            pending = set()
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * workers:
                    token = more()
                    if token is None:
                        exhausted = True
                        break
                    pending.add(pool.submit(run_trial, token, modes))
                if not pending:
                    break
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    tally.merge(Tally.from_dict(fut.result()))
                bar.update(measure(), tally)
    bar.update(measure(), tally, force=True)
    bar.done()
    return tally


def tokens_for_shard(chosen: list[str], shard: tuple[int, int]) -> list[str]:
    k, n = shard
    return [tk for i, tk in enumerate(chosen) if i % n == k - 1]


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard is K/N, e.g. 2/4, not {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 1 <= K <= N")
    return k, n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragondb campaign",
        description="Seeded workloads x fault plans x thread interleavings x crash points, checked "
                    "against the reference model. `dragondb campaign merge A.json B.json ...` adds up "
                    "shard reports. Exit status 0 only when nothing diverged, leaked or duplicated.")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument("--seconds", type=float, help="run for this long (default 60)")
    bound.add_argument("--operations", type=int, help="run trials covering this many workload operations")
    p.add_argument("--seed", type=int, help="campaign seed (default: random, printed in the report)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    p.add_argument("--shard", type=_parse_shard, default=(1, 1), metavar="K/N",
                   help="run only shard K of N (trial i belongs to shard i mod N + 1)")
    p.add_argument("--json", metavar="FILE", help="write the JSON report here")
    p.add_argument("--kills", type=int, default=0, metavar="N",
                   help="also run N SIGKILL trials (faults.kill.run_kills), split across shards")
    p.add_argument("--modes", default=",".join(CRASH_MODES),
                   help=f"crash modes to simulate (default {','.join(CRASH_MODES)})")
    p.add_argument("--kinds", default=None,
                   help="trial kinds and weights, e.g. crash=1,sweep=2 (default " +
                        ",".join(f"{k}={v}" for k, v in KIND_WEIGHTS.items()) + ")")
    p.add_argument("--replay", metavar="TOKEN", help="run the one trial a failure names, e.g. crash:123")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return p


def _merge_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dragondb campaign merge", description="Add up campaign shard reports.")
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--json", metavar="FILE", help="write the merged report here")
    args = p.parse_args(argv)
    loaded = []
    for path in args.reports:
        try:
            with open(path, encoding="utf-8") as f:
                loaded.append(json.load(f))
        except (OSError, ValueError) as exc:
            print(f"dragondb campaign merge: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    merged = merge_reports(loaded)
    write(args.json, merged)
    print(table(merged))
    return 0 if ok(merged) else 1


def _kills(n: int, seed: int, shard: tuple[int, int], tally: Tally) -> dict:
    """This shard's share of `n` SIGKILL trials, by `faults.kill.run_kills`;
    its failures join the report's."""
    from faults import kill  # optional: main() checked it exists before the campaign started

    k, total = shard
    mine = n // total + (1 if k - 1 < n % total else 0)
    result = dict(kill.run_kills(mine, seed * total + k))
    for f in result.pop("failures", []) or []:
        trial = f.get("trial", "?")
        tally.failures.append({
            "seed": f.get("seed", seed), "kind": "kill", "token": f"kill:{f.get('seed', seed)}:{trial}",
            "error": f"SIGKILL trial {trial}: {f.get('error') or f.get('why') or f}"[:2000],
            "replay": f.get("replay") or f"python -m faults.kill run --seed {f.get('seed', seed)} --trials {mine}",
        })
    if result.get("lost") and not any(f["kind"] == "kill" for f in tally.failures):
        tally.failures.append({"seed": seed, "kind": "kill", "token": f"kill:{seed}", "replay":
                               f"python -m faults.kill run --seed {seed * total + k} --trials {mine}",
                               "error": f"SIGKILL trials lost {result['lost']} acknowledged operations"})
    return {key: v for key, v in result.items() if isinstance(v, int | float)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return _merge_main(argv[1:])
    args = _parser().parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    bad = set(modes) - set(CRASH_MODES)
    if bad or not modes:
        print(f"dragondb campaign: unknown crash modes {sorted(bad)}; choose from {CRASH_MODES}", file=sys.stderr)
        return 2
    kinds = None
    if args.kinds:
        try:
            kinds = {k: int(w) for k, w in (part.split("=") for part in args.kinds.split(","))}
        except ValueError:
            print(f"dragondb campaign: --kinds is kind=weight,..., not {args.kinds!r}", file=sys.stderr)
            return 2
        if set(kinds) - set(KIND_WEIGHTS) or not any(kinds.values()):
            print(f"dragondb campaign: trial kinds are {sorted(KIND_WEIGHTS)}", file=sys.stderr)
            return 2
    if args.workers < 1:
        print("dragondb campaign: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.kills:
        try:
            from faults import kill
            kill.run_kills  # noqa: B018 - the agreed entry point must exist
        except (ImportError, AttributeError) as exc:
            print(f"dragondb campaign: --kills needs faults.kill.run_kills, which is not available ({exc})",
                  file=sys.stderr)
            return 2
    if args.replay:
        start = time.monotonic()
        t = Tally.from_dict(run_trial(args.replay, modes))
        rep = report(t, seed=int(args.replay.split(":")[1]), shard="replay", seconds=time.monotonic() - start,
                     workers=1, extra={"replay": args.replay})
        write(args.json, rep)
        print(table(rep))
        return 0 if ok(rep) else 1
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    seconds = args.seconds if args.operations is None and args.seconds is not None else None
    if args.operations is None and seconds is None:
        seconds = 60.0
    if not args.quiet:
        k, n = args.shard
        bound = f"{seconds:g} s" if seconds is not None else f"{args.operations} operations"
        print(f"dragondb campaign: seed {seed}, shard {k}/{n}, {args.workers} workers, {bound}", file=sys.stderr)
    start = time.monotonic()
    t = campaign(seed, seconds=seconds, operations=args.operations, workers=args.workers, shard=args.shard,
                 modes=modes, kinds=kinds, progress=not args.quiet)
    extra = {}
    if args.kills:
        extra["kills"] = _kills(args.kills, seed, args.shard, t)
    rep = report(t, seed=seed, shard=f"{args.shard[0]}/{args.shard[1]}", seconds=time.monotonic() - start,
                 workers=args.workers, extra=extra)
    write(args.json, rep)
    print(table(rep))
    return 0 if ok(rep) else 1

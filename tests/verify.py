"""Run CrossHair over the pure modules' contracts; fail on any counterexample.

    python tests/verify.py --per-condition 3 --total 180     # make verify-quick (in make test)
    python tests/verify.py --per-condition 10 --total 900    # make verify

Each target below is one function with PEP 316 docstring contracts: either a
pure function (codec, net.protocol) checked directly, or a wrapper in tests/verify-targets that
builds real pages from a few small symbolic integers (see codec_targets.py
for why). CrossHair checks each postcondition separately, for at most
`--per-condition` CPU seconds times the target's weight, and reports it as
confirmed (every path explored), unknown (no counterexample in the time) or
a counterexample. Targets run as `crosshair check` subprocesses, `--jobs` at
a time, longest first; the whole run stops at `--total` wall seconds.

Exit status: 0 when no counterexample was found, 1 on a counterexample or
a CrossHair error, 3 when the total budget ran out before every target ran.
Set PYTHONPATH to check another copy of the engine (a planted bug, say).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = ROOT / "tests" / "verify-targets"
PLUGIN = TARGETS_DIR / "crosshair_fixes.py"

# (qualified name, weight). Weight multiplies --per-condition: the bounded
# exhaustive wrappers need a few seconds per condition to walk every path.
TARGETS: list[tuple[str, int]] = [
    ("engine.codec.inline_fits", 1),
    ("engine.codec.split_point", 1),
    ("engine.codec.internal_split_point", 1),
    ("codec_targets.split_leaf", 2),
    ("codec_targets.split_internal", 3),
    ("codec_targets.redistribute_leaves", 3),
    ("codec_targets.slotted_exact_fit", 3),
    ("codec_targets.slotted_two_ops", 3),
    ("codec_targets.slotted_compact_keeps_cells", 3),
    ("codec_targets.slotted_search_probe", 3),
    ("codec_targets.crc_single_flip", 1),
    ("codec_targets.leaf_round_trip", 1),
    ("codec_targets.internal_round_trip", 1),
    ("codec_targets.meta_round_trip", 1),
    ("codec_targets.overflow_round_trip", 1),
    ("codec_targets.freelist_round_trip", 1),
    ("engine.net.protocol.scan_limit", 1),
]

_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<level>info|error): (?P<msg>.*)$")


@dataclass
class Result:
    target: str
    conditions: int
    confirmed: int = 0
    unknown: int = 0
    counterexamples: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # CrossHair could not run the target
    seconds: float = 0.0
    ran: bool = False


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(TARGETS_DIR), str(ROOT / "tests"), str(ROOT)])  # tests: slotted.py
    return env


def count_conditions(qualname: str) -> int:
    """Postconditions of a target, as CrossHair parses them (it checks each one)."""
    from crosshair.condition_parser import Pep316Parser
    from crosshair.fnutil import FunctionInfo

    module, _, name = qualname.rpartition(".")
    fn = getattr(import_module(module), name)
    cond = Pep316Parser().get_fn_conditions(FunctionInfo.from_fn(fn))
    if cond is None or cond.fn_syntax_messages:
        raise SystemExit(f"verify: {qualname}: contracts do not parse: {cond and cond.fn_syntax_messages}")
    return len(cond.post)


def command(qualname: str, seconds: float) -> list[str]:
    # The target goes before --extra_plugin, which takes one or more files.
    return [sys.executable, "-m", "crosshair", "check", "--report_all",
            "--per_condition_timeout", f"{seconds:g}", qualname, "--extra_plugin", str(PLUGIN)]


class Runner:
    def __init__(self, per_condition: float, deadline: float) -> None:
        self.per_condition = per_condition
        self.deadline = deadline
        self.lock = threading.Lock()
        self.procs: set[subprocess.Popen] = set()

    def run(self, res: Result, weight: int) -> Result:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            return res
        start = time.monotonic()
        # cwd is the targets directory: `python -m` puts the cwd first on
        # sys.path, and the repository root there would shadow PYTHONPATH.
        proc = subprocess.Popen(command(res.target, self.per_condition * weight), cwd=TARGETS_DIR,
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        with self.lock:
            self.procs.add(proc)
        try:
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started, nothing else
            proc.communicate()
            return res
        finally:
            with self.lock:
                self.procs.discard(proc)
        res.seconds = time.monotonic() - start
        res.ran = True
        for line in out.splitlines():
            m = _LINE.match(line)
            if m is None:
                continue
            path = Path(m["file"])
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            where = f"{shown}:{m['line']}"
            if m["level"] == "error":
                res.counterexamples.append(f"{where}: {m['msg']}")
            elif m["msg"].startswith("Confirmed"):
                res.confirmed += 1
            else:
                res.unknown += 1
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and not res.counterexamples):
            tail = " | ".join(err.strip().splitlines()[-3:])
            res.errors.append(f"crosshair exited {proc.returncode}: {tail}")
        # A condition CrossHair did not report on (it stopped at a counterexamples) is unknown.
        res.unknown = max(res.unknown, res.conditions - res.confirmed - len(res.counterexamples))
        return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-condition", type=float, default=3.0, help="CPU seconds per condition (x weight)")
    ap.add_argument("--total", type=float, default=180.0, help="wall-clock bound for the whole run")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--only", default="", help="run only targets whose name contains this")
    args = ap.parse_args(argv)

    sys.path[:0] = [p for p in _env()["PYTHONPATH"].split(os.pathsep)]
    chosen = [(name, w) for name, w in TARGETS if args.only in name]
    if not chosen:
        raise SystemExit(f"verify: no target matches {args.only!r}")
    results = {name: Result(name, count_conditions(name)) for name, _ in chosen}
    weights = dict(chosen)
    # Longest first, so the two workers finish close together.
    order = sorted(chosen, key=lambda t: -results[t[0]].conditions * t[1])
    start = time.monotonic()
    runner = Runner(args.per_condition, start + args.total)
    print(f"verify: {sum(r.conditions for r in results.values())} conditions on {len(chosen)} targets, "
          f"{args.per_condition:g} s per condition (x weight), {args.jobs} jobs, {args.total:g} s budget",
          flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        for res in pool.map(lambda t: runner.run(results[t[0]], weights[t[0]]), order):
            state = "FAIL" if res.counterexamples or res.errors else ("ok" if res.ran else "NOT RUN")
            print(f"  {res.target:44} {res.conditions:2} cond  {res.confirmed:2} confirmed  "
                  f"{res.unknown:2} unknown  {len(res.counterexamples)} cex  {res.seconds:6.1f} s  {state}",
                  flush=True)
    elapsed = time.monotonic() - start
    rs = list(results.values())
    total = sum(r.conditions for r in rs)
    confirmed = sum(r.confirmed for r in rs)
    cex = [c for r in rs for c in r.counterexamples]
    errors = [f"{r.target}: {e}" for r in rs for e in r.errors]
    not_run = [r.target for r in rs if not r.ran]
    unknown = sum(r.unknown for r in rs if r.ran)
    print(f"verify: conditions checked {total - sum(r.conditions for r in rs if not r.ran)}/{total}, "
          f"confirmed {confirmed}, unknown {unknown}, counterexamples {len(cex)}, "
          f"{elapsed:.1f} s wall")
    for line in cex:
        print(f"COUNTEREXAMPLE {line}")
    for line in errors:
        print(f"ERROR {line}")
    for r in rs:
        if r.counterexamples or r.errors:
            cmd = " ".join(command(r.target, args.per_condition * weights[r.target]))
            print(f"replay: cd {TARGETS_DIR} && PYTHONPATH={_env()['PYTHONPATH']} {cmd} --report_verbose")
    if cex or errors:
        return 1
    if not_run:
        print(f"verify: budget of {args.total:g} s ran out; not checked: {', '.join(not_run)}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

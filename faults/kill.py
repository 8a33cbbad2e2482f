"""Real process kills: SIGKILL a writer at random moments, then check that
every write it acknowledged survived.

`run_kills(n, seed)` runs `n` trials. In each, a child process (this module
run as `python -m faults.kill child ...`) opens the database with
`sync="full"`, `pool_pages=16` (dirty pages spill to the log) and a small
`checkpoint_bytes` (automatic checkpoints), then performs a seeded sequence
of operations (`faults.workload.generate` with the mix `KILL`): puts (some
with overflow values), deletes, batches, explicit checkpoints, on keys every
trial shares, so later trials overwrite and delete earlier ones'. After each
operation returns it writes the operation's index to its stdout pipe. The
parent reads the pipe, sends SIGKILL at a seeded random moment (most while
writing, some during start-up and recovery), reopens the database (which
recovers) and checks:

- every acknowledged operation is in effect; the one in flight may be
  either way; nothing else changed (contents are compared in full against a
  model replayed from the same seed);
- `check()` is clean.

Trials share a database file in generations of `GENERATION` trials, so a
later trial's child also recovers from the previous kill.

`python -m faults.kill run --trials 20 --seed 1` runs a campaign from the
command line and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import engine
from faults.workload import Mix, Model, apply_op, contents, generate
from models import ModelDatabase

__all__ = ["GENERATION", "KILL", "TREE", "run_kills", "trial_ops"]

GENERATION = 20  # trials per database file before starting a fresh one
TREE = "kill"
_READY = b"ready\n"
_MAX_OPS = 200_000  # a child that is never killed stops here


# Each trial's writes to one tree: puts (some overflow), deletes, batches,
# checkpoints. Keys carry no random bytes, so every trial draws from the same
# keys: a later trial overwrites and deletes what earlier ones wrote.
KILL = Mix(trees=(TREE,), churn=None, first=1.0, keys=2000, long_keys=0.0, drain=None,
           weights=(("checkpoint", 0.03), ("delete", 0.10), ("batch", 0.10), ("overflow", 0.07)),
           batch=(2, 5), values=(20, 400), big_values=(5000, 20000), batch_values=((20, 400),))


def trial_ops(seed: int, trial: int) -> Iterator[tuple]:
    """The seeded operations of one trial (`faults.workload` tuples on tree
    `TREE`, created first), lazily, without end."""
    return generate(random.Random(f"{seed}:{trial}"), KILL)


# -- the child ----------------------------------------------------------------------

def _child(path: str, seed: int, trial: int) -> None:
    out = sys.stdout.fileno()
    db = engine.open(path, sync="full", pool_pages=16, checkpoint_bytes=64 * 1024)
    os.write(out, _READY)
    for i, op in enumerate(trial_ops(seed, trial)):
        if i >= _MAX_OPS:
            break
        apply_op(db, op)
        os.write(out, b"%d\n" % i)  # acknowledged: the operation returned
    os._exit(0)  # never reached in a trial: the parent kills first


# -- the parent ---------------------------------------------------------------------

class _Reader(threading.Thread):
    """Collects the child's acknowledgements as they arrive."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.ready = threading.Event()  # also set when the pipe closes, so nobody waits forever
        self.saw_ready = False
        self.last = -1
        self.garbage: list[bytes] = []

    def run(self) -> None:
        for line in self.stream:
            if line == _READY:
                self.saw_ready = True
                self.ready.set()
            elif line.endswith(b"\n") and line[:-1].isdigit():
                self.last = int(line)
            else:
                self.garbage.append(line)
        self.ready.set()


def _read_all(path: str) -> tuple[Model, list[str]]:
    db = engine.open(path, sync="full")
    try:
        state = contents(db)
        problems = db.check().problems
    finally:
        db.close()
    return state, problems


def run_kills(n: int, seed: int, workdir: str | os.PathLike[str] | None = None,
              progress: Callable[[int, dict], None] | None = None) -> dict:
    """Run `n` SIGKILL trials; returns {"trials", "acknowledged", "lost",
    "failures": [...], "kills_before_ready", "seconds"}. `lost` counts
    acknowledged operations not in effect after recovery; each failure is a
    dict saying which trial, what went wrong and how to replay it.
    `progress(done, counts)` is called after each trial."""
    owned = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="dragondb-kill-") if owned else None
    root = tmp.name if tmp is not None else os.fspath(workdir)
    os.makedirs(root, exist_ok=True)
    rng = random.Random(seed)
    counts: dict = {"trials": 0, "acknowledged": 0, "lost": 0, "failures": [], "kills_before_ready": 0,
                    "seconds": 0.0}
    started = time.monotonic()
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    model: Model = {}
    path = ""
    try:
        for trial in range(n):
            if trial % GENERATION == 0:
                path = os.path.join(root, f"kill-{seed}-{trial // GENERATION}.db")
                model = {}
            early = rng.random() < 0.1  # kill during start-up or recovery, before any write
            delay = rng.uniform(0.0, 0.4) if early else rng.choice((rng.uniform(0, 0.02), rng.uniform(0, 0.3)))
            failure = _trial(path, seed, trial, early, delay, model, env, counts)
            counts["trials"] += 1
            if failure is not None:
                failure.update(trial=trial, seed=seed, path=path,
                               replay=f"python -m faults.kill run --seed {seed} --trials {trial + 1}")
                counts["failures"].append(failure)
                model.clear()  # the next trial starts a fresh file
                path = os.path.join(root, f"kill-{seed}-{trial}-after-failure.db")
            if progress is not None:
                progress(trial + 1, counts)
    finally:
        counts["seconds"] = round(time.monotonic() - started, 3)
        if tmp is not None:
            tmp.cleanup()
    return counts


def _trial(path: str, seed: int, trial: int, early: bool, delay: float, model: Model,
           env: dict, counts: dict) -> dict | None:
    """One kill; updates `model` to the recovered state. A failure dict or None."""
    child = subprocess.Popen([sys.executable, "-m", "faults.kill", "child", path, str(seed), str(trial)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    reader = _Reader(child.stdout)
    reader.start()
    if early:
        time.sleep(delay)
    else:
        if not reader.ready.wait(60) or not reader.saw_ready:
            child.kill()
            child.wait()
            return {"error": "the child never became ready", "stderr": child.stderr.read().decode()[-2000:]}
        time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    code = child.wait(60)
    reader.join(10)
    stderr = child.stderr.read().decode(errors="replace")
    child.stdout.close()
    child.stderr.close()
    if code != -signal.SIGKILL:
        return {"error": f"the child exited with {code} before the kill", "stderr": stderr[-2000:]}
    counts["kills_before_ready"] += not reader.saw_ready
    if reader.garbage:
        return {"error": f"unexpected output from the child: {reader.garbage[:3]!r}"}
    acked = reader.last
    counts["acknowledged"] += acked + 1
    replay = ModelDatabase.from_snapshot(model)
    ops = trial_ops(seed, trial)
    for _ in range(acked + 1):
        apply_op(replay, next(ops))
    expected = replay.snapshot()
    apply_op(replay, next(ops))
    in_flight = replay.snapshot()
    try:
        state, problems = _read_all(path)
    except engine.DragonDBError as exc:
        return {"error": f"reopening after the kill raised {exc!r}", "acknowledged": acked + 1}
    if state not in (expected, in_flight):
        have, want, maybe = state.get(TREE, {}), expected.get(TREE, {}), in_flight.get(TREE, {})
        missing = sum(1 for k, v in want.items() if have.get(k) != v)
        extra = sum(1 for k in have if k not in want and k not in maybe)
        counts["lost"] += missing
        return {"error": f"after {acked + 1} acknowledged operations: {missing} keys missing or stale, "
                         f"{extra} unexpected", "acknowledged": acked + 1}
    if problems:
        return {"error": f"check() after recovery: {problems[:3]}", "acknowledged": acked + 1}
    model.clear()
    model.update(state)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults.kill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("child", help="internal: the writer a trial kills")
    c.add_argument("path")
    c.add_argument("seed", type=int)
    c.add_argument("trial", type=int)
    r = sub.add_parser("run", help="run SIGKILL trials and print the counts as JSON")
    r.add_argument("--trials", type=int, default=20)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--workdir")
    args = parser.parse_args(argv)
    if args.cmd == "child":
        _child(args.path, args.seed, args.trial)
        return 0
    result = run_kills(args.trials, args.seed, args.workdir)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if result["failures"] or result["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""A deterministic thread scheduler over `engine.syncpoints`.

`run(threads, schedule)` starts one real thread per callable but lets only
one run at a time. Each thread parks at its start and at every
`syncpoints.reach(name)`; at each such decision the scheduler picks the next
thread to resume. So a run is a function of its schedule, and
`run(threads, result.schedule)` replays `result.trace` exactly.

A schedule is a seed (`int` or `random.Random`: random choices), a list of
thread indexes (explicit, e.g. drawn by hypothesis: an entry naming a thread
that cannot run, and every decision past the end, takes the default), or
None (the default: keep running the current thread, else the lowest index).

`latch.wait` is special: the engine reaches it in a loop around a
non-blocking try-acquire while another thread holds the latch. A thread
parked there is only worth resuming after some other thread has moved, so
the scheduler prefers others. When every live thread waits on a latch it
resumes the longest waiter; if that goes on (4 rounds per thread) with no
thread getting anywhere, it raises `DeadlockError`.

`explore(make_threads, check)` searches every interleaving (depth-first over
the decisions, CHESS-style stateless model checking) of 2-3 threads up to
`max_points` sync points each, and returns the first failing schedule.

Safety: a resumed thread that neither parks nor finishes within `timeout`
seconds (it blocked outside a sync point, or looped without one) ends the
run with `ScheduleTimeout`; parked threads are then released with
`ScheduleAborted`, a `BaseException`, so `except Exception` in the code under
test cannot swallow it.

Threads the scheduler did not start pass through `reach` untouched.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine import syncpoints

__all__ = [
    "START",
    "DeadlockError",
    "ExploreResult",
    "InterleaveError",
    "RunResult",
    "ScheduleAborted",
    "ScheduleTimeout",
    "explore",
    "run",
]

START = "start"  # the point every thread parks at before its first step
LATCH_WAIT = "latch.wait"
_SPIN_ROUNDS = 4  # fruitless latch.wait resumes allowed per live thread before declaring deadlock

Trace = list[tuple[int, str]]


class InterleaveError(Exception):
    """The scheduler could not finish a run; `.trace` is the run so far."""

    def __init__(self, message: str, trace: Trace) -> None:
        super().__init__(f"{message}; schedule={[i for i, _ in trace]}")
        self.trace = list(trace)

    @property
    def schedule(self) -> list[int]:
        return [i for i, _ in self.trace]


class DeadlockError(InterleaveError):
    """Every live thread is waiting on a latch and none can get it."""


class ScheduleTimeout(InterleaveError):
    """A resumed thread did not reach a sync point or finish in time, or the
    run exceeded `max_steps` decisions."""


class ScheduleAborted(BaseException):
    """Raised inside parked threads when a run is abandoned."""


@dataclass
class RunResult:
    """One complete run: the trace of decisions, each thread's return value
    (None if it raised) and exception (None if it returned)."""

    trace: Trace
    results: list[object]
    errors: list[BaseException | None]

    @property
    def schedule(self) -> list[int]:
        """The explicit schedule that replays this run."""
        return [i for i, _ in self.trace]

    def first_error(self) -> BaseException | None:
        return next((e for e in self.errors if e is not None), None)


class _Chooser:
    """Picks one of `options` (options[0] is the default) at each decision."""

    def choose(self, step: int, options: list[int], current: int | None) -> int:
        return options[0]


class _Seeded(_Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, step: int, options: list[int], current: int | None) -> int:
        return options[0] if len(options) == 1 else self.rng.choice(sorted(options))


class _Explicit(_Chooser):
    def __init__(self, schedule: Sequence[int]) -> None:
        self.schedule = list(schedule)
        self.diverged = False

    def choose(self, step: int, options: list[int], current: int | None) -> int:
        if step < len(self.schedule):
            want = self.schedule[step]
            if want in options:
                return want
            self.diverged = True
        return options[0]


@dataclass
class _Worker:
    index: int
    fn: Callable[[], object]
    go: threading.Lock = field(default_factory=threading.Lock)
    point: str = START
    done: bool = False
    result: object = None
    error: BaseException | None = None
    parks: int = 0  # sync points parked at, beyond START and latch.wait
    stamp: int = -1  # progress count when it last parked at latch.wait
    last_run: int = -1  # step at which it last ran


class _Run:
    def __init__(
        self,
        fns: Sequence[Callable[[], object]],
        chooser: _Chooser,
        max_points: int | None,
        timeout: float,
        max_steps: int,
    ) -> None:
        self.workers = [_Worker(i, fn) for i, fn in enumerate(fns)]
        self.chooser = chooser
        self.max_points = max_points
        self.timeout = timeout
        self.max_steps = max_steps
        self.back = threading.Lock()  # released by the running thread when it parks or ends
        self.back.acquire()
        self.by_ident: dict[int, _Worker] = {}
        self.aborted = False
        self.trace: Trace = []
        self.options_log: list[tuple[list[int], int | None]] = []
        self.progress = 0

    # -- worker side ----------------------------------------------------

    def hook(self, name: str) -> None:
        w = self.by_ident.get(threading.get_ident())
        if w is None:
            if name == LATCH_WAIT:
                time.sleep(0)  # a foreign thread spinning on a latch: let the holder run
            return
        if name != LATCH_WAIT:
            if self.max_points is not None and w.parks >= self.max_points:
                return  # past its budget the thread runs on without switching
            w.parks += 1
        w.point = name
        self._signal()
        w.go.acquire()
        if self.aborted:
            raise ScheduleAborted(name)

    def _signal(self) -> None:
        try:
            self.back.release()
        except RuntimeError:  # only after an abort, when nobody waits any more
            pass

    def body(self, w: _Worker) -> None:
        self.by_ident[threading.get_ident()] = w
        self._signal()  # parked at START
        w.go.acquire()
        try:
            if not self.aborted:
                w.result = w.fn()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller of run()
            w.error = exc
        finally:
            # forget the ident first: the OS may reuse it for a thread the code under test starts
            self.by_ident.pop(threading.get_ident(), None)
            w.done = True
            if not self.aborted:
                self._signal()

    # -- scheduler side -------------------------------------------------

    def _wait(self, what: str) -> None:
        if not self.back.acquire(timeout=self.timeout):
            self._abort()
            raise ScheduleTimeout(f"{what} made no progress for {self.timeout}s", self.trace)

    def _abort(self) -> None:
        self.aborted = True
        for w in self.workers:
            if not w.done:
                try:
                    w.go.release()
                except RuntimeError:
                    pass

    def _options(self, current: int | None) -> list[int]:
        live = [w for w in self.workers if not w.done]
        ready = [w.index for w in live if w.point != LATCH_WAIT or w.stamp < self.progress]
        if not ready:
            # all wait on latches: resume the longest waiter, in case a latch was freed unseen
            return [min(live, key=lambda w: (w.last_run, w.index)).index]
        default = current if current in ready else min(ready)
        return [default] + sorted(i for i in ready if i != default)

    def execute(self) -> None:
        for w in self.workers:
            w.go.acquire()  # locked: the worker blocks on it until the scheduler picks it
            threading.Thread(
                target=self.body, args=(w,), daemon=True, name=f"interleave-{w.index}"
            ).start()
            self._wait(f"thread {w.index} start")  # it registered and parked at START
        current: int | None = None
        spins = 0
        step = 0
        while any(not w.done for w in self.workers):
            if step >= self.max_steps:
                self._abort()
                raise ScheduleTimeout(f"more than {self.max_steps} decisions", self.trace)
            options = self._options(current)
            pick = self.chooser.choose(step, options, current)
            assert pick in options, f"execute: chooser picked {pick} not in {options}"
            self.options_log.append((options, current))
            w = self.workers[pick]
            came_from = w.point
            self.trace.append((pick, came_from))
            w.last_run = step
            step += 1
            w.go.release()
            self._wait(f"thread {pick} after {came_from!r}")
            current = pick
            if came_from == LATCH_WAIT and not w.done and w.point == LATCH_WAIT:
                spins += 1  # tried the latch again and still waits: nothing moved
                if spins >= _SPIN_ROUNDS * sum(not x.done for x in self.workers):
                    self._abort()
                    raise DeadlockError("every live thread waits on a latch", self.trace)
            else:
                self.progress += 1
                spins = 0
            if not w.done and w.point == LATCH_WAIT:
                w.stamp = self.progress


def _chooser_for(schedule: object) -> _Chooser:
    if schedule is None:
        return _Chooser()
    if isinstance(schedule, _Chooser):
        return schedule
    if isinstance(schedule, random.Random):
        return _Seeded(schedule)
    if isinstance(schedule, int) and not isinstance(schedule, bool):
        return _Seeded(random.Random(schedule))
    if isinstance(schedule, Sequence) and not isinstance(schedule, str | bytes):
        return _Explicit(schedule)
    raise TypeError(
        f"run: schedule must be None, an int seed, a random.Random or a list of ints, not {schedule!r}"
    )


def _run(
    threads: Sequence[Callable[[], object]],
    chooser: _Chooser,
    max_points: int | None,
    timeout: float,
    max_steps: int,
) -> _Run:
    r = _Run(threads, chooser, max_points, timeout, max_steps)
    syncpoints.install(r.hook)
    try:
        r.execute()
    finally:
        syncpoints.uninstall()
    return r


def run(
    threads: Sequence[Callable[[], object]],
    schedule: object = None,
    *,
    max_points: int | None = None,
    timeout: float = 10.0,
    max_steps: int = 100_000,
    raise_errors: bool = True,
) -> RunResult:
    """Run `threads` one at a time, switching only at sync points.

    Returns a `RunResult`; with `raise_errors` the first exception a thread
    raised is re-raised here, with the trace and replay schedule in its notes.
    `max_points` caps how many sync points per thread are decisions (past
    it a thread runs on, except at `latch.wait`). Raises `DeadlockError`
    or `ScheduleTimeout` when the run cannot finish.
    """
    r = _run(threads, _chooser_for(schedule), max_points, timeout, max_steps)
    result = RunResult(r.trace, [w.result for w in r.workers], [w.error for w in r.workers])
    err = result.first_error()
    if raise_errors and err is not None:
        err.add_note(f"interleave trace: {result.trace}")
        err.add_note(f"replay with faults.interleave.run(threads, {result.schedule})")
        raise err
    return result


@dataclass
class ExploreResult:
    """Outcome of `explore`: `runs` interleavings executed; `failing` is the
    schedule of the first failing run (None if none failed), with its trace
    and error; `complete` is True when every interleaving was covered."""

    runs: int
    failing: list[int] | None = None
    trace: Trace | None = None
    error: BaseException | None = None
    complete: bool = False


def explore(
    make_threads: Callable[[], object],
    check: Callable[[RunResult], object] | None = None,
    *,
    max_threads: int = 3,
    max_points: int = 8,
    max_runs: int = 100_000,
    preemption_bound: int | None = None,
    timeout: float = 10.0,
) -> ExploreResult:
    """Run every interleaving of the threads `make_threads()` builds.

    `make_threads()` returns fresh state each time, as a list of callables or
    a pair `(threads, check_state)` where `check_state()` inspects that state.
    After each complete run `check(result)` (if given) and `check_state()`
    run; a run fails when a thread raised, a check raised or returned False,
    or the run deadlocked or hung (`ScheduleTimeout`). The search stops at
    the first failure, or after `max_runs` runs. Each thread's first
    `max_points` sync points are decisions; later ones are passed through.
    A failing schedule replays with `run(threads, result.failing)`. `preemption_bound` limits switches away from a thread
    that could have continued (CHESS), which keeps larger searches small.
    """
    prefix: list[int] = []
    runs = 0
    while True:
        built = make_threads()
        threads, check_state = built if isinstance(built, tuple) else (built, None)
        if not 1 <= len(threads) <= max_threads:
            raise ValueError(f"explore: {len(threads)} threads, expected 1..{max_threads}")
        chooser = _Explicit(prefix)
        error: BaseException | None = None
        r: _Run | None = None
        try:
            r = _run(threads, chooser, max_points, timeout, 100_000)
        except (DeadlockError, ScheduleTimeout) as exc:
            error = exc
        runs += 1
        if r is not None:
            result = RunResult(r.trace, [w.result for w in r.workers], [w.error for w in r.workers])
            error = result.first_error()
            if error is None:
                error = _run_checks(check, check_state, result)
            if chooser.diverged:
                raise InterleaveError(
                    "explore: a replayed prefix took a different path (nondeterministic threads?)",
                    r.trace,
                )
            log = r.options_log
            trace = r.trace
        else:
            assert isinstance(error, InterleaveError), (
                "explore: run failed without a scheduler error"
            )
            trace = error.trace
            log = []
        if error is not None:
            return ExploreResult(runs, [i for i, _ in trace], trace, error, complete=False)
        if runs >= max_runs:
            return ExploreResult(runs, complete=False)
        nxt = _next_prefix([i for i, _ in trace], log, preemption_bound)
        if nxt is None:
            return ExploreResult(runs, complete=True)
        prefix = nxt


def _run_checks(
    check: Callable[[RunResult], object] | None,
    check_state: Callable[[], object] | None,
    result: RunResult,
) -> BaseException | None:
    for fn, args in ((check, (result,)), (check_state, ())):
        if fn is None:
            continue
        try:
            ok = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a failing check is the search's answer
            return exc
        if ok is False:
            return AssertionError(f"explore: check returned False for trace {result.trace}")
    return None


def _next_prefix(
    chosen: list[int], log: list[tuple[list[int], int | None]], bound: int | None
) -> list[int] | None:
    """The next schedule prefix in depth-first order, or None when done."""
    preempted = []
    count = 0
    for pick, (options, current) in zip(chosen, log, strict=True):
        preempted.append(count)
        if current in options and pick != current:
            count += 1
    for d in range(len(log) - 1, -1, -1):
        options, current = log[d]
        for alt in options[options.index(chosen[d]) + 1 :]:
            cost = preempted[d] + (1 if current in options and alt != current else 0)
            if bound is None or cost <= bound:
                return chosen[:d] + [alt]
    return None

"""The deterministic scheduler on toy racy code written here.

`LazyRoot` is the seed's single-root race in miniature: a writer checks for
a root, takes the latch, and creates one. Without the double check under
the latch, two threads can both create a root. The engine's own tests
(single root, duplicate frame) use the same scheduler.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import syncpoints
from faults.interleave import (
    START,
    DeadlockError,
    ScheduleTimeout,
    explore,
    run,
)


class Latch:
    """The engine's latch discipline under a scheduler: spin on a
    non-blocking try-acquire, yielding at `latch.wait`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> Latch:
        while not self._lock.acquire(blocking=False):
            syncpoints.reach("latch.wait")
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class LazyRoot:
    def __init__(self, double_check: bool) -> None:
        self.double_check = double_check
        self.latch = Latch()
        self.root: object | None = None
        self.creates = 0

    def get_or_create(self) -> object:
        syncpoints.reach("btree.root.check")
        if self.root is None:
            with self.latch:
                if self.double_check and self.root is not None:
                    return self.root
                syncpoints.reach("btree.root.create")
                self.creates += 1
                self.root = object()
        return self.root


def _threads(state: LazyRoot, n: int = 2) -> list:
    return [state.get_or_create] * n


def test_random_schedules_find_the_double_init() -> None:
    found = None
    for seed in range(200):
        state = LazyRoot(double_check=False)
        result = run(_threads(state), seed)
        if state.creates == 2:
            found = (seed, result)
            break
    assert found is not None, "200 seeds never let two threads past the check"
    seed, result = found
    checks = [i for i, (t, p) in enumerate(result.trace) if p == "btree.root.check"]
    creates = [i for i, (t, p) in enumerate(result.trace) if p == "btree.root.create"]
    assert len(checks) == 2 and len(creates) == 2
    assert max(checks) < min(creates), "both threads passed the check before either created"
    # the results differ: each thread got its own root
    assert result.results[0] is not result.results[1]


def test_random_schedules_with_double_check_never_double_init() -> None:
    for seed in range(100):
        state = LazyRoot(double_check=True)
        result = run(_threads(state), seed)
        assert state.creates == 1, f"seed {seed}: {result.trace}"
        assert result.results[0] is result.results[1]


def test_explore_finds_the_race_without_double_check() -> None:
    def make():
        state = LazyRoot(double_check=False)
        return _threads(state), lambda: state.creates == 1

    found = explore(make)
    assert found.failing is not None and not found.complete
    assert isinstance(found.error, AssertionError)
    # the failing schedule replays to the same trace and the same bug
    state = LazyRoot(double_check=False)
    replay = run(_threads(state), found.failing)
    assert replay.trace == found.trace
    assert state.creates == 2


@pytest.mark.parametrize("n", [2, 3])
def test_explore_finds_nothing_with_double_check(n) -> None:
    def make():
        state = LazyRoot(double_check=True)
        return _threads(state, n), lambda: state.creates == 1

    found = explore(make, max_threads=3)
    assert found.failing is None and found.error is None
    assert found.complete
    assert found.runs > (10 if n == 2 else 100), f"only {found.runs} interleavings explored"


def test_explore_counts_every_interleaving_once() -> None:
    # two threads of 3 decisions each (start + 2 points): C(6, 3) = 20 orders
    traces: set[tuple] = set()

    def make():
        seen: list[tuple[int, int]] = []

        def worker(t: int):
            def body() -> None:
                for i in range(2):
                    seen.append((t, i))
                    syncpoints.reach("wal.append")
                seen.append((t, 2))

            return body

        return [worker(0), worker(1)], lambda: traces.add(tuple(seen)) or True

    found = explore(make)
    assert found.complete
    assert found.runs == 20
    assert len(traces) == 20, "each run was a different interleaving"


def test_explore_preemption_bound_limits_the_search() -> None:
    def make():
        state = LazyRoot(double_check=True)
        return _threads(state, 3), lambda: state.creates == 1

    full = explore(make)
    bounded = explore(make, preemption_bound=1)
    assert bounded.complete and full.complete
    assert 0 < bounded.runs < full.runs


def test_explore_stops_at_max_runs() -> None:
    def make():
        state = LazyRoot(double_check=True)
        return _threads(state, 3), lambda: state.creates == 1

    found = explore(make, max_runs=5)
    assert found.runs == 5 and not found.complete and found.failing is None


def test_explore_reports_thread_exception() -> None:
    def make():
        state = LazyRoot(double_check=False)

        def strict() -> None:
            state.get_or_create()
            if state.creates > 1:
                raise RuntimeError("two roots")

        return [strict, strict]

    found = explore(make)
    assert isinstance(found.error, RuntimeError)
    assert found.failing is not None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2), max_size=30))
def test_any_drawn_schedule_replays_identically(schedule) -> None:
    first_state = LazyRoot(double_check=True)
    first = run(_threads(first_state, 3), schedule)
    again_state = LazyRoot(double_check=True)
    again = run(_threads(again_state, 3), first.schedule)
    assert again.trace == first.trace
    assert first_state.creates == again_state.creates == 1
    assert first.trace[0][1] == START


def test_seed_replays_identically() -> None:
    for seed in range(20):
        a = run(_threads(LazyRoot(False), 3), seed)
        b = run(_threads(LazyRoot(False), 3), seed)
        c = run(_threads(LazyRoot(False), 3), a.schedule)
        assert a.trace == b.trace == c.trace


def test_default_schedule_runs_threads_in_turn() -> None:
    order: list[int] = []

    def worker(t: int):
        def body() -> None:
            order.append(t)
            syncpoints.reach("btree.split")
            order.append(t)

        return body

    result = run([worker(0), worker(1)])
    assert order == [0, 0, 1, 1], "no schedule: each thread runs until it ends"
    assert result.trace == [(0, START), (0, "btree.split"), (1, START), (1, "btree.split")]


def test_latch_wait_loop_does_not_deadlock() -> None:
    latch = Latch()
    log: list[str] = []

    def holder() -> None:
        with latch:
            log.append("holder in")
            syncpoints.reach("btree.split")  # parked while holding the latch
            syncpoints.reach("btree.merge")
            log.append("holder out")

    def waiter() -> None:
        syncpoints.reach("bufferpool.evict")
        with latch:
            log.append("waiter in")

    # force: holder takes the latch, then the waiter tries it repeatedly
    result = run([holder, waiter], [0, 1, 1, 1, 1, 1, 1])
    assert log == ["holder in", "holder out", "waiter in"]
    waits = [p for t, p in result.trace if t == 1 and p == "latch.wait"]
    assert 1 <= len(waits) <= 3, "a waiter is not resumed again until the holder moved"
    for seed in range(50):
        log.clear()
        run([holder, waiter], seed)
        assert log.index("holder out") < log.index("waiter in") or log[0] == "waiter in"


def test_real_deadlock_is_reported() -> None:
    a, b = Latch(), Latch()

    def ab() -> None:
        with a:
            syncpoints.reach("btree.split")
            with b:
                pass

    def ba() -> None:
        with b:
            syncpoints.reach("btree.split")
            with a:
                pass

    with pytest.raises(DeadlockError) as info:
        run([ab, ba], [0, 1, 0, 1])
    assert info.value.schedule[:4] == [0, 1, 0, 1]
    assert not syncpoints.installed(), "the hook is removed after a failed run"
    found = explore(lambda: [ab, ba])
    assert isinstance(found.error, DeadlockError)


def test_thread_exception_propagates_with_replay_note() -> None:
    def boom() -> None:
        syncpoints.reach("wal.append")
        raise KeyError("boom")

    def fine() -> int:
        syncpoints.reach("wal.sync")
        return 7

    with pytest.raises(KeyError) as info:
        run([fine, boom], 3)
    assert any("replay with faults.interleave.run" in n for n in info.value.__notes__)
    result = run([fine, boom], 3, raise_errors=False)
    assert result.results[0] == 7 and isinstance(result.errors[1], KeyError)


def test_blocked_thread_times_out_instead_of_hanging() -> None:
    gate = threading.Event()

    def stuck() -> None:
        syncpoints.reach("wal.sync")
        gate.wait()  # blocks outside any sync point

    def other() -> None:
        syncpoints.reach("wal.sync")

    t0 = time.monotonic()
    try:
        with pytest.raises(ScheduleTimeout):
            run([stuck, other], [0, 0, 0], timeout=0.3)
    finally:
        gate.set()
    assert time.monotonic() - t0 < 5
    assert not syncpoints.installed()


def test_foreign_threads_pass_through() -> None:
    hits: list[str] = []

    def spawner() -> None:
        t = threading.Thread(target=lambda: (syncpoints.reach("wal.append"), hits.append("child")))
        t.start()
        t.join()  # would hang if the child parked
        syncpoints.reach("wal.sync")

    result = run([spawner, spawner], 0)
    assert hits == ["child", "child"]
    assert sorted(p for _, p in result.trace) == [START, START, "wal.sync", "wal.sync"]


def test_max_points_bounds_decisions_per_thread() -> None:
    def chatty() -> None:
        for _ in range(20):
            syncpoints.reach("wal.append")

    result = run([chatty, chatty], 1, max_points=3)
    assert len(result.trace) == 2 * (1 + 3)


def test_bad_schedule_type() -> None:
    with pytest.raises(TypeError):
        run([lambda: None], "0, 1")
    assert not syncpoints.installed()


def test_schedules_per_second(record_property) -> None:
    # measured, not asserted as a deadline: reported in the test properties
    n, t0 = 0, time.perf_counter()
    while n < 300:
        run(_threads(LazyRoot(False), 2), n)
        n += 1
    rate = n / (time.perf_counter() - t0)
    record_property("schedules_per_second", round(rate))
    print(f"interleave: {rate:.0f} schedules/s (2 threads, lazy init)")
    assert n == 300

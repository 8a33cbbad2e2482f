"""In-memory latches (a `latch` is in memory; a `lock` is a file lock).

`RWLatch`: many readers or one writer, writer-preferring so a stream of
readers cannot starve a writer. While a sync-point scheduler is installed,
waiting goes through `syncpoints.reach("latch.wait")` instead of blocking, so
a cooperative scheduler that runs one thread at a time never deadlocks.
"""

from __future__ import annotations

import threading

from engine import syncpoints

__all__ = ["RWLatch", "wait"]


def wait(cond: threading.Condition, mutex: threading.Lock) -> None:
    """Wait on `cond` (whose lock `mutex` the caller holds). Under a sync-point
    scheduler, yield at "latch.wait" instead of blocking, so the scheduler can
    run the thread that will release it."""
    if syncpoints.installed():
        mutex.release()
        try:
            syncpoints.reach("latch.wait")
        finally:
            mutex.acquire()
    else:
        cond.wait()


class RWLatch:
    """Writers wait on their own condition and a release wakes one of them
    (or, with no writer queued, every reader): waking every waiter on each
    release made eight committers spend their time passing the GIL around."""

    __slots__ = ("_mutex", "_readers_cond", "_writers_cond", "_readers", "_writer", "_waiting", "_readers_waiting")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._readers_cond = threading.Condition(self._mutex)
        self._writers_cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer: int | None = None  # thread id of the holder
        self._waiting = 0  # writers queued
        self._readers_waiting = 0

    def acquire_read(self) -> None:
        with self._mutex:
            if self._writer is None and not self._waiting:  # the common, uncontended case
                self._readers += 1
                return
            self._readers_waiting += 1
            try:
                while self._writer is not None or self._waiting:
                    wait(self._readers_cond, self._mutex)
            finally:
                self._readers_waiting -= 1
            self._readers += 1

    def release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if self._readers == 0 and self._waiting:
                self._writers_cond.notify()

    def acquire_write(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._writer is None and not self._readers:  # the common, uncontended case
                self._writer = me
                return
            assert self._writer != me, "RWLatch.acquire_write: not reentrant"
            self._waiting += 1
            try:
                while self._writer is not None or self._readers:
                    wait(self._writers_cond, self._mutex)
            except BaseException:  # interrupted: readers held back for this writer may go
                self._waiting -= 1
                self._wake()
                raise
            self._waiting -= 1
            self._writer = me

    def release_write(self) -> None:
        with self._mutex:
            self._writer = None
            self._wake()

    def _wake(self) -> None:
        """Hand the free latch on (caller holds the mutex): to one queued
        writer, or else to every waiting reader."""
        if self._writer is not None:
            return
        if self._waiting:
            self._writers_cond.notify()
        elif self._readers_waiting:
            self._readers_cond.notify_all()

    def held_by_me(self) -> bool:
        return self._writer == threading.get_ident()

    def idle(self) -> bool:
        return self._writer is None and self._readers == 0

"""In-memory latches (a `latch` is in memory; a `lock` is a file lock).

`RWLatch`: many readers or one writer, writer-preferring so a stream of
readers cannot starve a writer. While a sync-point scheduler is installed,
waiting goes through `syncpoints.reach("latch.wait")` instead of blocking, so
a cooperative scheduler that runs one thread at a time never deadlocks.
"""

from __future__ import annotations

import threading
from collections import deque

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
    """Many readers or one writer; queued writers are served first come,
    first served. Each queued writer waits on a condition of its own and a
    release wakes only the head of the queue (or, with no writer queued,
    every reader): waking every waiter on each release made eight committers
    spend their time passing the GIL around.

    No barging: while a writer is queued, a newcomer (reader or writer)
    queues behind it even if the latch is free at that moment, so a thread
    looping on writes cannot take the latch again and again ahead of a
    queued `close()` between its release and the head's wakeup.

    | state                  | acquire_read      | acquire_write          |
    |------------------------|-------------------|------------------------|
    | free, nobody queued    | taken at once     | taken at once          |
    | readers, nobody queued | taken at once     | queued                 |
    | writer held or queued  | waits (all wake)  | queued at the tail     |

    A release with writers queued wakes the head; it takes the latch when it
    is free and it is the head, then leaves the queue.
    """

    __slots__ = ("_mutex", "_readers_cond", "_queue", "_readers", "_writer", "_waiting", "_readers_waiting")

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._readers_cond = threading.Condition(self._mutex)
        self._queue: deque[threading.Condition] = deque()  # queued writers, head first
        self._readers = 0
        self._writer: int | None = None  # thread id of the holder
        self._waiting = 0  # writers queued (len(_queue), kept as an int for the fast paths)
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
                self._queue[0].notify()

    def acquire_write(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._writer is None and not self._readers and not self._waiting:  # uncontended
                self._writer = me
                return
            assert self._writer != me, "RWLatch.acquire_write: not reentrant"
            turn = threading.Condition(self._mutex)
            queue = self._queue
            queue.append(turn)
            self._waiting += 1
            try:
                while self._writer is not None or self._readers or queue[0] is not turn:
                    wait(turn, self._mutex)
            except BaseException:  # interrupted: leave the queue; whoever it held back may go
                queue.remove(turn)
                self._waiting -= 1
                self._wake()
                raise
            queue.popleft()
            self._waiting -= 1
            self._writer = me

    def release_write(self) -> None:
        with self._mutex:
            self._writer = None
            self._wake()

    def _wake(self) -> None:
        """Hand the free latch on (caller holds the mutex): to the head of
        the writers' queue, or else to every waiting reader."""
        if self._writer is not None:
            return
        if self._waiting:
            if not self._readers:
                self._queue[0].notify()
        elif self._readers_waiting:
            self._readers_cond.notify_all()

    def held_by_me(self) -> bool:
        return self._writer == threading.get_ident()

    def idle(self) -> bool:
        return self._writer is None and self._readers == 0

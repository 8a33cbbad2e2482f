"""The DragonDB network server: the Go engine's TCP protocol, on asyncio.

The bytes are `engine.net.protocol`'s (docs/protocol.md); this module is the
I/O around it: connections, the thread pool, timeouts and shutdown.

Where the Go server is unsafe this one is safer: `S` stops the server only
when it was started with `allow_shutdown=True`; a body above `max_body`, an
unknown op-code or a truncated request gets `E` and the connection closes
(the stream can no longer be framed, so nothing after it is executed); a
body that frames correctly but does not decode gets `E` and the connection
continues. No request touches the database before all of its bytes arrived.

Threads: the engine is blocking and thread-safe. Writes and scans run in a
thread pool, so a commit's fsync never stalls the event loop and concurrent
clients' commits can share one fsync (group commit). Gets run on the event
loop (`inline_reads=True`, the default): a get is a short call that holds
the GIL anyway, and a thread handoff would cost more than the call itself.

Shutdown (SIGTERM, SIGINT, `Server.stop()` or an allowed `S`): stop
accepting, stop reading, answer every request already fully received, send
`S` to every client, close the connections, checkpoint the database and
close it if the server opened it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.net.handlers import Handlers
from engine.net.options import ServerOptions
from engine.net.protocol import (
    OK,
    OP_CLOSE,
    OP_GET,
    OP_PING,
    OP_SHUTDOWN,
    SHUTDOWN,
    FramingError,
    RequestParser,
    encode_error,
)

__all__ = ["Server"]


# -- one connection --------------------------------------------------------------

_QUEUE_HIGH = 256  # parsed requests waiting: stop reading above this
_QUEUE_LOW = 32  # ... and resume below this
_CLOSE_NOW = -1  # queue marker: write the message, then close
_ROUND_BUDGET = 64  # inline replies (a 4 KiB page counts as one) per loop turn


class _Connection(asyncio.Protocol):
    """One client. `data_received` frames requests into a queue; one worker
    task answers them in order, so pipelined replies keep request order.

    Backpressure: at most `_QUEUE_HIGH` framed requests wait; past that the
    socket is paused and further bytes stay unframed in the parser until the
    worker catches up."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server._loop
        self._parser = RequestParser(server.max_body)
        self._queue: deque[tuple[int, Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self.reading = True
        self._framing_dead = False  # no further bytes will be framed
        self._closing = False  # server shutdown: finish the queue, send S
        self._eof = False
        self._lost = False
        self._busy = False  # a request is executing
        self.last_activity = self._loop.time()
        self.partial_since: float | None = None  # first byte of an incomplete request
        self.write_paused_since: float | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport), "connection_made: not a stream"
        self._transport = transport
        # `_connections` holds live sockets; `_workers` holds running worker
        # tasks, which may outlive the socket while an engine call finishes.
        self._server._connections.add(self)
        self._task = self._loop.create_task(self._run())
        self._server._workers.add(self._task)
        self._task.add_done_callback(self._server._workers.discard)
        if self._server._stopping:
            self.begin_shutdown()

    def data_received(self, data: bytes) -> None:
        if self._framing_dead or self._closing:
            return  # closing: input is discarded
        now = self._loop.time()
        self.last_activity = now
        self._parser.feed(data)
        self._frame()
        if self._parser.pending:
            if self.partial_since is None:
                self.partial_since = now
        else:
            self.partial_since = None
        if len(self._queue) >= _QUEUE_HIGH:
            self._pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if self._linger is not None:
            self._transport.close()  # type: ignore[union-attr]
        self._wake()
        return True  # keep the write side open until the queue is answered

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._linger is not None:
            self._linger.cancel()
        self._server._connections.discard(self)
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused_since = self._loop.time()
        self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        self.write_paused_since = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # called by the server

    def begin_shutdown(self) -> None:
        """Stop reading; the worker answers every request received in full,
        then sends S. A half-received request is dropped, never applied."""
        if self._closing:
            return
        if not self._framing_dead:
            self._frame(limit=None)
        self._closing = True
        self._parser.clear()
        self.partial_since = None
        self._pause_reading()
        self._wake()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def idle(self) -> bool:
        return not (self._busy or self._queue or self._parser.pending)

    def expire_partial(self) -> None:
        """A request started arriving too long ago and is still incomplete."""
        self._kill_framing("request timed out")
        self._wake()

    # internals

    def _frame(self, limit: int | None = _QUEUE_HIGH) -> None:
        queue = self._queue
        parser = self._parser
        try:
            while limit is None or len(queue) < limit:
                req = parser.next_request()
                if req is None:
                    break
                queue.append(req)
        except FramingError as exc:
            self._kill_framing(str(exc))

    def _kill_framing(self, message: str) -> None:
        if self._framing_dead:
            return
        self._framing_dead = True
        self._parser.clear()
        self.partial_since = None
        self._queue.append((_CLOSE_NOW, message))
        self._pause_reading()

    def _pause_reading(self) -> None:
        if self.reading and self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()
        self.reading = False

    def _resume_reading(self) -> None:
        if self.reading or self._framing_dead or self._closing or self._eof:
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self.reading = True
        if self._parser.pending:
            # The client's clock for a partial request restarts: we, not it, paused.
            self.partial_since = self._loop.time()
        transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self, out: list[bytes]) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.last_activity = self._loop.time()
        out.clear()

    async def _run(self) -> None:
        try:
            await self._serve_queue()
        except Exception:  # noqa: BLE001 - a bug here must not take down the server
            self.abort()
        finally:
            self._busy = False

    async def _serve_queue(self) -> None:  # noqa: C901 - hot dispatch loop, inlined for speed; measure before splitting
        server = self._server
        pooled = server._pooled
        queue = self._queue
        loop = self._loop
        inline_get = server._handlers.get if server.inline_reads else None
        out: list[bytes] = []
        while True:
            # Inline work is bounded per round, so one pipelining client
            # cannot keep the loop from other connections.
            budget = _ROUND_BUDGET
            while queue and not self._lost and budget > 0:
                op, body = queue.popleft()
                if op == OP_GET and inline_get is not None:
                    reply = inline_get(body)
                    out.append(reply)
                    budget -= 1 + len(reply) // 4096
                elif op in pooled:
                    if out:
                        self._flush(out)
                    self._busy = True
                    try:
                        out.append(await loop.run_in_executor(server._executor, pooled[op], body))
                    finally:
                        self._busy = False
                elif op == OP_PING:
                    out.append(OK)
                elif op == OP_CLOSE:
                    out.append(OK)
                    self._flush(out)
                    self._finish(None)
                    return
                elif op == OP_SHUTDOWN:
                    if server.allow_shutdown:
                        # Replies so far go out first; S follows from begin_shutdown.
                        server.request_stop()
                    else:
                        out.append(
                            encode_error(
                                "shutdown not allowed (start the server with --allow-shutdown)"
                            )
                        )
                else:
                    assert op == _CLOSE_NOW, "_serve_queue: unknown queue entry"
                    out.append(encode_error(body))
                    self._flush(out)
                    self._finish(None)
                    return
            if out:
                self._flush(out)
            if self._lost:
                return
            if self._drain is not None:
                await self._drain  # resolved by resume_writing or connection_lost
                continue
            if len(queue) < _QUEUE_LOW and not self._framing_dead and not self._closing:
                self._frame()  # bytes held back by backpressure
                if len(queue) < _QUEUE_HIGH:
                    self._resume_reading()
            if queue:
                if budget <= 0:
                    await asyncio.sleep(0)  # let other connections run
                continue
            if self._closing:
                self._finish(SHUTDOWN)
                return
            if self._eof:
                if self._parser.pending and not self._framing_dead:
                    self._kill_framing("truncated request")
                    continue
                self._finish(None)
                return
            self._waiter = loop.create_future()
            await self._waiter
            self._waiter = None

    def _finish(self, last: bytes | None) -> None:
        """Send `last`, then a FIN, and close once the client closes too.

        Closing a socket with unread input makes the kernel send RST, which
        can destroy the reply we just wrote before the client reads it. So
        this is a lingering close: half-close, discard input, close on the
        client's EOF or after `linger` seconds."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if last is not None:
            transport.write(last)
        self._framing_dead = True
        self._queue.clear()
        self._parser.clear()
        self.partial_since = None
        if self._eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._linger = self._loop.call_later(self._server.linger, transport.close)
        transport.resume_reading()
        self.reading = True


# -- the server --------------------------------------------------------------------


class Server:
    """An asyncio TCP server over one tree of an open database.

    `db` is anything with `.tree(name)` returning a get/put/delete/scan
    mapping (an `engine.Database`, a `models.ModelDatabase`). The server
    checkpoints it on stop and closes it only if `close_db` is true.

        server = Server(db, port=0)
        host, port = await server.start()
        ...
        await server.stop()          # or: await server.wait_stopped()
    """

    def __init__(
        self,
        db: Any,
        options: ServerOptions | None = None,
        *,
        close_db: bool = False,
        **changes: Any,
    ) -> None:
        """`options` (default `ServerOptions()`), with `changes` (its field
        names: `port=0`, `allow_shutdown=True`, ...) applied and checked."""
        opts = (options or ServerOptions()).replace(**changes)
        self.options = opts
        self.db = db
        self.host = opts.host
        self.port = opts.port
        self.allow_shutdown = opts.allow_shutdown
        self.max_body = opts.max_body
        self.idle_timeout = opts.idle_timeout
        self.request_timeout = opts.request_timeout
        self.inline_reads = opts.inline_reads
        self.close_db = close_db
        self._handlers = Handlers(db.tree(opts.tree), opts.max_body)
        self._pooled: dict[int, Callable[[bytes], bytes]] = self._handlers.by_op()
        self._pool_size = opts.workers
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._aserver: asyncio.base_events.Server | None = None
        self._connections: set[_Connection] = set()
        self._workers: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Event | None = None
        self._stop_error: BaseException | None = None
        self.address: tuple[str, int] | None = None
        # Seconds a closing connection waits for the client's EOF (see _finish).
        self.linger = min(2.0, opts.request_timeout)

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port) (port 0 picks a free one)."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._executor = ThreadPoolExecutor(self._pool_size, thread_name_prefix="dragondb-server")
        self._aserver = await self._loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        sockname = self._aserver.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        self._sweeper = self._loop.create_task(self._sweep())
        return self.address

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def request_stop(self, *, escalate: bool = False) -> None:
        """Begin a graceful stop. With `escalate` (a second SIGTERM/SIGINT)
        a stop already under way drops every connection at once. Call it on
        the loop; from another thread use `loop.call_soon_threadsafe`."""
        if self._stop_task is None:
            self._stop_task = self._loop.create_task(self.stop())
        elif escalate:
            for conn in list(self._connections):
                conn.abort()

    async def wait_stopped(self) -> None:
        """Wait until the server stopped; re-raises a failure of the final
        checkpoint or close."""
        assert self._stopped is not None, "wait_stopped: server not started"
        await self._stopped.wait()
        if self._stop_error is not None:
            raise self._stop_error

    async def stop(self) -> None:
        """Stop accepting, answer what was received, send S, checkpoint."""
        if self._stopping:
            await self.wait_stopped()
            return
        self._stopping = True
        assert self._stopped is not None, "stop: server not started"
        try:
            await self._drain_connections()
            # Engine calls cannot be interrupted: wait for the ones in flight.
            if self._executor is not None:
                await asyncio.to_thread(self._executor.shutdown, True)
            if self._sweeper is not None:
                self._sweeper.cancel()
            await asyncio.to_thread(self._finish_db)
        except BaseException as exc:
            self._stop_error = exc
            raise
        finally:
            self._stopped.set()

    async def _drain_connections(self) -> None:
        if self._aserver is not None:
            self._aserver.close()
        for conn in list(self._connections):
            conn.begin_shutdown()
        workers = list(self._workers)
        grace = max(self.request_timeout, 1.0)
        if workers:
            _, late = await asyncio.wait(workers, timeout=grace)
            if late:
                for conn in list(self._connections):
                    if conn._task in late:
                        conn.abort()
                _, late = await asyncio.wait(late, timeout=grace)
                for task in late:
                    task.cancel()  # an engine call it waits for still finishes below
        deadline = self._loop.time() + self.linger + 0.5
        while self._connections and self._loop.time() < deadline:
            await asyncio.sleep(0.01)  # lingering closes: wait for the clients' EOF
        for conn in list(self._connections):
            conn.abort()

    def _finish_db(self) -> None:
        try:
            checkpoint = getattr(self.db, "checkpoint", None)
            if checkpoint is not None:
                checkpoint()
        finally:
            if self.close_db:
                self.db.close()

    async def _sweep(self) -> None:
        """Close idle connections and time out slow ones, a few times a timeout."""
        tick = min(self.idle_timeout, self.request_timeout) / 4
        tick = min(max(tick, 0.02), 1.0)
        loop = self._loop
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for conn in list(self._connections):
                if conn.write_paused_since is not None:
                    if now - conn.write_paused_since > self.request_timeout:
                        conn.abort()  # the client does not read its replies
                elif conn.partial_since is not None and conn.reading:
                    if now - conn.partial_since > self.request_timeout:
                        conn.expire_partial()
                elif conn.idle and now - conn.last_activity > self.idle_timeout:
                    conn.abort()

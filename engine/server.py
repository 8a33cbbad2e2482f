"""The DragonDB network server: the Go engine's TCP protocol, on asyncio.

The byte format is the Go server's, kept byte for byte (docs/protocol.md):

    request  = op:u8 [len:u32le body]        P S C carry no body; I G D do
    I body   = klen:u32le key vlen:u32le value
    G/D body = klen:u32le key
    OK       = b"O"                          answers P, I, D, C
    error    = b"E" len:u32le utf8-message
    get      = b"O" len:u32le klen:u32le key vlen:u32le value
    shutdown = b"S"                          sent to every client on stop

Extensions (op-codes the Go server does not use): `R`, a range scan, and
`X`, a delete whose reply says whether the key existed.

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

import argparse
import asyncio
import contextlib
import functools
import math
import os
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.errors import DragonDBError

__all__ = [
    "DEFAULT_MAX_BODY",
    "FramingError",
    "RequestParser",
    "Server",
    "add_serve_arguments",
    "main",
    "serve",
    "serve_from_args",
]

DEFAULT_MAX_BODY = 32 * 1024 * 1024  # largest request body accepted, bytes
DEFAULT_IDLE_TIMEOUT = 300.0  # seconds a connection may sit with nothing to do
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds to finish sending a request / reading replies
SCAN_MAX_ITEMS = 10_000  # cap on pairs per scan reply, whatever the client asks

OP_PING = 0x50  # P
OP_SHUTDOWN = 0x53  # S
OP_CLOSE = 0x43  # C
OP_INSERT = 0x49  # I
OP_GET = 0x47  # G
OP_DELETE = 0x44  # D
OP_SCAN = 0x52  # R: extension, not in the Go server
OP_REMOVE = 0x58  # X: extension, a delete answering whether the key existed

_NO_BODY = frozenset((OP_PING, OP_SHUTDOWN, OP_CLOSE))
_WITH_BODY = frozenset((OP_INSERT, OP_GET, OP_DELETE, OP_SCAN, OP_REMOVE))

NOT_FOUND_MESSAGE = "key not found"  # the client maps exactly this to a missing key
_OK = b"O"
_FOUND, _NOT_FOUND = b"O\x01\x00\x00\x00\x01", b"O\x01\x00\x00\x00\x00"  # X replies: body of one byte
_SHUTDOWN = b"S"
_U32 = struct.Struct("<I")  # every length on the wire: u32 little-endian
_U32x2 = struct.Struct("<II")
_SCAN_HEAD = struct.Struct("<IB")  # limit:u32, flags:u8
_SCAN_FLAG_REVERSE = 0x01
_SCAN_REPLY_HEAD = struct.Struct("<BI")  # more:u8, count:u32
_MAX_MESSAGE = 4096  # error messages are cut to this many bytes


class FramingError(DragonDBError):
    """The request stream cannot be framed any more (unknown op-code,
    body length above the limit). The connection gets `E` and closes;
    nothing after the bad byte is executed."""


class _BodyError(DragonDBError, ValueError):
    """A body that framed correctly but does not decode. Answered with `E`;
    the connection continues, the database is untouched."""


# -- sans-I/O framing and body codecs ----------------------------------------


class RequestParser:
    """Splits a byte stream into `(op, body)` requests; no I/O.

    `feed` appends bytes; `next_request` returns the next complete request,
    or None when more bytes are needed, or raises `FramingError`. It never
    returns a request before all its bytes came, and refuses a header that
    announces more than `max_body` at once, so nobody waits for (or buffers
    toward) an oversized body.
    """

    __slots__ = ("_buf", "_max_body")

    def __init__(self, max_body: int = DEFAULT_MAX_BODY) -> None:
        self._buf = bytearray()
        self._max_body = max_body

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a returned request."""
        return len(self._buf)

    def clear(self) -> None:
        self._buf.clear()

    def next_request(self) -> tuple[int, bytes] | None:
        buf = self._buf
        if not buf:
            return None
        op = buf[0]
        if op in _NO_BODY:
            del buf[:1]
            return op, b""
        if op not in _WITH_BODY:
            raise FramingError(f"unknown op-code 0x{op:02x}")
        if len(buf) < 5:
            return None
        (size,) = _U32.unpack_from(buf, 1)
        if size > self._max_body:
            raise FramingError(f"body length {size} above the limit of {self._max_body}")
        end = 5 + size
        if len(buf) < end:
            return None
        body = bytes(buf[5:end])
        del buf[:end]
        return op, body


def _take(body: bytes, pos: int) -> tuple[bytes, int]:
    """One `len:u32 bytes` field of `body` at `pos`; the bytes and the next pos."""
    if len(body) - pos < 4:
        raise _BodyError("malformed body: missing length")
    (size,) = _U32.unpack_from(body, pos)
    pos += 4
    if size > len(body) - pos:
        raise _BodyError("malformed body: length runs past the end")
    return body[pos : pos + size], pos + size


def decode_key_body(body: bytes) -> bytes:
    """The key of a `G` or `D` body; the body must hold exactly one field."""
    key, pos = _take(body, 0)
    if pos != len(body):
        raise _BodyError("malformed body: trailing bytes")
    return key


def decode_insert_body(body: bytes) -> tuple[bytes, bytes]:
    """The key and value of an `I` body; exactly two fields."""
    key, pos = _take(body, 0)
    value, pos = _take(body, pos)
    if pos != len(body):
        raise _BodyError("malformed body: trailing bytes")
    return key, value


def decode_scan_body(body: bytes) -> tuple[int, bool, bytes, bytes, bytes]:
    """`R` body: limit:u32 flags:u8 start end prefix (each len:u32 bytes,
    empty = unbounded). Returns (limit, reverse, start, end, prefix)."""
    if len(body) < _SCAN_HEAD.size:
        raise _BodyError("malformed body: missing scan header")
    limit, flags = _SCAN_HEAD.unpack_from(body, 0)
    if flags & ~_SCAN_FLAG_REVERSE:
        raise _BodyError("malformed body: unknown scan flags")
    start, pos = _take(body, _SCAN_HEAD.size)
    end, pos = _take(body, pos)
    prefix, pos = _take(body, pos)
    if pos != len(body):
        raise _BodyError("malformed body: trailing bytes")
    return limit, bool(flags & _SCAN_FLAG_REVERSE), start, end, prefix


def encode_error(message: str) -> bytes:
    data = message.encode("utf-8", "replace")
    if len(data) > _MAX_MESSAGE:  # cut on a character boundary: stays valid UTF-8
        data = data[:_MAX_MESSAGE].decode("utf-8", "ignore").encode("utf-8")
    return b"E" + _U32.pack(len(data)) + data


def encode_get(key: bytes, value: bytes) -> bytes:
    return b"".join(
        (
            b"O",
            _U32x2.pack(8 + len(key) + len(value), len(key)),
            key,
            _U32.pack(len(value)),
            value,
        )
    )


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, _BodyError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- request handlers (blocking; run inline or in the pool) --------------------

_MISSING = object()


class _Handlers:
    """Turns decoded requests into engine calls and encoded replies. Every
    exception becomes an `E` reply: a client can never crash the server."""

    __slots__ = ("_tree", "_scan_bytes")

    def __init__(self, tree: Any, scan_bytes: int) -> None:
        self._tree = tree
        self._scan_bytes = scan_bytes

    def get(self, body: bytes) -> bytes:
        try:
            key = decode_key_body(body)
            value = self._tree.get(key, _MISSING)
        except Exception as exc:  # noqa: BLE001 - every failure is an E reply
            return encode_error(_error_text(exc))
        if value is _MISSING:
            return encode_error(NOT_FOUND_MESSAGE)
        return encode_get(key, value)

    def insert(self, body: bytes) -> bytes:
        try:
            key, value = decode_insert_body(body)
            self._tree.put(key, value)
        except Exception as exc:  # noqa: BLE001
            return encode_error(_error_text(exc))
        return _OK

    def delete(self, body: bytes) -> bytes:
        # A missing key is not an error, as in the Go server: delete is idempotent.
        try:
            self._tree.delete(decode_key_body(body))
        except Exception as exc:  # noqa: BLE001
            return encode_error(_error_text(exc))
        return _OK

    def remove(self, body: bytes) -> bytes:
        try:
            found = self._tree.delete(decode_key_body(body))
        except Exception as exc:  # noqa: BLE001
            return encode_error(_error_text(exc))
        return _FOUND if found else _NOT_FOUND

    def scan(self, body: bytes) -> bytes:
        try:
            limit, reverse, start, end, prefix = decode_scan_body(body)
            limit = min(limit or SCAN_MAX_ITEMS, SCAN_MAX_ITEMS)
            it = self._tree.scan(start or None, end or None, reverse=reverse, prefix=prefix or None)
            parts: list[bytes] = []
            size = count = 0
            more = 0
            for key, value in it:
                if count >= limit or (
                    count and size + 8 + len(key) + len(value) > self._scan_bytes
                ):
                    more = 1
                    break
                parts += (_U32.pack(len(key)), key, _U32.pack(len(value)), value)
                size += 8 + len(key) + len(value)
                count += 1
        except Exception as exc:  # noqa: BLE001
            return encode_error(_error_text(exc))
        head = _SCAN_REPLY_HEAD.pack(more, count)
        return b"".join((b"O", _U32.pack(len(head) + size), head, *parts))


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
                    out.append(_OK)
                elif op == OP_CLOSE:
                    out.append(_OK)
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
                self._finish(_SHUTDOWN)
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
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        allow_shutdown: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        tree: str = "default",
        workers: int = 16,
        inline_reads: bool = True,
        close_db: bool = False,
    ) -> None:
        if max_body < 8:
            raise ValueError("max_body must be at least 8 bytes")
        for name, secs in (("idle_timeout", idle_timeout), ("request_timeout", request_timeout)):
            if not (isinstance(secs, (int, float)) and math.isfinite(secs) and secs > 0):
                raise ValueError(f"{name} must be finite and positive, not {secs!r}")
        if not 1 <= workers <= 1024:
            raise ValueError(f"workers must be 1..1024, not {workers!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port!r}")
        self.db = db
        self.host = host
        self.port = port
        self.allow_shutdown = allow_shutdown
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.inline_reads = inline_reads
        self.close_db = close_db
        self._handlers = _Handlers(db.tree(tree), max_body)
        self._pooled: dict[int, Callable[[bytes], bytes]] = {
            OP_INSERT: self._handlers.insert,
            OP_DELETE: self._handlers.delete,
            OP_REMOVE: self._handlers.remove,
            OP_SCAN: self._handlers.scan,
            OP_GET: self._handlers.get,
        }
        self._pool_size = workers
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
        self.linger = min(2.0, request_timeout)

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


# -- blocking entry points ---------------------------------------------------------


def serve(
    path_or_db: str | os.PathLike[str] | Any,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    allow_shutdown: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    tree: str = "default",
    sync: str = "full",
    workers: int = 16,
    inline_reads: bool = True,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGTERM, SIGINT or an allowed `S`; blocks.

    A path is opened with `engine.open(path, sync=sync)` and closed on stop;
    a database object is checkpointed on stop and left open. `ready(host,
    port)` is called once the socket listens (useful with `port=0`).
    Signal handlers are installed only when called from the main thread.
    """
    owned = isinstance(path_or_db, (str, os.PathLike))
    if owned:
        import engine

        db = engine.open(path_or_db, sync=sync)
    else:
        db = path_or_db
    try:
        server = Server(
            db,
            host=host,
            port=port,
            allow_shutdown=allow_shutdown,
            max_body=max_body,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
            tree=tree,
            workers=workers,
            inline_reads=inline_reads,
            close_db=owned,
        )
    except BaseException:
        if owned:
            db.close()
        raise
    asyncio.run(_serve_async(server, ready, owned))


async def _serve_async(
    server: Server, ready: Callable[[str, int], None] | None, owned: bool
) -> None:
    loop = asyncio.get_running_loop()
    try:
        host, port = await server.start()
    except BaseException:
        if owned:
            server.db.close()
        raise
    signals: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, functools.partial(server.request_stop, escalate=True))
            signals.append(signum)
    try:
        if ready is not None:
            ready(host, port)
        await server.wait_stopped()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if not server._stopping:  # ready() raised, or we were cancelled
            await server.stop()


def _int_in(lo: int, hi: int | None, what: str) -> Callable[[str], int]:
    """An argparse type: an int in lo..hi (a usage error, exit 2, otherwise)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, not {text!r}") from None
        if n < lo or (hi is not None and n > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, not {n}")
        return n

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seconds must be a number, not {text!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"seconds must be finite and positive, not {text}")
    return x


def _ready_path(text: str) -> str:
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file path")
    return text


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` options, shared by `python -m engine.server` and `dragondb serve`."""
    parser.add_argument("path", help="database file (created if missing)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    parser.add_argument(
        "--port", type=_int_in(0, 65535, "--port"), default=8080,
        help="TCP port 0..65535, 0 = any free port (default %(default)s)"
    )
    parser.add_argument(
        "--allow-shutdown",
        action="store_true",
        help="let a client's S request stop the server (off: S is answered with an error)",
    )
    parser.add_argument(
        "--max-body",
        type=_int_in(8, None, "--max-body"),
        default=DEFAULT_MAX_BODY,
        help="largest request body in bytes (default 32 MiB)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=DEFAULT_IDLE_TIMEOUT,
        help="seconds before an idle connection is closed (default %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_seconds,
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds a client has to finish sending a request or to read replies (default %(default)s)",
    )
    parser.add_argument("--tree", default="default", help="tree to serve (default %(default)s)")
    parser.add_argument(
        "--sync",
        choices=("full", "normal", "off"),
        default="full",
        help="commit durability (default full)",
    )
    parser.add_argument(
        "--workers", type=_int_in(1, 1024, "--workers"), default=16,
        help="engine threads for writes, 1..1024 (default %(default)s)"
    )
    parser.add_argument(
        "--ready-file",
        type=_ready_path,
        default=None,
        help="once listening, write 'HOST PORT' to this file (for scripts)",
    )


def serve_from_args(
    args: argparse.Namespace, ready: Callable[[str, int], None] | None = None
) -> None:
    """Run `serve` with options parsed by `add_serve_arguments`."""

    def on_ready(host: str, port: int) -> None:
        if args.ready_file:
            tmp = f"{args.ready_file}.tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(f"{host} {port}\n")
                os.replace(tmp, args.ready_file)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # no stray temporary file beside a path we could not write
                raise
        if ready is not None:
            ready(host, port)

    serve(
        args.path,
        args.host,
        args.port,
        allow_shutdown=args.allow_shutdown,
        max_body=args.max_body,
        idle_timeout=args.idle_timeout,
        request_timeout=args.request_timeout,
        tree=args.tree,
        sync=args.sync,
        workers=args.workers,
        ready=on_ready,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.server PATH [--port N] ...`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.server",
        description="Serve a DragonDB database over the DragonDB TCP protocol.",
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)

    def announce(host: str, port: int) -> None:
        sys.stderr.write(f"dragondb: serving {args.path} on {host}:{port}\n")
        sys.stderr.flush()

    try:
        serve_from_args(args, announce)
    except (DragonDBError, OSError) as exc:
        sys.stderr.write(f"dragondb: {_error_text(exc)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

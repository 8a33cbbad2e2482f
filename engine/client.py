"""A small client for the DragonDB TCP protocol, and a load generator.

`Client` is blocking (one socket, one request at a time, or a pipelined
batch with `insert_many`); it speaks the Go server's byte format, so it
works against that server too, except for `scan` and `remove`, which use
the `R` and `X` extension op-codes of this server (docs/protocol.md).

An error reply that names an engine exception (`KeyTooLargeError: ...`)
is raised as that type: a subclass of both `RemoteError` and the
`engine.errors` class (`remote_error`), so `except engine.ReadOnlyError`
works across the wire as it does in-process.

    with Client("127.0.0.1", 8080) as c:
        c.insert(b"k", b"v")
        assert c.get(b"k") == b"v"

`bench_load` drives a server with many concurrent asyncio connections and
reports requests per second and latency percentiles.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from engine import errors
from engine.errors import DragonDBError

__all__ = [
    "Client",
    "LoadResult",
    "ProtocolError",
    "REMOTE_ERRORS",
    "RemoteError",
    "ServerShutdownError",
    "bench_load",
    "encode_delete",
    "encode_get",
    "encode_insert",
    "encode_remove",
    "encode_scan",
    "remote_error",
]

_U32 = struct.Struct("<I")  # every length on the wire: u32 little-endian
_SCAN_HEAD = struct.Struct("<IB")  # limit:u32, flags:u8 (bit 0: reverse)
_SCAN_REPLY_HEAD = struct.Struct("<BI")  # more:u8, count:u32
NOT_FOUND_MESSAGE = "key not found"  # the server's exact text for a missing key
_PIPELINE_CHUNK = 128  # requests in flight per insert_many round trip


class RemoteError(DragonDBError):
    """The server answered `E`. The connection is still usable, unless the
    server closed it (unknown op-code, oversized or truncated request).

    `message` is the reply's whole text. When it names an engine exception
    (`NAME: text`), the error raised is `REMOTE_ERRORS[NAME]`, a subclass
    of this class and of `engine.errors.NAME`; then `name` is NAME and
    `str()` is the text after it. Otherwise `name` is None and `str()` the
    whole message."""

    def __init__(self, message: str, name: str | None = None, text: str | None = None) -> None:
        super().__init__(message if text is None else text)
        self.message = message
        self.name = name


def _remote_class(base: type[DragonDBError]) -> type[RemoteError]:
    return type(base.__name__, (RemoteError, base), {
        "__module__": __name__,
        "__qualname__": base.__name__,
        "__doc__": f"`engine.{base.__name__}` raised by the server.",
        "__slots__": (),
    })


# The server names an error by its class (`type(exc).__name__`); these are
# the engine's, except the abstract base, which is never raised.
REMOTE_ERRORS: dict[str, type[RemoteError]] = {
    name: _remote_class(getattr(errors, name)) for name in errors.__all__ if name != "DragonDBError"
}


def remote_error(message: str) -> RemoteError:
    """The exception for an `E` reply's text: the engine error it names, or a plain `RemoteError`."""
    name, sep, text = message.partition(": ")
    cls = REMOTE_ERRORS.get(name if sep else message)
    if cls is None:
        return RemoteError(message)
    return cls(message, cls.__name__, text if sep else "")


class ServerShutdownError(DragonDBError, ConnectionError):
    """The server sent `S` (it is stopping) or the connection ended. After
    `S`, a request that got no reply was not applied; after a bare
    disconnect (a crash, a reset) it may or may not have been."""


class ProtocolError(DragonDBError):
    """The server sent bytes that are not a valid reply."""


# -- request encoders (pure) ----------------------------------------------------


def _field(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _request(op: bytes, body: bytes) -> bytes:
    return op + _U32.pack(len(body)) + body


def _as_bytes(name: str, data: object) -> bytes:
    if isinstance(data, str):
        raise TypeError(f"{name} must be bytes, not str")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes-like, not {type(data).__name__}")
    return bytes(data)


def encode_insert(key: bytes, value: bytes) -> bytes:
    return _request(b"I", _field(key) + _field(value))


def encode_get(key: bytes) -> bytes:
    return _request(b"G", _field(key))


def encode_delete(key: bytes) -> bytes:
    return _request(b"D", _field(key))


def encode_remove(key: bytes) -> bytes:
    """`X` (extension): delete, answering whether the key existed."""
    return _request(b"X", _field(key))


def encode_scan(
    start: bytes = b"",
    end: bytes = b"",
    prefix: bytes = b"",
    *,
    reverse: bool = False,
    limit: int = 0,
) -> bytes:
    """`R` (extension): pairs in [start, end) with `prefix`; empty = unbounded."""
    head = _SCAN_HEAD.pack(limit, 1 if reverse else 0)
    return _request(b"R", head + _field(start) + _field(end) + _field(prefix))


# -- the blocking client ---------------------------------------------------------


class Client:
    """One connection to a DragonDB server. Not thread-safe: use one per thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8080, *, timeout: float | None = 30.0
    ) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._rfile = self._sock.makefile("rb")
        self._closed = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # operations

    def ping(self) -> None:
        self._call(b"P")
        self._expect_ok()

    def insert(self, key: bytes, value: bytes) -> None:
        """Insert or overwrite; returns once the server acknowledged (durable
        when the server runs with sync="full")."""
        self._call(encode_insert(_as_bytes("key", key), _as_bytes("value", value)))
        self._expect_ok()

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._call(encode_get(_as_bytes("key", key)))
        try:
            body = self._read_body()
        except RemoteError as exc:
            if exc.message == NOT_FOUND_MESSAGE:
                return default
            raise
        key_out, pos = _take(body, 0)
        value, pos = _take(body, pos)
        if pos != len(body):
            raise ProtocolError("get reply has trailing bytes")
        return value

    def delete(self, key: bytes) -> None:
        """Delete `key`; deleting a missing key is not an error (`D`, as
        the Go server: the reply does not say whether it existed)."""
        self._call(encode_delete(_as_bytes("key", key)))
        self._expect_ok()

    def remove(self, key: bytes) -> bool:
        """Delete `key` and return whether it existed, in one atomic
        operation on the server (the `X` extension op-code)."""
        self._call(encode_remove(_as_bytes("key", key)))
        body = self._read_body()
        if len(body) != 1 or body[0] > 1:
            raise ProtocolError(f"remove reply is not one byte 0 or 1: {body[:8]!r}")
        return body[0] == 1

    def insert_many(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Pipelined inserts, a chunk of requests per round trip; returns the
        count. Raises the first `RemoteError` after reading its chunk."""
        count = 0
        chunk: list[bytes] = []
        for key, value in items:
            chunk.append(encode_insert(_as_bytes("key", key), _as_bytes("value", value)))
            if len(chunk) == _PIPELINE_CHUNK:
                count += self._pipeline(chunk)
                chunk = []
        if chunk:
            count += self._pipeline(chunk)
        return count

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        reverse: bool = False,
        prefix: bytes | None = None,
        page: int = 1000,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs in ascending (or descending) key order, fetched `page` at a
        time with the `R` extension. Like `Tree.scan`: start inclusive, end
        exclusive. Between pages the server may change (no snapshot)."""
        start = _as_bytes("start", start) if start is not None else b""
        end = _as_bytes("end", end) if end is not None else b""
        prefix = _as_bytes("prefix", prefix) if prefix is not None else b""
        while True:
            self._call(encode_scan(start, end, prefix, reverse=reverse, limit=page))
            body = self._read_body()
            if len(body) < _SCAN_REPLY_HEAD.size:
                raise ProtocolError("scan reply too short")
            more, count = _SCAN_REPLY_HEAD.unpack_from(body, 0)
            pos = _SCAN_REPLY_HEAD.size
            key = b""
            for _ in range(count):
                key, pos = _take(body, pos)
                value, pos = _take(body, pos)
                yield key, value
            if pos != len(body):
                raise ProtocolError("scan reply has trailing bytes")
            if not more or not count:
                return
            if reverse:
                end = key  # exclusive: continue below the last key
            else:
                start = key + b"\x00"  # the smallest key above the last one

    def close(self) -> None:
        """Send `C`, wait for the `O`, close the socket. Idempotent."""
        if self._closed:
            return
        try:
            self._sock.sendall(b"C")
            self._rfile.read(1)  # O, or S if the server is stopping, or EOF
        except OSError:
            pass
        finally:
            self._close_socket()

    def shutdown(self) -> None:
        """Ask the server to stop (`S`). Returns once it acknowledged with
        `S`; raises `RemoteError` if the server does not allow it."""
        self._call(b"S")
        op = self._read_exact(1)
        if op == b"E":
            raise remote_error(self._read_message())
        if op != b"S":
            raise ProtocolError(f"unexpected reply {op!r} to S")
        self._close_socket()

    # wire helpers

    def _pipeline(self, requests: list[bytes]) -> int:
        self._call(b"".join(requests))
        first: RemoteError | None = None
        for _ in requests:
            try:
                self._expect_ok()
            except RemoteError as exc:
                first = first or exc
        if first is not None:
            raise first
        return len(requests)

    def _call(self, request: bytes) -> None:
        if self._closed:
            raise ServerShutdownError("connection is closed")
        try:
            self._sock.sendall(request)
        except OSError as exc:
            self._close_socket()
            raise ServerShutdownError(f"connection lost: {exc}") from exc

    def _read_exact(self, n: int) -> bytes:
        try:
            data = self._rfile.read(n)
        except OSError as exc:
            self._close_socket()
            raise ServerShutdownError(f"connection lost: {exc}") from exc
        if len(data) != n:
            self._close_socket()
            raise ServerShutdownError("server closed the connection")
        return data

    def _read_message(self) -> str:
        (size,) = _U32.unpack(self._read_exact(4))
        return self._read_exact(size).decode("utf-8", "replace")

    def _reply_op(self) -> bytes:
        op = self._read_exact(1)
        if op == b"S":
            self._close_socket()
            raise ServerShutdownError("server is shutting down")
        if op == b"E":
            raise remote_error(self._read_message())
        if op != b"O":
            self._close_socket()
            raise ProtocolError(f"unexpected reply byte {op!r}")
        return op

    def _expect_ok(self) -> None:
        self._reply_op()

    def _read_body(self) -> bytes:
        self._reply_op()
        (size,) = _U32.unpack(self._read_exact(4))
        return self._read_exact(size)

    def _close_socket(self) -> None:
        if not self._closed:
            self._closed = True
            self._rfile.close()
            self._sock.close()


def _take(body: bytes, pos: int) -> tuple[bytes, int]:
    if len(body) - pos < 4:
        raise ProtocolError("reply body truncated")
    (size,) = _U32.unpack_from(body, pos)
    pos += 4
    if size > len(body) - pos:
        raise ProtocolError("reply field runs past the end")
    return body[pos : pos + size], pos + size


# -- load generator -----------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """What `bench_load` measured."""

    op: str
    clients: int
    seconds: float  # measured wall time
    requests: int  # requests answered with O
    errors: int  # requests answered with E
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def bench_load(
    host: str,
    port: int,
    op: str,
    clients: int,
    seconds: float,
    *,
    key_size: int = 16,
    value_size: int = 100,
    keys: int = 10_000,
    seed: int = 0,
) -> LoadResult:
    """Drive the server with `clients` connections, each sending `op`
    ("get", "insert" or "ping") back to back for `seconds`. For "get",
    `keys` keys are loaded first (not timed). Run it in another process
    than the server: both need the GIL."""
    if op not in ("get", "insert", "ping"):
        raise ValueError(f"bench_load: op must be get, insert or ping, not {op!r}")
    if clients < 1 or seconds <= 0:
        raise ValueError("bench_load: clients >= 1 and seconds > 0")
    return asyncio.run(_bench(host, port, op, clients, seconds, key_size, value_size, keys, seed))


def _bench_key(i: int, key_size: int) -> bytes:
    return (b"bench%011d" % i).ljust(key_size, b".")[: max(key_size, 16)]


class _LoadConnection(asyncio.Protocol):
    """One closed-loop load connection: send, wait for the whole reply,
    record the latency, send the next. A bare Protocol, so the generator
    spends as little CPU per request as it can (it shares the machine)."""

    def __init__(
        self, next_request, with_body: bool, deadline: float, done: asyncio.Future
    ) -> None:
        self._next = next_request
        self._with_body = with_body
        self._deadline = deadline
        self._done = done
        self._buf = bytearray()
        self._t0 = 0.0
        self.latencies: list[float] = []
        self.errors = 0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._transport.write(self._next())

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        head = buf[0]
        if head == 0x45 or (head == 0x4F and self._with_body):  # E, or O with a body
            if len(buf) < 5 or len(buf) < 5 + _U32.unpack_from(buf, 1)[0]:
                return
        elif head != 0x4F:
            self._fail(ProtocolError(f"bench_load: unexpected reply {bytes(buf[:1])!r}"))
            return
        t1 = time.perf_counter()
        if head == 0x45:
            self.errors += 1
        else:
            self.latencies.append(t1 - self._t0)
        buf.clear()  # closed loop: one request in flight, so one reply
        if t1 >= self._deadline:
            if not self._done.done():
                self._done.set_result(None)
            return
        self._t0 = t1
        self._transport.write(self._next())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._fail(ServerShutdownError(f"bench_load: connection lost: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)


async def _bench(
    host: str,
    port: int,
    op: str,
    clients: int,
    seconds: float,
    key_size: int,
    value_size: int,
    keys: int,
    seed: int,
) -> LoadResult:
    value = bytes(value_size)
    if op == "get":
        await asyncio.to_thread(_preload, host, port, keys, key_size, value)
    loop = asyncio.get_running_loop()
    conns: list[_LoadConnection] = []
    waits: list[asyncio.Future] = []
    for n in range(clients):
        rng = random.Random(seed * 1_000_003 + n)
        if op == "get":
            pool = [encode_get(_bench_key(rng.randrange(keys), key_size)) for _ in range(1024)]
            make = _cycle(pool)
        elif op == "insert":
            make = _inserts(keys + n * 10_000_000, key_size, value)
        else:
            make = _cycle([b"P"])
        done = loop.create_future()
        _, proto = await loop.create_connection(
            lambda make=make, done=done: _LoadConnection(make, op == "get", 0.0, done), host, port
        )
        conns.append(proto)
        waits.append(done)
    begin = time.perf_counter()
    for proto in conns:
        proto._deadline = begin + seconds
        proto.start()
    try:
        await asyncio.gather(*waits)
    finally:
        for proto in conns:
            if proto._transport is not None:
                proto._transport.close()
    elapsed = time.perf_counter() - begin
    all_lat = sorted(x for proto in conns for x in proto.latencies)
    done_count = len(all_lat)

    def pct(q: float) -> float:
        return all_lat[min(done_count - 1, int(q * done_count))] * 1000 if done_count else 0.0

    errors = sum(proto.errors for proto in conns)
    return LoadResult(
        op, clients, elapsed, done_count, errors, done_count / elapsed, pct(0.50), pct(0.99)
    )


def _cycle(pool: list[bytes]):
    """A request factory that repeats `pool` forever."""
    n = len(pool)
    state = [0]

    def make() -> bytes:
        i = state[0]
        state[0] = i + 1 if i + 1 < n else 0
        return pool[i]

    return make


def _inserts(base: int, key_size: int, value: bytes):
    """A request factory of inserts of fresh keys, from `base` up."""
    state = [base]

    def make() -> bytes:
        i = state[0]
        state[0] = i + 1
        return encode_insert(_bench_key(i, key_size), value)

    return make


def _preload(host: str, port: int, keys: int, key_size: int, value: bytes) -> None:
    with Client(host, port) as c:
        c.insert_many((_bench_key(i, key_size), value) for i in range(keys))

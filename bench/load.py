"""A load generator for the DragonDB network server: many concurrent
connections, requests per second and latency percentiles.

    from bench.load import bench_load
    result = bench_load("127.0.0.1", 8080, "get", clients=16, seconds=5)

Run it in another process than the server: both need the GIL. It speaks the
protocol through `engine.net.protocol` (encoders, reply framing) and
preloads keys with `engine.net.client.Client`.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from dataclasses import dataclass

from engine.net.client import Client, ServerShutdownError
from engine.net.protocol import ProtocolError, encode_get, encode_insert, reply_length

__all__ = ["LoadResult", "bench_load"]


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
        try:
            if reply_length(buf, self._with_body) is None:
                return
        except ProtocolError as exc:
            self._fail(ProtocolError(f"bench_load: {exc}"))
            return
        head = buf[0]
        if head == 0x53:  # S
            self._fail(ServerShutdownError("bench_load: the server is shutting down"))
            return
        t1 = time.perf_counter()
        if head == 0x45:  # E
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

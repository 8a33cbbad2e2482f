"""A small blocking client for the DragonDB TCP protocol.

`Client` holds one socket and sends one request at a time, or a pipelined
batch with `insert_many`; it speaks the Go server's byte format
(`engine.net.protocol`), so it works against that server too, except for
`scan` and `remove`, which use the `R` and `X` extension op-codes of this
server (docs/protocol.md).

An error reply that names an engine exception (`KeyTooLargeError: ...`)
is raised as that type: a subclass of both `RemoteError` and the
`engine.errors` class (`remote_error`), so `except engine.ReadOnlyError`
works across the wire as it does in-process.

    with Client("127.0.0.1", 8080) as c:
        c.insert(b"k", b"v")
        assert c.get(b"k") == b"v"
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator

from engine.errors import DragonDBError
from engine.net.protocol import (
    LENGTH,
    NOT_FOUND_MESSAGE,
    REMOTE_ERRORS,
    ProtocolError,
    RemoteError,
    decode_get_reply,
    decode_remove_reply,
    decode_scan_reply,
    encode_delete,
    encode_get,
    encode_insert,
    encode_remove,
    encode_scan,
    remote_error,
)

__all__ = [
    "Client",
    "ProtocolError",
    "REMOTE_ERRORS",
    "RemoteError",
    "ServerShutdownError",
    "remote_error",
]

_PIPELINE_CHUNK = 128  # requests in flight per insert_many round trip


class ServerShutdownError(DragonDBError, ConnectionError):
    """The server sent `S` (it is stopping) or the connection ended. After
    `S`, a request that got no reply was not applied; after a bare
    disconnect (a crash, a reset) it may or may not have been."""


def _as_bytes(name: str, data: object) -> bytes:
    if isinstance(data, str):
        raise TypeError(f"{name} must be bytes, not str")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes-like, not {type(data).__name__}")
    return bytes(data)


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
        return decode_get_reply(body)[1]

    def delete(self, key: bytes) -> None:
        """Delete `key`; deleting a missing key is not an error (`D`, as
        the Go server: the reply does not say whether it existed)."""
        self._call(encode_delete(_as_bytes("key", key)))
        self._expect_ok()

    def remove(self, key: bytes) -> bool:
        """Delete `key` and return whether it existed, in one atomic
        operation on the server (the `X` extension op-code)."""
        self._call(encode_remove(_as_bytes("key", key)))
        return decode_remove_reply(self._read_body())

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
            more, pairs = decode_scan_reply(self._read_body())
            yield from pairs
            if not more or not pairs:
                return
            key = pairs[-1][0]
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
        (size,) = LENGTH.unpack(self._read_exact(4))
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
        (size,) = LENGTH.unpack(self._read_exact(4))
        return self._read_exact(size)

    def _close_socket(self) -> None:
        if not self._closed:
            self._closed = True
            self._rfile.close()
            self._sock.close()

"""Test harness for engine.net.server: a server on its own event-loop thread,
raw-socket helpers, and an independent reference reading of a byte stream.

The reference (`expected_replies`) is written from docs/protocol.md without
using engine.net.protocol's parser, so a test compares two readings of the spec.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any

from engine.net.server import Server

U32 = struct.Struct("<I")
MAX_KEY = 1024


def u32(n: int) -> bytes:
    return U32.pack(n)


def field(data: bytes) -> bytes:
    return u32(len(data)) + data


def req_insert(key: bytes, value: bytes) -> bytes:
    body = field(key) + field(value)
    return b"I" + u32(len(body)) + body


def req_get(key: bytes) -> bytes:
    return b"G" + u32(4 + len(key)) + field(key)


def req_delete(key: bytes) -> bytes:
    return b"D" + u32(4 + len(key)) + field(key)


def get_reply(key: bytes, value: bytes) -> bytes:
    return b"O" + u32(8 + len(key) + len(value)) + field(key) + field(value)


def error_reply(message: str) -> bytes:
    data = message.encode()
    return b"E" + u32(len(data)) + data


class ServerThread:
    """A `Server` running on a private event loop in a daemon thread."""

    def __init__(self, db: Any, **kwargs: Any) -> None:
        kwargs.setdefault("port", 0)
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.server = Server(db, **kwargs)
        self.address = self.loop.run_until_complete(self.server.start())
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.server.wait_stopped())
        except BaseException as exc:  # noqa: BLE001 - stop() re-raises it to the test
            self.error = exc

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def stop(self, timeout: float = 20.0) -> None:
        """Graceful stop from the test thread; returns once fully stopped."""
        if self.thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop)
            fut.result(timeout)
        self.join(timeout)

    def join(self, timeout: float = 20.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server thread did not stop"
        if not self.loop.is_closed():
            self.loop.close()

    @property
    def stopped(self) -> bool:
        return not self.thread.is_alive()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        data = sock.recv(n)
        if not data:
            raise EOFError("connection closed")
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def recv_all(sock: socket.socket) -> bytes:
    """Everything until EOF (socket timeout = a hang, which fails the test)."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def read_reply(sock: socket.socket, with_body: bool = False) -> bytes:
    """One reply, as raw bytes. `with_body` for O replies to G and R."""
    op = recv_exact(sock, 1)
    if op == b"E" or (op == b"O" and with_body):
        size = recv_exact(sock, 4)
        return op + size + recv_exact(sock, U32.unpack(size)[0])
    return op


def expected_replies(
    stream: bytes, store: dict[bytes, bytes], *, max_body: int, allow_shutdown: bool = False
) -> tuple[list[bytes | None], bool]:
    """What the server must answer to `stream` followed by EOF, applying the
    writes to `store`. Returns (replies, closed_on_error): each reply as exact
    bytes, or None for an `R` reply (only its kind `O`/`E` is compared). A
    malformed stream ends in an `E` whose text is not compared (b"E")."""
    replies: list[bytes | None] = []
    pos = 0
    while pos < len(stream):
        op = stream[pos : pos + 1]
        if op in (b"P", b"C"):
            replies.append(b"O")
            pos += 1
            if op == b"C":
                return replies, False
            continue
        if op == b"S":
            replies.append(b"S" if allow_shutdown else b"E*")
            pos += 1
            continue
        if op not in (b"I", b"G", b"D", b"R"):
            replies.append(b"E")
            return replies, True
        if len(stream) - pos < 5:
            replies.append(b"E")
            return replies, True
        size = U32.unpack_from(stream, pos + 1)[0]
        if size > max_body or len(stream) - pos - 5 < size:
            replies.append(b"E")
            return replies, True
        body = stream[pos + 5 : pos + 5 + size]
        pos += 5 + size
        replies.append(_apply(op, body, store))
    return replies, False


def _fields(body: bytes, count: int) -> list[bytes] | None:
    out, pos = [], 0
    for _ in range(count):
        if len(body) - pos < 4:
            return None
        size = U32.unpack_from(body, pos)[0]
        if len(body) - pos - 4 < size:
            return None
        out.append(body[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out if pos == len(body) else None


def _apply(op: bytes, body: bytes, store: dict[bytes, bytes]) -> bytes | None:
    if op == b"R":
        return None
    parts = _fields(body, 2 if op == b"I" else 1)
    if parts is None or not 1 <= len(parts[0]) <= MAX_KEY:
        return b"E*"
    key = parts[0]
    if op == b"I":
        store[key] = parts[1]
        return b"O"
    if op == b"D":
        store.pop(key, None)
        return b"O"
    if key in store:
        return get_reply(key, store[key])
    return error_reply("key not found")


def split_replies(data: bytes, expected: list[bytes | None]) -> list[bytes]:
    """Cut the raw reply stream into replies, guided by the expected kinds."""
    out, pos = [], 0
    for want in expected:
        if pos >= len(data):
            break
        op = data[pos : pos + 1]
        has_body = op == b"E" or (op == b"O" and (want is None or len(want) > 1))
        if has_body:
            size = U32.unpack_from(data, pos + 1)[0] if len(data) - pos >= 5 else 0
            end = pos + 5 + size
        else:
            end = pos + 1
        out.append(data[pos:end])
        pos = end
    if pos < len(data):
        out.append(data[pos:])  # trailing garbage: fails the comparison
    return out


def matches(reply: bytes, want: bytes | None) -> bool:
    if want is None:
        return reply[:1] in (b"O", b"E")
    if want in (b"E", b"E*"):
        return (
            reply[:1] == b"E" and len(reply) >= 5 and U32.unpack_from(reply, 1)[0] == len(reply) - 5
        )
    return reply == want

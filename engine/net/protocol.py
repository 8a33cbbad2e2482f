"""The DragonDB wire protocol, sans I/O: bytes in, requests and replies out.

The byte format is the Go DragonDB server's, kept byte for byte
(docs/protocol.md is the reference):

    request  = op:u8 [len:u32le body]        P S C carry no body; I G D do
    I body   = klen:u32le key vlen:u32le value
    G/D body = klen:u32le key
    OK       = b"O"                          answers P, I, D, C
    error    = b"E" len:u32le utf8-message
    get      = b"O" len:u32le klen:u32le key vlen:u32le value
    shutdown = b"S"                          sent to every client on stop

Extensions (op-codes the Go server does not use): `R`, a range scan, and
`X`, a delete whose reply says whether the key existed.

Both ends use this module: the server frames requests (`RequestParser`),
decodes their bodies and encodes replies; the client encodes requests and
decodes replies. An error reply names the engine exception that caused it
(`error_text`), and the client turns that name back into the exception
(`remote_error`). Nothing here touches a socket, a thread or a database.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from engine import errors
from engine.errors import DragonDBError

__all__ = [
    "DEFAULT_MAX_BODY",
    "LENGTH",
    "NOT_FOUND_MESSAGE",
    "SCAN_MAX_ITEMS",
    "BodyError",
    "FramingError",
    "ProtocolError",
    "REMOTE_ERRORS",
    "RemoteError",
    "RequestParser",
    "decode_get_reply",
    "decode_insert_body",
    "decode_key_body",
    "decode_remove_reply",
    "decode_scan_body",
    "decode_scan_reply",
    "encode_delete",
    "encode_error",
    "encode_get",
    "encode_get_reply",
    "encode_insert",
    "encode_remove",
    "encode_remove_reply",
    "encode_scan",
    "encode_scan_reply",
    "error_text",
    "remote_error",
    "reply_length",
    "scan_limit",
]

DEFAULT_MAX_BODY = 32 * 1024 * 1024  # largest request body accepted, bytes
SCAN_MAX_ITEMS = 10_000  # cap on pairs per scan reply, whatever the client asks

OP_PING = 0x50  # P
OP_SHUTDOWN = 0x53  # S
OP_CLOSE = 0x43  # C
OP_INSERT = 0x49  # I
OP_GET = 0x47  # G
OP_DELETE = 0x44  # D
OP_SCAN = 0x52  # R: extension, not in the Go server
OP_REMOVE = 0x58  # X: extension, a delete answering whether the key existed

NO_BODY = frozenset((OP_PING, OP_SHUTDOWN, OP_CLOSE))
WITH_BODY = frozenset((OP_INSERT, OP_GET, OP_DELETE, OP_SCAN, OP_REMOVE))

NOT_FOUND_MESSAGE = "key not found"  # the client maps exactly this to a missing key
OK = b"O"
SHUTDOWN = b"S"
_FOUND, _NOT_FOUND = b"O\x01\x00\x00\x00\x01", b"O\x01\x00\x00\x00\x00"  # X replies: body of one byte
LENGTH = struct.Struct("<I")  # every length on the wire: u32 little-endian
_U32x2 = struct.Struct("<II")
_SCAN_HEAD = struct.Struct("<IB")  # limit:u32, flags:u8
_SCAN_FLAG_REVERSE = 0x01
_SCAN_REPLY_HEAD = struct.Struct("<BI")  # more:u8, count:u32
_MAX_MESSAGE = 4096  # error messages are cut to this many bytes


class FramingError(DragonDBError):
    """The request stream cannot be framed any more (unknown op-code,
    body length above the limit). The connection gets `E` and closes;
    nothing after the bad byte is executed."""


class BodyError(DragonDBError, ValueError):
    """A request body that framed correctly but does not decode. Answered
    with `E`; the connection continues, the database is untouched."""


class ProtocolError(DragonDBError):
    """The server sent bytes that are not a valid reply."""


# -- framing ---------------------------------------------------------------------


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
        if op in NO_BODY:
            del buf[:1]
            return op, b""
        if op not in WITH_BODY:
            raise FramingError(f"unknown op-code 0x{op:02x}")
        if len(buf) < 5:
            return None
        (size,) = LENGTH.unpack_from(buf, 1)
        if size > self._max_body:
            raise FramingError(f"body length {size} above the limit of {self._max_body}")
        end = 5 + size
        if len(buf) < end:
            return None
        body = bytes(buf[5:end])
        del buf[:end]
        return op, body


def reply_length(buf: bytes | bytearray, with_body: bool) -> int | None:
    """Bytes of the first reply in `buf`, or None while it is incomplete.

    `with_body`: an `O` reply carries a body (the answer to G, R or X).
    Raises `ProtocolError` when `buf` does not start with a reply byte.

    pre: len(buf) < 2**32
    raises: ProtocolError
    post: __return__ is None or 1 <= __return__ <= len(buf)
    """
    if not buf:
        return None
    op = buf[0]
    if op == 0x45 or (op == 0x4F and with_body):  # E, or O with a body
        if len(buf) < 5:
            return None
        end = 5 + LENGTH.unpack_from(buf, 1)[0]
        return end if len(buf) >= end else None
    if op in (0x4F, 0x53):  # O, S
        return 1
    raise ProtocolError(f"unexpected reply byte {bytes(buf[:1])!r}")


# -- fields ----------------------------------------------------------------------


def _field(data: bytes) -> bytes:
    return LENGTH.pack(len(data)) + data


def _malformed(kind: str, what: str) -> DragonDBError:
    """A request body's decoding error (`BodyError`, its text goes on the
    wire) or a reply's (`ProtocolError`, raised by the client)."""
    return (BodyError if kind == "body" else ProtocolError)(f"malformed {kind}: {what}")


def _take(data: bytes, pos: int, kind: str) -> tuple[bytes, int]:
    """One `len:u32 bytes` field of `data` at `pos`; the bytes and the next pos.

    `kind` is "body" (a request's) or "reply": it picks the error raised.

    pre: 0 <= pos <= len(data) and kind in ("body", "reply")
    raises: BodyError, ProtocolError
    post: __return__[1] == pos + 4 + len(__return__[0]) <= len(data)
    post: __return__[0] == data[pos + 4 : __return__[1]]
    """
    if len(data) - pos < 4:
        raise _malformed(kind, "missing length")
    (size,) = LENGTH.unpack_from(data, pos)
    pos += 4
    if size > len(data) - pos:
        raise _malformed(kind, "length runs past the end")
    return data[pos : pos + size], pos + size


def _end(data: bytes, pos: int, kind: str) -> None:
    if pos != len(data):
        raise _malformed(kind, "trailing bytes")


# -- requests: the client encodes, the server decodes -----------------------------


def _request(op: bytes, body: bytes) -> bytes:
    return op + LENGTH.pack(len(body)) + body


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
    head = _SCAN_HEAD.pack(limit, _SCAN_FLAG_REVERSE if reverse else 0)
    return _request(b"R", head + _field(start) + _field(end) + _field(prefix))


def decode_key_body(body: bytes) -> bytes:
    """The key of a `G`, `D` or `X` body; the body must hold exactly one field.

    raises: BodyError
    post: encode_get(__return__)[5:] == body
    """
    key, pos = _take(body, 0, "body")
    _end(body, pos, "body")
    return key


def decode_insert_body(body: bytes) -> tuple[bytes, bytes]:
    """The key and value of an `I` body; exactly two fields.

    raises: BodyError
    post: encode_insert(*__return__)[5:] == body
    """
    key, pos = _take(body, 0, "body")
    value, pos = _take(body, pos, "body")
    _end(body, pos, "body")
    return key, value


def decode_scan_body(body: bytes) -> tuple[int, bool, bytes, bytes, bytes]:
    """`R` body: limit:u32 flags:u8 start end prefix (each len:u32 bytes,
    empty = unbounded). Returns (limit, reverse, start, end, prefix)."""
    if len(body) < _SCAN_HEAD.size:
        raise BodyError("malformed body: missing scan header")
    limit, flags = _SCAN_HEAD.unpack_from(body, 0)
    if flags & ~_SCAN_FLAG_REVERSE:
        raise BodyError("malformed body: unknown scan flags")
    start, pos = _take(body, _SCAN_HEAD.size, "body")
    end, pos = _take(body, pos, "body")
    prefix, pos = _take(body, pos, "body")
    _end(body, pos, "body")
    return limit, bool(flags & _SCAN_FLAG_REVERSE), start, end, prefix


def scan_limit(limit: int) -> int:
    """Pairs a scan reply may hold when the client asked for `limit`
    (0, or anything above the cap, means the cap).

    pre: limit >= 0
    post: 1 <= __return__ <= SCAN_MAX_ITEMS
    post: __return__ == limit or limit == 0 or limit > SCAN_MAX_ITEMS
    """
    return min(limit or SCAN_MAX_ITEMS, SCAN_MAX_ITEMS)


# -- replies: the server encodes, the client decodes -------------------------------


def encode_error(message: str) -> bytes:
    data = message.encode("utf-8", "replace")
    if len(data) > _MAX_MESSAGE:  # cut on a character boundary: stays valid UTF-8
        data = data[:_MAX_MESSAGE].decode("utf-8", "ignore").encode("utf-8")
    return b"E" + LENGTH.pack(len(data)) + data


def encode_get_reply(key: bytes, value: bytes) -> bytes:
    return b"".join(
        (
            b"O",
            _U32x2.pack(8 + len(key) + len(value), len(key)),
            key,
            LENGTH.pack(len(value)),
            value,
        )
    )


def encode_remove_reply(found: bool) -> bytes:
    return _FOUND if found else _NOT_FOUND


def encode_scan_reply(items: Iterable[tuple[bytes, bytes]], limit: int, max_bytes: int) -> bytes:
    """One page of a scan: the first pairs of `items`, at most `limit` of
    them and at most `max_bytes` of fields (always at least one pair).
    `more` is set when a pair was left out. Reads one pair past the page."""
    parts: list[bytes] = []
    size = count = more = 0
    for key, value in items:
        if count >= limit or (count and size + 8 + len(key) + len(value) > max_bytes):
            more = 1
            break
        parts += (LENGTH.pack(len(key)), key, LENGTH.pack(len(value)), value)
        size += 8 + len(key) + len(value)
        count += 1
    head = _SCAN_REPLY_HEAD.pack(more, count)
    return b"".join((b"O", LENGTH.pack(len(head) + size), head, *parts))


def decode_get_reply(body: bytes) -> tuple[bytes, bytes]:
    """The key and value of a get reply's body (after `O` and its length)."""
    key, pos = _take(body, 0, "reply")
    value, pos = _take(body, pos, "reply")
    _end(body, pos, "reply")
    return key, value


def decode_remove_reply(body: bytes) -> bool:
    """Whether the key of an `X` request existed: its reply body is one byte 0 or 1."""
    if len(body) != 1 or body[0] > 1:
        raise ProtocolError(f"remove reply is not one byte 0 or 1: {body[:8]!r}")
    return body[0] == 1


def decode_scan_reply(body: bytes) -> tuple[bool, list[tuple[bytes, bytes]]]:
    """(more, pairs) of a scan reply's body (after `O` and its length)."""
    if len(body) < _SCAN_REPLY_HEAD.size:
        raise ProtocolError("malformed reply: missing scan header")
    more, count = _SCAN_REPLY_HEAD.unpack_from(body, 0)
    if more > 1:
        raise ProtocolError(f"malformed reply: scan flag 'more' is {more}, not 0 or 1")
    pos = _SCAN_REPLY_HEAD.size
    pairs = []
    for _ in range(count):
        key, pos = _take(body, pos, "reply")
        value, pos = _take(body, pos, "reply")
        pairs.append((key, value))
    _end(body, pos, "reply")
    return bool(more), pairs


# -- error names: the server names an exception, the client raises it again -------


def error_text(exc: BaseException) -> str:
    """The message of the `E` reply for `exc`: `NAME: text`, or `NAME` alone
    when the exception has no text; a body error's own text as it is."""
    text = str(exc)
    if isinstance(exc, BodyError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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

"""What each request does to the tree: decoded body in, engine call, reply out.

Blocking: the server runs `get` on its event loop (`inline_reads`) and the
rest in its thread pool. Every exception becomes an `E` reply naming it
(`protocol.error_text`), so a client can never crash the server, and a
request that fails had no effect (each is one atomic engine operation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.net.protocol import (
    NOT_FOUND_MESSAGE,
    OK,
    OP_DELETE,
    OP_GET,
    OP_INSERT,
    OP_REMOVE,
    OP_SCAN,
    decode_insert_body,
    decode_key_body,
    decode_scan_body,
    encode_error,
    encode_get_reply,
    encode_remove_reply,
    encode_scan_reply,
    error_text,
    scan_limit,
)

__all__ = ["Handlers"]

_MISSING = object()


class Handlers:
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
            return encode_error(error_text(exc))
        if value is _MISSING:
            return encode_error(NOT_FOUND_MESSAGE)
        return encode_get_reply(key, value)

    def insert(self, body: bytes) -> bytes:
        try:
            key, value = decode_insert_body(body)
            self._tree.put(key, value)
        except Exception as exc:  # noqa: BLE001
            return encode_error(error_text(exc))
        return OK

    def delete(self, body: bytes) -> bytes:
        # A missing key is not an error, as in the Go server: delete is idempotent.
        try:
            self._tree.delete(decode_key_body(body))
        except Exception as exc:  # noqa: BLE001
            return encode_error(error_text(exc))
        return OK

    def remove(self, body: bytes) -> bytes:
        try:
            found = self._tree.delete(decode_key_body(body))
        except Exception as exc:  # noqa: BLE001
            return encode_error(error_text(exc))
        return encode_remove_reply(found)

    def scan(self, body: bytes) -> bytes:
        try:
            limit, reverse, start, end, prefix = decode_scan_body(body)
            it = self._tree.scan(start or None, end or None, reverse=reverse, prefix=prefix or None)
            return encode_scan_reply(it, scan_limit(limit), self._scan_bytes)
        except Exception as exc:  # noqa: BLE001
            return encode_error(error_text(exc))

    def by_op(self) -> dict[int, Callable[[bytes], bytes]]:
        """The handler of each op-code that carries a body."""
        return {
            OP_INSERT: self.insert,
            OP_DELETE: self.delete,
            OP_REMOVE: self.remove,
            OP_SCAN: self.scan,
            OP_GET: self.get,
        }

"""engine.client.Client against the server, and against a misbehaving peer."""

from __future__ import annotations

import socket
import threading

import pytest

from engine import KeyTooLargeError
from engine.net.client import Client, ProtocolError, ServerShutdownError


def test_client_round_trip_and_errors(start_server):
    st = start_server()
    with Client(*st.address) as c:
        c.ping()
        c.insert(b"a", b"1")
        c.insert(bytearray(b"b"), memoryview(b"2"))
        assert c.get(b"a") == b"1" and c.get(b"b") == b"2"
        assert c.get(b"missing") is None and c.get(b"missing", b"dflt") == b"dflt"
        c.delete(b"a")
        assert c.get(b"a") is None
        with pytest.raises(TypeError, match="bytes, not str"):
            c.insert("a", b"1")
        with pytest.raises(KeyTooLargeError, match="keys are 1..1024 bytes"):
            c.get(b"")
        # A failing insert in a pipelined batch is reported after its chunk
        # of 128 (the rest of the chunk applied, later chunks not sent), and
        # the connection stays in step.
        items = [(b"m%03d" % i, b"v") for i in range(300)]
        items[150] = (b"", b"bad")
        with pytest.raises(KeyTooLargeError, match="keys are 1..1024 bytes"):
            c.insert_many(items)
        assert c.get(b"m255") == b"v" and c.get(b"m256") is None
        assert c.insert_many([(b"n", b"1")]) == 1
    with pytest.raises(ServerShutdownError):
        c.ping()  # closed by the with block
    c.close()  # idempotent
    tree = st.db.tree("default")
    assert len(tree) == 1 + 255 + 1


def _fake_server(reply: bytes) -> tuple[socket.socket, int]:
    """A one-shot peer that answers any request with `reply` and closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"X", ProtocolError),  # not a reply byte
        (b"", ServerShutdownError),  # closed without a reply
        (b"S", ServerShutdownError),  # the server is stopping
        (b"O\x05\x00\x00\x00\x09\x00\x00\x00k", ProtocolError),  # get reply field overruns
    ],
)
def test_client_rejects_bad_replies(reply, error):
    listener, port = _fake_server(reply)
    with listener:
        c = Client("127.0.0.1", port, timeout=5)
        with pytest.raises(error):
            c.get(b"k")
        c.close()

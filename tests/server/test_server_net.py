"""engine.server over real loopback sockets: every op-code byte for byte,
pipelining, concurrency, malformed and truncated input, timeouts, shutdown."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from server_harness import (
    error_reply,
    field,
    get_reply,
    read_reply,
    recv_all,
    recv_exact,
    req_delete,
    req_get,
    req_insert,
    u32,
)

from engine.net.client import Client, RemoteError, ServerShutdownError

# -- every op-code, byte for byte -------------------------------------------------


def test_each_opcode_byte_for_byte(start_server):
    st = start_server()
    sock = st.connect()
    sock.sendall(b"P")
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(req_insert(b"key", b"value"))
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(req_get(b"key"))
    want = b"O" + u32(4 + 3 + 4 + 5) + u32(3) + b"key" + u32(5) + b"value"
    assert recv_exact(sock, len(want)) == want
    sock.sendall(req_insert(b"empty", b""))
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(req_get(b"empty"))
    assert read_reply(sock, with_body=True) == get_reply(b"empty", b"")
    sock.sendall(req_delete(b"key"))
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(req_get(b"key"))
    assert read_reply(sock) == error_reply("key not found")
    sock.sendall(req_delete(b"key"))  # deleting a missing key is not an error
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(b"C")
    assert recv_all(sock) == b"O"  # O, then the server closes
    sock.close()
    tree = st.db.tree("default")
    assert tree.get(b"key") is None and tree.get(b"empty") == b""


def test_shutdown_refused_without_allow_shutdown(start_server):
    st = start_server()
    sock = st.connect()
    sock.sendall(b"S")
    reply = read_reply(sock)
    assert reply[:1] == b"E" and b"allow-shutdown" in reply
    sock.sendall(b"P")  # still serving, same connection
    assert recv_exact(sock, 1) == b"O"
    with Client(*st.address) as c, pytest.raises(RemoteError, match="not allowed"):
        c.shutdown()
    assert not st.stopped


def test_engine_errors_become_error_replies(start_server):
    st = start_server()
    sock = st.connect()
    for request in (
        req_insert(b"", b"v"),
        req_insert(b"k" * 1025, b"v"),
        req_get(b""),
        req_delete(b""),
    ):
        sock.sendall(request)
        reply = read_reply(sock)
        assert reply[:1] == b"E" and b"KeyTooLargeError" in reply, reply
    sock.sendall(b"P")
    assert recv_exact(sock, 1) == b"O"
    assert len(st.db.tree("default")) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no key length at all
        u32(5) + b"abc",  # key length runs past the body
        field(b"k"),  # insert without a value field
        field(b"k") + u32(9) + b"v",  # value length runs past the body
        field(b"k") + field(b"v") + b"x",  # trailing byte
    ],
)
def test_malformed_insert_body_is_an_error_and_the_connection_continues(start_server, body):
    st = start_server()
    sock = st.connect()
    sock.sendall(b"I" + u32(len(body)) + body + req_insert(b"ok", b"1"))
    reply = read_reply(sock)
    assert reply[:1] == b"E" and b"malformed body" in reply, reply
    assert recv_exact(sock, 1) == b"O"  # the next request still frames and runs
    tree = st.db.tree("default")
    assert list(tree.scan()) == [(b"ok", b"1")]


@pytest.mark.parametrize("op", [b"G", b"D"])
def test_malformed_key_body(start_server, op):
    st = start_server()
    st.db.tree("default").put(b"k", b"v")
    sock = st.connect()
    for body in (b"", b"\x01\x00", u32(2) + b"k", field(b"k") + b"\x00"):
        sock.sendall(op + u32(len(body)) + body)
        reply = read_reply(sock)
        assert reply[:1] == b"E" and b"malformed body" in reply, (body, reply)
    assert st.db.tree("default").get(b"k") == b"v"


# -- framing errors close the connection after an E --------------------------------


def test_every_unknown_opcode_gets_an_error_then_close(start_server):
    st = start_server()
    for op in range(256):
        if bytes([op]) in b"PSCIGDRX":
            continue
        sock = st.connect()
        # A valid insert after the bad byte must never run: the stream is unframed.
        sock.sendall(bytes([op]) + req_insert(b"k", b"v"))
        data = recv_all(sock)
        sock.close()
        assert data == error_reply(f"unknown op-code 0x{op:02x}"), (op, data)
    assert len(st.db.tree("default")) == 0


def test_oversized_body_is_refused_without_waiting_for_it(start_server):
    st = start_server(max_body=1024)
    sock = st.connect()
    sock.sendall(b"I" + u32(1025))  # the body is never sent; must not hang
    assert recv_all(sock) == error_reply("body length 1025 above the limit of 1024")
    sock.close()
    sock = st.connect()
    body = field(b"k") + field(b"v" * 1015)  # exactly at the limit: accepted
    assert len(body) == 1024
    sock.sendall(b"I" + u32(len(body)) + body)
    assert recv_exact(sock, 1) == b"O"
    sock.close()


def test_lying_length_at_4_gib_is_refused(start_server):
    st = start_server()
    sock = st.connect()
    sock.sendall(b"G" + b"\xff\xff\xff\xff" + field(b"k"))
    reply = recv_all(sock)
    assert reply[:1] == b"E" and b"above the limit" in reply


def test_truncation_at_every_byte_of_a_valid_request(start_server):
    st = start_server()
    tree = st.db.tree("default")
    first = req_insert(b"first", b"1")
    request = req_insert(b"key", b"some value")
    for cut in range(len(request)):
        sock = st.connect()
        sock.sendall(first + request[:cut])
        sock.shutdown(socket.SHUT_WR)
        data = recv_all(sock)
        sock.close()
        if cut == 0:
            assert data == b"O"
        else:
            assert data == b"O" + error_reply("truncated request"), (cut, data)
        assert tree.get(b"key") is None, cut  # never a partial write
    sock = st.connect()
    sock.sendall(request)
    sock.shutdown(socket.SHUT_WR)
    assert recv_all(sock) == b"O"
    assert tree.get(b"key") == b"some value"


def test_slow_partial_request_times_out(start_server):
    st = start_server(request_timeout=0.3)
    sock = st.connect()
    request = req_insert(b"slow", b"v")
    began = time.monotonic()
    sock.sendall(request[:7])
    assert recv_all(sock) == error_reply("request timed out")
    assert time.monotonic() - began < 3.0
    assert st.db.tree("default").get(b"slow") is None


def test_idle_connection_is_closed_and_active_one_is_not(start_server):
    st = start_server(idle_timeout=0.4)
    idle = st.connect()
    with Client(*st.address) as active:
        began = time.monotonic()
        while time.monotonic() - began < 1.0:
            active.ping()
            time.sleep(0.05)
        assert recv_all(idle) == b""  # the server closed it without a word
        active.ping()


def test_client_that_never_reads_is_dropped_and_others_are_served(start_server):
    st = start_server(request_timeout=0.5)
    st.db.tree("default").put(b"big", b"x" * 16384)
    hog = st.connect()
    hog.sendall(req_get(b"big") * 500)  # 8 MB of replies requested, none read
    time.sleep(0.1)
    with Client(*st.address) as other:
        began = time.monotonic()
        other.ping()
        assert time.monotonic() - began < 0.5
    time.sleep(1.0)  # past request_timeout with the server's writes stalled
    received = 0
    with pytest.raises((ConnectionResetError, EOFError)):
        while True:  # what the kernel buffered, then the reset of the abort
            data = hog.recv(1 << 20)
            if not data:
                raise EOFError
            received += len(data)
    assert received < 500 * 16384  # it was cut off, not served to the end
    hog.close()


# -- pipelining and concurrency -----------------------------------------------------


def test_pipelined_requests_are_answered_in_order(start_server):
    st = start_server()
    stream, want, model = [], [], {}
    for i in range(400):
        key = b"k%03d" % (i % 37)
        kind = i % 4
        if kind == 0:
            stream.append(req_insert(key, b"v%d" % i))
            model[key] = b"v%d" % i
            want.append(b"O")
        elif kind == 1:
            stream.append(req_get(key))
            want.append(
                get_reply(key, model[key]) if key in model else error_reply("key not found")
            )
        elif kind == 2:
            stream.append(req_delete(key))
            model.pop(key, None)
            want.append(b"O")
        else:
            stream.append(b"P")
            want.append(b"O")
    sock = st.connect()
    sock.sendall(b"".join(stream) + b"C")
    assert recv_all(sock) == b"".join(want) + b"O"
    assert dict(st.db.tree("default").scan()) == model


def test_hundred_concurrent_clients(start_server):
    st = start_server()
    per_client = 20
    failures: list[BaseException] = []
    barrier = threading.Barrier(100)

    def run(n: int) -> None:
        try:
            with Client(*st.address) as c:
                barrier.wait(10)
                for i in range(per_client):
                    key = b"c%03d-%02d" % (n, i)
                    c.insert(key, key * 3)
                    assert c.get(key) == key * 3
                c.delete(b"c%03d-00" % n)
                assert c.get(b"c%03d-00" % n) is None
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:3]
    tree = st.db.tree("default")
    assert len(tree) == 100 * (per_client - 1)
    assert tree.get(b"c042-07") == b"c042-07" * 3


# -- the scan extension --------------------------------------------------------------


def test_scan_extension_matches_the_tree(start_server):
    st = start_server()
    tree = st.db.tree("default")
    for i in range(250):
        tree.put(b"s%03d" % i, b"%d" % i)
    tree.put(b"t", b"")
    with Client(*st.address) as c:
        assert list(c.scan(page=7)) == list(tree.scan())
        assert list(c.scan(reverse=True, page=9)) == list(tree.scan(reverse=True))
        assert list(c.scan(b"s100", b"s120", page=3)) == list(tree.scan(b"s100", b"s120"))
        assert list(c.scan(b"s100", b"s120", reverse=True, page=4)) == list(
            tree.scan(b"s100", b"s120", reverse=True)
        )
        assert list(c.scan(prefix=b"s24")) == [(b"s24%d" % i, b"24%d" % i) for i in range(10)]
        assert list(c.scan(b"zzz")) == []


def test_scan_malformed_body(start_server):
    st = start_server()
    sock = st.connect()
    for body in (b"", u32(0) + b"\x02" + field(b"") * 3, u32(0) + b"\x00" + field(b"") * 2):
        sock.sendall(b"R" + u32(len(body)) + body)
        reply = read_reply(sock)
        assert reply[:1] == b"E" and b"malformed body" in reply, (body, reply)


# -- shutdown -------------------------------------------------------------------------


def test_allowed_shutdown_sends_s_to_every_client(start_server):
    st = start_server(allow_shutdown=True)
    watchers = [st.connect() for _ in range(3)]
    for w in watchers:
        w.sendall(b"P")
        assert recv_exact(w, 1) == b"O"
    with Client(*st.address) as c:
        c.insert(b"before", b"1")
        c.shutdown()
    for w in watchers:
        assert recv_all(w) == b"S"
        w.close()
    st.join()
    assert st.db.tree("default").get(b"before") == b"1"
    with pytest.raises(OSError):
        socket.create_connection(st.address, timeout=2).close()


def test_stop_answers_received_requests_then_sends_s(start_server):
    st = start_server()
    busy = st.connect()
    partial = st.connect()
    idle = Client(*st.address)
    pipelined = b"".join(req_insert(b"p%03d" % i, b"v") for i in range(200))
    busy.sendall(pipelined)
    partial.sendall(req_insert(b"half", b"value")[:9])
    time.sleep(0.2)  # let the server receive both
    stopper = threading.Thread(target=st.stop)
    stopper.start()
    assert recv_all(busy) == b"O" * 200 + b"S"
    assert recv_all(partial) == b"S"
    with pytest.raises(ServerShutdownError):
        idle.ping()
    busy.close()
    partial.close()
    stopper.join(10)
    assert st.stopped
    tree = st.db.tree("default")
    assert len(tree) == 200 and tree.get(b"half") is None


def test_backpressure_keeps_every_reply_of_a_long_pipeline(start_server):
    st = start_server()
    n = 30_000  # far above the 256-request queue: framing waits in the parser
    stream = b"".join(req_insert(b"bp%05d" % i, b"v") if i % 100 == 0 else b"P" for i in range(n))
    sock = st.connect(timeout=30)
    sender = threading.Thread(target=sock.sendall, args=(stream + req_insert(b"cut", b"x")[:6],))
    sender.start()
    sender.join(30)
    sock.shutdown(socket.SHUT_WR)
    data = recv_all(sock)
    sock.close()
    assert data == b"O" * n + error_reply("truncated request")
    tree = st.db.tree("default")
    assert len(tree) == len(range(0, n, 100)) and tree.get(b"cut") is None


def test_failed_final_checkpoint_is_reported_by_stop():
    from server_harness import ServerThread

    from engine.errors import StorageIOError
    from models import ModelDatabase

    class FailingCheckpoint(ModelDatabase):
        def checkpoint(self) -> None:
            raise StorageIOError("disk gone")

    st = ServerThread(FailingCheckpoint())
    with Client(*st.address) as c:
        c.insert(b"k", b"v")
    with pytest.raises(StorageIOError, match="disk gone"):
        st.stop()
    st.join()
    assert isinstance(st.error, StorageIOError)

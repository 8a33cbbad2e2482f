"""The sans-I/O halves of the protocol: the server's request framing and body
decoders against the client's encoders, without sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_harness import expected_replies, req_insert, u32

from engine import client, server

WIRE = settings(max_examples=200, deadline=None)
MAX_BODY = 64


def _frame_all(parser: server.RequestParser) -> tuple[list[tuple[int, bytes]], bool]:
    out = []
    try:
        while (req := parser.next_request()) is not None:
            out.append(req)
    except server.FramingError:
        return out, True
    return out, False


@WIRE
@given(stream=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=10))
def test_framing_does_not_depend_on_how_bytes_arrive(stream, cuts):
    whole = server.RequestParser(MAX_BODY)
    whole.feed(stream)
    want = _frame_all(whole)
    parser = server.RequestParser(MAX_BODY)
    got: list[tuple[int, bytes]] = []
    failed = False
    prev = 0
    for cut in sorted({c for c in cuts if c < len(stream)} | {len(stream)}):
        parser.feed(stream[prev:cut])
        prev = cut
        more, failed = _frame_all(parser)
        got += more
        if failed:
            break
    assert (got, failed) == want


@WIRE
@given(stream=st.binary(max_size=120))
def test_framing_agrees_with_the_reference_reading(stream):
    # The reference applies bodies; only the framing (count, error) is compared.
    parser = server.RequestParser(MAX_BODY)
    parser.feed(stream)
    framed, failed = _frame_all(parser)
    replies, closed = expected_replies(stream, {}, max_body=MAX_BODY)
    ops = [op for op, _ in framed]
    if ord("C") in ops:  # the server stops at C; so does the reference
        assert len(replies) == ops.index(ord("C")) + 1 and not closed
    else:
        broken = failed or parser.pending > 0  # unframeable, or truncated at EOF
        assert len(replies) == len(framed) + broken
        assert closed == broken


def test_a_request_is_returned_only_with_its_last_byte():
    request = req_insert(b"key", b"value")
    parser = server.RequestParser()
    for i, byte in enumerate(request):
        parser.feed(bytes([byte]))
        got = parser.next_request()
        if i < len(request) - 1:
            assert got is None and parser.pending == i + 1
        else:
            assert got == (ord("I"), request[5:]) and parser.pending == 0


def test_framing_errors():
    parser = server.RequestParser(16)
    parser.feed(b"I" + u32(17))
    with pytest.raises(server.FramingError, match="above the limit"):
        parser.next_request()
    parser = server.RequestParser(16)
    parser.feed(b"x")
    with pytest.raises(server.FramingError, match="unknown op-code 0x78"):
        parser.next_request()


@WIRE
@given(key=st.binary(max_size=40), value=st.binary(max_size=40))
def test_client_encoders_round_trip_through_server_decoders(key, value):
    def body(request: bytes) -> bytes:
        parser = server.RequestParser()
        parser.feed(request)
        op, data = parser.next_request()
        assert parser.pending == 0 and op == request[0]
        return data

    assert server.decode_insert_body(body(client.encode_insert(key, value))) == (key, value)
    assert server.decode_key_body(body(client.encode_get(key))) == key
    assert server.decode_key_body(body(client.encode_delete(key))) == key
    scan = client.encode_scan(key, value, key + value, reverse=True, limit=7)
    assert server.decode_scan_body(body(scan)) == (7, True, key, value, key + value)


def test_reply_encoders_are_the_go_format():
    assert server.encode_get(b"k", b"vv") == b"O" + u32(11) + u32(1) + b"k" + u32(2) + b"vv"
    assert server.encode_error("bad") == b"E" + u32(3) + b"bad"
    long = server.encode_error("€" * 5000)  # capped at 4096 bytes, on a character boundary
    assert long[1:5] == u32(4095) and long[5:].decode("utf-8") == "€" * 1365

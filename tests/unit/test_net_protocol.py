"""engine.net.protocol, the wire format without sockets: every encoder
against its decoder, the framing against any split of the stream, and the
decoders against arbitrary bytes (a typed error or a canonical result)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import errors
from engine.net import protocol as p

WIRE = settings(max_examples=300, deadline=None)
U32 = struct.Struct("<I")

short = st.binary(max_size=48)
pairs = st.lists(st.tuples(st.binary(min_size=1, max_size=24), st.binary(max_size=40)), max_size=12)


def _body(request: bytes) -> bytes:
    """The body of one encoded request, checked against its length header."""
    assert U32.unpack_from(request, 1)[0] == len(request) - 5
    return request[5:]


def _reply_body(reply: bytes) -> bytes:
    assert reply[:1] == b"O" and U32.unpack_from(reply, 1)[0] == len(reply) - 5
    return reply[5:]


# -- requests ----------------------------------------------------------------------


@WIRE
@given(key=short, value=short, start=short, end=short, prefix=short,
       reverse=st.booleans(), limit=st.integers(0, 2**32 - 1))
def test_request_encoders_round_trip(key, value, start, end, prefix, reverse, limit):
    assert p.decode_insert_body(_body(p.encode_insert(key, value))) == (key, value)
    for encode in (p.encode_get, p.encode_delete, p.encode_remove):
        assert p.decode_key_body(_body(encode(key))) == key
    scan = p.encode_scan(start, end, prefix, reverse=reverse, limit=limit)
    assert p.decode_scan_body(_body(scan)) == (limit, reverse, start, end, prefix)
    assert [r[:1] for r in (p.encode_insert(key, value), p.encode_get(key), p.encode_delete(key),
                            p.encode_remove(key), scan)] == [b"I", b"G", b"D", b"X", b"R"]


@st.composite
def near_bodies(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a valid request body with one byte changed, cut or
    added: random bytes alone seldom frame three fields."""
    body = draw(st.one_of(
        st.builds(p.encode_insert, short, short),
        st.builds(p.encode_get, short),
        st.builds(p.encode_scan, short, short, short, reverse=st.booleans(),
                  limit=st.integers(0, 2**32 - 1)),
    ))[5:]
    i = draw(st.integers(0, len(body)))
    byte = bytes([draw(st.integers(0, 255))])
    return draw(st.sampled_from([
        body, body[:i] + byte + body[i + 1:], body[:i], body[:i] + byte + body[i:],
        draw(st.binary(max_size=40)),
    ]))


@WIRE
@given(body=near_bodies())
def test_body_decoders_take_any_bytes_and_are_canonical(body):
    """A body decodes to the fields that encode back to it, or raises BodyError
    (a ValueError, answered with E): never anything else."""
    for decode, encode in (
        (p.decode_key_body, lambda key: p.encode_get(key)),
        (p.decode_insert_body, lambda kv: p.encode_insert(*kv)),
        (p.decode_scan_body, lambda s: p.encode_scan(s[2], s[3], s[4], reverse=s[1], limit=s[0])),
    ):
        try:
            fields = decode(body)
        except p.BodyError as exc:
            assert str(exc).startswith("malformed body: ")
            assert isinstance(exc, ValueError) and p.error_text(exc) == str(exc)
        else:
            assert _body(encode(fields)) == body


@WIRE
@given(limit=st.integers(0, 2**32 - 1), flags=st.integers(0, 255), start=short, end=short,
       prefix=short)
def test_scan_body_accepts_exactly_the_flags_it_can_encode(limit, flags, start, end, prefix):
    fields = b"".join(U32.pack(len(f)) + f for f in (start, end, prefix))
    body = struct.pack("<IB", limit, flags) + fields
    if flags > 1:
        with pytest.raises(p.BodyError, match="unknown scan flags"):
            p.decode_scan_body(body)
    else:
        assert p.decode_scan_body(body) == (limit, flags == 1, start, end, prefix)
        assert _body(p.encode_scan(start, end, prefix, reverse=flags == 1, limit=limit)) == body


@pytest.mark.parametrize(("body", "message"), [
    (b"", "missing length"),
    (U32.pack(2) + b"k", "length runs past the end"),
    (U32.pack(1) + b"kx", "trailing bytes"),
])
def test_body_errors_say_what_is_wrong(body, message):
    with pytest.raises(p.BodyError, match=f"^malformed body: {message}$"):
        p.decode_key_body(body)


def test_scan_body_errors():
    with pytest.raises(p.BodyError, match="missing scan header"):
        p.decode_scan_body(b"\x00\x00\x00")
    flagged = bytearray(_body(p.encode_scan()))
    flagged[4] = 0x02
    with pytest.raises(p.BodyError, match="unknown scan flags"):
        p.decode_scan_body(bytes(flagged))


@WIRE
@given(requests=st.lists(st.one_of(
    st.sampled_from([b"P", b"S", b"C"]),
    st.builds(p.encode_insert, short, short),
    st.builds(p.encode_get, short),
    st.builds(p.encode_delete, short),
    st.builds(p.encode_remove, short),
    st.builds(p.encode_scan, short, short, short),
), max_size=8), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_parser_returns_each_encoded_request_however_the_bytes_arrive(requests, cuts):
    stream = b"".join(requests)
    parser = p.RequestParser(max_body=256)
    got, prev = [], 0
    for cut in sorted({c for c in cuts if c < len(stream)} | {len(stream)}):
        parser.feed(stream[prev:cut])
        prev = cut
        while (req := parser.next_request()) is not None:
            got.append(req)
    assert got == [(r[0], r[5:]) for r in requests] and parser.pending == 0


def test_parser_refuses_a_header_above_the_limit_before_the_body_comes():
    parser = p.RequestParser(max_body=8)
    parser.feed(b"G" + U32.pack(9))
    with pytest.raises(p.FramingError, match="body length 9 above the limit of 8"):
        parser.next_request()
    parser.clear()
    parser.feed(b"Z")
    with pytest.raises(p.FramingError, match="unknown op-code 0x5a"):
        parser.next_request()


@given(limit=st.integers(0, 2**32 - 1))
def test_scan_limit_is_the_request_or_the_cap(limit):
    got = p.scan_limit(limit)
    assert 1 <= got <= p.SCAN_MAX_ITEMS
    assert got == (limit if 0 < limit <= p.SCAN_MAX_ITEMS else p.SCAN_MAX_ITEMS)


# -- replies -----------------------------------------------------------------------


@WIRE
@given(key=short, value=short, junk=st.binary(max_size=8))
def test_get_reply_round_trips_and_frames(key, value, junk):
    reply = p.encode_get_reply(key, value)
    assert p.decode_get_reply(_reply_body(reply)) == (key, value)
    assert p.reply_length(reply + junk, with_body=True) == len(reply)
    assert all(p.reply_length(reply[:n], with_body=True) is None for n in range(len(reply)))


@WIRE
@given(items=pairs, limit=st.integers(1, 20), max_bytes=st.integers(0, 400))
def test_scan_reply_is_a_prefix_within_its_bounds(items, limit, max_bytes):
    reply = p.encode_scan_reply(iter(items), limit, max_bytes)
    assert p.reply_length(reply, with_body=True) == len(reply)
    more, got = p.decode_scan_reply(_reply_body(reply))
    assert got == items[: len(got)]
    assert more == (len(got) < len(items))
    assert len(got) <= limit and (got or not items)  # at least one pair when there is one
    size = sum(8 + len(k) + len(v) for k, v in got)
    assert len(got) <= 1 or size <= max_bytes
    if more and len(got) < limit:  # cut by size: the next pair would not have fitted
        k, v = items[len(got)]
        assert size + 8 + len(k) + len(v) > max_bytes


@given(found=st.booleans())
def test_remove_reply_round_trips(found):
    reply = p.encode_remove_reply(found)
    assert p.decode_remove_reply(_reply_body(reply)) is found
    assert p.reply_length(reply, with_body=True) == len(reply)


def _encode_scan_page(page: tuple[bool, list[tuple[bytes, bytes]]]) -> bytes:
    """The reply that decodes to `page`: its pairs, and one more left out when `more`."""
    more, got = page
    return p.encode_scan_reply(got + [(b"next", b"")] * more, len(got), 2**32)


@WIRE
@given(body=st.binary(max_size=40))
def test_reply_decoders_take_any_bytes(body):
    """A reply body decodes to what encodes back to it, or raises ProtocolError."""
    for decode, encode in (
        (p.decode_get_reply, lambda kv: p.encode_get_reply(*kv)),
        (p.decode_remove_reply, p.encode_remove_reply),
        (p.decode_scan_reply, _encode_scan_page),
    ):
        try:
            decoded = decode(body)
        except p.ProtocolError:
            continue
        assert _reply_body(encode(decoded)) == body


def test_reply_framing_of_the_bodiless_replies():
    assert p.reply_length(b"", with_body=False) is None
    assert p.reply_length(b"OO", with_body=False) == 1
    assert p.reply_length(b"S", with_body=True) == 1
    error = p.encode_error("bad")
    assert p.reply_length(error + b"O", with_body=False) == len(error)
    assert p.reply_length(error[:4], with_body=False) is None
    with pytest.raises(p.ProtocolError, match="unexpected reply byte b'X'"):
        p.reply_length(b"X", with_body=False)


@WIRE
@given(message=st.text(max_size=1500))
def test_error_reply_is_valid_utf8_cut_at_4096_bytes(message):
    reply = p.encode_error(message)
    data = reply[5:]
    assert reply[:1] == b"E" and U32.unpack_from(reply, 1)[0] == len(data) <= 4096
    text = data.decode("utf-8")
    whole = message.encode("utf-8", "replace").decode("utf-8")
    assert whole.startswith(text) and (text == whole or len(whole.encode()) > 4096)


# -- error names -------------------------------------------------------------------

ENGINE_ERRORS = [getattr(errors, name) for name in errors.__all__ if name != "DragonDBError"]


@WIRE
@given(cls=st.sampled_from(ENGINE_ERRORS), text=st.text(max_size=40))
def test_an_engine_error_crosses_the_wire_as_itself(cls, text):
    exc = cls(text)
    message = p.encode_error(p.error_text(exc))[5:].decode("utf-8")
    again = p.remote_error(message)
    assert isinstance(again, cls) and isinstance(again, p.RemoteError)
    assert type(again).__name__ == cls.__name__ and again.name == cls.__name__
    assert str(again) == str(exc) and again.message == message


@given(message=st.text(max_size=40))
def test_an_unknown_name_is_a_plain_remote_error(message):
    name = message.partition(": ")[0] if ": " in message else message
    exc = p.remote_error(message)
    if name in p.REMOTE_ERRORS:
        assert isinstance(exc, p.REMOTE_ERRORS[name])
    else:
        assert type(exc) is p.RemoteError and exc.name is None and str(exc) == message


def test_a_non_engine_exception_is_named_but_stays_a_remote_error():
    text = p.error_text(KeyError("k"))
    assert text == "KeyError: 'k'"
    exc = p.remote_error(text)
    assert type(exc) is p.RemoteError and str(exc) == text
    assert p.error_text(RuntimeError()) == "RuntimeError"

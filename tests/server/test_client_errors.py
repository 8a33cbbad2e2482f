"""The client raises the engine's own exception types for the errors the
server reports by name, and `remote-delete` says whether the key existed
(the `X` extension), exiting like `delete`."""

from __future__ import annotations

import pytest

import engine
from engine import cli, client, errors
from engine.net.client import Client, RemoteError

ENGINE_ERRORS = [getattr(errors, name) for name in errors.__all__ if name != "DragonDBError"]


@pytest.mark.parametrize("cls", ENGINE_ERRORS, ids=lambda c: c.__name__)
def test_every_engine_error_name_maps_to_its_class(cls):
    exc = client.remote_error(f"{cls.__name__}: what went wrong")
    assert isinstance(exc, cls) and isinstance(exc, RemoteError)
    assert type(exc).__name__ == cls.__name__
    assert str(exc) == "what went wrong"
    assert exc.message == f"{cls.__name__}: what went wrong"  # the wire text, whole
    assert exc.name == cls.__name__
    bare = client.remote_error(cls.__name__)  # an exception without a message
    assert isinstance(bare, cls) and str(bare) == ""


@pytest.mark.parametrize("message", [
    "key not found",
    "shutdown not allowed (start the server with --allow-shutdown)",
    "KeyError: 'tree dropped'",  # not an engine error
    "DragonDBError: abstract",  # the base is never raised by the engine
    "SomethingNew: from a newer server",
    "malformed body: trailing bytes",
])
def test_other_messages_stay_remote_errors(message):
    exc = client.remote_error(message)
    assert type(exc) is RemoteError
    assert str(exc) == message == exc.message


def test_storage_errors_are_os_errors_too():
    exc = client.remote_error("NeedsRecoveryError: log fsync failed")
    assert isinstance(exc, engine.NeedsRecoveryError) and isinstance(exc, engine.StorageIOError)
    assert isinstance(exc, OSError) and str(exc) == "log fsync failed"


def test_client_raises_typed_errors_from_a_server(start_server, open_db, tmp_path):
    st = start_server()
    with Client(*st.address) as c:
        with pytest.raises(engine.KeyTooLargeError, match="keys are 1..1024 bytes") as info:
            c.get(b"")
        assert isinstance(info.value, ValueError) and isinstance(info.value, RemoteError)
        with pytest.raises(engine.KeyTooLargeError):
            c.insert(b"k" * 1025, b"v")
        with pytest.raises(engine.KeyTooLargeError):
            c.insert_many([(b"a", b"1"), (b"", b"2")])
        with pytest.raises(RemoteError, match="not allowed") as info:
            c.shutdown()
        assert type(info.value) is RemoteError
        c.ping()  # still in step
    db = open_db("ro")
    db.tree("default")[b"k"] = b"v"
    db.close()
    ro = engine.open(tmp_path / "ro", read_only=True, create=False)
    try:
        st2 = start_server(ro)
        with Client(*st2.address) as c:
            with pytest.raises(engine.ReadOnlyError):
                c.insert(b"a", b"b")
            with pytest.raises(engine.ReadOnlyError):
                c.remove(b"k")
            assert c.get(b"k") == b"v"
        st2.stop()
    finally:
        ro.close()


def test_remove_reports_whether_the_key_existed(start_server):
    st = start_server()
    with Client(*st.address) as c:
        c.insert(b"k", b"v")
        assert c.remove(b"k") is True
        assert c.remove(b"k") is False
        assert c.get(b"k") is None
        with pytest.raises(engine.KeyTooLargeError):
            c.remove(b"")
        c.delete(b"k")  # D stays as the Go server has it: no answer about existence
    assert len(st.db.tree("default")) == 0


def test_remote_delete_exits_like_delete(start_server, capsys):
    st = start_server()
    host, port = st.address
    st.db.tree("default")[b"here"] = b"v"
    remote = ["--host", host, "--port", str(port)]
    assert cli.main(["remote-delete", *remote, "here"]) == cli.EXIT_OK
    assert st.db.tree("default").get(b"here") is None
    capsys.readouterr()
    assert cli.main(["remote-delete", *remote, "here"]) == cli.EXIT_NOT_FOUND
    err = capsys.readouterr().err
    assert err.startswith("dragondb: not found: ") and "here" in err
    assert cli.main(["remote-delete", *remote, "--hex", ""]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("dragondb: error: ") and err.rstrip().endswith("(KeyTooLargeError)")


def test_x_extension_byte_for_byte(start_server):
    from server_harness import error_reply, field, read_reply, recv_exact, req_insert, u32

    st = start_server()
    sock = st.connect()
    sock.sendall(req_insert(b"key", b"value"))
    assert recv_exact(sock, 1) == b"O"
    sock.sendall(b"X" + u32(7) + field(b"key"))
    assert recv_exact(sock, 6) == b"O" + u32(1) + b"\x01"
    sock.sendall(b"X" + u32(7) + field(b"key"))
    assert recv_exact(sock, 6) == b"O" + u32(1) + b"\x00"
    sock.sendall(b"X" + u32(8) + field(b"key") + b"!")  # framed, but not one field
    assert read_reply(sock) == error_reply("malformed body: trailing bytes")
    sock.sendall(b"P")
    assert recv_exact(sock, 1) == b"O"  # the connection stays in step
    sock.close()

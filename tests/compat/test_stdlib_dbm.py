"""`engine.dbm` against the stdlib's own dbm tests, plus our own dbm and shelve tests.

CPython's `test.test_dbm` builds one test class per dbm module from
`AnyDBMTestCase`, calling `dbm.open` with `dbm._defaultmod` set to the module
under test. `dbm.whichdb` cannot recognise a DragonDB file, so the stdlib
front end would refuse to reopen one; we run the same class with its `dbm`
global pointed at a front end that always dispatches to `engine.dbm`.

Where the interpreter ships without the `test` package (some distributions
split it out), the stdlib classes are absent; the tests below them assert
the same behaviour (and the generic parts of `test.test_dbm_dumb`) in our
own words, and always run.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import shelve
import stat
import types
import unittest
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
import engine.dbm as edbm
from engine.errors import (
    DatabaseClosedError,
    DatabaseLockedError,
    DragonDBError,
    NotADatabaseError,
    ReadOnlyError,
)

try:
    from test import test_dbm as _stdlib_test_dbm
except ImportError:  # interpreter without the `test` package
    _stdlib_test_dbm = None


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stdlib tests use relative scratch names (os_helper.TESTFN): keep them in tmp_path.
    monkeypatch.chdir(tmp_path)


def _assert_engine_consistent(path: str) -> None:
    with engine.open(path, create=False) as db:
        report = db.check()
        assert report.ok, report.problems
        assert report.pages_leaked == 0


@pytest.fixture
def path(tmp_path: pathlib.Path):
    name = str(tmp_path / "db")
    yield name
    if os.path.exists(name):
        _assert_engine_consistent(name)


# -- the stdlib's own tests ---------------------------------------------------------

if _stdlib_test_dbm is not None:

    def _front_open(file, flag="r", mode=0o666):
        return _front._defaultmod.open(file, flag, mode)

    # Stands in for the `dbm` package inside test.test_dbm: same names, no whichdb.
    _front = types.SimpleNamespace(open=_front_open, error=edbm.error, _defaultmod=edbm)

    class TestStdlibAnyDBM(_stdlib_test_dbm.AnyDBMTestCase, unittest.TestCase):
        """CPython's generic dbm assertions (test.test_dbm.AnyDBMTestCase), run on engine.dbm."""

        module = edbm

        def setUp(self) -> None:
            self.addCleanup(setattr, _stdlib_test_dbm, "dbm", _stdlib_test_dbm.dbm)
            _stdlib_test_dbm.dbm = _front
            super().setUp()


# -- the same assertions in our own words, plus the generic parts of test_dbm_dumb ---

SAMPLE = {
    b"0": b"",
    b"a": b"Python:",
    b"b": b"Programming",
    b"c": b"the",
    b"d": b"way",
    b"f": b"Guido",
    b"g": b"intended",
    "\u00fc".encode(): b"!",
}


def _fill(path: str, data: dict[bytes, bytes] = SAMPLE) -> None:
    with edbm.open(path, "n") as db:
        for key, value in data.items():
            db[key] = value


def test_error_is_dbm_error_and_engine_error() -> None:
    assert issubclass(edbm.error, OSError)
    assert issubclass(edbm.error, DragonDBError)


@pytest.mark.parametrize("flag", ["r", "w"])
def test_missing_file_needs_c_or_n(path, flag) -> None:
    with pytest.raises(edbm.error) as info:
        edbm.open(path, flag)
    assert isinstance(info.value, FileNotFoundError)
    assert not os.path.exists(path)
    assert not os.path.exists(path + "-wal")


@pytest.mark.parametrize("flag", ["c", "n"])
def test_creation(path, flag) -> None:
    with edbm.open(path, flag) as db:
        assert db.keys() == []
        assert len(db) == 0
        for key, value in SAMPLE.items():
            db[key] = value
        assert sorted(db.keys()) == sorted(SAMPLE)
        assert all(db[key] == value for key, value in SAMPLE.items())
    assert os.path.exists(path)


def test_default_flag_is_read_only(path) -> None:
    _fill(path)
    with edbm.open(path) as db:
        assert db[b"a"] == b"Python:"
        with pytest.raises(edbm.error):
            db[b"a"] = b"x"


def test_read(path) -> None:
    _fill(path)
    with edbm.open(path, "r") as db:
        assert sorted(db.keys()) == sorted(SAMPLE)
        assert db.get(b"a") == SAMPLE[b"a"]
        assert db.get(b"xxx", b"foo") == b"foo"
        assert db.get(b"xxx") is None
        with pytest.raises(KeyError):
            db[b"xxx"]
        assert b"a" in db
        assert b"xxx" not in db
        assert len(db) == len(SAMPLE)


@pytest.mark.parametrize(
    "write",
    [
        lambda db: db.__setitem__(b"g", b"x"),
        lambda db: db.__delitem__(b"a"),
        lambda db: db.setdefault(b"new", b"x"),
        lambda db: db.clear(),
    ],
)
def test_read_only_refuses_writes(path, write) -> None:
    _fill(path)
    with edbm.open(path, "r") as db:
        with pytest.raises(edbm.error, match="opened for reading only") as info:
            write(db)
        assert isinstance(info.value, ReadOnlyError)
        assert dict(db.items()) == SAMPLE


@pytest.mark.parametrize("flag", ["c", "w"])
def test_modification_and_setdefault(path, flag) -> None:
    _fill(path)
    with edbm.open(path, flag) as db:
        db[b"g"] = b"indented"
        assert db[b"g"] == b"indented"
        assert db.setdefault(b"xxx", b"foo") == b"foo"
        assert db[b"xxx"] == b"foo"
        assert db.setdefault(b"xxx", b"bar") == b"foo"
        assert db.setdefault(b"yyy") == b""
    with edbm.open(path, "r") as db:
        assert db[b"g"] == b"indented"
        assert db[b"xxx"] == b"foo"


def test_empty_value(path) -> None:
    with edbm.open(path, "c") as db:
        db[b"empty"] = b""
        assert db.keys() == [b"empty"]
        assert b"empty" in db
        assert db[b"empty"] == b""
        assert db.get(b"empty") == b""
        assert db.setdefault(b"empty") == b""


def test_empty_key(path) -> None:
    with edbm.open(path, "c") as db:
        assert b"" not in db
        db[b""] = b"nothing"
        db[b"a"] = b"1"
        assert db[b""] == b"nothing"
        assert db[""] == b"nothing"
        assert db.keys() == [b"", b"a"]
        assert len(db) == 2
    with edbm.open(path, "w") as db:
        assert db[b""] == b"nothing"
        del db[b""]
        assert b"" not in db
        with pytest.raises(KeyError):
            del db[b""]
        with pytest.raises(KeyError):
            db[b""]
        assert db.keys() == [b"a"]


def test_keys(path) -> None:
    pairs = [(b"a", b"b"), (b"12345678910", b"019237410982340912840198242")]
    with edbm.open(path, "c") as db:
        assert db.keys() == []
        for key, value in pairs:
            db[key] = value
        assert sorted(db.keys()) == sorted(k for k, _ in pairs)
        assert list(db) == db.keys()
        for key, value in pairs:
            assert key in db
            assert db[key] == value
        assert b"xxx" not in db
        with pytest.raises(KeyError):
            db[b"xxx"]


def test_items_and_values_are_lists(path) -> None:
    _fill(path)
    with edbm.open(path, "r") as db:
        items = db.items()
        assert isinstance(items, list)
        assert items == sorted(SAMPLE.items())
        assert db.values() == [value for _, value in sorted(SAMPLE.items())]


def test_str_keys_and_values_are_utf8(path) -> None:
    _fill(path)
    with edbm.open(path, "w") as db:
        assert db["\u00fc"] == SAMPLE["\u00fc".encode()]
        db["\u00fc"] = b"?"
        db["1"] = "a"
        db["\u00e9t\u00e9"] = "\u00e9"
    with edbm.open(path, "r") as db:
        assert "\u00fc" in db
        assert db["\u00fc".encode()] == b"?"
        assert db[b"1"] == b"a"
        assert db["\u00e9t\u00e9".encode()] == "\u00e9".encode()


@pytest.mark.parametrize("bad", [1, None, 1.5, object()])
def test_non_bytes_keys_and_values_are_type_errors(path, bad) -> None:
    with edbm.open(path, "c") as db:
        with pytest.raises(TypeError):
            db[bad] = b"v"
        with pytest.raises(TypeError):
            db[b"k"] = bad
        with pytest.raises(TypeError):
            db[bad]
        with pytest.raises(TypeError):
            bad in db  # noqa: B015
        assert len(db) == 0


def test_bytes_like_keys_and_values(path) -> None:
    with edbm.open(path, "c") as db:
        db[bytearray(b"k1")] = memoryview(b"v1")
        db[memoryview(b"k2")] = bytearray(b"v2")
        assert db.items() == [(b"k1", b"v1"), (b"k2", b"v2")]


def test_large_values_and_keys_of_any_length(path) -> None:
    """As dbm.dumb, dbm.gnu and dbm.sqlite3: keys of any length, e.g. the
    2,700-byte str key of a shelve program."""
    big = random.Random(1).randbytes(100_000)
    edge = b"k" * engine.MAX_KEY_SIZE
    longer = b"k" * (engine.MAX_KEY_SIZE + 1)
    huge = "\u00e9" * 1350  # 2,700 UTF-8 bytes
    with edbm.open(path, "c") as db:
        db[b"big"] = big
        db[edge] = b"edge"
        db[longer] = b"longer"
        db[huge] = b"huge"
        assert db[longer] == b"longer" and db[huge] == b"huge" and db[edge] == b"edge"
        assert longer in db and huge in db and longer + b"k" not in db
        assert len(db) == 4
        with pytest.raises(KeyError):
            db[longer + b"k"]
    with edbm.open(path, "r") as db:
        assert db[b"big"] == big
        assert db[edge] == b"edge" and db[longer] == b"longer"
        assert sorted(db.keys()) == sorted([b"big", edge, longer, huge.encode()])
    with edbm.open(path, "w") as db:
        del db[huge]
        with pytest.raises(KeyError):
            del db[huge]
        assert huge not in db and len(db) == 3
        db.clear()
        assert len(db) == 0 and db.keys() == []
    with shelve.Shelf(edbm.open(path, "c")) as shelf:
        shelf["x" * 2700] = {"a": 1}
        assert shelf["x" * 2700] == {"a": 1}


_DBM_KEYS = st.one_of(
    st.binary(max_size=4),
    st.builds(lambda c, n: c * n, st.sampled_from([b"a", b"b"]),
              st.sampled_from([engine.MAX_KEY_SIZE - 1, engine.MAX_KEY_SIZE, engine.MAX_KEY_SIZE + 1, 3000])),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.booleans(), _DBM_KEYS, st.binary(max_size=20)), max_size=30))
def test_keys_of_every_length_match_a_dict(tmp_path, ops) -> None:
    path = str(tmp_path / f"h{uuid.uuid4().hex}")
    shadow: dict[bytes, bytes] = {}
    with edbm.open(path, "n") as db:
        for put, key, value in ops:
            if put:
                db[key] = value
                shadow[key] = value
            elif key in shadow:
                del db[key]
                del shadow[key]
            else:
                with pytest.raises(KeyError):
                    del db[key]
            assert len(db) == len(shadow)
    with edbm.open(path, "r") as db:
        assert sorted(db.items()) == sorted(shadow.items())
        for key in shadow:
            assert key in db and db[key] == shadow[key]


@pytest.mark.parametrize(
    "opener", [os.fsencode, pathlib.Path, lambda p: pathlib.Path(p).as_posix()]
)
def test_open_with_path_types(path, opener) -> None:
    with edbm.open(opener(path), "c") as db:
        db[b"k"] = b"v"
    with edbm.open(opener(path), "r") as db:
        assert db[b"k"] == b"v"


class _BytesPath:
    """A PathLike returning bytes, as os_helper.FakePath(bytes) does."""

    def __init__(self, path: str) -> None:
        self._path = os.fsencode(path)

    def __fspath__(self) -> bytes:
        return self._path


def test_open_with_bytes_pathlike(path) -> None:
    edbm.open(_BytesPath(path), "c").close()
    assert os.path.exists(path)


@pytest.mark.parametrize("contents", [b"", b"not a database at all" * 300])
def test_n_replaces_a_file_that_is_not_a_database(path, contents) -> None:
    with open(path, "wb") as f:
        f.write(contents)
    with edbm.open(path, "n") as db:
        assert len(db) == 0
        db[b"k"] = b"v"
    with edbm.open(path, "r") as db:
        assert db.keys() == [b"k"]


@pytest.mark.parametrize("flag", ["r", "w", "c"])
def test_other_flags_refuse_a_file_that_is_not_a_database(tmp_path, flag) -> None:
    name = str(tmp_path / "garbage")
    contents = b"definitely not a DragonDB file" * 200
    with open(name, "wb") as f:
        f.write(contents)
    with pytest.raises(edbm.error) as info:
        edbm.open(name, flag)
    assert isinstance(info.value, NotADatabaseError)
    with open(name, "rb") as f:
        assert f.read() == contents


def test_n_empties_an_existing_database(path) -> None:
    _fill(path)
    with engine.open(path) as db:
        db.tree("other").put(b"x", b"y")
    with edbm.open(path, "n") as db:
        assert db.keys() == []
        assert len(db) == 0
    with engine.open(path) as db:
        assert db.trees() == ["default"]


def test_write_write_read(path) -> None:
    with edbm.open(path, "c") as db:
        db[b"1"] = b"hello"
        db[b"1"] = b"hello2"
    with edbm.open(path, "c") as db:
        assert db[b"1"] == b"hello2"


def test_close_twice(path) -> None:
    db = edbm.open(path, "c")
    db[b"a"] = b"b"
    assert db[b"a"] == b"b"
    db.close()
    db.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda db: db[b"test"],
        lambda db: db.__setitem__(b"test", b"x"),
        lambda db: db.__delitem__(b"test"),
        lambda db: b"test" in db,
        lambda db: db.keys(),
        lambda db: db.items(),
        lambda db: db.values(),
        lambda db: len(db),
        lambda db: iter(db),
        lambda db: db.get(b"test"),
        lambda db: db.sync(),
        lambda db: db.clear(),
    ],
)
def test_closed_object_raises_dbm_error(path, call) -> None:
    db = edbm.open(path, "c")
    db.close()
    with pytest.raises(edbm.error, match="DBM object has already been closed") as info:
        call(db)
    assert isinstance(info.value, DatabaseClosedError)


def test_context_manager_closes(path) -> None:
    with edbm.open(path, "c") as db:
        db["context manager"] = "context manager"
    with edbm.open(path, "r") as db:
        assert db.keys() == [b"context manager"]
    with pytest.raises(edbm.error):
        db.keys()


def test_n_twice_gives_empty(path) -> None:
    _fill(path)
    with edbm.open(path, "n") as db:
        assert db.keys() == []


def test_clear(path) -> None:
    with edbm.open(path, "c") as db:
        db[b"a"] = b"b"
        db[b""] = b"empty"
        db[b"12345678910"] = b"x"
        assert len(db) == 3
        db.clear()
        assert len(db) == 0
        assert b"a" not in db
        assert b"" not in db
        db[b"after"] = b"clear"
    with edbm.open(path, "r") as db:
        assert db.items() == [(b"after", b"clear")]


def test_sync(path) -> None:
    with edbm.open(path, "c") as db:
        db[b"k"] = b"v"
        db.sync()
        assert db[b"k"] == b"v"


@pytest.mark.parametrize("flag", ["x", "rw", "cs ", "", None, 1, "rq"])
def test_invalid_flag(path, flag) -> None:
    with pytest.raises(ValueError, match="Flag must be one of 'r', 'w', 'c', or 'n'"):
        edbm.open(path, flag)
    assert not os.path.exists(path)


@pytest.mark.parametrize("flag", ["cf", "cs", "nf", "ns"])
def test_sync_modifiers(path, flag) -> None:
    with edbm.open(path, flag) as db:
        db[b"k"] = b"v"
    with edbm.open(path, "rf") as db:
        assert db[b"k"] == b"v"


@pytest.mark.skipif(not hasattr(os, "umask"), reason="needs os.umask")
def test_creation_mode_honours_umask(path) -> None:
    old = os.umask(0o002)
    try:
        edbm.open(path, "c", 0o637).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o635
    if os.path.exists(path + "-wal"):
        assert stat.S_IMODE(os.stat(path + "-wal").st_mode) == 0o635


def test_mode_does_not_touch_existing_files(path) -> None:
    edbm.open(path, "c").close()
    os.chmod(path, 0o600)
    edbm.open(path, "c", 0o666).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_second_writer_is_refused(path) -> None:
    with edbm.open(path, "c") as db:
        db[b"k"] = b"v"
        with pytest.raises(edbm.error) as info:
            edbm.open(path, "w")
        assert isinstance(info.value, DatabaseLockedError)
        with pytest.raises(edbm.error):
            edbm.open(path, "n")
        assert db[b"k"] == b"v"


def test_nonascii_filename(tmp_path) -> None:
    name = str(tmp_path / "d\u00e9j\u00e0-vu")
    with edbm.open(name, "c") as db:
        db[b"key"] = b"value"
    with edbm.open(name, "r") as db:
        assert db.keys() == [b"key"]
        assert b"key" in db
        assert db[b"key"] == b"value"
    _assert_engine_consistent(name)


def test_iteration_tolerates_writes(path) -> None:
    with edbm.open(path, "c") as db:
        for key in (b"a", b"c", b"e"):
            db[key] = key
        seen = []
        for key in db:
            seen.append(key)
            if key == b"a":
                db[b"b"] = b"b"
                del db[b"c"]
        assert seen == [b"a", b"b", b"e"]


def test_random_operations_match_a_dict(path) -> None:
    rng = random.Random(20240601)
    shadow: dict[str, bytes] = {}
    for _ in range(5):
        with edbm.open(path, "c") as db:
            for _ in range(100):
                key = rng.choice("abcdefghijklm")
                if rng.random() < 0.2:
                    if key in shadow:
                        del shadow[key]
                        del db[key]
                else:
                    value = rng.choice((b"a", b"b", b"c")) * rng.randrange(10000)
                    shadow[key] = value
                    db[key] = value
                    assert db[key] == value
        with edbm.open(path, "r") as db:
            assert db.items() == sorted((k.encode(), v) for k, v in shadow.items())


def test_read_only_files(tmp_path) -> None:
    name = str(tmp_path / "ro")
    _fill(name)
    for file in (name, name + "-wal"):
        if os.path.exists(file):
            os.chmod(file, stat.S_IRUSR)
    with edbm.open(name, "r") as db:
        assert sorted(db.keys()) == sorted(SAMPLE)


# -- shelve ---------------------------------------------------------------------------


def test_shelve_round_trip(path) -> None:
    objects = {
        "list": [1, 2, 3],
        "dict": {"nested": (1.5, None, "text")},
        "bytes": b"\x00\xff" * 3000,
        "": "empty key",
        "\u00fcnicode": {"\u00e9"},
    }
    with contextlib.closing(shelve.Shelf(edbm.open(path, "c"))) as shelf:
        for key, value in objects.items():
            shelf[key] = value
        assert len(shelf) == len(objects)
    with contextlib.closing(shelve.Shelf(edbm.open(path, "w"))) as shelf:
        assert sorted(shelf) == sorted(objects)
        for key, value in objects.items():
            assert shelf[key] == value
        del shelf["list"]
        shelf["dict"] = {"replaced": True}
        assert "list" not in shelf
        assert shelf.get("list", "gone") == "gone"
    with contextlib.closing(shelve.Shelf(edbm.open(path, "r"))) as shelf:
        assert "list" not in shelf
        assert shelf["dict"] == {"replaced": True}
        assert shelf["bytes"] == objects["bytes"]


def test_shelve_writeback(path) -> None:
    shelf = shelve.Shelf(edbm.open(path, "c"), writeback=True)
    shelf["counter"] = []
    shelf["counter"].append(1)
    shelf.sync()
    shelf["counter"].append(2)
    shelf.close()
    with contextlib.closing(shelve.Shelf(edbm.open(path, "r"))) as shelf:
        assert shelf["counter"] == [1, 2]


def test_shelve_read_only_refuses_writes(path) -> None:
    with contextlib.closing(shelve.Shelf(edbm.open(path, "c"))) as shelf:
        shelf["k"] = 1
    with contextlib.closing(shelve.Shelf(edbm.open(path, "r"))) as shelf:
        with pytest.raises(edbm.error):
            shelf["k"] = 2
        assert shelf["k"] == 1

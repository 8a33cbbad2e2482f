"""`engine.dbm` beside a `dict` under one hypothesis state machine.

The stdlib-compatible adapter stores ordinary keys in the tree "default",
the empty key in a tree of its own and keys longer than `MAX_KEY_SIZE` under
their SHA-256; none of that may show. Every rule runs one mapping call on
the dbm object and on a plain `dict` of `bytes` (a `str` key or value is its
UTF-8 bytes) and demands the same result or the same exception type:
`[k]`, `[k] = v`, `del`, `get`, `setdefault`, `in`, `len`, `keys()`,
`items()`, `values()`, iteration, `clear()`, `sync()`. Keys are drawn from a
small pool (so they collide) holding the empty key, `str` keys, and keys of
`MAX_KEY_SIZE - 1` .. `MAX_KEY_SIZE + 1` and 3,000 bytes that differ only in
their last byte. Reopening with flag "w" keeps the contents; with "r" every
write raises `engine.dbm.error` (also an `engine.ReadOnlyError`) and changes
nothing; every call on a closed object raises `engine.dbm.error`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import engine
import engine.dbm as edbm

MAX = engine.MAX_KEY_SIZE

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Long keys that share all but their last byte: a hash or a truncation that
# confused them would show as a wrong value or a lost key.
_LONG = [b"L" * (n - 1) + bytes([c]) for n in (MAX - 1, MAX, MAX + 1, 3000) for c in b"ab"]
_POOL = [b"", b"a", b"ab", b"\x00", b"\xff", "\u00e9", "a", "x" * (MAX + 5), *_LONG]
KEYS = st.one_of(st.sampled_from(_POOL), st.binary(max_size=3), st.text(max_size=2))
VALUES = st.one_of(st.binary(max_size=8), st.text(max_size=3),
                   st.builds(lambda n: b"v" * n, st.sampled_from([0, 5000])))
BAD = st.sampled_from([None, 1, 2.5, ("t",), ["l"]])

Opener = Callable[[str, str], Any]


def _raw(obj: object) -> bytes:
    return obj.encode("utf-8") if isinstance(obj, str) else bytes(obj)  # type: ignore[arg-type]


class DictDbm:
    """The model: a dict of bytes with dbm's argument rules."""

    def __init__(self, data: dict[bytes, bytes], read_only: bool) -> None:
        self.data, self.read_only, self.closed = data, read_only, False

    @staticmethod
    def _enc(obj: object) -> bytes:
        if isinstance(obj, (str, bytes, bytearray, memoryview)):
            return _raw(obj)
        raise TypeError(f"keys and values must be bytes or str, not {type(obj).__name__}")

    def _live(self) -> None:
        if self.closed:
            raise edbm.error("closed")

    def _writable(self) -> None:
        self._live()
        if self.read_only:
            raise edbm.error("read-only")

    def __getitem__(self, key: object) -> bytes:
        raw = self._enc(key)
        self._live()
        return self.data[raw]

    def __setitem__(self, key: object, value: object) -> None:
        raw, val = self._enc(key), self._enc(value)
        self._writable()
        self.data[raw] = val

    def __delitem__(self, key: object) -> None:
        raw = self._enc(key)
        self._writable()
        del self.data[raw]

    def __contains__(self, key: object) -> bool:
        raw = self._enc(key)
        self._live()
        return raw in self.data

    def __len__(self) -> int:
        self._live()
        return len(self.data)

    def __iter__(self):
        self._live()
        return iter(list(self.data))

    def keys(self) -> list[bytes]:
        return list(iter(self))

    def items(self) -> list[tuple[bytes, bytes]]:
        self._live()
        return list(self.data.items())

    def values(self) -> list[bytes]:
        self._live()
        return list(self.data.values())

    def get(self, key: object, default: Any = None) -> Any:
        raw = self._enc(key)
        self._live()
        return self.data.get(raw, default)

    def setdefault(self, key: object, default: object = b"") -> bytes:
        raw = self._enc(key)
        self._live()
        if raw in self.data:
            return self.data[raw]
        self[key] = default
        return self.data[raw]

    def clear(self) -> None:
        self._writable()
        self.data.clear()

    def sync(self) -> None:
        self._live()

    def close(self) -> None:
        self.closed = True


def _outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return call(), None
    except Exception as exc:  # compared by kind with the other side
        return None, exc


def _kind(exc: BaseException) -> str:
    """dbm errors are classes made per engine error: compare what callers catch."""
    for cls in (edbm.error, KeyError, TypeError):
        if isinstance(exc, cls):
            return cls.__name__
    return type(exc).__name__


def open_dbm(path: str, flag: str) -> Any:
    return edbm.open(path, flag)


class DbmVsDict(RuleBasedStateMachine):
    opener: Opener = staticmethod(open_dbm)
    workdir: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(dir=self.workdir or None)
        self.path = os.path.join(self.dir, "db")
        self.db = self.opener(self.path, "n")
        self.model = DictDbm({}, read_only=False)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def same(self, call: Callable[[Any], Any], unordered: bool = False) -> Any:
        got, got_exc = _outcome(lambda: call(self.db))
        want, want_exc = _outcome(lambda: call(self.model))
        if want_exc is not None or got_exc is not None:
            assert got_exc is not None and want_exc is not None and _kind(got_exc) == _kind(want_exc), (
                f"dbm: {got!r} / {got_exc!r}; dict: {want!r} / {want_exc!r}")
            if isinstance(want_exc, edbm.error) and self.model.read_only and not self.model.closed:
                assert isinstance(got_exc, engine.ReadOnlyError), got_exc
            return None
        if unordered:
            assert len(got) == len(want) and sorted(got) == sorted(want), (
                f"dbm {sorted(got)!r:.300} != dict {sorted(want)!r:.300}")
        else:
            assert got == want, f"dbm {got!r:.300} != dict {want!r:.300}"
        return want

    # -- writes --------------------------------------------------------------

    @rule(key=KEYS, value=VALUES)
    def setitem(self, key: object, value: object) -> None:
        self.same(lambda d: d.__setitem__(key, value))

    @rule(key=KEYS)
    def delitem(self, key: object) -> None:
        self.same(lambda d: d.__delitem__(key))

    @rule(key=KEYS, default=st.one_of(st.just("omitted"), VALUES))
    def setdefault(self, key: object, default: object) -> None:
        if default == "omitted":
            self.same(lambda d: d.setdefault(key))
        else:
            self.same(lambda d: d.setdefault(key, default))

    @rule()
    def clear(self) -> None:
        self.same(lambda d: d.clear())

    @rule(key=st.one_of(BAD, KEYS), value=st.one_of(BAD, VALUES))
    def bad_arguments(self, key: object, value: object) -> None:
        self.same(lambda d: d.__setitem__(key, value))
        self.same(lambda d: d.get(key))
        self.same(lambda d: key in d)

    # -- reads ---------------------------------------------------------------

    @rule(key=KEYS)
    def getitem(self, key: object) -> None:
        self.same(lambda d: d[key])

    @rule(key=KEYS, default=st.sampled_from([None, b"?"]))
    def get(self, key: object, default: bytes | None) -> None:
        self.same(lambda d: d.get(key, default))

    @rule(key=KEYS)
    def contains(self, key: object) -> None:
        self.same(lambda d: key in d)

    @rule(view=st.sampled_from(["keys", "iter", "items", "values"]))
    def listing(self, view: str) -> None:
        calls = {"keys": lambda d: d.keys(), "iter": lambda d: list(d),
                 "items": lambda d: d.items(), "values": lambda d: d.values()}
        self.same(calls[view], unordered=True)

    # -- lifecycle -----------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self.same(lambda d: d.sync())

    @rule(flag=st.sampled_from(["w", "c", "r", "wf", "rs"]), key=KEYS, value=VALUES)
    def reopen(self, flag: str, key: object, value: object) -> None:
        self.same(lambda d: d.close())
        self.same(lambda d: d.close())  # idempotent
        self.same(lambda d: len(d))  # closed: dbm.error
        self.same(lambda d: d.get(key))
        self.db = self.opener(self.path, flag)
        self.model = DictDbm(self.model.data, read_only=flag.startswith("r"))
        self.same(lambda d: d.__setitem__(key, value))
        self.same(lambda d: d.__delitem__(key))
        self.same(lambda d: d.clear())
        self.same(lambda d: d.items(), unordered=True)

    @rule()
    def back_to_writable(self) -> None:
        self.db.close()
        self.db = self.opener(self.path, "w")
        self.model = DictDbm(self.model.data, read_only=False)

    @invariant()
    def same_size(self) -> None:
        self.same(lambda d: len(d))


def run_machine(workdir: str, opener: Opener, machine_settings: settings) -> None:
    class Machine(DbmVsDict):
        pass

    Machine.opener = staticmethod(opener)
    Machine.workdir = workdir
    run_state_machine_as_test(Machine, settings=machine_settings)


def test_dbm_matches_a_dict(tmp_path) -> None:
    run_machine(str(tmp_path), open_dbm, SETTINGS)


class _DropsLongKeys(edbm.Dbm):
    """A planted bug: keys() forgets the keys longer than MAX_KEY_SIZE."""

    def keys(self) -> list[bytes]:
        return [k for k in super().keys() if len(k) <= MAX]


def _open_broken(path: str, flag: str) -> Any:
    db = edbm.open(path, flag)
    db.__class__ = _DropsLongKeys
    return db


def test_machine_catches_a_planted_bug(tmp_path) -> None:
    quick = settings(SETTINGS, max_examples=200, phases=[Phase.generate], print_blob=False,
                     derandomize=True, database=None)
    with pytest.raises(AssertionError, match="!= dict"):
        run_machine(str(tmp_path), _open_broken, quick)

"""Durability and read-only reopen beside the model, on a power-loss disk.

The engine runs on a `faults.crash.CrashDisk` in a sync mode drawn per run
("full", "normal", "off"), beside `models.ModelDatabase`. The machine keeps
the model's state after every returned write (the history) and the oldest
state a power loss may go back to (the floor), as docs/durability.md
promises:

- `sync="full"`: every returned write is durable (the floor is the last state);
- every mode: a returned `commit()` or `checkpoint()` moves the floor to now;
- a clean `close()` loses nothing; a killed process loses nothing it
  returned, and the next process's recovery makes that durable.

Rules that end a "machine" (the live disk goes on unchanged unless said):

- `power_loss`: the disk as a power loss leaves it (`drop`, `keep`, `torn`,
  `reorder`) is recovered; its contents must be a state of the history at
  or after the floor, and the run goes on from it;
- `power_loss_read_only`: the same image opened with `read_only=True` reads
  such a state, every write raises `ReadOnlyError`, `check()` is clean and
  the disk has no new event or byte;
- `close_then_read_only`: after a clean close a read-only open reads exactly
  the model, refuses every write and changes nothing;
- `kill`: the process dies after its last event; the next open reads exactly
  the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import strategies as S
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import engine
from faults.crash import CrashDisk
from models import ModelDatabase

PATH = "/stateful/durability.db"  # a CrashDisk path: never touches the real file system
POOL_PAGES = 16
TREES = ("a", "b")
Snapshot = dict[str, dict[bytes, bytes]]

SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_KEYS = st.one_of(st.sampled_from([b"k%02d" % i for i in range(12)]), S.keys())
_VALUES = st.one_of(S.values(), S.large_values())
_names = st.sampled_from(TREES)


def contents(db: Any) -> Snapshot:
    return {name: dict(db.tree(name, create=False).items()) for name in db.trees()}


def _describe(state: Snapshot) -> str:
    return "{" + ", ".join(f"{n!r}: {len(t)} keys" for n, t in sorted(state.items())) + "}"


def _writes(name: str, key: bytes, value: bytes) -> list[tuple[str, Callable[[Any], Any]]]:
    """Every kind of write, each of which a read-only database must refuse."""

    def batch(d: Any) -> None:
        with d.batch() as b:
            b.put(name, key, value)

    return [
        ("put", lambda d: d.tree(name).put(key, value)),
        ("delete", lambda d: d.tree(name).delete(key)),
        ("setitem", lambda d: d.tree(name).__setitem__(key, value)),
        ("batch", batch),
        ("drop_tree", lambda d: d.drop_tree(name)),
        ("clear", lambda d: d.tree(name).clear()),
        ("update", lambda d: d.tree(name).update({key: value})),
        ("load", lambda d: d.tree(name).load([(key, value)])),
        ("pop", lambda d: d.tree(name).pop(key, None)),
        ("popitem", lambda d: d.tree(name).popitem()),
        ("new tree", lambda d: d.tree("never-made")),
    ]


class DurabilityVsModel(RuleBasedStateMachine):
    opener_wrapper: Callable[[Any], Any] | None = None  # a planted-bug hook for the read-only side

    def __init__(self) -> None:
        super().__init__()
        self.db: Any = None

    @initialize(sync=st.sampled_from(["full", "normal", "off"]),
                checkpoint_bytes=st.sampled_from([16 * 1024, 1 << 30]))
    def start(self, sync: str, checkpoint_bytes: int) -> None:
        self.sync, self.checkpoint_bytes = sync, checkpoint_bytes
        self.disk = CrashDisk()
        self.db = self._open(self.disk)
        self.model = ModelDatabase()
        self.history: list[Snapshot] = [{}]
        self.floor = 0

    def teardown(self) -> None:
        if self.db is not None:
            self.db.close()

    def _open(self, disk: CrashDisk, read_only: bool = False) -> Any:
        return engine.open(PATH, opener=disk.opener, pool_pages=POOL_PAGES, sync=self.sync,
                           read_only=read_only, checkpoint_bytes=self.checkpoint_bytes)

    def _open_read_only(self, disk: CrashDisk) -> Any:
        db = self._open(disk, read_only=True)
        return self.opener_wrapper(db) if self.opener_wrapper else db

    # -- the history -------------------------------------------------------------

    def _durable_now(self) -> None:
        self.floor = len(self.history) - 1

    def write(self, call: Callable[[Any], Any]) -> None:
        """Run a write on both sides (same outcome), then note the new state."""
        try:
            want, want_exc = call(self.model), None
        except Exception as exc:  # compared by type with the engine's
            want, want_exc = None, exc
        if want_exc is None:
            assert call(self.db) == want
        else:
            with pytest.raises(type(want_exc)):
                call(self.db)
        state = self.model.snapshot()
        if state != self.history[-1]:
            self.history.append(state)
        if self.sync == "full":
            self._durable_now()

    def made(self, name: str) -> str:
        """Open tree `name`: a missing one is created, a write of its own."""
        if name not in self.model.trees():
            self.write(lambda d: d.tree(name))
        return name

    def allowed(self) -> list[Snapshot]:
        return self.history[self.floor:]

    def assert_allowed(self, got: Snapshot, what: str) -> None:
        allowed = self.allowed()
        assert got in allowed, (
            f"sync={self.sync}: {what} gave {_describe(got)}, not one of the "
            f"{len(allowed)} states since the last durable point "
            f"(latest {_describe(allowed[-1])}, earliest {_describe(allowed[0])})")

    def restart_from(self, state: Snapshot) -> None:
        self.model = ModelDatabase()
        for name, items in state.items():
            self.model.tree(name).update(items)
        self.history, self.floor = [state], 0

    # -- writes --------------------------------------------------------------

    @rule(name=_names, key=_KEYS, value=_VALUES)
    def put(self, name: str, key: bytes, value: bytes) -> None:
        self.made(name)
        self.write(lambda d: d.tree(name).put(key, value))

    @rule(name=_names, key=_KEYS)
    def delete(self, name: str, key: bytes) -> None:
        self.made(name)
        self.write(lambda d: d.tree(name).delete(key))

    @rule(ops=st.lists(st.tuples(st.booleans(), _names, _KEYS, _VALUES), max_size=6))
    def batch(self, ops: list) -> None:
        def call(d: Any) -> None:
            with d.batch() as b:
                for is_put, name, key, value in ops:
                    if is_put:
                        b.put(name, key, value)
                    else:
                        b.delete(name, key)

        self.write(call)

    @rule(name=_names, items=st.dictionaries(_KEYS, _VALUES, max_size=10))
    def update(self, name: str, items: dict) -> None:
        self.made(name)
        self.write(lambda d: d.tree(name).update(items))

    @rule(name=_names, items=st.dictionaries(_KEYS, _VALUES, max_size=30))
    def clear_then_load(self, name: str, items: dict) -> None:
        self.made(name)
        self.write(lambda d: d.tree(name).clear())
        self.write(lambda d: d.tree(name).load(sorted(items.items())))

    @rule(name=_names)
    def drop_tree(self, name: str) -> None:
        self.write(lambda d: d.drop_tree(name))

    @rule(name=_names)
    def popitem(self, name: str) -> None:
        self.made(name)
        self.write(lambda d: d.tree(name).popitem())

    # -- durability points ---------------------------------------------------------

    @rule()
    def commit(self) -> None:
        self.db.commit()
        self._durable_now()

    @rule()
    def checkpoint(self) -> None:
        self.db.checkpoint()
        self._durable_now()

    # -- crashes and reopens -----------------------------------------------------

    @rule(mode=st.sampled_from(["drop", "keep", "torn", "reorder"]), seed=st.integers(0, 3))
    def power_loss(self, mode: str, seed: int) -> None:
        """Power fails now; the next process recovers and goes on from there."""
        self.db = None  # abandoned, never closed: its process lost power
        disk = CrashDisk(self.disk.images(None, mode, seed=seed))
        self.disk = disk
        self.db = self._open(disk)
        got = contents(self.db)
        self.assert_allowed(got, f"recovery after a power loss ({mode})")
        report = self.db.check()
        assert report.ok and report.pages_leaked == 0, report.problems
        self.restart_from(got)

    @rule(mode=st.sampled_from(["drop", "torn"]), seed=st.integers(0, 3), name=_names, key=_KEYS,
          value=S.values())
    def power_loss_read_only(self, mode: str, seed: int, name: str, key: bytes, value: bytes) -> None:
        """A read-only open of a power-loss image sees a durable state, writes nothing."""
        disk = CrashDisk(self.disk.images(None, mode, seed=seed))
        self.check_read_only(disk, exact=False, name=name, key=key, value=value,
                             what=f"a read-only open after a power loss ({mode})")

    @rule(name=_names, key=_KEYS, value=S.values())
    def close_then_read_only(self, name: str, key: bytes, value: bytes) -> None:
        self.db.close()
        self.db.close()  # idempotent
        self._durable_now()
        self.check_read_only(self.disk, exact=True, name=name, key=key, value=value,
                             what="a read-only open after a clean close")
        self.db = self._open(self.disk)
        assert contents(self.db) == self.history[-1]

    def check_read_only(self, disk: CrashDisk, exact: bool, name: str, key: bytes, value: bytes,
                        what: str) -> None:
        before = disk.snapshot()
        ro = self._open_read_only(disk)
        try:
            got = contents(ro)
            if exact:
                assert got == self.history[-1], f"{what}: {_describe(got)} != model {_describe(self.history[-1])}"
            else:
                self.assert_allowed(got, what)
            for op, call in _writes(name, key, value):
                with pytest.raises(engine.ReadOnlyError):
                    call(ro)
                    raise AssertionError(f"{what}: {op} did not raise ReadOnlyError")
            assert contents(ro) == got, f"{what}: a refused write changed the contents"
            report = ro.check()
            assert report.ok, report.problems
        finally:
            ro.close()
        changes = disk.changes_since(before)
        assert not changes, f"{what} changed the disk: {changes[:5]}"

    @rule()
    def kill(self) -> None:
        """The process dies (no close); the next one loses nothing it returned."""
        self.db = None  # abandoned with its process
        self.disk.kill()
        self.db = self._open(self.disk)
        got = contents(self.db)
        assert got == self.history[-1], (
            f"sync={self.sync}: reopen after a kill gave {_describe(got)}, model {_describe(self.history[-1])}")
        self._durable_now()  # recovery makes what it read durable

    @invariant()
    def engine_matches_model(self) -> None:
        if self.db is not None:
            assert contents(self.db) == self.history[-1]


def test_durability_matches_model() -> None:
    run_state_machine_as_test(DurabilityVsModel, settings=SETTINGS)


class _StaleReader:
    """A planted bug: a read-only handle that reads the contents of the
    first read-only open of the run, as a reader that never followed the
    log would; writes go to the real handle."""

    seen: Snapshot | None = None

    def __init__(self, db: Any) -> None:
        self._db = db
        if _StaleReader.seen is None:
            _StaleReader.seen = contents(db)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def trees(self) -> list[str]:
        return sorted(_StaleReader.seen or {})

    def tree(self, name: str, create: bool = True) -> Any:
        self._db.tree(name, create)  # refusals as the real handle's
        return _StaleTree(self._db, name, (_StaleReader.seen or {}).get(name, {}))


class _StaleTree:
    def __init__(self, db: Any, name: str, items: dict[bytes, bytes]) -> None:
        self._db, self._name, self._items = db, name, items

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._db.tree(self._name), attr)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.tree(self._name)[key] = value

    def items(self) -> list[tuple[bytes, bytes]]:
        return sorted(self._items.items())


def test_machine_catches_a_stale_read_only_reopen() -> None:
    class Machine(DurabilityVsModel):
        opener_wrapper = _StaleReader

        def __init__(self) -> None:
            super().__init__()
            _StaleReader.seen = None

    quick = settings(SETTINGS, max_examples=200, phases=[Phase.generate], print_blob=False,
                     derandomize=True, database=None)
    with pytest.raises(AssertionError, match="!= model|not one of"):
        run_state_machine_as_test(Machine, settings=quick)

"""Faults inside the model test: a state machine whose rules also arm faults.

The engine runs through a `FaultPlan` over an in-memory `CrashDisk`, beside
`models.ModelDatabase`. Besides writes, reads, batches, tree creation and
drop, checkpoints and reopens, a rule arms a fault for the next operation:
an I/O error (EIO, ENOSPC, EFBIG) on the n-th call of a kind, once or
persistently; a short or torn write (part lands, then an error); a short
read or a flipped bit on a read of the data file. After each operation:

- it returned: the result equals the model's;
- it raised `StorageIOError` or `CorruptionError`: it had no effect (the
  contents equal the model), `check()` is clean (no leaked or double-owned
  page, no pin held);
- it raised `NeedsRecoveryError`: after a reopen the contents equal the
  model before or after the operation.

Torn writes and bit flips never surface as wrong data: a flipped bit on a
read raises `CorruptionError` (and the operation had no effect), and a rule
makes a lying disk tear a page written home by a checkpoint, without an
error; after a reopen every read returns the model's value or raises
`CorruptionError`, never anything else (the machine then only reads).

Log faults too: short reads and bit flips of the log (spilled images read
back, recovery scans) and failed log truncates in a checkpoint. They were
switched off while the engine bugs they found were open (a flip in the last
record at open dropped it, a checkpoint wrote home an unverified spilled
image, an automatic checkpoint's CorruptionError failed a committed put,
stale spilled pages were served after a failed truncate); those are fixed
and pinned by tests in tests/faults/test_seed_claims.py. Planting the
second one again (no checksum check on a spilled image read back) fails the
machine under `HYPOTHESIS_PROFILE=long` (seed 11, in about five minutes).
"""

from __future__ import annotations

import errno

import strategies as S
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import engine
from engine.codec import PAGE_SIZE
from faults.crash import CrashDisk
from faults.io import FaultPlan
from faults.workload import apply_op, contents
from models import ModelDatabase

PATH = "/stateful/faults.db"  # a CrashDisk path: never touches the real file system
TREES = ("a", "b", "c")
# Fault families that can be switched off to look at one engine bug at a time:
LOG_READ_FAULTS = True  # short reads, bit flips of the log
WRITE_TEARS_RAISE = True  # short/torn writes that raise (BufferError on close, rule 7's gap: fixed)
TRUNCATE_FAULTS = True  # a failed log truncate in a checkpoint: stale spilled pages served

_KEYS = st.one_of(S.keys(), st.sampled_from([b"k%03d" % i + b"." * 700 for i in range(24)]))
_VALUES = st.one_of(S.values(), S.large_values())
_NTH = st.one_of(st.integers(1, 2), st.integers(1, 12))  # the call, counted within the next operation
_ERROR_KINDS = ["read", "write", "sync", "extend", "open"] + (["truncate"] if TRUNCATE_FAULTS else [])
_FAULTS = st.one_of(
    st.tuples(st.just("error"), st.sampled_from(_ERROR_KINDS),
              _NTH, st.booleans(), st.sampled_from([errno.EIO, errno.ENOSPC, errno.EFBIG])),
    st.tuples(st.sampled_from(["short", "bitflip"]), st.just("read"), _NTH, st.just(False), st.just(0)),
    *([st.tuples(st.sampled_from(["short", "torn"]), st.just("write"), _NTH, st.just(False), st.just(errno.EIO))]
      if WRITE_TEARS_RAISE else []),
)

_OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(TREES), _KEYS, _VALUES),
    st.tuples(st.just("delete"), st.sampled_from(TREES), _KEYS),
    st.tuples(st.just("get"), st.sampled_from(TREES), _KEYS),
    st.tuples(st.just("scan"), st.sampled_from(TREES), st.none(), st.none(), st.booleans()),
    st.builds(lambda ops: ("batch", [("put", t, k, v) if v is not None else ("delete", t, k) for t, k, v in ops]),
              st.lists(st.tuples(st.sampled_from(TREES), _KEYS, st.none() | _VALUES), min_size=1, max_size=6)),
    st.tuples(st.sampled_from(["tree", "drop"]), st.sampled_from(TREES)),
    st.sampled_from([("checkpoint",), ("reopen",)]),
)


class FaultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.disk = CrashDisk()
        self.plan = FaultPlan(0, site_depth=1)
        self.model = ModelDatabase()
        self.db = None
        self.faults = 0
        self.steps = 0
        self.nfaulty = 0
        self.damaged = False  # a lying disk tore a page: only reads from now on
        self.detected = 0  # reads that raised CorruptionError after a tear
        self.intents: dict[int, bytes] = {}  # offset -> bytes the engine meant to write there
        self._open()

    # -- plumbing --

    def _open(self) -> None:
        """Open (recovering), retrying while an armed fault makes it fail."""
        for _ in range(3):
            try:
                self.db = engine.open(PATH, opener=self._opener, pool_pages=16, sync="full")
                break
            except (engine.StorageIOError, engine.CorruptionError):
                self.faults += 1
        else:
            self.plan.disarm()
            self.db = engine.open(PATH, opener=self._opener, pool_pages=16, sync="full")
        self.plan.disarm()

    def _opener(self, path: str, create: bool) -> _Intent:
        return _Intent(self.plan.opener(self.disk.opener)(path, create), self.intents)

    def _verify(self, where: str, *alternatives: dict) -> None:
        self.plan.disarm()
        got = contents(self.db)
        if got != self.model.snapshot():
            assert got in alternatives, f"{where}: contents differ from the model"
            self.model = _model_of(got)
        report = self.db.check()
        assert report.ok, f"{where}: {report.problems[:4]}"
        assert report.pages_leaked == 0 and report.pages_double_owned == 0

    def _do(self, op: tuple) -> None:
        self.steps += 1
        if op[0] in ("put", "delete", "get", "scan") and op[1] not in self.model.trees():
            self._do(("tree", op[1]))  # `db.tree(name)` is a commit of its own
            if op[1] not in self.model.trees():
                return
        self.plan.arm()
        try:
            if op[0] == "reopen":
                try:
                    self.db.close()
                finally:
                    self.db = None
                    self._open()
                got = want = None
            else:
                got = apply_op(self.db, op)
        except engine.NeedsRecoveryError:
            self.faults += 1
            after = self.model.reopen()
            if op[0] != "reopen":
                apply_op(after, op)
            try:
                self.db.close()
            except engine.DragonDBError:
                pass
            self._open()
            self._verify(f"{op[0]} raised NeedsRecoveryError; after reopen", after.snapshot())
        except (engine.StorageIOError, engine.CorruptionError) as exc:
            self.faults += 1
            if self.db is None or self.db.closed:
                self._open()
            try:
                self._verify(f"{op[0]} raised {exc!r}")
            except engine.NeedsRecoveryError:  # the error also poisoned the database
                self.db.close()
                self._open()
                self._verify(f"{op[0]} raised {exc!r}; after reopen")
        else:
            self.plan.disarm()
            if op[0] != "reopen":
                want = apply_op(self.model, op)
                assert got == want, f"{op[0]} returned {got!r:.80}, the model {want!r:.80}"
        finally:
            self.plan.disarm()
            self.plan.rules.clear()  # an armed fault lasts one operation

    # -- rules --

    @precondition(lambda self: not self.damaged)
    @rule(fault=st.none() | _FAULTS, log=st.booleans(), op=_OPS)
    def operation(self, fault: tuple | None, log: bool, op: tuple) -> None:
        """One operation, about half of them through an armed fault."""
        if op[0] == "drop" and op[1] not in self.model.trees():
            op = ("tree", op[1])
        self.plan.rules.clear()
        if fault is not None:
            self.nfaulty += 1
            effect, kind, nth, persistent, err = fault
            file = "-wal" if log else ".db"
            if kind == "read" and effect in ("short", "bitflip") and log and not LOG_READ_FAULTS:
                file = ".db"
            if effect == "error":
                self.plan.fail(kind, nth, persistent=persistent, errno=err, file=None if kind == "open" else file)
            elif effect == "short":
                self.plan.short(kind, nth, file=file)
            elif effect == "torn":
                self.plan.torn(nth, pattern="any", file=file)
            else:
                self.plan.bitflip(nth, file=file)
        self._do(op)

    @precondition(lambda self: not self.damaged and self.steps >= 20)  # late: reads only after it
    @rule(nth=st.integers(1, 6), pattern=st.sampled_from(["prefix", "any"]))
    def tear_a_page_written_home(self, nth: int, pattern: str) -> None:
        """A lying disk: a checkpoint's n-th home write lands torn and reports success."""
        self._do(("put", "a", b"torn-page", b"x" * 300))  # something is dirty
        if self.db is None or self.db.closed:
            return
        before = self.disk.content(PATH)
        self.intents.clear()
        rule = self.plan.torn(nth, pattern=pattern, raise_error=False, file=".db")
        self.plan.arm()
        try:
            self.db.checkpoint()
        finally:
            self.plan.disarm()
            self.plan.rules.clear()
        if not rule.fired:
            return
        offset = self.plan.injected[-1].offset
        meant = self.intents[offset]
        landed = self.disk.content(PATH)[offset : offset + len(meant)]
        old = before[offset : offset + len(meant)].ljust(len(meant), b"\0")
        if landed == meant:
            return  # every sector that differs landed: no damage, go on
        self.damaged = True
        self.db.close()
        self.db = None
        pages = range(0, len(meant), PAGE_SIZE)  # a checkpoint writes runs of pages with one call
        if any(landed[i : i + PAGE_SIZE] == old[i : i + PAGE_SIZE] != meant[i : i + PAGE_SIZE] for i in pages):
            return  # a page's every differing sector was lost: a dropped write no checksum can see; stop
        try:  # a real mix of old and new sectors: the page's checksum must catch it
            self.db = engine.open(PATH, opener=self.disk.opener, pool_pages=16, sync="full")
        except engine.CorruptionError:
            pass  # the metadata page was torn: refusing to open is right

    @precondition(lambda self: self.damaged)
    @rule(tree=st.sampled_from(TREES), data=st.data())
    def read_after_a_tear(self, tree: str, data) -> None:
        """Every read returns the model's value or raises CorruptionError."""
        model = self.model.snapshot()
        if self.db is None or tree not in model:
            return
        keys = sorted(model[tree])
        if keys:
            key = data.draw(st.sampled_from(keys))
            try:
                assert self.db.tree(tree).get(key) == model[tree][key], "a torn page read as wrong data"
            except engine.CorruptionError:
                self.detected += 1
        seen = []
        try:
            for item in self.db.tree(tree).items():
                seen.append(item)
        except engine.CorruptionError:
            self.detected += 1
        assert seen == sorted(model[tree].items())[: len(seen)], "a scan returned wrong data"

    @invariant()
    def no_pin_and_no_leak(self) -> None:
        if self.db is not None and not self.damaged:
            report = self.db.check()
            assert report.ok, report.problems[:4]

    def teardown(self) -> None:
        self.plan.disarm()
        if self.damaged:
            if self.db is not None:
                self.db.close()
            return
        if self.db is not None:
            try:
                self.db.close()
            except engine.DragonDBError:
                pass
            db = engine.open(PATH, opener=self.disk.opener, pool_pages=16, sync="full")
            assert contents(db) == self.model.snapshot(), "after the run, a clean reopen lost or invented data"
            db.close()


class _Intent:
    """A BlockFile above the faulty one that remembers what the engine meant to write."""

    def __init__(self, inner, intents: dict[int, bytes]) -> None:
        self.inner, self.intents = inner, intents
        self.direct = inner.direct
        self.data_file = not inner.path.endswith("-wal")

    def write(self, offset: int, data) -> None:
        if self.data_file:
            self.intents[offset] = bytes(data)
        self.inner.write(offset, data)

    def read_into(self, offset: int, buf) -> int:
        return self.inner.read_into(offset, buf)

    def sync(self) -> None:
        self.inner.sync()

    def size(self) -> int:
        return self.inner.size()

    def extend(self, new_size: int) -> None:
        self.inner.extend(new_size)

    def truncate(self, new_size: int) -> None:
        self.inner.truncate(new_size)

    def close(self) -> None:
        self.inner.close()


def _model_of(state: dict) -> ModelDatabase:
    model = ModelDatabase()
    for name, tree in state.items():
        t = model.tree(name)
        for k, v in tree.items():
            t.put(k, v)
    return model


TestFaultMachine = FaultMachine.TestCase
TestFaultMachine.settings = settings(
    max_examples=max(60, settings.default.max_examples // 2),
    stateful_step_count=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

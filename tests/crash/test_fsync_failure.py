"""A failed fsync: NeedsRecoveryError, refusal, and recovery to the last durable commit.

The workload of `test_power_loss` runs on a `CrashDisk` behind a `FaultPlan`
that fails one sync call (each in turn: every commit's log fsync, the
checkpoint's log fsync, its data-file fsync and the log reset's fsync).
After the failure:

- the failing operation raised `NeedsRecoveryError` (a `StorageIOError`,
  so an `OSError`);
- every later operation raises it too, and none of them writes or syncs
  anything: the engine never retries the fsync as if nothing happened;
- `close()` then reopening recovers to the last acknowledged commit (the
  failed operation may land either way: it was never reported durable) in
  each of the three things a kernel may have done to the unsynced pages
  (kept the new content, reverted to the old, dropped the pages to zeros).

With eight threads committing together (group commit) a failed fsync must
fail every committer whose record it covered: after a power loss that drops
everything unsynced, every put that returned is still there.
"""

from __future__ import annotations

import threading
import time

import pytest
from test_power_loss import PATH, SHORT_K, SHORT_SEED, make_ops

import engine
from faults.crash import CrashDisk
from faults.io import FaultPlan
from faults.workload import Model, apply_op, contents
from models import ModelDatabase


def kernel_images(disk: CrashDisk, at: int) -> dict[str, dict[str, bytes]]:
    """The files as the reopening process sees them after a failed fsync at
    event `at`, in the three ways a kernel may have handled the unsynced
    pages: "kept" (the new content stays in the cache), "reverted" (the
    cache drops the changes and the file, size included, is what the disk
    holds), "dropped" (the dirty 4 KiB pages are discarded but the file
    keeps its new size: each such page reads as the disk has it, zeros
    where the disk never had blocks)."""
    kept = disk.images(at, "keep")
    durable = disk.images(at, "drop")
    dropped = {}
    for path, image in kept.items():
        buf = bytearray(image)
        old = durable.get(path, b"")
        pages = {p for ev in disk.pending_at(at) if ev.kind == "write" and ev.path == path
                 for p in range(ev.offset // 4096, (ev.offset + max(ev.length, 1) - 1) // 4096 + 1)}
        for page in pages:
            lo, hi = page * 4096, min(len(buf), page * 4096 + 4096)
            buf[lo:hi] = old[lo:hi].ljust(hi - lo, b"\0")
        dropped[path] = bytes(buf)
    return {"kept": kept, "reverted": durable, "dropped": dropped}


class FailedRun:
    """The workload up to the operation whose sync failed."""

    def __init__(self, ops: list[tuple], nth: int, file: str | None, sync: str = "full") -> None:
        self.disk = CrashDisk()
        self.plan = FaultPlan(seed=nth)
        self.plan.fail("sync", nth, file=file)
        self.plan.disarm()  # count the workload's syncs, not the creation's
        self.db = engine.open(PATH, opener=self.plan.opener(self.disk.opener), pool_pages=16, sync=sync,
                              checkpoint_bytes=96 * 1024)
        self.plan.arm()
        model = ModelDatabase()
        self.before: Model = {}
        self.after: Model = {}
        self.error: BaseException | None = None
        self.op: tuple | None = None
        for op in ops:
            self.before = model.snapshot()
            try:
                apply_op(self.db, op)
            except engine.DragonDBError as exc:
                self.error, self.op = exc, op
                apply_op(model, op)
                self.after = model.snapshot()
                break
            apply_op(model, op)
        else:
            self.before = self.after = model.snapshot()
        self.failed_at = len(self.disk.events)


def _ops() -> list[tuple]:
    ops = make_ops(SHORT_K, SHORT_SEED)
    ops.insert(30, ("commit",))
    return ops


def _sync_count(file: str | None) -> int:
    plan = FaultPlan()
    disk = CrashDisk()
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, checkpoint_bytes=96 * 1024)
    opened = disk.mark("opened")
    for op in _ops():
        apply_op(db, op)
    return sum(1 for e in disk.events[opened:] if e.kind == "sync" and (file is None or e.path.endswith(file)))


def _batch(db: engine.Database) -> None:
    with db.batch() as b:
        b.put("a", b"x", b"y")


def _scan(db: engine.Database) -> None:
    list(db.tree("a").items())


def _refusals(db: engine.Database) -> list[str]:
    """Call every operation after the failure; the ones that did not raise
    NeedsRecoveryError."""
    calls = {
        "put": lambda: db.tree("a").put(b"x", b"y"),
        "get": lambda: db.tree("a").get(b"x"),
        "delete": lambda: db.tree("a").delete(b"x"),
        "scan": lambda: _scan(db),
        "batch": lambda: _batch(db),
        "commit": db.commit,
        "checkpoint": db.checkpoint,
        "trees": db.trees,
        "check": db.check,
        "drop_tree": lambda: db.drop_tree("a"),
    }
    wrong = []
    for name, call in calls.items():
        try:
            call()
        except engine.NeedsRecoveryError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other outcome is the finding
            wrong.append(f"{name} raised {exc!r}")
            continue
        wrong.append(f"{name} succeeded")
    return wrong


@pytest.mark.parametrize("file", ["-wal", ".db"])
def test_failed_sync_refuses_then_recovers_in_all_three_kernel_behaviours(file: str) -> None:
    ops = _ops()
    total = _sync_count(file)
    assert total >= (40 if file == "-wal" else 3)
    problems = []
    for nth in range(1, total + 1):
        run = FailedRun(ops, nth, file)
        where = f"sync {nth} of {file}"
        if run.error is None:
            problems.append(f"{where}: no operation failed")
            continue
        if not isinstance(run.error, engine.NeedsRecoveryError) or not isinstance(run.error, OSError):
            problems.append(f"{where}: {run.op[0]} raised {run.error!r}, not NeedsRecoveryError")
        events, syncs = len(run.disk.events), run.plan.calls["sync"]
        wrong = _refusals(run.db)
        if wrong:
            problems.append(f"{where}: after the failure {wrong}")
        run.db.close()
        if len(run.disk.events) != events or run.plan.calls["sync"] != syncs:
            problems.append(f"{where}: wrote or synced after the failed fsync: {run.disk.events[events:]}")
        for behaviour, images in kernel_images(run.disk, run.failed_at).items():
            db = engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16)
            got = contents(db)
            ok = db.check().ok
            db.tree("a").put(b"new", b"write")
            db.close()
            if got not in (run.before, run.after) or not ok:
                problems.append(f"{where}, kernel {behaviour}: recovered state is wrong (check ok={ok})")
    assert not problems, f"{len(problems)} problems; first: {problems[:3]}"


def test_failed_sync_on_real_files(tmp_path) -> None:
    """Through the default opener: close after the failure, reopen, recover."""
    path = str(tmp_path / "real.db")
    plan = FaultPlan()
    plan.fail("sync", 12, file="-wal")
    plan.disarm()
    db = engine.open(path, opener=plan.opener())
    t = db.tree("t")
    plan.arm()
    acked = {}
    with pytest.raises(engine.NeedsRecoveryError) as info:
        for i in range(100):
            t.put(b"k%03d" % i, b"v%03d" % i)
            acked[b"k%03d" % i] = b"v%03d" % i
    assert info.value.errno is not None
    with pytest.raises(engine.NeedsRecoveryError):
        t.put(b"later", b"refused")
    with pytest.raises(engine.NeedsRecoveryError):
        db.commit()
    syncs = plan.calls["sync"]
    db.close()
    assert plan.calls["sync"] == syncs, "close after a failed fsync must not fsync again"
    db = engine.open(path)
    got = dict(db.tree("t").items())
    assert db.check().ok
    db.close()
    in_flight = {b"k%03d" % len(acked): b"v%03d" % len(acked)}
    assert got in (acked, {**acked, **in_flight})


class SlowSync:
    """A BlockFile whose sync takes a while, so committers pile up behind
    one fsync (group commit) as they do on a real disk."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.direct = inner.direct

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def sync(self) -> None:
        time.sleep(0.002)
        self.inner.sync()


def _slow(opener):
    return lambda path, create: SlowSync(opener(path, create))


def _eight_writers(tree, n: int) -> tuple[list[bytes], list[BaseException], list[threading.Thread]]:
    acked: list[bytes] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for i in range(n):
            key = b"w%d-%03d" % (w, i)
            try:
                tree.put(key, key * 3)
            except engine.DragonDBError as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                acked.append(key)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    return acked, errors, threads


def test_eight_committers_share_fsyncs() -> None:
    """The setup of the next test does group commit: fewer fsyncs than commits."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=_slow(disk.opener))
    acked, errors, _ = _eight_writers(db.tree("t"), 25)
    stats = db.stats()
    db.close()
    assert not errors and len(acked) == 200
    assert stats["log_syncs"] < stats["commits"] * 0.8, stats


def test_failed_sync_with_eight_committers_acknowledges_nothing_it_did_not_sync() -> None:
    """Group commit: every put that returned survives the loss of everything
    the failed fsync (and anything later) would have made durable, and every
    committer whose record the failed fsync covered raised."""
    lost = []
    for nth in (3, 8, 15, 30):
        disk = CrashDisk()
        plan = FaultPlan(seed=nth)
        plan.fail("sync", nth, file="-wal")
        plan.disarm()
        db = engine.open(PATH, opener=_slow(plan.opener(disk.opener)))
        tree = db.tree("t")
        plan.arm()
        acked, errors, threads = _eight_writers(tree, 40)
        assert not any(th.is_alive() for th in threads), "a committer hung after the failed fsync"
        assert errors and all(isinstance(e, engine.NeedsRecoveryError) for e in errors), errors[:3]
        at = len(disk.events)
        db.close()
        for behaviour, images in kernel_images(disk, at).items():
            db2 = engine.open(PATH, opener=CrashDisk(images).opener)
            t = db2.tree("t")
            missing = [k for k in acked if t.get(k) != k * 3]
            db2.close()
            if missing:
                lost.append(f"sync {nth}, kernel {behaviour}: {len(missing)} acknowledged puts lost")
    assert not lost, lost

"""The seed's three claims, as tests that fail when the fix is taken out.

(a) One root: two threads putting into an empty tree. Through
    `seed_bugs.SeedRootTree` (the seed's "no root?" asked before the write
    latch) the scheduler finds the interleaving where both pass the check
    and both create a root (a page leaks, a key is lost); through the
    engine's own `Tree` (root created under the latch) an exhaustive search
    finds no such schedule.
(b) One frame per page: two readers missing on the same page, through a
    pool driven directly over a page store. Through `seed_bugs.SeedFetchPool`
    (no double check) both install a frame for it (the pool's invariants
    break); through the engine's `BufferPool`, none does.
(c) No page leaked when I/O fails: every I/O call of a workload with leaf and
    internal splits, merges, overflow values, tree creation and drop is failed
    in turn (call N = 1, 2, ..., once and persistently, SQLite style); after
    each failure the operation had no effect, `check()` shows no leaked or
    double-owned page and no pin, and the database keeps working (after a
    reopen where the error was `NeedsRecoveryError`).

Faults go in only through `engine.open(..., opener=)` (a `FaultPlan` over a
`CrashDisk`, so nothing touches the real disk) and `engine.syncpoints` (the
scheduler). The absent fixes live on the test side (`seed_bugs`).
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from seed_bugs import ROOT_CHECK, SeedFetchPool, SeedRootTree

import engine
from engine import btree, syncpoints
from engine.bufferpool import BufferPool
from engine.codec import PAGE_SIZE, Node, encode_node
from faults.crash import CrashDisk
from faults.interleave import explore, run
from faults.io import KINDS, FaultPlan
from faults.workload import apply_op, contents, make_ops
from models import ModelDatabase, ModelPageStore

PATH = "/claims/claims.db"  # a CrashDisk path: never touches the real file system
SEEDS = 1000  # the bound: each planted race must be found within this many seeds


# -- (a) one root --------------------------------------------------------------------------

def root_scenario(double_check: bool, n: int = 2, sync: str = "off"):
    """n threads each put one key into the same empty tree, through the
    engine's `Tree` (`double_check`) or the seed's `SeedRootTree`. Returns
    (threads, outcome): outcome() says whether the result is right, and why."""
    db = engine.open(PATH, opener=CrashDisk().opener, pool_pages=16, sync=sync)
    t = db.tree("t")  # exists, but has no root page yet
    if not double_check:
        t = SeedRootTree(db, "t")
    want = {b"k%d" % i: b"v%d" % i for i in range(n)}

    def writer(i: int):
        return lambda: t.put(b"k%d" % i, b"v%d" % i)

    def outcome() -> tuple[bool, list[str], dict]:
        report = db.check()
        got = dict(t.items())
        return report.ok and got == want, report.problems, got

    return [writer(i) for i in range(n)], outcome


def _root_race_outcome(seed: int) -> dict:
    threads, outcome = root_scenario(double_check=False)
    run(threads, seed)
    return outcome()[2]


def test_two_roots_found_without_the_double_check(record_property) -> None:
    start = time.perf_counter()
    for seed in range(SEEDS):
        threads, outcome = root_scenario(double_check=False)
        result = run(threads, seed)
        good, problems, got = outcome()
        if not good:
            break
    else:
        pytest.fail(f"no seed in 0..{SEEDS - 1} found the two-root interleaving")
    record_property("seeds_to_find_two_roots", seed + 1)
    record_property("seconds_to_find_two_roots", round(time.perf_counter() - start, 4))
    # what went wrong is what the seed's bug does: the first root is orphaned (leaked) ...
    assert any("leaked" in p for p in problems), problems
    # ... and, when a put lands in the orphan before the second root replaces it, a key is
    # lost (the latch serves writers in order, so which shows first depends on the schedule)
    lost = next((s for s in range(seed, SEEDS) if len(_root_race_outcome(s)) == 1), None)
    assert lost is not None, f"no seed in {seed}..{SEEDS - 1} lost a key to the two roots"
    both = [i for i, point in result.trace if point == ROOT_CHECK]
    assert sorted(both) == [0, 1], f"both threads passed 'no root?': {result.trace}"
    # and the schedule replays to the same failure
    threads, outcome = root_scenario(double_check=False)
    again = run(threads, result.schedule)
    assert again.trace == result.trace
    assert outcome()[0] is False


def test_two_roots_hit_rate_over_seeds() -> None:
    """Not one lucky seed: a good share of random schedules hit the race."""
    hits = 0
    for seed in range(200):
        threads, outcome = root_scenario(double_check=False)
        run(threads, seed)
        hits += not outcome()[0]
    assert hits >= 20, f"only {hits} of 200 seeds found two roots"


def test_single_root_random_schedules_with_the_double_check() -> None:
    for seed in range(300):
        threads, outcome = root_scenario(double_check=True)
        result = run(threads, seed)
        good, problems, got = outcome()
        assert good, f"seed {seed}: {problems} {got}; replay run(threads, {result.schedule})"


def test_explore_finds_two_roots_without_the_double_check() -> None:
    def make():
        threads, outcome = root_scenario(double_check=False)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=2, max_points=8)
    assert found.failing is not None and found.runs <= 10, found


@pytest.mark.parametrize("sync", ["off", "full"])
def test_explore_two_threads_finds_no_second_root(sync: str) -> None:
    def make():
        threads, outcome = root_scenario(double_check=True, n=2, sync=sync)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=2, max_points=8)
    assert found.complete and found.failing is None, (found.failing, found.error)
    assert found.runs >= 6  # the search really branched (a put holds the latch once: few points)


def test_explore_three_threads_finds_no_second_root() -> None:
    """Three threads, every interleaving with at most two preemptions (CHESS's
    bound: almost every concurrency bug needs at most two)."""
    def make():
        threads, outcome = root_scenario(double_check=True, n=3)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=3, max_points=8, preemption_bound=2)
    assert found.complete and found.failing is None, (found.failing, found.error)
    assert found.runs >= 100


# -- (b) one frame per page ---------------------------------------------------------------------

ROOT = 1  # the page of the tree's root (page 0 is left unused, as the metadata page is)


def _tree_store() -> ModelPageStore:
    """A tree of 200 keys on its own pages: a root over four leaves."""
    model = ModelPageStore()
    ids = [model.new_page() for _ in range(6)]
    keys = [b"key%04d" % i for i in range(200)]
    leaves = [ids[2 + j] for j in range(4)]
    for j, pid in enumerate(leaves):
        part = keys[j * 50 : (j + 1) * 50]
        leaf = Node(True, part, [k.replace(b"key", b"v") * 10 for k in part],
                    next=leaves[j + 1] if j < 3 else 0, prev=leaves[j - 1] if j else 0)
        page = bytearray(PAGE_SIZE)
        encode_node(leaf, page)
        model.write(pid, page)
    page = bytearray(PAGE_SIZE)
    encode_node(Node(False, [keys[j * 50] for j in range(1, 4)], children=leaves), page)
    model.write(ROOT, page)
    return model


def fetch_scenario(double_check: bool, n: int = 2):
    """n readers of keys in one leaf, through a cold pool of 16 frames (the
    engine's, or `SeedFetchPool` without the double check): all miss on the
    root and the leaf. Readers share the database latch, so nothing else
    stands between them but the pool."""
    pool = (BufferPool if double_check else SeedFetchPool)(_tree_store(), 16)
    keys = [b"key%04d" % (7 + i) for i in range(n)]
    results: dict[int, bytes | None] = {}

    def reader(i: int):
        def body() -> None:
            results[i] = btree.get(pool, ROOT, keys[i])
        return body

    def outcome() -> tuple[bool, list[str]]:
        problems = pool.check_invariants(expect_unpinned=True)  # the seed claim is about the pool itself
        values_ok = all(results.get(i) == b"v%04d" % (7 + i) * 10 for i in range(n))
        problems += [] if values_ok else [f"wrong values {results}"]
        return not problems, problems

    return [reader(i) for i in range(n)], outcome


def test_duplicate_frames_found_without_the_double_check(record_property) -> None:
    start = time.perf_counter()
    for seed in range(SEEDS):
        threads, outcome = fetch_scenario(double_check=False)
        result = run(threads, seed)
        good, problems = outcome()
        if not good:
            break
    else:
        pytest.fail(f"no seed in 0..{SEEDS - 1} found two frames for one page")
    record_property("seeds_to_find_duplicate_frames", seed + 1)
    record_property("seconds_to_find_duplicate_frames", round(time.perf_counter() - start, 4))
    # a frame holding the page but missing from the page table: the page was in two frames
    assert any("neither free, cached nor reserved" in p or "page table" in p for p in problems), problems
    misses = [i for i, point in result.trace if point == "bufferpool.fetch.install"]
    assert len(set(misses)) == 2, f"both readers installed a frame: {result.trace}"
    threads, outcome = fetch_scenario(double_check=False)
    assert run(threads, result.schedule).trace == result.trace
    assert outcome()[0] is False


def test_duplicate_frames_hit_rate_over_seeds() -> None:
    hits = 0
    for seed in range(200):
        threads, outcome = fetch_scenario(double_check=False)
        run(threads, seed)
        hits += not outcome()[0]
    assert hits >= 20, f"only {hits} of 200 seeds found a duplicate frame"


def test_one_frame_per_page_random_schedules_with_the_double_check() -> None:
    for seed in range(300):
        threads, outcome = fetch_scenario(double_check=True, n=2 + seed % 2)
        result = run(threads, seed)
        good, problems = outcome()
        assert good, f"seed {seed}: {problems}; replay run(threads, {result.schedule})"


def test_explore_finds_duplicate_frames_without_the_double_check() -> None:
    def make():
        threads, outcome = fetch_scenario(double_check=False)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=2, max_points=8)
    assert found.failing is not None, found


def test_explore_two_readers_find_no_duplicate_frame() -> None:
    def make():
        threads, outcome = fetch_scenario(double_check=True)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=2, max_points=8)
    assert found.complete and found.failing is None, (found.failing, found.error)
    assert found.runs >= 50


def test_explore_three_readers_find_no_duplicate_frame() -> None:
    def make():
        threads, outcome = fetch_scenario(double_check=True, n=3)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=3, max_points=8, preemption_bound=2)
    assert found.complete and found.failing is None, (found.failing, found.error)
    assert found.runs >= 100


@pytest.mark.slow
def test_explore_three_readers_every_interleaving() -> None:
    """No preemption bound: every interleaving of three readers' first three sync points."""
    def make():
        threads, outcome = fetch_scenario(double_check=True, n=3)
        return threads, lambda: outcome()[0]

    found = explore(make, max_threads=3, max_points=3)
    assert found.complete and found.failing is None, (found.failing, found.error)


# -- (c) no page leaked when I/O fails ---------------------------------------------------------------

def workload() -> list[tuple]:
    # crash=False: kills are the crash tests' business; reopen ops stay (open, recovery, truncate)
    return make_ops(random.Random(3), 55, sync="full", key_bytes=(800, 1000))


_CALLS: Counter = Counter()


def calls_per_kind() -> Counter:
    """How many calls of each kind the workload makes (a dry run through an empty plan)."""
    if not _CALLS:
        plan = FaultPlan(0)
        counters = {kind: plan.fail(kind, probability=0.0) for kind in KINDS}  # count armed calls
        outcome = sweep_one(plan, None)
        assert outcome.problems == [], outcome.problems
        _CALLS.update({kind: rule.seen for kind, rule in counters.items()})
    return _CALLS


class Outcome:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.failed_ops = 0
        self.reopens = 0


def sweep_one(plan: FaultPlan, rule) -> Outcome:  # noqa: C901 - workload and its per-failure checks in one
    """Run the workload through `plan`; check every failure (see module docstring)."""
    out = Outcome()
    disk = CrashDisk()
    model = ModelDatabase()

    def open_db(where: str):
        for attempt in range(4):
            if attempt == 3:
                plan.disarm()
            try:
                return engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync="full")
            except engine.StorageIOError:
                out.failed_ops += 1
        raise AssertionError(f"{where}: cannot open with faults off")

    def verify(db, where: str, *also) -> None:
        armed = plan.armed
        plan.disarm()
        got = contents(db)
        if got != model.snapshot() and got not in also:
            out.problems.append(f"{where}: contents differ from the model")
        report = db.check()
        if report.pages_leaked or report.pages_double_owned or not report.ok:
            out.problems.append(f"{where}: leaked {report.pages_leaked}, double-owned "
                                f"{report.pages_double_owned}: {report.problems[:3]}")
        if armed:
            plan.arm()

    db = open_db("open")
    verify(db, "after open")
    fired_at = None
    for i, op in enumerate(workload(), 1):
        where = f"op {i} {op[0]}"
        if rule is not None and rule.fired and fired_at is None:
            fired_at = i
        if fired_at is not None and i > fired_at + 3:
            plan.disarm()  # a persistent fault ends: the disk was replaced
        try:
            if op[0] == "reopen":
                try:
                    db.close()
                finally:
                    db = open_db(where)
                got = want = None
            else:
                got = apply_op(db, op)
        except engine.NeedsRecoveryError:
            out.failed_ops += 1
            after = model.reopen()
            apply_op(after, op) if op[0] != "reopen" else None
            try:
                db.close()
            except engine.DragonDBError:
                pass
            db = open_db(where)
            out.reopens += 1
            got_state = contents(db)
            if got_state == after.snapshot():
                model = after  # the write became durable before its sync failed: allowed
            verify(db, f"{where} after NeedsRecoveryError and reopen")
            continue
        except engine.StorageIOError:
            out.failed_ops += 1
            if db is None or db.closed:
                db = open_db(where)
            try:
                verify(db, f"{where} raised StorageIOError")
            except engine.NeedsRecoveryError:
                db.close()
                db = open_db(where)
                verify(db, f"{where} raised StorageIOError, reopened")
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            out.problems.append(f"{where}: raised {exc!r}")
            break
        if op[0] != "reopen":
            want = apply_op(model, op)
            if got != want:
                out.problems.append(f"{where}: returned {got!r:.60}, model {want!r:.60}")
    plan.disarm()
    try:
        db.close()
    except engine.DragonDBError:
        pass
    except Exception as exc:  # noqa: BLE001
        out.problems.append(f"final close raised {exc!r}")
    db = open_db("final reopen")
    verify(db, "final reopen")
    t = db.tree("after")
    t.put(b"still", b"working")
    if t.get(b"still") != b"working":
        out.problems.append("the database does not work after the faults")
    db.close()
    return out


def test_workload_covers_the_structural_cases() -> None:
    """Leaf and internal splits, merges, overflow values, tree creation and drop, reopens."""
    seen: Counter = Counter()
    syncpoints.install(lambda name: seen.update([name]))
    try:
        disk = CrashDisk()
        db = engine.open(PATH, opener=disk.opener, pool_pages=16, sync="full")
        depth = 0
        for op in workload():
            if op[0] == "reopen":
                db.close()
                db = engine.open(PATH, opener=disk.opener, pool_pages=16, sync="full")
            else:
                apply_op(db, op)
            depth = max([depth] + [len(db.tree_levels(n)) for n in db.trees()])
        stats = db.stats()
        db.close()
    finally:
        syncpoints.uninstall()
    kinds = Counter(op[0] for op in workload())
    assert depth >= 3, "internal nodes must split (a third level)"
    assert seen["btree.split"] >= 8 and seen["btree.merge"] >= 4, seen
    assert kinds["tree"] >= 3 and kinds["drop"] == 1 and kinds["reopen"] >= 1, kinds
    assert sum(1 for op in workload() if op[0] == "put" and len(op[3]) > 4096) >= 3
    assert stats["evictions"] >= 10, "a 16-frame pool must evict (and read back)"
    assert set(calls_per_kind()) >= {"open", "read", "write", "sync", "extend", "truncate"}


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize("kind", ["open", "read", "write", "sync", "extend", "truncate"])
def test_every_io_call_fails_in_turn(kind: str, persistent: bool) -> None:
    n = calls_per_kind()[kind]
    assert n >= 1
    # every call index for rare kinds; for the many reads and writes every index up to 60, then a stride
    indexes = list(range(1, n + 1)) if n <= 60 else list(range(1, 61)) + list(range(61, n + 1, 7))
    failures = []
    fired = 0
    for nth in indexes:
        plan = FaultPlan(nth)
        rule = plan.fail(kind, nth, persistent=persistent)
        out = sweep_one(plan, rule)
        fired += rule.fired > 0
        if out.problems:
            failures.append(f"{kind} call {nth}{' persistent' if persistent else ''}: {out.problems[:2]}")
    assert fired == len(indexes), "every call index is reached by the deterministic workload"
    assert not failures, f"{len(failures)} of {len(indexes)} failed; first: {failures[:3]}"


# -- (c) continued: failures the campaign found, as minimal repros -------------------------------------

def loaded(n: int = 600, sync: str = "off", value: int = 200, seed: int = 1, **options):
    """A database of `n` keys on a 16-frame pool, opened through a fresh plan."""
    disk, plan = CrashDisk(), FaultPlan(seed, site_depth=2)
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync=sync, **options)
    t = db.tree("t")
    for i in range(n):
        t.put(b"key%05d" % i, b"%05d" % i * (value // 5))
    return disk, plan, db, t


def test_close_after_a_failed_data_write_raises_storage_error() -> None:
    """Found by the campaign: close() used to raise BufferError here (an I/O error's traceback
    still exported the pool's mmap)."""
    disk, plan, db, t = loaded(50)
    plan.short("write", 1, file=".db")  # the checkpoint's first home write persists a prefix, then fails
    with pytest.raises(engine.StorageIOError):
        db.close()
    db = engine.open(PATH, opener=disk.opener, pool_pages=16, sync="off")
    assert len(db.tree("t")) == 50


def test_failed_log_truncate_in_checkpoint_loses_no_write() -> None:
    disk, plan, db, t = loaded(600)
    db.checkpoint()
    t.put(b"key00000", b"v1")
    list(t.items())  # evicts the leaf: spilled to the log with v1
    t.put(b"key00000", b"v2")  # read back from the spill, changed again: dirty in the pool
    plan.fail("truncate", 1)
    with pytest.raises(engine.NeedsRecoveryError):  # the log's state is unknown: reopen
        db.checkpoint()
    with pytest.raises(engine.NeedsRecoveryError):
        t.get(b"key00000")
    db.close()
    plan.disarm()
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync="off")
    t = db.tree("t")
    list(t.items())  # evicts and reads back pages after recovery
    assert t.get(b"key00000") == b"v2"
    assert db.check().ok
    db.close()


def test_short_log_read_at_open_drops_no_acknowledged_commit() -> None:
    """Found by the campaign: recovery used to take a short read of the log for a torn tail
    and silently drop every acknowledged commit after it."""
    disk, plan, db, t = loaded(40, sync="full")  # every put fsynced and returned: durable
    images = disk.images(None, "keep")  # the process dies; the page cache survives
    again = FaultPlan(2)
    again.short("read", 1, file="-wal")  # recovery's first log read comes back short
    try:
        db = engine.open(PATH, opener=again.opener(CrashDisk(images).opener), pool_pages=16, sync="full")
    except (engine.StorageIOError, engine.CorruptionError):
        return  # refusing is fine; silently losing acknowledged commits is not
    assert len(db.tree("t")) == 40


def test_bit_flip_in_the_last_log_record_at_open_drops_no_acknowledged_commit() -> None:
    disk, plan, db, t = loaded(5, sync="full", value=50)  # five puts, each fsynced: durable
    images = disk.images(None, "keep")
    log = images[PATH + "-wal"]
    last = max(i for i, b in enumerate(log) if b)  # the last record's last byte (zeros pad the sector)
    for seed in range(10_000):  # a seed whose flip lands in the last record's final 16 bytes
        probe = FaultPlan(seed)
        probe.bitflip(1, file="-wal")
        bit = probe.decide("read", PATH + "-wal", 0, len(log)).bit % (len(log) * 8)
        if last - 16 <= bit // 8 <= last:
            break
    again = FaultPlan(seed)
    again.bitflip(1, file="-wal")  # recovery's first log read is the whole log: the same flip
    try:
        db = engine.open(PATH, opener=again.opener(CrashDisk(images).opener), pool_pages=16, sync="full")
    except engine.DragonDBError:
        return  # detected: fine
    assert again.injected and again.injected[0].offset == 0
    assert len(db.tree("t")) == 5, "an acknowledged commit was dropped without an error"


def test_bit_flip_reading_a_spilled_image_at_checkpoint_corrupts_nothing() -> None:
    def dirty_and_spilled(plan_cls=FaultPlan):
        disk, plan = CrashDisk(), plan_cls(1, site_depth=2)
        db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync="off")
        t = db.tree("t")
        for i in range(600):
            t.put(b"key%05d" % i, b"%05d" % i * 40)
        db.checkpoint()
        for i in range(0, 600, 7):
            t.put(b"key%05d" % i, b"new")
        list(t.items())  # dirty leaves spill to the log
        return plan, db, t

    plan, db, t = dirty_and_spilled(_LogReads)  # a dry run: which log read is the first read_image?
    plan.log.clear()
    db.checkpoint()
    nth = 1 + next(i for i, site in enumerate(plan.log) if "read_image" in site)
    plan, db, t = dirty_and_spilled()
    plan.bitflip(nth, file="-wal")
    try:
        db.checkpoint()
    except engine.CorruptionError:
        return  # caught before anything was written home: fine
    assert "read_image" in plan.injected[-1].site
    got = dict(t.items())  # the flipped page was written home and the log reset
    want = {b"key%05d" % i: b"new" if i % 7 == 0 else b"%05d" % i * 40 for i in range(600)}
    assert got == want


class _LogReads(FaultPlan):
    """Remembers the call site of every read of the log."""

    def __init__(self, seed: int, *, site_depth: int = 0) -> None:
        super().__init__(seed, site_depth=site_depth)
        self.log: list[str] = []

    def decide(self, kind, path, offset=None, length=0, site=None):
        if kind == "read" and path.endswith("-wal"):
            self.log.append(site or "?")
        return super().decide(kind, path, offset, length, site)


def test_failed_automatic_checkpoint_does_not_fail_a_committed_put() -> None:
    scratch = loaded(300)[2]
    logged = scratch.stats()["log_bytes"]  # the load's log (the same run on a fresh disk)
    scratch.close()
    disk, plan, db, t = loaded(300, checkpoint_bytes=logged)  # the next put's log passes it: it checkpoints
    assert db.checkpoints == 0
    plan.bitflip(1, file="-wal")  # the checkpoint reads a spilled image back: flipped
    for i in range(300, 400):
        key = b"key%05d" % i
        t.put(key, b"x" * 100)  # committed: must not raise, whatever the checkpoint met
        assert t.get(key) == b"x" * 100
        if db.last_checkpoint_error is not None:
            break
    assert isinstance(db.last_checkpoint_error, engine.CorruptionError), "no automatic checkpoint read the log"


def test_failed_append_before_a_sync_hides_no_later_commit() -> None:
    """Found by the campaign: a failed append's bytes in rule 7's gap used to end the
    recovery scan, dropping a commit acknowledged by db.commit()."""
    disk, plan = CrashDisk(), FaultPlan(3)
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync="off")
    t = db.tree("t")
    t.put(b"k1", b"v1")
    t.put(b"k2", b"v2")
    plan.short("write", 1, file="-wal", keep=300)  # k3's record: 300 bytes land, then an error
    with pytest.raises(engine.StorageIOError):
        t.put(b"k3", b"x" * 3000)
    db.commit()  # syncs the log, the failed bytes with it
    t.put(b"k4", b"v4")
    db.commit()  # k4 is durable now
    images = disk.images(None, "drop")  # power loss: exactly what was synced
    db = engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16, sync="off")
    assert dict(db.tree("t").items()) == {b"k1": b"v1", b"k2": b"v2", b"k4": b"v4"}


def test_interleavings_with_evictions_complete() -> None:
    db = engine.open(PATH, opener=CrashDisk().opener, pool_pages=16, sync="off")
    t = db.tree("t")
    for i in range(300):  # ~20 leaves: far more than 16 frames
        t.put(b"key%04d" % i, b"v" * 200)

    def worker(i: int):
        def body() -> None:
            for j in range(10):
                t.put(b"key%04d" % ((j * 37 + i * 101) % 300), b"x" * 100)
                t.get(b"key%04d" % ((j * 53 + i) % 300))
        return body

    run([worker(0), worker(1)], 0, timeout=0.5)
    assert db.check().ok


def test_a_failed_put_does_not_come_back_after_a_crash() -> None:
    disk, plan = CrashDisk(), FaultPlan(3)
    db = engine.open(PATH, opener=plan.opener(disk.opener), pool_pages=16, sync="full")
    t = db.tree("t")
    t.put(b"k1", b"v1")
    plan.short("write", 1, file="-wal", keep=511)  # the record fits in 511 bytes; the padding is lost
    with pytest.raises(engine.StorageIOError):
        t.put(b"k2", b"v2")
    assert t.get(b"k2") is None  # no effect, as the API says
    images = disk.images(None, "keep")  # the process dies now; the page cache survives
    db = engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16, sync="full")
    assert dict(db.tree("t").items()) == {b"k1": b"v1"}


def test_power_loss_mid_log_header_rewrite_recovers() -> None:
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, pool_pages=16, sync="full")
    t = db.tree("t")
    for i in range(20):
        t.put(b"k%02d" % i, b"v" * 100)
    mark = len(disk.events)
    db.checkpoint()
    header = next(e for e in disk.events[mark:] if e.path.endswith("-wal") and e.kind == "write" and e.offset == 0)
    images = disk.images(header.index, "drop")  # power lost as the reset's header write was under way
    log = bytearray(images[PATH + "-wal"])
    log[0:512] = bytes(range(256)) * 2  # the sector holds garbage
    images[PATH + "-wal"] = bytes(log)
    db = engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16, sync="full")
    assert len(db.tree("t")) == 20

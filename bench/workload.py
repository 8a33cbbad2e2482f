"""The workload: one store, one directory, every phase timed in this process.

`run_job(job, store_name, directory, workload)` is what each benchmark
subprocess runs (see `bench.worker`), and what `bench.engine_only` runs in
the caller's process. Jobs:

- "main": insert N random 16-byte keys with 100-byte values as single puts
  and one durable commit; close and reopen; N point gets in shuffled order; a
  full ordered scan; the same gets from several threads at once; the gets
  again with a 64-frame pool (and, for the engine, with buffered I/O);
  overwrite 10%; delete N/2; single-put durable commits; the same from 8
  threads at once (group commit); bytes on disk; peak RSS; then the same N
  keys into a new store as one atomic batch (`with db.batch()`, a sqlite3 or
  lmdb transaction), made durable.
- "big": 1 MiB values, a smaller count: put with one durable commit, reopen, get.
- "scale": insert, reopen, get, scan and tree height only (the engine at
  growing N: cost per operation should follow tree height, not N).

Each phase record is {"ops", "seconds", "ops_per_s"} plus "partial": true
when the phase hit its time budget (dbm.dumb rewrites its index on every
delete, so N/2 deletes would take hours) and "missing" for gets.
"""

from __future__ import annotations

import cProfile
import itertools
import os
import random
import resource
import shutil
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from bench.stores import Store, Unsupported, make_store

__all__ = ["Workload", "run_job", "disk_usage", "make_keys", "rss_kib", "JOBS"]

JOBS = ("main", "big", "scale")

KEY_SIZE = 16
VALUE_SIZE = 100
_CHUNK = 256  # ops between time-budget checks: rare enough to cost nothing per op


@dataclass
class Workload:
    """Sizes and knobs of one run; travels to each subprocess as JSON."""

    n: int = 100_000
    seed: int = 1
    commits: int = 1000
    commit_threads: int = 8
    read_threads: int = 4
    small_pool: int = 64
    big_count: int = 100
    big_size: int = 1 << 20
    budget: float = 90.0  # seconds per phase before it stops and is marked partial
    profile_dir: str | None = None  # when set, every phase is cProfiled into here
    phases: list[str] = field(default_factory=list)  # empty: all of the job's phases

    def to_dict(self) -> dict:
        return asdict(self)


def make_keys(rng: random.Random, n: int) -> list[bytes]:
    """n random 16-byte keys (128 random bits: a collision is not a concern)."""
    blob = rng.randbytes(KEY_SIZE * n)
    return [blob[i:i + KEY_SIZE] for i in range(0, len(blob), KEY_SIZE)]


class _CompactKeys:
    """N keys as one bytes blob (+ an optional array('I') order), sliced into
    key objects one chunk at a time: the scale job's harness stays ~20 MiB at
    1M keys instead of ~70 MiB, so peak RSS is mostly the engine's."""

    def __init__(self, blob: bytes, order: array | None = None) -> None:
        self.blob = blob
        self.order = order

    def __len__(self) -> int:
        return len(self.order) if self.order is not None else len(self.blob) // KEY_SIZE

    def __getitem__(self, s: slice) -> list[bytes]:
        assert isinstance(s, slice), "_CompactKeys: only slices"
        blob = self.blob
        idx = range(len(self))[s] if self.order is None else self.order[s]
        return [blob[i * KEY_SIZE:(i + 1) * KEY_SIZE] for i in idx]


def rss_kib() -> int:
    """Current resident set size of this process in KiB (Linux), else 0."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, ValueError, IndexError):
        return 0


def _hwm_kib() -> int | None:
    """Peak RSS since the last reset (VmHWM; Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _reset_hwm() -> bool:
    """Reset VmHWM (Linux >= 4.0: "5" to clear_refs) so each phase gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


#: the highest VmHWM seen before any reset: resets lower what ru_maxrss reports
_peak_seen = 0


def peak_rss_kib() -> int:
    """Peak RSS of this process in KiB (ru_maxrss is KiB on Linux, bytes on macOS),
    including peaks recorded before a per-phase reset."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak // 1024 if os.uname().sysname == "Darwin" else peak
    return max(peak, _peak_seen, _hwm_kib() or 0)


def disk_usage(directory: str) -> dict:
    """Bytes the files under `directory` occupy: allocated blocks and apparent size."""
    allocated = apparent = files = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            try:
                st = os.stat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return {"allocated": allocated, "apparent": apparent, "files": files}


def _record(ops: int, seconds: float, **extra) -> dict:
    rec = {"ops": ops, "seconds": seconds, "ops_per_s": ops / seconds if seconds > 0 else 0.0}
    rec.update({k: v for k, v in extra.items() if v})
    return rec


class _Job:
    """Runs one job's phases against one store and collects the results."""

    def __init__(self, job: str, store: Store, wl: Workload) -> None:
        self.job = job
        self.store = store
        self.wl = wl
        self.rng = random.Random(f"{wl.seed}:{job}")  # same data for every store
        self.result: dict = {
            "store": store.name, "job": job, "n": wl.n, "version": store.version(),
            "note": store.note, "phases": {}, "skipped": {}, "errors": {},
        }

    # -- helpers

    def wanted(self, phase: str) -> bool:
        return not self.wl.phases or phase in self.wl.phases

    def _profiled(self, phase: str, fn: Callable[[], dict]) -> dict:
        if not self.wl.profile_dir:
            return fn()
        prof = cProfile.Profile()
        prof.enable()
        try:
            return fn()
        finally:
            prof.disable()
            prof.dump_stats(os.path.join(self.wl.profile_dir, f"{self.store.name}-{phase}.pstats"))

    def phase(self, name: str, fn: Callable[[], dict]) -> dict | None:
        """Run one phase; Unsupported is recorded as skipped, not as a failure."""
        global _peak_seen
        if not self.wanted(name):
            return None
        _peak_seen = max(_peak_seen, _hwm_kib() or 0)
        per_phase = _reset_hwm()
        try:
            rec = self._profiled(name, fn)
        except Unsupported as exc:
            self.result["skipped"][name] = str(exc)
            return None
        # Memory by phase: where it is at the end, and its peak during the phase.
        rec["rss_kib"] = rss_kib()
        hwm = _hwm_kib()
        if per_phase and hwm is not None:
            rec["peak_rss_kib"] = hwm
        _peak_seen = max(_peak_seen, hwm or 0)
        self.result["phases"][name] = rec
        return rec

    def loop(self, fn: Callable[[Sequence], int | None], items: Sequence,
             deadline: float) -> tuple[int, int, bool]:
        """Feed `items` to `fn` in chunks until done or past `deadline`.
        Returns (items done, sum of fn's results, stopped early)."""
        done = total = 0
        n = len(items)
        clock = time.perf_counter
        for i in range(0, n, _CHUNK):
            chunk = items[i:i + _CHUNK]
            total += fn(chunk) or 0
            done += len(chunk)
            if done < n and clock() > deadline:
                return done, total, True
        return done, total, False

    def bulk(self, fn: Callable[[Sequence], None], items: Sequence) -> dict:
        """begin(); fn over items in chunks; commit() durably. Timed as one."""
        store = self.store
        t0 = time.perf_counter()
        store.begin()
        done, _, partial = self.loop(fn, items, t0 + self.wl.budget)
        store.commit()
        return _record(done, time.perf_counter() - t0, partial=partial)

    def gets(self, keys: Sequence[bytes], get_many=None) -> dict:
        get_many = get_many or self.store.get_many
        t0 = time.perf_counter()
        done, missing, partial = self.loop(get_many, keys, t0 + self.wl.budget)
        return _record(done, time.perf_counter() - t0, partial=partial, missing=missing)

    def threaded(self, handles: list, work: Callable[[object, int], tuple[int, int]]) -> dict:
        """Run work(handle, i) in one thread per handle, released together by a
        barrier; wall time from release to the last join."""
        count = len(handles)
        barrier = threading.Barrier(count + 1)
        out: list = [None] * count

        def body(i: int) -> None:
            barrier.wait()
            try:
                out[i] = work(handles[i], i)
            except BaseException as exc:  # surfaced below, in the caller's thread
                out[i] = exc

        threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        for h in handles:
            h.release()
        for o in out:
            if isinstance(o, BaseException):
                raise o
        return _record(sum(o[0] for o in out), seconds, threads=count,
                       partial=any(o[2] for o in out), missing=sum(o[1] for o in out))

    def reopen(self, **kwargs) -> None:
        self.store.close()
        self.store.open(**kwargs)

    # -- jobs

    def run_main(self) -> None:
        wl, store, rng = self.wl, self.store, self.rng
        n = wl.n
        keys = make_keys(rng, n)
        pool = [rng.randbytes(VALUE_SIZE) for _ in range(1024)]
        pool2 = [rng.randbytes(VALUE_SIZE) for _ in range(1024)]
        order = keys[:]
        rng.shuffle(order)
        fresh = make_keys(rng, wl.commits * 2)
        self.result["rss_baseline_kib"] = rss_kib()

        store.open()
        values = itertools.cycle(pool)
        ins = self.phase("insert", lambda: self.bulk(
            lambda chunk: store.put_many(chunk, values), keys))
        if ins is not None and ins.get("partial"):
            keys = keys[:ins["ops"]]  # later phases work on what was inserted
            inserted = set(keys)
            order = [k for k in order if k in inserted]
            n = len(keys)

        def reopen_phase() -> dict:
            t0 = time.perf_counter()
            store.close()
            t1 = time.perf_counter()
            self.result["disk_after_insert"] = disk_usage(store.dir)
            t2 = time.perf_counter()
            store.open()
            t3 = time.perf_counter()
            return _record(1, (t1 - t0) + (t3 - t2), close_s=t1 - t0, open_s=t3 - t2)

        self.phase("reopen", reopen_phase)
        self.phase("get", lambda: self.gets(order))
        if store.name == "engine":
            self.result["stats_after_get"] = store.stats()
        self.phase("scan", self.scan)
        self.phase("get_threads", lambda: self.threaded_gets(order))
        self.phase("get_pool64", lambda: self.variant_gets(order, pool_pages=wl.small_pool))
        if store.name == "engine":
            self.phase("get_buffered", lambda: self.variant_gets(order, direct_io=False))
        values2 = itertools.cycle(pool2)
        self.phase("overwrite", lambda: self.bulk(
            lambda chunk: store.put_many(chunk, values2), order[:n // 10]))

        def delete_phase() -> dict:
            if store.no_delete:
                raise Unsupported(store.no_delete)
            return self.bulk(store.delete_many, keys[:n // 2])

        self.phase("delete", delete_phase)
        if self.wanted("commit") or self.wanted("commit_threads"):
            self.reopen(durable=True)
        self.phase("commit", lambda: self.commits(fresh[:wl.commits], pool[0]))
        self.phase("commit_threads", lambda: self.threaded_commits(fresh[wl.commits:], pool[1]))
        if store.name == "engine":
            self.result["stats_final"] = store.stats()
        store.close()
        self.result["disk_final"] = disk_usage(store.dir)
        self.phase("batch", lambda: self.batch(keys, itertools.cycle(pool)))

    def batch(self, keys: list[bytes], values) -> dict:
        """`keys` as one atomic batch into a new store beside the main one."""
        where = os.path.join(self.store.dir, "batch")
        os.mkdir(where)
        other = make_store(self.store.name, where)
        try:
            other.open()
            try:
                t0 = time.perf_counter()
                other.put_batch(keys, values)
                seconds = time.perf_counter() - t0
            finally:
                other.close()
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return _record(len(keys), seconds)

    def scan(self) -> dict:
        t0 = time.perf_counter()
        items = self.store.scan()
        return _record(items, time.perf_counter() - t0, items=items)

    def threaded_gets(self, order: list[bytes]) -> dict:
        count = self.wl.read_threads
        handles = [self.store.reader() for _ in range(count)]
        slices = [order[i::count] for i in range(count)]
        deadline = time.perf_counter() + self.wl.budget + 10  # threads start ~now

        def work(h, i):
            return self.loop(h.get_many, slices[i], deadline)

        return self.threaded(handles, work)

    def variant_gets(self, order: list[bytes], **open_kwargs) -> dict:
        """The gets again after reopening with other settings (then back)."""
        store = self.store
        store.close()
        try:
            store.open(**open_kwargs)
        except Unsupported:
            store.open()
            raise
        try:
            rec = self.gets(order)
        finally:
            self.reopen()
        return rec

    def commits(self, keys: list[bytes], value: bytes) -> dict:
        store = self.store
        cp = store.commit_put

        def many(chunk):
            for k in chunk:
                cp(k, value)

        t0 = time.perf_counter()
        done, _, partial = self.loop(many, keys, t0 + self.wl.budget)
        return _record(done, time.perf_counter() - t0, partial=partial)

    def threaded_commits(self, keys: list[bytes], value: bytes) -> dict:
        count = self.wl.commit_threads
        handles = [self.store.writer() for _ in range(count)]
        slices = [keys[i::count] for i in range(count)]
        deadline = time.perf_counter() + self.wl.budget + 10

        def work(h, i):
            cp = h.commit_put

            def many(chunk):
                for k in chunk:
                    cp(k, value)

            return self.loop(many, slices[i], deadline)

        return self.threaded(handles, work)

    def run_big(self) -> None:
        wl, store, rng = self.wl, self.store, self.rng
        keys = make_keys(rng, wl.big_count)
        blobs = [rng.randbytes(wl.big_size) for _ in range(2)]
        order = keys[:]
        rng.shuffle(order)
        self.result["big_size"] = wl.big_size
        self.result["rss_baseline_kib"] = rss_kib()
        store.open()
        values = itertools.cycle(blobs)
        self.phase("big_put", lambda: self.bulk(lambda chunk: store.put_many(chunk, values), keys))
        self.reopen()
        self.phase("big_get", lambda: self.gets(order))
        store.close()
        self.result["disk_final"] = disk_usage(store.dir)

    def run_scale(self) -> None:
        wl, store, rng = self.wl, self.store, self.rng
        blob = rng.randbytes(KEY_SIZE * wl.n)
        pool = [rng.randbytes(VALUE_SIZE) for _ in range(1024)]
        perm = array("I", range(wl.n))
        rng.shuffle(perm)
        keys = _CompactKeys(blob)
        order = _CompactKeys(blob, perm)
        self.result["rss_baseline_kib"] = rss_kib()
        store.open()
        values = itertools.cycle(pool)
        self.phase("insert", lambda: self.bulk(lambda chunk: store.put_many(chunk, values), keys))

        def reopen_phase() -> dict:
            t0 = time.perf_counter()
            self.reopen()
            return _record(1, time.perf_counter() - t0)

        self.phase("reopen", reopen_phase)
        self.phase("get", lambda: self.gets(order))
        self.phase("scan", self.scan)
        if store.stats() is not None:
            self.result["stats_final"] = store.stats()
        store.close()
        self.result["disk_final"] = disk_usage(store.dir)
        # The peak is taken before the height: tree_levels() builds a PageInfo for
        # every page, which at 1M keys costs more memory than the workload itself.
        self.result["peak_rss_kib"] = peak_rss_kib()
        height = getattr(store, "tree_height", None)
        if height is not None:
            store.open()
            try:
                self.result["tree_height"] = height()
            except Exception as exc:  # a diagnostic; the timings stand without it
                self.result["errors"]["tree_height"] = repr(exc)
            finally:
                store.close()


def run_job(job: str, store_name: str, directory: str, wl: Workload) -> dict:
    """Run `job` ("main", "big" or "scale") for one store in `directory`.
    Never raises for a store failure: the error text goes in result["error"]."""
    assert job in JOBS, f"run_job: unknown job {job!r}"
    store = make_store(store_name, directory)
    j = _Job(job, store, wl)
    try:
        getattr(j, f"run_{job}")()
    except Exception as exc:
        import traceback

        j.result["error"] = f"{type(exc).__name__}: {exc}"
        j.result["traceback"] = traceback.format_exc()
    j.result.setdefault("peak_rss_kib", peak_rss_kib())
    return j.result

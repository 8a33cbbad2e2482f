"""`engine.db` pinned exactly: `stats()` field by field for a writer and a
reader, `tree_levels` and `tree_stats` against the pages on disk, the
errors' texts that name what was missing, what `close()` syncs, a refused
open that leaves no readers file behind, and a fork()ed child's handle
(closed for the child, the parent's lock and latch left alone)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

import engine
from engine.checkpoint import CHECKPOINT_BYTES, MIN_CHECKPOINT_BYTES
from engine.codec import PAGE_SIZE, USABLE, decode_node
from engine.disk import default_opener
from engine.errors import DatabaseClosedError, ForkedError, NotADatabaseError, OptionError
from engine.metapage import decode_meta, encode_meta

_POOL = ("pool_pages", "pool_bytes", "pool_cap_bytes", "pool_hits", "pool_misses", "pool_hit_rate",
         "pool_prefetched", "evictions")


def _two_trees(path, sync="off", **kw):
    db = engine.open(path, sync=sync, direct_io=False, **kw)
    a, b = db.tree("a"), db.tree("b")
    for i in range(3):
        a[b"k%d" % i] = b"v"
    for i in range(4):
        b[b"k%d" % i] = b"v"
    return db


def test_a_writers_stats_field_by_field(tmp_path):
    path = str(tmp_path / "s.db")
    db = _two_trees(path, sync="normal")
    db.commit()
    s = db.stats()
    own = {k: v for k, v in s.items() if k not in _POOL}
    assert set(s) - set(own) == set(_POOL)
    assert own == {
        "page_size": PAGE_SIZE, "pages_allocated": 3, "pages_free": 0, "direct_io": False,
        "trees": 2, "keys": 7, "sync": "normal", "read_only": False,
        "log_bytes": db._wal.end, "log_syncs": db._wal.syncs, "commits": 9, "checkpoints": 0,
        "recovered_commits": 0, "checkpoints_deferred": 0, "rebuilds": 0,
        "file_bytes": os.path.getsize(path),
    }
    assert s["log_bytes"] > 512 and s["log_syncs"] >= 2  # the header and 9 commits; a sync per commit()
    db.drop_tree("a")
    db.checkpoint()
    s = db.stats()
    assert (s["trees"], s["keys"], s["checkpoints"], s["log_bytes"]) == (1, 4, 1, 512)
    db.close()


def test_a_readers_stats_count_the_log_it_read_and_the_commits_it_recovered(tmp_path):
    path = str(tmp_path / "r.db")
    w = _two_trees(path)
    r = engine.open(path, read_only=True, direct_io=False)
    s = r.stats()
    assert (s["read_only"], s["sync"], s["trees"], s["keys"]) == (True, "full", 2, 7)
    assert s["log_bytes"] == w.stats()["log_bytes"] > 512  # what it followed, not its own
    assert (s["recovered_commits"], s["commits"], s["rebuilds"]) == (9, 0, 0)
    w.checkpoint()
    s = r.stats()
    assert (s["log_bytes"], s["rebuilds"], s["recovered_commits"]) == (512, 1, 0)
    r.close()
    w.close()


def test_stats_direct_io_is_a_bool(tmp_path):
    with engine.open(tmp_path / "d.db", direct_io=False) as db:
        assert db.stats()["direct_io"] is False


def _page(path, pid):
    with open(path, "rb") as f:
        f.seek(pid * PAGE_SIZE)
        return f.read(PAGE_SIZE)


def test_tree_levels_describe_the_pages_on_disk_and_stop_at_depth(tmp_path):
    path = str(tmp_path / "l.db")
    with engine.open(path, sync="off", direct_io=False) as db:
        t = db.tree("t")
        for i in range(400):
            t[b"key%05d" % i] = b"x" * 30
        db.checkpoint()
        levels = db.tree_levels("t")
        assert len(levels) == 2 and len(levels[1]) >= 3
        root = decode_meta(_page(path, 0)).trees["t"][0]
        assert levels[0][0].page_id == root
        for row in levels:
            for info in row:
                node = decode_node(_page(path, info.page_id), info.page_id)
                assert info.kind == ("leaf" if node.leaf else "internal")
                assert info.keys == len(node.keys)
                assert info.fill == round(node.size / USABLE, 3)
                assert (info.first_key, info.last_key) == (node.keys[0], node.keys[-1])
                assert info.children == ([] if node.leaf else list(node.children))
        assert [i.page_id for i in levels[1]] == levels[0][0].children
        assert levels[1][0].first_key == b"key00000" and levels[1][-1].last_key == b"key00399"
        assert db.tree_levels("t", 1) == levels[:1]
        assert db.tree_levels("t", depth=2) == levels
        db.tree("e")
        assert db.tree_levels("e") == []  # no page before its first put
        with pytest.raises(KeyError) as err:
            db.tree_levels("missing")
        assert err.value.args == ("missing",)


def test_tree_levels_of_an_emptied_root_leaf(tmp_path):
    with engine.open(tmp_path / "e.db", sync="off") as db:
        t = db.tree("t")
        t[b"k"] = b"v"
        del t[b"k"]
        levels = db.tree_levels("t")
        if levels:  # the root leaf stays, empty
            (info,) = levels[0]
            assert (info.keys, info.first_key, info.last_key, info.kind) == (0, None, None, "leaf")


def test_tree_stats_give_each_trees_keys_and_height(tmp_path):
    with engine.open(tmp_path / "t.db", sync="off") as db:
        a = db.tree("a")
        for i in range(400):
            a[b"key%05d" % i] = b"x" * 30
        db.tree("b")[b"k"] = b"v"
        db.tree("c")
        assert db.tree_stats() == {"a": {"keys": 400, "height": 2}, "b": {"keys": 1, "height": 1},
                                   "c": {"keys": 0, "height": 0}}
        assert list(db.tree_stats()) == ["a", "b", "c"]


def test_drop_tree_of_a_missing_tree_names_it(tmp_path):
    with engine.open(tmp_path / "m.db", sync="off") as db:
        with pytest.raises(KeyError) as err:
            db.drop_tree("nope")
        assert err.value.args == ("nope",)
        with pytest.raises(KeyError) as err:
            db.tree("nope", create=False)
        assert err.value.args == ("nope",)


def test_close_stops_a_scan_inside_its_current_chunk(tmp_path):
    db = engine.open(tmp_path / "c.db", sync="off")
    with db.batch() as b:  # one commit: the scan starts at the handle's version 1
        for i in range(10):
            b.put("t", b"k%d" % i, b"v")
    it = iter(db.tree("t"))
    assert next(it) == b"k0"
    db.close()  # the nine keys left are in the scan's chunk already
    with pytest.raises(DatabaseClosedError):
        next(it)


class _CountingFile:
    """A file of the database's opener that counts its syncs."""

    def __init__(self, inner, counts, name):
        self._inner, self._counts, self._name = inner, counts, name

    def sync(self):
        self._counts[self._name] = self._counts.get(self._name, 0) + 1
        self._inner.sync()

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def _counting_opener(counts):
    base = default_opener(False)

    def opener(p, create):
        return _CountingFile(base(p, create), counts, "wal" if p.endswith("-wal") else "data")

    return opener


def test_close_syncs_the_log_only_when_readers_defer_its_checkpoint(tmp_path):
    path = str(tmp_path / "c.db")
    counts: dict[str, int] = {}
    db = engine.open(path, sync="off", opener=_counting_opener(counts))
    db.tree("t")[b"k"] = b"v"
    before = dict(counts)
    db.close()  # the checkpoint syncs the data file, and the log at its end and as it resets it
    assert counts["data"] == before["data"] + 1 and counts["wal"] == before["wal"] + 2

    counts.clear()
    db = engine.open(path, sync="off", opener=_counting_opener(counts))
    db.tree("t")[b"j"] = b"w"
    r = engine.open(path, read_only=True)
    it = iter(r.tree("t"))
    next(it)  # the reader's snapshot: the checkpoint on close is deferred
    before = dict(counts)
    db.close()
    assert counts["data"] == before["data"] and counts["wal"] == before["wal"] + 1  # the log made durable
    assert db.checkpoints_deferred == 1
    list(it)
    r.close()
    with engine.open(path) as db:
        assert dict(db.tree("t").items()) == {b"j": b"w", b"k": b"v"}


def test_a_refused_open_leaves_no_readers_file_and_an_existing_one_stays(tmp_path):
    path = tmp_path / "g.db"
    path.write_bytes(b"not a database" * 1000)
    with pytest.raises(NotADatabaseError):
        engine.open(path)
    assert sorted(os.listdir(tmp_path)) == ["g.db"]
    (tmp_path / "g.db-readers").write_bytes(b"")  # someone else's: left alone
    with pytest.raises(NotADatabaseError):
        engine.open(path)
    assert sorted(os.listdir(tmp_path)) == ["g.db", "g.db-readers"]


def _in_child(check) -> int:
    """Run `check()` in a fork()ed child; its exit code (0: passed; 3: hung)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(20)
            check()
            code = 0
        except AssertionError:
            code = 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_forked_childs_handle_raises_forked_error_and_leaves_the_parents_alone(tmp_path):
    path = str(tmp_path / "f.db")
    db = engine.open(path, sync="off")
    with db.batch() as b:  # one commit: the scan starts at the handle's version 1
        for i in range(10):
            b.put("t", b"k%d" % i, b"v")
    t = db.tree("t")
    it = iter(t)
    next(it)
    other = engine.open(str(tmp_path / "o.db"), sync="off")

    def child():
        assert db.closed and other.closed
        for call in (lambda: next(it), db.close, lambda: db.tree("t"), other.close):
            try:
                call()
            except ForkedError as exc:
                assert str(exc) == (f"{db.path}: opened in process {os.getppid()} before a fork(); "
                                    f"open the database again in this process") or other.path in str(exc)
            else:
                raise AssertionError(f"{call} did not raise")

    assert _in_child(child) == 0
    assert list(it) == [b"k%d" % i for i in range(1, 10)]  # the parent's scan goes on
    t[b"after"] = b"fork"
    db.close()
    other.close()


def test_a_forked_child_does_not_wait_for_a_latch_a_parent_thread_held(tmp_path):
    path = str(tmp_path / "l.db")
    db = engine.open(path, sync="off")
    t = db.tree("t")
    t[b"k"] = b"v"
    held, done = threading.Event(), threading.Event()

    def holder():
        db._latch.acquire_write()
        held.set()
        done.wait()
        db._latch.release_write()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()

    def child():
        try:
            t.get(b"k")
        except ForkedError:
            return
        raise AssertionError("no ForkedError")

    try:
        assert _in_child(child) == 0
    finally:
        done.set()
        thread.join()
    db.close()


def test_a_writer_killed_with_a_forked_child_alive_leaves_the_database_unlocked(tmp_path):
    path = str(tmp_path / "k.db")
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    writer = os.fork()
    if writer == 0:  # a writer that forks a child, then dies without closing
        code = 1
        try:
            db = engine.open(path, sync="off")
            db.tree("t")[b"k"] = b"v"
            if os.fork() == 0:  # the child outlives the writer, holding its copies of the fds
                os.write(ready_w, b"r")  # the at-fork hook has run
                os.read(go_r, 1)
                os._exit(0)
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.waitstatus_to_exitcode(os.waitpid(writer, 0)[1]) == 0
        assert os.read(ready_r, 1) == b"r"
        again = engine.open(path, sync="off", timeout=0)  # the child let its copy of the lock go
        assert again.tree("t")[b"k"] == b"v"
        again.close()
    finally:
        os.write(go_w, b"g" * 2)


def _open_fds_on(*paths):
    real = {os.path.realpath(p) for p in paths}
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in real:
            out.append(target)
    return sorted(out)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd to list descriptors")
def test_close_lets_go_of_every_file_and_the_pools_memory(tmp_path):
    path = str(tmp_path / "x.db")
    files = (path, path + "-wal", path + "-readers")
    db = engine.open(path, sync="off")
    db.tree("t")[b"k"] = b"v"
    assert len(_open_fds_on(*files)) >= 3  # the data file (and its lock), the log, the readers lock
    pool = db._pool
    db.close()
    assert _open_fds_on(*files) == []
    assert pool._mem.closed  # the frames' memory is unmapped now, not when the handle is collected


class _Wrapped:
    """A file of the database's opener: forwards everything, `direct` as told
    and `close` failing when told."""

    def __init__(self, inner, direct=None, close_error=None):
        self._inner, self._direct, self._close_error = inner, direct, close_error

    @property
    def direct(self):
        return self._inner.direct if self._direct is None else self._direct

    def close(self):
        self._inner.close()
        if self._close_error is not None:
            raise self._close_error

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def test_stats_direct_io_says_what_the_data_file_does(tmp_path):
    base = default_opener(False)

    def opener(p, create):
        return _Wrapped(base(p, create), direct=not p.endswith("-wal"))

    with engine.open(tmp_path / "d.db", opener=opener) as db:
        assert db.stats()["direct_io"] is True


def test_a_file_that_fails_to_close_is_logged_and_the_rest_still_closed(tmp_path):
    from loguru import logger

    from engine import log

    path = str(tmp_path / "f.db")
    base = default_opener(False)

    def opener(p, create):
        return _Wrapped(base(p, create), close_error=OSError(5, "boom") if p == path else None)

    records: list[str] = []
    log.enable()
    sink = logger.add(records.append, format="{name}: {message}")
    try:
        db = engine.open(path, sync="off", opener=opener)
        db.tree("t")[b"k"] = b"v"
        db.close()
    finally:
        logger.remove(sink)
        log.disable()
    assert [r.strip() for r in records] == ["engine.db: close: [Errno 5] boom"]
    assert db.closed
    with engine.open(path, timeout=0) as again:  # the lock was released after the failed close
        assert again.tree("t")[b"k"] == b"v"


def test_tree_defaults_to_default_and_hands_out_one_handle_per_name(tmp_path):
    with engine.open(tmp_path / "h.db", sync="off") as db:
        t = db.tree()
        assert db.trees() == ["default"] and t.name == "default"
        assert db.tree("default") is t and db.tree("x") is db.tree("x") and db.tree("x") is not t


def test_read_only_refusals_name_the_file(tmp_path):
    path = str(tmp_path / "ro.db")
    engine.open(path).close()
    with engine.open(path, read_only=True) as db:
        with pytest.raises(engine.ReadOnlyError) as err:
            db.drop_tree("t")
        assert str(err.value) == f"{path}: opened read-only"


def test_a_strict_check_names_the_first_five_problems(tmp_path):
    path = str(tmp_path / "s.db")
    names = [f"t{i}" for i in range(7)]
    with engine.open(path, sync="off") as db:
        for n in names:
            db.tree(n)[b"k"] = b"v"
    with open(path, "r+b") as f:  # every tree's count off by one: a problem per tree
        meta = decode_meta(f.read(PAGE_SIZE))
        for n in names:
            root, count = meta.trees[n]
            meta.trees[n] = (root, count + 1)
        page = bytearray(PAGE_SIZE)
        encode_meta(meta, page)
        f.seek(0)
        f.write(page)
    with engine.open(path, create=False, sync="off") as db:
        problems = db.check().problems
        assert len(problems) >= 7
        with pytest.raises(engine.CorruptionError) as err:
            db.check(strict=True)
        assert str(err.value) == "; ".join(problems[:5])


def test_backup_and_compact_of_the_handle(tmp_path):
    path = str(tmp_path / "b.db")
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for i in range(2000):
            t[b"k%05d" % i] = b"v" * 50
        for i in range(1900):
            del t[b"k%05d" % i]
        db.backup(tmp_path / "copy.db")
        before = db.stats()["pages_allocated"]
        result = db.compact()
        assert result == {"pages_before": before, "pages_after": db.stats()["pages_allocated"]}
        assert result["pages_after"] < before
    with engine.open(tmp_path / "copy.db") as copy:
        assert len(copy.tree("t")) == 100


def test_database_with_every_option_left_out(tmp_path):
    path = str(tmp_path / "new.db")
    with engine.Database(path) as db:  # creates the file, writable, full sync, auto direct I/O
        db.tree("t")[b"k"] = b"v"
        assert (db.read_only, db.sync_mode, db.timeout) == (False, "full", 5.0)
        assert db.checkpoint_bytes == CHECKPOINT_BYTES and db.stats()["sync"] == "full"
    assert os.path.getsize(path) > 0
    with engine.open(path) as db:
        assert db.timeout == 5.0


@pytest.mark.parametrize("options, message", [
    ({"sync": "sometimes"}, "sync must be one of ('full', 'normal', 'off'), not 'sometimes'"),
    ({"direct_io": "yes"}, "direct_io must be 'auto', True or False, not 'yes'"),
    ({"timeout": -1}, "timeout must be seconds >= 0, not -1"),
    ({"timeout": True}, "timeout must be seconds >= 0, not True"),
    ({"timeout": "5"}, "timeout must be seconds >= 0, not '5'"),
    ({"checkpoint_bytes": MIN_CHECKPOINT_BYTES - 1},
     f"checkpoint_bytes must be an int >= {MIN_CHECKPOINT_BYTES}, not {MIN_CHECKPOINT_BYTES - 1}"),
])
def test_bad_options_are_refused_with_their_reason(tmp_path, options, message):
    with pytest.raises(OptionError) as err:
        engine.open(tmp_path / "o.db", **options)
    assert str(err.value) == message
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options", [{"direct_io": True}, {"direct_io": False}, {"timeout": 0},
                                     {"checkpoint_bytes": MIN_CHECKPOINT_BYTES}])
def test_the_edges_of_the_options_are_taken(tmp_path, options):
    try:
        db = engine.open(tmp_path / "o.db", sync="off", **options)
    except OSError:  # direct_io=True on a file system without O_DIRECT: refused by the OS, not the options
        assert options.get("direct_io") is True
        return
    db.tree("t")[b"k"] = b"v"
    db.close()


def test_a_closed_handle_says_so(tmp_path):
    path = str(tmp_path / "c.db")
    db = engine.open(path, sync="off")
    db.close()
    with pytest.raises(DatabaseClosedError) as err:
        db.tree("t")
    assert str(err.value) == f"{path}: database is closed" and type(err.value) is DatabaseClosedError


def test_a_refused_open_of_an_openers_own_file_leaves_a_readers_file_of_that_name(tmp_path):
    from faults.crash import CrashDisk

    path = str(tmp_path / "v.db")  # not on disk: the opener's file
    disk = CrashDisk()
    f = disk.opener(path, True)
    f.write(0, b"not a database" * 400)
    f.close()
    (tmp_path / "v.db-readers").write_bytes(b"")  # a real file that is not the open's to remove
    with pytest.raises(NotADatabaseError):
        engine.open(path, opener=disk.opener)
    assert os.path.exists(path + "-readers")


def test_a_failed_log_sync_poisons_the_handle_with_its_text_and_no_checkpoint_error_starts_set(tmp_path):
    from faults.io import FaultPlan

    path = str(tmp_path / "poison.db")
    plan = FaultPlan(seed=1)
    db = engine.open(path, opener=plan.opener())
    assert db.last_checkpoint_error is None
    db.tree("t")[b"a"] = b"1"
    plan.fail("sync", 1, file="-wal")
    with pytest.raises(engine.NeedsRecoveryError):
        db.tree("t")[b"b"] = b"2"
    for call in (lambda: db.tree("t").get(b"a"), lambda: db.tree("t").put(b"c", b"3"), db.stats):
        with pytest.raises(engine.NeedsRecoveryError) as raised:
            call()
        assert str(raised.value).endswith(f"{path}: a sync failed; close and reopen the database to recover")
    db.close()
    with engine.open(path) as again:
        assert again.tree("t")[b"a"] == b"1"

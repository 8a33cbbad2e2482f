"""The public API of docs/api.md, line by line."""

from __future__ import annotations

import os

import pytest

import engine


def test_put_get_delete_and_mapping_protocol(open_db):
    db = open_db()
    t = db.tree("default")
    t.put(b"a", b"1")
    t[b"b"] = b"2"
    assert t.get(b"a") == b"1" and t[b"b"] == b"2"
    assert t.get(b"zz") is None and t.get(b"zz", b"d") == b"d"
    assert b"a" in t and b"zz" not in t
    assert len(t) == 2
    assert t.delete(b"a") is True and t.delete(b"a") is False
    with pytest.raises(KeyError):
        t[b"a"]
    with pytest.raises(KeyError):
        del t[b"a"]
    del t[b"b"]
    assert len(t) == 0 and t.first() is None and t.last() is None


def test_overwrite_keeps_count(open_db):
    t = open_db().tree("default")
    t[b"k"] = b"one"
    t[b"k"] = b"two"
    assert len(t) == 1 and t[b"k"] == b"two"


def test_bytes_like_keys_are_copied_and_str_rejected(open_db):
    t = open_db().tree("default")
    k = bytearray(b"key")
    t[k] = memoryview(b"value")
    k[0] = ord("X")
    assert t[b"key"] == b"value"
    for bad in ("key", 1, None):
        with pytest.raises(TypeError):
            t.put(bad, b"v")
    with pytest.raises(TypeError):
        t.put(b"k", "str value")
    with pytest.raises(TypeError):
        t.get("key")
    assert len(t) == 1


def test_key_size_limits(open_db):
    t = open_db().tree("default")
    with pytest.raises(engine.KeyTooLargeError):
        t.put(b"", b"v")
    with pytest.raises(ValueError):
        t.put(b"x" * (engine.MAX_KEY_SIZE + 1), b"v")
    big = b"k" * engine.MAX_KEY_SIZE
    t.put(big, b"v" * 5000)
    assert t[big] == b"v" * 5000
    assert engine.MAX_KEY_SIZE >= 1024
    assert len(t) == 1


def test_values_from_empty_to_sixteen_mebibytes(open_db, db_path):
    db = open_db()
    t = db.tree("default")
    t[b"empty"] = b""
    huge = os.urandom(16 * 1024 * 1024)
    t[b"huge"] = huge
    assert t[b"empty"] == b"" and b"empty" in t
    db.close()
    db = open_db(pool_pages=64)
    t = db.tree("default")
    assert t[b"huge"] == huge and t[b"empty"] == b""
    before = db.stats()["pages_free"]
    t[b"huge"] = b"small now"
    assert db.stats()["pages_free"] >= before + 16 * 1024 * 1024 // 4096 - 1
    assert db.check().ok


def test_scan_bounds_reverse_prefix(open_db):
    t = open_db().tree("default")
    keys = [b"a", b"ab", b"abc", b"abd", b"b", b"ba", b"c\xff", b"c\xff\xff", b"d"]
    for k in keys:
        t[k] = k.upper()
    assert [k for k, _ in t.scan()] == keys
    assert [k for k, _ in t.scan(b"ab", b"b")] == [b"ab", b"abc", b"abd"]
    assert [k for k, _ in t.scan(b"ab", b"b", reverse=True)] == [b"abd", b"abc", b"ab"]
    assert [k for k, _ in t.scan(prefix=b"ab")] == [b"ab", b"abc", b"abd"]
    assert [k for k, _ in t.scan(prefix=b"c\xff")] == [b"c\xff", b"c\xff\xff"]
    assert [k for k, _ in t.scan(prefix=b"ab", start=b"abc", reverse=True)] == [b"abd", b"abc"]
    assert list(t.scan(b"x", b"a")) == []
    assert t.first() == (b"a", b"A") and t.last() == (b"d", b"D")
    assert list(t.keys()) == keys and list(t.values()) == [k.upper() for k in keys]
    assert list(t.items())[0] == (b"a", b"A")
    with pytest.raises(TypeError):
        list(t.scan(start="a"))


def test_iteration_survives_mutation(open_db):
    t = open_db(pool_pages=16).tree("default")
    for i in range(2000):
        t[b"%05d" % i] = b"v" * 50
    seen = []
    for k in t:
        seen.append(k)
        del t[k]  # delete what was returned, merging leaves under the iterator
        if not k.endswith(b"-new") and int(k) % 3 == 0:
            t[b"%05d" % (int(k) + 1) + b"-new"] = b"n"  # insert just ahead
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert b"00001-new" in seen


def test_trees_create_list_drop(open_db):
    db = open_db()
    a, b = db.tree("a"), db.tree("b")
    for i in range(500):
        a[b"%04d" % i] = b"x" * 300
    b[b"k"] = b"v"
    assert db.trees() == ["a", "b"]
    with pytest.raises(KeyError):
        db.tree("missing", create=False)
    allocated = db.stats()["pages_allocated"]
    db.drop_tree("a")
    assert db.trees() == ["b"]
    report = db.check()
    assert report.ok and report.pages_free >= allocated - 3
    with pytest.raises(KeyError):
        db.drop_tree("a")
    assert db.tree("a").get(b"0001") is None
    with pytest.raises(TypeError):
        db.tree(1)
    with pytest.raises(engine.TreeLimitError):
        db.tree("")


def test_batch_is_all_or_nothing(open_db):
    db = open_db()
    t = db.tree("default")
    t[b"keep"] = b"1"
    with db.batch() as b:
        b.put("default", b"x", b"1")
        b.put("other", b"y", b"2")
        b.delete("default", b"keep")
    assert t.get(b"x") == b"1" and db.tree("other")[b"y"] == b"2" and b"keep" not in t
    with pytest.raises(RuntimeError):
        with db.batch() as b:
            b.put("default", b"z", b"1")
            raise RuntimeError("abort")
    assert b"z" not in t
    with pytest.raises(TypeError):
        with db.batch() as b:
            b.put("default", "str", b"1")
    assert db.check().ok


def test_large_batch_exceeding_the_pool(open_db):
    db = open_db(pool_pages=16)
    with db.batch() as b:
        for i in range(5000):
            b.put("default", b"%06d" % i, b"v" * 100)
    t = db.tree("default")
    assert len(t) == 5000 and t[b"004999"] == b"v" * 100


def test_persistence_across_reopen_with_other_pool_size(open_db, db_path):
    db = open_db(pool_pages=16)
    t = db.tree("t")
    for i in range(3000):
        t[b"%05d" % i] = b"%d" % i
    db.close()
    db = open_db(pool_pages=1024)
    assert dict(db.tree("t").items()) == {b"%05d" % i: b"%d" % i for i in range(3000)}
    db.close()
    db = open_db(pool_pages=17, sync="full")
    assert len(db.tree("t")) == 3000


def test_close_is_idempotent_and_later_calls_raise(open_db):
    db = open_db()
    t = db.tree("default")
    t[b"k"] = b"v"
    db.close()
    db.close()
    for call in (lambda: t[b"k"], lambda: t.put(b"a", b"b"), lambda: len(t), db.trees, db.stats,
                 db.check, db.commit, lambda: db.tree("x"), lambda: list(t.scan())):
        with pytest.raises(engine.DatabaseClosedError):
            call()


def test_context_manager_closes(db_path):
    with engine.open(db_path, sync="off") as db:
        db.tree("default")[b"k"] = b"v"
    assert db.closed
    with engine.open(db_path, sync="off") as db:
        assert db.tree("default")[b"k"] == b"v"


def test_read_only(open_db, db_path):
    db = open_db()
    db.tree("default")[b"k"] = b"v"
    db.close()
    ro = open_db(read_only=True)
    t = ro.tree("default")
    assert t[b"k"] == b"v"
    for call in (lambda: t.put(b"a", b"b"), lambda: t.delete(b"k"), lambda: ro.tree("new"),
                 lambda: ro.drop_tree("default"), ro.batch):
        with pytest.raises(engine.ReadOnlyError):
            call()
    assert t[b"k"] == b"v"


def test_missing_file_without_create(tmp_path):
    with pytest.raises(FileNotFoundError):
        engine.open(str(tmp_path / "nope.db"), create=False)
    assert not os.path.exists(tmp_path / "nope.db")
    with pytest.raises(FileNotFoundError):
        engine.open(str(tmp_path / "nope.db"), read_only=True)


def test_bad_options(db_path):
    for bad in ({"pool_pages": 8}, {"pool_size": "lots"}, {"pool_size": 1, "pool_pages": 16},
                {"sync": "sometimes"}, {"direct_io": "maybe"}, {"timeout": -1}):
        with pytest.raises(engine.OptionError):
            engine.open(db_path, **bad)
    assert os.listdir(os.path.dirname(db_path)) == []
    assert issubclass(engine.OptionError, ValueError)


@pytest.mark.parametrize("bad", [0, -1, 16 * 1024 - 1, 1.0e6, "64MiB", None, True])
def test_bad_checkpoint_bytes_are_refused_with_nothing_touched(db_path, bad):
    with pytest.raises(engine.OptionError, match="checkpoint_bytes"):
        engine.open(db_path, checkpoint_bytes=bad)
    assert os.listdir(os.path.dirname(db_path)) == []  # nothing created
    with engine.open(db_path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    before = {name: open(os.path.join(os.path.dirname(db_path), name), "rb").read()
              for name in os.listdir(os.path.dirname(db_path))}
    with pytest.raises(engine.OptionError, match="checkpoint_bytes"):
        engine.open(db_path, checkpoint_bytes=bad)
    after = {name: open(os.path.join(os.path.dirname(db_path), name), "rb").read()
             for name in os.listdir(os.path.dirname(db_path))}
    assert after == before  # an existing database is not opened, recovered or locked
    with engine.open(db_path, timeout=0) as db:
        assert db.tree("t")[b"k"] == b"v"


def test_checkpoint_bytes_sets_when_commits_checkpoint(open_db, tmp_path):
    """A commit that leaves the log longer than `checkpoint_bytes` checkpoints
    (the log is emptied), and only such a commit; with the default, the same
    puts never do."""
    limit = 64 * 1024
    db = open_db(checkpoint_bytes=limit)
    assert db.checkpoint_bytes == limit
    t = db.tree("t")
    grew, crossed = [], []  # a put's log growth; the log before each put that checkpointed
    for i in range(1500):
        log, cps = db.stats()["log_bytes"], db.checkpoints
        t[b"k%05d" % i] = b"v" * 100
        if db.checkpoints == cps:
            assert db.stats()["log_bytes"] <= limit
            grew.append(db.stats()["log_bytes"] - log)
        else:
            assert db.checkpoints == cps + 1 and db.stats()["log_bytes"] == 512  # emptied: its header only
            crossed.append(log)
    assert len(crossed) >= 2
    assert all(limit - max(grew) < log <= limit for log in crossed)  # at the first commit past it
    other = open_db(str(tmp_path / "default.db"))
    for i in range(1500):
        other.tree("t")[b"k%05d" % i] = b"v" * 100
    assert other.checkpoints == 0 and other.stats()["log_bytes"] > limit


def test_second_writer_is_locked_out_but_readers_are_not(open_db, db_path):
    db = open_db()
    with pytest.raises(engine.DatabaseLockedError, match="writer"):
        engine.open(db_path, timeout=0)
    with engine.open(db_path, read_only=True) as ro:  # a reader beside the writer, of a fresh database
        assert ro.trees() == []
        db.tree("t").put(b"k", b"v")
        assert ro.tree("t").get(b"k") == b"v"


def test_garbage_file_is_not_a_database_and_untouched(tmp_path):
    p = tmp_path / "garbage.db"
    content = os.urandom(10000)
    p.write_bytes(content)
    with pytest.raises(engine.NotADatabaseError):
        engine.open(str(p))
    assert p.read_bytes() == content
    assert not os.path.exists(str(p) + "-wal")
    short = tmp_path / "short.db"
    short.write_bytes(b"DRAGONDB")
    with pytest.raises(engine.NotADatabaseError):
        engine.open(str(short))


def test_flipped_bit_in_a_data_page_is_corruption_not_data(open_db, db_path):
    db = open_db(pool_pages=16)
    t = db.tree("default")
    for i in range(2000):
        t[b"%05d" % i] = b"value-%05d" % i
    db.close()
    with open(db_path, "r+b") as f:
        f.seek(3 * 4096 + 2000)
        byte = f.read(1)
        f.seek(3 * 4096 + 2000)
        f.write(bytes([byte[0] ^ 0x10]))
    db = engine.open(db_path, pool_pages=16, sync="off")
    t = db.tree("default")
    wrong = 0
    errors = 0
    for i in range(2000):
        try:
            if t.get(b"%05d" % i) != b"value-%05d" % i:
                wrong += 1
        except engine.CorruptionError:
            errors += 1
    assert wrong == 0 and errors > 0
    assert not db.check().ok
    db.close()


def test_stats_keys(open_db):
    db = open_db()
    db.tree("default")[b"k"] = b"v"
    s = db.stats()
    for key in ("page_size", "pages_allocated", "pages_free", "pool_hits", "pool_misses",
                "evictions", "direct_io", "trees"):
        assert key in s
    assert s["page_size"] == 4096 and isinstance(s["direct_io"], bool) and s["trees"] == 1


def test_check_report_fields_and_strict(open_db):
    db = open_db()
    db.tree("default")[b"k"] = b"v"
    r = db.check(strict=True)
    assert r.ok and r.problems == [] and r.pages_leaked == 0
    assert r.pages_allocated == 1 + r.pages_reachable + r.pages_free


def test_error_hierarchy():
    assert issubclass(engine.StorageIOError, OSError)
    assert issubclass(engine.NeedsRecoveryError, engine.StorageIOError)
    assert issubclass(engine.KeyTooLargeError, ValueError)
    for name in ("StorageIOError", "CorruptionError", "NotADatabaseError", "DatabaseLockedError",
                 "DatabaseClosedError", "ReadOnlyError", "KeyTooLargeError", "NeedsRecoveryError"):
        assert issubclass(getattr(engine, name), engine.DragonDBError)
    with pytest.raises(TypeError):
        raise engine.DragonDBError("abstract")


@pytest.mark.parametrize("fault", ["short", "torn"])
def test_a_creation_cut_short_is_created_again(tmp_path, fault):
    """Found by the campaign: the first write of a new database failed part
    way, and every later open refused the file as "not a database"."""
    from faults.io import FaultPlan

    path = str(tmp_path / "new.db")
    plan = FaultPlan(seed=3)
    if fault == "short":
        plan.short("write", 1, keep=1453, file=".db")
    else:
        plan.torn(1, pattern="any", file=".db")  # seed 3: sectors 0, 2 and 5-6 land
    with pytest.raises(engine.StorageIOError):
        engine.open(path, opener=plan.opener())
    assert plan.injected and 0 < os.path.getsize(path) <= 4096
    with engine.open(path) as db:
        db.tree()[b"k"] = b"v"
        assert db.check().ok
    with engine.open(path) as db:
        assert db.tree()[b"k"] == b"v"


def test_files_that_merely_look_like_a_cut_creation_are_refused(tmp_path):
    from engine.recovery import creation_page as _creation_page

    fresh = _creation_page()
    for name, content in [("zeros", bytes(4096)), ("mixed", fresh[:512] + os.urandom(512)),
                          ("tail", fresh[:1024] + os.urandom(100))]:
        p = tmp_path / f"{name}.db"
        p.write_bytes(content)
        with pytest.raises(engine.NotADatabaseError):
            engine.open(str(p))
        assert p.read_bytes() == content and not os.path.exists(str(p) + "-wal")


def test_a_short_read_of_the_metadata_page_is_an_io_error(tmp_path):
    """Found by the campaign: a short read of page 0 made a real database look
    like a foreign file (NotADatabaseError) instead of a failed read."""
    from faults.io import FaultPlan

    path = str(tmp_path / "short.db")
    with engine.open(path) as db:
        db.tree()[b"k"] = b"v"
    plan = FaultPlan(seed=1)
    plan.short("read", 1, keep=1920, file=".db")
    with pytest.raises(engine.StorageIOError):
        engine.open(path, opener=plan.opener())
    assert plan.injected
    with engine.open(path) as db:
        assert db.tree()[b"k"] == b"v"

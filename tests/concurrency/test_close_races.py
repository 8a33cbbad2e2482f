"""Calls racing `close()` (finding 7): any call that overlaps or follows
`close()` either completes or raises `DatabaseClosedError`, nothing else
(no `AttributeError` from a released pool, no `StorageIOError` from a
closed file), and an iterator raises `DatabaseClosedError` at its next item
after the close."""

from __future__ import annotations

import sys
import threading

import pytest

import engine
import engine.dbm

ROUNDS = 20
THREADS_PER_ROUND = 4
SYNCED = {"put", "put_split", "delete", "batch", "commit", "checkpoint", "close"}  # also run with sync="full"


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _batch(db) -> None:
    with db.batch() as b:
        b.put("t", b"batch", b"v")
        b.delete("t", b"k00001")


def _iterate(db) -> None:
    for _ in db.tree("t").scan():
        pass


CALLS = {
    "put": lambda db, t: t.put(b"k%05d" % 7, b"v" * 50),
    "put_split": lambda db, t: t.put(b"new" + threading.get_ident().to_bytes(8, "big"), b"w" * 900),
    "get": lambda db, t: t.get(b"k00003"),
    "getitem_miss": lambda db, t: t.get(b"missing"),
    "delete": lambda db, t: t.delete(b"k00009"),
    "contains": lambda db, t: b"k00002" in t,
    "len": lambda db, t: len(t),
    "first_last": lambda db, t: (t.first(), t.last()),
    "scan": lambda db, t: list(t.scan(b"k00010", b"k00100")),
    "iterate": lambda db, t: _iterate(db),
    "items": lambda db, t: len(list(t.items())),
    "values": lambda db, t: len(list(t.values())),
    "tree": lambda db, t: db.tree("t"),
    "trees": lambda db, t: db.trees(),
    "new_tree": lambda db, t: db.tree(f"x{threading.get_ident()}"),
    "batch": lambda db, t: _batch(db),
    "commit": lambda db, t: db.commit(),
    "checkpoint": lambda db, t: db.checkpoint(),
    "check": lambda db, t: db.check(),
    "stats": lambda db, t: db.stats(),
    "tree_levels": lambda db, t: db.tree_levels("t"),
    "close": lambda db, t: db.close(),
}


def _hammer(call, db, tree, started: threading.Event, wrong: list) -> None:
    started.set()
    for _ in range(100_000):
        try:
            call(db, tree)
        except engine.DatabaseClosedError:
            return
        except Exception as exc:  # anything but "closed" is the bug under test
            wrong.append(exc)
            return
        if db.closed and call is CALLS["close"]:
            return


def _fill(db) -> engine.Tree:
    # small, so close() is quick and a round's race windows are many
    with db.batch() as b:
        for i in range(120):
            b.put("t", b"k%05d" % i, b"v" * 50)
    return db.tree("t")


@pytest.mark.parametrize(("name", "sync"), [(n, "off") for n in sorted(CALLS)]
                         + [(n, "full") for n in sorted(SYNCED)])
def test_a_call_racing_close_completes_or_raises_closed(tmp_path, fast_switching, name, sync):
    wrong: list[BaseException] = []
    for r in range(ROUNDS):
        db = engine.open(str(tmp_path / f"r{r}.db"), pool_pages=16, sync=sync)
        tree = _fill(db)
        started = [threading.Event() for _ in range(THREADS_PER_ROUND)]
        threads = [threading.Thread(target=_hammer, args=(CALLS[name], db, tree, s, wrong))
                   for s in started]
        for th in threads:
            th.start()
        for s in started:
            s.wait(10)
        db.close()
        for th in threads:
            th.join(30)
        assert not any(th.is_alive() for th in threads), f"{name}: a thread hung"
        assert not wrong, f"{name}: {[f'{type(e).__name__}: {e}' for e in wrong[:3]]}"
        with engine.open(str(tmp_path / f"r{r}.db"), sync=sync) as again:
            assert again.check().ok


def test_dbm_calls_racing_close(tmp_path, fast_switching):
    wrong: list[BaseException] = []

    def hammer(d, started):
        started.set()
        for i in range(100_000):
            try:
                d[b"k%d" % (i % 50)] = b"v"
                _ = d.get(b"k1"), len(d), b"k2" in d
                d.keys()
            except engine.DatabaseClosedError:
                return
            except Exception as exc:  # anything but "closed" is the bug under test
                wrong.append(exc)
                return

    for r in range(ROUNDS):
        d = engine.dbm.open(str(tmp_path / f"d{r}"), "c")
        started = [threading.Event() for _ in range(4)]
        threads = [threading.Thread(target=hammer, args=(d, s)) for s in started]
        for th in threads:
            th.start()
        for s in started:
            s.wait(10)
        d.close()
        for th in threads:
            th.join(30)
        assert not wrong, [f"{type(e).__name__}: {e}" for e in wrong[:3]]


@pytest.mark.parametrize("view", ["scan", "reverse", "iter", "items", "values"])
def test_an_iterator_raises_closed_at_its_next_item_after_close(open_db, view):
    db = open_db()
    t = db.tree("t")
    for i in range(1000):
        t.put(b"k%05d" % i, b"v")
    it = {
        "scan": lambda: t.scan(),
        "reverse": lambda: t.scan(reverse=True),
        "iter": lambda: iter(t),
        "items": lambda: iter(t.items()),
        "values": lambda: iter(t.values()),
    }[view]()
    next(it)
    db.close()
    with pytest.raises(engine.DatabaseClosedError):
        next(it)


def test_an_iterator_that_returned_its_last_item_raises_closed_too(open_db):
    db = open_db()
    t = db.tree("t")
    t.put(b"only", b"v")
    it = t.scan()
    assert next(it) == (b"only", b"v")
    db.close()
    with pytest.raises(engine.DatabaseClosedError):
        next(it)


def test_calls_after_close_raise_closed(open_db):
    db = open_db()
    t = db.tree("t")
    t.put(b"k", b"v")
    db.close()
    for name, call in CALLS.items():
        if name == "close":
            db.close()  # idempotent
            continue
        with pytest.raises(engine.DatabaseClosedError):
            call(db, t)
    with pytest.raises(engine.DatabaseClosedError):
        with db:
            pass


def test_a_close_is_not_starved_by_a_looping_writer(open_db):
    """A thread looping on puts took the free latch ahead of a queued
    close() round after round (~1.5 s per close). Counted, not timed: the
    writer counts the puts it completes while close() is queued on the
    latch (a read-only peek at the queue); it may finish the one it is in."""
    db = open_db()
    t = db.tree("t")
    latch = db._latch
    state = {"ahead": 0}
    started = threading.Event()

    def writer() -> None:
        i = 0
        while True:
            try:
                t.put(b"w%07d" % (i % 5000), b"v" * 20)
            except engine.DatabaseClosedError:
                return
            i += 1
            if latch._waiting:
                state["ahead"] += 1
            if i == 2000:
                started.set()

    th = threading.Thread(target=writer)
    th.start()
    assert started.wait(30)
    db.close()
    th.join(30)
    assert not th.is_alive()
    assert state["ahead"] <= 2, f"{state['ahead']} puts went ahead of a queued close()"

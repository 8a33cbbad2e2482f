"""A handle inherited across `os.fork()` (finding 5: a child's acknowledged
writes vanished, and under sync="normal" the child's writes destroyed the
parent's log). In the child every call on an inherited handle raises
`engine.ForkedError` at once, without blocking on a latch a parent thread
held at fork time; the parent's handle, lock and files are unharmed.

Real forks: the child reports over a pipe as JSON and leaves with
`os._exit`, so no pytest machinery runs in it."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import warnings

import pytest

import engine
from engine import syncpoints

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

CHILD_TIMEOUT = 30.0


def _in_child(body) -> dict:
    """Run `body()` in a forked child and return the dict it returned (or
    {"crash": ...}). A child that does not answer in time is killed and the
    test fails: it blocked."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads alive
        pid = os.fork()
    if pid == 0:  # the child
        os.close(r)
        try:
            out = body()
        except BaseException as exc:  # reported to the parent, which fails the test
            out = {"crash": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([r], [], [], CHILD_TIMEOUT)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("the child blocked on an inherited handle")
            data = os.read(r, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


def _outcome(call) -> str:
    try:
        call()
    except engine.ForkedError as exc:
        return "ForkedError" if "open" in str(exc) and "process" in str(exc) else f"bad message: {exc}"
    except Exception as exc:  # reported by name; the test wants ForkedError
        return type(exc).__name__
    return "ok"


def _child_calls(db, tree, it, batch) -> dict:
    def with_batch():
        with db.batch() as b:
            b.put("t", b"child-batch", b"x")

    def with_db():
        with db:
            pass

    calls = {
        "put": lambda: tree.put(b"child", b"x"),
        "setitem": lambda: tree.__setitem__(b"child2", b"x"),
        "get": lambda: tree.get(b"k0001"),
        "delete": lambda: tree.delete(b"k0001"),
        "contains": lambda: b"k0001" in tree,
        "scan": lambda: list(tree.scan()),
        "iter": lambda: list(tree),
        "len": lambda: len(tree),
        "first": tree.first,
        "tree": lambda: db.tree("t"),
        "trees": db.trees,
        "drop_tree": lambda: db.drop_tree("t"),
        "batch": with_batch,
        "open_batch_put": lambda: batch.put("t", b"child-open-batch", b"x"),
        "open_batch_exit": lambda: batch.__exit__(None, None, None),
        "iterator_next": lambda: next(it),
        "commit": db.commit,
        "checkpoint": db.checkpoint,
        "check": db.check,
        "stats": db.stats,
        "with": with_db,
        "close": db.close,
    }
    out = {name: _outcome(call) for name, call in calls.items()}
    out["close_again"] = _outcome(db.close)
    refused = 0
    for i in range(200):
        try:
            tree.put(b"c%04d" % i, b"child")
        except engine.ForkedError:
            refused += 1
    out["puts_refused"] = refused
    return out


def test_every_call_in_the_child_raises_and_the_parent_is_unharmed(db_path):
    db = engine.open(db_path, sync="full")
    tree = db.tree("t")
    for i in range(300):
        tree.put(b"k%04d" % i, b"parent")
    it = tree.scan()
    next(it)
    batch = db.batch()
    batch.__enter__()
    batch.put("t", b"parent-batch", b"p")

    got = _in_child(lambda: _child_calls(db, tree, it, batch))

    assert "crash" not in got, got
    assert got.pop("puts_refused") == 200, "a child's put was accepted"
    assert {k: v for k, v in got.items() if v != "ForkedError"} == {}
    # the parent goes on with the same handle, iterator and batch
    assert next(it)[0] == b"k0001"
    batch.__exit__(None, None, None)
    for i in range(300, 400):
        tree.put(b"k%04d" % i, b"parent")
    assert db.check().ok
    db.close()
    with engine.open(db_path) as again:
        t = again.tree("t")
        assert len(t) == 401
        assert t[b"parent-batch"] == b"p" and t.get(b"child") is None and t.get(b"c0000") is None
        assert again.check().ok


def test_the_childs_close_does_not_unlock_the_parents_file(db_path):
    db = engine.open(db_path, sync="full")
    db.tree("t").put(b"k", b"v")
    got = _in_child(lambda: {"close": _outcome(db.close)})
    assert got == {"close": "ForkedError"}
    with pytest.raises(engine.DatabaseLockedError):
        engine.open(db_path)  # the parent still holds its lock
    db.tree("t").put(b"k2", b"v2")
    db.close()


def test_the_parent_can_close_and_reopen_while_the_child_lives(db_path):
    db = engine.open(db_path, sync="full")
    db.tree("t").put(b"k", b"v")
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(done_r)
        os.read(go_r, 1)  # live until the parent is done
        answer = _outcome(lambda: db.tree("t").get(b"k"))
        os.write(done_w, answer.encode())
        os._exit(0)
    os.close(go_r)
    os.close(done_w)
    try:
        db.close()
        again = engine.open(db_path, timeout=0) if _has_timeout() else engine.open(db_path)
        again.tree("t").put(b"k2", b"v2")
        again.close()
        again = engine.open(db_path)
        assert dict(again.tree("t").items()) == {b"k": b"v", b"k2": b"v2"}
        again.close()
    finally:
        os.write(go_w, b"x")
        os.close(go_w)
        ready, _, _ = select.select([done_r], [], [], CHILD_TIMEOUT)
        answer = os.read(done_r, 100).decode() if ready else "no answer"
        os.close(done_r)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert answer == "ForkedError"


def _has_timeout() -> bool:
    import inspect

    return "timeout" in inspect.signature(engine.open).parameters


def test_sync_normal_twenty_thousand_puts_on_each_side(db_path):
    db = engine.open(db_path, sync="normal", pool_pages=64)  # a small pool: the parent spills
    tree = db.tree("t")
    tree.put(b"before", b"fork")
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os.close(r)
        refused = 0
        for i in range(20_000):
            try:
                tree.put(b"child%06d" % i, b"c" * 40)
            except engine.ForkedError:
                refused += 1
            except BaseException:  # noqa: BLE001 - counted as "not refused"
                pass
        os.write(w, str(refused).encode())
        os._exit(0)
    os.close(w)
    for i in range(20_000):
        tree.put(b"parent%06d" % i, b"p" * 40)
    ready, _, _ = select.select([r], [], [], CHILD_TIMEOUT * 4)
    refused = int(os.read(r, 100) or b"-1") if ready else -1
    os.close(r)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    db.close()  # raised CorruptionError (a damaged spilled image) before the fix
    assert refused == 20_000
    with engine.open(db_path) as again:
        t = again.tree("t")
        assert len(t) == 20_001
        assert t[b"parent019999"] == b"p" * 40 and t.get(b"child000000") is None
        assert again.check().ok


def test_the_child_does_not_wait_for_a_latch_a_parent_thread_held(db_path):
    db = engine.open(db_path, sync="off", pool_pages=16)
    tree = db.tree("t")
    for i in range(3000):
        tree.put(b"k%05d" % i, b"v" * 100)
    db.close()
    db = engine.open(db_path, sync="off", pool_pages=16)
    tree = db.tree("t")
    parked, release = threading.Event(), threading.Event()
    holder: list[int] = []

    def hook(name: str) -> None:
        # the parent's reader parks on a pool miss, holding the read latch
        if name == "bufferpool.fetch.miss" and holder and threading.get_ident() == holder[0]:
            parked.set()
            release.wait(CHILD_TIMEOUT)

    def reader() -> None:
        holder.append(threading.get_ident())
        for i in range(0, 3000, 37):
            tree.get(b"k%05d" % i)
            if parked.is_set():
                return

    syncpoints.install(hook)
    try:
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        assert parked.wait(CHILD_TIMEOUT), "the reader never missed the pool"
        got = _in_child(lambda: {"put": _outcome(lambda: tree.put(b"x", b"y")),
                                 "get": _outcome(lambda: tree.get(b"k00001")),
                                 "close": _outcome(db.close)})
    finally:
        release.set()
        syncpoints.uninstall()
    t.join(CHILD_TIMEOUT)
    assert got == {"put": "ForkedError", "get": "ForkedError", "close": "ForkedError"}
    tree.put(b"x", b"y")
    db.close()

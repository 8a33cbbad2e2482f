"""Crafted files: pages and log records whose checksums hold over contents
no engine writes.

A bit flip is caught by a checksum; a crafted file is not. `run_trial(seed,
directory)` takes a small valid database, picks a page (or a log record),
sets decoded fields to extreme or inconsistent values (lengths, counts,
next pointers, child ids, key sizes), re-seals it with a valid checksum,
opens it and runs get / scan / reverse scan / len / first / last / check /
put / close under a time bound. The engine must answer with an engine error
(`CorruptionError`, `NotADatabaseError`, or `NeedsRecoveryError` after a
rollback that could not re-read a page) or with consistent results; never a
hang, an exception outside its hierarchy, or a key outside
1..MAX_KEY_SIZE. An open that refuses the files must leave them byte for
byte as they were.

The crafting is `faults.crafted_pages` (data pages, with the page formats
restated) and `faults.crafted_log` (log records, with the log's format).

Hangs are caught with SIGALRM when trials run on the main thread (a pure
Python loop is interrupted; the timer of pytest-timeout, if any, is put
back afterwards); elsewhere no deadline applies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import engine
from engine.errors import CorruptionError, NeedsRecoveryError, NotADatabaseError
from faults.crafted_log import LOG_HEADER, mutate_log
from faults.crafted_pages import mutate_page

__all__ = ["run_trial", "ALLOWED", "BUDGET"]

MAX_KEY = engine.MAX_KEY_SIZE
ALLOWED = (CorruptionError, NotADatabaseError, NeedsRecoveryError)  # what a crafted file may raise
BUDGET = 5.0  # seconds per trial before it counts as a hang


class _Hang(BaseException):
    """Raised by the deadline's signal handler (a BaseException, so no
    `except Exception` in the engine swallows it)."""


# -- the base database -------------------------------------------------------------------------

_BASES: dict[str, tuple[tuple[bytes, bytes], tuple[bytes, bytes]]] = {}


def _key(i: int) -> bytes:
    return b"k%05d-" % i + b"p" * (i * 37 % 300)  # long keys: a few hundred make three levels


def _base(directory: str) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """(data, log) of two small databases, built once per directory: one
    closed cleanly (its log just a header), one with commit records to
    replay. Trees "a" (three levels, overflow chains of one and two pages,
    a free list), "b" and, in the log, "c"."""
    if directory in _BASES:
        return _BASES[directory]
    path = os.path.join(directory, "base.db")
    for p in (path, path + "-wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)
    with engine.open(path, sync="off") as db:
        a, b = db.tree("a"), db.tree("b")
        for i in range(700):
            a.put(_key(i), b"%d" % i * (700 if i % 40 == 0 else 1) + b"." * (i % 60))
        for i in range(0, 700, 5):
            a.delete(_key(i))
        for i in range(30):
            b.put(b"b%03d" % i, b"v" * (5000 if i == 7 else i))
    closed = _files(path)
    db = engine.open(path, sync="full")
    try:
        a, c = db.tree("a"), db.tree("c")
        for i in range(12):
            a.put(_key(1000 + i), b"new" * (i + 1))
            c.put(b"c%02d" % i, b"w" * (3000 if i == 3 else i))
        a.delete(_key(1))
        logged = _files(path)  # what a crash now would leave: every commit in the log only
    finally:
        db.close()
    _BASES[directory] = (closed, logged)
    return closed, logged


def _files(path: str) -> tuple[bytes, bytes]:
    with open(path, "rb") as f, open(path + "-wal", "rb") as g:
        return f.read(), g.read()


# -- running a trial --------------------------------------------------------------------------------

@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise `_Hang` after `seconds` (main thread only; elsewhere no bound)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise _Hang

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, expire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:  # someone else's timer (pytest-timeout): resume it
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 0.001), old_interval)


class _Failure(Exception):
    pass


def _step(name: str, fn: Callable[[], object]) -> object:
    """Run one operation: its result, or None after an allowed engine error."""
    try:
        return fn()
    except ALLOWED:
        return None
    except _Hang:
        raise _Failure(f"hang (over {BUDGET} s) in {name}") from None
    except Exception as exc:  # noqa: BLE001 - the finding: an exception outside the engine's errors
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        raise _Failure(f"{name} raised {type(exc).__name__}: {exc}\n{tail}") from exc


def _keys_ok(name: str, items, descending: bool = False) -> None:
    if items is None:
        return
    keys = [k for k, _ in items]
    bad = [k for k in keys if type(k) is not bytes or not 1 <= len(k) <= MAX_KEY]
    if bad:
        raise _Failure(f"{name} returned a key of {len(bad[0])} bytes")
    if any((a <= b) if descending else (a >= b) for a, b in zip(keys, keys[1:], strict=False)):
        raise _Failure(f"{name} returned keys out of order")


def _read_tree(db, name: str):
    """Scan both ways, len, first/last and sampled gets of tree `name`:
    (items, reversed items, len), or None where the tree did not open."""
    t = _step("tree", lambda: db.tree(name, create=False))
    if t is None:
        return None
    items = _step(f"scan {name}", lambda: list(t.scan()))
    _keys_ok(f"scan {name}", items)
    back = _step(f"reverse scan {name}", lambda: list(t.scan(reverse=True)))
    _keys_ok(f"reverse scan {name}", back, descending=True)
    n = _step(f"len {name}", lambda: len(t))
    if n is not None and (type(n) is not int or n < 0):
        raise _Failure(f"len {name} = {n!r}")
    for edge in ("first", "last"):
        got = _step(f"{edge} {name}", getattr(t, edge))
        _keys_ok(f"{edge} {name}", [got] if got else [])
    for k, _ in (items or [])[:: max(1, len(items or []) // 20)]:
        _step(f"get {name}", lambda k=k: t.get(k))
    return items, back, n


def _agree_when_checked(db, contents: dict) -> None:
    """A file check() passes must read consistently: scans both ways, len and gets agree."""
    report = _step("check", db.check)
    if report is None or not report.ok:
        return
    for name, (items, back, n) in contents.items():
        if items is not None and back is not None and (back[::-1] != items or n != len(items)):
            raise _Failure(f"tree {name}: check() passes but scans or len disagree")
        t = db.tree(name, create=False)
        for k, v in items or []:
            if _step(f"get {name}", lambda t=t, k=k: t.get(k)) not in (v, None):
                raise _Failure(f"tree {name}: check() passes but get({k[:16]!r}) differs from the scan")


def _write_some(db, names: list[str]) -> None:
    """A small and a large put into each tree; what a put stored reads back."""
    for name in names:
        t = db.tree(name, create=False)
        for key, value in ((b"crafted-small", b"x" * 10), (b"crafted-large", b"y" * 9000)):
            if _step(f"put {name}", lambda t=t, k=key, v=value: t.put(k, v) or True):
                got = _step(f"get {name}", lambda t=t, k=key: t.get(k))
                if got is not None and got != value:
                    raise _Failure(f"tree {name}: a put then get returned other bytes")


def _exercise(db) -> None:
    """Every read, check(), a small and a large put, then close (skipped
    after a hang: the interrupted call may still hold a latch)."""
    hung = False
    try:
        contents = {}
        for name in db.trees():
            got = _read_tree(db, name)
            if got is not None:
                contents[name] = got
        _agree_when_checked(db, contents)
        _write_some(db, list(contents)[:2])
    except _Failure as exc:
        hung = str(exc).startswith("hang")
        raise
    finally:
        if not hung:
            _step("close", db.close)


def _digest(path: str) -> tuple[str, ...]:
    out = []
    for p in (path, path + "-wal"):
        with open(p, "rb") as f:
            out.append(hashlib.sha256(f.read()).hexdigest())
    return tuple(out)


def run_trial(seed: int, directory: str | os.PathLike[str]) -> tuple[bool, str]:
    """One crafted file, opened and used under a time bound: (ok, detail).
    `directory` holds the base databases (built on first use) and the
    trial's files, removed after a trial that passes; a failing trial keeps
    them for replay (`run_trial(seed, directory)` again)."""
    directory = os.fspath(directory)
    closed, logged = _base(directory)
    rng = random.Random(seed)
    data, log = logged if rng.random() < 0.5 else closed
    if rng.random() < 0.3 and log[LOG_HEADER:].strip(b"\0"):
        log, what = mutate_log(rng, data, log)
    else:
        data, what = mutate_page(rng, data)
    trial = os.path.join(directory, f"trial-{seed}")
    os.makedirs(trial, exist_ok=True)
    path = os.path.join(trial, "crafted.db")
    with open(path, "wb") as f:
        f.write(data)
    with open(path + "-wal", "wb") as f:
        f.write(log)
    detail = f"seed {seed}: {what}"
    before = _digest(path)
    try:
        with _deadline(BUDGET):
            try:
                db = engine.open(path, create=False, sync="off")
            except ALLOWED as exc:
                if _digest(path) != before:
                    return False, f"{detail}: a refused open ({type(exc).__name__}) changed the files"
                shutil.rmtree(trial, ignore_errors=True)
                return True, f"{detail}: open refused ({type(exc).__name__})"
            except _Hang:
                return False, f"{detail}: hang (over {BUDGET} s) in open"
            except Exception as exc:  # noqa: BLE001 - the finding
                return False, f"{detail}: open raised {type(exc).__name__}: {exc}"
            _exercise(db)
    except _Failure as exc:
        return False, f"{detail}: {exc}"
    except _Hang:  # the bound ran out between steps
        return False, f"{detail}: hang (over {BUDGET} s)"
    shutil.rmtree(trial, ignore_errors=True)
    return True, detail

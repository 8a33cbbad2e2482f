"""Many threads on one database: one root, no lost keys, sorted scans."""

from __future__ import annotations

import sys
import threading

import pytest


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run(threads):
    errors = []

    def wrap(fn):
        def body():
            try:
                fn()
            except BaseException as exc:  # collected and re-raised by the test
                errors.append(exc)
        return body

    ts = [threading.Thread(target=wrap(fn)) for fn in threads]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    if errors:
        raise errors[0]


def test_sixteen_threads_create_exactly_one_root(open_db, tmp_path, fast_switching):
    for round_ in range(25):
        db = open_db(str(tmp_path / f"r{round_}.db"), pool_pages=16)
        t = db.tree("default")
        barrier = threading.Barrier(16)

        def writer(i, barrier=barrier, t=t):
            def fn():
                barrier.wait()
                t.put(b"key-%02d" % i, b"v%d" % i)
            return fn

        _run([writer(i) for i in range(16)])
        assert len(t) == 16
        assert sorted(t.keys()) == [b"key-%02d" % i for i in range(16)]
        report = db.check()
        assert report.ok, report.problems
        assert report.pages_leaked == 0
        db.close()


def test_readers_see_sorted_unique_scans_while_writers_split_and_merge(open_db, fast_switching):
    db = open_db(pool_pages=32)
    t = db.tree("default")
    for i in range(0, 4000, 2):
        t.put(b"%08d" % i, b"x" * 40)
    stop = threading.Event()
    seen_lengths = []

    def writer(offset):
        def fn():
            for _rnd in range(3):
                for i in range(offset, 4000, 4):
                    t.put(b"%08d" % i, b"y" * (20 + i % 90))
                for i in range(offset, 4000, 8):
                    t.delete(b"%08d" % i)
        return fn

    def reader(reverse):
        def fn():
            while not stop.is_set():
                keys = [k for k, _ in t.scan(reverse=reverse)]
                want = sorted(keys, reverse=reverse)
                assert keys == want, "scan out of order"
                assert len(set(keys)) == len(keys), "scan returned a key twice"
                seen_lengths.append(len(keys))
        return fn

    writers = [writer(1), writer(3)]
    readers = [reader(False), reader(True), reader(False)]
    done = []

    def run_writers():
        try:
            _run(writers)
        finally:
            stop.set()
            done.append(True)

    _run([run_writers, *readers])
    assert done and seen_lengths
    assert db.check().ok


def test_concurrent_readers_and_point_gets(open_db, fast_switching):
    db = open_db(pool_pages=16)
    t = db.tree("default")
    data = {b"k%05d" % i: b"v%05d" % i * 5 for i in range(3000)}
    for k, v in data.items():
        t[k] = v

    def getter(start):
        def fn():
            for i in range(start, 3000, 7):
                k = b"k%05d" % i
                assert t[k] == data[k]
        return fn

    _run([getter(s) for s in range(7)])
    assert db.check().ok

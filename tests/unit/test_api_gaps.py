"""Lines of docs/api.md that had no checker (docs/api-coverage.md lists them).

- compact keeps the file's name and inode, so another descriptor of the
  file stays valid;
- backup: a process killed during a backup leaves at `dest_path` the old
  copy or the new one, never a partial one;
- threads: a batch is isolated: another thread never sees part of it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]


def _contents(path: Path) -> dict[str, dict[bytes, bytes]]:
    with engine.open(path, create=False, read_only=True) as db:
        db.check(strict=True)
        return {n: dict(db.tree(n, create=False).items()) for n in db.trees()}


def test_compact_keeps_the_name_and_inode_and_other_descriptors(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with engine.open(path, sync="off") as db:
        db.tree("t").update({b"%05d" % i: b"x" * 200 for i in range(2000)})
        db.tree("keep")[b"k"] = b"v"
    with engine.open(path, sync="off") as db:
        db.tree("t").clear()
        fd = os.open(path, os.O_RDONLY)  # another descriptor, as a reader process holds
        try:
            inode, size = os.stat(path).st_ino, os.path.getsize(path)
            result = db.compact()
            assert result["pages_after"] < result["pages_before"]
            assert os.stat(path).st_ino == inode, "compact replaced the file"
            assert os.fstat(fd).st_ino == inode and os.fstat(fd).st_size < size
            with os.fdopen(os.dup(fd), "rb") as same:  # the descriptor opened before compact
                assert same.read(16) == Path(path).read_bytes()[:16]
        finally:
            os.close(fd)
    assert _contents(path) == {"keep": {b"k": b"v"}, "t": {}}


_BACKUP_LOOP = """
import sys, engine
path, dest = sys.argv[1], sys.argv[2]
with engine.open(path, sync="off") as db:
    t = db.tree("t")
    for version in range(1, 10**6):
        v = b"%08d" % version
        t.update({b"%05d" % i: v * 100 for i in range(6000)})
        for _ in range(5):  # mostly copying: the kill lands in a copy often
            db.backup(dest)
            print(version, flush=True)
"""


def test_a_backup_killed_midway_leaves_the_old_or_the_new_copy(tmp_path: Path) -> None:
    path, dest = tmp_path / "src.db", tmp_path / "copy.db"
    with engine.open(path, sync="off") as db:
        db.tree("t").update({b"%05d" % i: b"%08d" % 0 * 100 for i in range(6000)})
        db.backup(dest)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(7)
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", _BACKUP_LOOP, str(path), str(dest)],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout is not None
        child.stdout.readline()  # one backup done: later ones overwrite a copy
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        got = _contents(dest)  # opens, passes check(strict=True)
        values = set(got["t"].values())
        assert len(got["t"]) == 6000 and len(values) == 1, "the copy mixes two states"


def test_threads_never_see_part_of_a_batch(tmp_path: Path) -> None:
    """Batches add 40 keys to two trees, then remove them; `len` (one
    atomic read) in other threads sees all of a batch or none of it."""
    n = 40
    keys = [b"%03d" % i for i in range(n)]
    seen: list[str] = []
    stop = threading.Event()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside a batch's apply
    try:
        _batches_against_len(tmp_path, keys, seen, stop)
    finally:
        sys.setswitchinterval(switch)
    assert not seen, seen[:5]


def _batches_against_len(tmp_path: Path, keys: list[bytes], seen: list[str], stop: threading.Event) -> None:
    n = len(keys)
    with engine.open(tmp_path / "t.db", sync="off", pool_pages=64) as db:
        a, b = db.tree("a"), db.tree("b")

        def writer() -> None:
            try:
                for round_ in range(60):
                    with db.batch() as batch:
                        for k in keys:
                            batch.put("a", k, b"%d" % round_)
                            batch.put("b", k, b"%d" % round_)
                    with db.batch() as batch:
                        for k in keys:
                            batch.delete("a", k)
                            batch.delete("b", k)
            finally:
                stop.set()

        def reader() -> None:
            while not stop.is_set():
                for tree in (a, b):
                    size = len(tree)
                    if size not in (0, n):
                        seen.append(f"len {size}")

        threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        db.check(strict=True)

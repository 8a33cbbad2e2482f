"""A writer or reader process for tests/concurrency/test_processes.py.

    python proc_worker.py writer PATH SEED     commits batches, prints "ack SEQ" after each returns
    python proc_worker.py reader PATH SEED     reads, prints what it saw (see `reader`)

Every commit `seq` applies `ops(seed, seq)`, a pure function, and stores
`__seq` = seq in the same batch, so the test rebuilds the model state after
any commit from the seed alone, and a restarted writer continues from the
`__seq` it finds (whether or not the commit in flight when it was killed
landed). Lines on stdout are the only channel; stdin closing stops a worker.
A worker says "ready" once Python has started and imported the engine.
"""

from __future__ import annotations

import faulthandler
import hashlib
import os
import random
import select
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import engine  # noqa: E402

TREE = "t"
SEQ = b"__seq"
CHECKPOINT_BYTES = 48 * 1024  # many automatic checkpoints, most of them beside readers
KEYS = [b"k%03d" % i for i in range(120)]


def ops(seed: int, seq: int) -> list[tuple[bytes, bytes | None]]:
    """The writes of commit `seq`: (key, value) or (key, None) for a delete."""
    rng = random.Random(seed * 1_000_003 + seq)
    out: list[tuple[bytes, bytes | None]] = []
    for _ in range(rng.randint(1, 6)):
        key = rng.choice(KEYS)
        if rng.random() < 0.2:
            out.append((key, None))
        else:
            size = 5000 if rng.random() < 0.03 else rng.randint(0, 300)  # some overflow chains
            out.append((key, (b"%d:" % seq + bytes(rng.randrange(256) for _ in range(8))) * (size // 10 + 1)))
    out.append((SEQ, b"%d" % seq))
    return out


def digest(items) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k, v in items:
        h.update(len(k).to_bytes(4, "little") + k + len(v).to_bytes(4, "little") + v)
    return h.hexdigest()


def _say(*parts) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def _stdin_closed() -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and not sys.stdin.readline()


def writer(path: str, seed: int) -> None:
    rng = random.Random(seed ^ os.getpid())
    db = engine.open(path, sync="normal", checkpoint_bytes=CHECKPOINT_BYTES)
    t = db.tree(TREE)
    seq = int(t.get(SEQ, b"0"))
    _say("open", seq)
    while not _stdin_closed():
        seq += 1
        with db.batch() as b:
            for key, value in ops(seed, seq):
                if value is None:
                    b.delete(TREE, key)
                else:
                    b.put(TREE, key, value)
        _say("ack", seq)
        r = rng.random()
        if r < 0.01:
            db.checkpoint()  # waits for readers' snapshots
            _say("checkpoint", seq)
        elif r < 0.015:
            db.close()
            db = engine.open(path, sync="normal", checkpoint_bytes=CHECKPOINT_BYTES)
            t = db.tree(TREE)
    db.close()
    _say("closed", seq)


def reader(path: str, seed: int) -> None:
    """Lines: "scan SEQ DIGEST" (a whole scan), "get KEYHEX VALHEX|-" (one get),
    "seq SEQ" (a get of __seq), "reopen" (a new handle; still one process)."""
    rng = random.Random(seed ^ os.getpid())
    db = engine.open(path, read_only=True, create=False, pool_pages=16)
    _say("open")
    rebuilds = 0  # states rebuilt after a writer's checkpoint, reported as they happen
    while not _stdin_closed():
        if db.rebuilds != rebuilds:
            _say("rebuilds", db.rebuilds - rebuilds)
            rebuilds = db.rebuilds
        try:
            t = db.tree(TREE, create=False)
        except KeyError:  # before the writer's first commit
            _say("seq", 0)
            time.sleep(0.01)
            continue
        r = rng.random()
        if r < 0.3:
            items = []
            for i, kv in enumerate(t.scan()):
                items.append(kv)
                if i == 3 and rng.random() < 0.2:
                    time.sleep(rng.random() * 0.05)  # hold the snapshot while the writer goes on
            seq = dict(items).get(SEQ, b"0").decode()
            _say("scan", seq, digest(items))
        elif r < 0.5:
            _say("seq", t.get(SEQ, b"0").decode())
        elif r < 0.97:
            key = rng.choice(KEYS)
            value = t.get(key)
            _say("get", key.hex(), "-" if value is None else value.hex())
        else:
            db.close()
            db = engine.open(path, read_only=True, create=False, pool_pages=rng.choice([16, 64]))
            rebuilds = 0
            _say("reopen")
    db.close()


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for the stacks of a worker that hangs
    _say("ready")
    role, path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    (writer if role == "writer" else reader)(path, seed)

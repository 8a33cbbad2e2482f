"""DragonDB in one minute: the embedded engine, `shelve` on top of it, and a
short fault campaign. `make demo` runs this file.

Everything happens in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import importlib.util
import shelve
import sys
import tempfile
import time
from pathlib import Path

import engine
import engine.dbm

USERS = 3_000  # enough small records for a tree of height 2; each put is one durable commit


def _say(text: str) -> None:
    print(text, flush=True)


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def _user_key(i: int) -> bytes:
    return f"user:{i:06d}".encode()


def embedded(directory: Path) -> bool:
    """A real workload on the embedded engine; True when every check passed."""
    path = directory / "demo.db"
    _say(f"embedded database at {path}")
    ok = True

    with engine.open(path) as db:
        users, orders = db.tree("users"), db.tree("orders")
        start = time.perf_counter()
        for i in range(USERS):
            users.put(_user_key(i), f'{{"name": "user {i}", "plan": "free"}}'.encode())
        took = time.perf_counter() - start
        _say(
            f"  put      {USERS:>6,} users, one durable commit each: {took:.2f} s ({_rate(USERS, took)})"
        )

        start = time.perf_counter()
        with db.batch() as batch:  # one atomic commit across two trees
            for i in range(1_000):
                batch.put("orders", f"order:{i:06d}".encode(), _user_key(i % USERS))
            batch.put("users", _user_key(0), b'{"name": "user 0", "plan": "pro"}')
        took = time.perf_counter() - start
        _say(f"  batch    {1_001:>6,} puts over 2 trees, one atomic commit: {took * 1000:.0f} ms")

        start = time.perf_counter()
        found = sum(users.get(_user_key(i)) is not None for i in range(0, USERS, 3))
        took = time.perf_counter() - start
        gets = len(range(0, USERS, 3))
        _say(f"  get      {gets:>6,} keys, {found:,} found: {_rate(gets, took)}")
        ok &= found == gets

        matches = list(users.scan(prefix=b"user:0012"))
        _say(
            f"  scan     prefix 'user:0012' -> {len(matches)} keys, {matches[0][0].decode()} .. {matches[-1][0].decode()}"
        )
        ok &= len(matches) == 100

        start = time.perf_counter()
        deleted = sum(users.delete(_user_key(i)) for i in range(0, USERS, 2))
        took = time.perf_counter() - start
        _say(f"  delete   {deleted:>6,} users (every other one): {_rate(deleted, took)}")
        ok &= deleted == len(range(0, USERS, 2))
        expected = {"users": len(users), "orders": len(orders)}

    _say("  closed and reopened")
    with engine.open(path, read_only=True) as db:
        counts = {name: len(db.tree(name, create=False)) for name in db.trees()}
        _say(f"  trees    {', '.join(f'{n}: {c:,} keys' for n, c in counts.items())}")
        ok &= counts == expected
        plan = db.tree("users", create=False).get(_user_key(1))
        _say(f"  get      {_user_key(1).decode()} -> {plan.decode() if plan else None}")
        levels = db.tree_levels("users")
        shape = " / ".join(f"{len(level)}" for level in levels)
        _say(
            f"  shape    users tree: height {len(levels)}, pages per level {shape} (`dragondb show` draws it)"
        )
        report = db.check()
        verdict = "clean" if report.ok else f"{len(report.problems)} PROBLEMS"
        _say(
            f"  check    {verdict}: {report.pages_allocated} pages allocated, "
            f"{report.pages_reachable} reachable, {report.pages_free} free, {report.pages_leaked} leaked"
        )
        for problem in report.problems[:10]:
            _say(f"           {problem}")
        ok &= report.ok
        stats = db.stats()
    size = path.stat().st_size
    _say(
        f"  stats    {stats['pages_allocated']} pages of {stats['page_size']} B ({size / 1024:,.0f} KiB on disk), "
        f"pool hits {stats['pool_hits']:,} / misses {stats['pool_misses']:,}, direct I/O {'on' if stats['direct_io'] else 'off'}"
    )
    return ok


def shelf(directory: Path) -> bool:
    """`shelve` on `engine.dbm`: Python objects stored in a DragonDB file."""
    path = str(directory / "shelf.db")
    record = {"name": "Ada", "languages": ["Python", "Go"], "since": 1843}
    with shelve.Shelf(engine.dbm.open(path, "c")) as db:
        db["ada"] = record
        db["counter"] = 41
        db["counter"] += 1
    with shelve.Shelf(engine.dbm.open(path, "r")) as db:
        back, counter, names = db["ada"], db["counter"], sorted(db.keys())
    _say(f"shelve on engine.dbm: stored {names}, read back ada={back}, counter={counter}")
    return back == record and counter == 42


def campaign() -> int:
    """A ten-second fault campaign; its exit status (0: nothing diverged or leaked)."""
    if importlib.util.find_spec("faults.campaign") is None:
        _say("fault campaign: faults.campaign is not installed here; skipped")
        return 0
    from faults import campaign as fault_campaign

    _say("fault campaign (10 s, 1 worker): I/O faults and interleavings against the model")
    sys.stdout.flush()
    return int(fault_campaign.main(["--seconds", "10", "--workers", "1"]))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dragondb-demo-") as tmp:
        directory = Path(tmp)
        ok = embedded(directory)
        ok &= shelf(directory)
    status = campaign()
    if not ok:
        _say("demo: a result differed from what was expected (see above)")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())

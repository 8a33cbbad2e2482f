"""Recovering crash images, and judging what recovery gives against a history.

`Recovery` materializes a crash's disk images into a scratch directory and
opens them with `engine.open` (which recovers), reads everything, checks
and writes once; identical images are recovered once (many crash points
leave the same disk). `check_recovery` compares the outcome with the states
the run's history allows at that crash point (`faults.history`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

import engine
from engine.errors import CorruptionError, DragonDBError, NotADatabaseError
from faults.crash import CrashDisk, materialize
from faults.history import History
from faults.report import Tally
from faults.session import PATH, POOL_PAGES
from faults.workload import Model, contents, diff

__all__ = ["Recovery", "check_recovery", "open_writable"]


class Recovery:
    """Materializes crash images into a directory and recovers them (cached by content)."""

    def __init__(self, tmp: str, sync: str) -> None:
        self.tmp = tmp
        self.sync = sync
        self.cache: dict[bytes, tuple[Model | None, str | None]] = {}
        self.runs = 0

    def __call__(self, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        """(contents, None) or (None, why recovery failed)."""
        h = hashlib.blake2b(self.sync.encode(), digest_size=16)
        for name in sorted(images):
            h.update(name.encode() + b"\0" + hashlib.blake2b(images[name], digest_size=16).digest())
        key = h.digest()
        if key not in self.cache:
            self.cache[key] = self._recover(images)
        return self.cache[key]

    def _recover(self, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        self.runs += 1
        d = tempfile.mkdtemp(dir=self.tmp)
        state, why = self._recover_in(d, images)
        return state, None if why is None else why.replace(d, "<tmp>")  # the same message on replay

    def _recover_in(self, d: str, images: dict[str, bytes]) -> tuple[Model | None, str | None]:
        try:
            materialize(images, d)
            try:
                db = engine.open(os.path.join(d, os.path.basename(PATH)), pool_pages=POOL_PAGES, sync=self.sync)
            except (NotADatabaseError, CorruptionError) as exc:
                return None, f"refused: {exc!r}"
            except Exception as exc:  # noqa: BLE001 - any other exception is the finding
                return None, f"recovery raised {exc!r}"
            try:
                state = contents(db)
                rep = db.check()
                if not rep.ok:
                    return None, f"check() after recovery: {rep.problems[:3]}"
                t = db.tree("after-crash")
                t.put(b"probe", b"written after recovery")
                if t.get(b"probe") != b"written after recovery":
                    return None, "a write after recovery did not read back"
                return state, None
            except Exception as exc:  # noqa: BLE001
                return None, f"using the recovered database raised {exc!r}"
            finally:
                try:
                    db.close()
                except DragonDBError:
                    pass
        finally:
            shutil.rmtree(d, ignore_errors=True)


def check_recovery(tally: Tally, token: str, rec: History, recover: Recovery,
                   images: dict[str, bytes], allowed: list[int], where: str, mode: str) -> None:
    """Recover one crash state and compare; crash states are independent, so a
    wrong one is counted and the trial goes on (its first one is reported)."""
    tally.n["crashes_simulated"] += 1
    tally.modes[mode] += 1
    state, why = recover(images)
    if why is None:
        if allowed:
            if any(state == rec.models[s] for s in allowed):
                tally.n["recoveries_verified"] += 1
                return
            why = (f"recovered state matches no allowed step; vs step {allowed[-1]}: "
                   f"{diff(state, rec.models[allowed[-1]])}")
        elif state == {}:
            tally.n["recoveries_verified"] += 1
            return
        else:
            why = f"the database's creation never returned, yet it holds trees {sorted(state)}"
    elif not allowed and why.startswith("refused"):
        tally.n["recoveries_verified"] += 1  # creation never returned: a half-made file may be refused
        return
    tally.fail_once(token, "divergences", f"{where}: {why}")


def open_writable(images: dict[str, bytes], sync: str, allowed: list[Model]) -> str | None:
    """Open `images` writable on their own in-memory disk: None when the open
    recovered one of the `allowed` contents with `check()` clean, or refused
    with a typed error leaving both files as they were; either way no file
    is left open once it is over. Else what went wrong."""
    d = CrashDisk(images)
    snap = d.snapshot()
    try:
        db = engine.open(PATH, opener=d.opener, pool_pages=POOL_PAGES, sync=sync)
    except DragonDBError as exc:
        touched = [c for c in d.changes_since(snap) if not c.startswith("event")]
        if touched:
            return f"refused with {exc!r} but changed the files: {touched[:4]}"
        return f"refused with {exc!r} but left files open: {d.open_files()}" if d.open_files() else None
    except Exception as exc:  # noqa: BLE001 - any other exception is the finding
        return f"open raised {exc!r}"
    try:
        got = contents(db)
        rep = db.check()
    except DragonDBError as exc:
        return f"the opened database raised {exc!r}"
    finally:
        try:
            db.close()
        except DragonDBError:
            pass
    if d.open_files():
        return f"closed, but files left open: {d.open_files()}"
    if not rep.ok:
        return f"opened, but check(): {rep.problems[:3]}"
    if got in allowed:
        return None
    return f"opened and lost acknowledged data: {diff(got, allowed[-1])}"

"""Single-bit flips at rest, in the data file and in the log.

Three subjects, each a set of files on a `CrashDisk` plus the model of what
they hold:

- "closed": a database closed cleanly (trees three levels deep, overflow
  chains, a free list); its log is just a header;
- "log": the same workload under `sync="full"` cut by a power loss with no
  checkpoint since many acknowledged commits, so recovery must replay the
  log (commit records and spilled page images);
- "checkpoint": a power loss right before a checkpoint's data-file fsync:
  the log holds the checkpoint's page images, the data file the old pages,
  so a flipped data page is repaired from the log.

One bit at a position is flipped, the files are opened (recovery), every
tree is scanned in full, every key is read with `get` (which walks internal
nodes a scan skips) and `check()` runs. Outcomes, by region (metadata, internal, leaf,
overflow, free-list page; log header, record header, commit or spill or
checkpoint record):

- "detected": an engine error (`CorruptionError`, or `NotADatabaseError` for
  a flipped magic) at open or at read, or a problem `check()` reports;
- "correct": everything reads back equal to the model (the flip was
  repaired from the log, or lay in bytes nothing needs);
- "lost-tail": the flip hit the last record of the log, which recovery
  drops as a torn tail: the last acknowledged commit is lost without an
  error. A flipped bit in an fsynced last record cannot be told from a torn
  append, so this is the expected outcome there;
- "lost-mid": the flip hit an earlier record (or the log header), and
  recovery silently dropped it and every acknowledged commit after it,
  although valid records follow. Reported as an engine gap (xfail below);
- "wrong": any other contents. Never acceptable;
- "foreign": an exception outside the engine's hierarchy. Never acceptable.

`make test` covers a seeded sample of positions in every region; the slow
sweep covers 12,000+ positions.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import pytest
from test_power_loss import PATH, make_ops

import engine
from engine.codec import decode_freelist
from engine.metapage import decode_meta
from engine.walformat import CKPT_BEGIN, CKPT_END, CKPT_IMAGE, COMMIT, SPILL, scan
from faults.crash import CrashDisk
from faults.workload import Model, apply_op, contents
from models import ModelDatabase

LOG = PATH + "-wal"
_PAGE_KINDS = {1: "meta", 2: "leaf", 3: "internal", 4: "overflow", 5: "freelist"}
_RECORD_KINDS = {COMMIT: "commit", SPILL: "spill", CKPT_BEGIN: "ckpt-begin", CKPT_IMAGE: "ckpt-image",
                 CKPT_END: "ckpt-end"}


@dataclass
class Subject:
    name: str
    images: dict[str, bytes]
    model: Model
    history: list[Model] = field(default_factory=list)  # earlier acknowledged states, oldest first

    def regions(self) -> dict[str, list[tuple[str, int, int]]]:
        """region -> [(path, start, end)] byte ranges."""
        out: dict[str, list[tuple[str, int, int]]] = {}
        data = self.images[PATH]
        meta = decode_meta(data[:4096])
        unused = set(range(meta.page_count, len(data) // 4096))  # extent slack past page_count
        trunk = meta.freelist_head
        while trunk:  # free pages hold stale content nothing reads
            ids, nxt = decode_freelist(data[trunk * 4096 : trunk * 4096 + 4096], trunk)
            unused.update(ids)
            trunk = nxt
        for page in range(len(data) // 4096):
            kind = _PAGE_KINDS.get(data[page * 4096 + 4], "other")
            if page in unused:
                kind = "unused page"
            out.setdefault(f"data {kind}", []).append((PATH, page * 4096, page * 4096 + 4096))
        log = self.images.get(LOG, b"")
        out.setdefault("log header", []).append((LOG, 0, min(len(log), 16)))
        _, records, end = scan(log)
        for i, rec in enumerate(records):
            kind = _RECORD_KINDS.get(rec.rtype, "other")
            last = "last " if i == len(records) - 1 else ""
            out.setdefault(f"log {last}{kind} header", []).append((LOG, rec.pos, rec.payload_at))
            if rec.length:
                out.setdefault(f"log {last}{kind} payload", []).append(
                    (LOG, rec.payload_at, rec.payload_at + rec.length))
        return out


def _workload_db(disk: CrashDisk, sync: str, **options) -> tuple[engine.Database, ModelDatabase, list[Model]]:
    db = engine.open(PATH, opener=disk.opener, pool_pages=16, sync=sync, **options)
    model = ModelDatabase()
    history = []
    for op in make_ops(200, 5):
        apply_op(db, op)
        apply_op(model, op)
        history.append(model.snapshot())
    return db, model, history


def _logged(disk: CrashDisk) -> tuple[engine.Database, ModelDatabase, list[Model]]:
    """The workload, a checkpoint, then 80 more operations with checkpoints
    off: the log holds their commit records and spilled pages."""
    db, model, _ = _workload_db(disk, "full", checkpoint_bytes=1 << 40)
    db.checkpoint()
    history = [model.snapshot()]
    for op in make_ops(80, 6)[2:]:  # trees a and b exist; leave tree c out
        if op[0] in ("put", "delete", "batch") and "c" not in {o[1] for o in (op[1] if op[0] == "batch" else [op])}:
            apply_op(db, op)
            apply_op(model, op)
            history.append(model.snapshot())
    return db, model, history


@cache
def subjects() -> dict[str, Subject]:
    out = {}
    disk = CrashDisk()
    db, model, _ = _workload_db(disk, "full")
    assert max(len(db.tree_levels(n)) for n in db.trees()) >= 3
    db.close()
    out["closed"] = Subject("closed", disk.images(None, "drop"), model.snapshot())

    disk = CrashDisk()
    db, model, history = _logged(disk)
    log_writes = [e for e in disk.events if e.kind == "write" and e.path == LOG]
    assert sum(len(e.data) for e in log_writes) > 20 * 4096, "the log holds spilled page images"
    out["log"] = Subject("log", disk.images(None, "drop"), model.snapshot(), history[:-1])

    disk = CrashDisk()
    db, model, history = _logged(disk)
    before = len(disk.events)
    db.checkpoint()
    data_sync = next(e.index for e in disk.events[before:] if e.kind == "sync" and e.path == PATH)
    images = disk.images(data_sync - 1, "drop")  # log fsynced with the images; data writes lost
    assert images[PATH] != disk.images(data_sync, "drop")[PATH]
    out["checkpoint"] = Subject("checkpoint", images, model.snapshot(), history[:-1])
    return out


def flip(images: dict[str, bytes], path: str, bit: int) -> dict[str, bytes]:
    out = dict(images)
    buf = bytearray(images[path])
    buf[bit // 8] ^= 1 << (bit % 8)
    out[path] = bytes(buf)
    return out


def outcome(subject: Subject, path: str, bit: int) -> tuple[str, str]:
    """(outcome, detail) of opening and reading the files with one bit flipped."""
    images = flip(subject.images, path, bit)
    try:
        db = engine.open(PATH, opener=CrashDisk(images).opener, pool_pages=16)
    except engine.DragonDBError as exc:
        return "detected", f"open: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001 - the finding
        return "foreign", f"open: {exc!r}"
    try:
        state = contents(db)  # a scan walks the leaf chain: the leftmost path of internal nodes
        for name, scanned in state.items():  # point reads walk every other internal node
            t = db.tree(name, create=False)
            for key in scanned.keys() | subject.model.get(name, {}).keys():
                if t.get(key) != scanned.get(key):
                    return "wrong", f"get({key!r}) disagrees with the scan"
        problems = db.check().problems
        if problems:
            return "detected", f"check: {problems[0]}"
    except engine.DragonDBError as exc:
        return "detected", f"read: {type(exc).__name__}"
    except Exception as exc:  # noqa: BLE001
        return "foreign", f"read: {exc!r}"
    finally:
        try:
            db.close()
        except engine.DragonDBError:
            pass
    if state == subject.model:
        return "correct", ""
    if state in subject.history:
        return "lost", f"back to acknowledged state {subject.history.index(state)} of {len(subject.history)}"
    return "wrong", f"contents match no acknowledged state ({ {n: len(t) for n, t in state.items()} })"


def positions(subject: Subject, per_region: int, seed: int) -> list[tuple[str, str, int]]:
    """(region, path, bit): `per_region` seeded bit positions in each region
    (every bit of a region smaller than that)."""
    rng = random.Random(seed)
    out = []
    for region, ranges in sorted(subject.regions().items()):
        total = sum(hi - lo for _, lo, hi in ranges) * 8
        if total == 0:
            continue
        if total <= per_region:
            chosen = [(p, b) for p, lo, hi in ranges for b in range(lo * 8, hi * 8)]
        else:
            chosen = []
            for _ in range(per_region):
                k = rng.randrange(total)
                for p, lo, hi in ranges:
                    size = (hi - lo) * 8
                    if k < size:
                        chosen.append((p, lo * 8 + k))
                        break
                    k -= size
        out.extend((region, p, b) for p, b in chosen)
    return out


def classify(subject: Subject, region: str, kind: str) -> str:
    """Refine "lost": the last record (a torn tail look-alike) or earlier."""
    if kind != "lost":
        return kind
    return "lost-tail" if region.startswith("log last ") else "lost-mid"


def run_flips(per_region: int, seed: int, subjects_: list[str] | None = None, regions: str = ""
              ) -> tuple[Counter, dict[str, Counter], list[str]]:
    totals: Counter = Counter()
    by_region: dict[str, Counter] = {}
    bad: list[str] = []
    for name, subject in subjects().items():
        if subjects_ is not None and name not in subjects_:
            continue
        for region, path, bit in positions(subject, per_region, seed):
            if not region.startswith(regions):
                continue
            kind, detail = outcome(subject, path, bit)
            kind = classify(subject, region, kind)
            totals[kind] += 1
            by_region.setdefault(f"{name}: {region}", Counter())[kind] += 1
            if kind in ("wrong", "foreign"):
                bad.append(f"{name} {region} {path} bit {bit}: {kind} {detail}")
    return totals, by_region, bad


def report(totals: Counter, by_region: dict[str, Counter]) -> str:
    lines = [f"total: {sum(totals.values())} positions {dict(totals)}"]
    lines += [f"  {region}: {dict(c)}" for region, c in sorted(by_region.items())]
    return "\n".join(lines)


# -- tests -----------------------------------------------------------------------------------

def test_subjects_cover_every_region() -> None:
    regions = {f"{n}: {r}" for n, s in subjects().items() for r in s.regions()}
    for needed in ("closed: data meta", "closed: data internal", "closed: data leaf", "closed: data overflow",
                   "closed: data freelist", "closed: log header", "log: log commit payload",
                   "log: log spill payload", "log: log last commit payload", "checkpoint: log ckpt-image payload"):
        assert needed in regions, sorted(regions)


def test_bitflip_sample_is_detected_or_harmless() -> None:
    """A seeded sample in every region: never wrong data, never a foreign
    exception, never an acknowledged commit lost to a data-file flip."""
    totals, by_region, bad = run_flips(per_region=30, seed=1)
    assert sum(totals.values()) >= 1000, report(totals, by_region)
    assert not bad, f"{len(bad)} flips gave wrong data or a foreign exception: {bad[:5]}"
    for region, c in by_region.items():
        if ": data " in region:
            assert not c["lost-tail"] and not c["lost-mid"], f"{region}: {dict(c)}"
        if region.startswith(("closed: data", "log: data")) and not region.endswith("unused page"):
            # every live page of the data file is read by recovery or the full read: CRC catches it
            assert set(c) == {"detected"}, f"{region}: {dict(c)}"
    assert totals["detected"] >= 400, report(totals, by_region)


def test_flipped_data_page_is_repaired_from_the_log() -> None:
    """Subject "checkpoint": the log holds an image of every page the
    checkpoint writes; a flip in such a page's old copy is repaired."""
    subject = subjects()["checkpoint"]
    _, records, _ = scan(subject.images[LOG])
    imaged = {struct.unpack_from("<I", subject.images[LOG], r.payload_at)[0]
              for r in records if r.rtype == CKPT_IMAGE}
    assert len(imaged) >= 5
    rng = random.Random(4)
    repaired = 0
    for page in sorted(imaged):
        if (page + 1) * 4096 > len(subject.images[PATH]):
            continue  # a page the checkpoint adds at the end of the file
        for _ in range(5):
            bit = page * 4096 * 8 + rng.randrange(4096 * 8)
            kind, detail = outcome(subject, PATH, bit)
            assert kind == "correct", f"page {page} bit {bit}: {kind} {detail}"
            repaired += 1
    assert repaired >= 20


def test_transient_read_flips_are_detected_or_harmless() -> None:
    """A bit flipped on the way from the disk (FaultPlan bitflip on the nth
    read) of a closed database: an engine error or the right data."""
    from faults.io import FaultPlan

    subject = subjects()["closed"]
    counter = FaultPlan()
    db = engine.open(PATH, opener=counter.opener(CrashDisk(subject.images).opener), pool_pages=16)
    contents(db)
    db.close()
    reads = counter.calls["read"]
    assert reads >= 30
    outcomes: Counter = Counter()
    for nth in range(1, reads + 1):
        plan = FaultPlan(seed=nth)
        plan.bitflip(nth)
        try:
            db = engine.open(PATH, opener=plan.opener(CrashDisk(subject.images).opener), pool_pages=16)
            state = contents(db)
            db.close()
        except engine.DragonDBError:
            outcomes["detected"] += 1
            continue
        outcomes["correct" if state == subject.model else "wrong"] += 1
    assert outcomes["wrong"] == 0 and outcomes["detected"] >= reads // 2, outcomes


def test_flip_in_a_middle_log_record_is_reported() -> None:
    totals, by_region, _ = run_flips(per_region=10, seed=2, subjects_=["log"], regions="log ")
    assert totals["lost-mid"] == 0, report(totals, by_region)


def test_flip_in_first_of_three_commits_is_reported() -> None:
    """Rule 5a of wal.py: a damaged record that a later valid record proves
    durable is corruption, not a torn tail."""
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    t = db.tree("t")
    for i in range(3):
        t.put(b"k%d" % i, b"v" * 50)  # each acknowledged: fsynced before returning
    images = disk.images(None, "drop")
    _, records, _ = scan(images[LOG])
    commits = [r for r in records if r.rtype == COMMIT]
    assert len(commits) == 4  # create tree, three puts
    damaged = flip(images, LOG, (commits[1].payload_at + 10) * 8)  # inside the first put's key/value
    with pytest.raises(engine.CorruptionError):
        engine.open(PATH, opener=CrashDisk(damaged).opener)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_bitflip_sweep_12000_positions() -> None:
    totals, by_region, bad = run_flips(per_region=400, seed=3)
    print("\n" + report(totals, by_region))
    assert sum(totals.values()) >= 10_000, report(totals, by_region)
    assert not bad, f"{len(bad)} flips gave wrong data or a foreign exception: {bad[:5]}"


def test_minimal_repro_flip_in_a_spill_record() -> None:
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full", pool_pages=16)
    t = db.tree("t")
    i = 0
    while not any(e.kind == "write" and e.path == LOG and len(e.data.strip(b"\0")) > 4096 for e in disk.events):
        t.put(b"k%04d" % i, bytes([i % 251]) * 1000)  # dirty pages pile up until one spills
        i += 1
    for j in range(5):
        t.put(b"after%d" % j, b"acknowledged")  # fsynced after the spill
    images = disk.images(None, "drop")
    _, records, _ = scan(images[LOG])
    spill = next(r for r in records if r.rtype == SPILL)
    assert records[-1].lsn > spill.lsn + 2
    damaged = flip(images, LOG, (spill.payload_at + 100) * 8)
    try:
        db = engine.open(PATH, opener=CrashDisk(damaged).opener, pool_pages=16)
    except engine.CorruptionError:
        return
    assert len(db.tree("t")) == i + 5, "acknowledged puts after the damaged spill were dropped"


def test_minimal_repro_flip_in_the_log_header() -> None:
    disk = CrashDisk()
    db = engine.open(PATH, opener=disk.opener, sync="full")
    t = db.tree("t")
    for i in range(3):
        t.put(b"k%d" % i, b"acknowledged")
    damaged = flip(disk.images(None, "drop"), LOG, 9 * 8)  # a bit of base_lsn
    try:
        db = engine.open(PATH, opener=CrashDisk(damaged).opener)
    except engine.CorruptionError:
        return
    assert db.trees() == ["t"] and len(db.tree("t")) == 3, "acknowledged commits silently dropped"

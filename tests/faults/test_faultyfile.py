"""`FaultPlan` decides and `FaultyFile` acts: each fault kind as specified,
the injection records, and seeded reproducibility."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.disk import SECTOR, default_opener
from engine.errors import StorageIOError
from faults.crash import CrashDisk
from faults.io import FaultPlan, FaultyFile, Injection, sector_pieces

PAGE = 4096


def _data(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt) % 256 for i in range(n))


@pytest.fixture
def disk() -> CrashDisk:
    return CrashDisk()


def _open(plan: FaultPlan, disk: CrashDisk, name: str = "db") -> FaultyFile:
    f = plan.opener(disk.opener)(name, True)
    assert isinstance(f, FaultyFile)
    return f


def _read(f, offset: int, n: int) -> bytes:
    buf = bytearray(n)
    got = f.read_into(offset, memoryview(buf))
    return bytes(buf[:got])


# -- errors -------------------------------------------------------------


@pytest.mark.parametrize("eno", [errno.EIO, errno.ENOSPC, errno.EFBIG])
def test_nth_write_fails_transiently(disk, eno) -> None:
    plan = FaultPlan()
    plan.fail("write", nth=3, errno=eno)
    f = _open(plan, disk)
    f.write(0, b"a" * PAGE)
    f.write(PAGE, b"b" * PAGE)
    with pytest.raises(StorageIOError) as info:
        f.write(2 * PAGE, b"c" * PAGE)
    assert info.value.errno == eno
    assert f.size() == 2 * PAGE, "a failed write has no effect"
    f.write(2 * PAGE, b"d" * PAGE)  # transient: the next call succeeds
    assert _read(f, 2 * PAGE, PAGE) == b"d" * PAGE
    assert plan.injected == [Injection("write", 3, "db", 2 * PAGE, 2, eno, "error")]
    assert plan.calls["write"] == 4


def test_persistent_fault_fails_every_later_call(disk) -> None:
    plan = FaultPlan()
    plan.fail("sync", nth=2, persistent=True)
    f = _open(plan, disk)
    f.sync()
    for _ in range(3):
        with pytest.raises(StorageIOError):
            f.sync()
    assert [i.call_index for i in plan.injected] == [2, 3, 4]
    assert all(i.effect == "error" and i.offset is None and i.page is None for i in plan.injected)


@pytest.mark.parametrize("kind", ["read", "write", "sync", "extend", "truncate"])
def test_every_kind_can_fail(disk, kind) -> None:
    plan = FaultPlan()
    plan.fail(kind, nth=1)
    f = _open(plan, disk)
    calls = {
        "read": lambda: f.read_into(0, memoryview(bytearray(10))),
        "write": lambda: f.write(0, b"x"),
        "sync": f.sync,
        "extend": lambda: f.extend(PAGE),
        "truncate": lambda: f.truncate(0),
    }
    with pytest.raises(StorageIOError):
        calls[kind]()
    calls[kind]()  # second call goes through
    assert [(i.kind, i.call_index) for i in plan.injected] == [(kind, 1)]
    assert f.size() in (0, 1, PAGE)


def test_open_fault_raises_from_opener(disk) -> None:
    plan = FaultPlan()
    plan.fail("open", nth=2)
    opener = plan.opener(disk.opener)
    opener("db", True)
    with pytest.raises(StorageIOError):
        opener("db-wal", True)
    assert "db-wal" not in disk.paths(), "a failed open creates nothing"
    opener("db-wal", True)
    assert plan.injected[0].kind == "open" and plan.injected[0].file == "db-wal"
    assert plan.files == ["db", "db-wal"]


def test_counting_is_per_plan_across_files(disk) -> None:
    plan = FaultPlan()
    plan.fail("write", nth=3)
    opener = plan.opener(disk.opener)
    a, b = opener("db", True), opener("db-wal", True)
    a.write(0, b"1")
    b.write(0, b"2")
    with pytest.raises(StorageIOError):
        a.write(1, b"3")
    assert plan.calls["write"] == 3
    assert plan.injected[0].file == "db"


def test_file_and_page_filters(disk) -> None:
    plan = FaultPlan()
    plan.fail("write", nth=1, file="-wal")
    plan.fail("read", nth=1, page=2)
    opener = plan.opener(disk.opener)
    data, wal = opener("db", True), opener("db-wal", True)
    data.write(0, b"x" * 3 * PAGE)  # not the log: passes
    with pytest.raises(StorageIOError):
        wal.write(0, b"rec")
    data.read_into(0, memoryview(bytearray(PAGE)))  # page 0: passes
    with pytest.raises(StorageIOError):
        data.read_into(2 * PAGE + 100, memoryview(bytearray(10)))
    assert [(i.file, i.page) for i in plan.injected] == [("db-wal", 0), ("db", 2)]


def test_kind_mask_counts_across_kinds(disk) -> None:
    # test_vfs style: one countdown over a mask of methods
    plan = FaultPlan()
    plan.fail({"write", "sync"}, nth=3)
    f = _open(plan, disk)
    f.write(0, b"a")
    f.sync()
    with pytest.raises(StorageIOError):
        f.write(1, b"b")
    f.sync()
    assert [(i.kind, i.call_index) for i in plan.injected] == [("write", 2)]


def test_disarm_and_arm(disk) -> None:
    plan = FaultPlan()
    plan.fail("write", probability=1.0)
    f = _open(plan, disk)
    with pytest.raises(StorageIOError):
        f.write(0, b"a")
    plan.disarm()
    f.write(0, b"a")
    assert plan.calls["write"] == 2, "calls are counted while disarmed"
    plan.arm()
    with pytest.raises(StorageIOError):
        f.write(0, b"b")
    assert len(plan.injected) == 2


def test_probability_is_seeded_and_reproducible(disk) -> None:
    def failures(seed: int) -> list[int]:
        plan = FaultPlan(seed)
        plan.fail("read", probability=0.3)
        f = _open(plan, CrashDisk(), "x")
        f.write(0, bytes(PAGE))
        out = []
        for i in range(200):
            try:
                f.read_into(0, memoryview(bytearray(16)))
            except StorageIOError:
                out.append(i + 1)
        assert out == [inj.call_index for inj in plan.injected]
        return out

    a = failures(7)
    assert a == failures(7)
    assert a != failures(8)
    assert 30 < len(a) < 90, "about 30% of 200 calls fail"


def test_persistent_probability_sticks(disk) -> None:
    plan = FaultPlan(3)
    plan.fail("sync", probability=0.2, persistent=True)
    f = _open(plan, disk)
    outcomes = []
    for _ in range(60):
        try:
            f.sync()
            outcomes.append(True)
        except StorageIOError:
            outcomes.append(False)
    first = outcomes.index(False)
    assert all(not ok for ok in outcomes[first:]), "once fired, a persistent fault stays"


def test_rule_validation() -> None:
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.fail("write")  # neither nth nor probability
    with pytest.raises(ValueError):
        plan.fail("write", nth=1, probability=0.5)
    with pytest.raises(ValueError):
        plan.fail("write", nth=0)  # 1-based
    with pytest.raises(ValueError):
        plan.short("sync", nth=1)  # a sync cannot be short
    with pytest.raises(ValueError):
        plan.fail("write", probability=1.5)
    with pytest.raises(ValueError):
        plan.torn(nth=1, pattern="middle")


# -- short reads and writes ------------------------------------------------


def test_short_read_returns_prefix_like_eof(disk) -> None:
    plan = FaultPlan()
    plan.short("read", nth=2, keep=100)
    f = _open(plan, disk)
    f.write(0, _data(2 * PAGE))
    assert f.read_into(0, memoryview(bytearray(PAGE))) == PAGE
    buf = bytearray(b"\xff" * PAGE)
    assert f.read_into(PAGE, memoryview(buf)) == 100
    assert bytes(buf[:100]) == _data(2 * PAGE)[PAGE : PAGE + 100]
    assert f.size() == 2 * PAGE, "the short read was inside the file: only a fault explains it"
    (inj,) = plan.injected
    assert (inj.kind, inj.effect, inj.offset, inj.page, inj.errno) == (
        "read",
        "short",
        PAGE,
        1,
        None,
    )


def test_short_write_persists_prefix_then_raises(disk) -> None:
    plan = FaultPlan()
    plan.short("write", nth=1, keep=1000, errno=errno.ENOSPC)
    f = _open(plan, disk)
    with pytest.raises(StorageIOError) as info:
        f.write(0, _data(PAGE))
    assert info.value.errno == errno.ENOSPC
    assert f.size() == 1000
    assert _read(f, 0, PAGE) == _data(PAGE)[:1000]
    assert plan.injected[0].effect == "short" and plan.injected[0].errno == errno.ENOSPC


def test_seeded_short_lengths_are_always_short(disk) -> None:
    plan = FaultPlan(11)
    plan.short("read", probability=1.0)
    f = _open(plan, disk)
    plan.disarm()
    f.write(0, _data(PAGE))
    plan.arm()
    for _ in range(50):
        assert f.read_into(0, memoryview(bytearray(PAGE))) < PAGE


# -- torn writes -------------------------------------------------------------


def test_sector_pieces_split_on_file_boundaries() -> None:
    assert sector_pieces(0, 1024) == [(0, 512), (512, 1024)]
    assert sector_pieces(100, 1000) == [(0, 412), (412, 924), (924, 1000)]
    assert sector_pieces(512, 10) == [(0, 10)]
    assert sector_pieces(0, 0) == []


@pytest.mark.parametrize("keep", [0, 1, 5])
def test_torn_prefix_lands_whole_sectors(disk, keep) -> None:
    old, new = b"\x11" * PAGE, b"\x22" * PAGE
    plan = FaultPlan()
    plan.torn(nth=2, keep=keep)
    f = _open(plan, disk)
    f.write(0, old)
    with pytest.raises(StorageIOError):
        f.write(0, new)
    assert _read(f, 0, PAGE) == new[: keep * SECTOR] + old[keep * SECTOR :]
    assert plan.injected[0].effect == "torn" and plan.injected[0].errno == errno.EIO


def test_torn_silent_returns_without_error(disk) -> None:
    plan = FaultPlan()
    plan.torn(nth=1, keep=3, raise_error=False)
    f = _open(plan, disk)
    f.write(0, b"\x33" * PAGE)  # the lying disk: no exception
    assert f.size() == 3 * SECTOR
    (inj,) = plan.injected
    assert inj.errno is None and inj.effect == "torn" and "0+1536" in inj.detail


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), offset=st.integers(0, 3 * PAGE), length=st.integers(1, 2 * PAGE))
def test_torn_any_is_a_proper_subset_of_sectors(seed, offset, length) -> None:
    disk = CrashDisk()
    plan = FaultPlan(seed)
    plan.torn(nth=2, pattern="any")
    f = _open(plan, disk)
    old = b"\x00" * (offset + length)
    f.write(0, old)
    new = b"\xab" * length
    with pytest.raises(StorageIOError):
        f.write(offset, new)
    got = _read(f, offset, length)
    landed = [got[lo:hi] == new[lo:hi] for lo, hi in sector_pieces(offset, length)]
    for (lo, hi), ok in zip(sector_pieces(offset, length), landed, strict=True):
        assert got[lo:hi] in (new[lo:hi], old[offset + lo : offset + hi]), (
            "a sector is all old or all new"
        )
        assert ok or got[lo:hi] == bytes(hi - lo)
    assert not all(landed), "a torn write never lands whole"


# -- bit flips ---------------------------------------------------------------


def test_bitflip_flips_exactly_one_bit(disk) -> None:
    plan = FaultPlan(5)
    plan.bitflip(nth=1)
    f = _open(plan, disk)
    plan.disarm()
    f.write(0, _data(PAGE))
    plan.arm()
    buf = bytearray(PAGE)
    assert f.read_into(0, memoryview(buf)) == PAGE
    diff = int.from_bytes(bytes(a ^ b for a, b in zip(buf, _data(PAGE), strict=True)), "big")
    assert diff.bit_count() == 1
    assert _read(f, 0, PAGE) == _data(PAGE), "the flip is in the returned buffer, not on disk"
    (inj,) = plan.injected
    assert (inj.effect, inj.errno, inj.kind) == ("bitflip", None, "read")


def test_bitflip_reproducible_by_seed() -> None:
    def flipped(seed: int) -> bytes:
        plan = FaultPlan(seed)
        plan.bitflip(probability=0.5)
        f = _open(plan, CrashDisk())
        plan.disarm()
        f.write(0, bytes(PAGE))
        plan.arm()
        out = bytearray()
        for _ in range(10):
            buf = bytearray(PAGE)
            f.read_into(0, memoryview(buf))
            out += buf
        return bytes(out)

    assert flipped(1) == flipped(1)
    assert flipped(1) != flipped(2)


def test_bitflip_at_eof_injects_nothing(disk) -> None:
    plan = FaultPlan()
    plan.bitflip(nth=1)
    f = _open(plan, disk)
    assert f.read_into(0, memoryview(bytearray(10))) == 0
    assert plan.injected == []


# -- records, sites, reproducibility -------------------------------------------


def _workload(plan: FaultPlan) -> list[str]:
    opener = plan.opener(CrashDisk().opener)
    f, wal = opener("db", True), opener("db-wal", True)
    outcome = []
    for i in range(40):
        for call, args in (
            (wal.write, (i * 100, _data(100, i))),
            (wal.sync, ()),
            (f.write, (i * PAGE, _data(PAGE, i))),
            (f.read_into, (i * PAGE, memoryview(bytearray(PAGE)))),
        ):
            try:
                outcome.append(repr(call(*args)))
            except StorageIOError as exc:
                outcome.append(f"E{exc.errno}")
    return outcome


def _mixed_plan(seed: int) -> FaultPlan:
    plan = FaultPlan(seed)
    plan.fail("sync", probability=0.1)
    plan.short("read", probability=0.1)
    plan.torn(probability=0.1, pattern="any")
    plan.bitflip(probability=0.1)
    plan.fail("write", probability=0.05, errno=errno.ENOSPC)
    return plan


def test_seeded_plans_are_reproducible() -> None:
    a, b, c = _mixed_plan(42), _mixed_plan(42), _mixed_plan(43)
    out_a, out_b, out_c = _workload(a), _workload(b), _workload(c)
    assert out_a == out_b
    assert a.injected == b.injected
    assert a.injected != c.injected or out_a != out_c
    assert {i.effect for i in a.injected} == {"error", "short", "torn", "bitflip"}
    assert a.calls == b.calls == {"open": 2, "write": 80, "sync": 40, "read": 40}


def test_records_are_consistent() -> None:
    plan = _mixed_plan(9)
    _workload(plan)
    assert len(plan.injected) >= 4, "the mixed plan must inject something to check"
    for inj in plan.injected:
        assert 1 <= inj.call_index <= plan.calls[inj.kind]
        assert inj.file in ("db", "db-wal")
        if inj.offset is not None:
            assert inj.page == inj.offset // PAGE
        assert (inj.errno is None) == (inj.effect in ("bitflip", "short") and inj.kind == "read")


def _engine_like_caller(f: FaultyFile) -> None:
    f.write(0, b"x")


def test_call_sites_are_recorded() -> None:
    plan = FaultPlan(site_depth=1)
    plan.fail("write", nth=2)
    f = _open(plan, CrashDisk())
    _engine_like_caller(f)
    with pytest.raises(StorageIOError):
        _engine_like_caller(f)
    f.sync()
    # outside the engine the site is the first caller outside faults/
    site = "test_faultyfile._engine_like_caller"
    assert plan.sites[("write", site)] == 2
    assert plan.injected[0].site == site
    assert plan.distinct_sites() == {("write", site)}
    assert sum(plan.sites.values()) == plan.calls["write"] + plan.calls["sync"] + plan.calls["open"]


def test_no_sites_by_default(disk) -> None:
    plan = FaultPlan()
    f = _open(plan, disk)
    f.write(0, b"x")
    assert not plan.sites


def test_default_inner_opener_is_direct_file(tmp_path) -> None:
    plan = FaultPlan()
    f = plan.opener()(str(tmp_path / "real.db"), True)
    try:
        f.write(0, b"hello")
        assert _read(f, 0, 5) == b"hello"
        assert f.direct == default_opener("auto")(str(tmp_path / "other.db"), True).direct
    finally:
        f.close()
        f.close()
    assert (tmp_path / "real.db").read_bytes() == b"hello"

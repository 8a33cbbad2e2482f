"""`engine.wal` pinned exactly: where each record lands (rule 7's sector
rule, around a sync and around a reopen), what a failed append leaves in
the file, the preallocation, rule 5a's damaged durable record, the
follower's reads (rule 9), and the log's counters and small entry points.
Written against the mutants the unit tests let through (docs/verification.md,
"Mutation score")."""

from __future__ import annotations

import errno
import zlib

import pytest

from engine.codec import MAX_KEY_SIZE, PAGE_SIZE, seal
from engine.disk import SECTOR, DirectFile
from engine.errors import CorruptionError, NeedsRecoveryError, StorageIOError
from engine.wal import (
    CKPT_BEGIN,
    CKPT_END,
    CKPT_IMAGE,
    COMMIT,
    HEADER_BYTES,
    OP_LOAD,
    OP_PUT,
    SPILL,
    LoggedStore,
    Wal,
    decode_ops,
    encode_ops,
    first_record,
    follow,
    read_base,
    scan,
)
from faults.io import FaultPlan

_REC = 25  # record header bytes: length u32 | crc u32 | lsn u64 | durable u64 | type u8


class SpyFile:
    """A `BlockFile` forwarding to a real one, logging writes and reads and
    running `on_sync` (once) inside the next `sync`, as a thread committing
    while the leader's fsync runs would."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.direct = inner.direct
        self.writes: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int]] = []
        self.on_sync = None

    def read_into(self, offset, buf):
        self.reads.append((offset, len(buf)))
        return self.inner.read_into(offset, buf)

    def write(self, offset, data):
        self.writes.append((offset, len(data)))
        self.inner.write(offset, data)

    def sync(self):
        hook, self.on_sync = self.on_sync, None
        if hook is not None:
            hook()
        self.inner.sync()

    def size(self):
        return self.inner.size()

    def extend(self, new_size):
        self.inner.extend(new_size)

    def truncate(self, new_size):
        self.inner.truncate(new_size)

    def close(self):
        self.inner.close()


def _payload(i: int, size: int = 40) -> bytes:
    return encode_ops([(OP_PUT, "t", b"k%04d" % i, bytes([i % 251 + 1]) * size)])


def _wal(tmp_path, sync: str = "off", name: str = "log") -> Wal:
    wal = Wal(SpyFile(DirectFile.open(tmp_path / name, True, "auto")), sync)
    wal.reset(0, sync=False)
    return wal


def _page(fill: int) -> bytes:
    page = bytearray([fill]) * PAGE_SIZE
    seal(page)
    return bytes(page)


def _next_sector(pos: int) -> int:
    return pos + (-pos) % SECTOR


# -- rule 7: where records land -----------------------------------------------------


def test_unsynced_records_are_packed_and_a_synced_sector_is_never_rewritten(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(1))
    wal.commit(_payload(2))
    first = scan(wal.read_all())[1]
    assert [r.pos for r in first] == [HEADER_BYTES, HEADER_BYTES + _REC + len(_payload(1))]
    assert wal.end == first[1].pos + _REC + len(_payload(2))
    wal.sync_to(2, force=True)
    synced = wal.read_all()[: wal.end]
    wal.commit(_payload(3))
    data = wal.read_all()
    records = scan(data)[1]
    assert [r.lsn for r in records] == [1, 2, 3]
    assert records[2].pos == _next_sector(first[1].pos + _REC + len(_payload(2))), "rule 7"
    assert data[: len(synced)] == synced, "the synced sector was written again"
    assert wal.end == records[2].pos + _REC + len(_payload(3))
    wal.close()


def test_a_commit_during_the_fsync_starts_past_the_sector_being_synced(tmp_path):
    """Rule 7's "or syncing": a record appended while the leader's fsync
    runs must not rewrite the sector that fsync is making durable."""
    wal = _wal(tmp_path)
    lsn = wal.commit(_payload(1))
    wal.file.on_sync = lambda: wal.commit(_payload(2))
    wal.sync_to(lsn, force=True)
    assert wal.durable_lsn == 1 and wal.lsn == 2
    records = scan(wal.read_all())[1]
    assert [r.lsn for r in records] == [1, 2]
    assert records[1].pos == HEADER_BYTES + SECTOR
    wal.close()


def test_records_written_one_sector_at_a_time_keep_only_the_partial_sector(tmp_path):
    """A record that ends exactly on a sector boundary leaves no tail: the
    next one is written from that boundary, alone, even before any sync."""
    wal = _wal(tmp_path)
    exact = SECTOR - _REC  # payload of a record filling one sector
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (exact - 2 - 1 - 4 - 1 - 4))])
    assert len(payload) == exact
    wal.commit(payload)
    wal.commit(_payload(2))
    offsets = [off for off, _ in wal.file.writes]
    assert offsets[-2:] == [HEADER_BYTES, HEADER_BYTES + SECTOR]
    assert [len_ for _, len_ in wal.file.writes[-2:]] == [SECTOR, SECTOR]
    records = scan(wal.read_all())[1]
    assert [r.pos for r in records] == [HEADER_BYTES, HEADER_BYTES + SECTOR]
    wal.close()


def test_a_long_append_keeps_its_partial_last_sector_for_the_next(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(1, size=1500))  # three sectors and a bit
    end = HEADER_BYTES + _REC + len(_payload(1, size=1500))
    assert wal.end == end
    wal.commit(_payload(2))
    start, length = wal.file.writes[-1]
    assert start == end - end % SECTOR, "the next write rewrites only the partial sector"
    assert length == _next_sector(end + _REC + len(_payload(2))) - start
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2]
    wal.close()


def test_start_resumes_after_the_valid_records_and_past_their_sector(tmp_path):
    """A reopened log's records were there before: they count as durable, so
    the first new record starts at the next sector (rule 7)."""
    wal = _wal(tmp_path)
    for i in range(3):
        wal.commit(_payload(i))
    wal.close()
    file = SpyFile(DirectFile.open(tmp_path / "log", False, "auto"))
    again = Wal(file, "off")
    data = again.read_all()
    base, records, end = scan(data)
    again.start(base, end, records[-1].lsn, data)
    assert (again.lsn, again.durable_lsn, again.end) == (3, 3, end)
    assert again.commit(_payload(3)) == 4
    records = scan(again.read_all())[1]
    assert [r.lsn for r in records] == [1, 2, 3, 4]
    assert records[3].pos == _next_sector(end)
    again.close()


def test_start_under_full_sync_writes_nothing_below_the_new_tail(tmp_path):
    """After a reopen the zeros of the preallocation begin at the new tail,
    never inside the sector holding the records found (rule 7)."""
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.close()
    file = SpyFile(DirectFile.open(tmp_path / "log", False, "auto"))
    again = Wal(file, "full")
    data = again.read_all()
    base, records, end = scan(data)
    again.start(base, end, None, data)  # no record given: appends continue at base + 1
    assert (again.lsn, again.durable_lsn) == (0, 0)
    again.start(base, end, 1, data)
    again.commit(_payload(1))
    assert file.writes and min(off for off, _ in file.writes) == _next_sector(end)
    assert [r.lsn for r in scan(again.read_all())[1]] == [1, 2]
    again.close()


def test_start_without_an_end_is_a_fresh_header(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.start(9)
    data = wal.read_all()
    assert len(data) == HEADER_BYTES and scan(data) == (9, [], HEADER_BYTES)
    assert (wal.base_lsn, wal.lsn, wal.end) == (9, 9, HEADER_BYTES)
    assert wal.commit(_payload(1)) == 10
    wal.close()


def test_reset_truncates_syncs_and_forgets_the_spills(tmp_path):
    wal = _wal(tmp_path)
    wal.spill(4, memoryview(_page(4)))
    wal.commit(_payload(0))
    syncs = wal.syncs
    wal.reset(5)
    assert wal.syncs == syncs + 1
    assert wal.file.size() == HEADER_BYTES
    assert (wal.base_lsn, wal.lsn, wal.durable_lsn, wal.end) == (5, 5, 5, HEADER_BYTES)
    assert wal.spilled_pages() == []
    assert wal.commit(_payload(1)) == 6
    records = scan(wal.read_all())[1]
    assert [(r.lsn, r.pos) for r in records] == [(6, HEADER_BYTES)]
    wal.reset(6, sync=False)
    assert wal.syncs == syncs + 1
    wal.close()


# -- sync_to -------------------------------------------------------------------------


def test_sync_to_syncs_only_when_the_mode_or_force_asks(tmp_path):
    wal = _wal(tmp_path, sync="normal")
    lsn = wal.commit(_payload(0))
    wal.sync_to(lsn)
    assert wal.syncs == 0 and wal.durable_lsn == 0
    wal.sync_to(lsn, force=True)
    assert wal.syncs == 1 and wal.durable_lsn == lsn
    wal.sync_to(lsn, force=True)
    assert wal.syncs == 1, "an LSN already durable costs no fsync"
    assert wal.commits == 1
    wal.close()
    full = _wal(tmp_path, sync="full", name="full")
    lsn = full.commit(_payload(0))
    full.sync_to(lsn)
    assert full.syncs == 1 and full.durable_lsn == lsn
    full.close()


def test_checkpoint_end_durable_syncs_everything_appended(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=False)
    assert wal.syncs == 0 and wal.durable_lsn == 0
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=True)
    assert wal.syncs == 1 and wal.durable_lsn == wal.lsn == 5
    kinds = [r.rtype for r in scan(wal.read_all())[1]]
    assert kinds == [COMMIT, CKPT_BEGIN, CKPT_END, CKPT_BEGIN, CKPT_END]
    wal.close()


# -- preallocation (sync="full") ------------------------------------------------------


def test_full_sync_preallocates_zeros_once_per_64_kib(tmp_path):
    wal = _wal(tmp_path, sync="full")
    wal.commit(_payload(0))
    size = wal.file.size()
    assert size % (64 * 1024) == 0 and size >= wal.end + 64 * 1024
    assert wal.read_all()[wal.end :] == bytes(size - wal.end), "zeros past the tail"
    writes = len(wal.file.writes)
    for i in range(1, 20):
        wal.commit(_payload(i))
    assert len(wal.file.writes) == writes + 19, "one write per commit inside the preallocation"
    assert wal.file.size() == size
    assert [r.lsn for r in scan(wal.read_all())[1]] == list(range(1, 21))
    wal.close()
    off = _wal(tmp_path, sync="off", name="off")
    off.commit(_payload(0))
    assert off.file.size() == _next_sector(off.end), "no preallocation without sync='full'"
    off.close()


def test_a_failed_preallocation_is_not_tried_again_and_the_append_goes_on(tmp_path):
    plan = FaultPlan()
    plan.fail("write", 2, errno=errno.ENOSPC)  # 1: reset's header; 2: the preallocation
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(SpyFile(opener(str(tmp_path / "log"), True)), "full")
    wal.reset(0, sync=False)
    for i in range(3):
        wal.commit(_payload(i))
    assert len(plan.injected) == 1
    assert len(wal.file.writes) == 1 + 1 + 3, "header, the failed preallocation, three appends"
    assert wal.file.size() == _next_sector(wal.end)
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2, 3]
    wal.close()


def test_preallocation_follows_a_tail_that_moved_past_the_zeros(tmp_path):
    """The zeros start at the later of the zeroed end and the tail, and cover
    at least 64 KiB past what the append needs."""
    wal = _wal(tmp_path, sync="full")
    wal.commit(_payload(0))
    size = wal.file.size()
    big = encode_ops([(OP_PUT, "t", b"big", b"x" * 140_000)])  # past the first 128 KiB
    wal.commit(big)
    assert wal.file.size() >= wal.end + 64 * 1024
    assert wal.file.size() % (64 * 1024) == 0 and wal.file.size() > size
    data = wal.read_all()
    assert data[wal.end :] == bytes(len(data) - wal.end)
    assert [r.lsn for r in scan(data)[1]] == [1, 2]
    wal.close()


# -- a failed append (undo, rule 6) ----------------------------------------------------


def _faulty_wal(tmp_path, plan: FaultPlan) -> Wal:
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(SpyFile(opener(str(tmp_path / "log"), True)), "off")
    wal.reset(0, sync=False)
    wal.commit(_payload(0))
    return wal


def test_a_failed_append_that_landed_is_erased_and_the_log_goes_on(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR)  # the whole sector lands, then the write raises
    wal = _faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError) as info:
        wal.commit(_payload(1))
    assert not isinstance(info.value, NeedsRecoveryError)
    assert not wal.failed and wal.lsn == 1
    data = wal.read_all()
    assert [r.lsn for r in scan(data)[1]] == [1], "the failed record is gone from the file"
    end = HEADER_BYTES + _REC + len(_payload(0))
    assert data[end:HEADER_BYTES + SECTOR] == bytes(HEADER_BYTES + SECTOR - end)
    assert wal.commit(_payload(2)) == 2
    records = scan(wal.read_all())[1]
    assert [r.lsn for r in records] == [1, 2] and records[1].pos == end
    wal.close()


def test_a_failed_append_is_cut_off_when_it_cannot_be_overwritten(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR, errno=errno.ENOSPC)
    plan.fail("write", 4, errno=errno.ENOSPC)  # the overwrite: a full disk
    wal = _faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError) as info:
        wal.commit(_payload(1))
    assert not isinstance(info.value, NeedsRecoveryError) and not wal.failed
    end = HEADER_BYTES + _REC + len(_payload(0))
    assert wal.file.size() == end, "the file is cut after the last good record"
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1]
    assert wal.commit(_payload(2)) == 2
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2]
    wal.close()


def test_a_failed_append_that_cannot_be_undone_poisons_the_log(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR)
    plan.fail("write", 4)
    plan.fail("truncate", 2)  # 1: reset's
    wal = _faulty_wal(tmp_path, plan)
    with pytest.raises(NeedsRecoveryError):
        wal.commit(_payload(1))
    assert wal.failed and wal.lsn == 1
    with pytest.raises(NeedsRecoveryError):
        wal.commit(_payload(2))
    wal.close()


def test_a_failed_erase_sync_falls_back_to_the_cut(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR)
    plan.fail("sync", 1)  # the overwrite's sync
    wal = _faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError):
        wal.commit(_payload(1))
    assert not wal.failed
    assert wal.file.size() == HEADER_BYTES + _REC + len(_payload(0))
    wal.close()


# -- rule 5a: a damaged record that was durable ---------------------------------------


def _durable_log(tmp_path, n: int = 3) -> tuple[bytes, list]:
    """n commits, each synced before the next: record i+1 says i is durable."""
    wal = _wal(tmp_path)
    for i in range(n):
        wal.sync_to(wal.commit(_payload(i)), force=True)
    data = wal.read_all()
    wal.close()
    return data, scan(data)[1]


def _flip(data: bytes, at: int) -> bytes:
    bad = bytearray(data)
    bad[at] ^= 0x40
    return bytes(bad)


def test_a_damaged_durable_record_is_corruption(tmp_path):
    data, records = _durable_log(tmp_path)
    with pytest.raises(CorruptionError, match="record 2 .* durable .*record 3"):
        scan(_flip(data, records[1].payload_at + 2))  # record 3 says 2 was durable (== 2)


def test_a_damaged_last_record_is_a_torn_tail(tmp_path):
    data, records = _durable_log(tmp_path)
    base, got, end = scan(_flip(data, records[2].payload_at + 2))
    assert [r.lsn for r in got] == [1, 2]
    assert end == records[1].payload_at + records[1].length, "appends resume after the last good one"


def test_a_damaged_record_no_later_one_vouches_for_ends_the_scan(tmp_path):
    wal = _wal(tmp_path)
    for i in range(4):
        wal.commit(_payload(i))  # nothing synced: every record says durable 0
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    _, got, end = scan(_flip(data, records[1].payload_at + 2))
    assert [r.lsn for r in got] == [1] and end == records[1].pos


def test_rule_5a_looks_256_records_past_the_break(tmp_path):
    wal = _wal(tmp_path)
    wal.sync_to(wal.commit(_payload(0)), force=True)
    for i in range(1, 257):  # LSNs 2..257 say only 1 was durable
        wal.commit(_payload(i, size=4))
    wal.sync_to(wal.lsn, force=True)
    wal.commit(_payload(999, size=4))  # LSN 258 says 257 was durable: 2 + 256
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    assert records[-1].lsn == 258
    with pytest.raises(CorruptionError, match="record 258 says"):
        scan(_flip(data, records[1].payload_at + 2))


def test_rule_5a_finds_a_voucher_whose_payload_is_zeros(tmp_path):
    """An empty checkpoint's END (payload four zero bytes, then the file's
    zeros) still counts: the search stops only past trailing zeros."""
    wal = _wal(tmp_path)
    wal.sync_to(wal.commit(_payload(0)), force=True)
    wal.sync_to(wal.commit(_payload(1)), force=True)
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=False)  # LSN 4 says 2 was durable
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    assert data[records[-1].payload_at :] == bytes(len(data) - records[-1].payload_at)
    with pytest.raises(CorruptionError, match="record 2 .*record 3 says"):
        scan(_flip(data, records[1].payload_at + 2))
    # only the END vouches once BEGIN is damaged too
    twice = _flip(_flip(data, records[1].payload_at + 2), records[2].payload_at)
    with pytest.raises(CorruptionError, match="record 4 says"):
        scan(twice)


def test_scan_steps_over_a_gap_only_to_the_next_lsn(tmp_path):
    data, records = _durable_log(tmp_path)
    assert [r.pos % SECTOR for r in records] == [0, 0, 0], "each synced record in a sector of its own"
    # garbage in the gap after record 1 (a torn tail a recovery cut) is stepped over
    junk = bytearray(data)
    gap = records[0].payload_at + records[0].length
    junk[gap : gap + 40] = b"\xaa" * 40
    assert [r.lsn for r in scan(bytes(junk))[1]] == [1, 2, 3]
    # a valid record of the wrong LSN at the next sector is not stepped to (and
    # here it says the missing record 2 was durable: rule 5a)
    swapped = data[: records[1].pos] + data[records[2].pos :]
    with pytest.raises(CorruptionError, match=f"record 2 at offset {gap} "):
        scan(swapped)


# -- first_record and read_base --------------------------------------------------------


def test_first_record_and_read_base(tmp_path):
    wal = _wal(tmp_path)
    wal.reset(41, sync=False)
    assert read_base(wal.file) == 41
    assert first_record(wal.read_all()) is None
    wal.checkpoint_begin(0)
    data = wal.read_all()
    assert first_record(data) == (42, CKPT_BEGIN)
    broken = _flip(data, 10)  # the header's base LSN: the header no longer holds
    assert scan(broken)[0] is None
    assert first_record(broken) == (42, CKPT_BEGIN), "read even past a damaged header"
    wal.file.write(0, broken[:HEADER_BYTES])
    assert read_base(wal.file) is None
    raw = b"DRGNWAL2" + (41).to_bytes(8, "little")  # another magic, its checksum right
    other = raw + zlib.crc32(raw).to_bytes(4, "little")
    assert scan(other + data[len(other) :])[0] is None
    wal.file.write(0, other)
    assert read_base(wal.file) is None
    wal.file.truncate(10)
    assert read_base(wal.file) is None
    wal.close()


# -- follow (rule 9) ---------------------------------------------------------------------


def test_follow_returns_each_new_record_with_its_payload_and_end(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.sync_to(1, force=True)  # record 2 starts at the next sector
    wal.commit(_payload(1))
    wal.spill(3, memoryview(_page(3)))
    data = wal.read_all()
    records = scan(data)[1]
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [(lsn, rtype) for lsn, rtype, _, _ in got] == [(1, COMMIT), (2, COMMIT), (3, SPILL)]
    for (_, _, payload, end), rec in zip(got, records, strict=True):
        assert payload == data[rec.payload_at : rec.payload_at + rec.length]
        assert end == rec.payload_at + rec.length
    # from where a reader stopped: only what it has not seen
    later = follow(wal.file, got[0][3], 2)
    assert [lsn for lsn, _, _, _ in later] == [2, 3] and later == got[1:]
    assert follow(wal.file, got[2][3], 4) == []
    assert follow(wal.file, got[0][3], 7) == [], "a record of another LSN is not the next one"
    wal.close()


def test_follow_reads_the_log_16_kib_at_a_time(tmp_path):
    wal = _wal(tmp_path)
    for i in range(60):
        wal.commit(_payload(i, size=100))  # about 8 KiB
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert len(got) == 60
    # one read for the records within 16 KiB, one more finding nothing past them
    assert wal.file.reads == [(HEADER_BYTES, 16 * 1024), (_next_sector(wal.end), 16 * 1024)]
    for i in range(60, 200):
        wal.commit(_payload(i, size=100))  # about 28 KiB in all
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [g[0] for g in got] == list(range(1, 201))
    assert len(wal.file.reads) == 3, wal.file.reads
    assert wal.file.reads[1][0] > HEADER_BYTES + 16 * 1024 - 200, "a window is read again only when used up"
    wal.close()


def test_follow_reads_a_record_longer_than_its_window(tmp_path):
    wal = _wal(tmp_path)
    big = encode_ops([(OP_PUT, "t", b"big", bytes(range(256)) * 100)])  # 25.6 KB
    wal.commit(_payload(0))
    wal.commit(big)
    wal.commit(_payload(2))
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [lsn for lsn, _, _, _ in got] == [1, 2, 3]
    assert got[1][2] == big
    assert follow(wal.file, got[0][3], 2)[0][2] == big
    wal.close()


def test_follow_stops_at_a_torn_record_and_a_lying_length(tmp_path):
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.commit(_payload(1))
    data = wal.read_all()
    records = scan(data)[1]
    wal.file.write(0, _flip(data, records[1].payload_at + 1)[:HEADER_BYTES + SECTOR])
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [lsn for lsn, _, _, _ in got] == [1]
    # a header claiming 100 MB past the end of the file: nothing allocated, nothing returned
    lying = bytearray(data[: HEADER_BYTES + SECTOR])
    lying[records[1].pos : records[1].pos + 4] = (100 << 20).to_bytes(4, "little")
    wal.file.write(0, bytes(lying))
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert follow(wal.file, 0, 1) == [], "offsets inside the header hold no record"
    wal.close()


# -- spills, images and the store -------------------------------------------------------


def test_many_spills_and_images_are_written_256_to_a_write(tmp_path):
    wal = _wal(tmp_path)
    pages = [(pid, _page(pid % 200 + 1)) for pid in range(300)]
    writes = len(wal.file.writes)
    wal.spill_many(pages)
    assert len(wal.file.writes) == writes + 2
    buf = memoryview(bytearray(PAGE_SIZE))
    for pid in (0, 255, 256, 299):
        assert wal.read_spill(pid, buf) and bytes(buf) == _page(pid % 200 + 1)
    writes = len(wal.file.writes)
    offsets = wal.checkpoint_images(pages[:257])
    assert len(wal.file.writes) == writes + 2 and len(offsets) == 257
    data = wal.read_all()
    for (pid, image), at in zip(pages, offsets, strict=False):
        assert data[at : at + PAGE_SIZE] == image
        assert int.from_bytes(data[at - 4 : at], "little") == pid
    records = scan(data)[1]
    assert [r.rtype for r in records] == [SPILL] * 300 + [CKPT_IMAGE] * 257
    assert wal.checkpoint_image(7, _page(7)) == records[-1].payload_at + records[-1].length + _REC + 4
    wal.close()


def test_damaged_spills_and_images_are_corruption(tmp_path):
    wal = _wal(tmp_path)
    wal.spill(2, memoryview(_page(2)))
    at = wal.checkpoint_image(3, _page(3))
    buf = memoryview(bytearray(PAGE_SIZE))
    wal.read_image(at, buf)
    assert bytes(buf) == _page(3)
    data = wal.read_all()
    spill_at = wal.spilled[2]
    wal.file.write(0, _flip(data, spill_at + 100)[: _next_sector(len(data))])
    with pytest.raises(CorruptionError, match="page 2"):
        wal.read_spill(2, buf)
    wal.file.write(0, _flip(data, at + 100)[: _next_sector(len(data))])
    with pytest.raises(CorruptionError):
        wal.read_image(at, buf)
    wal.file.truncate(at + 100)
    with pytest.raises(CorruptionError):
        wal.read_image(at, buf)  # short
    wal.close()


class _Home:
    """The pager's two read calls, answering from a dict of home images."""

    def __init__(self, pages: dict[int, bytes]) -> None:
        self.pages = pages

    def read(self, page_id, buf):
        buf[:] = self.pages[page_id]

    def read_ahead(self, first, count, buf):
        return [pid for pid in range(first, first + count) if pid in self.pages]


def test_logged_store_prefers_the_spilled_image(tmp_path):
    wal = _wal(tmp_path)
    store = LoggedStore(_Home({1: _page(1), 2: _page(2), 3: _page(3)}), wal)
    store.write_page(2, memoryview(_page(22)))
    assert wal.spilled_pages() == [2] and wal.lsn == 1
    buf = memoryview(bytearray(PAGE_SIZE))
    store.read_page(2, buf)
    assert bytes(buf) == _page(22)
    store.read_page(1, buf)
    assert bytes(buf) == _page(1)
    assert store.read_ahead(1, 3, buf) == [1, 3], "a spilled page's home copy is stale"
    wal.forget(2)
    store.read_page(2, buf)
    assert bytes(buf) == _page(2)
    wal.close()


def test_a_short_spill_read_is_corruption(tmp_path):
    wal = _wal(tmp_path)
    wal.spill(2, memoryview(_page(2)))
    wal.file.truncate(wal.spilled[2] + PAGE_SIZE - 1)
    with pytest.raises(CorruptionError, match="page 2"):
        wal.read_spill(2, memoryview(bytearray(PAGE_SIZE)))
    wal.close()


# -- follow agrees with scan --------------------------------------------------------------


def _one_record(tmp_path, payload: bytes, name: str) -> bytes:
    """The bytes of one commit record (LSN 1, durable 0), as a log holds them."""
    wal = _wal(tmp_path, name=name)
    wal.commit(payload)
    data = wal.read_all()
    wal.close()
    rec = scan(data)[1][0]
    return data[rec.pos : rec.payload_at + rec.length]


def _log_file(tmp_path, name: str, data: bytes) -> SpyFile:
    file = SpyFile(DirectFile.open(tmp_path / name, True, "auto"))
    file.write(0, data)
    file.writes.clear()
    return file


def test_follow_finds_no_record_a_full_sector_past_an_aligned_offset(tmp_path):
    """Rule 7's gap only follows a partial sector: a record one whole sector
    past where the next one should start is not the next one, for the
    follower as for recovery's scan."""
    wal = _wal(tmp_path, name="h")
    header = wal.read_all()[:HEADER_BYTES]
    wal.close()
    record = _one_record(tmp_path, _payload(0), "r")
    crafted = header + bytes(SECTOR) + record
    assert scan(crafted)[1] == []
    file = _log_file(tmp_path, "log", crafted)
    assert follow(file, HEADER_BYTES, 1) == []
    assert [lsn for lsn, _, _, _ in follow(file, HEADER_BYTES + SECTOR, 1)] == [1]
    file.close()


def test_follow_returns_a_record_that_ends_at_the_end_of_the_file(tmp_path):
    wal = _wal(tmp_path)
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (SECTOR - _REC - 12))])
    wal.commit(payload)
    assert wal.file.size() == wal.end == HEADER_BYTES + SECTOR
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [(lsn, p) for lsn, _, p, _ in got] == [(1, payload)]
    assert wal.file.reads == [(HEADER_BYTES, 16 * 1024), (HEADER_BYTES + SECTOR, 16 * 1024)]
    wal.close()


def test_follow_reads_a_long_record_that_ends_at_the_end_of_the_file(tmp_path):
    wal = _wal(tmp_path)
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (40 * SECTOR - _REC - 12))])
    wal.commit(payload)
    assert wal.file.size() == wal.end
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [(lsn, p) for lsn, _, p, _ in got] == [(1, payload)]
    wal.close()


def test_follow_never_reads_the_claimed_length_of_a_record_past_the_file(tmp_path):
    """A long record still being written (or a length that lies) ends the
    list without a read of its length: a reader allocates 16 KiB at most."""
    wal = _wal(tmp_path)
    wal.commit(_payload(0))
    wal.commit(encode_ops([(OP_PUT, "t", b"big", b"x" * 20_000)]))
    data = wal.read_all()
    second = scan(data)[1][1]
    wal.file.truncate(second.payload_at + second.length - 30)  # its last 30 bytes not yet there
    wal.file.reads.clear()
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert max(n for _, n in wal.file.reads) == 16 * 1024
    lying = bytearray(data[: second.pos + _REC])
    lying[second.pos : second.pos + 4] = (20 << 20).to_bytes(4, "little")  # 20 MB
    wal.file.write(0, bytes(lying))
    wal.file.truncate(len(lying))
    wal.file.reads.clear()
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert max(n for _, n in wal.file.reads) == 16 * 1024
    wal.close()


# -- what decode_ops says ---------------------------------------------------------------


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


@pytest.mark.parametrize("payload, message", [
    (bytes([9, 1]) + b"t", "log: commit record with op 9, tree name of 1 bytes"),
    (bytes([OP_PUT, 0]), "log: commit record with op 1, tree name of 0 bytes"),
    (bytes([OP_PUT, 1]) + b"t" + _u32(0), "log: commit record with a key of 0 bytes"),
    (bytes([OP_PUT, 1]) + b"t" + _u32(1025) + b"k" * 1025, "log: commit record with a key of 1025 bytes"),
    (bytes([OP_PUT, 1]) + b"t" + _u32(1) + b"k" + _u32(2**31), "log: commit record with a value of 2147483648 bytes"),
    # a value of the largest size is allowed: the record is then merely cut short
    (bytes([OP_PUT, 1]) + b"t" + _u32(1) + b"k" + _u32(2**31 - 1), "log: commit record cut short"),
    (bytes([OP_PUT, 1]) + b"t" + _u32(1), "log: malformed commit record"),
    (bytes([OP_PUT, 1]) + b"\xff" + _u32(1) + b"k" + _u32(0), "log: malformed commit record"),
    (bytes([5, 1]) + b"t" + _u32(2) + bytes(15), "log: malformed commit record"),
    (bytes([5, 1]) + b"t" + _u32(1) + _u32(0) + _u32(1), "log: bulk load record with an impossible key or value size"),
    (bytes([5, 1]) + b"t" + _u32(1) + _u32(1025) + _u32(1), "log: bulk load record with an impossible key or value size"),
    (bytes([5, 1]) + b"t" + _u32(1) + _u32(1) + _u32(2**31), "log: bulk load record with an impossible key or value size"),
    (bytes([5, 1]) + b"t" + _u32(1) + _u32(1024) + _u32(2**31 - 1) + b"k" * 1024, "log: bulk load record cut short"),
    (bytes([5, 1]) + b"t" + _u32(2) + _u32(1) + _u32(1) + _u32(5) + _u32(5) + b"ab" + b"v" * 7,
     "log: bulk load record cut short"),
    (bytes([5, 1]) + b"t" + _u32(2) + _u32(1) + _u32(1) + _u32(0) + _u32(0) + b"ba",
     "log: bulk load record with keys out of order"),
], ids=["unknown-op", "empty-name", "empty-key", "key-1025", "value-2-gib", "value-max-cut",
        "no-key-bytes", "bad-utf8", "load-lengths-missing", "load-empty-key", "load-key-1025",
        "load-value-2-gib", "load-largest-cut", "load-values-cut", "load-out-of-order"])
def test_decode_ops_says_which_check_refused(payload, message):
    with pytest.raises(CorruptionError) as info:
        decode_ops(payload)
    assert str(info.value) == message


def test_a_bulk_load_of_the_largest_keys_round_trips():
    keys = [b"a" * MAX_KEY_SIZE, b"b" * MAX_KEY_SIZE]
    ops = [(OP_LOAD, "t", None, (keys, [b"", b"v"]))]
    assert decode_ops(encode_ops(ops)) == ops

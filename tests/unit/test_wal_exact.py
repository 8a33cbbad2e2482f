"""`engine.wal` pinned exactly: where each record lands (rule 7's sector
rule, around a sync and around a reopen), the preallocation, what a failed
append leaves in the file, rule 5a's damaged durable record, spills and
checkpoint images, and what `decode_ops` says when it refuses. Written
against the mutants the unit tests let through (docs/verification.md,
"Mutation score")."""

from __future__ import annotations

import errno
import shutil
import zlib
from pathlib import Path

import pytest
from logfiles import (
    REC,
    SpyFile,
    faulty_wal,
    flip,
    meta_image,
    new_wal,
    next_sector,
    page_image,
    put_payload,
)

import engine
from engine.codec import MAX_KEY_SIZE, PAGE_SIZE
from engine.disk import SECTOR, DirectFile
from engine.errors import CorruptionError, NeedsRecoveryError, StorageIOError
from engine.wal import LoggedStore, Wal
from engine.walformat import (
    CKPT_IMAGE,
    COMMIT,
    HEADER_BYTES,
    OP_LOAD,
    OP_PUT,
    SPILL,
    RecoveryPlan,
    decode_ops,
    encode_ops,
    scan,
)
from faults.io import FaultPlan

# -- rule 7: where records land -----------------------------------------------------


def test_unsynced_records_are_packed_and_a_synced_sector_is_never_rewritten(tmp_path):
    wal = new_wal(tmp_path)
    wal.commit(put_payload(1))
    wal.commit(put_payload(2))
    first = scan(wal.read_all())[1]
    assert [r.pos for r in first] == [HEADER_BYTES, HEADER_BYTES + REC + len(put_payload(1))]
    assert wal.end == first[1].pos + REC + len(put_payload(2))
    wal.sync_to(2, force=True)
    synced = wal.read_all()[: wal.end]
    wal.commit(put_payload(3))
    data = wal.read_all()
    records = scan(data)[1]
    assert [r.lsn for r in records] == [1, 2, 3]
    assert records[2].pos == next_sector(first[1].pos + REC + len(put_payload(2))), "rule 7"
    assert data[: len(synced)] == synced, "the synced sector was written again"
    assert wal.end == records[2].pos + REC + len(put_payload(3))
    wal.close()


def test_a_commit_during_the_fsync_starts_past_the_sector_being_synced(tmp_path):
    """Rule 7's "or syncing": a record appended while the leader's fsync
    runs must not rewrite the sector that fsync is making durable."""
    wal = new_wal(tmp_path)
    lsn = wal.commit(put_payload(1))
    wal.file.on_sync = lambda: wal.commit(put_payload(2))
    wal.sync_to(lsn, force=True)
    assert wal.durable_lsn == 1 and wal.lsn == 2
    records = scan(wal.read_all())[1]
    assert [r.lsn for r in records] == [1, 2]
    assert records[1].pos == HEADER_BYTES + SECTOR
    wal.close()


def test_records_written_one_sector_at_a_time_keep_only_the_partial_sector(tmp_path):
    """A record that ends exactly on a sector boundary leaves no tail: the
    next one is written from that boundary, alone, even before any sync."""
    wal = new_wal(tmp_path)
    exact = SECTOR - REC  # payload of a record filling one sector
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (exact - 2 - 1 - 4 - 1 - 4))])
    assert len(payload) == exact
    wal.commit(payload)
    wal.commit(put_payload(2))
    offsets = [off for off, _ in wal.file.writes]
    assert offsets[-2:] == [HEADER_BYTES, HEADER_BYTES + SECTOR]
    assert [len_ for _, len_ in wal.file.writes[-2:]] == [SECTOR, SECTOR]
    records = scan(wal.read_all())[1]
    assert [r.pos for r in records] == [HEADER_BYTES, HEADER_BYTES + SECTOR]
    wal.close()


def test_a_long_append_keeps_its_partial_last_sector_for_the_next(tmp_path):
    wal = new_wal(tmp_path)
    wal.commit(put_payload(1, size=1500))  # three sectors and a bit
    end = HEADER_BYTES + REC + len(put_payload(1, size=1500))
    assert wal.end == end
    wal.commit(put_payload(2))
    start, length = wal.file.writes[-1]
    assert start == end - end % SECTOR, "the next write rewrites only the partial sector"
    assert length == next_sector(end + REC + len(put_payload(2))) - start
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2]
    wal.close()


def test_start_resumes_after_the_valid_records_and_past_their_sector(tmp_path):
    """A reopened log's records were there before: they count as durable, so
    the first new record starts at the next sector (rule 7)."""
    wal = new_wal(tmp_path)
    for i in range(3):
        wal.commit(put_payload(i))
    wal.close()
    file = SpyFile(DirectFile.open(tmp_path / "log", False, "auto"))
    again = Wal(file, "off")
    data = again.read_all()
    base, records, end = scan(data)
    again.start(base, end, records[-1].lsn, data)
    assert (again.base_lsn, again.lsn, again.durable_lsn, again.end) == (0, 3, 3, end)
    assert again.commit(put_payload(3)) == 4
    records = scan(again.read_all())[1]
    assert [r.lsn for r in records] == [1, 2, 3, 4]
    assert records[3].pos == next_sector(end)
    again.close()


def test_start_under_full_sync_writes_nothing_below_the_new_tail(tmp_path):
    """After a reopen the zeros of the preallocation begin at the new tail,
    never inside the sector holding the records found (rule 7)."""
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.close()
    file = SpyFile(DirectFile.open(tmp_path / "log", False, "auto"))
    again = Wal(file, "full")
    data = again.read_all()
    base, records, end = scan(data)
    again.start(base, end, None, data)  # no record given: appends continue at base + 1
    assert (again.lsn, again.durable_lsn) == (0, 0)
    again.start(base, end, 1, data)
    again.commit(put_payload(1))
    assert file.writes and min(off for off, _ in file.writes) == next_sector(end)
    assert [r.lsn for r in scan(again.read_all())[1]] == [1, 2]
    again.close()


def test_start_without_an_end_is_a_fresh_header(tmp_path):
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.start(9)
    data = wal.read_all()
    assert len(data) == HEADER_BYTES and scan(data) == (9, [], HEADER_BYTES)
    assert (wal.base_lsn, wal.lsn, wal.end) == (9, 9, HEADER_BYTES)
    assert wal.syncs == 0, "the open that starts a log syncs it itself, later"
    assert wal.commit(put_payload(1)) == 10
    wal.close()


def test_reset_truncates_syncs_and_forgets_the_spills(tmp_path):
    wal = new_wal(tmp_path)
    wal.spill(4, memoryview(page_image(4)))
    wal.commit(put_payload(0))
    syncs = wal.syncs
    wal.reset(5)
    assert wal.syncs == syncs + 1
    assert wal.file.size() == HEADER_BYTES
    assert (wal.base_lsn, wal.lsn, wal.durable_lsn, wal.end) == (5, 5, 5, HEADER_BYTES)
    assert wal.spilled_pages() == []
    assert wal.commit(put_payload(1)) == 6
    records = scan(wal.read_all())[1]
    assert [(r.lsn, r.pos) for r in records] == [(6, HEADER_BYTES)]
    wal.reset(6, sync=False)
    assert wal.syncs == syncs + 1
    wal.close()


# -- preallocation (sync="full") ------------------------------------------------------


def test_full_sync_preallocates_zeros_once_per_64_kib(tmp_path):
    wal = new_wal(tmp_path, sync="full")
    wal.commit(put_payload(0))
    size = wal.file.size()
    assert size % (64 * 1024) == 0 and size >= wal.end + 64 * 1024
    assert wal.read_all()[wal.end :] == bytes(size - wal.end), "zeros past the tail"
    writes = len(wal.file.writes)
    for i in range(1, 20):
        wal.commit(put_payload(i))
    assert len(wal.file.writes) == writes + 19, "one write per commit inside the preallocation"
    assert wal.file.size() == size
    assert [r.lsn for r in scan(wal.read_all())[1]] == list(range(1, 21))
    wal.close()
    off = new_wal(tmp_path, sync="off", name="off")
    off.commit(put_payload(0))
    assert off.file.size() == next_sector(off.end), "no preallocation without sync='full'"
    off.close()


def test_a_failed_preallocation_is_not_tried_again_and_the_append_goes_on(tmp_path):
    plan = FaultPlan()
    plan.fail("write", 2, errno=errno.ENOSPC)  # 1: reset's header; 2: the preallocation
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(SpyFile(opener(str(tmp_path / "log"), True)), "full")
    wal.reset(0, sync=False)
    for i in range(3):
        wal.commit(put_payload(i))
    assert len(plan.injected) == 1
    assert len(wal.file.writes) == 1 + 1 + 3, "header, the failed preallocation, three appends"
    assert wal.file.size() == next_sector(wal.end)
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2, 3]
    wal.close()


def test_an_append_that_ends_at_the_end_of_the_zeros_preallocates_nothing(tmp_path):
    wal = new_wal(tmp_path, sync="full")
    wal.commit(put_payload(0))
    zeros = wal.file.size()
    start = HEADER_BYTES  # the partial sector holding record 1, rewritten with record 2
    fill = zeros - start - (REC + len(put_payload(0))) - REC  # record 2 ends at the last zero
    payload = encode_ops([(OP_PUT, "t", b"k", b"z" * (fill - 12))])
    assert len(payload) == fill
    writes = len(wal.file.writes)
    wal.commit(payload)
    assert wal.end == zeros and len(wal.file.writes) == writes + 1 and wal.file.size() == zeros
    wal.commit(put_payload(2))  # past the zeros: preallocate again
    assert len(wal.file.writes) == writes + 3 and wal.file.size() > zeros
    wal.close()


def test_preallocation_follows_a_tail_that_moved_past_the_zeros(tmp_path):
    """The zeros start at the later of the zeroed end and the tail, and cover
    at least 64 KiB past what the append needs."""
    wal = new_wal(tmp_path, sync="full")
    wal.commit(put_payload(0))
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


def test_a_failed_append_that_landed_is_erased_and_the_log_goes_on(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR)  # the whole sector lands, then the write raises
    wal = faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError) as info:
        wal.commit(put_payload(1))
    assert not isinstance(info.value, NeedsRecoveryError)
    assert not wal.failed and wal.lsn == 1
    data = wal.read_all()
    assert [r.lsn for r in scan(data)[1]] == [1], "the failed record is gone from the file"
    end = HEADER_BYTES + REC + len(put_payload(0))
    assert data[end:HEADER_BYTES + SECTOR] == bytes(HEADER_BYTES + SECTOR - end)
    assert wal.commit(put_payload(2)) == 2
    records = scan(wal.read_all())[1]
    assert [r.lsn for r in records] == [1, 2] and records[1].pos == end
    wal.close()


def test_a_failed_append_is_cut_off_when_it_cannot_be_overwritten(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR, errno=errno.ENOSPC)
    plan.fail("write", 4, errno=errno.ENOSPC)  # the overwrite: a full disk
    wal = faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError) as info:
        wal.commit(put_payload(1))
    assert not isinstance(info.value, NeedsRecoveryError) and not wal.failed
    end = HEADER_BYTES + REC + len(put_payload(0))
    assert wal.file.size() == end, "the file is cut after the last good record"
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1]
    assert wal.commit(put_payload(2)) == 2
    assert [r.lsn for r in scan(wal.read_all())[1]] == [1, 2]
    wal.close()


@pytest.mark.parametrize("code, expect", [(errno.ENOSPC, errno.ENOSPC), (0, errno.EIO)])
def test_a_failed_append_that_cannot_be_undone_poisons_the_log(tmp_path, code, expect):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR, errno=code)
    plan.fail("write", 4)
    plan.fail("truncate", 2)  # 1: reset's
    wal = faulty_wal(tmp_path, plan)
    with pytest.raises(NeedsRecoveryError) as info:
        wal.commit(put_payload(1))
    assert info.value.errno == expect, "the append's errno, EIO when it gave none"
    assert info.value.strerror.startswith("log append failed and could not be undone (")
    assert info.value.strerror.endswith("); reopen to recover")
    assert wal.failed and wal.lsn == 1
    with pytest.raises(NeedsRecoveryError):
        wal.commit(put_payload(2))
    wal.close()


def test_a_failed_erase_sync_falls_back_to_the_cut(tmp_path):
    plan = FaultPlan()
    plan.short("write", 3, keep=SECTOR)
    plan.fail("sync", 1)  # the overwrite's sync
    wal = faulty_wal(tmp_path, plan)
    with pytest.raises(StorageIOError):
        wal.commit(put_payload(1))
    assert not wal.failed
    assert wal.file.size() == HEADER_BYTES + REC + len(put_payload(0))
    wal.close()


def test_a_failed_append_after_a_sync_leaves_the_end_at_the_next_sector(tmp_path):
    """`end` is where the next record goes (the database compares it with the
    checkpoint threshold after every commit, failed or not)."""
    plan = FaultPlan()
    plan.fail("write", 3)  # 1: reset's header; 2: the first commit
    wal = faulty_wal(tmp_path, plan)
    wal.sync_to(1, force=True)
    with pytest.raises(StorageIOError):
        wal.commit(put_payload(1))
    assert wal.end == HEADER_BYTES + SECTOR and not wal.failed
    wal.commit(put_payload(2))
    assert [(r.lsn, r.pos) for r in scan(wal.read_all())[1]] == [(1, HEADER_BYTES), (2, HEADER_BYTES + SECTOR)]
    wal.close()


def test_the_header_sector_is_the_header_then_zeros(tmp_path):
    wal = new_wal(tmp_path)
    wal.reset(3, sync=False)
    header = wal.read_all()
    assert len(header) == HEADER_BYTES and header[20:] == bytes(HEADER_BYTES - 20)
    assert header[:8] == b"DRGNWAL1" and int.from_bytes(header[8:16], "little") == 3
    assert int.from_bytes(header[16:20], "little") == zlib.crc32(header[:16])
    wal.close()


# -- rule 5a: a damaged record that was durable ---------------------------------------


def _durable_log(tmp_path, n: int = 3) -> tuple[bytes, list]:
    """n commits, each synced before the next: record i+1 says i is durable."""
    wal = new_wal(tmp_path)
    for i in range(n):
        wal.sync_to(wal.commit(put_payload(i)), force=True)
    data = wal.read_all()
    wal.close()
    return data, scan(data)[1]


def test_a_damaged_durable_record_is_corruption(tmp_path):
    data, records = _durable_log(tmp_path)
    with pytest.raises(CorruptionError, match="record 2 .* durable .*record 3"):
        scan(flip(data, records[1].payload_at + 2))  # record 3 says 2 was durable (== 2)


def test_a_damaged_last_record_is_a_torn_tail(tmp_path):
    data, records = _durable_log(tmp_path)
    base, got, end = scan(flip(data, records[2].payload_at + 2))
    assert [r.lsn for r in got] == [1, 2]
    assert end == records[1].payload_at + records[1].length, "appends resume after the last good one"


def test_lsn_bytes_inside_payloads_do_not_hide_the_voucher(tmp_path):
    """The search for a later record that vouches goes through every place
    its LSN's bytes occur, in order: payload bytes that happen to spell the
    LSN, before and after the real record, are stepped over."""
    spell = (3).to_bytes(8, "little") + (4).to_bytes(8, "little")
    wal = new_wal(tmp_path)
    wal.sync_to(wal.commit(put_payload(0)), force=True)
    wal.sync_to(wal.commit(encode_ops([(OP_PUT, "t", b"two", spell)])), force=True)
    wal.commit(put_payload(3))  # LSN 3 says 2 was durable
    wal.commit(encode_ops([(OP_PUT, "t", b"four", spell)]))  # and so does LSN 4
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    with pytest.raises(CorruptionError, match="record 2 .*record 3 says"):
        scan(flip(data, records[1].payload_at + 3))


def test_a_damaged_record_no_later_one_vouches_for_ends_the_scan(tmp_path):
    wal = new_wal(tmp_path)
    for i in range(4):
        wal.commit(put_payload(i))  # nothing synced: every record says durable 0
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    _, got, end = scan(flip(data, records[1].payload_at + 2))
    assert [r.lsn for r in got] == [1] and end == records[1].pos


def test_rule_5a_looks_256_lsns_past_the_break_for_a_valid_record(tmp_path):
    """The first valid record past a break is searched among the 256 LSNs
    after it: here LSNs 2 to 257 are all damaged and 258 vouches for 2."""
    wal = new_wal(tmp_path)
    wal.sync_to(wal.commit(put_payload(0)), force=True)
    for i in range(1, 257):  # LSNs 2..257 say only 1 was durable
        wal.commit(put_payload(i, size=4))
    wal.sync_to(wal.lsn, force=True)
    wal.commit(put_payload(999, size=4))  # LSN 258 says 257 was durable: 2 + 256
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    assert records[-1].lsn == 258
    for rec in records[1:-1]:
        data = flip(data, rec.payload_at + 2)
    with pytest.raises(CorruptionError, match="record 2 .*record 258 says"):
        scan(data)


def test_rule_5a_finds_a_voucher_however_far_past_the_break(tmp_path):
    """Regression: the search for a voucher stopped 256 LSNs past the break.
    Under sync="normal" a `commit()` makes thousands of records durable with
    one fsync, and the first record that says so comes after them all: a
    damaged record among them was dropped as a torn tail, with every
    acknowledged commit after it."""
    wal = new_wal(tmp_path, sync="normal")
    for i in range(600):  # none durable yet: each says 0
        wal.commit(put_payload(i, size=4))
    wal.sync_to(wal.lsn, force=True)  # commit(): all 600 acknowledged
    wal.commit(put_payload(600))  # LSN 601 says 600 was durable
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    with pytest.raises(CorruptionError, match="record 5 .*record 601 says"):
        scan(flip(data, records[4].payload_at + 2))


def test_a_damaged_commit_that_commit_made_durable_is_not_dropped(tmp_path):
    """The regression above through the API: 600 puts under sync="normal",
    `commit()`, one more put and `commit()`; the files as a crash leaves
    them; a bit of the fifth put's record flipped. Recovery must refuse, not
    open without the 596 acknowledged puts from the fifth on."""
    path = tmp_path / "db"
    db = engine.open(path, sync="normal")
    t = db.tree("t")
    for i in range(600):
        t[b"k%04d" % i] = b"v"
    db.commit()
    t[b"after"] = b"v"
    db.commit()
    crashed = tmp_path / "crashed"
    shutil.copyfile(path, crashed)
    log = bytearray(Path(str(path) + "-wal").read_bytes())
    db.close()
    records = scan(bytes(log))[1]
    assert len(records) == 1 + 601 and records[-1].rtype == COMMIT
    log[records[5].payload_at + 3] ^= 0x10
    Path(str(crashed) + "-wal").write_bytes(bytes(log))
    with pytest.raises(CorruptionError, match="record 6 .*durable"):
        engine.open(crashed, sync="normal")


def test_an_old_record_in_the_damaged_bytes_does_not_hide_the_voucher(tmp_path):
    """The damaged record's bytes may hold anything, a valid copy of a much
    older record too: the search past the break still looks for the LSNs
    after the broken one, and finds the voucher."""
    wal = new_wal(tmp_path)
    for i in range(300):  # LSNs 1..300, none durable when written
        wal.commit(put_payload(i, size=4))
    wal.sync_to(wal.lsn, force=True)
    wal.commit(put_payload(300))  # LSN 301 says 300 was durable
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    first, broken = records[0], records[298]  # LSN 299
    old = data[first.pos : first.payload_at + first.length]
    assert len(old) <= REC + broken.length
    damaged = data[: broken.pos] + old + data[broken.pos + len(old) :]
    with pytest.raises(CorruptionError, match="record 299 .*record 301 says"):
        scan(damaged)


def test_rule_5a_finds_a_voucher_whose_payload_is_zeros(tmp_path):
    """An empty checkpoint's END (payload four zero bytes, then the file's
    zeros) still counts: the search stops only past trailing zeros."""
    wal = new_wal(tmp_path)
    wal.sync_to(wal.commit(put_payload(0)), force=True)
    wal.sync_to(wal.commit(put_payload(1)), force=True)
    wal.checkpoint_begin(0)
    wal.checkpoint_end(0, durable=False)  # LSN 4 says 2 was durable
    data = wal.read_all()
    wal.close()
    records = scan(data)[1]
    assert data[records[-1].payload_at :] == bytes(len(data) - records[-1].payload_at)
    with pytest.raises(CorruptionError, match="record 2 .*record 3 says"):
        scan(flip(data, records[1].payload_at + 2))
    # only the END vouches once BEGIN is damaged too
    twice = flip(flip(data, records[1].payload_at + 2), records[2].payload_at)
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


# -- spills, images and the store -------------------------------------------------------


def test_many_spills_and_images_are_written_256_to_a_write(tmp_path):
    wal = new_wal(tmp_path)
    pages = [(pid, page_image(pid % 200 + 1)) for pid in range(300)]
    writes = len(wal.file.writes)
    wal.spill_many(pages)
    assert len(wal.file.writes) == writes + 2
    buf = memoryview(bytearray(PAGE_SIZE))
    for pid in (0, 255, 256, 299):
        assert wal.read_spill(pid, buf) and bytes(buf) == page_image(pid % 200 + 1)
    writes = len(wal.file.writes)
    offsets = wal.checkpoint_images(pages[:257])
    assert len(wal.file.writes) == writes + 2 and len(offsets) == 257
    data = wal.read_all()
    for (pid, image), at in zip(pages, offsets, strict=False):
        assert data[at : at + PAGE_SIZE] == image
        assert int.from_bytes(data[at - 4 : at], "little") == pid
    records = scan(data)[1]
    assert [r.rtype for r in records] == [SPILL] * 300 + [CKPT_IMAGE] * 257
    assert wal.checkpoint_image(7, page_image(7)) == records[-1].payload_at + records[-1].length + REC + 4
    wal.close()


def test_damaged_spills_and_images_are_corruption(tmp_path):
    wal = new_wal(tmp_path)
    wal.spill(2, memoryview(page_image(2)))
    at = wal.checkpoint_image(3, page_image(3))
    buf = memoryview(bytearray(PAGE_SIZE))
    wal.read_image(at, buf)
    assert bytes(buf) == page_image(3)
    data = wal.read_all()
    spill_at = wal.spilled[2]
    wal.file.write(0, flip(data, spill_at + 100)[: next_sector(len(data))])
    with pytest.raises(CorruptionError, match="page 2"):
        wal.read_spill(2, buf)
    wal.file.write(0, flip(data, at + 100)[: next_sector(len(data))])
    with pytest.raises(CorruptionError) as info:
        wal.read_image(at, buf)
    assert str(info.value) == "log: checkpoint image damaged"
    wal.file.truncate(at + 100)
    with pytest.raises(CorruptionError) as info:
        wal.read_image(at, buf)  # short
    assert str(info.value) == "log: checkpoint image damaged"
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
    wal = new_wal(tmp_path)
    store = LoggedStore(_Home({1: page_image(1), 2: page_image(2), 3: page_image(3)}), wal)
    store.write_page(2, memoryview(page_image(22)))
    assert wal.spilled_pages() == [2] and wal.lsn == 1
    buf = memoryview(bytearray(PAGE_SIZE))
    store.read_page(2, buf)
    assert bytes(buf) == page_image(22)
    store.read_page(1, buf)
    assert bytes(buf) == page_image(1)
    assert store.read_ahead(1, 3, buf) == [1, 3], "a spilled page's home copy is stale"
    wal.forget(2)
    store.read_page(2, buf)
    assert bytes(buf) == page_image(2)
    wal.close()


def test_a_short_spill_read_is_corruption(tmp_path):
    """Even into a frame that already holds the page's image: the bytes a
    short read left unread must not pass for the page's tail."""
    wal = new_wal(tmp_path)
    wal.spill(2, memoryview(page_image(2)))
    frame = memoryview(bytearray(PAGE_SIZE))
    assert wal.read_spill(2, frame) and bytes(frame) == page_image(2)
    wal.file.truncate(wal.spilled[2] + PAGE_SIZE - 1)
    with pytest.raises(CorruptionError, match="page 2"):
        wal.read_spill(2, frame)
    wal.close()


def test_stray_checkpoint_records_are_ignored_by_the_plan(tmp_path):
    """An image or an end with no CKPT_BEGIN before it (a crafted log) makes
    no checkpoint: the commits around them are all redone."""
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.checkpoint_end(0, durable=False)
    wal.checkpoint_image(1, page_image(1))
    wal.commit(put_payload(1))
    data = wal.read_all()
    plan = RecoveryPlan(data, scan(data)[1])
    assert plan.images == [] and [r.lsn for r in plan.commits] == [1, 4]
    # and after a complete checkpoint: its images stay, the strays change nothing
    wal.checkpoint_begin(1)
    wal.checkpoint_image(0, meta_image(16))
    wal.checkpoint_end(1, durable=False)
    wal.commit(put_payload(2))
    wal.checkpoint_image(2, page_image(2))
    wal.checkpoint_end(0, durable=False)
    wal.commit(put_payload(3))
    data = wal.read_all()
    wal.close()
    plan = RecoveryPlan(data, scan(data)[1])
    assert [pid for pid, _ in plan.images] == [0]
    assert [r.lsn for r in plan.commits] == [8, 11]


@pytest.mark.parametrize("image, message", [
    (1, "log: a checkpoint without the metadata page's image"),
    (0, "log: checkpoint image of the metadata page: not a DragonDB file (bad magic)"),
], ids=["no-metadata", "metadata-not-a-meta-page"])
def test_the_plan_says_what_is_wrong_with_a_checkpoint(tmp_path, image, message):
    wal = new_wal(tmp_path)
    _checkpoint(wal, {image: page_image(7)})  # a sealed page, but no metadata page
    data = wal.read_all()
    wal.close()
    with pytest.raises(CorruptionError) as info:
        RecoveryPlan(data, scan(data)[1])
    assert str(info.value) == message


def _checkpoint(wal: Wal, images: dict[int, bytes]) -> None:
    wal.checkpoint_begin(len(images))
    wal.checkpoint_images(list(images.items()))
    wal.checkpoint_end(len(images), durable=False)


def test_scan_reads_a_header_that_ends_the_data_and_a_record_that_does(tmp_path):
    wal = new_wal(tmp_path)
    wal.reset(6, sync=False)
    assert scan(wal.read_all()[:20]) == (6, [], HEADER_BYTES), "a header of exactly 20 bytes holds"
    wal.commit(put_payload(0))
    wal.commit(b"")  # a record with no payload: its 25 bytes end the data
    data = wal.read_all()[: wal.end]
    assert len(data) == wal.end == HEADER_BYTES + 2 * REC + len(put_payload(0))
    assert [(r.lsn, r.length) for r in scan(data)[1]] == [(7, len(put_payload(0))), (8, 0)]
    assert [r.lsn for r in scan(data[:-1])[1]] == [7]
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

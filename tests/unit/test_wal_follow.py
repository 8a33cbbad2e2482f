"""`engine.wal`'s entry points for readers in other processes (rule 9):
`read_base`, `first_record` and `follow`, which must see exactly the records
recovery's `scan` sees and read the log a window at a time, never a length a
record only claims. Written against the mutants the unit tests let through
(docs/verification.md, "Mutation score")."""

from __future__ import annotations

import zlib

from logfiles import REC, SpyFile, flip, new_wal, next_sector, page_image, put_payload

from engine.disk import SECTOR, DirectFile
from engine.wal import follow, read_base
from engine.walformat import (
    CKPT_BEGIN,
    COMMIT,
    HEADER_BYTES,
    OP_PUT,
    SPILL,
    encode_ops,
    first_record,
    scan,
)

# -- first_record and read_base --------------------------------------------------------


def test_first_record_and_read_base(tmp_path):
    wal = new_wal(tmp_path)
    wal.reset(41, sync=False)
    assert read_base(wal.file) == 41
    assert first_record(wal.read_all()) is None
    wal.checkpoint_begin(0)
    data = wal.read_all()
    assert first_record(data) == (42, CKPT_BEGIN)
    broken = flip(data, 10)  # the header's base LSN: the header no longer holds
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
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.sync_to(1, force=True)  # record 2 starts at the next sector
    wal.commit(put_payload(1))
    wal.spill(3, memoryview(page_image(3)))
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
    wal = new_wal(tmp_path)
    for i in range(60):
        wal.commit(put_payload(i, size=100))  # about 8 KiB
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert len(got) == 60
    # one read for the records within 16 KiB, one more finding nothing past them
    assert wal.file.reads == [(HEADER_BYTES, 16 * 1024), (next_sector(wal.end), 16 * 1024)]
    for i in range(60, 200):
        wal.commit(put_payload(i, size=100))  # about 28 KiB in all
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [g[0] for g in got] == list(range(1, 201))
    assert len(wal.file.reads) == 3, wal.file.reads
    assert wal.file.reads[1][0] > HEADER_BYTES + 16 * 1024 - 200, "a window is read again only when used up"
    wal.close()


def test_follow_reads_a_record_longer_than_its_window(tmp_path):
    wal = new_wal(tmp_path)
    big = encode_ops([(OP_PUT, "t", b"big", bytes(range(256)) * 100)])  # 25.6 KB
    wal.commit(put_payload(0))
    wal.commit(big)
    wal.commit(put_payload(2))
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [lsn for lsn, _, _, _ in got] == [1, 2, 3]
    assert got[1][2] == big
    assert follow(wal.file, got[0][3], 2)[0][2] == big
    wal.close()


def test_follow_stops_at_a_torn_record_and_a_lying_length(tmp_path):
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.commit(put_payload(1))
    data = wal.read_all()
    records = scan(data)[1]
    wal.file.write(0, flip(data, records[1].payload_at + 1)[:HEADER_BYTES + SECTOR])
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [lsn for lsn, _, _, _ in got] == [1]
    # a header claiming 100 MB past the end of the file: nothing allocated, nothing returned
    lying = bytearray(data[: HEADER_BYTES + SECTOR])
    lying[records[1].pos : records[1].pos + 4] = (100 << 20).to_bytes(4, "little")
    wal.file.write(0, bytes(lying))
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert follow(wal.file, 0, 1) == [], "offsets inside the header hold no record"
    wal.close()


# -- follow agrees with scan --------------------------------------------------------------


def _one_record(tmp_path, payload: bytes, name: str) -> bytes:
    """The bytes of one commit record (LSN 1, durable 0), as a log holds them."""
    wal = new_wal(tmp_path, name=name)
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
    wal = new_wal(tmp_path, name="h")
    header = wal.read_all()[:HEADER_BYTES]
    wal.close()
    record = _one_record(tmp_path, put_payload(0), "r")
    crafted = header + bytes(SECTOR) + record
    assert scan(crafted)[1] == []
    file = _log_file(tmp_path, "log", crafted)
    assert follow(file, HEADER_BYTES, 1) == []
    assert [lsn for lsn, _, _, _ in follow(file, HEADER_BYTES + SECTOR, 1)] == [1]
    file.close()


def test_follow_returns_a_record_that_ends_at_the_end_of_the_file(tmp_path):
    wal = new_wal(tmp_path)
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (SECTOR - REC - 12))])
    wal.commit(payload)
    assert wal.file.size() == wal.end == HEADER_BYTES + SECTOR
    wal.file.reads.clear()
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [(lsn, p) for lsn, _, p, _ in got] == [(1, payload)]
    assert wal.file.reads == [(HEADER_BYTES, 16 * 1024), (HEADER_BYTES + SECTOR, 16 * 1024)]
    wal.close()


def test_follow_reads_a_long_record_that_ends_at_the_end_of_the_file(tmp_path):
    wal = new_wal(tmp_path)
    payload = encode_ops([(OP_PUT, "t", b"k", b"v" * (40 * SECTOR - REC - 12))])
    wal.commit(payload)
    assert wal.file.size() == wal.end
    got = follow(wal.file, HEADER_BYTES, 1)
    assert [(lsn, p) for lsn, _, p, _ in got] == [(1, payload)]
    wal.close()


def test_follow_never_reads_the_claimed_length_of_a_record_past_the_file(tmp_path):
    """A long record still being written (or a length that lies) ends the
    list without a read of its length: a reader allocates 16 KiB at most."""
    wal = new_wal(tmp_path)
    wal.commit(put_payload(0))
    wal.commit(encode_ops([(OP_PUT, "t", b"big", b"x" * 20_000)]))
    data = wal.read_all()
    second = scan(data)[1][1]
    wal.file.truncate(second.payload_at + second.length - 30)  # its last 30 bytes not yet there
    wal.file.reads.clear()
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert max(n for _, n in wal.file.reads) == 16 * 1024
    lying = bytearray(data[: second.pos + REC])
    lying[second.pos : second.pos + 4] = (20 << 20).to_bytes(4, "little")  # 20 MB
    wal.file.write(0, bytes(lying))
    wal.file.truncate(len(lying))
    wal.file.reads.clear()
    assert [lsn for lsn, _, _, _ in follow(wal.file, HEADER_BYTES, 1)] == [1]
    assert max(n for _, n in wal.file.reads) == 16 * 1024
    wal.close()


def _records(tmp_path, name: str, payloads: list[bytes]) -> list[bytes]:
    """The bytes of each record of a log of these commits (LSNs from 1)."""
    wal = new_wal(tmp_path, name=name)
    for p in payloads:
        wal.commit(p)
    data = wal.read_all()
    wal.close()
    return [data[r.pos : r.payload_at + r.length] for r in scan(data)[1]]


def _both(tmp_path, name: str, data: bytes) -> list[tuple[int, bytes]]:
    """(LSN, payload) of the records recovery's scan finds, checked equal to
    what a follower finds from the first record."""
    seen = [(r.lsn, data[r.payload_at : r.payload_at + r.length]) for r in scan(data)[1]]
    file = SpyFile(DirectFile.open(tmp_path / name, True, "auto"))
    file.write(0, data)
    assert [(lsn, p) for lsn, _, p, _ in follow(file, HEADER_BYTES, 1)] == seen
    file.close()
    return seen


def test_the_gap_is_stepped_over_whatever_valid_record_it_holds(tmp_path):
    """After a partial sector the next record may sit at the next sector
    (rule 7); the gap may hold anything, a valid record of another LSN too."""
    one, two = _records(tmp_path, "a", [put_payload(1), put_payload(2)])
    header = _records_header(tmp_path)
    data = header + one + one  # a copy of record 1 where record 2 could have been
    data += bytes(next_sector(len(data)) - len(data)) + two
    assert _both(tmp_path, "log", data) == [(1, put_payload(1)), (2, put_payload(2))]


def test_a_valid_next_record_is_taken_where_it_is_not_at_the_next_sector(tmp_path):
    one, here = _records(tmp_path, "a", [put_payload(1), put_payload(2)])
    _, there = _records(tmp_path, "b", [put_payload(1), put_payload(22)])
    data = _records_header(tmp_path) + one + here
    data += bytes(next_sector(len(data)) - len(data)) + there
    assert _both(tmp_path, "log", data) == [(1, put_payload(1)), (2, put_payload(2))]


def _records_header(tmp_path) -> bytes:
    wal = new_wal(tmp_path, name="header")
    header = wal.read_all()[:HEADER_BYTES]
    wal.close()
    return header

"""`engine.recovery` pinned: a damaged log header beside records older or
newer than the last checkpoint (each side of rule `_check_log_header`), the
magic's flipped-bit threshold, files that look almost like a creation cut
short, and a read-only open without a log reading through its pool."""

from __future__ import annotations

import os

import pytest
from logfiles import put_payload

import engine
from engine.codec import PAGE_SIZE, seal
from engine.disk import DirectFile
from engine.metapage import Meta, encode_meta
from engine.recovery import creation_page
from engine.wal import Wal
from engine.walformat import scan


def _digest(path):
    with open(path, "rb") as f:
        return f.read()


def read_base_of(log: bytes):
    return scan(log)[0]


def _files_with_damaged_log_header(tmp_path, meta_lsn, base, kinds):
    """A data file whose last checkpoint is at `meta_lsn`, beside a log whose
    header is damaged, holding records from LSN `base + 1` of `kinds`."""
    path = str(tmp_path / "h.db")
    page = bytearray(PAGE_SIZE)
    encode_meta(Meta(page_count=1, checkpoint_lsn=meta_lsn), page)
    seal(page)
    with open(path, "wb") as f:
        f.write(page)
    wal = Wal(DirectFile.open(path + "-wal", True, False), "off")
    wal.reset(base, sync=False)
    for i, kind in enumerate(kinds):
        if kind == "commit":
            wal.commit(put_payload(i))
        else:
            wal.checkpoint_begin(1)
    wal.file.sync()
    wal.file.close()
    with open(path + "-wal", "r+b") as f:  # a byte of the header changed: its base is unknown
        f.seek(8)
        b = f.read(1)
        f.seek(8)
        f.write(bytes([b[0] ^ 0xFF]))
    with open(path + "-wal", "rb") as f:
        assert read_base_of(f.read()) is None
    return path


@pytest.mark.parametrize("base, kinds", [
    (99, ["commit", "commit"]),  # the first record is the checkpoint's own LSN: older than it
    (90, ["commit"]),  # older records, left behind the checkpoint
    (100, ["begin"]),  # the next checkpoint's CKPT_BEGIN: its reset was cut short
])
def test_a_damaged_log_header_before_records_of_the_last_checkpoint_or_older_opens(tmp_path, base, kinds):
    path = _files_with_damaged_log_header(tmp_path, 100, base, kinds)
    with engine.open(path, sync="off") as db:
        assert db.check().ok


@pytest.mark.parametrize("base, kinds", [
    (100, ["commit"]),  # a commit right after the checkpoint: its header was lost
    (101, ["begin"]),  # a CKPT_BEGIN one LSN too late
    (101, ["commit"]),
])
def test_a_damaged_log_header_before_newer_records_is_corruption(tmp_path, base, kinds):
    path = _files_with_damaged_log_header(tmp_path, 100, base, kinds)
    before = (_digest(path), _digest(path + "-wal"))
    with pytest.raises(engine.CorruptionError) as err:
        engine.open(path, sync="off")
    assert str(err.value) == f"{path}-wal: log header damaged but newer records follow"
    assert (_digest(path), _digest(path + "-wal")) == before


_MAGIC_BIT = 32 * 8  # the metadata page's magic starts at byte 32


def _flip_bits(path, positions):
    with open(path, "r+b") as f:
        for bit in positions:
            f.seek(bit // 8)
            b = f.read(1)
            f.seek(bit // 8)
            f.write(bytes([b[0] ^ (1 << (bit % 8))]))


def _lone_data_file(tmp_path, name):
    path = str(tmp_path / name)
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    os.unlink(path + "-wal")
    return path


def test_magic_with_two_flipped_bits_is_damage(tmp_path):
    path = _lone_data_file(tmp_path, "two.db")
    _flip_bits(path, [_MAGIC_BIT, _MAGIC_BIT + 9])
    with pytest.raises(engine.CorruptionError) as err:
        engine.open(path)
    assert str(err.value) == f"{path}: metadata page damaged (magic has 2 flipped bits)"


def test_magic_with_three_flipped_bits_is_another_format(tmp_path):
    path = _lone_data_file(tmp_path, "three.db")
    _flip_bits(path, [_MAGIC_BIT, _MAGIC_BIT + 9, _MAGIC_BIT + 17])
    before = _digest(path)
    with pytest.raises(engine.NotADatabaseError) as err:
        engine.open(path)
    assert str(err.value) == f"{path}: not a DragonDB database"
    assert _digest(path) == before


@pytest.mark.parametrize("content", [
    bytes([creation_page()[0] ^ 0x01]) + creation_page()[1:],  # the creation page with its first byte changed
    creation_page()[:512] + b"\x01",  # its first sector, then a stray byte
    creation_page()[:512] + bytes(511) + b"\x01",  # a stray byte at the end of the second sector
])
def test_a_file_almost_like_a_creation_cut_short_is_refused_untouched(tmp_path, content):
    path = tmp_path / "almost.db"
    path.write_bytes(content)
    with pytest.raises((engine.NotADatabaseError, engine.CorruptionError)):
        engine.open(path)
    assert path.read_bytes() == content and not os.path.exists(str(path) + "-wal")


def test_a_read_only_open_without_a_log_reads_pages_through_a_small_pool(tmp_path):
    path = str(tmp_path / "ro.db")
    want = {b"key%05d" % i: b"%05d" % i * 20 for i in range(3000)}
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for k, v in want.items():
            t[k] = v
    os.unlink(path + "-wal")
    with engine.open(path, read_only=True, pool_pages=16) as db:
        s = db.stats()
        assert s["pages_allocated"] > 16 and (s["log_bytes"], s["log_syncs"], s["commits"]) == (0, 0, 0)
        assert dict(db.tree("t").items()) == want
        assert db.tree("t")[b"key00000"] == want[b"key00000"]  # read again after the scan evicted it
        assert not os.path.exists(path + "-wal")

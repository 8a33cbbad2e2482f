"""`engine.recovery` pinned: a damaged log header beside records older or
newer than the last checkpoint (each side of rule `_check_log_header`), the
magic's flipped-bit threshold, files that look almost like a creation cut
short, a read-only open without a log reading through its pool; then each
path of recovery as the files and the opener's calls show it (rule 8's
syncs, a lost base, lost growth, deferred checkpoints, flaky reads, the
readers and file locks)."""

from __future__ import annotations

import errno
import os
import shutil
import threading

import pytest
from logfiles import meta_image, put_payload

import engine
from engine.codec import PAGE_SIZE, seal
from engine.disk import DirectFile, default_opener
from engine.locks import ReaderLock
from engine.metapage import Meta, decode_meta, encode_meta
from engine.pager import Pager
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


# -- recovery's paths, each seen from outside ------------------------------------

class _Watched:
    """A file of the database's opener that logs its writes, syncs and
    truncations in `events` as (file, op, offset or size, bytes), and runs
    `on_read` before each read."""

    def __init__(self, inner, name, events, on_read=None):
        self._inner, self._name, self._events, self._on_read = inner, name, events, on_read

    def read_into(self, offset, buf):
        if self._on_read is not None:
            return self._on_read(self._inner, offset, buf)
        return self._inner.read_into(offset, buf)

    def write(self, offset, data):
        self._events.append((self._name, "write", offset, bytes(data)))
        self._inner.write(offset, data)

    def sync(self):
        self._events.append((self._name, "sync", None, None))
        self._inner.sync()

    def truncate(self, size):
        self._events.append((self._name, "truncate", size, None))
        self._inner.truncate(size)

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def _watching(events, on_read=None):
    """An opener whose files are `_Watched`; `on_read` maps 'data'/'wal' to a hook."""
    base = default_opener(False)

    def opener(p, create):
        name = "wal" if p.endswith("-wal") else "data"
        return _Watched(base(p, create), name, events, (on_read or {}).get(name))

    return opener


def _crash_image(tmp_path, name, n=5):
    """The files of a writer killed after `n` puts (and the tree's creation),
    none checkpointed; returns (path, the keys and values)."""
    live = str(tmp_path / ("live-" + name))
    want = {b"k%03d" % i: b"v%03d" % i for i in range(n)}
    db = engine.open(live, sync="off")
    t = db.tree("t")
    for k, v in want.items():
        t[k] = v
    path = str(tmp_path / name)
    shutil.copyfile(live, path)
    shutil.copyfile(live + "-wal", path + "-wal")
    db.close()
    return path, want


def _records_of(path):
    with open(path + "-wal", "rb") as f:
        return scan(f.read())


def _write_at(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _page0_meta(path):
    with open(path, "rb") as f:
        return decode_meta(f.read(PAGE_SIZE))


@pytest.mark.parametrize("how", ["empty", "zeros"])
def test_a_lost_data_file_is_rebuilt_from_a_log_from_the_first_lsn(tmp_path, how):
    path, want = _crash_image(tmp_path, how + ".db")
    last = _records_of(path)[1][-1].lsn
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # the data file's growth lost: empty, or its blocks read as zeros
        f.truncate(0)
        if how == "zeros":
            f.write(bytes(size))
    events: list = []
    with engine.open(path, sync="off", opener=_watching(events)) as db:
        assert dict(db.tree("t").items()) == want
        assert db.stats()["recovered_commits"] == len(want) + 1 and db.check().ok
        assert _page0_meta(path).checkpoint_lsn == last
    data = [(op, at, b) for name, op, at, b in events if name == "data"]
    # rule 8: what the open read is made durable before anything is built on
    # it; then the creation page goes home first
    assert data[0] == ("sync", None, None) and data[1] == ("write", 0, creation_page())
    _synced_home_before_the_log_grows(events)


def _synced_home_before_the_log_grows(events):
    """The pages recovery wrote home are synced before the open's checkpoint
    appends to the log: once that checkpoint is complete in the log, the
    older one whose images they are no longer counts."""
    first = next(i for i, e in enumerate(events) if e[:2] == ("data", "write"))
    grows = next(i for i, e in enumerate(events) if i > first and e[:2] == ("wal", "write"))
    assert ("data", "sync", None, None) in events[first:grows]


def _damage_page0(path):
    _write_at(path, 0, b"\x5a" * PAGE_SIZE)


@pytest.mark.parametrize("log", ["header only", "damaged header", "from lsn 0"])
def test_a_damaged_metadata_page_beside_a_log_that_needs_it_is_refused_untouched(tmp_path, log):
    path, _ = _crash_image(tmp_path, "m.db")
    if log == "header only":  # a clean close: the log's header, no records
        db = engine.open(path, sync="off")
        db.close()
        assert _records_of(path)[0] is not None and _records_of(path)[1] == []
    elif log == "damaged header":
        _write_at(path + "-wal", 8, b"\xff")
        assert _records_of(path)[0] is None
    _damage_page0(path)
    before = (_digest(path), _digest(path + "-wal"))
    with pytest.raises(engine.CorruptionError) as err:
        engine.open(path, sync="off")
    assert str(err.value) == f"{path}: metadata page lost or damaged, and its log needs it; both files left as they are"
    assert (_digest(path), _digest(path + "-wal")) == before


def test_a_foreign_file_beside_an_empty_log_is_not_a_database(tmp_path):
    path = tmp_path / "f.db"
    content = b"a file of another program " * 200
    path.write_bytes(content)
    (tmp_path / "f.db-wal").write_bytes(b"")
    (tmp_path / "f.db-readers").write_bytes(b"")  # left by an earlier open: the refusal keeps it
    with pytest.raises(engine.NotADatabaseError) as err:
        engine.open(path, sync="off")
    assert str(err.value) == f"{path}: not a DragonDB database"
    assert path.read_bytes() == content and (tmp_path / "f.db-wal").read_bytes() == b""
    assert os.path.exists(str(path) + "-readers")


def _log_with_checkpoint(path, base, images):
    """A log from `base` holding one complete checkpoint of `images`."""
    wal = Wal(DirectFile.open(path + "-wal", True, False), "off")
    wal.reset(base, sync=False)
    wal.checkpoint_begin(len(images))
    for pid, image in images:
        wal.checkpoint_image(pid, image)
    wal.checkpoint_end(len(images), False)
    wal.file.sync()
    wal.file.close()


def test_a_checkpoint_of_the_metadata_page_alone_restores_a_damaged_one(tmp_path):
    path = str(tmp_path / "one.db")
    with open(path, "wb") as f:
        f.write(b"\x5a" * PAGE_SIZE)
    _log_with_checkpoint(path, 0, [(0, meta_image(1))])
    with engine.open(path, sync="off") as db:
        assert db.trees() == [] and db.check().ok
        db.tree("t")[b"k"] = b"v"
    with engine.open(path, sync="off") as db:
        assert db.tree("t")[b"k"] == b"v"


def test_a_checkpoint_whose_file_growth_was_lost_gets_its_free_pages_back(tmp_path):
    path = str(tmp_path / "grow.db")
    with open(path, "wb") as f:
        f.write(creation_page())
    pager = Pager(DirectFile.open(str(tmp_path / "scratch"), True, False), 3)
    pager.free(1)
    pager.free(2)
    head, trunks = pager.freelist_images()  # page 1 lists page 2; page 2 is in no image
    meta = bytearray(PAGE_SIZE)
    encode_meta(Meta(page_count=3, freelist_head=head, free_count=2), meta)
    images = [(0, meta)] + [(pid, bytearray(img)) for pid, img in trunks]
    for _, img in images:
        seal(img)
    _log_with_checkpoint(path, 0, images)
    events: list = []
    with engine.open(path, sync="off", opener=_watching(events)) as db:
        assert os.path.getsize(path) >= 3 * PAGE_SIZE
        s = db.stats()
        assert (s["pages_allocated"], s["pages_free"]) == (3, 2) and db.check().ok
    _synced_home_before_the_log_grows(events)


def test_a_data_file_cut_short_without_log_images_is_refused_untouched(tmp_path):
    path = str(tmp_path / "cut.db")
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for i in range(400):
            t[b"k%04d" % i] = b"v" * 50
        pages = db.stats()["pages_allocated"]
    assert pages > 2
    with open(path, "r+b") as f:
        f.truncate(2 * PAGE_SIZE)
    before = (_digest(path), _digest(path + "-wal"))
    with pytest.raises(engine.CorruptionError) as err:
        engine.open(path, sync="off")
    assert str(err.value) == f"{path}: file has {2 * PAGE_SIZE} bytes, metadata needs {pages} pages"
    assert (_digest(path), _digest(path + "-wal")) == before


def test_recovery_continues_the_log_after_its_last_record(tmp_path):
    path, want = _crash_image(tmp_path, "lsn.db")
    last = _records_of(path)[1][-1].lsn
    with engine.open(path, sync="off") as db:
        assert db.stats()["recovered_commits"] == len(want) + 1
        assert (db.stats()["checkpoints"], _page0_meta(path).checkpoint_lsn) == (1, last)
        db.tree("t")[b"new"] = b"x"
    with engine.open(path, sync="off") as db:
        assert db.tree("t")[b"new"] == b"x" and len(db.tree("t")) == len(want) + 1


def test_opens_checkpoint_only_when_the_log_holds_something(tmp_path):
    path, want = _crash_image(tmp_path, "ro.db")
    before = (_digest(path), _digest(path + "-wal"))
    with engine.open(path, read_only=True) as db:  # recovery in memory, its checkpoint too
        assert dict(db.tree("t").items()) == want
        s = db.stats()
        assert (s["checkpoints"], s["recovered_commits"]) == (1, len(want) + 1)
    assert (_digest(path), _digest(path + "-wal")) == before
    with engine.open(path, sync="off") as db:
        assert db.stats()["checkpoints"] == 1
    for read_only in (True, False):  # a clean close leaves nothing to do
        with engine.open(path, sync="off", read_only=read_only) as db:
            assert db.stats()["checkpoints"] == 0 and len(db.tree("t")) == len(want)


def test_an_unfinished_checkpoint_alone_in_the_log_is_cleared(tmp_path):
    path = str(tmp_path / "begin.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    base = _records_of(path)[0]
    wal = Wal(DirectFile.open(path + "-wal", True, False), "off")
    wal.reset(base, sync=False)
    wal.checkpoint_begin(3)  # the next checkpoint, cut short after its first record
    wal.file.truncate(wal.end)
    wal.file.close()
    assert len(_records_of(path)[1]) == 1 and _records_of(path)[2] == os.path.getsize(path + "-wal")
    with engine.open(path, sync="off") as db:
        assert db.stats()["checkpoints"] == 1 and db.tree("t")[b"k"] == b"v"
    assert _records_of(path)[1] == []


def test_a_deferred_checkpoint_cuts_the_log_after_its_valid_records(tmp_path):
    path, want = _crash_image(tmp_path, "defer.db")
    end = _records_of(path)[2]
    _write_at(path + "-wal", end, b"\xab" * 300)  # a stale tail past the valid records
    reader = engine.open(path, read_only=True)
    it = iter(reader.tree("t"))
    next(it)  # the reader's snapshot: the writer's checkpoint must wait
    opened: list = []
    t = threading.Thread(target=lambda: opened.append(engine.open(path, sync="off")))
    t.start()
    t.join(10)
    try:
        assert not t.is_alive(), "the open waited for the reader"
        db = opened[0]
        assert db.stats()["checkpoints_deferred"] == 1
        assert os.path.getsize(path + "-wal") == end
        db.close()
    finally:
        it.close()
        reader.close()
        t.join()
        for d in opened:
            d.close()


def test_a_recovering_writer_waits_for_readers_before_it_writes_pages_home(tmp_path):
    path = str(tmp_path / "wait.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    with open(path, "rb") as f:
        page0 = f.read(PAGE_SIZE)
    _log_with_checkpoint(path, _records_of(path)[0], [(0, page0)])  # its images not yet home
    reader = engine.open(path, read_only=True)
    it = iter(reader.tree("t"))
    next(it)
    wrote = threading.Event()
    events: list = []

    class _Signal(list):
        def append(self, ev):
            if ev[0] == "data" and ev[1] == "write":
                wrote.set()
            events.append(ev)

    opened: list = []
    t = threading.Thread(target=lambda: opened.append(engine.open(path, sync="off", opener=_watching(_Signal()))))
    t.start()
    try:
        assert not wrote.wait(1.0), "a page went home under a reader's snapshot"
    finally:
        it.close()
        reader.close()
        t.join()
    assert wrote.is_set() and opened[0].tree("t")[b"k"] == b"v"
    opened[0].close()


def _flaky_log_read(path):
    """A hook for the log's reads: the first one sees its last record damaged."""
    last = _records_of(path)[1][-1]
    calls = [0]

    def read_into(inner, offset, buf):
        got = inner.read_into(offset, buf)
        calls[0] += 1
        if calls[0] == 1:
            buf[last.payload_at] ^= 0xFF
        return got

    return read_into


def test_two_reads_of_the_log_that_differ_fail_a_writer_and_a_reader_takes_the_later(tmp_path):
    path, want = _crash_image(tmp_path, "flaky.db")
    before = (_digest(path), _digest(path + "-wal"))
    with pytest.raises(engine.StorageIOError) as err:
        engine.open(path, sync="off", opener=_watching([], {"wal": _flaky_log_read(path)}))
    assert (err.value.errno, str(err.value)) == (5, f"[Errno 5] {path}-wal: two reads of the log differ")
    assert (_digest(path), _digest(path + "-wal")) == before
    with engine.open(path, read_only=True, opener=_watching([], {"wal": _flaky_log_read(path)})) as db:
        assert dict(db.tree("t").items()) == want


def test_a_log_ending_in_zeros_is_read_once(tmp_path):
    path, want = _crash_image(tmp_path, "zeros.db")
    with open(path + "-wal", "ab") as f:
        f.write(bytes(3 * PAGE_SIZE))
    reads = []

    def read_into(inner, offset, buf):
        reads.append(offset)
        return inner.read_into(offset, buf)

    with engine.open(path, sync="off", opener=_watching([], {"wal": read_into})) as db:
        assert len(db.tree("t")) == len(want)
    assert reads == [0]


def test_a_short_read_of_the_metadata_page_is_an_io_error(tmp_path):
    path, _ = _crash_image(tmp_path, "short.db")

    def read_into(inner, offset, buf):
        return inner.read_into(offset, buf[:512]) if offset == 0 else inner.read_into(offset, buf)

    with pytest.raises(engine.StorageIOError) as err:
        engine.open(path, sync="off", opener=_watching([], {"data": read_into}))
    assert (err.value.errno, str(err.value)) == (
        5, f"[Errno 5] {path}: short read of the metadata page (512 of {PAGE_SIZE} bytes)")


def test_a_missing_log_is_created_with_its_header_at_once(tmp_path):
    path = str(tmp_path / "nolog.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    os.unlink(path + "-wal")
    reader = engine.open(path, read_only=True)
    it = iter(reader.tree("t"))
    next(it)  # the reader's snapshot defers the open's checkpoint: the header is the open's own
    try:
        with engine.open(path, sync="full") as db:
            assert db.stats()["checkpoints_deferred"] == 1
            assert _records_of(path)[0] is not None  # a valid header before anything is appended
            syncs = db.stats()["log_syncs"]
            db.tree("t")[b"j"] = b"w"
            assert db.stats()["log_syncs"] > syncs  # the open's sync mode, on the log it made
    finally:
        it.close()
        reader.close()


def test_a_read_only_open_beside_an_empty_log_reads_the_data_file(tmp_path):
    path = str(tmp_path / "empty.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    with open(path + "-wal", "wb"):
        pass
    with engine.open(path, read_only=True) as db:
        assert db.tree("t")[b"k"] == b"v" and db.stats()["checkpoints"] == 0
    assert os.path.getsize(path + "-wal") == 0


def test_a_readers_file_that_cannot_be_made_fails_a_writer_and_not_a_reader(tmp_path):
    path = str(tmp_path / "r.db")
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"k"] = b"v"
    os.unlink(path + "-readers")
    os.symlink(str(tmp_path / "missing" / "readers"), path + "-readers")  # neither opened nor created
    with pytest.raises(engine.StorageIOError) as err:
        engine.open(path, sync="off")
    assert err.value.errno == errno.ENOENT and path + "-readers" in str(err.value)
    with engine.open(path, read_only=True) as db:  # works without it, as in a read-only directory
        assert db.tree("t")[b"k"] == b"v"


def test_a_read_only_open_reads_under_the_readers_lock(tmp_path):
    path, want = _crash_image(tmp_path, "held.db", n=300)
    engine.open(path, sync="off").close()
    free: list = []

    def read_into(inner, offset, buf):
        probe = ReaderLock(path + "-readers")
        free.append(probe.exclusive(wait=False))  # a writer's checkpoint could start now
        probe.close()
        return inner.read_into(offset, buf)

    with engine.open(path, read_only=True, opener=_watching([], {"data": read_into})) as db:
        opened = len(free)
        assert len(db.tree("t")) == len(want)
    assert opened > 1 and not any(free[:opened])


def test_a_second_writer_waits_for_the_file_lock_as_long_as_its_timeout(tmp_path):
    path = str(tmp_path / "lock.db")
    with engine.open(path, sync="off"):
        with pytest.raises(engine.DatabaseLockedError) as err:
            engine.open(path, sync="off", timeout=0.2)
    assert str(err.value).endswith("(waited 0.2 s)")

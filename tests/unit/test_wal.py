"""`engine.wal`: commit payload encoding, the recovery scan (which must stop
at a torn tail, a bad checksum or an LSN gap), the recovery plan (images of
the last complete checkpoint, commits after it), group commit, and the
failed-fsync rule."""

from __future__ import annotations

import errno
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.codec import MAX_KEY_SIZE, PAGE_SIZE, seal
from engine.disk import DirectFile
from engine.errors import CorruptionError, NeedsRecoveryError, StorageIOError
from engine.metapage import Meta, encode_meta
from engine.wal import Wal
from engine.walformat import (
    CKPT_BEGIN,
    CKPT_END,
    CKPT_IMAGE,
    COMMIT,
    HEADER_BYTES,
    OP_CREATE,
    OP_DELETE,
    OP_DROP,
    OP_LOAD,
    OP_PUT,
    RecoveryPlan,
    decode_ops,
    encode_op,
    encode_ops,
    scan,
)
from faults.io import FaultPlan

# -- pure encoding -------------------------------------------------------------------

_names = st.text(min_size=1, max_size=20)
_op = st.one_of(
    st.tuples(st.just(OP_PUT), _names, st.binary(min_size=1, max_size=64), st.binary(max_size=300)),
    st.tuples(st.just(OP_DELETE), _names, st.binary(min_size=1, max_size=64), st.none()),
    st.tuples(st.sampled_from([OP_CREATE, OP_DROP]), _names, st.none(), st.none()),
    st.tuples(st.just(OP_LOAD), _names, st.none(),
              st.dictionaries(st.binary(min_size=1, max_size=20), st.binary(max_size=40), max_size=8).map(
                  lambda kv: (sorted(kv), [kv[k] for k in sorted(kv)]))),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_op, max_size=12))
def test_encode_decode_round_trip(ops):
    payload = encode_ops(ops)
    assert decode_ops(payload) == ops
    assert decode_ops(encode_ops(decode_ops(payload))) == ops


@settings(max_examples=100, deadline=None)
@given(_op.filter(lambda op: op[0] in (OP_PUT, OP_DELETE)))
def test_encode_op_is_encode_ops_of_one(op):
    """The in-place path's single-op encoder writes what recovery decodes."""
    assert encode_op(*op) == encode_ops([op])
    assert decode_ops(encode_op(*op)) == [op]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_decode_accepts_exactly_what_encode_produces(payload):
    # the contract of decode_ops: malformed input is CorruptionError, and
    # whatever it accepts re-encodes to the same bytes
    try:
        ops = decode_ops(payload)
    except CorruptionError:
        return
    assert encode_ops(ops) == payload


def test_decode_rejects_truncation_and_unknown_ops():
    payload = encode_ops([(OP_PUT, "t", b"key", b"value"), (OP_CREATE, "u", None, None)])
    for cut in range(1, len(payload)):
        try:
            ops = decode_ops(payload[:cut])
        except CorruptionError:
            continue
        assert encode_ops(ops) == payload[:cut]  # a cut at an op boundary is a shorter list
    with pytest.raises(CorruptionError):
        decode_ops(bytes([9, 1]) + b"t")
    with pytest.raises(CorruptionError):
        decode_ops(bytes([OP_PUT, 1]) + b"t" + (100).to_bytes(4, "little") + b"short")
    assert decode_ops(b"") == []


# -- scanning a real log ---------------------------------------------------------------


def _open_wal(path, sync: str = "off") -> Wal:
    wal = Wal(DirectFile.open(path, True, "auto"), sync)
    wal.reset(0, sync=False)
    return wal


def _payload(i: int) -> bytes:
    return encode_ops([(OP_PUT, "t", b"k%03d" % i, b"v" * (i * 37 % 700))])


@pytest.fixture
def log(tmp_path):
    """A log of 12 commits; yields (bytes, records, payloads)."""
    wal = _open_wal(tmp_path / "log")
    payloads = [_payload(i) for i in range(12)]
    for p in payloads:
        wal.commit(p)
    data = wal.read_all()
    end = wal.end
    wal.close()
    base, records, stop = scan(data)
    assert base == 0 and stop == end
    return data, records, payloads


def test_scan_finds_every_record(log):
    data, records, payloads = log
    assert [r.lsn for r in records] == list(range(1, 13))
    assert all(r.rtype == COMMIT for r in records)
    assert records[0].pos == HEADER_BYTES
    for rec, p in zip(records, payloads, strict=True):
        assert data[rec.payload_at : rec.payload_at + rec.length] == p


def test_scan_stops_at_a_torn_tail(log):
    data, records, _ = log
    last = records[-1]
    for cut in (
        last.pos + 1,
        last.pos + 16,
        last.payload_at + last.length // 2,
        last.payload_at + last.length - 1,
    ):
        base, got, end = scan(data[:cut])
        assert [r.lsn for r in got] == list(range(1, 12)), f"cut at {cut}"
        assert end == last.pos, "appending resumes where the torn record began"
    # a torn tail that reads as zeros (a sector never written) ends the scan too
    zeroed = data[: last.pos] + bytes(len(data) - last.pos)
    assert [r.lsn for r in scan(zeroed)[1]] == list(range(1, 12))


@pytest.mark.parametrize("where", ["payload", "lsn", "type", "length"])
def test_scan_stops_at_a_bad_checksum(log, where):
    data, records, _ = log
    victim = records[5]
    offset = {
        "payload": victim.payload_at + 3,
        "lsn": victim.pos + 8,
        "type": victim.pos + 16,
        "length": victim.pos,
    }[where]
    bad = bytearray(data)
    bad[offset] ^= 0x01
    _, got, end = scan(bytes(bad))
    assert [r.lsn for r in got] == [1, 2, 3, 4, 5]
    assert end == victim.pos


def test_scan_stops_at_an_lsn_gap(log):
    data, records, _ = log
    gone = records[4]  # drop LSN 5: 6 follows 4
    spliced = data[: gone.pos] + data[records[5].pos :]
    _, got, end = scan(spliced)
    assert [r.lsn for r in got] == [1, 2, 3, 4]
    assert end == gone.pos


def test_stale_records_behind_a_newer_header_are_ignored(log, tmp_path):
    data, records, _ = log
    newer = _open_wal(tmp_path / "newer")
    newer.reset(7, sync=False)  # base LSN 7: the next valid record is LSN 8
    header = newer.read_all()[:HEADER_BYTES]
    newer.close()
    base, got, end = scan(header + data[HEADER_BYTES:])
    assert base == 7 and got == [] and end == HEADER_BYTES


def test_scan_rejects_a_bad_header(log):
    data, _, _ = log
    assert scan(b"")[0] is None
    assert scan(data[:10])[0] is None
    bad = bytearray(data)
    bad[0] ^= 0xFF
    assert scan(bytes(bad)) == (None, [], HEADER_BYTES)
    bad = bytearray(data)
    bad[12] ^= 0xFF  # base LSN no longer matches the header checksum
    assert scan(bytes(bad))[0] is None


class _Shrinking:
    """A log file that loses `cuts[i]` bytes at its end just before read i,
    as beside a writer's open that cuts the log's tail; `short` bytes are
    missing from every read (a short read inside a file that kept its size)."""

    def __init__(self, data: bytes, cuts: list[int], short: int = 0) -> None:
        self.data, self.cuts, self.short, self.reads = data, cuts, short, 0

    def size(self) -> int:
        return len(self.data)

    def read_into(self, offset: int, buf) -> int:
        cut = self.cuts[min(self.reads, len(self.cuts) - 1)]
        self.reads += 1
        self.data = self.data[: len(self.data) - cut]
        n = max(0, min(len(buf), len(self.data) - offset - self.short))
        buf[:n] = self.data[offset : offset + n]
        return n


def test_read_all_reads_a_log_that_shrank_again_and_refuses_a_short_read(log, tmp_path):
    data, _, _ = log
    wal = _open_wal(tmp_path / "other")
    wal.file.close()
    wal.file = once = _Shrinking(data + b"\xee" * 100, [100, 0])
    assert wal.read_all() == data and once.reads == 2  # the second read is whole
    wal.file = always = _Shrinking(data, [1])
    with pytest.raises(StorageIOError, match="short read"):
        wal.read_all()  # a file that keeps shrinking is not read forever
    assert always.reads == 3
    wal.file = short = _Shrinking(data, [0], short=10)
    with pytest.raises(StorageIOError, match="short read") as info:
        wal.read_all()  # the file kept its size: an I/O error, at once
    assert short.reads == 1
    assert info.value.errno == errno.EIO
    assert info.value.strerror == f"log: short read ({len(data) - 10} of {len(data)} bytes)"


# -- the recovery plan ---------------------------------------------------------------------


def _page(fill: int) -> bytes:
    """An image whose checksum holds; page 0's is a metadata page of 16 pages,
    as every checkpoint holds (the plan bounds the other images by it)."""
    page = bytearray([fill]) * PAGE_SIZE
    if fill == 0:
        encode_meta(Meta(page_count=16), page)
    seal(page)
    return bytes(page)


def _checkpoint(
    wal: Wal, images: dict[int, bytes], complete: bool = True, claim: int | None = None
) -> None:
    wal.checkpoint_begin(len(images))
    for pid, img in images.items():
        wal.checkpoint_image(pid, img)
    if complete:
        wal.checkpoint_end(len(images) if claim is None else claim, durable=False)


def _plan(wal: Wal) -> tuple[bytes, RecoveryPlan]:
    data = wal.read_all()
    _, records, _ = scan(data)
    return data, RecoveryPlan(data, records)


def _commits(data: bytes, plan: RecoveryPlan) -> list[bytes]:
    return [data[r.payload_at : r.payload_at + r.length] for r in plan.commits]


def _images(data: bytes, plan: RecoveryPlan) -> dict[int, bytes]:
    return {pid: data[at : at + PAGE_SIZE] for pid, at in plan.images}


def test_plan_without_a_checkpoint_redoes_every_commit(tmp_path):
    wal = _open_wal(tmp_path / "log")
    for i in range(3):
        wal.commit(_payload(i))
    data, plan = _plan(wal)
    wal.close()
    assert plan.images == []
    assert _commits(data, plan) == [_payload(i) for i in range(3)]


def test_plan_uses_the_last_complete_checkpoint(tmp_path):
    wal = _open_wal(tmp_path / "log")
    wal.commit(_payload(0))
    _checkpoint(wal, {3: _page(3), 4: _page(4)})
    wal.commit(_payload(1))
    _checkpoint(wal, {5: _page(5), 6: _page(6), 0: _page(0)})  # the last complete one
    wal.commit(_payload(2))
    _checkpoint(wal, {7: _page(7)}, complete=False)  # torn: its begin and image only
    wal.commit(_payload(3))
    _checkpoint(wal, {8: _page(8)}, claim=2)  # its end claims two images: not complete
    wal.commit(_payload(4))
    data, plan = _plan(wal)
    wal.close()
    assert _images(data, plan) == {5: _page(5), 6: _page(6), 0: _page(0)}
    assert [pid for pid, _ in plan.images] == [5, 6, 0], "images in log order"
    assert _commits(data, plan) == [_payload(i) for i in (2, 3, 4)]
    kinds = [r.rtype for r in scan(data)[1]]
    assert kinds.count(CKPT_BEGIN) == 4 and kinds.count(CKPT_END) == 3 and CKPT_IMAGE in kinds


def test_plan_ignores_a_checkpoint_cut_by_the_torn_tail(tmp_path):
    wal = _open_wal(tmp_path / "log")
    _checkpoint(wal, {1: _page(1), 0: _page(0)})
    wal.commit(_payload(0))
    _checkpoint(wal, {2: _page(2), 3: _page(3)})
    data = wal.read_all()
    wal.close()
    _, records, _ = scan(data)
    end_record = records[-1]
    assert end_record.rtype == CKPT_END
    cut = data[: end_record.pos + 5]  # the END record is torn
    _, records, _ = scan(cut)
    plan = RecoveryPlan(cut, records)
    assert _images(cut, plan) == {1: _page(1), 0: _page(0)}
    assert _commits(cut, plan) == [_payload(0)]


@pytest.mark.parametrize("images, match", [
    ({1: _page(1)}, "metadata"),  # no metadata image: nothing bounds the others
    ({0: _page(0), 16: _page(16)}, "past"),  # beyond the 16 pages the metadata image gives
    ({0: _page(0), 1: _page(1)[:-1] + b"x"}, "checksum"),
])
def test_plan_refuses_impossible_checkpoint_images(tmp_path, images, match):
    wal = _open_wal(tmp_path / "log")
    _checkpoint(wal, images)
    data = wal.read_all()
    wal.close()
    with pytest.raises(CorruptionError, match=match):
        RecoveryPlan(data, scan(data)[1])


def test_plan_refuses_checkpoint_records_of_the_wrong_size(tmp_path):
    wal = _open_wal(tmp_path / "log")
    with wal._mutex:
        wal._append(CKPT_BEGIN, b"\x01\x00\x00")  # a u32 count cut short
    data = wal.read_all()
    wal.close()
    with pytest.raises(CorruptionError, match="not 4"):
        RecoveryPlan(data, scan(data)[1])


@pytest.mark.parametrize("ops", [
    [(OP_PUT, "t", b"", b"v")], [(OP_PUT, "t", b"k" * (MAX_KEY_SIZE + 1), b"v")],
    [(OP_DELETE, "t", b"", None)], [(OP_PUT, "", b"k", b"v")], [(OP_CREATE, "", None, None)],
    [(OP_DROP, "", None, None)], [(9, "t", b"k", b"v")],
], ids=["put-empty-key", "put-key-1025", "delete-empty-key", "put-empty-name", "create-empty-name",
        "drop-empty-name", "unknown-op"])
def test_decode_ops_refuses_what_no_api_call_writes(ops):
    """Each payload has a valid framing: only its content is impossible."""
    with pytest.raises(CorruptionError):
        decode_ops(encode_ops(ops))
    assert decode_ops(encode_ops([(OP_PUT, "t", b"k" * MAX_KEY_SIZE, b"")])) == [
        (OP_PUT, "t", b"k" * MAX_KEY_SIZE, b"")]


# -- group commit and failed syncs ------------------------------------------------------------


def test_sync_full_fsyncs_each_lone_commit(tmp_path):
    with engine.open(tmp_path / "one.db", sync="full") as db:
        t = db.tree("t")
        before = db.stats()["log_syncs"]
        for i in range(10):
            t[b"k%d" % i] = b"v"
        assert db.stats()["log_syncs"] - before == 10, "one fsync per commit when alone"


def test_group_commit_shares_fsyncs_between_threads(tmp_path):
    path = tmp_path / "group.db"
    n_threads, per_thread = 8, 30
    errors: list[BaseException] = []
    with engine.open(path, sync="full") as db:
        t = db.tree("t")
        start = db.stats()
        gate = threading.Barrier(n_threads)

        def worker(w: int) -> None:
            try:
                gate.wait()
                for i in range(per_thread):
                    t[b"w%d-%03d" % (w, i)] = b"x" * 50
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors[0]
        end = db.stats()
        commits = end["commits"] - start["commits"]
        syncs = end["log_syncs"] - start["log_syncs"]
        assert commits == n_threads * per_thread
        assert syncs < commits, f"{syncs} fsyncs for {commits} commits: no group commit"
    with engine.open(path, sync="off") as db:
        assert len(db.tree("t")) == n_threads * per_thread


def test_group_commit_at_the_log_level(tmp_path):
    wal = _open_wal(tmp_path / "log", sync="full")
    lsns: list[int] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(20):
            lsn = wal.commit(_payload(w * 100 + i))
            wal.sync_to(lsn)
            assert wal.durable_lsn >= lsn, "sync_to returned before its record was durable"
            with lock:
                lsns.append(lsn)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert sorted(lsns) == list(range(1, 161))
    assert wal.durable_lsn == wal.lsn == 160
    assert 1 <= wal.syncs <= 160, wal.syncs  # how many share one depends on the scheduler
    _, records, _ = scan(wal.read_all())
    assert len(records) == 160
    wal.close()


class _GatedSync:
    """A log file whose first fsync waits for `gate`: commits pile up
    behind it, so how many fsyncs they share does not depend on timing."""

    def __init__(self, inner, gate: threading.Event) -> None:
        self._inner, self._gate, self._first = inner, gate, True

    def sync(self) -> None:
        if self._first:
            self._first = False
            assert self._gate.wait(30), "the gate never opened"
        self._inner.sync()

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_commits_waiting_behind_an_fsync_share_the_next_one(tmp_path):
    gate = threading.Event()
    wal = Wal(_GatedSync(DirectFile.open(tmp_path / "log", True, "auto"), gate), "full")
    wal.reset(0, sync=False)
    synced_before = wal.syncs
    done: list[int] = []

    def worker(w: int) -> None:
        lsn = wal.commit(_payload(w))
        wal.sync_to(lsn)
        done.append(lsn)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for _ in range(3000):  # until all eight records are appended (the first leader waits at the gate)
        if wal.lsn == 8:
            break
        threading.Event().wait(0.01)
    assert wal.lsn == 8
    gate.set()
    for th in threads:
        th.join(30)
    assert sorted(done) == list(range(1, 9)) and wal.durable_lsn == 8
    # the first leader's fsync, then one more for all seven that waited; one each would be 8
    assert wal.syncs - synced_before <= 2, wal.syncs - synced_before
    wal.close()


def test_a_failed_fsync_is_never_retried(tmp_path):
    plan = FaultPlan()
    plan.fail("sync", 1)
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(opener(str(tmp_path / "log"), True), "full")
    wal.reset(0, sync=False)
    lsn = wal.commit(_payload(0))
    with pytest.raises(NeedsRecoveryError):
        wal.sync_to(lsn)
    assert wal.failed and wal.durable_lsn == 0
    # the fault was transient, yet nothing is retried or accepted any more
    with pytest.raises(NeedsRecoveryError):
        wal.sync_to(lsn)
    with pytest.raises(NeedsRecoveryError):
        wal.commit(_payload(1))
    with pytest.raises(NeedsRecoveryError):
        wal.spill(1, memoryview(_page(1)))
    assert wal.lsn == 1
    wal.close()


def test_mark_failed_stops_every_append_and_sync(tmp_path):
    """Rule 6 for failures the log cannot see (the data file's fsync, a
    rollback): after `mark_failed` nothing is appended or synced."""
    wal = _open_wal(tmp_path / "log")
    lsn = wal.commit(_payload(0))
    wal.mark_failed()
    for call in (lambda: wal.commit(_payload(1)), lambda: wal.sync_to(lsn, force=True),
                 lambda: wal.spill(1, memoryview(_page(1)))):
        with pytest.raises(NeedsRecoveryError):
            call()
    assert wal.failed and wal.lsn == lsn and wal.durable_lsn == 0
    assert len(scan(wal.read_all())[1]) == 1  # nothing reached the file after it
    wal.close()


def test_spilled_pages_are_listed_until_forgotten(tmp_path):
    """`spilled_pages` lists each page with an image in the log once (its
    latest image is read back); `forget_spilled` drops them all, after which
    reads go home again (`read_spill` finds nothing)."""
    wal = _open_wal(tmp_path / "log")
    wal.spill(3, memoryview(_page(3)))
    wal.spill_many([(5, _page(5)), (3, _page(33))])
    assert sorted(wal.spilled_pages()) == [3, 5]
    buf = memoryview(bytearray(PAGE_SIZE))
    assert wal.read_spill(3, buf) and bytes(buf) == _page(33)
    wal.forget(5)
    assert wal.spilled_pages() == [3]
    wal.forget_spilled()
    assert wal.spilled_pages() == []
    assert not wal.read_spill(3, buf)
    wal.close()


def test_failed_log_write_at_create_is_a_storage_error(tmp_path):
    # regression: Wal.close used to raise BufferError here (a memoryview of its
    # staging mmap was still held by the traceback), hiding the StorageIOError
    # and leaving the data file open and locked
    path = tmp_path / "x.db"
    plan = FaultPlan()
    plan.fail("write", 1, file="-wal")
    with pytest.raises(StorageIOError):
        engine.open(path, opener=plan.opener(), sync="off")
    with engine.open(path, sync="off") as db:  # nothing left locked
        db.tree("t")[b"k"] = b"v"


@pytest.mark.parametrize("keys", [[b"b", b"a"], [b"a", b"a"], [b""], [b"k" * 1025]])
def test_a_bulk_load_record_no_load_could_write_is_refused(keys) -> None:
    payload = encode_ops([(OP_LOAD, "t", None, (keys, [b"v"] * len(keys)))])
    with pytest.raises(CorruptionError):
        decode_ops(payload)

"""`engine.disk`: `DirectFile` in each I/O mode, O_DIRECT fallback on tmpfs,
unaligned transfers under O_DIRECT, the file lock, and the open-time checks
that refuse a file that is not a database without touching it.

The byte-level `BlockFile` contract itself is `test_blockfile_conformance.py`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.disk import SECTOR, DirectFile, aligned_buffer, default_opener
from engine.errors import DatabaseLockedError, NotADatabaseError, StorageIOError
from engine.locks import FileLock

PAGE = 4096
REPO = Path(__file__).resolve().parents[2]


def _pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 131 + salt * 7 + 3) % 256 for i in range(n))


def _read(f: DirectFile, offset: int, n: int) -> bytes:
    buf = bytearray(n)
    got = f.read_into(offset, memoryview(buf))
    return bytes(buf[:got])


def _o_direct_ok(directory: Path) -> bool:
    probe = directory / ".o_direct_probe"
    if not hasattr(os, "O_DIRECT"):
        return False
    try:
        fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_DIRECT)
    except OSError:
        return False
    finally:
        probe.unlink(missing_ok=True)
    os.close(fd)
    return True


@pytest.fixture
def direct_dir(tmp_path):
    """`tmp_path` where the filesystem accepts O_DIRECT (skip otherwise)."""
    if not _o_direct_ok(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    return tmp_path


def _is_tmpfs(path: str) -> bool:
    try:
        with open("/proc/mounts") as mounts:
            return any(line.split()[1] == path and line.split()[2] == "tmpfs" for line in mounts)
    except OSError:
        return False


@pytest.fixture
def tmpfs_dir():
    """A fresh directory on tmpfs (/dev/shm), removed afterwards."""
    if not _is_tmpfs("/dev/shm"):
        pytest.skip("/dev/shm is not a tmpfs mount here")
    d = tempfile.mkdtemp(prefix="dragondb-test-", dir="/dev/shm")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- I/O modes -------------------------------------------------------------------


@pytest.mark.parametrize("mode", [True, "auto", False])
def test_modes_on_a_direct_capable_filesystem(direct_dir, mode):
    f = DirectFile.open(direct_dir / "m.db", create=True, direct=mode)
    try:
        assert f.direct is (mode is not False)
        flags = _fd_flags(f.fd)
        assert bool(flags & os.O_DIRECT) is f.direct, (
            "the descriptor's O_DIRECT flag matches .direct"
        )
        page = _pattern(PAGE, 1)
        f.write(0, page)
        f.sync()
        assert _read(f, 0, PAGE) == page
    finally:
        f.close()


def _fd_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def test_tmpfs_direct_follows_the_kernel(tmpfs_dir):
    # tmpfs refused O_DIRECT (EINVAL) until Linux 6.6 and accepts it since;
    # either way `.direct` must say what the descriptor really does.
    # The refusal itself is emulated everywhere in test_fakefs.py.
    refused = not _o_direct_ok(tmpfs_dir)
    if refused:
        with pytest.raises(StorageIOError) as info:
            DirectFile.open(tmpfs_dir / "t.db", create=True, direct=True)
        assert isinstance(info.value, OSError)
        assert info.value.errno == errno.EINVAL
    else:
        DirectFile.open(tmpfs_dir / "t.db", create=True, direct=True).close()
    f = DirectFile.open(tmpfs_dir / "t.db", create=True, direct="auto")
    try:
        assert f.direct is not refused
        assert bool(_fd_flags(f.fd) & os.O_DIRECT) is f.direct
        f.write(3, b"auto mode")
        assert _read(f, 3, 9) == b"auto mode"
    finally:
        f.close()


def test_engine_open_on_tmpfs(tmpfs_dir):
    path = tmpfs_dir / "e.db"
    refused = not _o_direct_ok(tmpfs_dir)
    if refused:
        with pytest.raises(StorageIOError):
            engine.open(path, direct_io=True, sync="off")
    else:
        engine.open(path, direct_io=True, sync="off").close()
    # a refused open left nothing locked or half-made behind
    with engine.open(path, direct_io="auto", sync="off") as db:
        assert db.stats()["direct_io"] is not refused
        db.tree("t")[b"k"] = b"v"
    with engine.open(path, direct_io=False, sync="off") as db:
        assert db.stats()["direct_io"] is False
        assert db.tree("t")[b"k"] == b"v"


def test_engine_open_reports_direct_io(direct_dir):
    with engine.open(direct_dir / "d.db", sync="off") as db:
        assert db.stats()["direct_io"] is True
    with engine.open(direct_dir / "d.db", direct_io=False, sync="off") as db:
        assert db.stats()["direct_io"] is False


def test_default_opener_passes_the_mode(direct_dir):
    f = default_opener(False)(str(direct_dir / "o.db"), True)
    g = default_opener(True)(str(direct_dir / "p.db"), True)
    try:
        assert (f.direct, g.direct) == (False, True)
    finally:
        f.close()
        g.close()


def test_missing_file_without_create(tmp_path):
    for mode in (True, "auto", False):
        with pytest.raises(FileNotFoundError):
            DirectFile.open(tmp_path / "absent.db", create=False, direct=mode)
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(FileNotFoundError):
        engine.open(tmp_path / "absent.db", create=False)
    assert sorted(os.listdir(tmp_path)) == [], "a refused open creates no file"


def test_open_a_directory_is_a_storage_error(tmp_path):
    with pytest.raises(StorageIOError) as info:
        DirectFile.open(tmp_path, create=False, direct=False)
    assert info.value.errno == errno.EISDIR


# -- O_DIRECT with unaligned requests ------------------------------------------------


def test_unaligned_requests_under_o_direct(direct_dir):
    f = DirectFile.open(direct_dir / "u.db", create=True, direct=True)
    assert f.direct
    try:
        expect = bytearray(_pattern(4 * PAGE, 2))
        f.write(0, bytes(expect))
        cases = [(1, 1), (511, 2), (513, 1000), (PAGE - 1, PAGE + 2), (3 * PAGE + 100, 7), (0, 17)]
        for i, (off, n) in enumerate(cases):
            data = _pattern(n, 20 + i)
            f.write(off, data)
            expect[off : off + n] = data
            assert _read(f, off, n) == data
        assert _read(f, 0, len(expect)) == bytes(expect)
        # reads into memory at an odd address and of an odd length
        raw = bytearray(PAGE + 3)
        assert f.read_into(5, memoryview(raw)[3:]) == PAGE
        assert bytes(raw[3:]) == bytes(expect[5 : 5 + PAGE])
        # a read across end of file is short, even unaligned
        assert _read(f, len(expect) - 10, PAGE) == bytes(expect[-10:])
        # a write past the end that is not a whole sector leaves the exact size
        f.write(len(expect) + 100, b"xyz")
        assert f.size() == len(expect) + 103
        assert _read(f, len(expect), 103) == bytes(100) + b"xyz"
    finally:
        f.close()


def test_aligned_memory_round_trip_under_o_direct(direct_dir):
    f = DirectFile.open(direct_dir / "a.db", create=True, direct=True)
    mem = aligned_buffer(2 * PAGE)
    try:
        view = memoryview(mem)
        view[:] = _pattern(2 * PAGE, 9)
        f.write(PAGE, view)
        view[:] = bytes(2 * PAGE)
        assert f.read_into(PAGE, view) == 2 * PAGE
        assert bytes(view) == _pattern(2 * PAGE, 9)
        assert f.size() == 3 * PAGE
        view.release()
    finally:
        mem.close()
        f.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(st.integers(0, 3 * PAGE), st.integers(1, PAGE + SECTOR), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_unaligned_writes_match_a_bytearray(direct_dir, ops):
    path = direct_dir / "h.db"
    path.unlink(missing_ok=True)  # one fresh file per example
    f = DirectFile.open(path, create=True, direct=True)
    try:
        model = bytearray()
        for off, n, salt in ops:
            data = _pattern(n, salt)
            f.write(off, data)
            if len(model) < off + n:
                model.extend(bytes(off + n - len(model)))
            model[off : off + n] = data
        # exact size is test_unaligned_write_keeps_the_file_size (an engine bug now)
        assert _read(f, 0, len(model)) == bytes(model)
    finally:
        f.close()


def test_unaligned_write_keeps_the_file_size(direct_dir):
    f = DirectFile.open(direct_dir / "z.db", create=True, direct=True)
    try:
        f.write(0, b"abc")
        assert f.size() == 3
        f.write(1, b"Z")  # inside the file: the size must not change
        assert f.size() == 3
        assert _read(f, 0, SECTOR) == b"aZc"
    finally:
        f.close()


# -- the file lock ---------------------------------------------------------------------


def test_second_open_in_the_same_process_is_refused(tmp_path):
    path = tmp_path / "l.db"
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"a"] = b"1"
        before = path.read_bytes()
        with pytest.raises(DatabaseLockedError):
            engine.open(path, sync="off", timeout=0)
        with engine.open(path, read_only=True) as ro:  # a reader is not a second writer
            assert ro.tree("t")[b"a"] == b"1"
        with pytest.raises(DatabaseLockedError):
            FileLock(path)
        assert path.read_bytes() == before, "a refused open does not write"
        # the first handle still works and still holds the lock
        db.tree("t")[b"b"] = b"2"
        with pytest.raises(DatabaseLockedError):
            engine.open(path, sync="off", timeout=0)
    with engine.open(path, sync="off") as db:
        assert dict(db.tree("t").items()) == {b"a": b"1", b"b": b"2"}


def test_shared_locks_coexist_and_exclude_a_writer(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"x")
    a, b = FileLock(path, shared=True), FileLock(path, shared=True)
    with pytest.raises(DatabaseLockedError):
        FileLock(path)
    a.release()
    b.release()
    b.release()  # idempotent
    FileLock(path).release()


_CHILD = textwrap.dedent(
    """
    import sys
    import engine
    path, action = sys.argv[1], sys.argv[2]
    if action == "try":
        try:
            engine.open(path, sync="off", timeout=0).close()
        except engine.DatabaseLockedError:
            print("locked", flush=True)
        else:
            print("opened", flush=True)
    else:
        db = engine.open(path, sync="off")
        db.tree("t")[b"child"] = b"wrote"
        print("holding", flush=True)
        sys.stdin.readline()
        db.close()
        print("closed", flush=True)
    """
)


def _child(path: Path, action: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), action],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_another_process_cannot_open_while_we_hold_it(tmp_path):
    path = tmp_path / "p.db"
    with engine.open(path, sync="off") as db:
        db.tree("t")[b"parent"] = b"1"
        out, _ = _child(path, "try").communicate(timeout=30)
        assert out.strip() == "locked"
    out, _ = _child(path, "try").communicate(timeout=30)
    assert out.strip() == "opened", "the lock is gone once the holder closes"


def test_we_cannot_open_while_another_process_holds_it(tmp_path):
    path = tmp_path / "q.db"
    engine.open(path, sync="off").close()
    child = _child(path, "hold")
    try:
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(DatabaseLockedError):
            engine.open(path, sync="off", timeout=0)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "closed"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with engine.open(path, sync="off") as db:
        assert db.tree("t")[b"child"] == b"wrote"


# -- refusing files that are not databases --------------------------------------------


@pytest.fixture
def valid_image(tmp_path_factory) -> bytes:
    """The bytes of a small, cleanly closed database of several pages."""
    path = tmp_path_factory.mktemp("valid") / "v.db"
    with engine.open(path, sync="off") as db:
        t = db.tree("t")
        for i in range(400):
            t[b"%05d" % i] = b"v" * 60
    data = path.read_bytes()
    assert len(data) >= 4 * PAGE
    return data


def _not_a_db_cases(valid: bytes) -> dict[str, bytes]:
    return {
        "garbage": _pattern(3 * PAGE, 77),
        "zeros": bytes(2 * PAGE),
        "truncated_mid_page0": valid[:100],
        "truncated_page0_tail": valid[: PAGE - 1],
        "wrong_magic": valid[:32] + b"NOTDRGN!" + valid[40:],
        "text": b"SQLite format 3\x00" + bytes(PAGE),
    }


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("create", [True, False])
def test_not_a_database_is_refused_and_untouched(tmp_path, valid_image, create, read_only):
    for name, data in _not_a_db_cases(valid_image).items():
        path = tmp_path / f"{name}.db"
        path.write_bytes(data)
        with pytest.raises(NotADatabaseError):
            engine.open(path, create=create, read_only=read_only, sync="off")
        assert path.read_bytes() == data, f"{name}: the file was written"
        assert not Path(str(path) + "-wal").exists(), f"{name}: a -wal file was created"
        # nothing stays locked: the file can be replaced by a real database
        path.unlink()
        engine.open(path, sync="off").close()


def test_file_truncated_at_a_page_boundary_is_refused_and_untouched(tmp_path, valid_image):
    path = tmp_path / "cut.db"
    data = valid_image[:PAGE]
    path.write_bytes(data)
    with pytest.raises(engine.CorruptionError):  # our file, cut short: damaged, not foreign
        engine.open(path, create=False, sync="off")
    assert path.read_bytes() == data
    assert not Path(str(path) + "-wal").exists()


def test_corrupt_page0_open_creates_no_log(tmp_path, valid_image):
    path = tmp_path / "crc.db"
    data = bytearray(valid_image)
    data[PAGE - 1] ^= 0xFF  # page 0 keeps its magic, loses its checksum
    path.write_bytes(bytes(data))
    with pytest.raises(engine.CorruptionError):
        engine.open(path, create=False, sync="off")
    assert path.read_bytes() == bytes(data)
    assert not Path(str(path) + "-wal").exists()


@contextlib.contextmanager
def _file_size_limit(limit: int):
    """Writes past `limit` bytes of any file are cut short by the kernel (a
    short write), then refused with EFBIG; SIGXFSZ is ignored meanwhile so it
    does not end the process. In this process, so mutation testing's map of
    tests to functions sees the write path it runs."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_short_buffered_write_is_finished_or_reported(tmp_path):
    path = tmp_path / "f"
    f = DirectFile.open(path, True, False)
    try:
        f.write(0, b"a" * 1000)
        with _file_size_limit(1500), pytest.raises(StorageIOError) as refused:
            f.write(1000, memoryview(b"b" * 1000))  # 500 bytes land, the rest is tried and refused
        assert refused.value.errno == errno.EFBIG
        f.write(1500, b"c" * 10)  # no limit now: the file goes on where the short write stopped
    finally:
        f.close()
    assert path.read_bytes() == b"a" * 1000 + b"b" * 500 + b"c" * 10

"""The buffered I/O path on a pyfakefs filesystem: create, open, missing
file, permission denied, disk full, and a filesystem that refuses O_DIRECT.
Each failure must end in a typed error with nothing lost: the database
reopens afterwards with everything committed before the failure, and no file
descriptor is left open.

pyfakefs does not emulate `os.preadv`, `os.pwritev` or
`os.posix_fallocate`: left alone, `DirectFile` would call the real ones on
pyfakefs' fake descriptor numbers (which may be real descriptors of this
process). `PosixFakeOs` adds them on top of pyfakefs' own fd calls, refuses
O_DIRECT as tmpfs did before Linux 6.6, and refuses any other fd-level call
pyfakefs does not fake, so nothing reaches the real disk.
"""

from __future__ import annotations

import errno
import os

import pytest
from pyfakefs.fake_filesystem_unittest import Patcher
from pyfakefs.fake_os import FakeOsModule

import engine
from engine.disk import DirectFile
from engine.errors import StorageIOError

_UNFAKED_FD_CALLS = frozenset(
    {
        "pread",
        "pwrite",
        "readv",
        "writev",
        "fdatasync",
        "posix_fadvise",
        "sendfile",
        "copy_file_range",
    }
)


class PosixFakeOs(FakeOsModule):
    """pyfakefs' `os` plus the positional fd calls `DirectFile` uses."""

    def preadv(self, fd: int, buffers, offset: int) -> int:
        (buf,) = buffers
        self.lseek(fd, offset, os.SEEK_SET)
        data = self.read(fd, len(buf))
        buf[: len(data)] = data
        return len(data)

    def pwritev(self, fd: int, buffers, offset: int) -> int:
        (buf,) = buffers
        self.lseek(fd, offset, os.SEEK_SET)
        return self.write(fd, bytes(buf))

    def posix_fallocate(self, fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not supported here")  # DirectFile falls back

    def open(self, path, flags, mode=None, *, dir_fd=None):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")  # as tmpfs before Linux 6.6
        return super().open(path, flags, mode, dir_fd=dir_fd)

    def __getattr__(self, name: str):
        if name in _UNFAKED_FD_CALLS:
            raise AssertionError(f"os.{name} is not emulated on the fake filesystem")
        return super().__getattr__(name)


@pytest.fixture
def fakefs():
    # allow_root_user=False: permissions apply even when the suite runs as root
    with Patcher(modules_to_patch={"os": PosixFakeOs}, allow_root_user=False) as patcher:
        fs = patcher.fs
        fs.create_dir("/data")
        yield fs


def open_fds(fs) -> int:
    return sum(1 for entry in fs.open_files if entry)


def make_db(path: str, n: int = 50) -> dict[bytes, bytes]:
    data = {b"key%04d" % i: b"value %d " % i * 5 for i in range(n)}
    with engine.open(path, direct_io=False, sync="full") as db:
        t = db.tree("t")
        for k, v in data.items():
            t[k] = v
    return data


def contents(path: str) -> dict[bytes, bytes]:
    with engine.open(path, direct_io=False, sync="off") as db:
        report = db.check()
        assert report.ok, report.problems
        return dict(db.tree("t").items()) if "t" in db.trees() else {}


def test_create_and_reopen(fakefs):
    baseline = open_fds(fakefs)
    data = make_db("/data/a.db")
    assert sorted(os.listdir("/data")) == ["a.db", "a.db-readers", "a.db-wal"]  # the lock file of docs/processes.md
    assert os.path.getsize("/data/a.db") % 4096 == 0
    with engine.open("/data/a.db", create=False, direct_io=False) as db:
        assert db.stats()["direct_io"] is False
        assert dict(db.tree("t").items()) == data
    assert open_fds(fakefs) == baseline, "every descriptor was closed"


def test_missing_file_without_create(fakefs):
    baseline = open_fds(fakefs)
    with pytest.raises(FileNotFoundError):
        engine.open("/data/absent.db", create=False, direct_io=False)
    with pytest.raises(FileNotFoundError):
        engine.open("/nowhere/x.db", direct_io=False)  # a missing directory, even with create
    assert os.listdir("/data") == []
    assert open_fds(fakefs) == baseline


def test_permission_denied_on_the_data_file(fakefs):
    data = make_db("/data/p.db")
    before = fakefs.get_object("/data/p.db").byte_contents
    baseline = open_fds(fakefs)
    os.chmod("/data/p.db", 0o444)
    with pytest.raises(StorageIOError) as info:
        engine.open("/data/p.db", direct_io=False)
    # the engine's typed error, an OSError carrying EACCES (not a PermissionError)
    assert isinstance(info.value, OSError) and info.value.errno == errno.EACCES
    assert open_fds(fakefs) == baseline
    os.chmod("/data/p.db", 0o644)
    assert fakefs.get_object("/data/p.db").byte_contents == before
    assert contents("/data/p.db") == data


def test_permission_denied_on_the_log(fakefs):
    data = make_db("/data/w.db")
    before = fakefs.get_object("/data/w.db").byte_contents
    baseline = open_fds(fakefs)
    os.chmod("/data/w.db-wal", 0o444)
    with pytest.raises(StorageIOError) as info:
        engine.open("/data/w.db", direct_io=False)
    assert info.value.errno == errno.EACCES
    assert open_fds(fakefs) == baseline, "the data file opened first was closed again"
    assert fakefs.get_object("/data/w.db").byte_contents == before
    os.chmod("/data/w.db-wal", 0o644)
    assert contents("/data/w.db") == data


def test_permission_denied_on_the_directory(fakefs):
    os.chmod("/data", 0o555)
    with pytest.raises(StorageIOError) as info:
        engine.open("/data/new.db", direct_io=False)
    assert info.value.errno == errno.EACCES
    assert os.listdir("/data") == []
    os.chmod("/data", 0o755)
    assert contents("/data/new.db") == {}


def test_read_only_open_of_a_read_only_file(fakefs):
    data = make_db("/data/r.db")
    os.chmod("/data/r.db", 0o444)
    os.chmod("/data/r.db-wal", 0o444)
    with engine.open("/data/r.db", read_only=True, direct_io=False) as db:
        assert dict(db.tree("t").items()) == data


# -- disk full -------------------------------------------------------------------------


def _fill_until_full(db, before: dict, prefix: bytes, value: bytes, limit: int = 2000) -> dict:
    """Put keys until the disk is full; returns what was committed."""
    t = db.tree("t")
    done = dict(before)
    with pytest.raises(StorageIOError) as info:
        for i in range(limit):
            key = prefix + b"%05d" % i
            t[key] = value
            done[key] = value
    assert info.value.errno in (errno.ENOSPC, errno.EFBIG), info.value
    assert len(done) > len(before), "some writes fitted before the disk filled"
    # the failed put had no effect and the database is still usable for reads
    assert dict(t.items()) == done
    return done


@pytest.mark.parametrize("value_size", [1000, 50_000])
def test_disk_full_while_writing(fakefs, value_size):
    data = make_db("/data/f.db")
    fakefs.set_disk_usage(fakefs.get_disk_usage("/").used + 400 * 1024)  # one extent and a bit
    db = engine.open("/data/f.db", direct_io=False, sync="full")
    try:
        data = _fill_until_full(db, data, b"more", b"x" * value_size)
    finally:
        try:
            db.close()
        except StorageIOError as exc:  # the closing checkpoint may not fit either
            assert exc.errno in (errno.ENOSPC, errno.EFBIG)
    fakefs.set_disk_usage(1 << 30)
    assert contents("/data/f.db") == data, "every committed write survives, nothing else"


def test_disk_full_at_create(fakefs):
    fakefs.set_disk_usage(4096 + 100)  # page 0 fits, the log header does not
    with pytest.raises(StorageIOError) as info:
        engine.open("/data/c.db", direct_io=False)
    assert info.value.errno in (errno.ENOSPC, errno.EFBIG)
    fakefs.set_disk_usage(1 << 30)
    # whatever the failed create left behind opens as an empty database
    with engine.open("/data/c.db", direct_io=False) as db:
        assert db.trees() == []
        db.tree("t")[b"k"] = b"v"
    assert contents("/data/c.db") == {b"k": b"v"}


# -- a filesystem that refuses O_DIRECT ---------------------------------------------------


def test_direct_true_is_refused_and_auto_falls_back(fakefs):
    baseline = open_fds(fakefs)
    with pytest.raises(StorageIOError) as info:
        DirectFile.open("/data/d.db", create=True, direct=True)
    assert info.value.errno == errno.EINVAL
    assert open_fds(fakefs) == baseline, "the buffered descriptor opened first was closed"
    f = DirectFile.open("/data/d.db", create=True, direct="auto")
    try:
        assert f.direct is False
        assert f.path == "/data/d.db"  # the path its error messages name
        f.write(10, b"fallback")
        buf = bytearray(8)
        assert f.read_into(10, memoryview(buf)) == 8 and bytes(buf) == b"fallback"
    finally:
        f.close()


def test_a_refused_direct_open_leaves_the_files_as_they_were(fakefs):
    # a file it created is removed again; a file that was there stays
    with pytest.raises(StorageIOError) as info:
        DirectFile.open("/data/new.db", create=True, direct=True)
    assert info.value.strerror == "open /data/new.db: O_DIRECT refused by the filesystem (Invalid argument)"
    assert not os.path.exists("/data/new.db")
    fakefs.create_file("/data/old.db", contents=b"keep")
    for create in (True, False):
        with pytest.raises(StorageIOError):
            DirectFile.open("/data/old.db", create=create, direct=True)
        with open("/data/old.db", "rb") as f:
            assert f.read() == b"keep"


def test_engine_reports_the_fallback(fakefs):
    with pytest.raises(StorageIOError):
        engine.open("/data/e.db", direct_io=True)
    with engine.open("/data/e.db", direct_io="auto", sync="full") as db:
        assert db.stats()["direct_io"] is False
        db.tree("t")[b"k"] = b"v"
    assert contents("/data/e.db") == {b"k": b"v"}

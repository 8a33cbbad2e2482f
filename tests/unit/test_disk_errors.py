"""Every system call of `DirectFile`, `fsync_dir` and `FileLock` that fails
reaches the caller as a `StorageIOError` (an `OSError` with the errno and the
operation in its message), never as a bare `OSError`.

The failures are real, not mocked: the file's descriptor is replaced (dup2)
by the read end of a pipe, on which positioned I/O fails with ESPIPE and
fdatasync/ftruncate with EINVAL, or it is closed under the file (EBADF).
"""

from __future__ import annotations

import errno
import os

import pytest

from engine.disk import SECTOR, DirectFile, aligned_buffer, fsync_dir
from engine.errors import StorageIOError
from engine.locks import FileLock


@pytest.fixture
def on_a_pipe(tmp_path):
    """A DirectFile (buffered) whose descriptor now refers to a pipe."""
    f = DirectFile.open(tmp_path / "p.db", create=True, direct=False)
    assert f.path == str(tmp_path / "p.db")  # what the messages name
    f.write(0, b"x" * SECTOR)
    r, w = os.pipe()
    os.dup2(r, f.fd)
    os.close(r)
    yield f
    f.close()
    os.close(w)


def _raises(call, op: str, *codes: int, path=None) -> StorageIOError:
    """The call raises a StorageIOError with one of `codes`, whose message
    is "<op> <path>: <the system's words for the errno>" when `path` is given."""
    with pytest.raises(StorageIOError) as info:
        call()
    assert isinstance(info.value, OSError)
    assert info.value.errno in codes, info.value
    assert op in str(info.value)
    if path is not None:
        assert info.value.strerror == f"{op} {path}: {os.strerror(info.value.errno)}"
    return info.value


def test_failed_sync_is_a_storage_error(on_a_pipe):
    _raises(on_a_pipe.sync, "fsync", errno.EINVAL, path=on_a_pipe.path)


def test_failed_truncate_is_a_storage_error(on_a_pipe):
    _raises(lambda: on_a_pipe.truncate(0), "truncate", errno.EINVAL, path=on_a_pipe.path)


def test_failed_extend_is_a_storage_error(on_a_pipe):
    # a pipe's size is 0, so extend tries to allocate and the pipe's read end
    # refuses (EBADF: not open for writing; ESPIPE on kernels that check that first)
    _raises(lambda: on_a_pipe.extend(8 * SECTOR), "extend", errno.EBADF, errno.ESPIPE, path=on_a_pipe.path)


def test_failed_positioned_io_is_a_storage_error(on_a_pipe):
    _raises(lambda: on_a_pipe.write(0, b"y" * SECTOR), "write", errno.ESPIPE, path=on_a_pipe.path)
    buf = bytearray(SECTOR)
    _raises(lambda: on_a_pipe.read_into(0, memoryview(buf)), "read", errno.ESPIPE, path=on_a_pipe.path)


def test_failed_aligned_direct_io_is_not_retried_through_the_bounce_buffer(tmp_path):
    # Under O_DIRECT an aligned request goes straight to preadv/pwritev; only
    # EINVAL (unaligned memory) falls back to the bounce buffer, any other
    # error is the caller's.
    try:
        f = DirectFile.open(tmp_path / "d.db", create=True, direct=True)
    except StorageIOError:
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    r, w = os.pipe()
    try:
        os.dup2(r, f.fd)
        mem = aligned_buffer(4096)
        view = memoryview(mem)
        _raises(lambda: f.read_into(0, view), "read", errno.ESPIPE, path=tmp_path / "d.db")
        _raises(lambda: f.write(0, view), "write", errno.ESPIPE, path=tmp_path / "d.db")
        view.release()
        mem.close()
    finally:
        f.close()
        os.close(r)
        os.close(w)


def test_failed_stat_and_close_are_storage_errors(tmp_path):
    f = DirectFile.open(tmp_path / "c.db", create=True, direct=False)
    os.close(f.fd)  # closed under the file: every call now gets EBADF
    _raises(f.size, "stat", errno.EBADF, path=tmp_path / "c.db")
    _raises(f.close, "close", errno.EBADF, path=tmp_path / "c.db")
    # the file counts as closed after the failed close: later calls say so
    _raises(f.size, "closed", errno.EBADF)
    f.close()  # and closing again is harmless


def test_fsync_dir_of_a_missing_directory(tmp_path):
    err = _raises(lambda: fsync_dir(tmp_path / "gone" / "x.db"), "open dir", errno.ENOENT)
    assert str(tmp_path / "gone") in str(err)


def test_fsync_dir_of_a_real_directory(tmp_path):
    fsync_dir(tmp_path / "x.db")  # no error, and no descriptor left open
    fsync_dir(tmp_path / "x.db")


def test_file_lock_on_a_path_through_a_file(tmp_path):
    (tmp_path / "plain").write_bytes(b"")
    _raises(lambda: FileLock(tmp_path / "plain" / "x.db"), "open", errno.ENOTDIR,
            path=tmp_path / "plain" / "x.db")


def test_file_lock_on_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        FileLock(tmp_path / "missing.db")

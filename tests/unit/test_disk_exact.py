"""`engine.disk` and `engine.locks`, exactly: what their descriptors, messages
and lock reports say, where test_disk.py checks what they do.

- every descriptor the module opens is close-on-exec, so a child process
  started by the application never inherits the database's file or lock;
- `fsync_dir` opens the directory as a directory;
- `DatabaseLockedError` names the file, who holds it (this process, another
  process with its command line, how many readers) and how long it waited;
- a refused lock leaves no descriptor open; `forget` closes without unlocking.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import subprocess
import sys
import threading

import pytest

from engine.disk import DirectFile, aligned_buffer, fsync_dir, reserved_buffer
from engine.errors import DatabaseLockedError, StorageIOError
from engine.locks import FileLock, ReaderLock, _describe, _lock_holders, poll_pauses

ME = f"process {os.getpid()} (this process)"


def _cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- descriptors ---------------------------------------------------------------


@pytest.mark.parametrize("direct, read_only", [(True, False), ("auto", False), (False, False), (False, True)])
def test_a_direct_file_names_its_path_and_is_close_on_exec(tmp_path, direct, read_only):
    path = tmp_path / "f.db"
    path.write_bytes(bytes(4096))
    f = DirectFile.open(path, create=False, direct=direct, read_only=read_only)
    try:
        assert f.path == str(path)  # the path every error message names
        assert _cloexec(f.fd)
    finally:
        f.close()


def test_lock_descriptors_are_close_on_exec(tmp_path):
    path = tmp_path / "l.db"
    path.write_bytes(b"")
    lock = FileLock(path)
    readers = ReaderLock(tmp_path / "l.db-readers")
    # a path the lock cannot open read-write (a directory, even for root):
    # the reader falls back to a read-only descriptor, which locks all the same
    fallback = ReaderLock(tmp_path)
    try:
        assert fallback.fd is not None
        assert all(_cloexec(fd) for fd in (lock.fd, readers.fd, fallback.fd))
        fallback.hold()
        assert fallback.held == fcntl.LOCK_SH
    finally:
        lock.release()
        readers.close()
        fallback.close()


def test_a_one_byte_buffered_write(tmp_path):
    f = DirectFile.open(tmp_path / "b.db", create=True, direct=False)
    try:
        f.write(0, b"x")
        f.write(1, memoryview(b"y"))
        buf = bytearray(4)
        assert f.read_into(0, memoryview(buf)) == 2 and bytes(buf[:2]) == b"xy"
    finally:
        f.close()


def test_fsync_dir_opens_a_directory_not_a_file(tmp_path):
    # the parent of this path is a regular file: opened without O_DIRECTORY
    # it would be fsynced as a file and the mistake go unnoticed
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(StorageIOError) as info:
        fsync_dir(tmp_path / "plain" / "x.db")
    assert info.value.errno == errno.ENOTDIR
    assert info.value.strerror == f"open dir {tmp_path / 'plain'}: {os.strerror(errno.ENOTDIR)}"


# -- who holds the lock ------------------------------------------------------------

# mode r: a shared flock, w: an exclusive flock, p: a POSIX lock (lockf)
_HOLD = "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); m = sys.argv[2]; " \
        "fcntl.lockf(fd, fcntl.LOCK_EX) if m == 'p' else " \
        "fcntl.flock(fd, fcntl.LOCK_SH if m == 'r' else fcntl.LOCK_EX); " \
        "print('held', flush=True); sys.stdin.readline()"


class _Holders:
    """Child processes that each hold an flock on a file until closed."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []

    def start(self, path, mode: str, extra: bytes = b"") -> subprocess.Popen:
        args = [sys.executable.encode(), b"-c", _HOLD.encode(), os.fsencode(path), mode.encode()]
        if extra:
            args.append(extra)
        child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.children.append(child)
        assert child.stdout.readline().strip() == b"held"
        child.cmdline = b" ".join(args).decode(errors="replace")  # type: ignore[attr-defined]
        return child

    def close(self) -> None:
        for child in self.children:
            child.stdin.close()
            child.wait(30)


@pytest.fixture
def holders():
    h = _Holders()
    yield h
    h.close()


def _holder_of(path) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _lock_holders(fd)
    finally:
        os.close(fd)


def test_a_writer_in_this_process(tmp_path):
    path = tmp_path / "w.db"
    path.write_bytes(b"")
    lock = FileLock(path)
    try:
        assert _holder_of(path) == f"a writer holds the database: {ME}"
        with pytest.raises(DatabaseLockedError) as info:
            FileLock(path)  # the default timeout is 0: no wait
        assert str(info.value) == f"{path}: a writer holds the database: {ME} (timeout=0, not waiting)"
        with pytest.raises(DatabaseLockedError) as info:
            FileLock(path, shared=True, timeout=0.05)
        assert str(info.value) == f"{path}: a writer holds the database: {ME} (waited 0.05 s)"
    finally:
        lock.release()


def test_a_writer_in_another_process_is_named_with_its_command_line(tmp_path, holders):
    path = tmp_path / "o.db"
    path.write_bytes(b"")
    # an argument that is not UTF-8 is shown, replaced, not refused
    child = holders.start(path, "w", extra=b"\xff")
    assert len(child.cmdline) > 80
    want = f"a writer holds the database: process {child.pid} ({child.cmdline[:80]})"
    assert _holder_of(path) == want
    assert _describe(child.pid) == f"process {child.pid} ({child.cmdline[:80]})"


def test_readers_are_counted_and_the_first_four_named(tmp_path, holders):
    path = tmp_path / "r.db"
    path.write_bytes(b"")
    kids = [holders.start(path, "r") for _ in range(5)]
    mine = FileLock(path, shared=True)  # a sixth, in this process
    try:
        named = sorted([os.getpid(), *(k.pid for k in kids)])[:4]
        by_pid = {k.pid: f"process {k.pid} ({k.cmdline[:80]})" for k in kids}
        by_pid[os.getpid()] = ME
        want = "6 read-only open(s) hold a shared lock: " + ", ".join(by_pid[p] for p in named)
        assert _holder_of(path) == want
    finally:
        mine.release()


def test_locks_of_other_files_and_other_kinds_are_not_holders(tmp_path, holders):
    path, other = tmp_path / "a.db", tmp_path / "b.db"
    path.write_bytes(b"x")
    other.write_bytes(b"x")
    nobody = "another open of the database holds its lock"
    assert _holder_of(path) == nobody
    elsewhere = FileLock(other)  # an flock on another file
    holders.start(path, "p")  # a POSIX lock on this one: not an flock
    try:
        assert _holder_of(path) == nobody
    finally:
        elsewhere.release()


def test_who_holds_is_a_phrase_when_it_cannot_be_found(tmp_path):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert _lock_holders(r) == "another open of the database holds its lock"  # fstat fails
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)
    assert _describe(child.pid) == f"process {child.pid}"  # gone: no command line to show


# -- refusing, waiting, forgetting --------------------------------------------------


def test_a_refused_lock_leaves_no_descriptor_open(tmp_path):
    path = tmp_path / "n.db"
    path.write_bytes(b"")
    holder = FileLock(path)
    try:
        before = _open_fds()
        for _ in range(3):
            with pytest.raises(DatabaseLockedError):
                FileLock(path)
        assert _open_fds() == before
    finally:
        holder.release()


def test_a_lock_is_polled_for_at_1_ms_doubling_to_50_ms():
    """A short wait is noticed at once, a long one costs little: the sleeps
    between polls, not a timed run (a loaded machine stretches every sleep)."""
    assert list(itertools.islice(poll_pauses(), 9)) == [
        0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05, 0.05]


def test_a_released_lock_is_taken_by_the_waiter(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"")
    holder = FileLock(path)
    released = threading.Event()

    def release() -> None:
        holder.release()
        released.set()

    threading.Timer(0.1, release).start()
    waiter = FileLock(path, timeout=30)  # raises DatabaseLockedError unless the release is seen
    assert released.is_set() and waiter.fd is not None
    waiter.release()


def test_forget_closes_the_descriptor_without_unlocking(tmp_path):
    path = tmp_path / "f.db"
    path.write_bytes(b"")
    lock = FileLock(path)
    fd = lock.fd
    lock.forget()
    assert lock.fd is None
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    lock.forget()  # twice is harmless
    lock.release()  # and so is a release after it
    FileLock(path).release()  # the only descriptor closed, the lock went with it


# -- file modes ------------------------------------------------------------------


def test_new_files_are_created_rw_for_all_less_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        DirectFile.open(tmp_path / "m.db", create=True, direct=False).close()
        ReaderLock(tmp_path / "m.db-readers").close()
    finally:
        os.umask(umask)
    for name in ("m.db", "m.db-readers"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# -- the readers lock's states ---------------------------------------------------------


def test_reader_lock_states(tmp_path):
    # `held` is what a writer consults to know it holds the lock already:
    # it must say exactly what this object holds
    p = tmp_path / "s-readers"
    lock = ReaderLock(p)
    assert (lock.held, lock.forked) == (0, False)
    lock.release()  # holding nothing: nothing to drop
    assert lock.held == 0
    lock.hold()
    assert lock.held == fcntl.LOCK_SH
    lock.release()
    assert lock.held == 0
    assert lock.exclusive(wait=False) and lock.held == fcntl.LOCK_EX
    lock.close()
    assert (lock.fd, lock.held) == (None, 0)
    FileLock(p).release()  # closing dropped the lock


def test_reader_lock_exclusive_waits_for_readers_when_asked(tmp_path):
    p = tmp_path / "w-readers"
    reader, writer = ReaderLock(p), ReaderLock(p)
    reader.hold()
    threading.Timer(0.1, reader.release).start()
    assert writer.exclusive(wait=True)  # returns once the reader has gone
    assert writer.held == fcntl.LOCK_EX and reader.held == 0
    assert not reader.exclusive(wait=False) and reader.held == 0
    writer.close()
    reader.close()


def test_reader_lock_creates_its_file_unless_told_not_to(tmp_path):
    missing = tmp_path / "no" / "x-readers"
    with pytest.raises(StorageIOError) as info:
        ReaderLock(missing)  # create=True is the default: a writer needs the file
    assert info.value.errno == errno.ENOENT
    assert info.value.strerror == f"open {missing}: {os.strerror(errno.ENOENT)}"


def test_reader_lock_other_lock_failures_are_storage_errors(tmp_path):
    p = tmp_path / "e-readers"
    lock = ReaderLock(p)
    os.close(lock.fd)  # closed under it: flock now fails with EBADF
    for mode in (fcntl.LOCK_SH, fcntl.LOCK_SH | fcntl.LOCK_NB):
        with pytest.raises(StorageIOError) as info:
            lock._flock(mode)  # a non-blocking request is refused only for a conflict
        assert info.value.errno == errno.EBADF
        assert info.value.strerror == f"lock {p}: {os.strerror(errno.EBADF)}"
    lock.fd = None  # closed already


def test_reader_lock_forget_closes_without_unlocking_and_refuses_after(tmp_path):
    p = tmp_path / "f-readers"
    lock = ReaderLock(p)
    lock.hold()
    fd = lock.fd
    lock.forget()
    assert (lock.fd, lock.held, lock.forked) == (None, 0, True)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    lock.forget()  # twice is harmless
    assert lock.forked is True
    want = f"{p}: lock inherited across fork(); open the database again"
    for call in (lock.hold, lambda: lock.exclusive(wait=False)):
        with pytest.raises(StorageIOError) as info:
            call()
        assert (info.value.errno, info.value.strerror) == (errno.EBADF, want)


# -- the overlay's refusals ----------------------------------------------------------------


def test_overlay_refuses_negative_offsets_and_use_after_close(tmp_path):
    from engine.disk import Overlay

    base = DirectFile.open(tmp_path / "o.db", create=True, direct=False)
    base.write(0, b"base")
    o = Overlay(base)
    for call in (lambda: o.read_into(-1, memoryview(bytearray(1))), lambda: o.write(-1, b"x"),
                 lambda: o.truncate(-1), lambda: o.extend(-1)):
        with pytest.raises(StorageIOError) as info:
            call()
        assert (info.value.errno, info.value.strerror) == (errno.EINVAL, "overlay: negative offset -1")
    o.write(0, b"B")
    assert o.size() == 4
    o.close()
    o.close()  # twice is harmless
    for call in (o.sync, o.size, lambda: o.read_into(0, memoryview(bytearray(1)))):
        with pytest.raises(StorageIOError) as info:
            call()
        assert (info.value.errno, info.value.strerror) == (errno.EBADF, "overlay: file is closed")
    with pytest.raises(StorageIOError):
        base.size()  # closing the overlay closed its base


# -- across fork() ------------------------------------------------------------------


def _in_child(fn) -> int:
    """Run `fn` in a forked child; its return value (a small int) is the exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 99
        try:
            code = fn()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_forked_child_forgets_every_readers_lock(tmp_path):
    p = tmp_path / "k-readers"
    lock = ReaderLock(p)
    lock.hold()
    # in the child the lock is forgotten (not released: the parent keeps it)
    assert _in_child(lambda: 0 if (lock.forked, lock.fd, lock.held) == (True, None, 0) else 1) == 0
    assert (lock.forked, lock.held) == (False, fcntl.LOCK_SH)
    other = ReaderLock(p)
    assert not other.exclusive(wait=False), "the parent still holds its shared lock"
    other.close()
    lock.close()


@pytest.mark.parametrize("make", [aligned_buffer, reserved_buffer])
def test_buffers_are_private_to_the_process(make):
    # a forked child writing into a frame must not change the parent's copy
    mem = make(8192)
    mem[:4] = b"mine"

    def child() -> int:
        mem[:4] = b"kids"
        return 0

    assert _in_child(child) == 0
    assert mem[:4] == b"mine"
    mem.close()


@pytest.mark.parametrize("make", [aligned_buffer, reserved_buffer])
def test_buffer_sizes_are_whole_pages(make):
    with pytest.raises(AssertionError, match=rf"^{make.__name__}: size must be a multiple of 4096$"):
        make(4096 + 512)


def test_opening_a_directory_names_it(tmp_path):
    with pytest.raises(StorageIOError) as info:
        DirectFile.open(tmp_path, create=False, direct=False)
    assert info.value.strerror == f"open {tmp_path}: {os.strerror(errno.EISDIR)}"


def test_overlay_reads_zeros_where_the_base_was_cut_off(tmp_path):
    from engine.disk import Overlay

    base = DirectFile.open(tmp_path / "c.db", create=True, direct=False)
    base.write(0, b"\xab" * (3 * 4096))
    o = Overlay(base)
    o.truncate(100)  # cuts the base off at 100
    o.extend(3 * 4096)  # and grows again: zeros from 100 on
    for at, n in ((0, 3 * 4096), (4096, 4096), (8192 + 7, 50), (50, 100)):
        buf = bytearray(b"\xee" * n)  # what was in the caller's buffer must not show through
        assert o.read_into(at, memoryview(buf)) == n
        want = (b"\xab" * 100 + bytes(3 * 4096 - 100))[at:at + n]
        assert bytes(buf) == want, (at, n)
    o.close()


def test_a_refused_rename_says_what_failed_and_keeps_the_name(tmp_path):
    path = str(tmp_path / "r.db")
    f = DirectFile.open(path, create=True, direct=False)
    try:
        with pytest.raises(StorageIOError) as info:
            f.rename(str(tmp_path / "no-such-dir" / "r.db"))
        assert (info.value.errno, info.value.strerror) == (
            errno.ENOENT, f"rename {path}: No such file or directory")
        assert f.path == path and os.path.exists(path)
    finally:
        f.close()


def test_an_overlay_keeps_its_name(tmp_path):
    from engine.disk import Overlay

    base = DirectFile.open(tmp_path / "o.db", create=True, direct=False)
    o = Overlay(base)
    with pytest.raises(StorageIOError) as info:
        o.rename("elsewhere.db")
    assert (info.value.errno, info.value.strerror) == (
        errno.EROFS, "overlay: a read-only file keeps its name (not 'elsewhere.db')")
    o.close()

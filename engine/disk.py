"""The disk layer: the `BlockFile` protocol, `DirectFile`, file locks.

Only this module calls `os.pread`/`pwrite`/`fsync`/`flock`. Every `OSError`
leaves here as `StorageIOError` (`raise ... from exc`), so upper layers see one
error type and clean up with guards.

`DirectFile` opens with `O_DIRECT` and moves bytes straight between the file
and page-aligned memory (anonymous `mmap`, which the kernel aligns to 4 KiB)
with `os.preadv`/`os.pwritev`, so the kernel page cache holds no second copy
of what the buffer pool already holds. Where the filesystem refuses `O_DIRECT`
(tmpfs does, with EINVAL) `direct="auto"` falls back to buffered I/O and says
so in `.direct`; `direct=True` raises `StorageIOError` instead.

The `opener=` hook of `engine.open` is any callable `(path, create) ->
BlockFile`; the fault layer wraps a `DirectFile` there and forwards calls.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from typing import Protocol, runtime_checkable

from engine.errors import DatabaseLockedError, StorageIOError

__all__ = [
    "BlockFile",
    "DirectFile",
    "FileLock",
    "Opener",
    "SECTOR",
    "aligned_buffer",
    "default_opener",
    "fsync_dir",
]

SECTOR = 512  # O_DIRECT alignment unit for offsets and lengths on Linux block devices
_ALIGN = 4096  # we align to a full page, which satisfies every sector size in use


@runtime_checkable
class BlockFile(Protocol):
    """A file of bytes addressed by offset. Implementations: `DirectFile`,
    `faults.io.FaultyFile`, `faults.crash.CrashFile`.

    Contract (checked by `tests/unit/test_blockfile_conformance.py`):
    - `read_into(offset, buf)` fills `buf` from `offset`, returns bytes read;
      fewer than `len(buf)` only at end of file.
    - `write(offset, data)` writes all of `data` at `offset` or raises.
    - `sync()` makes every completed write durable or raises.
    - `size()` is the file length; `extend(n)` grows it to `n` (never shrinks);
      `truncate(n)` sets it to exactly `n`.
    - `close()` is idempotent.
    - every failure is a `StorageIOError`.
    """

    direct: bool

    def read_into(self, offset: int, buf: memoryview) -> int: ...
    def write(self, offset: int, data: bytes | memoryview) -> None: ...
    def sync(self) -> None: ...
    def size(self) -> int: ...
    def extend(self, new_size: int) -> None: ...
    def truncate(self, new_size: int) -> None: ...
    def close(self) -> None: ...


class Opener(Protocol):
    def __call__(self, path: str, create: bool) -> BlockFile: ...


def aligned_buffer(size: int) -> mmap.mmap:
    """Anonymous page-aligned memory of `size` bytes (a multiple of 4 KiB)."""
    assert size % _ALIGN == 0, "aligned_buffer: size must be a multiple of 4096"
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def _io_error(op: str, path: str, exc: OSError) -> StorageIOError:
    return StorageIOError(exc.errno or errno.EIO, f"{op} {path}: {exc.strerror or exc}")


class DirectFile:
    """A `BlockFile` over a real file, with O_DIRECT where the filesystem allows.

    With O_DIRECT every transfer must be sector-aligned in offset, length and
    memory; unaligned requests (log records) go through a bounce buffer.
    """

    __slots__ = ("path", "fd", "direct", "_bounce", "_closed")

    def __init__(self, path: str, fd: int, direct: bool) -> None:
        self.path = path
        self.fd = fd
        self.direct = direct
        self._bounce: mmap.mmap | None = None
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], create: bool, direct: bool | str = "auto",
             read_only: bool = False) -> DirectFile:
        """Open `path` read-write, or read-only (creating it when `create`).

        `direct`: True (O_DIRECT or `StorageIOError`), False (buffered),
        "auto" (O_DIRECT where the filesystem allows it).
        A missing file with `create=False` raises `FileNotFoundError`.
        """
        path = os.fspath(path)
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        created = False
        if create and not read_only:
            flags |= os.O_CREAT
            created = not os.path.exists(path)
        fd = cls._open_fd(path, flags, create)
        if direct is False or not hasattr(os, "O_DIRECT"):
            if direct is True:  # pragma: no cover - only where os has no O_DIRECT (macOS)
                os.close(fd)
                raise StorageIOError(errno.EINVAL, f"open {path}: O_DIRECT is not available here")
            return cls(path, fd, False)
        try:
            dfd = os.open(path, (flags & ~os.O_CREAT) | os.O_DIRECT)
        except OSError as exc:
            if direct is True:
                os.close(fd)
                if created:  # leave nothing behind for a refused open
                    os.unlink(path)
                raise StorageIOError(
                    exc.errno or errno.EINVAL, f"open {path}: O_DIRECT refused by the filesystem ({exc.strerror})"
                ) from exc
            return cls(path, fd, False)
        os.close(fd)
        return cls(path, dfd, True)

    @staticmethod
    def _open_fd(path: str, flags: int, create: bool) -> int:
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _io_error("open", path, exc) from exc

    def _check(self) -> None:
        if self._closed:
            raise StorageIOError(errno.EBADF, f"{self.path}: file is closed")

    def _aligned(self, offset: int, length: int) -> bool:
        return offset % SECTOR == 0 and length % SECTOR == 0

    def _bounce_for(self, length: int) -> mmap.mmap:
        need = -(-length // _ALIGN) * _ALIGN
        if self._bounce is None or len(self._bounce) < need:
            if self._bounce is not None:
                self._bounce.close()
            self._bounce = aligned_buffer(max(need, _ALIGN))
        return self._bounce

    def read_into(self, offset: int, buf: memoryview) -> int:
        self._check()
        n = len(buf)
        try:
            if not self.direct:
                return os.preadv(self.fd, [buf], offset)
            if self._aligned(offset, n) and _is_aligned_memory(buf):
                try:
                    return os.preadv(self.fd, [buf], offset)
                except OSError as exc:  # memory not aligned: use the bounce buffer
                    if exc.errno != errno.EINVAL:
                        raise
            start = offset - offset % SECTOR
            span = -(-(offset + n - start) // SECTOR) * SECTOR
            bounce = self._bounce_for(span)
            view = memoryview(bounce)[:span]
            got = os.preadv(self.fd, [view], start)
            usable = max(0, min(n, got - (offset - start)))
            buf[:usable] = view[offset - start : offset - start + usable]
            view.release()
            return usable
        except OSError as exc:
            raise _io_error("read", self.path, exc) from exc

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._check()
        n = len(data)
        try:
            if not self.direct:
                self._write_all(offset, memoryview(data))
                return
            if self._aligned(offset, n) and isinstance(data, memoryview) and _is_aligned_memory(data):
                try:
                    self._write_all(offset, data)
                    return
                except OSError as exc:  # memory not aligned: use the bounce buffer
                    if exc.errno != errno.EINVAL:
                        raise
            self._write_unaligned(offset, data)
        except OSError as exc:
            raise _io_error("write", self.path, exc) from exc

    def _write_all(self, offset: int, view: memoryview) -> None:
        done = 0
        n = len(view)
        while done < n:
            w = os.pwritev(self.fd, [view[done:]], offset + done)
            if w <= 0:  # pragma: no cover - pwritev of n > 0 bytes returns > 0 or raises
                raise OSError(errno.EIO, "short write")
            done += w

    def _write_unaligned(self, offset: int, data: bytes | memoryview) -> None:
        # read-modify-write of the covering sectors through the bounce buffer
        n = len(data)
        start = offset - offset % SECTOR
        span = -(-(offset + n - start) // SECTOR) * SECTOR
        bounce = self._bounce_for(span)
        view = memoryview(bounce)[:span]
        end_size = os.fstat(self.fd).st_size
        if start < end_size:
            got = os.preadv(self.fd, [view], start)
            view[got:] = bytes(span - got)
        else:
            view[:] = bytes(span)
        view[offset - start : offset - start + n] = data
        done = 0
        while done < span:
            w = os.pwritev(self.fd, [view[done:]], start + done)
            if w <= 0:  # pragma: no cover - pwritev of n > 0 bytes returns > 0 or raises
                raise OSError(errno.EIO, "short write")
            done += w
        view.release()
        if start + span > max(end_size, offset + n):  # drop the sector padding past the file's end
            os.ftruncate(self.fd, max(end_size, offset + n))

    def sync(self) -> None:
        self._check()
        try:
            _fdatasync(self.fd)  # flushes data and the size; skips mtime, 3x faster here
        except OSError as exc:
            raise _io_error("fsync", self.path, exc) from exc

    def size(self) -> int:
        self._check()
        try:
            return os.fstat(self.fd).st_size
        except OSError as exc:
            raise _io_error("stat", self.path, exc) from exc

    def extend(self, new_size: int) -> None:
        self._check()
        try:
            if new_size > os.fstat(self.fd).st_size:
                if hasattr(os, "posix_fallocate"):  # pragma: no branch - Linux has it; the fallback is for macOS
                    try:
                        os.posix_fallocate(self.fd, 0, new_size)
                        return
                    except OSError as exc:
                        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                            raise
                os.ftruncate(self.fd, new_size)
        except OSError as exc:
            raise _io_error("extend", self.path, exc) from exc

    def truncate(self, new_size: int) -> None:
        self._check()
        try:
            os.ftruncate(self.fd, new_size)
        except OSError as exc:
            raise _io_error("truncate", self.path, exc) from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bounce is not None:
            self._bounce.close()
        try:
            os.close(self.fd)
        except OSError as exc:
            raise _io_error("close", self.path, exc) from exc


_fdatasync = getattr(os, "fdatasync", os.fsync)


def _is_aligned_memory(buf: memoryview) -> bool:
    # Cheap pre-check only; the kernel answers EINVAL for unaligned memory and
    # the caller then retries through the bounce buffer.
    return buf.nbytes % SECTOR == 0 and not buf.readonly


def default_opener(direct: bool | str = "auto") -> Opener:
    """The opener `engine.open` uses when none is given."""

    def opener(path: str, create: bool) -> BlockFile:
        return DirectFile.open(path, create, direct)

    return opener


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync the directory holding `path`, so a new name survives power loss."""
    d = os.path.dirname(os.path.abspath(os.fspath(path))) or "."
    try:
        fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        raise _io_error("open dir", d, exc) from exc
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - local filesystems accept a directory fsync
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # some filesystems refuse dir fsync
            raise _io_error("fsync dir", d, exc) from exc
    finally:
        os.close(fd)


class FileLock:
    """An exclusive (or shared, for read-only opens) `flock` on a path.

    The lock lives on its own open file description, so a second open of the
    same file in this process conflicts just as another process would.
    """

    __slots__ = ("path", "fd")

    def __init__(self, path: str | os.PathLike[str], shared: bool = False) -> None:
        self.path = os.fspath(path)
        try:
            self.fd: int | None = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _io_error("open", self.path, exc) from exc
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            self.fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DatabaseLockedError(f"{self.path}: another writer holds the database") from exc
            raise _io_error("lock", self.path, exc) from exc  # pragma: no cover - flock fails otherwise only with ENOLCK

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

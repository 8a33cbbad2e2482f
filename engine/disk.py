"""The disk layer: the `BlockFile` protocol, `DirectFile`, the `Overlay`.

Only this module calls `os.pread`/`pwrite`/`fsync` (and only `engine/locks.py`,
the file locks, calls `flock`). Every `OSError`
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
import mmap
import os
from typing import Protocol, runtime_checkable

from engine.errors import StorageIOError

__all__ = [
    "BlockFile",
    "DirectFile",
    "Opener",
    "Overlay",
    "SECTOR",
    "aligned_buffer",
    "default_opener",
    "fsync_dir",
    "io_error",
    "reserved_buffer",
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
    - `rename(new_path)` gives the file the name `new_path`, replacing any
      file there, atomically; the new name is durable once `sync_dir()`
      (which syncs the directory holding the file's name) returns.
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
    def rename(self, new_path: str) -> None: ...
    def sync_dir(self) -> None: ...
    def close(self) -> None: ...


class Opener(Protocol):
    def __call__(self, path: str, create: bool) -> BlockFile: ...


def aligned_buffer(size: int) -> mmap.mmap:
    """Anonymous page-aligned memory of `size` bytes (a multiple of 4 KiB)."""
    assert size % _ALIGN == 0, "aligned_buffer: size must be a multiple of 4096"
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def reserved_buffer(size: int) -> mmap.mmap:
    """Like `aligned_buffer`, for a buffer pool's frames: address space only.
    The kernel backs a page with memory when it is first touched, so the
    resident size follows the frames in use, and MAP_NORESERVE keeps a large
    pool from counting against the commit limit up front."""
    assert size % _ALIGN == 0, "reserved_buffer: size must be a multiple of 4096"
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    return mmap.mmap(-1, size, flags=flags)


def io_error(op: str, path: str, exc: OSError) -> StorageIOError:
    """The `StorageIOError` for a failed OS call: "<op> <path>: <the system's words>"."""
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
        fd = cls._open_fd(path, flags)
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
    def _open_fd(path: str, flags: int) -> int:
        try:
            return os.open(path, flags, 0o666)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise io_error("open", path, exc) from exc

    def _ensure_open(self) -> None:
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
        self._ensure_open()
        n = len(buf)
        try:
            if not self.direct:
                return os.preadv(self.fd, [buf], offset)  # noqa: TID251 - the I/O owner
            if self._aligned(offset, n) and _is_aligned_memory(buf):
                try:
                    return os.preadv(self.fd, [buf], offset)  # noqa: TID251 - the I/O owner
                except OSError as exc:  # memory not aligned: use the bounce buffer
                    if exc.errno != errno.EINVAL:
                        raise
            start = offset - offset % SECTOR
            span = -(-(offset + n - start) // SECTOR) * SECTOR
            bounce = self._bounce_for(span)
            view = memoryview(bounce)[:span]
            got = os.preadv(self.fd, [view], start)  # noqa: TID251 - the I/O owner
            usable = max(0, min(n, got - (offset - start)))
            buf[:usable] = view[offset - start : offset - start + usable]
            view.release()
            return usable
        except OSError as exc:
            raise io_error("read", self.path, exc) from exc

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._ensure_open()
        n = len(data)
        try:
            if not self.direct:
                done = os.pwritev(self.fd, [data], offset)  # noqa: TID251 - the I/O owner
                if done < n:  # a short write (a full disk, a signal): write the rest
                    self._write_all(offset + done, memoryview(data)[done:])
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
            raise io_error("write", self.path, exc) from exc

    def _write_all(self, offset: int, view: memoryview) -> None:
        done = 0
        n = len(view)
        while done < n:
            w = os.pwritev(self.fd, [view[done:]], offset + done)  # noqa: TID251 - the I/O owner
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
            got = os.preadv(self.fd, [view], start)  # noqa: TID251 - the I/O owner
            view[got:] = bytes(span - got)
        else:
            view[:] = bytes(span)
        view[offset - start : offset - start + n] = data
        done = 0
        while done < span:
            w = os.pwritev(self.fd, [view[done:]], start + done)  # noqa: TID251 - the I/O owner
            if w <= 0:  # pragma: no cover - pwritev of n > 0 bytes returns > 0 or raises
                raise OSError(errno.EIO, "short write")
            done += w
        view.release()
        if start + span > max(end_size, offset + n):  # drop the sector padding past the file's end
            os.ftruncate(self.fd, max(end_size, offset + n))

    def sync(self) -> None:
        self._ensure_open()
        try:
            _fdatasync(self.fd)  # flushes data and the size; skips mtime, 3x faster here
        except OSError as exc:
            raise io_error("fsync", self.path, exc) from exc

    def size(self) -> int:
        self._ensure_open()
        try:
            return os.fstat(self.fd).st_size
        except OSError as exc:
            raise io_error("stat", self.path, exc) from exc

    def extend(self, new_size: int) -> None:
        self._ensure_open()
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
            raise io_error("extend", self.path, exc) from exc

    def truncate(self, new_size: int) -> None:
        self._ensure_open()
        try:
            os.ftruncate(self.fd, new_size)
        except OSError as exc:
            raise io_error("truncate", self.path, exc) from exc

    def rename(self, new_path: str) -> None:
        self._ensure_open()
        try:
            os.replace(self.path, new_path)
        except OSError as exc:
            raise io_error("rename", self.path, exc) from exc
        self.path = new_path

    def sync_dir(self) -> None:
        self._ensure_open()
        fsync_dir(self.path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bounce is not None:
            self._bounce.close()
        try:
            os.close(self.fd)
        except OSError as exc:
            raise io_error("close", self.path, exc) from exc


_fdatasync = getattr(os, "fdatasync", os.fsync)  # noqa: TID251 - the I/O owner


class Overlay:
    """A copy-on-write `BlockFile` over another: reads see the file under it,
    writes, extends and truncates stay in memory, `sync` does nothing.

    A read-only open recovers through overlays of the data file and the log:
    it runs the same recovery as a writer and changes no byte on disk.
    Memory holds only the blocks written (at most the log's pages).
    """

    _BLOCK = 4096

    __slots__ = ("base", "direct", "_blocks", "_size", "_floor", "_closed")

    def __init__(self, base: BlockFile) -> None:
        self.base = base
        self.direct = base.direct
        self._blocks: dict[int, bytearray] = {}
        self._size = base.size()
        self._floor = self._size  # the base's bytes from here on were cut off
        self._closed = False

    def _ensure_open(self, offset: int = 0) -> None:
        if self._closed:
            raise StorageIOError(errno.EBADF, "overlay: file is closed")
        if offset < 0:
            raise StorageIOError(errno.EINVAL, f"overlay: negative offset {offset}")

    def _block(self, b: int) -> bytearray:
        """Block `b`, made writable (filled from the base where still visible)."""
        blk = self._blocks.get(b)
        if blk is None:
            blk = bytearray(self._BLOCK)
            self._fill(b * self._BLOCK, memoryview(blk))
            self._blocks[b] = blk
        return blk

    def _fill(self, offset: int, view: memoryview) -> None:
        """Read the base's visible bytes at `offset` into `view` (zeros past them)."""
        n = max(0, min(len(view), self._floor - offset))
        got = self.base.read_into(offset, view[:n]) if n else 0
        view[got:] = bytes(len(view) - got)

    def read_into(self, offset: int, buf: memoryview) -> int:
        self._ensure_open(offset)
        n = max(0, min(len(buf), self._size - offset))
        view = memoryview(buf).cast("B")
        pos = 0
        while pos < n:
            at = offset + pos
            b, off = divmod(at, self._BLOCK)
            take = min(n - pos, self._BLOCK - off)
            blk = self._blocks.get(b)
            if blk is not None:
                view[pos : pos + take] = blk[off : off + take]
            else:
                # a run of blocks the overlay does not hold: one base read
                stop = pos + take
                while stop < n and (offset + stop) // self._BLOCK not in self._blocks:
                    stop = min(n, stop + self._BLOCK)
                self._fill(at, view[pos:stop])
                take = stop - pos
            pos += take
        return n

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._ensure_open(offset)
        data = memoryview(data).cast("B")
        pos = 0
        while pos < len(data):
            b, off = divmod(offset + pos, self._BLOCK)
            take = min(len(data) - pos, self._BLOCK - off)
            self._block(b)[off : off + take] = data[pos : pos + take]
            pos += take
        self._size = max(self._size, offset + len(data))

    def sync(self) -> None:
        self._ensure_open()

    def size(self) -> int:
        self._ensure_open()
        return self._size

    def extend(self, new_size: int) -> None:
        self._ensure_open(new_size)
        self._size = max(self._size, new_size)

    def truncate(self, new_size: int) -> None:
        self._ensure_open(new_size)
        if new_size < self._floor:
            b, off = divmod(new_size, self._BLOCK)
            if off:
                self._block(b)[off:] = bytes(self._BLOCK - off)
            self._floor = new_size
        for b in [b for b in self._blocks if b * self._BLOCK >= new_size]:
            del self._blocks[b]
        b, off = divmod(new_size, self._BLOCK)
        if off and b in self._blocks:
            self._blocks[b][off:] = bytes(self._BLOCK - off)
        self._size = new_size

    def rename(self, new_path: str) -> None:
        self._ensure_open()
        raise StorageIOError(errno.EROFS, f"overlay: a read-only file keeps its name (not {new_path!r})")

    def sync_dir(self) -> None:
        self._ensure_open()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.base.close()


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
        raise io_error("open dir", d, exc) from exc
    try:
        os.fsync(fd)  # noqa: TID251 - the I/O owner
    except OSError as exc:  # pragma: no cover - local filesystems accept a directory fsync
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # some filesystems refuse dir fsync
            raise io_error("fsync dir", d, exc) from exc
    finally:
        os.close(fd)

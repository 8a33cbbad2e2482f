"""What an `opener=` may return, and what the engine adds to it.

The engine needs six calls of a file: `read_into`, `write`, `sync`, `size`,
`extend` and `close` (the minimal BlockFile, docs/api.md). A file that also
has `truncate`, `rename`, `sync_dir` and `direct` (as `DirectFile` and the
fault layer's files do) is used as it is. One that lacks any of them is
wrapped once, when it is opened, in `_Completed`, which supplies them from
the six calls and the path the file was opened at:

- `direct` is False;
- `truncate(n)` to shrink writes zeros from `n` to the end (the file keeps
  its length): the engine reads zeros past its data as nothing, as in a log
  preallocated ahead of its appends, so no stale record follows the cut;
  `truncate(n)` to grow is `extend(n)`;
- `rename(new)` renames the path (a real file at that path, or a
  `StorageIOError`), and `sync_dir()` syncs the directory holding it;
- an `OSError` of any call is raised as `StorageIOError`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from engine.disk import BlockFile, fsync_dir
from engine.errors import StorageIOError

__all__ = ["complete"]

_ADDED = ("truncate", "rename", "sync_dir", "direct")
_ZEROS = bytes(1 << 20)  # a truncate's zeros go out a MiB per write


def complete(opener: Callable[[str, bool], BlockFile]) -> Callable[[str, bool], BlockFile]:
    """`opener`, returning every file with the whole BlockFile surface."""

    def open_complete(path: str, create: bool) -> BlockFile:
        f = opener(path, create)
        if all(hasattr(f, name) for name in _ADDED):
            return f
        return _Completed(f, os.fspath(path))  # type: ignore[return-value]

    return open_complete


def _typed(call: Callable, what: str, file: _Completed) -> Callable:
    """`call`, raising `StorageIOError` for any `OSError` (the engine's
    cleanup paths expect its own type), named by the file's path now."""
    def run(*args):
        try:
            return call(*args)
        except StorageIOError:
            raise
        except OSError as exc:
            raise StorageIOError(exc.errno or errno.EIO, f"{what} {file.path}: {exc.strerror or exc}") from exc
    return run


class _Completed:
    """A minimal file with the calls the engine adds (see the module doc)."""

    def __init__(self, inner, path: str) -> None:
        self.inner = inner
        self.path = path
        self.direct = bool(getattr(inner, "direct", False))
        self.read_into = _typed(inner.read_into, "read", self)
        self.write = _typed(inner.write, "write", self)
        self.sync = _typed(inner.sync, "fsync", self)
        self.size = _typed(inner.size, "stat", self)
        self.extend = _typed(inner.extend, "extend", self)
        self.close = _typed(inner.close, "close", self)

    def truncate(self, new_size: int) -> None:
        if hasattr(self.inner, "truncate"):
            _typed(self.inner.truncate, "truncate", self)(new_size)
            return
        size = self.size()
        if new_size >= size:
            self.extend(new_size)
            return
        at = new_size
        while at < size:
            n = min(len(_ZEROS), size - at)
            self.write(at, memoryview(_ZEROS)[:n])
            at += n

    def rename(self, new_path: str) -> None:
        own = getattr(self.inner, "rename", None)
        _typed(own or (lambda new: os.replace(self.path, new)), "rename", self)(new_path)
        self.path = new_path

    def sync_dir(self) -> None:
        own = getattr(self.inner, "sync_dir", None)
        _typed(own or (lambda: fsync_dir(self.path)), "fsync", self)()

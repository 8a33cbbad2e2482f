"""No double buffering: with `direct_io=True` the data file's pages do not
sit in the kernel page cache beside the buffer pool's copy.

The kernel is asked directly: `mincore(2)` over a read-only shared mapping
of the file (mapping does not fault pages in) reports which pages of the
file are in the page cache. The same workload with `direct_io=False` is the
control: it must leave the pages resident, or the measurement means nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import shutil
import subprocess

import pytest

import engine
from engine.errors import StorageIOError

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_OS_PAGE = mmap.PAGESIZE


def _fs_type(path: str) -> str | None:
    """The filesystem type of the mount holding `path` (longest mount prefix)."""
    best, kind = "", None
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[1]
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(
                    best
                ):
                    best, kind = point, fields[2]
    except OSError:
        return None
    return kind


def _resident_mincore(path: str) -> tuple[int, int]:
    size = os.path.getsize(path)
    n = -(-size // _OS_PAGE)
    mmap_fn = _libc.mmap
    mmap_fn.restype = ctypes.c_void_p
    mmap_fn.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = mmap_fn(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap failed")
        try:
            vec = (ctypes.c_ubyte * n)()
            if _libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore failed")
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec), n


def _resident_fincore(path: str) -> tuple[int, int]:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", path],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    res, size = int(out[0]), int(out[1])
    return -(-res // _OS_PAGE), -(-size // _OS_PAGE)


def resident(path: str) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages in the file)."""
    try:
        return _resident_mincore(path)
    except (OSError, AttributeError):
        if shutil.which("fincore"):
            return _resident_fincore(path)
        raise


def workload(path: str, direct_io) -> dict:
    """Write enough to span a few hundred pages, checkpoint them home, then
    read everything back through a 16-frame pool (mostly misses)."""
    value = b"v" * 200
    with engine.open(path, direct_io=direct_io, sync="off", pool_pages=16) as db:
        t = db.tree("t")
        with db.batch() as b:
            for i in range(4000):
                b.put("t", b"key%06d" % i, value)
        db.checkpoint()
    with engine.open(path, direct_io=direct_io, sync="off", pool_pages=16) as db:
        t = db.tree("t")
        assert sum(1 for _ in t.items()) == 4000
        for i in range(0, 4000, 7):
            assert t[b"key%06d" % i] == value
        stats = db.stats()
    assert stats["pool_misses"] > 100, "the reads really went to the file"
    return stats


@pytest.fixture
def direct_path(tmp_path):
    kind = _fs_type(str(tmp_path.resolve()))
    if kind in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {kind}, whose file data lives in the page cache by design")
    path = str(tmp_path / "direct.db")
    try:
        engine.open(path, direct_io=True, sync="off").close()
    except StorageIOError as exc:
        pytest.skip(f"the filesystem of {tmp_path} ({kind}) refuses O_DIRECT: {exc}")
    os.unlink(path)
    os.unlink(path + "-wal")
    return path


def test_direct_io_leaves_no_copy_in_the_page_cache(direct_path):
    stats = workload(direct_path, True)
    assert stats["direct_io"] is True
    cached, pages = resident(direct_path)
    assert pages >= 100, f"the data file has only {pages} pages"
    assert cached == 0, f"{cached} of {pages} data-file pages are in the page cache"


def test_buffered_io_leaves_the_pages_cached(direct_path):
    path = direct_path.replace("direct.db", "buffered.db")
    stats = workload(path, False)
    assert stats["direct_io"] is False
    cached, pages = resident(path)
    assert pages >= 100
    assert cached >= pages // 2, f"only {cached} of {pages} pages cached: is the probe blind?"

"""One conformance suite for the `BlockFile` contract (engine/disk.py).

`check_block_file(make_file)` takes a factory returning a fresh, empty,
writable file and checks every clause of the contract on it. It runs against
`DirectFile` (O_DIRECT on, auto, off), `FaultyFile` with an empty plan and
`CrashFile`, like trio's `_check_streams.py` does for streams.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from engine.disk import SECTOR, BlockFile, DirectFile, Overlay, aligned_buffer, default_opener
from engine.errors import StorageIOError
from faults.crash import CrashDisk
from faults.io import FaultPlan

PAGE = 4096


def _pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 31 + salt) % 251 for i in range(n))


def _read(f: BlockFile, offset: int, n: int) -> bytes:
    buf = bytearray(n)
    got = f.read_into(offset, memoryview(buf))
    return bytes(buf[:got])


def _check_basics(f: BlockFile) -> None:
    assert isinstance(f, BlockFile)
    assert isinstance(f.direct, bool)
    assert f.size() == 0
    assert _read(f, 0, 100) == b"", "read of an empty file must return 0 bytes"
    assert f.read_into(0, memoryview(bytearray(0))) == 0


def _check_aligned(f: BlockFile) -> None:
    page = _pattern(PAGE, 1)
    f.write(0, page)
    assert f.size() == PAGE
    assert _read(f, 0, PAGE) == page
    # aligned memory in and out, as the buffer pool does it
    frames = aligned_buffer(2 * PAGE)
    try:
        frame = memoryview(frames)
        frame[PAGE:] = _pattern(PAGE, 2)
        f.write(PAGE, frame[PAGE:])
        frame[:PAGE] = bytes(PAGE)
        assert f.read_into(PAGE, frame[:PAGE]) == PAGE
        assert bytes(frame[:PAGE]) == _pattern(PAGE, 2)
        assert f.read_into(0, frame) == 2 * PAGE
        assert bytes(frame) == page + _pattern(PAGE, 2)
        frame.release()
    finally:
        frames.close()
    assert f.size() == 2 * PAGE


def _check_unaligned(f: BlockFile) -> None:
    base = _pattern(3 * PAGE, 3)
    f.write(0, base)
    expect = bytearray(base)
    cases = [
        (100, 37),
        (SECTOR - 1, 2),
        (4000, 200),
        (SECTOR, 10),
        (7, SECTOR),
        (PAGE - 3, PAGE + 6),
    ]
    for i, (off, n) in enumerate(cases):
        data = _pattern(n, 10 + i)
        f.write(off, data)
        expect[off : off + n] = data
        assert _read(f, off, n) == data, f"unaligned round trip at {off}+{n}"
    assert f.size() == len(expect)
    assert _read(f, 0, len(expect)) == bytes(expect), "unaligned writes clobbered neighbours"
    # reads into unaligned memory: a slice of a bytearray at an odd start
    raw = bytearray(PAGE + 1)
    view = memoryview(raw)[1:]
    assert f.read_into(PAGE, view) == PAGE
    assert bytes(view) == bytes(expect[PAGE : 2 * PAGE])
    # bytes, bytearray, read-only and writable memoryviews are all accepted as data
    for j, wrap in enumerate(
        (bytes, bytearray, lambda b: memoryview(b), lambda b: memoryview(bytearray(b)))
    ):
        data = _pattern(SECTOR, 40 + j)
        f.write(2 * PAGE, wrap(data))
        assert _read(f, 2 * PAGE, SECTOR) == data


def _check_eof(f: BlockFile) -> None:
    f.write(0, _pattern(1000, 5))
    assert f.size() == 1000
    assert _read(f, 1000, 10) == b"", "a read at EOF returns 0"
    assert _read(f, 5000, 10) == b"", "a read past EOF returns 0"
    assert _read(f, 990, 100) == _pattern(1000, 5)[990:], "a read across EOF is short"
    buf = bytearray(b"\xee" * PAGE)
    assert f.read_into(0, memoryview(buf)) == 1000
    # a write past EOF grows the file; the gap reads as zeros
    f.write(3 * PAGE + 5, b"tail")
    assert f.size() == 3 * PAGE + 9
    assert _read(f, 1000, 3 * PAGE + 5 - 1000) == bytes(3 * PAGE + 5 - 1000)
    assert _read(f, 3 * PAGE + 5, 100) == b"tail"


def _check_extend_truncate(f: BlockFile) -> None:
    f.write(0, _pattern(PAGE, 6))
    f.extend(4 * PAGE)
    assert f.size() == 4 * PAGE
    assert _read(f, PAGE, 3 * PAGE) == bytes(3 * PAGE), "extended space reads as zeros"
    assert _read(f, 0, PAGE) == _pattern(PAGE, 6), "extend keeps existing bytes"
    f.extend(2 * PAGE)
    assert f.size() == 4 * PAGE, "extend never shrinks"
    f.extend(4 * PAGE)
    assert f.size() == 4 * PAGE
    f.truncate(PAGE + 10)
    assert f.size() == PAGE + 10
    assert _read(f, PAGE, PAGE) == bytes(10)
    f.truncate(3 * PAGE)
    assert f.size() == 3 * PAGE, "truncate sets the size exactly, growing too"
    assert _read(f, PAGE + 10, 2 * PAGE - 10) == bytes(2 * PAGE - 10), (
        "re-grown space reads as zeros"
    )
    f.truncate(0)
    assert f.size() == 0
    assert _read(f, 0, 10) == b""


def _check_large_and_sync(f: BlockFile) -> None:
    big = _pattern(256 * PAGE, 7)
    f.write(0, big)
    f.sync()
    assert f.size() == len(big)
    assert _read(f, 0, len(big)) == big
    f.sync()  # sync with nothing pending also succeeds


def _check_errors_and_close(f: BlockFile) -> None:
    with pytest.raises(StorageIOError):
        f.read_into(-SECTOR, memoryview(bytearray(SECTOR)))
    with pytest.raises(StorageIOError):
        f.write(-SECTOR, bytes(SECTOR))
    f.close()
    f.close()  # idempotent
    for call in (
        lambda: f.read_into(0, memoryview(bytearray(10))),
        lambda: f.write(0, b"x"),
        f.sync,
        f.size,
        lambda: f.extend(PAGE),
        lambda: f.truncate(0),
        lambda: f.rename(f"{getattr(f, 'path', 'x')}.renamed"),
        f.sync_dir,
    ):
        with pytest.raises(StorageIOError) as info:
            call()
        assert isinstance(info.value, OSError)
        assert info.value.errno == errno.EBADF


CHECKS = [
    _check_basics,
    _check_aligned,
    _check_unaligned,
    _check_eof,
    _check_extend_truncate,
    _check_large_and_sync,
    _check_errors_and_close,
]


def check_block_file(make_file: Callable[[], BlockFile]) -> None:
    """Run every contract check, each on a fresh file from `make_file()`."""
    for check in CHECKS:
        f = make_file()
        try:
            check(f)
        finally:
            f.close()


def check_rename(make_file: Callable[[], BlockFile], opener: Callable[[str, bool], BlockFile]) -> None:
    """A writable file keeps its bytes and handle across `rename`, replaces
    the file at the new name, and is found there (and not at the old name)
    through `opener`."""
    f, old = make_file(), make_file()
    try:
        data = _pattern(PAGE + 100, salt=3)
        f.write(0, data)
        f.sync()
        old.write(0, b"the file the rename replaces")
        new_path, old_path = old.path, f.path  # type: ignore[attr-defined]
        old.close()
        f.rename(new_path)
        f.sync_dir()
        assert f.size() == len(data) and _read(f, 0, len(data)) == data
        f.write(0, b"still the same file")
        g = opener(new_path, False)
        try:
            assert _read(g, 0, 19) == b"still the same file" and g.size() == len(data)
        finally:
            g.close()
        with pytest.raises(FileNotFoundError):
            opener(old_path, False)
    finally:
        f.close()


class _Factory:
    """Numbered fresh files in `tmp_path` through one opener."""

    def __init__(self, tmp_path, opener: Callable[[str, bool], BlockFile]) -> None:
        self.tmp_path = tmp_path
        self.opener = opener
        self.n = 0

    def __call__(self) -> BlockFile:
        self.n += 1
        return self.opener(str(self.tmp_path / f"f{self.n}.db"), True)


def _o_direct_supported(tmp_path) -> bool:
    probe = tmp_path / "probe"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_RDWR | os.O_DIRECT))
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.parametrize("direct", [True, "auto", False], ids=["direct", "auto", "buffered"])
def test_direct_file(tmp_path, direct) -> None:
    if direct is True and not _o_direct_supported(tmp_path):
        # the contract for a filesystem without O_DIRECT: direct=True refuses to open
        with pytest.raises(StorageIOError):
            DirectFile.open(tmp_path / "x.db", True, True)
        return
    factory = _Factory(tmp_path, default_opener(direct))
    check_block_file(factory)
    check_rename(factory, factory.opener)
    f = factory()
    assert f.direct is (direct is not False and _o_direct_supported(tmp_path))
    f.close()


def test_direct_file_missing_without_create(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        DirectFile.open(tmp_path / "missing.db", False)


@pytest.mark.parametrize("direct", ["auto", False], ids=["auto", "buffered"])
def test_faulty_file_with_empty_plan(tmp_path, direct) -> None:
    plan = FaultPlan(seed=1)
    check_block_file(_Factory(tmp_path, plan.opener(default_opener(direct))))
    assert plan.injected == []
    assert plan.calls["write"] > 0 and plan.calls["read"] > 0 and plan.calls["open"] == len(CHECKS)
    factory = _Factory(tmp_path, plan.opener(default_opener(direct)))
    factory.n = 100  # new names beside the files above
    check_rename(factory, factory.opener)
    assert plan.calls["rename"] == 2 and plan.injected == []  # one on a closed file (refused), one renaming


def test_crash_file(tmp_path) -> None:
    disk = CrashDisk()
    check_block_file(_Factory(tmp_path, disk.opener))
    check_rename(_Factory(tmp_path, disk.opener), disk.opener)
    assert not any(tmp_path.iterdir()), "CrashDisk files live in memory only"


def test_crash_file_missing_without_create(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        CrashDisk().opener(str(tmp_path / "missing.db"), False)


def test_faulty_file_over_crash_file(tmp_path) -> None:
    # the two fault layers stack: a FaultPlan over a CrashDisk
    disk = CrashDisk()
    plan = FaultPlan()
    check_block_file(_Factory(tmp_path, plan.opener(disk.opener)))
    check_rename(_Factory(tmp_path, plan.opener(disk.opener)), plan.opener(disk.opener))
    assert len(disk.events) > 0 and [e.kind for e in disk.events].count("rename") == 1


@pytest.mark.parametrize("direct", ["auto", False], ids=["auto", "buffered"])
def test_overlay_over_direct_file(tmp_path, direct) -> None:
    check_block_file(_Factory(tmp_path, lambda p, c: Overlay(default_opener(direct)(p, c))))
    assert all(os.path.getsize(p) == 0 for p in tmp_path.iterdir()), "an overlay never writes its base"
    f = Overlay(default_opener(direct)(str(tmp_path / "ro.db"), True))
    try:
        f.sync_dir()  # nothing to make durable
        with pytest.raises(StorageIOError) as info:
            f.rename(str(tmp_path / "elsewhere.db"))
        assert info.value.errno == errno.EROFS and not (tmp_path / "elsewhere.db").exists()
    finally:
        f.close()

"""An `opener=` may return a file with only the six calls of the minimal
BlockFile (read_into, write, sync, size, extend, close): the engine works
through it, and supplies the rest (engine/openers.py)."""

from __future__ import annotations

import os

import pytest

import engine
from engine.disk import DirectFile
from engine.errors import StorageIOError
from engine.openers import complete
from faults.io import MinimalFile


class Minimal:
    """A real file with the six calls of the minimal BlockFile and nothing else."""

    def __init__(self, path, create: bool) -> None:
        self.fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)

    def read_into(self, offset: int, buf) -> int:
        data = os.pread(self.fd, len(buf), offset)  # noqa: TID251 - a user's own file, what an opener= returns
        buf[: len(data)] = data
        return len(data)

    def write(self, offset: int, data) -> None:
        os.pwrite(self.fd, bytes(data), offset)  # noqa: TID251 - a user's own file

    def sync(self) -> None:
        os.fdatasync(self.fd)  # noqa: TID251 - a user's own file

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def extend(self, n: int) -> None:
        if n > self.size():
            os.ftruncate(self.fd, n)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _contents(db) -> dict:
    return {name: dict(db.tree(name).items()) for name in db.trees()}


def test_the_engine_runs_through_a_minimal_block_file(tmp_path):
    path = str(tmp_path / "m.db")
    db = engine.open(path, opener=Minimal)
    t = db.tree("t")
    t.update({b"k%05d" % i: b"v" * 100 for i in range(3000)})
    db.checkpoint()
    for i in range(2500):
        del t[b"k%05d" % i]
    db.tree("u")[b"x"] = b"y"
    want = _contents(db)
    db.compact()
    db.backup(str(tmp_path / "copy.db"))
    assert db.stats()["direct_io"] is False
    db.close()
    with engine.open(path, opener=Minimal, create=False) as again:
        assert _contents(again) == want and again.check(strict=True).ok
    with engine.open(str(tmp_path / "copy.db"), create=False) as copy:
        assert _contents(copy) == want and copy.check(strict=True).ok


def test_a_kill_then_recovery_through_a_minimal_block_file():
    """Commits in the log only, the process killed (the disk as it stands),
    a torn tail after them: recovery through the minimal file replays the
    commits, cuts the tail with zeros, and a later crash finds nothing stale
    after the records appended since."""
    from faults.crash import CrashDisk

    disk = CrashDisk()
    db = engine.open("/m/k.db", opener=lambda p, c: MinimalFile(disk.opener(p, c)), sync="normal")
    t = db.tree("t")
    t.update({b"a%04d" % i: b"1" * 50 for i in range(500)})
    db.checkpoint()
    t.update({b"b%04d" % i: b"2" * 50 for i in range(500)})
    db.commit()
    want = _contents(db)
    for i in range(40):
        t[b"c%04d" % i] = b"3" * 50  # not committed: lost with the torn tail
    images = disk.images(None, "keep")
    log = bytearray(images["/m/k.db-wal"])
    end = len(log.rstrip(b"\0"))
    log[end - 600: end - 500] = bytes(100)  # a torn sector among the uncommitted records
    images["/m/k.db-wal"] = bytes(log)
    after = CrashDisk(images)
    again = engine.open("/m/k.db", opener=lambda p, c: MinimalFile(after.opener(p, c)), sync="normal")
    got = _contents(again)
    assert {k: v for k, v in got["t"].items() if not k.startswith(b"c")} == want["t"]
    assert again.check(strict=True).ok
    again.tree("t")[b"d"] = b"4"
    again.commit()
    want2 = _contents(again)
    third = CrashDisk(after.images(None, "keep"))
    with engine.open("/m/k.db", opener=lambda p, c: MinimalFile(third.opener(p, c))) as last:
        assert _contents(last) == want2 and last.check(strict=True).ok


def test_truncate_of_a_minimal_file_writes_zeros_past_the_cut(tmp_path):
    """Shrinking cannot be asked of the file: the bytes past the cut read as
    zeros (as a preallocated tail does), so no stale record follows it."""
    f = complete(Minimal)(str(tmp_path / "f"), True)
    f.write(0, b"\x07" * 3 * 1024 * 1024)
    f.truncate(100)
    buf = bytearray(f.size())
    f.read_into(0, memoryview(buf))
    assert buf[:100] == b"\x07" * 100 and not any(buf[100:]) and f.size() == 3 * 1024 * 1024
    f.truncate(5 * 1024 * 1024)  # growing: extend
    assert f.size() == 5 * 1024 * 1024 and f.direct is False
    f.close()


def test_rename_and_sync_dir_of_a_minimal_file_use_its_path(tmp_path):
    f = complete(Minimal)(str(tmp_path / "a"), True)
    f.write(0, b"x")
    f.rename(str(tmp_path / "b"))
    f.sync_dir()
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_bytes() == b"x"
    f.close()
    g = complete(Minimal)(str(tmp_path / "c"), True)
    os.remove(tmp_path / "c")  # the name is gone: a rename is a storage error, typed
    with pytest.raises(StorageIOError, match="rename"):
        g.rename(str(tmp_path / "d"))
    g.close()


def test_a_complete_file_is_used_as_it_is(tmp_path):
    f = complete(lambda p, c: DirectFile.open(p, c, False))(str(tmp_path / "d"), True)
    assert type(f) is DirectFile
    f.close()


def test_a_file_lacking_only_direct_keeps_its_own_calls():
    """Wrapped for `direct` alone: its own truncate, rename and sync_dir run."""
    from faults.crash import CrashDisk

    disk = CrashDisk()

    class NoDirect(MinimalFile):
        def __init__(self, inner) -> None:
            super().__init__(inner)
            self.truncate, self.rename, self.sync_dir = inner.truncate, inner.rename, inner.sync_dir

    f = complete(lambda p, c: NoDirect(disk.opener(p, c)))("/n/a", True)
    assert f.direct is False
    f.write(0, b"x" * 5000)
    f.truncate(10)
    f.rename("/n/b")
    f.sync_dir()
    f.close()
    assert disk.images(None, "keep") == {"/n/b": b"x" * 10}
    assert [e.kind for e in disk.events][-3:] == ["truncate", "rename", "syncdir"]


def test_a_minimal_file_failing_with_a_plain_os_error_fails_typed(tmp_path):
    """A user's file may raise any OSError: the engine raises its own
    `StorageIOError` and loses nothing."""
    state = {"fail": False}

    class Flaky(Minimal):
        def sync(self) -> None:
            if state["fail"]:
                raise OSError(28, "No space left on device")
            super().sync()

    path = str(tmp_path / "f.db")
    db = engine.open(path, opener=Flaky)
    db.tree("t")[b"a"] = b"1"
    state["fail"] = True
    with pytest.raises(StorageIOError, match="fsync .*No space left"):
        db.tree("t")[b"b"] = b"2"
    state["fail"] = False
    try:
        db.close()
    except engine.DragonDBError:
        pass
    with engine.open(path, opener=Flaky) as again:
        assert again.tree("t")[b"a"] == b"1" and again.check(strict=True).ok


class _Failing:
    """A minimal file (optionally with its own truncate, rename and sync_dir)
    whose every call raises the OSError given."""

    def __init__(self, error: OSError, own: bool) -> None:
        def fail(*_args):
            raise error

        for name in ("read_into", "write", "sync", "size", "extend", "close"):
            setattr(self, name, fail)
        if own:
            self.truncate = self.rename = self.sync_dir = fail


@pytest.mark.parametrize("own", [False, True], ids=["added", "own"])
def test_every_call_of_a_completed_file_raises_its_os_errors_typed(own):
    """Each call, the ones the engine adds included (a truncate's zeros go
    out through the file's own write), raises `StorageIOError` with the
    errno and the call named, or EIO for an error without one."""
    calls = {"read_into": ("read", (0, memoryview(bytearray(1)))), "write": ("write", (0, b"x")),
             "sync": ("fsync", ()), "size": ("stat", ()), "extend": ("extend", (1,)), "close": ("close", ()),
             "truncate": ("truncate" if own else "stat", (0,)), "rename": ("rename", ("/nowhere/b",)),
             "sync_dir": ("fsync", ())}
    for error, code, text in ((OSError(28, "No space left on device"), 28, "No space left on device"),
                              (OSError("no errno"), 5, "no errno")):
        f = complete(lambda p, c, e=error: _Failing(e, own))("/nowhere/a", True)
        for name, (what, args) in calls.items():
            where, code_here, text_here = "/nowhere/a", code, text
            if not own and name in ("rename", "sync_dir"):  # the path itself: there is none
                where, code_here, text_here = ("/nowhere" if name == "sync_dir" else where), 2, \
                    "No such file or directory"
                what = "open dir" if name == "sync_dir" else what
            with pytest.raises(StorageIOError) as raised:
                getattr(f, name)(*args)
            assert raised.value.errno == code_here, name
            assert str(raised.value).endswith(f"{what} {where}: {text_here}"), (name, str(raised.value))


def test_a_completed_file_keeps_the_direct_flag_it_has():
    class DirectButMinimal(MinimalFile):
        direct = True

    from faults.crash import CrashDisk

    f = complete(lambda p, c: DirectButMinimal(CrashDisk().opener(p, c)))("/d/a", True)
    assert type(f) is not DirectButMinimal and f.direct is True  # wrapped for truncate, rename, sync_dir
    f.close()

"""The power-loss simulator itself, driven by hand-written BlockFile calls."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.disk import SECTOR, DirectFile
from engine.errors import StorageIOError
from faults.crash import MODES, CrashDisk, DiskSnapshot, materialize

PAGE = 4096
OLD, NEW = b"\x11", b"\x22"


def _read(f, offset: int, n: int) -> bytes:
    buf = bytearray(n)
    return bytes(buf[: f.read_into(offset, memoryview(buf))])


def test_events_are_numbered_and_typed() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, b"abc")
    f.extend(PAGE)
    f.extend(10)  # no-op: never shrinks, logs nothing
    f.sync()
    f.truncate(100)
    assert [(e.index, e.kind, e.path) for e in disk.events] == [
        (1, "create", "db"),
        (2, "write", "db"),
        (3, "extend", "db"),
        (4, "sync", "db"),
        (5, "truncate", "db"),
    ]
    assert (
        disk.events[1].offset == 0 and disk.events[1].length == 3 and disk.events[1].data == b"abc"
    )
    assert disk.events[2].size == PAGE and disk.events[4].size == 100


def test_reads_see_unsynced_writes_like_the_page_cache() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(10, b"hello")
    assert _read(f, 10, 5) == b"hello"
    assert f.size() == 15
    g = disk.opener("db", False)  # a second handle sees the same file
    assert _read(g, 0, 15) == bytes(10) + b"hello"
    assert disk.content("db") == bytes(10) + b"hello"


def test_crash_before_sync_loses_writes_after_sync_keeps_them() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, OLD * PAGE)
    f.sync()
    synced = len(disk.events)
    f.write(0, NEW * PAGE)
    assert disk.images(synced - 1) == {"db": b""}, "crash before the sync: the write never landed"
    assert disk.images(synced) == {"db": OLD * PAGE}
    assert disk.images(None, "drop") == {"db": OLD * PAGE}
    assert disk.images(None, "keep") == {"db": NEW * PAGE}
    assert disk.images(0) == {}, "before the create event the file does not exist"


def test_sync_is_per_file() -> None:
    disk = CrashDisk()
    data, wal = disk.opener("db", True), disk.opener("db-wal", True)
    data.write(0, b"page")
    wal.write(0, b"record")
    wal.sync()
    assert disk.images(None, "drop") == {"db": b"", "db-wal": b"record"}
    assert [e.kind for e in disk.pending_at()] == ["write"]
    assert disk.pending_at()[0].path == "db"


def test_truncate_and_extend_are_pending_until_sync() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, OLD * 3 * PAGE)
    f.sync()
    f.truncate(PAGE)
    f.extend(2 * PAGE)
    assert f.size() == 2 * PAGE
    assert disk.images(None, "drop")["db"] == OLD * 3 * PAGE
    assert disk.images(None, "keep")["db"] == OLD * PAGE + bytes(PAGE)
    f.sync()
    assert disk.images(None, "drop")["db"] == OLD * PAGE + bytes(PAGE)


def _two_page_disk() -> CrashDisk:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, OLD * 2 * PAGE)
    f.sync()
    f.write(0, NEW * PAGE)
    f.write(PAGE, NEW * PAGE)
    return disk


def test_torn_mode_tears_at_sector_granularity() -> None:
    disk = _two_page_disk()
    mixed = 0
    for seed in range(20):
        img = disk.images(None, "torn", seed=seed)["db"]
        assert len(img) == 2 * PAGE
        sectors = [img[i : i + SECTOR] for i in range(0, len(img), SECTOR)]
        assert all(s in (OLD * SECTOR, NEW * SECTOR) for s in sectors), (
            "each sector all old or all new"
        )
        mixed += len(set(sectors)) == 2
    assert mixed >= 15, "torn images mix old and new sectors"
    assert disk.images(None, "torn", seed=3) == disk.images(None, "torn", seed=3)


def test_reorder_mode_lands_whole_writes() -> None:
    disk = _two_page_disk()
    outcomes = set()
    for seed in range(40):
        img = disk.images(None, "reorder", seed=seed)["db"]
        pages = (img[:PAGE], img[PAGE:])
        assert all(p in (OLD * PAGE, NEW * PAGE) for p in pages), "reorder never tears a write"
        outcomes.add(pages)
    assert len(outcomes) == 4, "each write lands or not, independently"


def test_reorder_applies_overlapping_writes_out_of_order() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, b"A" * SECTOR)
    f.write(0, b"B" * SECTOR)
    seen = {disk.images(None, "reorder", seed=s)["db"] for s in range(60)}
    assert seen == {b"", b"A" * SECTOR, b"B" * SECTOR}


def test_random_mode_damages_only_unsynced_sectors() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, OLD * 4 * PAGE)
    f.sync()
    f.write(PAGE, NEW * PAGE)
    garbage = 0
    for seed in range(20):
        img = disk.images(None, "random", seed=seed)["db"]
        assert img[:PAGE] == OLD * PAGE and img[2 * PAGE :] == OLD * 2 * PAGE, (
            "synced sectors untouched"
        )
        sectors = [img[i : i + SECTOR] for i in range(PAGE, 2 * PAGE, SECTOR)]
        garbage += sum(s not in (OLD * SECTOR, NEW * SECTOR) for s in sectors)
    assert garbage > 0, "random mode sometimes leaves garbage"


def test_unknown_mode_and_bad_crash_point() -> None:
    disk = _two_page_disk()
    with pytest.raises(ValueError):
        disk.images(None, "melt")
    with pytest.raises(ValueError):
        disk.images(len(disk.events) + 1)


def test_enumerate_all_op_subsets_when_small() -> None:
    disk = _two_page_disk()
    states = list(disk.enumerate_states(len(disk.events)))
    assert len(states) == 4
    images = {(s.images["db"][:PAGE], s.images["db"][PAGE:]) for s in states}
    assert images == set(itertools.product((OLD * PAGE, NEW * PAGE), repeat=2))
    assert {s.landed for s in states} == {(), ("4",), ("5",), ("4", "5")}


def test_enumerate_sector_units() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, NEW * 3 * SECTOR)
    states = list(disk.enumerate_states(len(disk.events), unit="sector"))
    assert len(states) == 8
    assert len({s.images["db"] for s in states}) == 8


def test_enumerate_samples_when_large_and_is_seeded() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    for i in range(20):
        f.write(i * PAGE, NEW * PAGE)
    a = list(disk.enumerate_states(len(disk.events), limit=10, seed=1))
    b = list(disk.enumerate_states(len(disk.events), limit=10, seed=1))
    assert len(a) == 10
    assert [s.images for s in a] == [s.images for s in b]
    assert a[0].landed == () and len(a[1].landed) == 20, "none and all are always included"


def test_enumerate_every_crash_point() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, b"x")
    f.sync()
    f.write(1, b"y")
    points = [s.crash_at for s in disk.enumerate_states()]
    # 0: nothing; 1: created; 2: one pending write (2 states); 3: synced; 4: one pending (2)
    assert points == [0, 1, 2, 2, 3, 4, 4]


def test_marks_order_acknowledgements_against_events() -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, b"c1")
    f.sync()
    n = disk.mark("commit 1 returned")
    assert n == 3 and disk.marks == [(3, "commit 1 returned")]


def test_materialize_writes_real_files_a_directfile_can_read(tmp_path) -> None:
    disk = CrashDisk()
    for name in ("x.db", "x.db-wal"):
        f = disk.opener(str(tmp_path / "run" / name), True)
        f.write(0, name.encode())
        f.sync()
    out = materialize(disk.images(), tmp_path / "after")
    assert sorted(out.values()) == [
        str(tmp_path / "after" / "x.db"),
        str(tmp_path / "after" / "x.db-wal"),
    ]
    real = DirectFile.open(tmp_path / "after" / "x.db-wal", False, False)
    try:
        assert _read(real, 0, 100) == b"x.db-wal"
    finally:
        real.close()
    assert CrashDisk.materialize({"a/x": b"1"}, tmp_path / "again") == {
        "a/x": str(tmp_path / "again" / "x")
    }
    with pytest.raises(ValueError):
        materialize({"a/x": b"1", "b/x": b"2"}, tmp_path / "clash")


def test_crash_again_from_images() -> None:
    # crash during recovery: start a new disk from an image, crash it again
    first = _two_page_disk()
    image = first.images(None, "drop")
    second = CrashDisk(image)
    f = second.opener("db", False)
    assert _read(f, 0, 2 * PAGE) == OLD * 2 * PAGE
    f.write(0, NEW * SECTOR)
    assert second.images(0) == image, "the seeded content is durable from the start"
    assert second.images(None, "keep")["db"][:SECTOR] == NEW * SECTOR


def test_placeholders_create_real_files(tmp_path) -> None:
    disk = CrashDisk(placeholders=True)
    disk.opener(str(tmp_path / "p.db"), True).write(0, b"data")
    assert (tmp_path / "p.db").read_bytes() == b"", "a placeholder only, content stays in memory"


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 3 * PAGE), st.integers(1, PAGE)),
        st.tuples(st.just("sync"), st.just(0), st.just(0)),
        st.tuples(st.just("extend"), st.integers(0, 4 * PAGE), st.just(0)),
        st.tuples(st.just("truncate"), st.integers(0, 4 * PAGE), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(ops=_ops, mode=st.sampled_from(MODES), seed=st.integers(0, 1000))
def test_images_bracket_durable_and_latest(ops, mode, seed) -> None:
    disk = CrashDisk()
    f = disk.opener("db", True)
    for i, (kind, a, b) in enumerate(ops):
        if kind == "write":
            f.write(a, bytes([i + 1]) * b)
        elif kind == "sync":
            f.sync()
        else:
            getattr(f, kind)(a)
    assert disk.images(None, "keep")["db"] == disk.content("db"), "keep = the page cache"
    if not disk.pending_at():
        assert disk.images(None, mode, seed)["db"] == disk.content("db")
    # every image is a function of (crash point, mode, seed)
    for point in range(len(disk.events) + 1):
        assert disk.images(point, mode, seed) == disk.images(point, mode, seed)
    # drop is the state after the last sync, which "keep" at that sync equals
    syncs = [e.index for e in disk.events if e.kind == "sync"]
    if syncs:
        assert disk.images(None, "drop") == disk.images(syncs[-1], "keep")


# -- processes: a kill keeps the page cache, a power loss drops what is unsynced --------------

def _killed_disk() -> tuple[CrashDisk, object]:
    """Process 1 synced OLD, then wrote NEW (pending) and a second write it never made."""
    disk = CrashDisk()
    f = disk.opener("db", True)
    f.write(0, OLD * SECTOR)
    f.sync()
    f.write(0, NEW * SECTOR)
    f.write(SECTOR, NEW * SECTOR)  # after the kill point: never happened
    return disk, f


def test_kill_keeps_pending_writes_visible_but_not_durable() -> None:
    disk, _ = _killed_disk()
    assert disk.kill(4) == 2, "the next process is process 2"
    assert [e.index for e in disk.events] == [1, 2, 3, 4], "events after the kill point are undone"
    g = disk.opener("db", False)
    assert _read(g, 0, 2 * SECTOR) == NEW * SECTOR, "process 2 sees process 1's page cache"
    assert disk.images(None, "drop") == {"db": OLD * SECTOR}, "a power loss still drops it"
    assert [e.index for e in disk.pending_at()] == [4]
    g.write(SECTOR, OLD * SECTOR)
    assert [(e.index, e.process) for e in disk.events[-2:]] == [(4, 1), (5, 2)]


def test_a_sync_by_the_next_process_makes_the_killed_ones_writes_durable() -> None:
    disk, _ = _killed_disk()
    disk.kill(4)
    g = disk.opener("db", False)
    g.sync()  # fsync is per file, whoever calls it
    assert disk.images(None, "drop") == {"db": NEW * SECTOR}
    assert disk.pending_at() == []


def test_killed_handles_are_dead_and_every_touch_is_recorded() -> None:
    disk, f = _killed_disk()
    disk.kill()
    assert disk.zombie_calls == []
    with pytest.raises(StorageIOError):
        f.write(0, b"x")
    with pytest.raises(StorageIOError):
        _read(f, 0, 1)
    f.close()
    assert len(disk.zombie_calls) == 3 and "process 1" in disk.zombie_calls[0]
    assert len(disk.events) == 5, "a dead handle's write made no event"


def test_kill_before_a_create_removes_the_file_and_bad_points_raise() -> None:
    disk = CrashDisk()
    disk.opener("db", True).write(0, b"x")
    disk.mark("wrote")
    disk.kill(0)
    assert disk.paths() == [] and disk.events == [] and disk.marks == []
    with pytest.raises(ValueError):
        disk.kill(1)


def test_changes_since_a_snapshot() -> None:
    disk = CrashDisk({"db": OLD * 4})
    snap = disk.snapshot()
    f = disk.opener("db", False)
    _read(f, 0, 4)
    assert disk.changes_since(snap) == [], "reads change nothing"
    f.write(1, NEW)
    f.sync()
    disk.opener("db-wal", True)
    changes = disk.changes_since(snap)
    assert changes[:3] == ["event 1: write db at 1 (1 bytes)", "event 2: sync db", "event 3: create db-wal"]
    assert changes[3:] == ["db: 4 -> 4 bytes, first difference at 1", "db-wal: created"]


def test_copy_is_independent() -> None:
    disk, _ = _killed_disk()
    other = disk.copy()
    other.kill(2)
    assert len(disk.events) == 5 and disk.content("db") == NEW * 2 * SECTOR
    assert other.content("db") == OLD * SECTOR and other.images(None, "drop") == {"db": b""}


# -- names: rename and directory sync ------------------------------------------------------

def _renamed_disk(*, replace: bool = False, synced_content: bool = True) -> CrashDisk:
    """tmp written (synced or not), then renamed to dst (over an old dst when
    `replace`); the directory not synced yet."""
    disk = CrashDisk()
    if replace:
        old = disk.opener("d/dst", True)
        old.write(0, OLD * 10)
        old.sync()
    f = disk.opener("d/tmp", True)
    f.write(0, NEW * 10)
    if synced_content:
        f.sync()
    f.rename("d/dst")
    return disk


def test_a_rename_is_pending_until_its_directory_is_synced() -> None:
    disk = _renamed_disk()
    assert disk.events[-1].kind == "rename" and disk.events[-1].target == "d/dst"
    assert disk.images(None, "drop") == {"d/tmp": NEW * 10}, "the new name was never made durable"
    assert disk.images(None, "keep") == {"d/dst": NEW * 10}
    assert disk.pending_at()[-1].kind == "rename"
    assert [s.images for s in disk.enumerate_states(len(disk.events))] == [{"d/tmp": NEW * 10}, {"d/dst": NEW * 10}]
    disk.opener("d/dst", False).sync_dir()
    assert disk.events[-1].kind == "syncdir" and disk.events[-1].path == "d"
    assert disk.images(None, "drop") == {"d/dst": NEW * 10}
    assert disk.pending_at() == []


def test_a_rename_replaces_the_file_at_its_new_name_only_once_durable() -> None:
    disk = _renamed_disk(replace=True)
    assert disk.images(None, "drop") == {"d/dst": OLD * 10, "d/tmp": NEW * 10}
    assert disk.images(None, "keep") == {"d/dst": NEW * 10}
    seen = {tuple(sorted(s.images.items())) for s in disk.enumerate_states(len(disk.events))}
    assert seen == {(("d/dst", OLD * 10), ("d/tmp", NEW * 10)), (("d/dst", NEW * 10),)}


def test_a_renamed_file_takes_its_pending_changes_along() -> None:
    disk = _renamed_disk(synced_content=False)
    assert disk.images(None, "keep") == {"d/dst": NEW * 10}
    assert disk.images(None, "drop") == {"d/tmp": b""}
    disk.opener("d/dst", False).sync_dir()
    assert disk.images(None, "drop") == {"d/dst": b""}, "the name is durable, the bytes were never synced"
    f = disk.opener("d/dst", False)
    f.sync()
    assert disk.images(None, "drop") == {"d/dst": NEW * 10}


def test_live_reads_follow_the_new_name_and_a_kill_keeps_it() -> None:
    disk = _renamed_disk()
    with pytest.raises(FileNotFoundError):
        disk.opener("d/tmp", False)
    assert _read(disk.opener("d/dst", False), 0, 10) == NEW * 10
    rename_at = len(disk.events)
    assert disk.changes_since(DiskSnapshot(rename_at - 1, {}))[0] == f"event {rename_at}: rename d/tmp to d/dst"
    other = disk.copy()
    other.kill(rename_at - 1)  # the process died before its rename
    assert other.paths() == ["d/tmp"]
    other.opener("d/tmp", False).rename("d/dst")  # and the next one may rename again
    disk.kill()
    assert disk.paths() == ["d/dst"]
    with pytest.raises(ValueError, match="not modelled"):
        disk.opener("d/dst", False).write(0, b"x")  # the rename is still pending after the kill


def test_renames_the_model_cannot_follow_are_refused() -> None:
    disk = _renamed_disk()
    with pytest.raises(ValueError, match="not modelled"):
        disk.opener("d/dst", False).write(0, b"x")  # a write under a name whose rename is pending
    with pytest.raises(ValueError, match="not modelled"):
        disk.opener("d/tmp", True)  # the old name reused before the directory sync
    g = disk.opener("e/one", True)
    with pytest.raises(ValueError, match="across directories"):
        g.rename("d/two")


def test_open_files_lists_the_live_process_handles_not_yet_closed() -> None:
    disk = CrashDisk()
    a, b = disk.opener("/d/a", True), disk.opener("/d/b", True)
    assert disk.open_files() == ["/d/a", "/d/b"] and not a.closed
    a.close()
    assert disk.open_files() == ["/d/b"] and a.closed
    disk.kill()  # a killed process's handles are the kernel's to close
    assert disk.open_files() == []
    c = disk.opener("/d/a", False)
    assert disk.open_files() == ["/d/a"]
    c.close()
    b.close()  # a zombie's call is recorded, and closes nothing of the live process
    assert disk.open_files() == [] and disk.zombie_calls

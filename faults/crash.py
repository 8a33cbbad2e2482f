"""A power-loss disk: in-memory files that remember what was never synced.

`CrashDisk().opener` is an `opener(path, create)` for `engine.open`. Its
`CrashFile`s keep the latest content (what reads see, like the page cache)
and the disk logs every change as a numbered `Event` (1-based): "create",
"write", "extend", "truncate", "sync", "rename", "syncdir". Per file, the
changes since its last sync are pending; `sync()` makes them durable. A
rename is pending until its directory is synced (`sync_dir()`): a crash
before that leaves the file under its old name or its new one.

The crash is decided after the run: `images(crash_at, mode, seed)` rebuilds
what a machine losing power right after event `crash_at` (0 = before any)
could leave on disk, one `bytes` per file path:

- "drop": only durable content (every pending change lost);
- "keep": every pending change landed, in order (= the page cache);
- "torn": pending changes land in order, but each 512-byte sector piece of
  each write lands or not independently (size changes land or not);
- "reorder": a seeded subset of whole pending changes lands, in a seeded
  order;
- "random": each pending sector piece ends old, new or garbage.

`enumerate_states` yields every such image set where there are few
(all subsets of pending changes) and seeded samples where there are many.
`materialize(images, directory)` writes them as real files with the same
basenames, so `engine.open(directory / name)` can recover from them.

Processes: a kill is not a power loss. Written-and-visible (the page cache)
and synced are two states of a byte, and a killed process only loses its
future, never its writes. The disk counts processes (`process`, from 1; each
event records the process that made it):

- `kill(at)` ends the current process right after event `at` (default: the
  last): events after it never happened (the live content is rebuilt from
  the first `at`), every handle opened so far is dead (a later call on one
  raises `StorageIOError(EBADF)` and is recorded in `zombie_calls`, so a
  test can assert the abandoned handle was never touched), and the pending
  changes stay pending: still visible to the next process, still not
  durable.
- The next process opens through the same `opener` and sees that page
  cache; its recovery writes and syncs are events like any other.
- A power loss then applies to whatever is still pending, from either
  process, in any mode: `images(None, "drop")` keeps only what some sync
  made durable. A sync is per file, whoever calls it: process 2's fsync of
  a file makes process 1's pending changes to that file durable too.

`snapshot()` and `changes_since(snapshot)` tell whether anything (an event,
a byte, a file) changed, e.g. that a read-only open wrote nothing.

Model limits: a created file always exists after a crash (the engine is
expected to fsync its directory); sectors are the atomic unit; a sync is
durable the moment it returns. A rename stays within one directory, and
until its directory is synced no other change may touch either name (the
disk raises `ValueError` rather than guess); other handles on the renamed
file do not follow it.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from engine.disk import SECTOR
from engine.errors import StorageIOError

__all__ = ["MODES", "CrashDisk", "CrashFile", "CrashState", "DiskSnapshot", "Event", "materialize"]

MODES = ("drop", "keep", "torn", "reorder", "random")


@dataclass(frozen=True)
class Event:
    """One change to the disk. `offset`/`length` for writes, `size` for
    extend/truncate; `data` is the written bytes; `target` a rename's new
    path (a "syncdir" event's `path` is the directory); `process` made it."""

    index: int
    kind: str
    path: str
    offset: int = 0
    length: int = 0
    size: int = 0
    data: bytes = field(default=b"", repr=False)
    process: int = 1
    target: str = ""


@dataclass(frozen=True)
class DiskSnapshot:
    """The disk at one moment: how many events, and every file's latest content."""

    events: int
    contents: dict[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class CrashState:
    """One possible disk after a crash: which pending units landed, and the images."""

    crash_at: int
    landed: tuple[str, ...]
    images: dict[str, bytes] = field(repr=False)


def _apply(
    buf: bytearray, ev: Event, lo: int = 0, hi: int | None = None, data: bytes | None = None
) -> None:
    """Apply `ev` (or bytes lo:hi of its write) to `buf` in place."""
    if ev.kind == "write":
        hi = ev.length if hi is None else hi
        start = ev.offset + lo
        chunk = ev.data[lo:hi] if data is None else data
        if len(buf) < start:
            buf.extend(bytes(start - len(buf)))
        buf[start : start + len(chunk)] = chunk
    elif ev.kind == "extend":
        if ev.size > len(buf):
            buf.extend(bytes(ev.size - len(buf)))
    elif ev.kind == "truncate":
        if ev.size < len(buf):
            del buf[ev.size :]
        else:
            buf.extend(bytes(ev.size - len(buf)))


def _pieces(ev: Event) -> list[tuple[int, int]]:
    """Bytes lo:hi of a write that fall in one 512-byte file sector each."""
    out = []
    pos = 0
    while pos < ev.length:
        end = min(ev.length, pos + SECTOR - (ev.offset + pos) % SECTOR)
        out.append((pos, end))
        pos = end
    return out


@dataclass
class _Replay:
    """Durable content and pending events of every file at a crash point."""

    exists: dict[str, bool]
    durable: dict[str, bytearray]
    pending: dict[str, list[Event]]
    renames: list[Event] = field(default_factory=list)  # not yet made durable by a "syncdir"

    def move(self, ev: Event) -> None:
        """A rename made durable: the file and its pending changes take the new name."""
        self.durable[ev.target] = self.durable.pop(ev.path)
        self.pending[ev.target] = self.pending.pop(ev.path, [])
        self.exists.pop(ev.path, None)
        self.exists[ev.target] = True


def _renamed(images: dict, ev: Event) -> None:
    """Apply rename `ev` to crash images (path -> content)."""
    if ev.path in images:
        images[ev.target] = images.pop(ev.path)


def _unsynced_renames(events: list[Event]) -> list[Event]:
    """The renames among `events` that no later "syncdir" of their directory covers."""
    out: list[Event] = []
    for ev in events:
        if ev.kind == "rename":
            out.append(ev)
        elif ev.kind == "syncdir":
            out = [r for r in out if os.path.dirname(r.path) != ev.path]
    return out


class CrashDisk:
    """In-memory files with a log of unsynced changes. Thread-safe.

    `images` (path -> bytes) seeds the durable content, e.g. to crash again
    during recovery from an earlier crash image.
    `placeholders=True` also creates an empty real file at each created path
    (for code that takes a real file lock on it).
    """

    def __init__(
        self,
        images: Mapping[str, bytes] | None = None,
        *,
        placeholders: bool = False,
        direct: bool = False,
    ) -> None:
        self._base = {str(p): bytes(b) for p, b in (images or {}).items()}
        self._content: dict[str, bytearray] = {p: bytearray(b) for p, b in self._base.items()}
        self._lock = threading.RLock()
        self.events: list[Event] = []
        self.marks: list[tuple[int, str]] = []
        self.placeholders = placeholders
        self.direct = direct
        self.process = 1
        self.zombie_calls: list[str] = []  # calls on handles of killed processes
        self.handles: list[CrashFile] = []  # every file opened, for `open_files`
        self._renaming: list[Event] = []  # renames whose directory is not synced yet

    # -- the live disk --------------------------------------------------

    def opener(self, path: str | os.PathLike[str], create: bool) -> CrashFile:
        """Open `path` (creating it when `create`); missing and not `create`
        raises FileNotFoundError, as `DirectFile.open` does."""
        path = os.fspath(path)
        with self._lock:
            if path not in self._content:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, "No such file (CrashDisk)", path)
                self._content[path] = bytearray()
                self._log("create", path)
                if self.placeholders and not os.path.exists(path):
                    open(path, "ab").close()
        handle = CrashFile(self, path, self.direct, self.process)
        self.handles.append(handle)
        return handle

    def open_files(self) -> list[str]:
        """The paths of the files the live process opened and has not closed."""
        return [h.path for h in self.handles if not h.closed and h.process == self.process]

    def _log(self, kind: str, path: str, **kw: object) -> None:
        if kind != "syncdir" and any(path in (r.path, r.target) for r in self._renaming):
            raise ValueError(f"CrashDisk: {kind} of {path} while a rename of that name is not "
                             f"synced (sync_dir) is not modelled")
        self.events.append(Event(len(self.events) + 1, kind, path, process=self.process, **kw))  # type: ignore[arg-type]

    def _rename(self, src: str, dst: str) -> None:
        """Rename `src` to `dst` (caller holds the lock), replacing `dst`."""
        if os.path.dirname(src) != os.path.dirname(dst):
            raise ValueError(f"CrashDisk: a rename across directories ({src} -> {dst}) is not modelled")
        self._log("rename", src, target=dst)
        self._content[dst] = self._content.pop(src)
        self._renaming.append(self.events[-1])

    def _sync_dir(self, directory: str) -> None:
        self._log("syncdir", directory)
        self._renaming = [r for r in self._renaming if os.path.dirname(r.path) != directory]

    def kill(self, at: int | None = None) -> int:
        """End the current process right after event `at` (None: the last).
        Later events are undone, its handles die, its pending changes stay
        visible and pending. Returns the new process's number."""
        with self._lock:
            n = len(self.events) if at is None else at
            if not 0 <= n <= len(self.events):
                raise ValueError(f"kill: at must be in 0..{len(self.events)}, got {at}")
            content = {p: bytearray(b) for p, b in self._base.items()}
            for ev in self.events[:n]:
                if ev.kind == "create":
                    content.setdefault(ev.path, bytearray())
                elif ev.kind == "rename":
                    content[ev.target] = content.pop(ev.path)
                elif ev.kind not in ("sync", "syncdir"):
                    _apply(content[ev.path], ev)
            self._content = content
            del self.events[n:]
            self._renaming = _unsynced_renames(self.events)
            self.marks = [(i, label) for i, label in self.marks if i <= n]
            self.process += 1
            return self.process

    def copy(self) -> CrashDisk:
        """An independent disk with the same base, content, events and marks
        (e.g. to kill one run at many points); its handles start afresh."""
        with self._lock:
            other = CrashDisk(self._base, placeholders=self.placeholders, direct=self.direct)
            other._content = {p: bytearray(b) for p, b in self._content.items()}
            other.events = list(self.events)
            other.marks = list(self.marks)
            other.process = self.process
            other._renaming = list(self._renaming)
            return other

    def snapshot(self) -> DiskSnapshot:
        """The event count and every file's latest content, for `changes_since`."""
        with self._lock:
            return DiskSnapshot(len(self.events), {p: bytes(b) for p, b in self._content.items()})

    def changes_since(self, snap: DiskSnapshot) -> list[str]:
        """What changed since `snap`: each event, then each file created,
        removed or whose bytes differ. Empty when nothing did."""
        with self._lock:
            out = [f"event {e.index}: {e.kind} {e.path}" + (f" at {e.offset} ({e.length} bytes)"
                   if e.kind == "write" else f" to {e.size}" if e.kind in ("extend", "truncate")
                   else f" to {e.target}" if e.kind == "rename" else "")
                   for e in self.events[snap.events:]]
            for path in sorted(set(snap.contents) | set(self._content)):
                old, new = snap.contents.get(path), self._content.get(path)
                if old is None:
                    out.append(f"{path}: created")
                elif new is None:
                    out.append(f"{path}: removed")
                elif old != new:
                    diff = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                                min(len(old), len(new)))
                    out.append(f"{path}: {len(old)} -> {len(new)} bytes, first difference at {diff}")
            return out

    def mark(self, label: str) -> int:
        """Note that `label` happened (e.g. "commit 7 returned") after the
        events so far; returns that event count. A crash at `crash_at >= n`
        comes after the marked moment."""
        with self._lock:
            n = len(self.events)
            self.marks.append((n, label))
            return n

    def content(self, path: str) -> bytes:
        """The latest content of `path` (durable or not)."""
        with self._lock:
            return bytes(self._content[path])

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._content)

    # -- crash images ---------------------------------------------------

    def _replay(self, crash_at: int | None) -> tuple[int, _Replay]:
        with self._lock:
            events = list(self.events)
        n = len(events) if crash_at is None else crash_at
        if not 0 <= n <= len(events):
            raise ValueError(f"crash_at must be in 0..{len(events)}, got {crash_at}")
        rep = _Replay(
            {p: True for p in self._base}, {p: bytearray(b) for p, b in self._base.items()}, {}
        )
        for ev in events[:n]:
            if ev.kind == "create":
                rep.exists[ev.path] = True
                rep.durable.setdefault(ev.path, bytearray())
            elif ev.kind == "sync":
                for p in rep.pending.pop(ev.path, []):
                    _apply(rep.durable[ev.path], p)
            elif ev.kind == "rename":
                rep.renames.append(ev)
            elif ev.kind == "syncdir":
                for r in rep.renames:
                    if os.path.dirname(r.path) == ev.path:
                        rep.move(r)
                rep.renames = [r for r in rep.renames if os.path.dirname(r.path) != ev.path]
            else:
                rep.pending.setdefault(ev.path, []).append(ev)
        return n, rep

    def pending_at(self, crash_at: int | None = None) -> list[Event]:
        """The changes not yet durable after event `crash_at`, in order."""
        _, rep = self._replay(crash_at)
        return sorted([*(e for evs in rep.pending.values() for e in evs), *rep.renames], key=lambda e: e.index)

    def images(
        self, crash_at: int | None = None, mode: str = "drop", seed: int = 0
    ) -> dict[str, bytes]:
        """The disk after losing power right after event `crash_at` (None: after
        the last), one image per existing path. Seeded: same args, same images."""
        if mode not in MODES:
            raise ValueError(f"images: mode is one of {MODES}, got {mode!r}")
        _, rep = self._replay(crash_at)
        rng = random.Random(seed)
        out = {}
        for path in sorted(rep.durable):
            if not rep.exists.get(path):
                continue
            buf = bytearray(rep.durable[path])
            pending = rep.pending.get(path, [])
            if mode == "keep":
                for ev in pending:
                    _apply(buf, ev)
            elif mode == "reorder":
                chosen = [ev for ev in pending if rng.random() < 0.5]
                rng.shuffle(chosen)
                for ev in chosen:
                    _apply(buf, ev)
            elif mode in ("torn", "random"):
                for ev in pending:
                    self._damage(buf, ev, rng, garbage=mode == "random")
            out[path] = bytes(buf)
        for ev in rep.renames:  # names last: a rename moves the file's image, pending changes and all
            if mode == "keep" or (mode != "drop" and rng.random() < 0.5):
                _renamed(out, ev)
        return out

    @staticmethod
    def _damage(buf: bytearray, ev: Event, rng: random.Random, garbage: bool) -> None:
        if ev.kind != "write":
            if rng.random() < 0.5:
                _apply(buf, ev)
            return
        for lo, hi in _pieces(ev):
            r = rng.random()
            if garbage and r < 1 / 3:
                _apply(buf, ev, lo, hi, rng.randbytes(hi - lo))
            elif r >= (2 / 3 if garbage else 0.5):
                _apply(buf, ev, lo, hi)

    def enumerate_states(
        self,
        crash_at: int | None = None,
        *,
        unit: str = "op",
        limit: int = 64,
        seed: int = 0,
        crash_points: range | list[int] | None = None,
    ) -> Iterator[CrashState]:
        """Yield possible disks after a crash at each crash point.

        Crash points: `crash_points`, else `[crash_at]`, else every event
        index 0..N. At each, the units are the pending changes ("op") or the
        pending writes' sector pieces plus size changes ("sector"); each
        subset of units landing (in order) is one state. All subsets when
        there are at most `limit`, else `limit` seeded ones (always including
        none and all).
        """
        if unit not in ("op", "sector"):
            raise ValueError("enumerate_states: unit is 'op' or 'sector'")
        if crash_points is None:
            crash_points = range(len(self.events) + 1) if crash_at is None else [crash_at]
        rng = random.Random(seed)
        for point in crash_points:
            _, rep = self._replay(point)
            units: list[tuple[Event, int, int | None]] = []
            for path in sorted(rep.pending):
                for ev in rep.pending[path]:
                    if unit == "sector" and ev.kind == "write":
                        units.extend((ev, lo, hi) for lo, hi in _pieces(ev))
                    else:
                        units.append((ev, 0, None))
            units += [(ev, 0, None) for ev in rep.renames]  # after the content they move
            n = len(units)
            if n < 63 and 2**n <= limit:
                masks: Iterator[int] | list[int] = range(2**n)
            else:
                full = (1 << n) - 1
                masks = [0, full] + [rng.getrandbits(n) for _ in range(max(limit - 2, 0))]
            for mask in masks:
                images = {p: bytearray(b) for p, b in rep.durable.items() if rep.exists.get(p)}
                landed = []
                for bit, (ev, lo, hi) in enumerate(units):
                    if mask >> bit & 1:
                        if ev.kind == "rename":
                            _renamed(images, ev)
                        else:
                            _apply(images[ev.path], ev, lo, hi)
                        landed.append(f"{ev.index}" if hi is None else f"{ev.index}[{lo}:{hi}]")
                yield CrashState(point, tuple(landed), {p: bytes(b) for p, b in images.items()})

    @staticmethod
    def materialize(
        images: Mapping[str, bytes], directory: str | os.PathLike[str]
    ) -> dict[str, str]:
        return materialize(images, directory)


def materialize(images: Mapping[str, bytes], directory: str | os.PathLike[str]) -> dict[str, str]:
    """Write each image to `directory/basename(path)`; returns path -> new path."""
    directory = os.fspath(directory)
    names = [os.path.basename(p) for p in images]
    if len(set(names)) != len(names):
        raise ValueError(f"materialize: basenames collide: {sorted(images)}")
    os.makedirs(directory, exist_ok=True)
    out = {}
    for path, data in images.items():
        target = os.path.join(directory, os.path.basename(path))
        with open(target, "wb") as f:
            f.write(data)
        out[path] = target
    return out


class CrashFile:
    """A `BlockFile` on a `CrashDisk`. Reads see the latest writes."""

    __slots__ = ("disk", "path", "direct", "process", "_closed")

    def __init__(self, disk: CrashDisk, path: str, direct: bool = False, process: int = 1) -> None:
        self.disk = disk
        self.path = path
        self.direct = direct
        self.process = process
        self._closed = False

    def _check(self, offset: int = 0) -> None:
        if self.process != self.disk.process:
            self.disk.zombie_calls.append(f"process {self.process} touched {self.path} after its kill")
            raise StorageIOError(errno.EBADF, f"{self.path}: process {self.process} was killed")
        if self._closed:
            raise StorageIOError(errno.EBADF, f"{self.path}: file is closed")
        if offset < 0:
            raise StorageIOError(errno.EINVAL, f"{self.path}: negative offset {offset}")

    def read_into(self, offset: int, buf: memoryview) -> int:
        self._check(offset)
        with self.disk._lock:
            content = self.disk._content[self.path]
            n = max(0, min(len(buf), len(content) - offset))
            memoryview(buf)[:n] = content[offset : offset + n]
            return n

    def write(self, offset: int, data: bytes | memoryview) -> None:
        self._check(offset)
        ev_data = bytes(data)
        with self.disk._lock:
            self.disk._log("write", self.path, offset=offset, length=len(ev_data), data=ev_data)
            _apply(self.disk._content[self.path], self.disk.events[-1])

    def sync(self) -> None:
        self._check()
        with self.disk._lock:
            self.disk._log("sync", self.path)

    def size(self) -> int:
        self._check()
        with self.disk._lock:
            return len(self.disk._content[self.path])

    def extend(self, new_size: int) -> None:
        self._check(new_size)
        with self.disk._lock:
            if new_size > len(self.disk._content[self.path]):
                self.disk._log("extend", self.path, size=new_size)
                _apply(self.disk._content[self.path], self.disk.events[-1])

    def truncate(self, new_size: int) -> None:
        self._check(new_size)
        with self.disk._lock:
            self.disk._log("truncate", self.path, size=new_size)
            _apply(self.disk._content[self.path], self.disk.events[-1])

    def rename(self, new_path: str) -> None:
        self._check()
        with self.disk._lock:
            self.disk._rename(self.path, new_path)
        self.path = new_path

    def sync_dir(self) -> None:
        self._check()
        with self.disk._lock:
            self.disk._sync_dir(os.path.dirname(self.path))

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.process != self.disk.process:
            self.disk.zombie_calls.append(f"process {self.process} closed {self.path} after its kill")
            return
        self._closed = True

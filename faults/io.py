"""Injected I/O faults: a seeded `FaultPlan` decides, a `FaultyFile` acts.

Modelled on SQLite's `src/test_vfs.c`: a plan holds rules, each with a mask
of call kinds and a countdown to a transient fault (that one call) or a
persistent one (that call and every later matching call). The opener follows
bbolt's `Options.OpenFile`: `engine.open(path, opener=plan.opener())` makes
the engine open every file (the data file and `path + "-wal"`) through the
plan, and each `FaultyFile` forwards to a real `BlockFile`.

Call kinds: "open", "read", "write", "sync", "extend", "truncate", "rename"
(a `sync_dir` counts as a "sync").
Call indexes are 1-based and counted per plan across every file opened
through it (`plan.calls[kind]`). Effects:

- "error": the call raises `StorageIOError` with the rule's errno (EIO,
  ENOSPC, EFBIG, ...) and has no effect. Any kind.
- "short": a read fills only a prefix of the buffer and returns its length,
  exactly as a read at end of file does. A short read of a page that lies
  wholly inside the file (`offset + len <= size()`) can only be a fault, so
  the engine must treat it as an I/O error or corruption and never use the
  unread tail. A short write persists a prefix of the data, then raises
  `StorageIOError`.
- "torn": a write persists some whole 512-byte sectors (counted on file
  offsets, so a write starting mid-sector has a short first piece) and not
  the others, then raises `StorageIOError` or returns as if it had succeeded
  (a lying disk), as the rule says.
- "bitflip": a read returns its data with one seeded bit flipped.

Every injected fault is appended to `plan.injected` as an `Injection`.
With `site_depth > 0` the plan also counts each call by call site (the
engine functions on the stack) in `plan.sites`, so a campaign can report how
many distinct places it failed.
"""

from __future__ import annotations

import errno as _errno
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.disk import SECTOR, BlockFile, default_opener
from engine.errors import StorageIOError

__all__ = [
    "EFFECTS",
    "KINDS",
    "PAGE_SIZE",
    "Decision",
    "FaultPlan",
    "FaultyFile",
    "Injection",
    "MinimalFile",
    "Rule",
    "minimal",
]

PAGE_SIZE = 4096  # the engine's page size; `Injection.page` is offset // PAGE_SIZE
KINDS: tuple[str, ...] = ("open", "read", "write", "sync", "extend", "truncate", "rename")
# which call kinds each effect can apply to
EFFECTS: dict[str, frozenset[str]] = {
    "error": frozenset(KINDS),
    "short": frozenset({"read", "write"}),
    "torn": frozenset({"write"}),
    "bitflip": frozenset({"read"}),
}


@dataclass(frozen=True)
class Injection:
    """One injected fault, as recorded in `FaultPlan.injected`.

    `offset` is the byte offset for read/write, the new size for
    extend/truncate, None for open/sync/rename; `page` is `offset // 4096` or None.
    `errno` is None when nothing was raised (bitflip, torn without error).
    """

    kind: str
    call_index: int
    file: str
    offset: int | None
    page: int | None
    errno: int | None
    effect: str
    site: str | None = None
    detail: str = ""


@dataclass
class Rule:
    """One fault rule of a plan. Build with `FaultPlan.fail/short/torn/bitflip`.

    `seen` counts the calls this rule matched (kind in `kinds`, and the
    `file`/`page` filters); `nth` is 1-based over those calls.
    """

    kinds: frozenset[str]
    effect: str
    nth: int | None = None
    probability: float | None = None
    persistent: bool = False
    errno: int = _errno.EIO
    file: str | None = None  # match paths ending with this (e.g. "-wal")
    page: int | None = None  # match calls whose offset lies in this page
    keep: int | None = None  # short: bytes kept; torn: sectors kept (prefix pattern)
    pattern: str = "prefix"  # torn: "prefix" (first k sectors land) or "any" (any proper subset)
    raise_error: bool = True  # torn: raise after the partial write, or return silently
    seen: int = 0
    fired: int = 0

    def matches(self, kind: str, path: str, offset: int | None, length: int) -> bool:
        if kind not in self.kinds:
            return False
        if self.file is not None and not path.endswith(self.file):
            return False
        if self.page is not None:
            if offset is None:
                return False
            first = offset // PAGE_SIZE
            last = (offset + max(length, 1) - 1) // PAGE_SIZE
            if not first <= self.page <= last:
                return False
        return True

    def step(self, rng: random.Random) -> bool:
        """Count one matching call; True when this call is to fail."""
        self.seen += 1
        if self.nth is not None:
            hit = self.seen == self.nth or (self.persistent and self.seen > self.nth)
        else:
            assert self.probability is not None, "Rule.step: rule has neither nth nor probability"
            draw = rng.random()  # drawn every time so the stream does not depend on history
            hit = (self.persistent and self.fired > 0) or draw < self.probability
        if hit:
            self.fired += 1
        return hit


@dataclass(frozen=True)
class Decision:
    """What a `FaultyFile` must do for one call (made by `FaultPlan.decide`)."""

    kind: str
    call_index: int
    path: str
    offset: int | None
    length: int
    effect: str
    errno: int
    site: str | None = None
    keep: int = 0  # short: bytes to keep
    pieces: tuple[tuple[int, int], ...] = ()  # torn: (start, end) of data that lands
    raise_error: bool = True
    bit: int = 0  # bitflip: bit index into the requested range (reduced mod bytes read)
    rule: Rule | None = field(default=None, compare=False, repr=False)


def sector_pieces(offset: int, length: int) -> list[tuple[int, int]]:
    """Split `[0, length)` of a write at `offset` at 512-byte file boundaries."""
    pieces = []
    pos = 0
    while pos < length:
        end = min(length, pos + SECTOR - (offset + pos) % SECTOR)
        pieces.append((pos, end))
        pos = end
    return pieces


class FaultPlan:
    """A seeded, deterministic decider of I/O faults.

    Given the same seed, rules and sequence of calls, a plan makes the same
    decisions and records the same injections. It does no I/O itself.
    Thread-safe: one lock orders the counters, so under real threads the
    call order (and so the decisions) is the threads' order.
    """

    def __init__(self, seed: int = 0, *, site_depth: int = 0) -> None:
        self.seed = seed
        self.site_depth = site_depth
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.sites: Counter[tuple[str, str]] = Counter()
        self.injected: list[Injection] = []
        self.files: list[str] = []
        self.armed = True
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    # -- building rules -------------------------------------------------

    def _add(
        self,
        kind: str | Iterable[str],
        effect: str,
        nth: int | None,
        probability: float | None,
        **kw: object,
    ) -> Rule:
        kinds = frozenset([kind] if isinstance(kind, str) else kind)
        if not kinds:
            raise ValueError("FaultPlan: empty kind mask")
        bad = kinds - EFFECTS[effect]
        if bad:
            raise ValueError(f"FaultPlan: effect {effect!r} does not apply to {sorted(bad)}")
        if (nth is None) == (probability is None):
            raise ValueError("FaultPlan: give exactly one of nth= and probability=")
        if nth is not None and nth < 1:
            raise ValueError("FaultPlan: nth is 1-based")
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError("FaultPlan: probability must be in [0, 1]")
        rule = Rule(kinds=kinds, effect=effect, nth=nth, probability=probability, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def fail(
        self,
        kind: str | Iterable[str],
        nth: int | None = None,
        *,
        probability: float | None = None,
        persistent: bool = False,
        errno: int = _errno.EIO,
        file: str | None = None,
        page: int | None = None,
    ) -> Rule:
        """Make the `nth` matching call (or each with `probability`) raise
        `StorageIOError(errno)` with no effect; `persistent` fails every later
        matching call too."""
        return self._add(
            kind,
            "error",
            nth,
            probability,
            persistent=persistent,
            errno=errno,
            file=file,
            page=page,
        )

    def short(
        self,
        kind: str | Iterable[str],
        nth: int | None = None,
        *,
        probability: float | None = None,
        persistent: bool = False,
        keep: int | None = None,
        errno: int = _errno.EIO,
        file: str | None = None,
        page: int | None = None,
    ) -> Rule:
        """Short read (returns `keep` bytes, seeded when None) or short write
        (persists `keep` bytes, then raises `StorageIOError(errno)`)."""
        return self._add(
            kind,
            "short",
            nth,
            probability,
            persistent=persistent,
            keep=keep,
            errno=errno,
            file=file,
            page=page,
        )

    def torn(
        self,
        nth: int | None = None,
        *,
        probability: float | None = None,
        persistent: bool = False,
        keep: int | None = None,
        pattern: str = "prefix",
        raise_error: bool = True,
        errno: int = _errno.EIO,
        file: str | None = None,
        page: int | None = None,
    ) -> Rule:
        """Tear a write at sector boundaries: `pattern="prefix"` lands the first
        `keep` sectors (seeded when None), `"any"` a seeded proper subset.
        Then raise `StorageIOError(errno)` or, with `raise_error=False`, return."""
        if pattern not in ("prefix", "any"):
            raise ValueError("FaultPlan.torn: pattern is 'prefix' or 'any'")
        return self._add(
            "write",
            "torn",
            nth,
            probability,
            persistent=persistent,
            keep=keep,
            pattern=pattern,
            raise_error=raise_error,
            errno=errno,
            file=file,
            page=page,
        )

    def bitflip(
        self,
        nth: int | None = None,
        *,
        probability: float | None = None,
        persistent: bool = False,
        file: str | None = None,
        page: int | None = None,
    ) -> Rule:
        """Flip one seeded bit in the data a read returns."""
        return self._add(
            "read", "bitflip", nth, probability, persistent=persistent, file=file, page=page
        )

    def disarm(self) -> None:
        """Inject nothing from now on (calls are still counted)."""
        with self._lock:
            self.armed = False

    def arm(self) -> None:
        """Undo `disarm`."""
        with self._lock:
            self.armed = True

    # -- deciding -------------------------------------------------------

    def decide(
        self,
        kind: str,
        path: str,
        offset: int | None = None,
        length: int = 0,
        site: str | None = None,
    ) -> Decision | None:
        """Count one call and say whether (and how) it fails. Pure but for
        the plan's own counters and seeded generator."""
        assert kind in KINDS, f"decide: unknown kind {kind!r}"
        with self._lock:
            self.calls[kind] += 1
            index = self.calls[kind]
            if site is not None:
                self.sites[(kind, site)] += 1
            if not self.armed:
                return None
            chosen: Rule | None = None
            for rule in self.rules:
                # every matching rule counts the call, so rules do not shadow each other's countdowns
                if (
                    rule.matches(kind, path, offset, length)
                    and rule.step(self._rng)
                    and chosen is None
                ):
                    chosen = rule
            if chosen is None:
                return None
            return self._shape(chosen, kind, index, path, offset, length, site)

    def _shape(
        self,
        rule: Rule,
        kind: str,
        index: int,
        path: str,
        offset: int | None,
        length: int,
        site: str | None,
    ) -> Decision:
        rng = self._rng
        base = dict(
            kind=kind,
            call_index=index,
            path=path,
            offset=offset,
            length=length,
            effect=rule.effect,
            errno=rule.errno,
            site=site,
            rule=rule,
        )
        if rule.effect == "short":
            keep = rule.keep if rule.keep is not None else (rng.randrange(length) if length else 0)
            return Decision(**base, keep=min(keep, max(length - 1, 0)))  # type: ignore[arg-type]
        if rule.effect == "torn":
            assert offset is not None, "_shape: torn write without an offset"
            pieces = sector_pieces(offset, length)
            if rule.pattern == "prefix":
                k = (
                    rule.keep
                    if rule.keep is not None
                    else rng.randrange(len(pieces))
                    if pieces
                    else 0
                )
                landed = pieces[: min(k, max(len(pieces) - 1, 0))]
            else:
                mask = [rng.random() < 0.5 for _ in pieces]
                if pieces and all(mask):
                    mask[rng.randrange(len(pieces))] = False  # a torn write never lands whole
                landed = [p for p, m in zip(pieces, mask, strict=True) if m]
            return Decision(**base, pieces=tuple(landed), raise_error=rule.raise_error)  # type: ignore[arg-type]
        if rule.effect == "bitflip":
            return Decision(**base, bit=rng.randrange(max(length, 1) * 8))  # type: ignore[arg-type]
        return Decision(**base)  # type: ignore[arg-type]

    def record(self, d: Decision, *, raised: bool, detail: str = "") -> Injection:
        """Append the injection `d` caused (called by the acting side)."""
        page = d.offset // PAGE_SIZE if d.offset is not None else None
        inj = Injection(
            d.kind,
            d.call_index,
            d.path,
            d.offset,
            page,
            d.errno if raised else None,
            d.effect,
            d.site,
            detail,
        )
        with self._lock:
            self.injected.append(inj)
        return inj

    # -- acting ---------------------------------------------------------

    def opener(
        self, inner: Callable[[str, bool], BlockFile] | None = None
    ) -> Callable[[str, bool], BlockFile]:
        """An `opener(path, create)` for `engine.open(..., opener=)` whose files
        are `FaultyFile`s over `inner` (default: `default_opener("auto")`)."""
        base = inner if inner is not None else default_opener("auto")

        def opener(path: str, create: bool) -> BlockFile:
            path = str(path)
            d = self.decide("open", path, None, 0, self._site())
            if d is not None:
                self.record(d, raised=True)
                raise StorageIOError(d.errno, f"open {path}: injected fault (call {d.call_index})")
            f = FaultyFile(base(path, create), self, path)
            with self._lock:
                self.files.append(path)
            return f

        return opener

    def _site(self) -> str | None:
        return _call_site(self.site_depth) if self.site_depth > 0 else None

    def distinct_sites(self) -> set[tuple[str, str]]:
        """The (kind, site) pairs of every injected fault."""
        return {(i.kind, i.site or "?") for i in self.injected}


def _call_site(depth: int) -> str:
    """Up to `depth` engine functions on the stack, innermost first, joined by
    " < "; the first caller outside `faults` when no engine frame is found."""
    frame = sys._getframe(1)
    fallback = None
    names: list[str] = []
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if mod == "engine.openers":  # the shim that completes a minimal file is no call site
            frame = frame.f_back
            continue
        if mod == "engine" or mod.startswith("engine."):
            names.append(f"{mod}.{frame.f_code.co_qualname}")
            if len(names) >= depth:
                break
        elif names:
            break
        elif fallback is None and not (mod == "faults" or mod.startswith("faults.")):
            fallback = f"{mod}.{frame.f_code.co_qualname}"
        frame = frame.f_back
    return " < ".join(names) if names else (fallback or "?")


class FaultyFile:
    """A `BlockFile` that forwards to `inner` and applies its plan's decisions."""

    __slots__ = ("inner", "plan", "path")

    def __init__(self, inner: BlockFile, plan: FaultPlan, path: str) -> None:
        self.inner = inner
        self.plan = plan
        self.path = path

    @property
    def direct(self) -> bool:
        return self.inner.direct

    def _raise(self, d: Decision, what: str) -> None:
        raise StorageIOError(
            d.errno, f"{d.kind} {self.path}: injected {what} (call {d.call_index})"
        )

    def read_into(self, offset: int, buf: memoryview) -> int:
        d = self.plan.decide("read", self.path, offset, len(buf), self.plan._site())
        if d is None:
            return self.inner.read_into(offset, buf)
        if d.effect == "error":
            self.plan.record(d, raised=True)
            self._raise(d, "error")
        view = memoryview(buf)
        if d.effect == "short":
            got = self.inner.read_into(offset, view[: d.keep]) if d.keep else 0
            self.plan.record(d, raised=False, detail=f"returned {got} of {len(view)}")
            return got
        assert d.effect == "bitflip", f"read_into: unexpected effect {d.effect}"
        got = self.inner.read_into(offset, buf)
        if got:
            bit = d.bit % (got * 8)
            view[bit // 8] ^= 1 << (bit % 8)
            self.plan.record(d, raised=False, detail=f"bit {bit}")
        return got

    def write(self, offset: int, data: bytes | memoryview) -> None:
        d = self.plan.decide("write", self.path, offset, len(data), self.plan._site())
        if d is None:
            self.inner.write(offset, data)
            return
        if d.effect == "error":
            self.plan.record(d, raised=True)
            self._raise(d, "error")
        view = memoryview(data)
        if d.effect == "short":
            if d.keep:
                self.inner.write(offset, view[: d.keep])
            self.plan.record(d, raised=True, detail=f"persisted {d.keep} of {len(view)}")
            self._raise(d, "short write")
        assert d.effect == "torn", f"write: unexpected effect {d.effect}"
        runs: list[list[int]] = []
        for start, end in d.pieces:  # adjacent sectors land in one inner write
            if runs and runs[-1][1] == start:
                runs[-1][1] = end
            else:
                runs.append([start, end])
        for start, end in runs:
            self.inner.write(offset + start, view[start:end])
        landed = ",".join(f"{offset + s}+{e - s}" for s, e in runs) or "none"
        self.plan.record(d, raised=d.raise_error, detail=f"landed {landed}")
        if d.raise_error:
            self._raise(d, "torn write")

    def sync(self) -> None:
        self._simple("sync", None)
        self.inner.sync()

    def size(self) -> int:
        return self.inner.size()

    def extend(self, new_size: int) -> None:
        self._simple("extend", new_size)
        self.inner.extend(new_size)

    def truncate(self, new_size: int) -> None:
        self._simple("truncate", new_size)
        self.inner.truncate(new_size)

    def rename(self, new_path: str) -> None:
        self._simple("rename", None)
        self.inner.rename(new_path)
        self.path = new_path

    def sync_dir(self) -> None:
        self._simple("sync", None)
        self.inner.sync_dir()

    def _simple(self, kind: str, offset: int | None) -> None:
        d = self.plan.decide(kind, self.path, offset, 0, self.plan._site())
        if d is not None:
            self.plan.record(d, raised=True)
            self._raise(d, "error")

    def close(self) -> None:
        self.inner.close()


class MinimalFile:
    """Another file's six calls of the minimal BlockFile (read_into, write,
    sync, size, extend, close) and nothing else: what a user's `opener=` may
    return. The engine must run through it, supplying the rest itself. Like
    a user's file, it knows nothing of the engine's error types: a failure
    is a plain `OSError` with its errno, which the engine must type."""

    def __init__(self, inner) -> None:
        self.read_into = _plain(inner.read_into)
        self.write = _plain(inner.write)
        self.sync = _plain(inner.sync)
        self.size = _plain(inner.size)
        self.extend = _plain(inner.extend)
        self.close = _plain(inner.close)


def _plain(call: Callable) -> Callable:
    def run(*args):
        try:
            return call(*args)
        except StorageIOError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc)) from None
    return run


def minimal(opener):
    """`opener`, its files cut down to `MinimalFile`."""
    return lambda path, create: MinimalFile(opener(path, create))

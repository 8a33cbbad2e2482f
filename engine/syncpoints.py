"""Named sync points: the one seam through which a scheduler orders threads.

The engine calls `reach("bufferpool.fetch.miss")` at each racy place. In
production no hook is installed and `reach` returns after one global check.
`faults.interleave` installs a hook that parks the calling thread until the
scheduler picks it again, so an interleaving replays exactly from its seed.

Every name the engine uses is in `NAMES`; `reach` with another name is a bug.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["NAMES", "reach", "install", "uninstall", "installed"]

NAMES: frozenset[str] = frozenset(
    {
        "btree.root.create",  # holding the write latch, about to create a tree's root
        "btree.split",  # a node is about to split
        "btree.merge",  # a node is about to merge or borrow
        "bufferpool.fetch.miss",  # page not in the table, before the read
        "bufferpool.fetch.install",  # page read, before it enters the table
        "bufferpool.evict",  # no free frame: the miss will evict (reached outside the pool mutex)
        "latch.wait",  # a latch is held by another thread; yield instead of blocking
        "wal.append",  # a commit record is about to be appended
        "wal.sync",  # a commit waits for the log fsync
    }
)

_hook: Callable[[str], None] | None = None


def reach(name: str) -> None:
    """Mark a racy place; a no-op unless a scheduler is installed."""
    hook = _hook  # read once: uninstall may run concurrently
    if hook is not None:
        hook(name)


def installed() -> bool:
    """True while a scheduler hook is installed."""
    return _hook is not None


def install(hook: Callable[[str], None]) -> None:
    """Install `hook`, called with the sync point's name by every `reach`."""
    global _hook
    if _hook is not None:
        raise RuntimeError("install: a sync-point hook is already installed")
    _hook = hook


def uninstall() -> None:
    """Remove the hook; `reach` is a no-op again."""
    global _hook
    _hook = None

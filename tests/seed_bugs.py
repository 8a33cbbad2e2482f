"""The seed's races, re-created on the test side.

The engine holds the fixes; these subclasses take one fix back out so the
seed-claim tests can show that each race is found without it (and, run
beside the engine's own classes, that none is found with it). They use
only public classes and the engine's own steps, duplicating no engine code.

- `SeedRootTree`: the seed's root creation. It asks "no root yet?" before
  taking the write latch and trusts the answer under it, so two first puts
  into an empty tree can both create a root (one leaks, a key may be lost).
  The engine asks only under the latch (`btree.create_root` runs inside the
  put's transaction).
- `SeedFetchPool`: the seed's fetch. A miss skips the double check
  (`BufferPool._join_load`), so a second thread missing on a page being
  read installs a second frame for it (the pool's invariants break).
"""

from __future__ import annotations

from engine import Tree, syncpoints
from engine.btree import create_root
from engine.bufferpool import BufferPool, Frame

__all__ = ["ROOT_CHECK", "SeedFetchPool", "SeedRootTree"]

ROOT_CHECK = "btree.root.check"  # the seed's racy point: an empty tree seen before the latch


class SeedRootTree(Tree):
    """A tree whose first put creates the root the seed's way (see the module doc)."""

    __slots__ = ()

    def put(self, key, value) -> None:
        if not self._entry().root:
            syncpoints.reach(ROOT_CHECK)
            self._db._write(create_root, self.name)
        super().put(key, value)


class SeedFetchPool(BufferPool):
    """A pool whose misses skip the double check (see the module doc)."""

    def _join_load(self, page_id: int) -> Frame | None:
        return None


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
"""

from __future__ import annotations

from engine import Tree, syncpoints
from engine.btree import create_root

__all__ = ["SeedRootTree"]

ROOT_CHECK = "btree.root.check"  # the seed's racy point: an empty tree seen before the latch


class SeedRootTree(Tree):
    """A tree whose first put creates the root the seed's way (see the module doc)."""

    __slots__ = ()

    def put(self, key, value) -> None:
        if not self._entry().root:
            syncpoints.reach(ROOT_CHECK)
            self._db._write(create_root, self.name)
        super().put(key, value)

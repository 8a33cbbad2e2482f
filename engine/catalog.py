"""The tree catalog: each tree's root page and key count.

The metadata page holds the catalog (`metapage.Meta.trees`); in memory it is a
dict from tree name to `TreeEntry`, shared by the database, its transactions
(which remember an entry before changing it, see `Txn.entry`) and the
checker. A root of 0 means the tree has no page yet (its first put creates
one, `btree.create_root`).
"""

from __future__ import annotations

__all__ = ["TreeEntry"]


class TreeEntry:
    """A tree's root page and key count, as held in the metadata page."""

    __slots__ = ("root", "count")

    def __init__(self, root: int = 0, count: int = 0) -> None:
        self.root = root
        self.count = count

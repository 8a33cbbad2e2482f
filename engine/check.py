"""`check()`: every invariant of docs/architecture.md, collected, never raised midway.

Like SQLite's integrity check and bbolt's tx_check, it walks everything and
reports every problem it finds:

1. page accounting: each page 0..page_count-1 is owned exactly once, by the
   metadata page, a tree (node or overflow page) or the free list; a page
   owned by nothing has leaked, one owned twice is double-owned;
2. tree shape: keys sorted within and across nodes, separators bound their
   subtrees, all leaves at one depth, leaf chain = in-order traversal, fill
   above the minimum except at the root, stored counts match;
3. buffer pool: page table injective, no pin held, replacer consistent;
4. checksums: every page read from disk or cached clean matches its CRC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import INTERNAL_MIN_FILL, LEAF_MIN_FILL, Node, Overflow
from engine.errors import DragonDBError
from engine.overflow import overflow_pages
from engine.pager import Pager

__all__ = ["CheckReport", "check_database"]


@dataclass
class CheckReport:
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    pages_allocated: int = 0
    pages_reachable: int = 0
    pages_free: int = 0
    pages_leaked: int = 0
    pages_double_owned: int = 0
    trees: int = 0
    keys: int = 0

    def __bool__(self) -> bool:
        return self.ok


# A tree deeper than this is a cycle or garbage: no file of 2**32 pages needs
# more levels, so the walk stops there instead of following it.
_MAX_DEPTH = 64


def check_database(pool: BufferPool, pager: Pager, trees: dict[str, TreeEntry]) -> CheckReport:
    """Every problem of the file, its trees and the pool (the module docstring
    lists the families), in one report; nothing is changed."""
    walk = _Walk(pool, pager, CheckReport(pages_allocated=pager.page_count, trees=len(trees)))
    for name in sorted(trees):
        walk.tree(name, trees[name])
    walk.report.pages_reachable = len(walk.owner) - 1
    walk.free_and_leaked()
    walk.cache()
    report = walk.report
    report.problems += pool.check_invariants(expect_unpinned=True)
    report.problems += pager.check_invariants()
    report.ok = not report.problems
    return report


class _Walk:
    """One check's state: the report so far and each claimed page's owner
    (page 0 is the metadata page's). One method per check family."""

    __slots__ = ("pool", "pager", "report", "problems", "owner")

    def __init__(self, pool: BufferPool, pager: Pager, report: CheckReport) -> None:
        self.pool = pool
        self.pager = pager
        self.report = report
        self.problems = report.problems
        self.owner: dict[int, str] = {0: "metadata"}

    def claim(self, pid: int, who: str) -> None:
        """Page accounting: `pid` inside the file and owned once."""
        if not 0 < pid < self.pager.page_count:
            self.problems.append(f"{who}: page {pid} outside the file")
            return
        if pid in self.owner:
            self.problems.append(f"page {pid} owned twice: {self.owner[pid]} and {who}")
            self.report.pages_double_owned += 1
        else:
            self.owner[pid] = who

    def tree(self, name: str, entry: TreeEntry) -> None:
        """Walk one tree depth first, left to right: its pages claimed, each
        node checked, then its leaf depths, key count and leaf chain."""
        who = f"tree {name!r}"
        if not entry.root:
            if entry.count:
                self.problems.append(f"{who}: no root but count {entry.count}")
            return
        leaves: list[tuple[int, Node]] = []
        leaf_depths: set[int] = set()
        keys = 0
        stack: list[tuple[int, bytes | None, bytes | None, int]] = [(entry.root, None, None, 0)]
        while stack:
            pid, lo, hi, depth = stack.pop()
            if pid in self.owner or depth > _MAX_DEPTH:
                self.claim(pid, who)  # reports the double ownership; do not walk a cycle
                continue
            self.claim(pid, who)
            node = self.node(who, pid, lo, hi, depth)
            if node is None:
                continue
            if node.leaf:
                leaf_depths.add(depth)
                leaves.append((pid, node))
                keys += len(node.keys)
                self.overflow(who, node)
            else:
                bounds = [lo, *node.keys, hi]
                # push right to left so leaves are visited left to right
                for i in range(len(node.children) - 1, -1, -1):
                    stack.append((node.children[i], bounds[i], bounds[i + 1], depth + 1))
        if len(leaf_depths) > 1:
            self.problems.append(f"{who}: leaves at depths {sorted(leaf_depths)}")
        if keys != entry.count:
            self.problems.append(f"{who}: {keys} keys but count says {entry.count}")
        self.leaf_chain(who, leaves)
        self.report.keys += keys

    def node(self, who: str, pid: int, lo: bytes | None, hi: bytes | None, depth: int) -> Node | None:
        """One node read and checked: its own invariants, the separator
        bounds, the minimum fill below the root, a root with one child."""
        try:
            node = self.pool.node(pid)  # the checker reads nodes the way readers do
        except DragonDBError as exc:
            self.problems.append(f"{who}: page {pid}: {exc}")
            return None
        for p in node.check_invariants():
            self.problems.append(f"{who}: page {pid}: {p}")
        if node.keys and ((lo is not None and node.keys[0] < lo) or (hi is not None and node.keys[-1] >= hi)):
            self.problems.append(f"{who}: page {pid}: keys outside the separator bounds")
        if depth and node.size < (LEAF_MIN_FILL if node.leaf else INTERNAL_MIN_FILL):
            self.problems.append(f"{who}: page {pid}: under minimum fill ({node.size} bytes)")
        if not node.leaf and depth == 0 and not node.keys:
            self.problems.append(f"{who}: internal root {pid} has one child")
        return node

    def overflow(self, who: str, leaf: Node) -> None:
        """The pages of each overflow chain of `leaf`, claimed for its tree."""
        for v in leaf.vals:
            if type(v) is Overflow:
                try:
                    for opid in overflow_pages(self.pool, v):
                        self.claim(opid, f"{who} overflow")
                except DragonDBError as exc:
                    self.problems.append(f"{who}: overflow chain at {v.page}: {exc}")

    def leaf_chain(self, who: str, leaves: list[tuple[int, Node]]) -> None:
        """The leaf chain equals the in-order traversal: each leaf links to the
        leaves before and after it, the ends to 0."""
        for i, (pid, node) in enumerate(leaves):
            want_next = leaves[i + 1][0] if i + 1 < len(leaves) else 0
            want_prev = leaves[i - 1][0] if i else 0
            if node.next != want_next or node.prev != want_prev:
                self.problems.append(f"{who}: leaf {pid} links ({node.prev}, {node.next}) != ({want_prev}, {want_next})")

    def free_and_leaked(self) -> None:
        """The free list's pages claimed; a page owned by nothing has leaked."""
        for pid in self.pager.free_pages():
            self.claim(pid, "free list")
        self.report.pages_free = self.pager.free_count
        leaked = [p for p in range(self.pager.page_count) if p not in self.owner]
        self.report.pages_leaked = len(leaked)
        if leaked:
            self.problems.append(f"{len(leaked)} pages leaked: {leaked[:10]}")

    def cache(self) -> None:
        """Each clean cached page still matches its checksum."""
        for pid in self.pool.corrupt_clean_nodes():
            self.problems.append(f"page {pid}: cached bytes fail their checksum")

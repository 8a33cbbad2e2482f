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
from engine.codec import INTERNAL_MIN_FILL, LEAF_MIN_FILL, Overflow
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


def check_database(pool: BufferPool, pager: Pager, trees: dict[str, TreeEntry]) -> CheckReport:  # noqa: C901 - every check family in one walk; one helper per family
    report = CheckReport(pages_allocated=pager.page_count, trees=len(trees))
    problems = report.problems
    owner: dict[int, str] = {0: "metadata"}

    def claim(pid: int, who: str) -> None:
        if not 0 < pid < pager.page_count:
            problems.append(f"{who}: page {pid} outside the file")
            return
        if pid in owner:
            problems.append(f"page {pid} owned twice: {owner[pid]} and {who}")
            report.pages_double_owned += 1
        else:
            owner[pid] = who

    for name in sorted(trees):
        entry = trees[name]
        who = f"tree {name!r}"
        if not entry.root:
            if entry.count:
                problems.append(f"{who}: no root but count {entry.count}")
            continue
        leaves: list[tuple[int, object]] = []
        leaf_depths: set[int] = set()
        keys = 0
        stack = [(entry.root, None, None, 0)]
        while stack:
            pid, lo, hi, depth = stack.pop()
            if pid in owner or depth > 64:
                claim(pid, who)  # reports the double ownership; do not walk a cycle
                continue
            claim(pid, who)
            try:
                node = pool.node(pid)  # the checker reads nodes the way readers do
            except DragonDBError as exc:
                problems.append(f"{who}: page {pid}: {exc}")
                continue
            for p in node.problems():
                problems.append(f"{who}: page {pid}: {p}")
            if node.keys and ((lo is not None and node.keys[0] < lo) or (hi is not None and node.keys[-1] >= hi)):
                problems.append(f"{who}: page {pid}: keys outside the separator bounds")
            if depth and node.size < (LEAF_MIN_FILL if node.leaf else INTERNAL_MIN_FILL):
                problems.append(f"{who}: page {pid}: under minimum fill ({node.size} bytes)")
            if not node.leaf and depth == 0 and not node.keys:
                problems.append(f"{who}: internal root {pid} has one child")
            if node.leaf:
                leaf_depths.add(depth)
                leaves.append((pid, node))
                keys += len(node.keys)
                for v in node.vals:
                    if type(v) is Overflow:
                        try:
                            for opid in overflow_pages(pool, v):
                                claim(opid, f"{who} overflow")
                        except DragonDBError as exc:
                            problems.append(f"{who}: overflow chain at {v.page}: {exc}")
            else:
                bounds = [lo, *node.keys, hi]
                # push right to left so leaves are visited left to right
                for i in range(len(node.children) - 1, -1, -1):
                    stack.append((node.children[i], bounds[i], bounds[i + 1], depth + 1))
        if len(leaf_depths) > 1:
            problems.append(f"{who}: leaves at depths {sorted(leaf_depths)}")
        if keys != entry.count:
            problems.append(f"{who}: {keys} keys but count says {entry.count}")
        for i, (pid, node) in enumerate(leaves):
            want_next = leaves[i + 1][0] if i + 1 < len(leaves) else 0
            want_prev = leaves[i - 1][0] if i else 0
            if node.next != want_next or node.prev != want_prev:
                problems.append(f"{who}: leaf {pid} links ({node.prev}, {node.next}) != ({want_prev}, {want_next})")
        report.keys += keys
    report.pages_reachable = len(owner) - 1
    for pid in pager.free_pages():
        claim(pid, "free list")
    report.pages_free = pager.free_count
    leaked = [p for p in range(pager.page_count) if p not in owner]
    report.pages_leaked = len(leaked)
    if leaked:
        problems.append(f"{len(leaked)} pages leaked: {leaked[:10]}")
    for pid in pool.corrupt_clean_nodes():
        problems.append(f"page {pid}: cached bytes fail their checksum")
    problems += pool.check_invariants(expect_unpinned=True)
    problems += pager.check_invariants()
    report.ok = not problems
    return report

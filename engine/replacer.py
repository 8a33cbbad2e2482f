"""Replacement policy for the buffer pool, behind a three-method interface.

`LRUReplacer` keeps every frame that holds a page in least-recently-used
order; `victim(is_pinned)` returns the oldest frame for which `is_pinned`
is false. Pure and single-threaded: the pool calls it under its mutex.

Hits on the pool's lock-free read path cannot reorder the list (another
thread may be walking it), so they set a reference bit instead; `victim`
gives a referenced frame a second chance (moves it to the young end and
clears the bit), which is LRU with second chance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LRUReplacer"]


class LRUReplacer:
    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: OrderedDict[int, None] = OrderedDict()

    def touch(self, frame_id: int) -> None:
        """Record a use of `frame_id` (adding it if new)."""
        order = self._order
        if frame_id in order:
            order.move_to_end(frame_id)
        else:
            order[frame_id] = None

    def demote(self, frame_id: int) -> None:
        """Make `frame_id` the next victim (a page used once, likely not again)."""
        if frame_id in self._order:
            self._order.move_to_end(frame_id, last=False)

    def remove(self, frame_id: int) -> None:
        self._order.pop(frame_id, None)

    def victim(self, is_pinned: Callable[[int], bool],
               referenced: Callable[[int], bool] | None = None) -> int | None:
        """The least recently used frame that is not pinned, or None.
        `referenced(i)` (which clears the bit) spares a frame once."""
        spared = []
        found = None
        for frame_id in self._order:
            if is_pinned(frame_id):
                continue
            if referenced is not None and referenced(frame_id):
                spared.append(frame_id)
                continue
            found = frame_id
            break
        for frame_id in spared:
            self._order.move_to_end(frame_id)
        if found is None and spared:
            found = spared[0]
        return found

    def __len__(self) -> int:
        return len(self._order)

    def check_invariants(self, frame_ids: set[int]) -> list[str]:
        """Tracked frames are exactly `frame_ids` (those holding a page)."""
        tracked = set(self._order)
        if tracked != frame_ids:
            return [f"replacer tracks {sorted(tracked ^ frame_ids)[:8]} wrongly"]
        return []

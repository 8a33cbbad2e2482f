"""Replacement policy for the buffer pool, behind a three-method interface.

`LRUReplacer` keeps every frame that holds a page in least-recently-used
order; `victim(is_pinned)` returns the oldest frame for which `is_pinned`
is false. Pure and single-threaded: the pool calls it under its mutex.
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

    def remove(self, frame_id: int) -> None:
        self._order.pop(frame_id, None)

    def victim(self, is_pinned: Callable[[int], bool]) -> int | None:
        """The least recently used frame that is not pinned, or None."""
        for frame_id in self._order:
            if not is_pinned(frame_id):
                return frame_id
        return None

    def __len__(self) -> int:
        return len(self._order)

    def check_invariants(self, frame_ids: set[int]) -> list[str]:
        """Tracked frames are exactly `frame_ids` (those holding a page)."""
        tracked = set(self._order)
        if tracked != frame_ids:
            return [f"replacer tracks {sorted(tracked ^ frame_ids)[:8]} wrongly"]
        return []

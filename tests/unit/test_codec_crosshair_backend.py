"""A codec property run under the hypothesis-crosshair backend.

With `backend="crosshair"`, hypothesis hands the test symbolic values and
CrossHair explores paths through it with an SMT solver instead of drawing
random examples. The split planners are pure integer code, which the solver
reasons about whole, so each "example" covers a family of size lists,
including the exact ties and boundaries random sampling rarely hits.
(Page-level properties stay in test_codec.py: every page write realizes the
symbolic bytes, so the backend gains nothing there.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.codec import (
    INTERNAL_MIN_FILL,
    LEAF_MIN_FILL,
    MAX_INTERNAL_CELL,
    MAX_LEAF_CELL,
    USABLE,
    internal_split_point,
    split_point,
)

SYMBOLIC = settings(backend="crosshair", max_examples=40, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@SYMBOLIC
@given(st.lists(st.integers(1, MAX_LEAF_CELL), min_size=2, max_size=6))
def test_split_point_balances_and_bounds_under_crosshair(sizes):
    i = split_point(sizes)
    total = sum(sizes)
    assert 1 <= i <= len(sizes) - 1
    gap = abs(2 * sum(sizes[:i]) - total)
    # optimal: no other cut is more even
    assert all(gap <= abs(2 * sum(sizes[:j]) - total) for j in range(1, len(sizes)))
    assert gap <= max(sizes)
    if USABLE < total <= 2 * USABLE - max(sizes):
        assert LEAF_MIN_FILL <= sum(sizes[:i]) <= USABLE
        assert LEAF_MIN_FILL <= sum(sizes[i:]) <= USABLE


@SYMBOLIC
@given(st.lists(st.integers(1, MAX_INTERNAL_CELL), min_size=3, max_size=6))
def test_internal_split_point_balances_and_bounds_under_crosshair(sizes):
    m = internal_split_point(sizes)
    assert 1 <= m <= len(sizes) - 2
    left, right = sum(sizes[:m]), sum(sizes[m + 1:])
    assert abs(left - right) <= max(sizes)
    if USABLE < sum(sizes) <= 2 * USABLE - max(sizes):
        assert INTERNAL_MIN_FILL <= left <= USABLE and INTERNAL_MIN_FILL <= right <= USABLE

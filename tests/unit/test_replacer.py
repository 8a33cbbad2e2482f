"""`engine.replacer.LRUReplacer`: least-recently-used victim among the
unpinned frames, checked by example and against a list model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replacer import LRUReplacer


def test_victim_is_the_least_recently_touched_unpinned_frame():
    r = LRUReplacer()
    for fid in (3, 1, 2):
        r.touch(fid)
    assert len(r) == 3
    assert r.victim(lambda f: False) == 3
    r.touch(3)  # now the most recent
    assert r.victim(lambda f: False) == 1
    assert r.victim(lambda f: f == 1) == 2, "pinned frames are skipped"
    assert r.victim(lambda f: True) is None, "no victim when every frame is pinned"
    r.remove(1)
    r.remove(1)  # removing an untracked frame is harmless
    assert len(r) == 2
    assert r.victim(lambda f: False) == 2
    assert r.victim(lambda f: False) == 2, "victim() chooses, it does not remove"


def test_empty_replacer_has_no_victim():
    r = LRUReplacer()
    assert r.victim(lambda f: False) is None
    assert len(r) == 0
    assert r.check_invariants(set()) == []


def test_check_invariants_compares_tracked_frames():
    r = LRUReplacer()
    r.touch(1)
    r.touch(2)
    assert r.check_invariants({1, 2}) == []
    problems = r.check_invariants({1, 5})
    assert problems == ["replacer tracks [2, 5] wrongly"]  # both directions of the difference
    for fid in range(3, 12):
        r.touch(fid)
    # the first eight of the 11 differences are named
    assert r.check_invariants({20}) == ["replacer tracks [1, 2, 3, 4, 5, 6, 7, 8] wrongly"]


def _bits(*frame_ids: int):
    """Reference bits and the `referenced` callback the pool passes: it
    reports a frame's bit and clears it."""
    bits = set(frame_ids)

    def referenced(fid: int) -> bool:
        if fid in bits:
            bits.discard(fid)
            return True
        return False

    return bits, referenced


def test_a_referenced_frame_is_spared_once_and_moved_to_the_young_end():
    r = LRUReplacer()
    for fid in (1, 2, 3, 4):
        r.touch(fid)
    bits, referenced = _bits(1, 3)
    assert r.victim(lambda f: False, referenced) == 2  # 1 spared, 2 chosen, 3 not looked at
    assert bits == {3}, "only the frames looked at lose their bit"
    # order now 2, 3, 4, 1: the spared frame went to the young end
    assert r.victim(lambda f: False) == 2
    r.remove(2)
    assert r.victim(lambda f: False, referenced) == 4  # 3 spared
    assert bits == set()
    r.remove(4)
    assert r.victim(lambda f: False) == 1, "order now 1, 3"
    assert r.check_invariants({1, 3}) == []


def test_when_every_frame_is_referenced_the_oldest_is_chosen():
    r = LRUReplacer()
    for fid in (5, 6, 7):
        r.touch(fid)
    bits, referenced = _bits(5, 6, 7)
    assert r.victim(lambda f: False, referenced) == 5
    assert bits == set()
    assert r.victim(lambda f: False, referenced) == 5, "the order is kept: 5, 6, 7"


def test_a_pinned_frame_keeps_its_reference_bit():
    r = LRUReplacer()
    for fid in (1, 2):
        r.touch(fid)
    bits, referenced = _bits(1)
    assert r.victim(lambda f: f == 1, referenced) == 2
    assert bits == {1}, "a pinned frame is skipped before its bit is read"
    assert r.victim(lambda f: f in (1, 2), referenced) is None


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), st.integers(0, 7)),
        st.tuples(st.just("remove"), st.integers(0, 7)),
        st.tuples(st.just("demote"), st.integers(0, 7)),
        st.tuples(st.just("victim"), st.frozensets(st.integers(0, 7))),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(_ops)
def test_lru_agrees_with_a_list_model(ops):
    r = LRUReplacer()
    model: list[int] = []  # least recent first
    for op, arg in ops:
        if op == "touch":
            if arg in model:
                model.remove(arg)
            model.append(arg)
            r.touch(arg)
        elif op == "remove":
            if arg in model:
                model.remove(arg)
            r.remove(arg)
        elif op == "demote":
            if arg in model:
                model.remove(arg)
                model.insert(0, arg)
            r.demote(arg)
        else:
            pinned = arg
            expect = next((f for f in model if f not in pinned), None)
            assert r.victim(pinned.__contains__) == expect
        assert len(r) == len(model)
        assert r.check_invariants(set(model)) == []

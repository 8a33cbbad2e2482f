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
    assert len(problems) == 1 and "replacer" in problems[0]


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

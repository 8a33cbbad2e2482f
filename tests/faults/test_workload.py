"""`faults.workload`: the one operation generator and the mixes its callers give it."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from dataclasses import replace

import pytest

from faults.history import SMALL, small_ops
from faults.kill import KILL, TREE, trial_ops
from faults.workload import CAMPAIGN, Mix, apply_op, contents, describe, diff, generate, make_ops
from models import ModelDatabase


def run(ops: list[tuple]) -> ModelDatabase:
    model = ModelDatabase()
    for op in ops:
        if op[0] not in ("reopen", "crash"):
            apply_op(model, op)
    return model


def test_the_campaigns_workloads_are_those_its_replay_tokens_name() -> None:
    """The tokens of tests/faults/test_campaign.py name trials by seed: a change
    to the campaign's mix would turn them into other workloads silently. The
    digest is that of the workloads before the generator was shared."""
    h = hashlib.sha256()
    for seed, n, sync, crash, key_bytes in [(1, 110, "normal", True, (700, 1000)), (2, 90, "full", False, (200, 900)),
                                            (3, 120, "off", True, (200, 900))]:
        h.update(repr(make_ops(random.Random(f"sweep:{seed}"), n, sync=sync, crash=crash, key_bytes=key_bytes)).encode())
    assert h.hexdigest()[:16] == "e2b22bd371194fbe"


@pytest.mark.parametrize("mix", [CAMPAIGN, SMALL, KILL], ids=["campaign", "small", "kill"])
def test_the_same_seed_gives_the_same_operations(mix: Mix) -> None:
    a = list(generate(random.Random(5), mix, 200))
    assert a == list(generate(random.Random(5), mix, 200))
    assert a != list(generate(random.Random(6), mix, 200))


def test_trees_first_then_churn_at_a_third_and_two_thirds() -> None:
    ops = list(generate(random.Random(1), CAMPAIGN, 90))
    assert ops[:2] == [("tree", "a"), ("tree", "b")]
    assert [op for op in ops if op[0] in ("tree", "drop")] == [("tree", "a"), ("tree", "b"), ("tree", "c"), ("drop", "c")]
    created, dropped = ops.index(("tree", "c")), ops.index(("drop", "c"))
    assert all(op[1] != "c" for op in ops[:created] + ops[dropped:] if op[0] in ("put", "delete", "get", "scan"))
    assert "c" not in run(ops).trees()


def test_deletes_and_gets_mostly_find_live_keys() -> None:
    """The generator runs its writes on a model, so a delete or a get picks a
    key the tree holds (90% of deletes when it holds any)."""
    model = ModelDatabase()
    hits = Counter()
    for op in generate(random.Random(3), CAMPAIGN, 600):
        if op[0] == "delete":
            hits["delete", op[2] in model.tree(op[1])] += 1
        elif op[0] == "get":
            hits["get", op[2] in model.tree(op[1])] += 1
        if op[0] not in ("reopen", "crash", "get", "scan"):
            apply_op(model, op)
    assert hits["delete", True] > 4 * hits["delete", False]
    assert hits["get", True] > 4 * hits["get", False]


def test_grow_then_drain() -> None:
    """Deletes take `drain`'s weight from its fraction of the run on: the trees
    grow (splits), then shrink (merges)."""
    ops = list(generate(random.Random(2), CAMPAIGN, 400))
    early = Counter(op[0] for op in ops[: int(0.6 * len(ops))])
    late = Counter(op[0] for op in ops[int(0.6 * len(ops)) + 2:])
    assert late["delete"] > 3 * late["put"] and early["put"] > 3 * early["delete"]


def test_a_skipped_kind_gives_its_share_to_the_next() -> None:
    mix = Mix(weights=(("commit", 0.5), ("checkpoint", 0.5)))
    ops = list(generate(random.Random(4), replace(mix, skip=frozenset({"commit"})), 100))
    kinds = Counter(op[0] for op in ops)
    assert kinds["commit"] == 0 and kinds["checkpoint"] >= 95


def test_make_ops_commits_only_where_a_commit_means_something() -> None:
    """sync="full" makes every write durable: the campaign's mix skips commit() there."""
    full = Counter(op[0] for op in make_ops(random.Random(1), 500, sync="full"))
    normal = Counter(op[0] for op in make_ops(random.Random(1), 500, sync="normal"))
    assert full["commit"] == 0 and normal["commit"] > 5


def test_kills_only_when_asked() -> None:
    assert not any(op == ("crash",) for op in make_ops(random.Random(7), 400))
    kinds = Counter(op[0] for op in make_ops(random.Random(7), 400, crash=True))
    assert kinds["crash"] > 0 and kinds["reopen"] > 0


def test_without_a_length_the_operations_never_end() -> None:
    ops = list(itertools.islice(trial_ops(1, 0), 5000))
    assert len(ops) == 5000 and ops[0] == ("tree", TREE)
    assert {op[0] for op in ops} == {"tree", "put", "delete", "batch", "checkpoint"}
    assert {op[1] for op in ops if op[0] in ("put", "delete")} == {TREE}


def test_small_ops_reopen_is_optional() -> None:
    assert any(op == ("reopen",) for op in small_ops(random.Random(1), 300))
    assert not any(op == ("reopen",) for op in small_ops(random.Random(1), 300, reopen=False))


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown operation kinds"):
        Mix(weights=(("truncate", 0.1),))


def test_apply_op_runs_every_kind_on_the_model() -> None:
    model = ModelDatabase()
    assert apply_op(model, ("tree", "t")) is None
    apply_op(model, ("put", "t", b"a", b"1"))
    apply_op(model, ("batch", [("put", "t", b"b", b"2"), ("delete", "t", b"a")]))
    assert apply_op(model, ("get", "t", b"b")) == b"2"
    assert apply_op(model, ("scan", "t", None, None, True)) == [(b"b", b"2")]
    assert apply_op(model, ("delete", "t", b"zz")) is False
    for kind in ("checkpoint", "commit", "compact"):
        apply_op(model, (kind,))
    assert contents(model) == {"t": {b"b": b"2"}}
    apply_op(model, ("drop", "t"))
    assert contents(model) == {}
    with pytest.raises(AssertionError, match="not a database operation"):
        apply_op(model, ("reopen",))


def test_describe_and_diff_say_what_differs() -> None:
    assert describe(("put", "t", b"k" * 40, b"v")) == "put 't' " + repr(b"k" * 12) + "..(40B) b'v'"
    assert describe(("batch", [("put", "t", b"k", b"v")] * 3)) == "batch of 3"
    assert diff({"t": {}}, {"t": {}}) == "equal"
    assert "trees ['t'] != model ['u']" in diff({"t": {}}, {"u": {}})
    assert "missing [b'k']" in diff({"t": {}}, {"t": {b"k": b"v"}})

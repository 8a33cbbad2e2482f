"""Real SIGKILLs of a writing process (`faults.kill.run_kills`).

A few trials run in `make test`; the slow test runs 200 and
`make campaign-nightly` runs 1,000 through the campaign.
"""

from __future__ import annotations

import itertools

import pytest

import engine
from faults.kill import TREE, run_kills, trial_ops
from faults.workload import apply_op, contents
from models import ModelDatabase


def test_trial_model_matches_the_engine(tmp_path) -> None:
    """The parent's replayed model of a trial is what the engine does."""
    db = engine.open(str(tmp_path / "m.db"), sync="off", pool_pages=16)
    model = ModelDatabase()
    kinds = set()
    for op in itertools.islice(trial_ops(5, 3), 400):
        assert apply_op(db, op) == apply_op(model, op)
        kinds.add(op[0])
    assert contents(db) == model.snapshot()
    assert kinds == {"tree", "put", "delete", "batch", "checkpoint"}
    assert any(len(v) > 4096 for v in model.tree(TREE).values()), "some values use overflow pages"
    db.close()


def test_later_trials_overwrite_and_delete_earlier_ones_keys() -> None:
    """Every trial draws from the same keys, so a generation's trials build on each other."""
    def written(trial: int) -> set[bytes]:
        return {op[2] for op in itertools.islice(trial_ops(9, trial), 300) if op[0] in ("put", "delete")}
    assert len(written(2) & written(3)) >= 20


def test_trial_ops_are_deterministic() -> None:
    a = list(itertools.islice(trial_ops(9, 2), 300))
    b = list(itertools.islice(trial_ops(9, 2), 300))
    c = list(itertools.islice(trial_ops(9, 3), 300))
    assert a == b and a != c


def test_sigkill_trials_lose_no_acknowledged_write(tmp_path) -> None:
    progress = []
    result = run_kills(6, seed=20240601, workdir=tmp_path, progress=lambda done, c: progress.append(done))
    assert progress == [1, 2, 3, 4, 5, 6]
    assert result["trials"] == 6
    assert result["failures"] == [] and result["lost"] == 0, result
    assert result["acknowledged"] > 0, "the children acknowledged writes before being killed"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_200_trials(tmp_path) -> None:
    result = run_kills(200, seed=7, workdir=tmp_path)
    print(f"\n{result}")
    assert result["failures"] == [] and result["lost"] == 0, result["failures"][:3]
    assert result["acknowledged"] >= 1000

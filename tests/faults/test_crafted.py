"""The crafted-file fuzzer (`faults.crafted`): pages and log records whose
checksums hold over contents no engine writes give an engine error or
consistent results, never a hang, a foreign exception or an impossible key.

A failure prints the seed; `run_trial(seed, directory)` replays it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.crafted import run_trial


@pytest.mark.timeout(120)
def test_crafted_files_give_engine_errors_or_consistent_results(tmp_path) -> None:
    @settings(max_examples=300, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, 2**32 - 1))
    def trial(seed: int) -> None:
        ok, detail = run_trial(seed, tmp_path)
        assert ok, detail

    trial()


@pytest.mark.timeout(60)
def test_a_trial_is_replayed_by_its_seed(tmp_path) -> None:
    """The same seed crafts the same file and gets the same outcome."""
    outcomes = [run_trial(seed, tmp_path) for seed in (3, 4, 5)]
    assert outcomes == [run_trial(seed, tmp_path) for seed in (3, 4, 5)]
    assert all(ok for ok, _ in outcomes) and len({d for _, d in outcomes}) == 3

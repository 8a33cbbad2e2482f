"""The load generator `bench.load.bench_load`, run briefly."""

from __future__ import annotations

import pytest

from bench.load import bench_load


@pytest.mark.parametrize("op", ["get", "insert", "ping"])
def test_bench_load_measures(start_server, op):
    st = start_server()
    result = bench_load(*st.address, op, clients=4, seconds=0.3, keys=200)
    assert result.op == op and result.clients == 4
    assert result.requests > 0 and result.errors == 0
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.requests_per_s == pytest.approx(result.requests / result.seconds)
    tree = st.db.tree("default")
    if op == "get":
        assert len(tree) == 200
    elif op == "insert":
        assert len(tree) == result.requests  # every acknowledged insert is there
    else:
        assert len(tree) == 0


def test_bench_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match="op must be"):
        bench_load("127.0.0.1", 1, "scan", 1, 1.0)
    with pytest.raises(ValueError, match="clients"):
        bench_load("127.0.0.1", 1, "get", 0, 1.0)

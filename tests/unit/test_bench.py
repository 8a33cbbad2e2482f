"""Smoke tests of the benchmark harness (bench/): a tiny run of the engine and
a dict through the real subprocess machinery, the JSON it writes, the report,
the target arithmetic, and `bench.engine_only`."""

from __future__ import annotations

import json
import os

import pytest

import bench
from bench import report
from bench.runner import Config, run

N = 200
MAIN_PHASES = ["insert", "reopen", "get", "scan", "get_threads", "overwrite", "delete"]
ENGINE_ONLY_PHASES = ["get_pool64", "get_buffered", "commit", "commit_threads"]
BIG_PHASES = ["big_put", "big_get"]


def _check_record(rec: dict, where: str) -> None:
    assert set(rec) >= {"ops", "seconds", "ops_per_s"}, where
    assert rec["ops"] > 0 and rec["seconds"] > 0, where
    assert rec["ops_per_s"] == pytest.approx(rec["ops"] / rec["seconds"]), where
    assert not rec.get("partial"), f"{where}: stopped at the time budget"
    assert not rec.get("missing"), f"{where}: gets came back missing"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    work = tmp / "work"
    out = tmp / "out"
    cfg = Config(n=N, rounds=2, stores=["engine", "dict"], commits=16, big_count=2,
                 chart=False, out_dir=str(out), base_dir=str(work))
    results = run(cfg)
    return results, out, work


def test_json_written_matches_returned_results(smoke):
    results, out, _work = smoke
    with open(out / "latest.json") as f:
        on_disk = json.load(f)
    assert on_disk["best"] == results["best"]
    assert on_disk["meta"]["workload"]["n"] == N
    assert set(on_disk["meta"]["machine"]) >= {"cpu", "cores", "python", "filesystem"}
    assert (out / "latest.txt").read_text().startswith("DragonDB benchmark")
    assert not (out / "latest.png").exists()  # chart=False


def test_every_store_every_round_every_phase(smoke):
    results, _out, _work = smoke
    rounds = results["rounds"]
    assert [r["order"] for r in rounds] == [["engine", "dict"], ["dict", "engine"]]
    for i, rnd in enumerate(rounds):
        assert set(rnd["results"]) == {"engine", "dict"}
        for store, res in rnd["results"].items():
            assert "error" not in res and "error_big" not in res, res.get("traceback")
            for phase in MAIN_PHASES + BIG_PHASES:
                _check_record(res["phases"][phase], f"round {i} {store} {phase}")
            assert res["phases"]["scan"]["items"] == N
            assert res["phases"]["insert"]["ops"] == N
            assert res["phases"]["delete"]["ops"] == N // 2
            assert res["peak_rss_kib"] > 0
        eng = rnd["results"]["engine"]
        for phase in ENGINE_ONLY_PHASES:
            _check_record(eng["phases"][phase], f"round {i} engine {phase}")
        assert eng["disk_final"]["allocated"] > 0
        assert {"pool_hits", "pool_misses"} <= set(eng["stats_after_get"])
        assert "commit" in rnd["results"]["dict"]["skipped"]  # a dict is not durable
        floors = rnd["floors"]["phases"]
        for phase in ("pread_cached", "pwrite_fsync"):
            _check_record(floors[phase], f"round {i} floor {phase}")


def test_summary_best_ratios_targets(smoke):
    results, _out, _work = smoke
    best = results["best"]
    for store in ("engine", "dict"):
        for phase in MAIN_PHASES:
            rates = [r["results"][store]["phases"][phase]["ops_per_s"] for r in results["rounds"]]
            assert best[store][phase] == max(rates)
    assert results["ratios"]["dict"]["get"] == pytest.approx(
        best["engine"]["get"] / best["dict"]["get"])
    assert "engine" not in results["ratios"]
    by_name = {t["target"]: t for t in results["targets"]}
    assert by_name["insert >= 20x bplustree"]["met"] is None  # bplustree did not run
    assert by_name["group commit (threads) >= 3x single-thread commits"]["met"] is not None
    text = report.format_report(results)
    assert "engine / peer" in text and "dict" in text


def test_temporary_directories_removed(smoke):
    _results, _out, work = smoke
    assert os.listdir(work) == []


def _fake(best: dict) -> dict:
    stores = {s: {"available": True, "note": ""} for s in best}
    rounds = [{"order": list(stores), "results": {
        s: {"phases": {p: {"ops": 1, "seconds": 1 / r, "ops_per_s": r} for p, r in ph.items()}}
        for s, ph in best.items()}}]
    return {"meta": {"workload": {"n": 1}}, "stores": stores, "rounds": rounds}


def test_targets_arithmetic():
    res = report.summarize(_fake({
        "engine": {"insert": 40_000, "get": 100_000, "commit": 3000, "commit_threads": 9500},
        "bplustree": {"insert": 1_000, "get": 11_000},
        "sqlite3": {"get": 90_000, "commit": 4000},
    }))
    t = {x["target"]: x for x in res["targets"]}
    assert t["insert >= 20x bplustree"]["value"] == pytest.approx(40.0)
    assert t["insert >= 20x bplustree"]["met"] is True
    assert t["get >= 10x bplustree"]["met"] is False  # 9.09x
    assert t["get >= sqlite3"]["met"] is True
    assert t["durable single puts >= sqlite3"]["met"] is False
    assert t["group commit (threads) >= 3x single-thread commits"]["met"] is True
    assert t["scan >= sqlite3"]["met"] is None


def test_engine_only(tmp_path):
    result = bench.engine_only(tmp_path, N, commits=8, floors=False)
    assert "error" not in result, result.get("traceback")
    for phase in MAIN_PHASES + ENGINE_ONLY_PHASES:
        _check_record(result["phases"][phase], phase)
    assert result["machine"]["cores"] >= 1
    assert os.listdir(tmp_path) == []  # its temporary directory is gone
    assert "get, shuffled" in bench.format_engine_only(result)


def test_engine_only_never_touches_an_existing_file(tmp_path):
    victim = tmp_path / "mine.db"
    victim.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        bench.engine_only(victim, N)
    assert victim.read_bytes() == b"precious"

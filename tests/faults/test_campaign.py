"""`dragondb campaign`: its report, shards, merge, replay, and what it covers.

The campaign's findings are the engine's business; these tests check the
campaign itself: the JSON report has the keys tools read, the exit status
says whether anything failed, every failure names a command that replays it
(and the replay fails the same way), shards split one campaign and `merge`
adds them up, and the default mix fails every I/O call site it sees.
"""

from __future__ import annotations

import json
import random
import sys
import types

import pytest

import faults
from engine import cli
from faults import campaign as C
from faults import trials_faults, trials_interleave, trials_sweep
from faults.report import Tally, ok, report, table

REPORT_KEYS = {  # issue 5, point 6: at least these
    "operations", "faults_injected", "fault_sites", "interleavings", "crashes_simulated",
    "recoveries_verified", "divergences", "leaked_pages", "duplicate_frames", "seconds", "seed",
    "shard", "failures",
}
SEED = 20240611


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    code = C.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the report ----------------------------------------------------------------------

def test_report_shape_and_exit_status(tmp_path, capsys) -> None:
    path = tmp_path / "c.json"
    code, out, err = run_main(["--operations", "600", "--seed", str(SEED), "--workers", "1",
                               "--modes", "drop,torn", "--json", str(path)], capsys)
    rep = json.loads(path.read_text())
    assert REPORT_KEYS <= set(rep)
    assert rep["seed"] == SEED and rep["shard"] == "1/1"
    assert rep["operations"] >= 600
    assert isinstance(rep["faults_injected"], dict) and sum(rep["faults_injected"].values()) > 0
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in rep["fault_sites"])
    for key in ("interleavings", "crashes_simulated", "recoveries_verified", "divergences",
                "leaked_pages", "duplicate_frames"):
        assert isinstance(rep[key], int) and rep[key] >= 0, key
    assert isinstance(rep["seconds"], float)
    for f in rep["failures"]:
        assert {"seed", "error", "replay"} <= set(f)
        assert f["replay"].startswith("dragondb campaign --replay ")
    assert code == (0 if ok(rep) else 1)
    # the table on stdout, the progress line on stderr
    for label in ("operations", "faults injected", "distinct fault sites", "interleavings explored",
                  "crashes simulated", "recoveries verified", "divergences from model", "leaked pages",
                  "duplicate frames"):
        assert label in out
    assert "%" in err and "seed" in err
    if rep["failures"]:
        assert "replay: dragondb campaign --replay" in out and "FAILED" in out


def test_counters_add_up_per_trial_kind(tmp_path, capsys) -> None:
    """Each kind of trial feeds its own counters."""
    seen = {}
    for kind in ("sweep", "faults", "crash", "interleave"):
        token = next(C.tokens(SEED, (1, 1), {kind: 1}))
        seen[kind] = C.run_trial(token, ("drop",))
        assert seen[kind]["trials"] == {kind: 1}
        assert seen[kind]["operations"] > 0
    assert seen["sweep"]["faults_injected"] and seen["sweep"]["fault_sites"]
    assert seen["crash"]["crashes_simulated"] >= 30 and seen["crash"]["recoveries_verified"] + len(
        seen["crash"]["failures"]) > 0
    assert seen["interleave"]["interleavings"] == trials_interleave.INTERLEAVINGS_PER_TRIAL
    assert seen["interleave"]["interleavings_distinct"] == trials_interleave.INTERLEAVINGS_PER_TRIAL


@pytest.mark.parametrize("kind", ["sweep", "faults", "crash", "interleave"])
def test_a_trial_replays_identically(kind: str) -> None:
    token = next(C.tokens(SEED + 1, (1, 1), {kind: 1}))
    first, again = C.run_trial(token), C.run_trial(token)
    for rep in (first, again):
        rep.pop("interleaving_traces")  # equal too, but long
    assert first == again


def test_every_failure_replays(tmp_path, capsys) -> None:
    """A short default-mix campaign: whatever fails, its replay command fails the same way."""
    path = tmp_path / "c.json"
    code, out, _ = run_main(["--operations", "1500", "--seed", str(SEED + 2), "--workers", "2",
                             "--json", str(path), "--quiet"], capsys)
    rep = json.loads(path.read_text())
    assert code == (0 if ok(rep) else 1)
    for f in rep["failures"][:3]:
        token = f["replay"].split("--replay ")[1]
        again = C.run_trial(token)
        assert again["failures"], f"{token} passed on replay"
        assert again["failures"][0]["error"] == f["error"]


# Found by the campaign and fixed since: their trials must stay clean.
FIXED = [
    "faults:1012604414711",  # close() raised BufferError after a failed write
    "faults:252019086599341",  # rule 7's gap held a failed append's bytes: later commits dropped
    "sweep:1:56",  # recovery trusted a short read of the log
    "crash:89352038543968",  # rule 7's gap, across a crash during recovery
    "faults:151464371724644",  # an automatic checkpoint's CorruptionError failed a committed batch
    "faults:142560299549463",  # a flipped spilled image was written home unverified
    "faults:151198007779655",  # a flip reading the log's last record at open dropped it
    "sweep:1:220",  # a failed log truncate left stale spilled-page offsets
    "crash:197543946608972",  # a garbled header from a reset cut short refused to open
    "faults:140459179332645",  # a put whose failed append landed came back after a crash
    "faults:130101724974785",  # a user's file raised a plain OSError while the log's tail was cut: untyped
    "faults:26532650317799",  # the last armed open tore the creation to zeros: refused, never tried again
]


@pytest.mark.parametrize("token", FIXED)
def test_fixed_campaign_findings_stay_fixed(token: str) -> None:
    rep = C.run_trial(token)
    assert not rep["failures"], rep["failures"][0]["error"]


# -- coverage --------------------------------------------------------------------------------

def test_sweep_fails_every_io_call_site_it_sees() -> None:
    """The first sweep trials fail the first call of every (kind, call site) of
    the sweep workloads (one per sync mode): SQLite's loop, sites first."""
    seen: set[tuple[str, str]] = set()
    for rnd in range(3):
        seen |= set(trials_sweep.dry_run(SEED, rnd).first)
    assert len(seen) >= 20, sorted(seen)
    items = trials_sweep.sweep_items(SEED)
    assert all(item[3] == "error" and not item[4] for item in items[: len(seen)])
    tally = Tally()
    for j in range(len(seen)):
        tally.merge(Tally.from_dict(C.run_trial(f"sweep:{SEED}:{j}")))
    assert seen <= tally.sites, sorted(seen - tally.sites)
    assert {k for k, _ in tally.sites} == {"open", "read", "write", "sync", "extend", "truncate"}


def test_fault_sites_switch_on_per_seed() -> None:
    """FoundationDB style: each seed switches on its own subset of the 18 sites."""
    subsets = set()
    for seed in range(12):
        rng = random.Random(seed)
        subsets.add(tuple(t for t in trials_faults.TEMPLATES if rng.random() < 0.25))
    assert len(subsets) >= 10
    assert len(trials_faults.TEMPLATES) == 18


# -- shards, merge, kills, the command line ----------------------------------------------------

def test_shards_split_one_campaign() -> None:
    def take(gen, n):
        return [next(gen) for _ in range(n)]

    whole = take(C.tokens(SEED, (1, 1)), 40)
    parts = [take(C.tokens(SEED, (k, 4)), 10) for k in (1, 2, 3, 4)]
    assert [parts[i % 4][i // 4] for i in range(40)] == whole
    assert len(set(whole)) == 40


def test_merge_adds_up_shards(tmp_path, capsys) -> None:
    paths = []
    for k in (1, 2):
        p = tmp_path / f"s{k}.json"
        C.main(["--operations", "500", "--seed", str(SEED), "--shard", f"{k}/2", "--workers", "1",
                "--modes", "drop", "--json", str(p), "--quiet"])
        paths.append(p)
    capsys.readouterr()
    a, b = (json.loads(p.read_text()) for p in paths)
    assert a["shard"] == "1/2" and b["shard"] == "2/2"
    merged_path = tmp_path / "merged.json"
    code, out, _ = run_main(["merge", *map(str, paths), "--json", str(merged_path)], capsys)
    m = json.loads(merged_path.read_text())
    assert REPORT_KEYS <= set(m)
    for key in ("operations", "interleavings", "crashes_simulated", "recoveries_verified", "divergences"):
        assert m[key] == a[key] + b[key], key
    for kind in set(a["faults_injected"]) | set(b["faults_injected"]):
        assert m["faults_injected"][kind] == a["faults_injected"].get(kind, 0) + b["faults_injected"].get(kind, 0)
    assert {tuple(x) for x in m["fault_sites"]} == {tuple(x) for x in a["fault_sites"] + b["fault_sites"]}
    assert len(m["failures"]) == len(a["failures"]) + len(b["failures"])
    assert m["shard"] == "1/2+2/2" and m["seed"] == SEED
    assert code == (0 if ok(m) else 1)
    # the two shards together ran the same trials as the unsharded campaign
    whole = tmp_path / "whole.json"
    C.main(["--operations", "500", "--seed", str(SEED), "--workers", "1", "--modes", "drop",
            "--json", str(whole), "--quiet"])
    w = json.loads(whole.read_text())
    assert w["trials"] == m["trials"] and w["operations"] == m["operations"]


def test_kills_without_the_kill_module_fail_clearly(monkeypatch, capsys) -> None:
    monkeypatch.delattr(faults, "kill", raising=False)
    monkeypatch.setitem(sys.modules, "faults.kill", None)  # as if faults/kill.py were missing
    code, out, err = run_main(["--operations", "10", "--kills", "5", "--quiet"], capsys)
    assert code == 2
    assert "--kills needs faults.kill.run_kills" in err
    assert out == ""  # nothing ran, nothing pretended


def test_kills_share_per_shard_and_failures_join_the_report(monkeypatch, tmp_path, capsys) -> None:
    calls = []

    def run_kills(n, seed):
        calls.append((n, seed))
        return {"trials": n, "acknowledged": 10 * n, "lost": 1, "seconds": 0.5,
                "failures": [{"trial": 3, "seed": seed, "error": "key k lost", "replay": "python -m faults.kill run"}]}

    fake = types.ModuleType("faults.kill")
    fake.run_kills = run_kills
    monkeypatch.setattr(faults, "kill", fake, raising=False)
    monkeypatch.setitem(sys.modules, "faults.kill", fake)
    path = tmp_path / "k.json"
    code, out, _ = run_main(["--operations", "1", "--kinds", "interleave=1", "--kills", "10", "--shard", "2/4",
                             "--seed", "5", "--json", str(path), "--workers", "1", "--quiet"], capsys)
    rep = json.loads(path.read_text())
    assert calls == [(3, 5 * 4 + 2)]  # 10 trials over 4 shards: 3, 3, 2, 2
    assert rep["kills"] == {"trials": 3, "acknowledged": 30, "lost": 1, "seconds": 0.5}
    assert any(f["kind"] == "kill" and "key k lost" in f["error"] for f in rep["failures"])
    assert code == 1


def test_dragondb_campaign_dispatches(tmp_path, capsys) -> None:
    path = tmp_path / "cli.json"
    code = cli.main(["campaign", "--operations", "50", "--kinds", "interleave=1", "--workers", "1",
                     "--seed", "3", "--json", str(path), "--quiet"])
    rep = json.loads(path.read_text())
    assert rep["interleavings"] > 0 and code == (0 if ok(rep) else 1)
    assert cli.main(["campaign", "--shard", "5/4"]) != 0  # a usage error, not a campaign


def test_replay_of_a_passing_trial_exits_zero(capsys) -> None:
    token = next(C.tokens(SEED, (1, 1), {"interleave": 1}))
    code, out, _ = run_main(["--replay", token], capsys)
    assert code == 0 and "OK" in out


def test_tally_records_failures_with_their_replay_command() -> None:
    t = Tally()
    t.fail("crash:42", "divergences", "recovered state matches no allowed step")
    rep = report(t, seed=1, shard="1/1", seconds=1.0, workers=1)
    assert rep["divergences"] == 1 and not ok(rep)
    assert rep["failures"] == [{"seed": 42, "kind": "crash", "token": "crash:42",
                                "error": "divergences: recovered state matches no allowed step",
                                "replay": "dragondb campaign --replay crash:42"}]
    assert "FAILED seed 42" in table(rep) and "dragondb campaign --replay crash:42" in table(rep)


def test_a_file_left_open_fails_the_campaign() -> None:
    """Every session ends by checking that no file of its disk is left open:
    a leaked handle is a failure of its own kind, and the exit status says so."""
    t = Tally()
    t.n["leaked_files"] += 1
    rep = report(t, seed=1, shard="1/1", seconds=1.0, workers=1)
    assert rep["leaked_files"] == 1 and not ok(rep)
    assert "files left open 1" in table(rep)

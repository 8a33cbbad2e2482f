"""Branch-coverage floors, one per module: `make test` fails below any of them.

    python tests/coverage_floor.py coverage.json

reads the JSON that `coverage json` writes after `pytest --cov` (branch
coverage on, see [tool.coverage.run] in pyproject.toml), prints each module's
figure beside its floor and exits 1 if a module is under its floor or is not
listed here (a new module must be given a floor). The figure is coverage.py's
own: covered lines and branches over all lines and branches.

Floors: 95 for the engine core; the adapters (cli, net, dbm), the
fault layer and the models have lower floors set a little under what the suite
reaches today, so they can only rise. Unreachable lines are marked in the code
with `# pragma: no cover - <reason>`, never dropped from the count here.
"""

from __future__ import annotations

import json
import sys

CORE = 95.0

FLOORS: dict[str, float] = {
    # engine core
    "engine/codec.py": CORE,
    "engine/metapage.py": CORE,
    "engine/pager.py": CORE,
    "engine/disk.py": CORE,
    "engine/locks.py": CORE,
    "engine/bufferpool.py": CORE,
    "engine/nodecache.py": CORE,
    "engine/replacer.py": CORE,
    "engine/latch.py": CORE,
    "engine/wal.py": CORE,
    "engine/walformat.py": CORE,
    "engine/txn.py": CORE,
    "engine/overflow.py": CORE,
    "engine/btree.py": CORE,
    "engine/db.py": CORE,
    "engine/tree.py": CORE,
    "engine/batch.py": CORE,
    "engine/recovery.py": CORE,
    "engine/snapshots.py": CORE,
    "engine/writes.py": CORE,
    "engine/checkpoint.py": CORE,
    "engine/arguments.py": CORE,
    "engine/catalog.py": CORE,
    "engine/poolsize.py": CORE,
    "engine/openers.py": CORE,
    "engine/check.py": CORE,
    "engine/errors.py": CORE,
    "engine/syncpoints.py": CORE,
    "engine/__init__.py": CORE,
    "engine/bulk.py": CORE,
    "engine/typedefs.py": CORE,
    "engine/log.py": 85.0,  # enable() is run in a subprocess; one branch is loguru's own state
    # adapters
    "engine/__main__.py": 0.0,  # two lines run as `python -m engine`, in a subprocess
    "engine/cli/__init__.py": 80.0,  # the command line keeps the floor of the old engine/cli.py
    "engine/cli/main.py": 80.0,  # Ctrl-C and a closed stdout are exercised by kind
    "engine/cli/parser.py": 80.0,
    "engine/cli/commands.py": 80.0,
    "engine/cli/remote.py": 80.0,
    "engine/cli/plugins.py": 80.0,
    "engine/cli/args.py": 80.0,
    "engine/cli/render.py": 80.0,
    "engine/cli/exits.py": 80.0,
    "engine/server.py": 80.0,  # older import path of engine.net's server (python -m engine.server)
    "engine/client.py": 80.0,  # older import path of engine.net's client
    "engine/net/__init__.py": CORE,
    "engine/net/protocol.py": CORE,  # sans-I/O: every byte of the format, both directions
    "engine/net/options.py": CORE,
    "engine/net/handlers.py": 90.0,
    "engine/net/server.py": 80.0,
    "engine/net/serve.py": 80.0,
    "engine/net/client.py": 80.0,
    "engine/dbm.py": 85.0,
    "engine/maintenance.py": 90.0,  # backup and compact: their I/O-error exits are tested by kind, not each
    "engine/dump.py": 85.0,
    # fault layer
    "faults/__init__.py": 95.0,
    "faults/io.py": 85.0,
    "faults/crash.py": 85.0,
    "faults/interleave.py": 85.0,
    "faults/campaign.py": 85.0,
    "faults/workload.py": 95.0,
    "faults/session.py": 80.0,  # the rest reports engine bugs or faults that hit open itself
    "faults/recovery.py": 80.0,  # what is left uncovered reports a recovery the engine got wrong
    "faults/report.py": 90.0,
    "faults/trials_sweep.py": 85.0,
    "faults/trials_faults.py": 95.0,
    "faults/trials_crash.py": 85.0,
    "faults/trials_interleave.py": 80.0,  # a failing scenario's verdict runs only when the engine has a bug
    "faults/kill.py": 60.0,
    # crafted.py had 90 (92.2%) before its crafting moved out (issue 14); what is
    # left uncovered is the same: a trial's failure reports (they run when the
    # engine has a bug) and the deadline's off-main-thread path
    "faults/crafted.py": 83.0,
    "faults/crafted_pages.py": 95.0,
    "faults/crafted_log.py": 95.0,
    "faults/history.py": 90.0,
    "faults/trials_crafted.py": 80.0,  # a failing trial's report runs only when the engine has a bug
    "faults/trials_kill.py": 76.0,  # its recording moved to trials_readonly.record; what is left uncovered reports bugs
    "faults/trials_readonly.py": 80.0,
    "faults/trials_shortfile.py": 78.0,
    "faults/trials_sync.py": 95.0,
    "faults/trials_backup.py": 88.0,  # what is left uncovered reports engine bugs or scheduler failures
    "faults/trials_rot.py": 88.0,  # what is left uncovered reports a lost commit
    # reference models
    "models/__init__.py": 95.0,
    "models/database.py": 90.0,
    "models/pagestore.py": 90.0,
}


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "coverage.json"
    with open(path) as f:
        files = json.load(f)["files"]
    failures = []
    print(f"{'module':28} {'cover':>7} {'floor':>6}  lines  branches")
    for name in sorted(set(files) | set(FLOORS)):
        summary = files.get(name, {}).get("summary")
        floor = FLOORS.get(name)
        if summary is None:
            failures.append(f"{name}: no coverage data (not imported by any test?)")
            continue
        pct = summary["percent_covered"]
        lines = f"{summary['covered_lines']}/{summary['num_statements']}"
        branches = f"{summary.get('covered_branches', 0)}/{summary.get('num_branches', 0)}"
        shown = "  -   " if floor is None else f"{floor:6.1f}"
        print(f"{name:28} {pct:6.2f}% {shown}  {lines:>9} {branches:>9}")
        if floor is None:
            failures.append(f"{name}: no floor; add it to FLOORS in tests/coverage_floor.py")
        elif pct < floor:
            failures.append(f"{name}: {pct:.2f}% is under its floor of {floor:.1f}%")
    for failure in failures:
        print("coverage floor:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

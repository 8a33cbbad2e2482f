"""The fault layer: faulty files, a power-loss disk and a thread scheduler.

It plugs into the engine only through its two seams, never by patching:
`engine.open(path, opener=...)` (files) and `engine.syncpoints` (threads).

- `faults.io`: `FaultPlan` (seeded, decides) and `FaultyFile` (acts):
  I/O errors, short reads and writes, torn writes, bit flips.
- `faults.crash`: `CrashDisk`, in-memory files that remember what was not
  synced, and the disk images a power loss could leave.
- `faults.interleave`: `run` and `explore`, a deterministic scheduler that
  switches threads only at sync points.
- `faults.workload`: `generate`, the one seeded operation generator, and
  `apply_op`, which runs an operation on the engine or the model alike.
- `faults.campaign`: `dragondb campaign`, over one module per trial kind
  (`faults.trials_*`) and what they share (`session`, `history`,
  `recovery`, `report`); see docs/campaign.md.
"""

from faults.crash import CrashDisk, CrashFile, CrashState, Event, materialize
from faults.interleave import (
    DeadlockError,
    ExploreResult,
    InterleaveError,
    RunResult,
    ScheduleTimeout,
    explore,
    run,
)
from faults.io import FaultPlan, FaultyFile, Injection

__all__ = [
    "CrashDisk",
    "CrashFile",
    "CrashState",
    "DeadlockError",
    "Event",
    "ExploreResult",
    "FaultPlan",
    "FaultyFile",
    "Injection",
    "InterleaveError",
    "RunResult",
    "ScheduleTimeout",
    "explore",
    "materialize",
    "run",
]

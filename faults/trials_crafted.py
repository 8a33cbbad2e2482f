"""Campaign trial kind `crafted`: a file whose checksums hold but whose
contents no engine could have written (`faults.crafted`).

One page or log record of a small database is mutated to extreme or
inconsistent values and sealed again with a valid checksum; the database is
then opened and read, scanned both ways, checked, written and closed under a
time bound. Oracle: every call returns consistent data or raises a typed
engine error, never hangs, never raises a foreign exception, never returns
a key outside 1..MAX_KEY_SIZE, and a refused open changes neither file.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

from faults import crafted
from faults.report import Tally

KIND = "crafted"
_base_dir: str | None = None  # the base databases, built once per process


def planned_ops(seed: int) -> int:
    return 1


def _directory() -> str:
    global _base_dir
    if _base_dir is None:
        _base_dir = tempfile.mkdtemp(prefix="dragondb-crafted-")
        atexit.register(shutil.rmtree, _base_dir, True)
    return _base_dir


def run(token: str, seed: int, tally: Tally, tmp: str, modes: tuple[str, ...]) -> None:
    ok, detail = crafted.run_trial(seed, _directory())
    tally.n["crafted_files"] += 1
    if not ok:
        tally.fail(token, "divergences", detail)

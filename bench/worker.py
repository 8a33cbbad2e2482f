"""One benchmark job in a fresh process: `python -m bench.worker SPEC RESULT`.

SPEC is a JSON file {"job", "store", "dir", "workload": {...}, "floors": {...}};
the result dict (see `bench.workload`) is written as JSON to RESULT. A fresh
process per store keeps one store's caches, heap and peak RSS out of the next
one's numbers.
"""

from __future__ import annotations

import json
import os
import sys

from bench.floors import run_floors
from bench.workload import Workload, peak_rss_kib, run_job


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    if spec["job"] == "floors":
        result = run_floors(spec["dir"], **spec.get("floors", {}))
        result["peak_rss_kib"] = peak_rss_kib()
    else:
        result = run_job(spec["job"], spec["store"], spec["dir"], Workload(**spec["workload"]))
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

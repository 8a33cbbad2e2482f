"""Command line: `python -m bench [--n N] [--quick] [--million] [--profile] ...`."""

from __future__ import annotations

import argparse
import sys
import time

from bench.report import format_report
from bench.runner import Config, run
from bench.stores import DEFAULT_STORES, STORES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0] +
                                " Every store runs in a fresh subprocess and directory; the "
                                "order alternates between rounds.")
    p.add_argument("--n", type=int, default=100_000, help="keys in the main workload (100000)")
    p.add_argument("--quick", action="store_true",
                   help="smaller extras and time budgets (250 commits, 16 x 1 MiB values, 5 s per phase)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, order reversed each round (2)")
    p.add_argument("--stores", default=",".join(DEFAULT_STORES),
                   help=f"comma-separated, from: {', '.join(STORES)} (model is for development)")
    p.add_argument("--million", action="store_true",
                   help="also run the engine alone at N=10k, 100k, 1M: cost per op vs tree "
                        "height, and peak RSS at 1M keys")
    p.add_argument("--scale", default=None, metavar="N1,N2,...",
                   help="like --million with other sizes, e.g. 10000,100000")
    p.add_argument("--profile", action="store_true",
                   help="one extra engine run under cProfile; writes "
                        "OUT/profile/engine-<phase>.pstats and .txt")
    p.add_argument("--out", default=None, help="results directory (bench/results)")
    p.add_argument("--dir", default=None,
                   help="where the stores' temporary directories go (the disk under test; "
                        "default: the system temp dir)")
    p.add_argument("--commits", type=int, default=None,
                   help="durable single-put commits (1000; quick: 250)")
    p.add_argument("--big-count", type=int, default=None, help="1 MiB values (100; quick: 16)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per phase before it stops and is marked partial (90; quick: 5)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--no-floors", action="store_true", help="skip the raw disk floors")
    p.add_argument("--no-big", action="store_true", help="skip the 1 MiB values job")
    args = p.parse_args(argv)

    cfg = Config(n=args.n, quick=args.quick, rounds=args.rounds,
                 stores=[s.strip() for s in args.stores.split(",") if s.strip()],
                 million=args.million or bool(args.scale), profile=args.profile,
                 base_dir=args.dir,
                 chart=not args.no_chart, floors=not args.no_floors, big=not args.no_big,
                 seed=args.seed, commits=args.commits, big_count=args.big_count,
                 budget=args.budget)
    if args.scale:
        cfg.scale_sizes = tuple(int(x) for x in args.scale.split(","))
    if args.out:
        cfg.out_dir = args.out
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    results = run(cfg, progress=say)
    print(format_report(results))
    chart = results.get("chart", {})
    print(f"wrote {cfg.out_dir}/latest.json, latest.txt"
          + (f", {chart['path']}" if chart.get("path") else
             f" (no chart: {chart.get('skipped')})" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

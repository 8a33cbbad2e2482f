"""Subcommands whose implementation lives outside the engine: `bench` (the
benchmark, `bench/`) and `campaign` (the fault campaign, `faults/`).

The engine never imports those packages. A package offers a subcommand as
an entry point in the `dragondb.commands` group of its distribution's
metadata (pyproject.toml, `[project.entry-points."dragondb.commands"]`), and
`dragondb` loads it when, and only when, that subcommand runs. When no
installed distribution offers it, or it does not import, the subcommand
stops with one line and exit status 3, like any failure of the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import metadata
from typing import Any

from engine.cli.args import usage
from engine.cli.exits import EXIT_ERROR, EXIT_OK, CommandError
from engine.cli.render import out, render_facts

__all__ = ["GROUP", "load", "cmd_bench", "run_campaign"]

GROUP = "dragondb.commands"


def load(name: str, what: str) -> Callable[..., Any]:
    """The object registered as `name` in the `dragondb.commands` entry point
    group; `what` names it in the error (e.g. "the benchmark")."""
    found = metadata.entry_points(group=GROUP, name=name)
    if not found:
        raise CommandError(
            EXIT_ERROR,
            f"{what} is not available here (no {name!r} entry point in group {GROUP!r}: "
            "install the dragondb package, e.g. pip install -e .)",
        )
    entry = next(iter(found))
    try:
        return entry.load()
    except (ImportError, AttributeError) as exc:
        raise CommandError(EXIT_ERROR, f"{what} is not available here ({exc})") from None


def cmd_bench(args: argparse.Namespace) -> int:
    """`dragondb bench PATH -n N`: the engine-only benchmark on PATH's disk."""
    if args.n < 1:
        usage(args, "-n must be >= 1")
    run = load("bench", "the benchmark")
    out(render_facts(run(args.path, args.n), as_json=args.json))
    return EXIT_OK


def run_campaign(argv: list[str]) -> int:
    """`dragondb campaign ARGS...`: every argument goes to the campaign's own parser."""
    code = load("campaign", "the fault campaign")(argv)
    return EXIT_OK if code is None else int(code)

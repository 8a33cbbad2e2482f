"""The `dragondb` subcommands that open a database file: put, get, delete,
scan, trees, stats, check, show, dump, load, compact, backup, drop-tree.

Each takes the parsed arguments and returns the exit status; what it prints
comes from `engine.cli.render`. Read-only subcommands (get, scan, trees,
stats, check, show, dump, backup) open the file with `create=False,
read_only=True`, so a typo in a path never creates a file, and they work
while another process writes the database (`dragondb serve`, a program):
each reads one committed state (docs/processes.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loguru import logger

import engine
from engine import dump
from engine.cli.args import arg_bytes, read_input, row_limit, show, usage
from engine.cli.exits import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, CommandError
from engine.cli.render import (
    out,
    out_bytes,
    out_rows,
    render_check,
    render_facts,
    render_item,
    render_levels_dot,
    render_levels_text,
    render_trees,
)

__all__ = [
    "cmd_put", "cmd_get", "cmd_delete", "cmd_scan", "cmd_trees", "cmd_stats", "cmd_check",
    "cmd_show", "cmd_dump", "cmd_load", "cmd_compact", "cmd_backup", "cmd_drop_tree",
]


@contextmanager
def _open(args: argparse.Namespace, *, write: bool, create: bool = False) -> Iterator[Any]:
    """Open the database of `args.path`; a missing file is an error, never created
    unless `create`."""
    logger.debug("opening {} (write={}, create={})", args.path, write, create)
    try:
        db = engine.open(args.path, create=create, read_only=not write)
    except FileNotFoundError:
        if create:
            raise  # e.g. a missing directory: the OS's own message says it best
        raise CommandError(EXIT_ERROR, f"no database at {args.path}") from None
    with db:
        yield db


def _tree(db: Any, args: argparse.Namespace) -> Any:
    """The existing tree named by --tree, or a not-found exit."""
    if args.tree not in db.trees():
        raise CommandError(EXIT_NOT_FOUND, f"no tree {args.tree!r} in {args.path}", label="not found")
    return db.tree(args.tree, create=False)


# ---------------------------------------------------------------- subcommands


def cmd_put(args: argparse.Namespace) -> int:
    if args.value_file is not None:
        if len(args.items) != 1:
            usage(args, "with --value-file, put takes one KEY (its value comes from the file)")
        pairs = [(arg_bytes(args, args.items[0]), read_input(args.value_file))]
    else:
        if len(args.items) % 2:
            usage(args, "put takes KEY VALUE pairs; the last key has no value")
        items = [arg_bytes(args, text) for text in args.items]
        pairs = list(zip(items[::2], items[1::2], strict=True))
    with _open(args, write=True, create=True) as db:
        tree = db.tree(args.tree)
        if len(pairs) == 1:
            tree.put(*pairs[0])
        else:
            with db.batch() as batch:  # several pairs: one atomic commit
                for key, value in pairs:
                    batch.put(args.tree, key, value)
    logger.debug("put {} pair(s) into tree {!r}", len(pairs), args.tree)
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    key = arg_bytes(args, args.key)
    with _open(args, write=False) as db:
        value = _tree(db, args).get(key)
    if value is None:
        raise CommandError(
            EXIT_NOT_FOUND, f"key {show(args, key)} not in tree {args.tree!r}", label="not found"
        )
    if args.format == "json":
        out(render_item(key, value))
    elif args.raw:
        out_bytes(value)
    else:
        out(show(args, value))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    keys = [arg_bytes(args, text) for text in args.keys]
    with _open(args, write=True) as db:
        tree = _tree(db, args)
        present = [key for key in keys if key in tree]
        if len(present) == 1:
            tree.delete(present[0])
        elif present:
            with db.batch() as batch:  # several keys: one atomic commit
                for key in present:
                    batch.delete(args.tree, key)
    missing = [key for key in keys if key not in present]
    if missing:
        shown = ", ".join(show(args, key) for key in missing)
        raise CommandError(EXIT_NOT_FOUND, f"not in tree {args.tree!r}: {shown}", label="not found")
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    limit = row_limit(args)
    start, end, prefix = (arg_bytes(args, t) for t in (args.start, args.end, args.prefix))
    with _open(args, write=False) as db:
        rows = _tree(db, args).scan(start, end, reverse=args.reverse, prefix=prefix)
        out_rows(rows, keys_only=args.keys_only, as_json=args.format == "json",
                 hex_output=args.hex_output, limit=limit)
    return EXIT_OK


def cmd_trees(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        counts = [(name, len(db.tree(name, create=False))) for name in db.trees()]
    for line in render_trees(counts, as_json=args.format == "json", long=args.long):
        out(line)
    return EXIT_OK


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Facts about the file; this process's own pool and log counters would say nothing."""
    with _open(args, write=False) as db:
        stats = db.stats()
        per_tree = db.tree_stats()
        facts = {
            "file_bytes": _file_size(args.path),
            "log_file_bytes": _file_size(args.path + "-wal"),
            "log_bytes": stats["log_bytes"],
            "page_size": stats["page_size"],
            "pages_allocated": stats["pages_allocated"],
            "pages_free": stats["pages_free"],
            "trees": stats["trees"],
            "keys": stats["keys"],
            "per_tree": per_tree,
        }
    out(render_facts(facts, as_json=args.json or args.format == "json"))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        report = db.check(strict=args.strict)  # strict: CorruptionError, the engine-error exit
    out(render_check(report, as_json=args.json or args.format == "json"))
    return EXIT_OK if report.ok else EXIT_NOT_FOUND


def cmd_show(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 1:
        usage(args, "--depth must be >= 1")
    if args.max_pages < 0:
        usage(args, "--max-pages must be >= 0 (0: every page)")
    with _open(args, write=False) as db:
        _tree(db, args)
        height = db.tree_stats()[args.tree]["height"]
        levels = db.tree_levels(args.tree, args.depth)
        entries = len(db.tree(args.tree, create=False))
    draw = render_levels_dot if args.format == "dot" else render_levels_text
    out(draw(args.tree, levels, hex_output=args.hex_output, key_width=args.key_width,
             max_pages=args.max_pages or None, height=height, entries=entries))
    return EXIT_OK


def cmd_dump(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        names = [_tree(db, args).name] if args.tree is not None else db.trees()
        out(dump.header())
        for name in names:
            out(dump.tree_line(name))
            for key, value in db.tree(name, create=False).items():
                out(dump.item_line(key, value, args.binary))
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    """Each tree of the dump in one atomic commit: `Tree.load` into an empty
    tree, `Tree.update` into one holding keys. Read whole before any write."""
    try:
        if args.file == "-":
            trees = dump.parse(sys.stdin.buffer)
        else:
            with open(args.file, "rb") as f:
                trees = dump.parse(f)
    except dump.DumpFormatError as exc:
        raise CommandError(EXIT_ERROR, f"{args.file}: {exc}") from None
    with _open(args, write=True, create=True) as db:
        for name, items in trees:
            tree = db.tree(name)
            if len(tree):
                tree.update(items)
            else:
                tree.load(sorted(items))
            logger.debug("loaded {} item(s) into tree {!r}", len(items), name)
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    before = Path(args.path).stat().st_size if Path(args.path).exists() else 0
    with _open(args, write=True) as db:
        result = db.compact()
    after = Path(args.path).stat().st_size
    out(f"compacted: {result['pages_before']} pages -> {result['pages_after']} pages "
         f"({before:,} -> {after:,} bytes)")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:  # read-only: works beside a live writer
        db.backup(args.dest)
    return EXIT_OK


def cmd_drop_tree(args: argparse.Namespace) -> int:
    with _open(args, write=True) as db:
        args.tree = args.name
        _tree(db, args)
        db.drop_tree(args.name)
    return EXIT_OK

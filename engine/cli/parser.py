"""The `dragondb` argument parser: every subcommand, its options and its
`--help` text. Each subcommand's parser carries `func` (what runs it) and
`parser` (for usage errors raised from inside it).
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import commands, plugins, remote
from engine.cli.exits import EXIT_CODES_HELP, PROG
from engine.net.options import add_serve_arguments

__all__ = ["CAMPAIGN", "build_parser"]

DEFAULT_TREE = "default"
CAMPAIGN = "campaign"  # hands all its arguments to its own parser (see main)

_LIVE = ("\nRead-only: works while another process (e.g. `dragondb serve`) writes the database,"
         " and reads one committed state.")


# name -> (one-line summary, description for `--help`, epilog or "")
_HELP: dict[str, tuple[str, str, str]] = {
    "put": (
        "store values under keys (several pairs: one atomic batch)",
        "Insert or overwrite KEY with VALUE, creating the database and the tree if missing.\n"
        "Several KEY VALUE pairs are written in one atomic batch.",
        "examples:\n"
        "  dragondb put my.db apple red\n"
        "  dragondb put --hex my.db 00ff 0102\n"
        "  dragondb put my.db $(seq -f 'k%04g v' 500)   # enough keys to split leaves\n"
        "  dragondb put my.db -- -key- -value-          # `--` before text starting with '-'",
    ),
    "get": ("print the value of a key", "Print the value stored under KEY (exit 1 if absent)." + _LIVE, ""),
    "delete": (
        "delete keys (several: one atomic batch)",
        "Delete each KEY; several keys go in one atomic batch.\n"
        "Exit status 1 when any key was absent (the present ones are still deleted).",
        "",
    ),
    "scan": (
        "print key/value pairs in key order",
        "Print `key<TAB>value` lines in ascending key order (descending with --reverse)."
        + _LIVE + " The whole scan is one state.",
        "",
    ),
    "trees": ("list the trees", "List the database's trees, one name a line, sorted." + _LIVE, ""),
    "dump": (
        "write trees as JSON Lines",
        "Write every tree (or --tree's) as JSON Lines: a header with the format version,\n"
        "then per tree a {\"tree\": NAME} line and its items in key order. Bytes that are\n"
        "valid UTF-8 are strings; others (all with --binary) base64 under key_b64/value_b64." + _LIVE,
        "example:\n  dragondb dump my.db > my.jsonl && dragondb load copy.db my.jsonl",
    ),
    "load": (
        "read trees from a dump (each tree one atomic commit)",
        "Read a `dragondb dump` (a file, or - for stdin) whole, then write each tree in one\n"
        "atomic commit: a bulk load into an empty tree, an update into one holding keys.\n"
        "Creates the database if missing.",
        "",
    ),
    "compact": (
        "give free space back to the file system",
        "Rewrite the database packed, in place and crash-safe, and cut the file short.",
        "",
    ),
    "backup": (
        "copy the database consistently",
        "Write a consistent copy of the last committed state to DEST (replaced atomically)." + _LIVE,
        "",
    ),
    "drop-tree": ("delete a tree and all its keys", "Drop tree NAME, freeing its pages (exit 1 if absent).", ""),
    "stats": (
        "print facts about the file",
        "Print the file's size, its log's size, page size, pages allocated and free, and\n"
        "per tree its key count and height (levels)." + _LIVE,
        "",
    ),
    "check": (
        "verify every invariant of the file",
        "Walk every tree and check page accounting, tree shape and checksums.\n"
        "Exit status 0 when all holds, 1 with the problems printed; with --strict a\n"
        "problem is a CorruptionError: exit 3 and one line on stderr." + _LIVE
        + " On a live database it checks the committed state it sees.",
        "",
    ),
    "show": (
        "draw a tree's pages level by level",
        "Draw a tree's pages, root level first: per level a summary (pages, keys, average\n"
        "fill), then page id, type, keys, fill and key range of its first --max-pages\n"
        "pages. --depth stops after N levels. --format dot emits Graphviz, to watch\n"
        "splits and merges." + _LIVE,
        "example:\n  dragondb show my.db --format dot | dot -Tsvg > tree.svg",
    ),
    CAMPAIGN: (
        "run a fault campaign (`dragondb campaign --help` for its options)",
        "Seeded workloads x fault plans x interleavings; arguments go to faults.campaign.",
        "",
    ),
    "bench": ("measure the engine on this disk", "Run the engine-only benchmark at PATH.", ""),
    "serve": (
        "serve the database over TCP (DragonDB wire protocol)",
        "Serve PATH over the DragonDB wire protocol until SIGINT or SIGTERM.",
        "",
    ),
    "ping": ("check that a server answers", "Send a ping to a DragonDB server.", ""),
    "remote-get": ("get a key from a server", "Print a key's value from a server.", ""),
    "remote-put": ("put a key on a server", "Store VALUE under KEY on a server.", ""),
    "remote-delete": (
        "delete a key on a server",
        "Delete KEY on a server (exit 1 if it was absent), with the `X` extension op-code.",
        "",
    ),
    "remote-scan": (
        "print a server's key/value pairs in key order",
        "Like `scan`, over the wire (the server's `R` extension op-code).",
        "",
    ),
    "remote-shutdown": (
        "ask a server to stop",
        "Send the shutdown request; the server obeys only if run with --allow-shutdown.",
        "",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `dragondb` command and every subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    verbose_help = "show the engine's diagnostics on stderr"
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="DragonDB, a B+ tree storage engine. Database subcommands take "
        "the database path first; `dragondb SUBCOMMAND --help` explains each.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")

    # Option groups shared by subcommands, as argparse parent parsers.
    # SUPPRESS: a subcommand's --verbose must not reset one given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help
    )
    path = argparse.ArgumentParser(add_help=False)
    path.add_argument("path", metavar="PATH", help="the database file")
    tree = argparse.ArgumentParser(add_help=False)
    tree.add_argument(
        "-t", "--tree", default=DEFAULT_TREE, metavar="NAME", help="tree (default: %(default)s)"
    )
    hex_in = argparse.ArgumentParser(add_help=False)
    hex_in.add_argument("--hex", action="store_true", help="KEY/VALUE arguments are hex, not text")
    hex_out = argparse.ArgumentParser(add_help=False)
    hex_out.add_argument(
        "-X", "--hex-output", action="store_true", help="print bytes as hex even when printable"
    )
    at_server = argparse.ArgumentParser(add_help=False)
    at_server.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    at_server.add_argument("--port", type=int, default=8080, help="server port (default: %(default)s)")
    at_server.add_argument(
        "--timeout", type=float, default=30.0, help="seconds (default: %(default)s)"
    )
    scan = argparse.ArgumentParser(add_help=False)
    scan.add_argument("--start", metavar="KEY", help="first key (inclusive)")
    scan.add_argument("--end", metavar="KEY", help="stop before this key (exclusive)")
    scan.add_argument("--prefix", metavar="BYTES", help="only keys starting with these bytes")
    scan.add_argument("--reverse", action="store_true", help="walk in descending key order")
    scan.add_argument("--limit", type=int, metavar="N", help="print at most N pairs")
    scan.add_argument("--keys-only", action="store_true", help="print keys only")
    subs = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, func: Any, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        summary, description, epilog = _HELP[name]
        sub = subs.add_parser(
            name,
            help=summary,
            description=description,
            epilog=(epilog + "\n\n" if epilog else "") + EXIT_CODES_HELP,
            parents=[common, *parents],
            formatter_class=fmt,
            usage=_USAGE.get(name),
        )
        sub.set_defaults(func=func, parser=sub)
        return sub

    fmt_json = argparse.ArgumentParser(add_help=False)
    fmt_json.add_argument("--format", choices=("text", "json"), default="text",
                          help="output format (default: %(default)s)")
    sub = add("put", commands.cmd_put, path, tree, hex_in)
    sub.add_argument("items", nargs="+", metavar="KEY VALUE")
    sub.add_argument("--value-file", metavar="F", help="the value is the bytes of file F (- for stdin); one KEY")
    sub = add("get", commands.cmd_get, path, tree, hex_in, hex_out, fmt_json)
    sub.add_argument("key", metavar="KEY")
    sub.add_argument("--raw", action="store_true", help="write the value's bytes as they are")
    add("delete", commands.cmd_delete, path, tree, hex_in, hex_out).add_argument(
        "keys", nargs="+", metavar="KEY"
    )
    add("scan", commands.cmd_scan, path, tree, hex_in, hex_out, scan, fmt_json)
    add("trees", commands.cmd_trees, path, fmt_json).add_argument(
        "-l", "--long", action="store_true", help="with key counts"
    )
    add("stats", commands.cmd_stats, path, fmt_json).add_argument("--json", action="store_true", help="print JSON")
    sub = add("check", commands.cmd_check, path, fmt_json)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--strict", action="store_true",
                     help="a problem is an engine error (CorruptionError, exit 3), not exit 1")
    sub = add("dump", commands.cmd_dump, path)
    sub.add_argument("-t", "--tree", metavar="NAME", help="only this tree (default: all)")
    sub.add_argument("--binary", action="store_true", help="every key and value as base64")
    add("load", commands.cmd_load, path).add_argument("file", metavar="FILE", help="a dump, or - for stdin")
    add("compact", commands.cmd_compact, path)
    add("backup", commands.cmd_backup, path).add_argument("dest", metavar="DEST", help="the copy's path")
    add("drop-tree", commands.cmd_drop_tree, path).add_argument("name", metavar="TREE")
    sub = add("show", commands.cmd_show, path, tree, hex_out)
    sub.add_argument(
        "--format", choices=("text", "dot"), default="text", help="default: %(default)s"
    )
    sub.add_argument(
        "--key-width", type=int, default=24, metavar="N", help="clip keys to N characters"
    )
    sub.add_argument("--depth", type=int, metavar="N",
                     help="the first N levels from the root only (default: all)")
    sub.add_argument("--max-pages", type=int, default=8, metavar="N",
                     help="pages drawn per level, leftmost first; 0: all (default: %(default)s)")
    add(CAMPAIGN, None)  # listed for --help only: main() hands its arguments to the campaign
    sub = add("bench", plugins.cmd_bench, path)
    sub.add_argument(
        "-n", type=int, default=10_000, metavar="N", help="keys (default: %(default)s)"
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    add_serve_arguments(add("serve", remote.cmd_serve))
    add("ping", remote.cmd_ping, at_server)
    add("remote-get", remote.cmd_remote_get, at_server, hex_in, hex_out).add_argument("key", metavar="KEY")
    sub = add("remote-put", remote.cmd_remote_put, at_server, hex_in)
    sub.add_argument("key", metavar="KEY")
    sub.add_argument("value", metavar="VALUE")
    add("remote-delete", remote.cmd_remote_delete, at_server, hex_in, hex_out).add_argument("key", metavar="KEY")
    add("remote-scan", remote.cmd_remote_scan, at_server, hex_in, hex_out, scan)
    add("remote-shutdown", remote.cmd_remote_shutdown, at_server)
    return parser


# argparse cannot say "pairs" in a usage line by itself.
_USAGE = {
    "put": "dragondb put [-h] [-v] [-t NAME] [--hex] PATH KEY VALUE [KEY VALUE ...]\n"
           "       dragondb put [-h] [-v] [-t NAME] [--hex] PATH KEY --value-file F|-",
}


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dragondb")
    except metadata.PackageNotFoundError:
        return "unknown"

"""The `dragondb` command: the engine from a shell.

Every database subcommand takes the database path first, then its own
arguments; `dragondb SUBCOMMAND --help` documents each one. Read-only
subcommands (get, scan, trees, stats, check, show, dump) open the file with
`create=False, read_only=True`, so a typo in a path never creates a file,
and they work while another process writes the database (`dragondb serve`,
a program): each reads one committed state (docs/processes.md).

Keys and values are text (UTF-8) unless `--hex` says they are hex. Output
shows bytes as text when they are printable UTF-8 and as hex marked "0x"
otherwise (text starting with "0x" too); `--hex-output` forces hex.
`--format json` (get, scan, trees, stats, check) prints JSON, with bytes as
in `dump`: a string when valid UTF-8, else base64 under "key_b64"/"value_b64".

The exit statuses, which scripts rely on, are listed in `engine.cli.exits`.
An error is one line on stderr, `dragondb: error: <message>`, never a
traceback. `--verbose` turns on the engine's loguru diagnostics.

The modules, top down:

    main      entry point, global flags, every outcome -> an exit status
    parser    the argument parser and every subcommand's --help
    commands  the subcommands on a database file
    remote    serve, ping, remote-*: engine.net, imported only when used
    plugins   bench and campaign, found through the `dragondb.commands`
              entry point group (the engine never imports bench/ or faults/)
    args      arguments as bytes (text or hex), input files, usage errors
    render    what is printed: bytes as text or hex, tables, drawings, JSON
    exits     the exit statuses
"""

from engine.cli.args import parse_bytes
from engine.cli.exits import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
)
from engine.cli.main import main
from engine.cli.render import format_bytes, render_levels_dot, render_levels_text, render_table

__all__ = [
    "main",
    "EXIT_OK",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "parse_bytes",
    "format_bytes",
    "render_levels_text",
    "render_levels_dot",
    "render_table",
]

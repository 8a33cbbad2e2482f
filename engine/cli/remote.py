"""The `dragondb` subcommands of the network: `serve` a database over the
DragonDB wire protocol, and the `ping` and `remote-*` client commands
(docs/protocol.md). The server and the client (`engine.net`) are imported
only when one of these runs, so the other subcommands start without asyncio.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.cli.args import arg_bytes, row_limit, show
from engine.cli.exits import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_OK, PROG, CommandError
from engine.cli.render import out, out_rows

__all__ = [
    "cmd_serve", "cmd_ping", "cmd_remote_get", "cmd_remote_put", "cmd_remote_delete",
    "cmd_remote_scan", "cmd_remote_shutdown",
]


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.net.serve import serve_from_args  # asyncio: loaded only to serve

    def announce(host: str, port: int) -> None:
        sys.stderr.write(f"{PROG}: serving {args.path} on {host}:{port}\n")
        sys.stderr.flush()

    serve_from_args(args, announce)
    return EXIT_OK


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    from engine.net.client import Client

    try:
        client = Client(args.host, args.port, timeout=args.timeout)
    except OSError as exc:
        raise CommandError(EXIT_ERROR, f"cannot connect to {args.host}:{args.port}: {exc}") from None
    with client:
        yield client


def cmd_ping(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.ping()
    out(f"pong from {args.host}:{args.port}")
    return EXIT_OK


def cmd_remote_get(args: argparse.Namespace) -> int:
    key = arg_bytes(args, args.key)
    with _client(args) as client:
        value = client.get(key)
    if value is None:
        raise CommandError(EXIT_NOT_FOUND, f"key {show(args, key)} not on the server", label="not found")
    out(show(args, value))
    return EXIT_OK


def cmd_remote_put(args: argparse.Namespace) -> int:
    key, value = arg_bytes(args, args.key), arg_bytes(args, args.value)
    with _client(args) as client:
        client.insert(key, value)
    return EXIT_OK


def cmd_remote_delete(args: argparse.Namespace) -> int:
    key = arg_bytes(args, args.key)
    with _client(args) as client:
        found = client.remove(key)  # the X extension: D does not say whether it existed
    if not found:
        raise CommandError(EXIT_NOT_FOUND, f"key {show(args, key)} not on the server", label="not found")
    return EXIT_OK


def cmd_remote_scan(args: argparse.Namespace) -> int:
    limit = row_limit(args)
    start, end, prefix = (arg_bytes(args, t) for t in (args.start, args.end, args.prefix))
    with _client(args) as client:
        rows = client.scan(start, end, reverse=args.reverse, prefix=prefix)
        out_rows(rows, keys_only=args.keys_only, as_json=False, hex_output=args.hex_output,
                 limit=limit)
    return EXIT_OK


def cmd_remote_shutdown(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.shutdown()  # RemoteError unless the server runs with --allow-shutdown
    out(f"{args.host}:{args.port} is shutting down")
    return EXIT_OK

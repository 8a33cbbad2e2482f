"""Run a server until it is told to stop: `serve`, and its command line.

`serve(path)` opens the database, serves it until SIGTERM, SIGINT or an
allowed `S`, then checkpoints and closes it. `main` is `python -m
engine.server`; `serve_from_args` is shared with `dragondb serve`, whose
options are `engine.net.options.add_serve_arguments`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from engine.errors import DragonDBError
from engine.net.options import ServerOptions, add_serve_arguments, options_from_args
from engine.net.protocol import error_text
from engine.net.server import Server

__all__ = ["main", "serve", "serve_from_args"]


def serve(
    path_or_db: str | os.PathLike[str] | Any,
    options: ServerOptions | None = None,
    *,
    ready: Callable[[str, int], None] | None = None,
    **changes: Any,
) -> None:
    """Serve until SIGTERM, SIGINT or an allowed `S`; blocks.

    `options` and `changes` are as for `Server` and are checked before
    anything is opened. A path is opened with `engine.open(path,
    sync=options.sync)` and closed on stop; a database object is
    checkpointed on stop and left open. `ready(host, port)` is called once
    the socket listens (useful with `port=0`). Signal handlers are installed
    only when called from the main thread.
    """
    opts = (options or ServerOptions()).replace(**changes)
    owned = isinstance(path_or_db, (str, os.PathLike))
    if owned:
        import engine

        db = engine.open(path_or_db, sync=opts.sync)
    else:
        db = path_or_db
    try:
        server = Server(db, opts, close_db=owned)
    except BaseException:
        if owned:
            db.close()
        raise
    asyncio.run(_serve_async(server, ready, owned))


async def _serve_async(
    server: Server, ready: Callable[[str, int], None] | None, owned: bool
) -> None:
    loop = asyncio.get_running_loop()
    try:
        host, port = await server.start()
    except BaseException:
        if owned:
            server.db.close()
        raise
    signals: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, functools.partial(server.request_stop, escalate=True))
            signals.append(signum)
    try:
        if ready is not None:
            ready(host, port)
        await server.wait_stopped()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if not server._stopping:  # ready() raised, or we were cancelled
            await server.stop()


def serve_from_args(
    args: argparse.Namespace, ready: Callable[[str, int], None] | None = None
) -> None:
    """Run `serve` with options parsed by `add_serve_arguments`."""

    def on_ready(host: str, port: int) -> None:
        if args.ready_file:
            tmp = f"{args.ready_file}.tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(f"{host} {port}\n")
                os.replace(tmp, args.ready_file)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # no stray temporary file beside a path we could not write
                raise
        if ready is not None:
            ready(host, port)

    serve(args.path, options_from_args(args), ready=on_ready)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.server PATH [--port N] ...`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m engine.server",
        description="Serve a DragonDB database over the DragonDB TCP protocol.",
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)

    def announce(host: str, port: int) -> None:
        sys.stderr.write(f"dragondb: serving {args.path} on {host}:{port}\n")
        sys.stderr.flush()

    try:
        serve_from_args(args, announce)
    except (DragonDBError, OSError) as exc:
        sys.stderr.write(f"dragondb: {error_text(exc)}\n")
        return 1
    return 0



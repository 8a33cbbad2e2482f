"""`dragondb`'s entry point: global flags, dispatch to a subcommand, and
the one place that turns every outcome into an exit status.

An error is one line on stderr, `dragondb: error: <message>`, never a
traceback. `--verbose` turns on the engine's loguru diagnostics.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from loguru import logger

from engine import log
from engine.cli.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    CommandError,
)
from engine.cli.parser import CAMPAIGN, build_parser
from engine.cli.plugins import run_campaign
from engine.errors import DragonDBError

__all__ = ["main"]


def _error(message: str, label: str = "error") -> None:
    sys.stderr.write(f"{PROG}: {label}: {message}\n")
    sys.stderr.flush()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{text} ({type(exc).__name__})" if text else type(exc).__name__


def _set_verbose(verbose: bool) -> None:
    if verbose:
        # Resolve sys.stderr per message so a redirected stderr (tests) works.
        logger.remove()
        logger.add(
            lambda message: sys.stderr.write(message),
            level="DEBUG",
            format="{time:HH:mm:ss.SSS} {level:<7} {name}: {message}",
            backtrace=False,
            diagnose=False,  # no variable dumps: keys and values may be large or private
        )
        log.enable()
    else:
        log.disable()


def _split_globals(argv: list[str]) -> tuple[bool, list[str]]:
    """Leading global flags, and the rest (which starts with the subcommand)."""
    verbose, rest = False, list(argv)
    while rest and rest[0] in ("-v", "--verbose"):
        verbose, rest = True, rest[1:]
    return verbose, rest


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `dragondb` command with `argv` (default: sys.argv[1:]); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose, rest = _split_globals(argv)
    try:
        if rest and rest[0] == CAMPAIGN:
            # campaign has its own parser (and its own --help), in the package offering it.
            _set_verbose(verbose)
            return _guard(lambda: run_campaign(rest[1:]))
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        _set_verbose(args.verbose)
        return _guard(lambda: args.func(args))
    finally:
        log.disable()  # the library's default: silent


def _guard(run: Any) -> int:
    """Run a subcommand, turning every exception into an exit status and one line."""
    try:
        return run()
    except SystemExit as exc:  # parser.error() from inside a subcommand
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except CommandError as exc:
        _error(exc.message, exc.label)
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (DragonDBError, OSError) as exc:
        logger.opt(exception=exc).debug("engine error")
        _error(_describe(exc))
        return EXIT_ERROR
    except Exception as exc:
        logger.opt(exception=exc).error("internal error")
        _error(f"internal error: {_describe(exc)} (run with --verbose for the traceback)")
        return EXIT_INTERNAL


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests): nothing will flush it later

"""The server's options: one dataclass, its validation and its command-line form.

`ServerOptions` is what `Server`, `serve`, `dragondb serve` and `python -m
engine.server` take. Each field carries its flag, help text and check, so
the Python keywords, the command-line options and their validation cannot
drift apart: a bad value is a `ValueError` from Python and a usage error
(exit 2, nothing opened or created) from the command line.

Importing this module is cheap (no asyncio, no sockets), so the `dragondb`
parser can list the `serve` options without loading the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from engine.net.protocol import DEFAULT_MAX_BODY

__all__ = ["ServerOptions", "add_serve_arguments", "options_from_args"]

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds a connection may sit with nothing to do
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds to finish sending a request / reading replies
SYNC_MODES = ("full", "normal", "off")


# -- checks: (name, value) -> None, raising ValueError -----------------------------


def _int_in(lo: int, hi: int | None) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, not {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise ValueError(f"{name} must be {bound}, not {value}")

    return check


def _seconds(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and positive, not {value!r}")


def _one_of(choices: tuple[str, ...]) -> Callable[[str, Any], None]:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")

    return check


def _text(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")


def _option(default: Any, check: Callable[[str, Any], None], flag: str | None = None,
            help: str = "", parse: Callable[[str], Any] | None = None, **argparse_kw: Any) -> Any:
    """A field: its default, its check and, with `flag`, its command-line form
    (`parse` turns the text into a value before the check)."""
    meta = {"check": check, "flag": flag, "help": help, "parse": parse, "argparse": argparse_kw}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ServerOptions:
    """How a server listens, frames and times out; checked on construction
    (`ValueError` names the bad field). `sync` is used only when the server
    opens the database itself (`serve(path)`); `inline_reads` answers gets on
    the event loop (docs/protocol.md, implementation notes)."""

    host: str = _option("127.0.0.1", _text, "--host",
                        "address to listen on (default %(default)s)")
    port: int = _option(8080, _int_in(0, 65535), "--port",
                        "TCP port 0..65535, 0 = any free port (default %(default)s)", int)
    allow_shutdown: bool = _option(
        False, _flag, "--allow-shutdown",
        "let a client's S request stop the server (off: S is answered with an error)",
        action="store_true")
    max_body: int = _option(DEFAULT_MAX_BODY, _int_in(8, None), "--max-body",
                            "largest request body in bytes (default 32 MiB)", int)
    idle_timeout: float = _option(DEFAULT_IDLE_TIMEOUT, _seconds, "--idle-timeout",
                                  "seconds before an idle connection is closed (default %(default)s)",
                                  float)
    request_timeout: float = _option(
        DEFAULT_REQUEST_TIMEOUT, _seconds, "--request-timeout",
        "seconds a client has to finish sending a request or to read replies (default %(default)s)",
        float)
    tree: str = _option("default", _text, "--tree", "tree to serve (default %(default)s)")
    sync: str = _option("full", _one_of(SYNC_MODES), "--sync", "commit durability (default full)",
                        choices=SYNC_MODES)
    workers: int = _option(16, _int_in(1, 1024), "--workers",
                           "engine threads for writes, 1..1024 (default %(default)s)", int)
    inline_reads: bool = _option(True, _flag)

    def __post_init__(self) -> None:
        for f in fields(self):
            f.metadata["check"](f.name, getattr(self, f.name))

    def replace(self, **changes: Any) -> ServerOptions:
        """A copy with `changes`, checked again; an unknown name is a TypeError."""
        return dataclasses.replace(self, **changes) if changes else self


# -- the command-line form ---------------------------------------------------------


def _arg_type(flag: str, parse: Callable[[str], Any], check: Callable[[str, Any], None]
              ) -> Callable[[str], Any]:
    """An argparse type: parse, then the field's own check (a usage error, exit 2)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            kind = "an integer" if parse is int else "a number"
            raise argparse.ArgumentTypeError(f"{flag} must be {kind}, not {text!r}") from None
        try:
            check(flag, value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    return convert


def _ready_path(text: str) -> str:
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file path")
    return text


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` options, shared by `python -m engine.server` and `dragondb serve`:
    the database path, every `ServerOptions` field that has a flag, and `--ready-file`."""
    parser.add_argument("path", help="database file (created if missing)")
    for f in fields(ServerOptions):
        meta = f.metadata
        if meta["flag"] is None:
            continue  # a Python-only option
        kw: dict[str, Any] = {"default": f.default, "help": meta["help"], **meta["argparse"]}
        if meta["parse"] is not None:
            kw["type"] = _arg_type(meta["flag"], meta["parse"], meta["check"])
        parser.add_argument(meta["flag"], dest=f.name, **kw)
    parser.add_argument(
        "--ready-file",
        type=_ready_path,
        default=None,
        help="once listening, write 'HOST PORT' to this file (for scripts)",
    )


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """The options parsed by `add_serve_arguments` (fields without a flag keep their default)."""
    return ServerOptions(**{f.name: getattr(args, f.name) for f in fields(ServerOptions)
                            if f.metadata["flag"] is not None})

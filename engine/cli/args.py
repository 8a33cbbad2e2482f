"""Reading a subcommand's arguments: keys and values as text or hex, input
files, and usage errors from inside a subcommand.

Keys and values are text (UTF-8) unless `--hex` says they are hex.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from engine.cli.render import format_bytes

__all__ = ["parse_bytes", "usage", "arg_bytes", "row_limit", "show", "read_input"]


def parse_bytes(text: str, *, hex_input: bool) -> bytes:
    """Turn a command-line argument into bytes: UTF-8, or hex with `hex_input`.

    Hex may carry a `0x` prefix and spaces. Raises ValueError on bad hex.
    """
    if not hex_input:
        return text.encode("utf-8", "surrogateescape")
    digits = text.strip()
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"not valid hex: {text!r}") from None


def usage(args: argparse.Namespace, message: str) -> NoReturn:
    args.parser.error(message)  # prints usage and raises SystemExit(2)


def arg_bytes(args: argparse.Namespace, text: str | None) -> bytes | None:
    """An argument as bytes (`--hex` decides how); bad hex is a usage error."""
    if text is None:
        return None
    try:
        return parse_bytes(text, hex_input=args.hex)
    except ValueError as exc:
        usage(args, str(exc))


def row_limit(args: argparse.Namespace) -> int | None:
    """`--limit` of a scan: None (no limit) or at least 0; below is a usage error."""
    if args.limit is not None and args.limit < 0:
        usage(args, "--limit must be >= 0")
    return args.limit


def show(args: argparse.Namespace, data: bytes) -> str:
    """Bytes for a message or a line of output, as `--hex-output` asks."""
    return format_bytes(data, hex_output=getattr(args, "hex_output", False))


def read_input(name: str) -> bytes:
    """The bytes of file `name`, or of stdin for "-"."""
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as f:
        return f.read()

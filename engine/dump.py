"""The dump format of `dragondb dump` and `dragondb load`: JSON Lines.

    {"format": "dragondb-dump", "version": 1}      the header, always first
    {"tree": "NAME"}                               starts a tree (also an empty one)
    {"key": "apple", "value": "red"}               its items, ascending by key

A key or value that is valid UTF-8 is written as a JSON string (ASCII with
\\u escapes, so any terminal or pipe carries it); any other bytes, or all of
them with `binary=True`, as base64 under "key_b64" / "value_b64". Reading
accepts either form for each field. Pure functions: no files, no database.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable

__all__ = ["FORMAT", "VERSION", "DumpFormatError", "header", "tree_line", "item", "item_line", "parse"]

FORMAT = "dragondb-dump"
VERSION = 1


class DumpFormatError(ValueError):
    """A dump that does not follow the format; says which line."""


def header() -> str:
    return json.dumps({"format": FORMAT, "version": VERSION})


def tree_line(name: str) -> str:
    return json.dumps({"tree": name})


def _field(out: dict, name: str, data: bytes, binary: bool) -> None:
    if not binary:
        try:
            out[name] = data.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    out[name + "_b64"] = base64.b64encode(data).decode("ascii")


def item(key: bytes, value: bytes, binary: bool = False) -> dict:
    """The JSON object of one (key, value)."""
    out: dict = {}
    _field(out, "key", key, binary)
    _field(out, "value", value, binary)
    return out


def item_line(key: bytes, value: bytes, binary: bool = False) -> str:
    return json.dumps(item(key, value, binary))


def _bytes(rec: dict, name: str, lineno: int) -> bytes:
    if name in rec and isinstance(rec[name], str):
        try:
            return rec[name].encode("utf-8")
        except UnicodeEncodeError:
            raise DumpFormatError(f"line {lineno}: {name} is not valid text") from None
    b64 = rec.get(name + "_b64")
    if isinstance(b64, str):
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise DumpFormatError(f"line {lineno}: {name}_b64 is not valid base64") from None
    raise DumpFormatError(f"line {lineno}: no {name!r} or {name + '_b64'!r} string")


def parse(lines: Iterable[bytes | str]) -> list[tuple[str, list[tuple[bytes, bytes]]]]:
    """(tree, items) in the order the dump names them (a tree named twice
    gathers both parts); `DumpFormatError` on anything else."""
    trees: dict[str, list[tuple[bytes, bytes]]] = {}
    current: list[tuple[bytes, bytes]] | None = None
    seen_header = False
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DumpFormatError(f"line {lineno}: not JSON ({exc})") from None
        if not isinstance(rec, dict):
            raise DumpFormatError(f"line {lineno}: not a JSON object")
        if not seen_header:
            if rec.get("format") != FORMAT:
                raise DumpFormatError(f"line {lineno}: not a {FORMAT} header")
            if rec.get("version") != VERSION:
                raise DumpFormatError(f"line {lineno}: dump version {rec.get('version')!r}; this reads {VERSION}")
            seen_header = True
            continue
        if "tree" in rec:
            if not isinstance(rec["tree"], str):
                raise DumpFormatError(f"line {lineno}: tree name is not a string")
            current = trees.setdefault(rec["tree"], [])
            continue
        if current is None:
            raise DumpFormatError(f"line {lineno}: an item before any tree line")
        current.append((_bytes(rec, "key", lineno), _bytes(rec, "value", lineno)))
    if not seen_header:
        raise DumpFormatError("empty input: no dump header")
    return list(trees.items())

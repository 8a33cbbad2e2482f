"""What the `dragondb` command prints: bytes as text or hex, tables, the
tree drawings, JSON records, and the one writer of stdout.

Output shows bytes as text when they are printable UTF-8 and as hex marked
"0x" otherwise (text starting with "0x" too); `--hex-output` forces hex.
`--format json` prints JSON, with bytes as in `dump`: a string when valid
UTF-8, else base64 under "key_b64"/"value_b64". The functions here build
strings from data; only `out` and `out_bytes` write.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from engine import dump

__all__ = [
    "format_bytes",
    "render_levels_text",
    "render_levels_dot",
    "render_table",
    "render_rows",
    "render_trees",
    "render_check",
    "render_facts",
    "render_item",
    "out",
    "out_rows",
    "out_bytes",
]


# ---------------------------------------------------------------- bytes


def format_bytes(data: bytes | None, *, hex_output: bool = False) -> str:
    """Show bytes as text when printable UTF-8, else (or with `hex_output`) as
    hex marked with "0x" (which `--hex` input accepts). Text that itself
    starts with "0x" is shown as hex too, so the two never look alike."""
    if data is None:
        return "-"
    if not hex_output:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            # Tabs and newlines would break the one-record-per-line output.
            if text.isprintable() and not text.startswith(("0x", "0X")):
                return text
    return "0x" + data.hex()


def _clip(text: str, width: int) -> str:
    if width > 3 and len(text) > width:
        return text[: width - 3] + "..."
    return text



# ---------------------------------------------------------------- tables and drawings


def _align(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-align columns; the last column is not padded."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        cells.append(row[-1])
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _fill_bar(fill: float, width: int = 10) -> str:
    filled = max(0, min(width, round(fill * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _key_range(info: Any, hex_output: bool, width: int) -> str:
    if info.first_key is None and info.last_key is None:
        return "(empty)"
    first = _clip(format_bytes(info.first_key, hex_output=hex_output), width)
    last = _clip(format_bytes(info.last_key, hex_output=hex_output), width)
    return f"{first} .. {last}"


def _level_role(depth: int, height: int) -> str:
    if height == 1:
        return "root, leaf"
    if depth == 0:
        return "root"
    return "leaves" if depth == height - 1 else "internal"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _children(children: Sequence[int]) -> str:
    """Child page ids; a long list as its first three and its last."""
    if len(children) <= 6:
        return " ".join(str(c) for c in children)
    return " ".join(str(c) for c in children[:3]) + f" ... {children[-1]} ({len(children)} children)"


def _level_summary(depth: int, height: int, level: Sequence[Any]) -> str:
    keys = sum(info.keys for info in level)
    fill = sum(info.fill for info in level) / len(level) if level else 0.0
    return (f"level {depth} ({_level_role(depth, height)}): {_plural(len(level), 'page')}, "
            f"{keys} keys, average fill {fill:.0%}")


def _title(tree: str, levels: Sequence[Sequence[Any]], height: int, entries: int) -> str:
    pages = sum(len(level) for level in levels)
    if len(levels) < height:
        return (f"tree {tree!r}: height {height} ({_plural(len(levels), 'level')} shown), "
                f"{_plural(pages, 'page')} shown, {entries} entries")
    return f"tree {tree!r}: height {height}, {pages} pages, {entries} entries"


def _height_entries(levels: Sequence[Sequence[Any]], height: int | None,
                    entries: int | None) -> tuple[int, int]:
    """The tree's height and entries, by default from `levels` (reaching the leaves)."""
    if entries is None:
        entries = sum(info.keys for info in levels[-1]) if levels else 0
    return len(levels) if height is None else height, entries


def render_levels_text(
    tree: str,
    levels: Sequence[Sequence[Any]],
    *,
    hex_output: bool = False,
    key_width: int = 24,
    max_pages: int | None = None,
    height: int | None = None,
    entries: int | None = None,
) -> str:
    """Draw a tree's pages level by level (root first) as aligned text: per
    level a summary line (pages, keys, average fill), then its first
    `max_pages` pages (all if None) and a count of the rest.

    `levels` is what `Database.tree_levels` returns: lists of PageInfo-like
    objects with page_id, kind, keys, fill, first_key, last_key, children.
    `height` and `entries` are the tree's (default: from `levels`, which
    then must reach the leaves).
    """
    height, entries = _height_entries(levels, height, entries)
    lines: list[str | list[str]] = []  # text as it is, or a row of cells to align
    for depth, level in enumerate(levels):
        lines.append(_level_summary(depth, height, level))
        shown = level if max_pages is None else level[:max_pages]
        for info in shown:
            children = _children(info.children)
            lines.append(
                [
                    f"page {info.page_id}",
                    info.kind,
                    f"{info.keys} keys",
                    f"{_fill_bar(info.fill)} {info.fill:4.0%}",
                    _key_range(info, hex_output, key_width),
                    f"-> {children}" if children else "",
                ]
            )
        if len(shown) < len(level):
            lines.append(f"  ... {_plural(len(level) - len(shown), 'more page')}")
    # One alignment for every level, so columns line up down the whole drawing.
    aligned = iter(_align([row for row in lines if isinstance(row, list)], indent="  "))
    body = [next(aligned) if isinstance(row, list) else row for row in lines]
    if not levels:
        body = ["(no pages: an empty tree gets its root page on the first put)"]
    return "\n".join([_title(tree, levels, height, entries), *body])


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_levels_dot(
    tree: str,
    levels: Sequence[Sequence[Any]],
    *,
    hex_output: bool = False,
    key_width: int = 24,
    max_pages: int | None = None,
    height: int | None = None,
    entries: int | None = None,
) -> str:
    """Draw a tree's pages as a Graphviz digraph: one rank per level, child
    edges solid, the leaf chain dashed; per level its first `max_pages`
    pages (all if None) and one node standing for the rest, so a large tree
    stays small enough to render. Pipe it to `dot -Tsvg`."""
    height, entries = _height_entries(levels, height, entries)
    title = _title(tree, levels, height, entries)
    lines = [
        f"digraph {_dot_quote('dragondb ' + tree)} {{",
        f"  graph [rankdir=TB, labelloc=t, label={_dot_quote(title)}];",
        '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10];',
    ]
    colours = {"leaf": "#fff2cc", "internal": "#cfe2f3"}
    drawn: list[Sequence[Any]] = []
    for depth, level in enumerate(levels):
        shown = level if max_pages is None else level[:max_pages]
        drawn.append(shown)
        lines.append(f"  // {_level_summary(depth, height, level)}")
        for info in shown:
            label = "\n".join(
                [
                    f"page {info.page_id} ({info.kind})",
                    f"{info.keys} keys, fill {info.fill:.0%}",
                    _key_range(info, hex_output, key_width),
                ]
            )
            colour = colours.get(info.kind, "#eeeeee")
            lines.append(
                f"  p{info.page_id} [label={_dot_quote(label)}, fillcolor={_dot_quote(colour)}];"
            )
        same = " ".join(f"p{info.page_id};" for info in shown)
        if len(shown) < len(level):
            rest = level[len(shown):]
            label = f"... {_plural(len(rest), 'more page')}\n{sum(i.keys for i in rest)} keys"
            lines.append(f'  more{depth} [label={_dot_quote(label)}, style="dashed"];')
            same += f" more{depth};"
        lines.append(f"  {{ rank=same; {same} }}")
    ids = {info.page_id for shown in drawn for info in shown}
    for shown in drawn:
        for info in shown:
            for child in info.children:
                if child in ids:
                    lines.append(f"  p{info.page_id} -> p{child};")
    if not levels:
        lines.append('  empty [shape=plaintext, style="", label="(empty tree: no pages)"];')
    elif len(levels) == height:
        leaves = drawn[-1]
        # Leaves are listed left to right, which is the leaf chain's order.
        for left, right in zip(leaves, leaves[1:], strict=False):
            lines.append(
                f"  p{left.page_id} -> p{right.page_id} "
                "[style=dashed, color=gray, constraint=false, arrowhead=open];"
            )
    lines.append("}")
    return "\n".join(lines)


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, bytes):
        return format_bytes(value)
    if isinstance(value, Mapping) and not value:
        return "(none)"
    if isinstance(value, list | tuple):
        return ", ".join(_format_scalar(v) for v in value)
    return str(value)


def _is_matrix(data: Mapping[str, Any]) -> bool:
    """Every value a dict of scalars: rows x columns."""
    return bool(data) and all(
        isinstance(row, Mapping) and not any(isinstance(v, Mapping) for v in row.values())
        for row in data.values()
    )


def _matrix(data: Mapping[str, Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in data.values():
        columns.extend(c for c in row if c not in columns)
    rows = [["", *columns]]
    rows += [
        [str(name), *(_format_scalar(row.get(c, "")) for c in columns)]
        for name, row in data.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    # Names left-aligned, figures right-aligned so digits line up.
    return [
        "  ".join(
            [r[0].ljust(widths[0])] + [c.rjust(widths[i + 1]) for i, c in enumerate(r[1:])]
        ).rstrip()
        for r in rows
    ]


def _table_lines(data: Mapping[str, Any]) -> list[str]:
    if _is_matrix(data):
        return _matrix(data)
    scalars = {k: v for k, v in data.items() if not isinstance(v, Mapping) or not v}
    lines = _align([[str(k), _format_scalar(v)] for k, v in scalars.items()])
    for key, value in data.items():
        if key not in scalars:
            if lines:
                lines.append("")
            lines.append(f"{key}:")
            lines.extend("  " + line if line else line for line in _table_lines(value))
    return lines


def render_table(data: Mapping[str, Any]) -> str:
    """A dict as aligned text: `name  value` rows for its scalars, then each
    nested dict as an indented section under its name; a dict whose values
    are all dicts of scalars becomes a matrix (rows x their keys)."""
    return "\n".join(_table_lines(data))



# ---------------------------------------------------------------- subcommand output


def render_item(key: bytes, value: bytes) -> str:
    """One key/value pair as a JSON record (as in `dump`)."""
    return json.dumps(dump.item(key, value))


def render_rows(rows: Iterable[tuple[bytes, bytes]], *, keys_only: bool, as_json: bool,
                hex_output: bool, limit: int | None) -> Iterator[str]:
    """Scan output, one line per pair (at most `limit`): `key<TAB>value`, the
    key alone, or a JSON record. Lazy, so a long scan streams."""
    for count, (key, value) in enumerate(rows):
        if limit is not None and count >= limit:
            break
        if as_json:
            rec = dump.item(key, value)
            yield json.dumps({k: v for k, v in rec.items() if k.startswith("key")} if keys_only else rec)
        elif keys_only:
            yield format_bytes(key, hex_output=hex_output)
        else:
            yield f"{format_bytes(key, hex_output=hex_output)}\t{format_bytes(value, hex_output=hex_output)}"


def render_trees(counts: Sequence[tuple[str, int]], *, as_json: bool, long: bool) -> list[str]:
    """`trees` output from (name, key count) pairs: names, or with `long`
    aligned name/count rows, or one JSON list."""
    if as_json:
        return [json.dumps([{"name": name, "keys": keys} for name, keys in counts])]
    if long:
        return _align([[name, str(keys)] for name, keys in counts])
    return [name for name, _ in counts]


def render_check(report: Any, *, as_json: bool) -> str:
    """`check` output: a summary line and one indented line per problem, or JSON."""
    figures = {
        "pages_allocated": report.pages_allocated,
        "pages_reachable": report.pages_reachable,
        "pages_free": report.pages_free,
        "pages_leaked": report.pages_leaked,
    }
    if as_json:
        return json.dumps({"ok": report.ok, **figures, "problems": list(report.problems)}, indent=2)
    summary = (
        f"{report.pages_allocated} pages allocated, {report.pages_reachable} reachable, "
        f"{report.pages_free} free, {report.pages_leaked} leaked"
    )
    count = len(report.problems)
    lines = [f"ok: {summary}" if report.ok else f"{count} problem{'s' * (count != 1)}: {summary}"]
    lines += [f"  {problem}" for problem in report.problems]
    return "\n".join(lines)


def render_facts(facts: Mapping[str, Any], *, as_json: bool) -> str:
    """A result dict (`stats`, `bench`): indented JSON, or `render_table`."""
    return json.dumps(facts, indent=2, default=str) if as_json else render_table(facts)


# ---------------------------------------------------------------- writing


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def out_rows(rows: Iterable[tuple[bytes, bytes]], *, keys_only: bool, as_json: bool,
             hex_output: bool, limit: int | None) -> None:
    """Write `render_rows`' lines as they come."""
    for line in render_rows(rows, keys_only=keys_only, as_json=as_json, hex_output=hex_output,
                            limit=limit):
        out(line)


def out_bytes(data: bytes) -> None:
    """Bytes as they are (`get --raw`), after any text already written."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()

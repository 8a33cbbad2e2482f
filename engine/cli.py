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

Exit status (scripts rely on it):

    0  done
    1  not found (key or tree), or `check` found problems
    2  usage error (bad arguments; argparse's own code)
    3  the engine or the OS refused or failed (NotADatabaseError,
       DatabaseLockedError, CorruptionError, StorageIOError, ...)
    4  internal error (a bug; `--verbose` shows the traceback)
    130 interrupted

An error is one line on stderr, `dragondb: error: <message>`, never a
traceback. `--verbose` turns on the engine's loguru diagnostics.

`campaign`, `bench`, `serve` and the `remote-*` subcommands dispatch to
`faults.campaign`, `bench`, `engine.server` and `engine.client`, imported
only when used so the common subcommands start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from loguru import logger

import engine
from engine import dump, log
from engine.errors import DragonDBError
from engine.net.options import add_serve_arguments

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

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # also: check found problems
EXIT_USAGE = 2  # argparse exits with 2 on bad arguments; we keep its code
EXIT_ERROR = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader (e.g. `head`) went away

_PROG = "dragondb"
_DEFAULT_TREE = "default"
_CAMPAIGN = "campaign"

_LIVE = ("\nRead-only: works while another process (e.g. `dragondb serve`) writes the database,"
         " and reads one committed state.")

_EXIT_CODES_HELP = """\
exit status: 0 ok; 1 not found or check problems; 2 usage error;
3 engine or OS error (one line on stderr); 4 internal error; 130 interrupted"""


class _Exit(Exception):
    """A controlled stop with an exit code and one line for stderr."""

    def __init__(self, code: int, message: str, *, label: str = "error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.label = label


# ---------------------------------------------------------------- bytes in/out


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


# ---------------------------------------------------------------- rendering


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
    height = len(levels) if height is None else height
    if entries is None:
        entries = sum(info.keys for info in levels[-1]) if levels else 0
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
    height = len(levels) if height is None else height
    if entries is None:
        entries = sum(info.keys for info in levels[-1]) if levels else 0
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


# ---------------------------------------------------------------- helpers


def _usage(args: argparse.Namespace, message: str) -> NoReturn:
    args.parser.error(message)  # prints usage and raises SystemExit(2)


def _input(args: argparse.Namespace, text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return parse_bytes(text, hex_input=args.hex)
    except ValueError as exc:
        _usage(args, str(exc))


def _show(args: argparse.Namespace, data: bytes) -> str:
    return format_bytes(data, hex_output=getattr(args, "hex_output", False))


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
        raise _Exit(EXIT_ERROR, f"no database at {args.path}") from None
    with db:
        yield db


def _tree(db: Any, args: argparse.Namespace) -> Any:
    """The existing tree named by --tree, or a not-found exit."""
    if args.tree not in db.trees():
        raise _Exit(EXIT_NOT_FOUND, f"no tree {args.tree!r} in {args.path}", label="not found")
    return db.tree(args.tree, create=False)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


# ---------------------------------------------------------------- subcommands


def _cmd_put(args: argparse.Namespace) -> int:
    if args.value_file is not None:
        if len(args.items) != 1:
            _usage(args, "with --value-file, put takes one KEY (its value comes from the file)")
        pairs = [(_input(args, args.items[0]), _read_input(args.value_file))]
    else:
        if len(args.items) % 2:
            _usage(args, "put takes KEY VALUE pairs; the last key has no value")
        items = [_input(args, text) for text in args.items]
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


def _cmd_get(args: argparse.Namespace) -> int:
    key = _input(args, args.key)
    with _open(args, write=False) as db:
        value = _tree(db, args).get(key)
    if value is None:
        raise _Exit(
            EXIT_NOT_FOUND, f"key {_show(args, key)} not in tree {args.tree!r}", label="not found"
        )
    if args.format == "json":
        _out(json.dumps(dump.item(key, value)))
    elif args.raw:
        sys.stdout.flush()
        sys.stdout.buffer.write(value)
        sys.stdout.buffer.flush()
    else:
        _out(_show(args, value))
    return EXIT_OK


def _cmd_delete(args: argparse.Namespace) -> int:
    keys = [_input(args, text) for text in args.keys]
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
        shown = ", ".join(_show(args, key) for key in missing)
        raise _Exit(EXIT_NOT_FOUND, f"not in tree {args.tree!r}: {shown}", label="not found")
    return EXIT_OK


def _cmd_scan(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        _usage(args, "--limit must be >= 0")
    start, end, prefix = (_input(args, t) for t in (args.start, args.end, args.prefix))
    with _open(args, write=False) as db:
        _print_rows(args, _tree(db, args).scan(start, end, reverse=args.reverse, prefix=prefix))
    return EXIT_OK


def _print_rows(args: argparse.Namespace, rows: Iterator[tuple[bytes, bytes]]) -> None:
    for count, (key, value) in enumerate(rows):
        if args.limit is not None and count >= args.limit:
            break
        if getattr(args, "format", "text") == "json":
            rec = dump.item(key, value)
            _out(json.dumps({k: v for k, v in rec.items() if k.startswith("key")} if args.keys_only else rec))
        else:
            _out(_show(args, key) if args.keys_only else f"{_show(args, key)}\t{_show(args, value)}")


def _cmd_trees(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        names = db.trees()
        if args.format == "json":
            _out(json.dumps([{"name": n, "keys": len(db.tree(n, create=False))} for n in names]))
        elif args.long:
            for line in _align([[name, str(len(db.tree(name, create=False)))] for name in names]):
                _out(line)
        else:
            for name in names:
                _out(name)
    return EXIT_OK


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _cmd_stats(args: argparse.Namespace) -> int:
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
    _out(json.dumps(facts, indent=2) if args.json or args.format == "json" else render_table(facts))
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        report = db.check(strict=args.strict)  # strict: CorruptionError, the engine-error exit
    figures = {
        "pages_allocated": report.pages_allocated,
        "pages_reachable": report.pages_reachable,
        "pages_free": report.pages_free,
        "pages_leaked": report.pages_leaked,
    }
    if args.json or args.format == "json":
        _out(json.dumps({"ok": report.ok, **figures, "problems": list(report.problems)}, indent=2))
    else:
        summary = (
            f"{report.pages_allocated} pages allocated, {report.pages_reachable} reachable, "
            f"{report.pages_free} free, {report.pages_leaked} leaked"
        )
        count = len(report.problems)
        _out(f"ok: {summary}" if report.ok else f"{count} problem{'s' * (count != 1)}: {summary}")
        for problem in report.problems:
            _out(f"  {problem}")
    return EXIT_OK if report.ok else EXIT_NOT_FOUND


def _cmd_show(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 1:
        _usage(args, "--depth must be >= 1")
    if args.max_pages < 0:
        _usage(args, "--max-pages must be >= 0 (0: every page)")
    with _open(args, write=False) as db:
        _tree(db, args)
        height = db.tree_stats()[args.tree]["height"]
        levels = db.tree_levels(args.tree, args.depth)
        entries = len(db.tree(args.tree, create=False))
    render = render_levels_dot if args.format == "dot" else render_levels_text
    _out(render(args.tree, levels, hex_output=args.hex_output, key_width=args.key_width,
                max_pages=args.max_pages or None, height=height, entries=entries))
    return EXIT_OK


def _read_input(name: str) -> bytes:
    """The bytes of file `name`, or of stdin for "-"."""
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as f:
        return f.read()


def _cmd_dump(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:
        names = [_tree(db, args).name] if args.tree is not None else db.trees()
        _out(dump.header())
        for name in names:
            _out(dump.tree_line(name))
            for key, value in db.tree(name, create=False).items():
                _out(dump.item_line(key, value, args.binary))
    return EXIT_OK


def _cmd_load(args: argparse.Namespace) -> int:
    """Each tree of the dump in one atomic commit: `Tree.load` into an empty
    tree, `Tree.update` into one holding keys. Read whole before any write."""
    try:
        if args.file == "-":
            trees = dump.parse(sys.stdin.buffer)
        else:
            with open(args.file, "rb") as f:
                trees = dump.parse(f)
    except dump.DumpFormatError as exc:
        raise _Exit(EXIT_ERROR, f"{args.file}: {exc}") from None
    with _open(args, write=True, create=True) as db:
        for name, items in trees:
            tree = db.tree(name)
            if len(tree):
                tree.update(items)
            else:
                tree.load(sorted(items))
            logger.debug("loaded {} item(s) into tree {!r}", len(items), name)
    return EXIT_OK


def _cmd_compact(args: argparse.Namespace) -> int:
    before = Path(args.path).stat().st_size if Path(args.path).exists() else 0
    with _open(args, write=True) as db:
        result = db.compact()
    after = Path(args.path).stat().st_size
    _out(f"compacted: {result['pages_before']} pages -> {result['pages_after']} pages "
         f"({before:,} -> {after:,} bytes)")
    return EXIT_OK


def _cmd_backup(args: argparse.Namespace) -> int:
    with _open(args, write=False) as db:  # read-only: works beside a live writer
        db.backup(args.dest)
    return EXIT_OK


def _cmd_drop_tree(args: argparse.Namespace) -> int:
    with _open(args, write=True) as db:
        args.tree = args.name
        _tree(db, args)
        db.drop_tree(args.name)
    return EXIT_OK


def _import_bench() -> Any:
    try:
        import bench
    except ImportError:
        # bench/ sits beside engine/ in a source checkout but is not installed.
        root = Path(__file__).resolve().parent.parent
        if not (root / "bench" / "__init__.py").is_file():
            raise
        sys.path.insert(0, str(root))
        import bench
    return bench


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.n < 1:
        _usage(args, "-n must be >= 1")
    try:
        bench = _import_bench()
        run = bench.engine_only
    except (ImportError, AttributeError) as exc:
        raise _Exit(EXIT_ERROR, f"the benchmark is not available here ({exc})") from None
    result = run(args.path, args.n)
    _out(json.dumps(result, indent=2, default=str) if args.json else render_table(result))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from engine.net.serve import serve_from_args  # asyncio: loaded only to serve

    def announce(host: str, port: int) -> None:
        sys.stderr.write(f"{_PROG}: serving {args.path} on {host}:{port}\n")
        sys.stderr.flush()

    serve_from_args(args, announce)
    return EXIT_OK


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    from engine.net.client import Client

    try:
        client = Client(args.host, args.port, timeout=args.timeout)
    except OSError as exc:
        raise _Exit(EXIT_ERROR, f"cannot connect to {args.host}:{args.port}: {exc}") from None
    with client:
        yield client


def _cmd_ping(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.ping()
    _out(f"pong from {args.host}:{args.port}")
    return EXIT_OK


def _cmd_remote_get(args: argparse.Namespace) -> int:
    key = _input(args, args.key)
    with _client(args) as client:
        value = client.get(key)
    if value is None:
        raise _Exit(EXIT_NOT_FOUND, f"key {_show(args, key)} not on the server", label="not found")
    _out(_show(args, value))
    return EXIT_OK


def _cmd_remote_put(args: argparse.Namespace) -> int:
    key, value = _input(args, args.key), _input(args, args.value)
    with _client(args) as client:
        client.insert(key, value)
    return EXIT_OK


def _cmd_remote_delete(args: argparse.Namespace) -> int:
    key = _input(args, args.key)
    with _client(args) as client:
        found = client.remove(key)  # the X extension: D does not say whether it existed
    if not found:
        raise _Exit(EXIT_NOT_FOUND, f"key {_show(args, key)} not on the server", label="not found")
    return EXIT_OK


def _cmd_remote_scan(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        _usage(args, "--limit must be >= 0")
    start, end, prefix = (_input(args, t) for t in (args.start, args.end, args.prefix))
    with _client(args) as client:
        rows = client.scan(start, end, reverse=args.reverse, prefix=prefix)
        _print_rows(args, rows)
    return EXIT_OK


def _cmd_remote_shutdown(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.shutdown()  # RemoteError unless the server runs with --allow-shutdown
    _out(f"{args.host}:{args.port} is shutting down")
    return EXIT_OK


# ---------------------------------------------------------------- the parser

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
    _CAMPAIGN: (
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


def _build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command` is the subcommand about to run, if known."""
    fmt = argparse.RawDescriptionHelpFormatter
    verbose_help = "show the engine's diagnostics on stderr"
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="DragonDB, a verified B+ tree storage engine. Database subcommands take "
        "the database path first; `dragondb SUBCOMMAND --help` explains each.",
        epilog=_EXIT_CODES_HELP,
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
        "-t", "--tree", default=_DEFAULT_TREE, metavar="NAME", help="tree (default: %(default)s)"
    )
    hex_in = argparse.ArgumentParser(add_help=False)
    hex_in.add_argument("--hex", action="store_true", help="KEY/VALUE arguments are hex, not text")
    hex_out = argparse.ArgumentParser(add_help=False)
    hex_out.add_argument(
        "-X", "--hex-output", action="store_true", help="print bytes as hex even when printable"
    )
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    remote.add_argument("--port", type=int, default=8080, help="server port (default: %(default)s)")
    remote.add_argument(
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
            epilog=(epilog + "\n\n" if epilog else "") + _EXIT_CODES_HELP,
            parents=[common, *parents],
            formatter_class=fmt,
            usage=_USAGE.get(name),
        )
        sub.set_defaults(func=func, parser=sub)
        return sub

    fmt_json = argparse.ArgumentParser(add_help=False)
    fmt_json.add_argument("--format", choices=("text", "json"), default="text",
                          help="output format (default: %(default)s)")
    sub = add("put", _cmd_put, path, tree, hex_in)
    sub.add_argument("items", nargs="+", metavar="KEY VALUE")
    sub.add_argument("--value-file", metavar="F", help="the value is the bytes of file F (- for stdin); one KEY")
    sub = add("get", _cmd_get, path, tree, hex_in, hex_out, fmt_json)
    sub.add_argument("key", metavar="KEY")
    sub.add_argument("--raw", action="store_true", help="write the value's bytes as they are")
    add("delete", _cmd_delete, path, tree, hex_in, hex_out).add_argument(
        "keys", nargs="+", metavar="KEY"
    )
    add("scan", _cmd_scan, path, tree, hex_in, hex_out, scan, fmt_json)
    add("trees", _cmd_trees, path, fmt_json).add_argument(
        "-l", "--long", action="store_true", help="with key counts"
    )
    add("stats", _cmd_stats, path, fmt_json).add_argument("--json", action="store_true", help="print JSON")
    sub = add("check", _cmd_check, path, fmt_json)
    sub.add_argument("--json", action="store_true", help="print JSON")
    sub.add_argument("--strict", action="store_true",
                     help="a problem is an engine error (CorruptionError, exit 3), not exit 1")
    sub = add("dump", _cmd_dump, path)
    sub.add_argument("-t", "--tree", metavar="NAME", help="only this tree (default: all)")
    sub.add_argument("--binary", action="store_true", help="every key and value as base64")
    add("load", _cmd_load, path).add_argument("file", metavar="FILE", help="a dump, or - for stdin")
    add("compact", _cmd_compact, path)
    add("backup", _cmd_backup, path).add_argument("dest", metavar="DEST", help="the copy's path")
    add("drop-tree", _cmd_drop_tree, path).add_argument("name", metavar="TREE")
    sub = add("show", _cmd_show, path, tree, hex_out)
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
    add(_CAMPAIGN, None)  # listed for --help only: main() hands its arguments to faults.campaign
    sub = add("bench", _cmd_bench, path)
    sub.add_argument(
        "-n", type=int, default=10_000, metavar="N", help="keys (default: %(default)s)"
    )
    sub.add_argument("--json", action="store_true", help="print JSON")
    add_serve_arguments(add("serve", _cmd_serve))
    add("ping", _cmd_ping, remote)
    add("remote-get", _cmd_remote_get, remote, hex_in, hex_out).add_argument("key", metavar="KEY")
    sub = add("remote-put", _cmd_remote_put, remote, hex_in)
    sub.add_argument("key", metavar="KEY")
    sub.add_argument("value", metavar="VALUE")
    add("remote-delete", _cmd_remote_delete, remote, hex_in, hex_out).add_argument("key", metavar="KEY")
    add("remote-scan", _cmd_remote_scan, remote, hex_in, hex_out, scan)
    add("remote-shutdown", _cmd_remote_shutdown, remote)
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


# ---------------------------------------------------------------- entry point


def _error(message: str, label: str = "error") -> None:
    sys.stderr.write(f"{_PROG}: {label}: {message}\n")
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


def _run_campaign(argv: list[str]) -> int:
    try:
        from faults import campaign
    except ImportError as exc:
        raise _Exit(EXIT_ERROR, f"the fault campaign is not available here ({exc})") from None
    code = campaign.main(argv)
    return EXIT_OK if code is None else int(code)


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
        if rest and rest[0] == _CAMPAIGN:
            # campaign has its own parser (and its own --help) in faults.campaign.
            _set_verbose(verbose)
            return _guard(lambda: _run_campaign(rest[1:]))
        parser = _build_parser(rest[0] if rest else None)
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
    except _Exit as exc:
        _error(exc.message, exc.label)
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return _EXIT_BROKEN_PIPE
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

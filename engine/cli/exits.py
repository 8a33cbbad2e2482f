"""The `dragondb` command's exit statuses (scripts rely on them), and the
exception that ends a subcommand with one of them and one line on stderr.

    0  done
    1  not found (key or tree), or `check` found problems
    2  usage error (bad arguments; argparse's own code)
    3  the engine or the OS refused or failed (NotADatabaseError,
       DatabaseLockedError, CorruptionError, StorageIOError, ...)
    4  internal error (a bug; `--verbose` shows the traceback)
    130 interrupted
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "EXIT_ERROR",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CommandError",
]

PROG = "dragondb"

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # also: check found problems
EXIT_USAGE = 2  # argparse exits with 2 on bad arguments; we keep its code
EXIT_ERROR = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader (e.g. `head`) went away

EXIT_CODES_HELP = """\
exit status: 0 ok; 1 not found or check problems; 2 usage error;
3 engine or OS error (one line on stderr); 4 internal error; 130 interrupted"""


class CommandError(Exception):
    """A controlled stop with an exit code and one line for stderr,
    `dragondb: <label>: <message>`."""

    def __init__(self, code: int, message: str, *, label: str = "error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.label = label

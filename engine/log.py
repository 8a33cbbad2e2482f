"""The engine's diagnostics: loguru, imported only when logging is on.

The library is silent by default and `import engine` does not import
loguru (half of the import time it used to take). `enable()` imports
loguru and turns the engine's records on; `disable()` turns them off again.
Records go to loguru's handlers under the name of the calling module
("engine.db", ...). Only cold paths log (failed automatic checkpoints,
errors while closing): never a put, get or scan.
"""

from __future__ import annotations

from typing import Any

__all__ = ["enable", "disable", "enabled", "warning", "debug"]

_enabled = False


def enable() -> None:
    """Send the engine's diagnostics to loguru (imports it)."""
    global _enabled
    from loguru import logger

    logger.enable("engine")
    _enabled = True


def disable() -> None:
    """Silence the engine again (the default)."""
    global _enabled
    _enabled = False
    import sys

    if "loguru" in sys.modules:
        sys.modules["loguru"].logger.disable("engine")


def enabled() -> bool:
    return _enabled


def _emit(level: str, message: str, args: tuple[Any, ...]) -> None:
    from loguru import logger

    logger.opt(depth=2).log(level, message, *args)


def warning(message: str, *args: Any) -> None:
    """Log a warning (loguru `{}` formatting) when logging is on."""
    if _enabled:
        _emit("WARNING", message, args)


def debug(message: str, *args: Any) -> None:
    """Log a debug record when logging is on."""
    if _enabled:
        _emit("DEBUG", message, args)

"""The network server's older import path and `python -m engine.server`.

The server lives in `engine.net` (`engine.net.server`, `engine.net.serve`,
`engine.net.options`, `engine.net.protocol`); this module keeps the names it
had.
"""

import sys

from engine.net.options import add_serve_arguments
from engine.net.protocol import (
    DEFAULT_MAX_BODY,
    NOT_FOUND_MESSAGE,
    SCAN_MAX_ITEMS,
    FramingError,
    RequestParser,
    decode_insert_body,
    decode_key_body,
    decode_scan_body,
    encode_error,
)
from engine.net.protocol import encode_get_reply as encode_get
from engine.net.serve import main, serve, serve_from_args
from engine.net.server import Server

__all__ = [
    "DEFAULT_MAX_BODY",
    "FramingError",
    "NOT_FOUND_MESSAGE",
    "RequestParser",
    "SCAN_MAX_ITEMS",
    "Server",
    "add_serve_arguments",
    "decode_insert_body",
    "decode_key_body",
    "decode_scan_body",
    "encode_error",
    "encode_get",
    "main",
    "serve",
    "serve_from_args",
]

if __name__ == "__main__":
    sys.exit(main())

"""The network client's older import path: `engine.net.client` and the
request encoders of `engine.net.protocol`, under the names they had. The
load generator that lived here is `bench.load.bench_load`."""

from engine.net.client import Client, ServerShutdownError
from engine.net.protocol import (
    NOT_FOUND_MESSAGE,
    REMOTE_ERRORS,
    ProtocolError,
    RemoteError,
    encode_delete,
    encode_get,
    encode_insert,
    encode_remove,
    encode_scan,
    remote_error,
)

__all__ = [
    "Client",
    "NOT_FOUND_MESSAGE",
    "ProtocolError",
    "REMOTE_ERRORS",
    "RemoteError",
    "ServerShutdownError",
    "encode_delete",
    "encode_get",
    "encode_insert",
    "encode_remove",
    "encode_scan",
    "remote_error",
]

"""DragonDB over TCP: the wire protocol, the server and the client.

    protocol   the bytes, sans I/O: request framing, body and reply codecs,
               error names (docs/protocol.md)
    options    ServerOptions: every server option, checked, and its
               command-line form
    handlers   what each request does to the tree
    server     Server: asyncio connections, the thread pool, shutdown
    serve      serve() until a signal, and `python -m engine.server`
    client     Client: a blocking client

The submodules are imported on use, so `dragondb` subcommands that do not
touch the network load none of it. `engine.server` and `engine.client` are
the older import paths, kept.
"""

__all__ = ["client", "handlers", "options", "protocol", "serve", "server"]

"""What a transaction (`engine.txn.Txn`) asks of the layers under it, as
plain objects the tests can look into: a page store in a dict for the buffer
pool, the pager's allocate/free, and the log's forget/spill_many. With them
a tree or a transaction is driven page by page, without a file or a log."""

from __future__ import annotations


class Store:
    """A `PageStore` in a dict; `reads` lists the pages read."""

    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.reads: list[int] = []

    def read_page(self, page_id: int, buf: memoryview) -> None:
        self.reads.append(page_id)
        buf[:] = self.pages[page_id]

    def write_page(self, page_id: int, buf: memoryview) -> None:
        self.pages[page_id] = bytes(buf)


class Pages:
    """The pager's part: new page ids from `first` on, and the frees, in order."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.freed: list[int] = []

    def allocate(self) -> int:
        self.next += 1
        return self.next - 1

    def free(self, page_id: int) -> None:
        self.freed.append(page_id)


class Log:
    """The log's part: the pages whose spilled images were forgotten, and
    the images spilled (page id, bytes)."""

    def __init__(self) -> None:
        self.forgotten: list[int] = []
        self.spilled: list[tuple[int, bytes]] = []

    def forget(self, page_id: int) -> None:
        self.forgotten.append(page_id)

    def spill_many(self, pages) -> None:
        self.spilled += [(pid, bytes(image)) for pid, image in pages]

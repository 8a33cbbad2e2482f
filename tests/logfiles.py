"""Small tools for testing `engine.wal` on a real log file: a `BlockFile`
that records its calls, builders of logs, payloads and page images."""

from __future__ import annotations

from engine.codec import PAGE_SIZE, seal
from engine.disk import SECTOR, DirectFile
from engine.metapage import Meta, encode_meta
from engine.wal import Wal
from engine.walformat import OP_PUT, encode_ops
from faults.io import FaultPlan

__all__ = ["REC", "SpyFile", "faulty_wal", "flip", "meta_image", "new_wal", "next_sector", "page_image", "put_payload"]

REC = 25  # record header bytes: length u32 | crc u32 | lsn u64 | durable u64 | type u8


class SpyFile:
    """A `BlockFile` forwarding to a real one, logging writes and reads and
    running `on_sync` (once) inside the next `sync`, as a thread committing
    while the leader's fsync runs would."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.direct = inner.direct
        self.writes: list[tuple[int, int]] = []
        self.reads: list[tuple[int, int]] = []
        self.on_sync = None

    def read_into(self, offset, buf):
        self.reads.append((offset, len(buf)))
        return self.inner.read_into(offset, buf)

    def write(self, offset, data):
        self.writes.append((offset, len(data)))
        self.inner.write(offset, data)

    def sync(self):
        hook, self.on_sync = self.on_sync, None
        if hook is not None:
            hook()
        self.inner.sync()

    def size(self):
        return self.inner.size()

    def extend(self, new_size):
        self.inner.extend(new_size)

    def truncate(self, new_size):
        self.inner.truncate(new_size)

    def close(self):
        self.inner.close()


def put_payload(i: int, size: int = 40) -> bytes:
    return encode_ops([(OP_PUT, "t", b"k%04d" % i, bytes([i % 251 + 1]) * size)])


def new_wal(tmp_path, sync: str = "off", name: str = "log") -> Wal:
    wal = Wal(SpyFile(DirectFile.open(tmp_path / name, True, "auto")), sync)
    wal.reset(0, sync=False)
    return wal


def page_image(fill: int) -> bytes:
    image = bytearray([fill]) * PAGE_SIZE
    seal(image)
    return bytes(image)


def meta_image(page_count: int) -> bytes:
    """A sealed metadata page of a database of `page_count` pages, as every
    checkpoint holds."""
    image = bytearray(PAGE_SIZE)
    encode_meta(Meta(page_count=page_count), image)
    seal(image)
    return bytes(image)


def next_sector(pos: int) -> int:
    return pos + (-pos) % SECTOR


def faulty_wal(tmp_path, plan: FaultPlan) -> Wal:
    opener = plan.opener(lambda p, c: DirectFile.open(p, c, "auto"))
    wal = Wal(SpyFile(opener(str(tmp_path / "log"), True)), "off")
    wal.reset(0, sync=False)
    wal.commit(put_payload(0))
    return wal


def flip(data: bytes, at: int) -> bytes:
    bad = bytearray(data)
    bad[at] ^= 0x40
    return bytes(bad)



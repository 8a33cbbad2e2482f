"""The metadata page (page 0), pure functions over bytes, no I/O (sans-I/O):
the file's magic and format, its page count, the free list's head, the LSN of
the last checkpoint and the tree catalog (each tree's root and key count).

After the 32-byte page header of `engine/codec.py` (type META; its lsn field
holds checkpoint_lsn too)::

    offset size field           why this width
    32     8    magic           b"DRAGONDB": tells a DragonDB file from any other
    40     4    version         u32 FORMAT_VERSION: another layout is refused, not misread
    44     4    page_size       u32: 4096; another size is refused
    48     4    page_count      u32 page ids: 16 TiB files
    52     4    freelist_head   u32: the first free-list trunk page, 0 when none
    56     4    free_count      u32: pages on the free list
    60     2    tree_count      u16: the trees table's entries (at most 287 fit)
    62     2    reserved        0
    64     8    checkpoint_lsn  u64: the log's LSN this file is consistent with
    72     -    trees           per tree, sorted by name: name_len u8 | name (UTF-8,
                                1..255 bytes) | root u32 (0: empty) | count u64

Each tree takes 13 + len(name) bytes; `META_TREES_ROOM` (4024) bounds them all.
"""

from __future__ import annotations

import struct

from engine.codec import (
    HEADER_FIELDS,
    MAX_LEAF_KEYS,
    META,
    PAGE_SIZE,
    expect_page,
    seal,
    verify,  # noqa: F401 - named by encode_meta's contract
)
from engine.errors import CorruptionError, NotADatabaseError

__all__ = ["MAGIC", "FORMAT_VERSION", "META_TREES_ROOM", "Meta", "encode_meta", "decode_meta",
           "has_magic", "magic_flips"]

MAGIC = b"DRAGONDB"
FORMAT_VERSION = 1
_META_FIXED = struct.Struct("<8sIIIIIHHQ")  # at offset 32, 40 bytes
_TREE_ENTRY = struct.Struct("<IQ")


class Meta:
    """The decoded metadata page: counts, free-list head and named tree roots."""

    __slots__ = ("page_count", "freelist_head", "free_count", "checkpoint_lsn", "trees")

    def __init__(self, page_count: int = 1, freelist_head: int = 0, free_count: int = 0,
                 checkpoint_lsn: int = 0, trees: dict[str, tuple[int, int]] | None = None) -> None:
        self.page_count = page_count
        self.freelist_head = freelist_head
        self.free_count = free_count
        self.checkpoint_lsn = checkpoint_lsn
        self.trees = trees if trees is not None else {}  # name -> (root page id, key count)

    def check_invariants(self) -> list[str]:
        """What no engine writes, each violated one reported:
        page_count >= 1 (page 0 is this page); freelist_head and free_count below page_count;
        each tree: a name of 1..255 UTF-8 bytes; root below page_count;
        count 0 without a root, else at most (page_count - 1) * MAX_LEAF_KEYS.
        """
        out = []
        count = self.page_count
        if count < 1 or self.freelist_head >= count or self.free_count >= count:
            out.append(f"page count {count}, free-list head {self.freelist_head}, "
                       f"free count {self.free_count} are inconsistent")
        most_keys = max(count - 1, 0) * MAX_LEAF_KEYS  # every page but this one a leaf of the smallest cells
        for name, (root, kcount) in self.trees.items():
            if not 0 < len(name.encode()) < 256 or root >= count or kcount > (most_keys if root else 0):
                out.append(f"tree {name!r} (root {root}, {kcount} keys) is impossible in {count} pages")
        return out

    @staticmethod
    def trees_size(trees: dict[str, tuple[int, int]]) -> int:
        return sum(1 + len(name.encode()) + _TREE_ENTRY.size for name in trees)


META_TREES_ROOM = PAGE_SIZE - 72


def encode_meta(meta: Meta, page: bytearray | memoryview) -> None:
    """Write the metadata page and seal it.

    pre: len(page) >= PAGE_SIZE and Meta.trees_size(meta.trees) <= META_TREES_ROOM
    pre: meta.check_invariants() == []
    pre: all(0 <= x < 2**32 for x in (meta.page_count, meta.freelist_head, meta.free_count)) and 0 <= meta.checkpoint_lsn < 2**64
    pre: all(len(name.encode()) < 256 and 0 <= root < 2**32 and 0 <= count < 2**64 for name, (root, count) in meta.trees.items())
    post[page]: verify(page) and has_magic(page)
    post: _meta_fields(decode_meta(page)) == _meta_fields(meta)
    """
    page[:PAGE_SIZE] = bytes(PAGE_SIZE)
    HEADER_FIELDS.pack_into(page, 4, META, 0, 0, 0, 0, 0, 0, meta.checkpoint_lsn, 0, 0)
    _META_FIXED.pack_into(page, 32, MAGIC, FORMAT_VERSION, PAGE_SIZE, meta.page_count,
                          meta.freelist_head, meta.free_count, len(meta.trees), 0, meta.checkpoint_lsn)
    pos = 72
    for name in sorted(meta.trees):
        raw = name.encode()
        root, count = meta.trees[name]
        assert pos + 1 + len(raw) + 12 <= PAGE_SIZE, "encode_meta: trees overflow the page"
        page[pos] = len(raw)
        page[pos + 1 : pos + 1 + len(raw)] = raw
        _TREE_ENTRY.pack_into(page, pos + 1 + len(raw), root, count)
        pos += 1 + len(raw) + 12
    seal(page)


def has_magic(page: bytes | bytearray | memoryview) -> bool:
    return bytes(page[32:40]) == MAGIC


def magic_flips(page: bytes | bytearray | memoryview) -> int:
    """How many bits of the metadata page's magic differ from MAGIC (0 when
    `has_magic`): a few mean a damaged database, many another file."""
    return sum(bin(a ^ b).count("1") for a, b in zip(bytes(page[32:40]), MAGIC, strict=False))


def decode_meta(page: bytes | bytearray | memoryview) -> Meta:
    """The metadata page; `NotADatabaseError` without the magic or with
    another format, `CorruptionError` on damage or on fields `Meta.check_invariants` refuses."""
    data = bytes(page[:PAGE_SIZE])
    if len(data) < PAGE_SIZE or not has_magic(data):
        raise NotADatabaseError("not a DragonDB file (bad magic)")
    expect_page(data, META, 0)
    magic, version, psize, count, head, nfree, ntrees, _, ckpt = _META_FIXED.unpack_from(data, 32)
    if version != FORMAT_VERSION or psize != PAGE_SIZE:
        raise NotADatabaseError(f"unsupported format version {version} / page size {psize}")
    trees = {}
    pos = 72
    try:
        for _ in range(ntrees):
            ln = data[pos]
            name = data[pos + 1 : pos + 1 + ln].decode()
            if name in trees:
                raise CorruptionError(f"metadata page: tree {name!r} listed twice")
            trees[name] = _TREE_ENTRY.unpack_from(data, pos + 1 + ln)
            pos += 1 + ln + 12
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise CorruptionError("metadata page: tree table is malformed") from exc
    meta = Meta(count, head, nfree, ckpt, trees)
    problems = meta.check_invariants()
    if problems:
        raise CorruptionError("metadata page: " + "; ".join(problems))
    return meta


def _meta_fields(meta: Meta) -> tuple:
    """What the metadata page stores, for contracts."""
    return (meta.page_count, meta.freelist_head, meta.free_count, meta.checkpoint_lsn, dict(meta.trees))

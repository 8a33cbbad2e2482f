"""The stores under test: the engine and its peers, each through its normal, safe API.

Every adapter offers the same small surface, so one workload drives them all:

    open(durable=False, pool_pages=None, direct_io=None)   close()
    begin() / commit()        brackets a bulk phase; commit() makes it durable
    put_many(keys, values)    single puts (inside begin/commit); `values` may be
                              an endless cycle, hence zip(..., strict=False)
    get_many(keys) -> int     point gets, returns how many came back missing
    scan() -> int             full ordered scan, returns the item count
    delete_many(keys)         single deletes (inside begin/commit)
    put_batch(keys, values)   the store's atomic batch of puts, durable when it returns
    commit_put(key, value)    one put that is durable when it returns
    reader() / writer()       a per-thread handle with get_many / commit_put

An operation a store cannot do (bplustree has no delete, `dbm.dumb` never
fsyncs) raises `Unsupported` with the reason, and the report shows that
reason instead of a number. Loops over keys live inside the adapters so each
store runs its own tightest idiomatic loop (bound methods hoisted).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sqlite3
from collections.abc import Iterable, Sequence

__all__ = ["STORES", "DEFAULT_STORES", "Store", "Unsupported", "available", "make_store"]


class Unsupported(Exception):
    """The store has no safe way to do this phase; str(exc) says why."""


class Store:
    """Base adapter. Subclasses override what their store can do."""

    name = "?"
    #: one line for the report: what API the adapter uses and any caveat
    note = ""
    #: default file name inside the store's directory
    filename = "bench.db"

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.path = os.path.join(directory, self.filename)

    @staticmethod
    def available() -> str | None:
        """None when the store can run here, else the reason it cannot."""
        return None

    @staticmethod
    def version() -> str:
        return ""

    def open(self, *, durable: bool = False, pool_pages: int | None = None,
             direct_io: bool | str | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def begin(self) -> None:
        """Start a bulk phase (the single puts that follow share one commit)."""

    def commit(self) -> None:
        """End a bulk phase durably."""

    def put_many(self, keys: Sequence[bytes], values: Iterable[bytes]) -> None:
        raise NotImplementedError

    def get_many(self, keys: Sequence[bytes]) -> int:
        raise NotImplementedError

    def scan(self) -> int:
        raise NotImplementedError

    #: why the store cannot delete, or None when it can
    no_delete: str | None = None

    def delete_many(self, keys: Sequence[bytes]) -> None:
        raise NotImplementedError

    def commit_put(self, key: bytes, value: bytes) -> None:
        raise Unsupported(f"{self.name} has no durable commit")

    def put_batch(self, keys: Sequence[bytes], values: Iterable[bytes]) -> None:
        """All of `keys` in one atomic, durable batch (a transaction)."""
        raise Unsupported(f"{self.name}: the batch phase compares the engine with sqlite3 and lmdb")

    def reader(self) -> Store:
        """A handle one thread may use for get_many while others do too."""
        return self

    def writer(self) -> Store:
        """A handle one thread may use for commit_put while others do too."""
        return self

    def release(self) -> None:
        """Drop a handle from reader()/writer() (a no-op when it is self)."""

    def stats(self) -> dict | None:
        return None


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --------------------------------------------------------------------- engine


#: The pool of "engine-4MiB": the 1,024 frames `engine.open` had before the
#: pool sized itself. The engine reads with O_DIRECT, so its pool is its only
#: cache: a tree larger than it reads most pages from the disk on every pass.
SMALL_POOL_PAGES = 1024


class EngineStore(Store):
    """DragonDB: sync="normal" for bulk phases closed by db.commit(); sync="full"
    for the durable single-put phases, where every put is fsynced."""

    name = "engine"
    note = ('engine.open(path) as it comes: the pool sizes itself (up to 1/8 of RAM); '
            'sync="normal" + db.commit() for bulk; sync="full" per put')
    filename = "bench.ddb"
    pool_default: int | None = None

    @staticmethod
    def available() -> str | None:
        try:
            engine = importlib.import_module("engine")
        except Exception as exc:  # any import failure means "not yet"
            return f"import engine failed: {exc!r}"
        if not callable(getattr(engine, "open", None)):
            return "engine.open is not there yet"
        return None

    @staticmethod
    def version() -> str:
        return _dist_version("dragondb")

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        import engine

        kwargs: dict = {"sync": "full" if durable else "normal"}
        if pool_pages is None:
            pool_pages = self.pool_default
        if pool_pages is not None:
            kwargs["pool_pages"] = pool_pages
        if direct_io is not None:
            kwargs["direct_io"] = direct_io
        self.db = engine.open(self.path, **kwargs)
        self.tree = self.db.tree("default")

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        self.db.commit()

    def put_many(self, keys, values) -> None:
        put = self.tree.put
        for k, v in zip(keys, values, strict=False):
            put(k, v)

    def get_many(self, keys) -> int:
        get = self.tree.get
        missing = 0
        for k in keys:
            if get(k) is None:
                missing += 1
        return missing

    def scan(self) -> int:
        n = 0
        for _ in self.tree.scan():
            n += 1
        return n

    def delete_many(self, keys) -> None:
        delete = self.tree.delete
        for k in keys:
            delete(k)

    def commit_put(self, key, value) -> None:
        self.tree.put(key, value)  # opened with sync="full": durable on return

    def put_batch(self, keys, values) -> None:
        name = self.tree.name
        with self.db.batch() as b:
            put = b.put
            for k, v in zip(keys, values, strict=False):
                put(name, k, v)
        self.db.commit()

    def stats(self) -> dict | None:
        return dict(self.db.stats())

    def tree_height(self) -> int | None:
        levels = getattr(self.db, "tree_levels", None)
        return len(levels("default")) if levels is not None else None


class EngineDefaultPoolStore(EngineStore):
    """The engine with the fixed 1,024-frame (4 MiB) pool it had by default
    before the pool sized itself."""

    name = "engine-4MiB"
    note = ("pool_pages=1024 (4 MiB, the old default): a tree larger than the pool "
            "reads most pages with O_DIRECT on every pass")
    pool_default = SMALL_POOL_PAGES


class ModelStore(EngineStore):
    """Development stand-in: models.ModelDatabase (in memory, kept across reopen)."""

    name = "model"
    note = "models.ModelDatabase (dict-based reference model; development only)"
    _kept: dict = {}

    @staticmethod
    def available() -> str | None:
        try:
            models = importlib.import_module("models")
        except Exception as exc:
            return f"import models failed: {exc!r}"
        if not hasattr(models, "ModelDatabase"):
            return "models.ModelDatabase is not there yet"
        return None

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        import models

        db = self._kept.get(self.dir)
        if db is None:
            db = self._kept[self.dir] = models.ModelDatabase()
        self.db = db
        self.tree = db.tree("default")

    def close(self) -> None:
        """The model lives in memory; closing it would lose it."""

    def stats(self) -> dict | None:
        return None


# --------------------------------------------------------------------- sqlite3

_SQL_PUT = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
_SQL_GET = "SELECT v FROM kv WHERE k = ?"
_SQL_DEL = "DELETE FROM kv WHERE k = ?"


class SqliteStore(Store):
    """sqlite3: WAL, synchronous=FULL, a WITHOUT ROWID table keyed by the blob.
    Bulk phases are one BEGIN..COMMIT of single-row statements; the durable
    phase runs in autocommit mode, one transaction per statement."""

    name = "sqlite3"
    note = "WAL, synchronous=FULL, WITHOUT ROWID; one txn of single-row INSERT OR REPLACE"
    filename = "bench.sqlite"

    @staticmethod
    def version() -> str:
        return sqlite3.sqlite_version

    def _connect(self, pool_pages=None) -> sqlite3.Connection:
        # isolation_level=None: the module issues no implicit BEGIN; we say when.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=120,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if pool_pages is not None:
            conn.execute(f"PRAGMA cache_size=-{pool_pages * 4}")  # negative: KiB
        return conn

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        self.conn = self._connect(pool_pages)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID"
        )
        self.cur = self.conn.cursor()
        self._pool_pages = pool_pages

    def close(self) -> None:
        self.cur.close()
        self.conn.close()

    def begin(self) -> None:
        self.cur.execute("BEGIN")

    def commit(self) -> None:
        self.cur.execute("COMMIT")

    def put_many(self, keys, values) -> None:
        ex = self.cur.execute
        for k, v in zip(keys, values, strict=False):
            ex(_SQL_PUT, (k, v))

    def get_many(self, keys) -> int:
        ex = self.cur.execute
        missing = 0
        for k in keys:
            if ex(_SQL_GET, (k,)).fetchone() is None:
                missing += 1
        return missing

    def scan(self) -> int:
        n = 0
        for _ in self.conn.execute("SELECT k, v FROM kv ORDER BY k"):
            n += 1
        return n

    def delete_many(self, keys) -> None:
        ex = self.cur.execute
        for k in keys:
            ex(_SQL_DEL, (k,))

    def commit_put(self, key, value) -> None:
        self.cur.execute(_SQL_PUT, (key, value))  # autocommit: one durable txn

    def put_batch(self, keys, values) -> None:
        self.begin()
        self.put_many(keys, values)
        self.commit()

    def _handle(self) -> SqliteStore:
        # A connection per thread: the normal way to use sqlite3 from threads.
        h = SqliteStore(self.dir)
        h.conn = self._connect(self._pool_pages)
        h.cur = h.conn.cursor()
        h._pool_pages = self._pool_pages
        return h

    reader = _handle
    writer = _handle

    def release(self) -> None:
        self.close()


# --------------------------------------------------------------------- lmdb


class LmdbStore(Store):
    """lmdb: one write transaction per bulk phase, one per durable put
    (sync=True, the default, fsyncs at every commit)."""

    name = "lmdb"
    note = "one write txn per bulk phase; one txn per durable put (sync=True)"

    @staticmethod
    def available() -> str | None:
        try:
            importlib.import_module("lmdb")
        except ImportError as exc:
            return f"not installed ({exc}); pip install -e '.[bench]'"
        return None

    @staticmethod
    def version() -> str:
        return _dist_version("lmdb")

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        import lmdb

        if pool_pages is not None:
            raise Unsupported("lmdb maps the file; it has no page-pool size")
        # map_size is address space, not disk: the file grows only as pages are used.
        self.env = lmdb.open(self.dir, map_size=16 << 30, sync=True, metasync=True,
                             max_readers=64, max_spare_txns=16)
        self._txn = None

    def close(self) -> None:
        self.env.close()

    def begin(self) -> None:
        self._txn = self.env.begin(write=True)

    def commit(self) -> None:
        self._txn.commit()
        self._txn = None

    def put_many(self, keys, values) -> None:
        put = self._txn.put
        for k, v in zip(keys, values, strict=False):
            put(k, v)

    def get_many(self, keys) -> int:
        missing = 0
        with self.env.begin(buffers=False) as txn:
            get = txn.get
            for k in keys:
                if get(k) is None:
                    missing += 1
        return missing

    def scan(self) -> int:
        n = 0
        with self.env.begin() as txn:
            for _ in txn.cursor():
                n += 1
        return n

    def delete_many(self, keys) -> None:
        delete = self._txn.delete
        for k in keys:
            delete(k)

    def commit_put(self, key, value) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def put_batch(self, keys, values) -> None:
        self.begin()
        self.put_many(keys, values)
        self.commit()


# --------------------------------------------------------------------- bplustree


def _bytes_serializer():
    """bplustree 0.0.3 defaults to an int serializer (bytes keys raise
    AttributeError: 'bytes' object has no attribute 'to_bytes'); it ships none
    for bytes, so we give it the identity."""
    from bplustree.serializer import Serializer

    class BytesSerializer(Serializer):
        __slots__ = []

        def serialize(self, obj: bytes, key_size: int) -> bytes:
            assert len(obj) <= key_size, "serialize: key longer than key_size"
            return bytes(obj)

        def deserialize(self, data: bytes) -> bytes:
            return bytes(data)

    return BytesSerializer()


class BPlusTreeStore(Store):
    """bplustree (NicolasLM, pure Python): every insert is its own write
    transaction, committed with an fsync of its WAL; it has no batch API for
    unsorted keys and no delete."""

    name = "bplustree"
    note = "pure Python; each insert is its own fsynced txn; no delete; order=33 fits 4 KiB"
    #: the largest order whose nodes fit a 4 KiB page with 16 B keys, 100 B values
    ORDER = 33

    @staticmethod
    def available() -> str | None:
        try:
            importlib.import_module("bplustree")
        except ImportError as exc:
            return f"not installed ({exc}); pip install -e '.[bench]'"
        return None

    @staticmethod
    def version() -> str:
        return _dist_version("bplustree")

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        import bplustree

        kwargs = {}
        if pool_pages is not None:
            kwargs["cache_size"] = pool_pages  # its node cache, in pages
        self.tree = bplustree.BPlusTree(self.path, page_size=4096, order=self.ORDER,
                                        key_size=16, value_size=100,
                                        serializer=_bytes_serializer(), **kwargs)

    def close(self) -> None:
        self.tree.close()

    def put_many(self, keys, values) -> None:
        insert = self.tree.insert
        for k, v in zip(keys, values, strict=False):
            insert(k, v, replace=True)

    def get_many(self, keys) -> int:
        get = self.tree.get
        missing = 0
        for k in keys:
            if get(k) is None:
                missing += 1
        return missing

    def scan(self) -> int:
        n = 0
        try:
            for _ in self.tree.items():
                n += 1
        except RuntimeError as exc:
            # Its _iter_slice ends with `raise StopIteration()` inside a generator,
            # which Python >= 3.7 (PEP 479) turns into this RuntimeError, raised
            # only after the last leaf: the scan is complete when we get here.
            if not isinstance(exc.__cause__, StopIteration):
                raise
        return n

    no_delete = "bplustree 0.0.3 has no delete"

    def delete_many(self, keys) -> None:
        raise Unsupported(self.no_delete)

    def commit_put(self, key, value) -> None:
        self.tree.insert(key, value, replace=True)  # each insert commits with fsync

    def reader(self) -> Store:
        # Its read lock does not cover the shared file offset and node cache:
        # concurrent gets fail with AssertionError in BPlusTree._root_node.
        raise Unsupported("bplustree breaks under concurrent readers (AssertionError "
                          "in _root_node: shared file offset)")

    def writer(self) -> Store:
        raise Unsupported("bplustree is not safe to share between threads")


# --------------------------------------------------------------------- diskcache


class DiskCacheStore(Store):
    """diskcache.Cache with sqlite_synchronous=2 (FULL) so commits are durable;
    bulk phases run inside cache.transact(); the ordered scan is iterkeys()
    (database sort order) with a lookup per key."""

    name = "diskcache"
    note = "Cache(sqlite_synchronous=FULL); bulk in transact(); scan = iterkeys() + get"

    @staticmethod
    def available() -> str | None:
        try:
            importlib.import_module("diskcache")
        except ImportError as exc:
            return f"not installed ({exc}); pip install -e '.[bench]'"
        return None

    @staticmethod
    def version() -> str:
        return _dist_version("diskcache")

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        import diskcache

        if pool_pages is not None:
            raise Unsupported("diskcache has no page-pool size")
        self.cache = diskcache.Cache(self.dir, sqlite_synchronous=2)
        self._tx = None

    def close(self) -> None:
        self.cache.close()

    def begin(self) -> None:
        self._tx = self.cache.transact()
        self._tx.__enter__()

    def commit(self) -> None:
        tx, self._tx = self._tx, None
        tx.__exit__(None, None, None)

    def put_many(self, keys, values) -> None:
        put = self.cache.set
        for k, v in zip(keys, values, strict=False):
            put(k, v)

    def get_many(self, keys) -> int:
        get = self.cache.get
        missing = 0
        for k in keys:
            if get(k) is None:
                missing += 1
        return missing

    def scan(self) -> int:
        cache = self.cache
        n = 0
        for k in cache.iterkeys():
            cache[k]
            n += 1
        return n

    def delete_many(self, keys) -> None:
        delete = self.cache.delete
        for k in keys:
            delete(k)

    def commit_put(self, key, value) -> None:
        self.cache.set(key, value)


# --------------------------------------------------------------------- dbm


class _DbmStore(Store):
    """A stdlib dbm module: no ordered iteration (the scan sorts keys()),
    no transactions, not thread-safe."""

    module = ""

    @classmethod
    def available(cls) -> str | None:
        try:
            importlib.import_module(cls.module)
        except ImportError as exc:
            return f"not built into this interpreter ({exc})"
        return None

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        if pool_pages is not None:
            raise Unsupported(f"{self.name} has no page-pool size")
        self.db = importlib.import_module(self.module).open(self.path, "c")

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        sync = getattr(self.db, "sync", None)
        if sync is not None:
            sync()

    def put_many(self, keys, values) -> None:
        db = self.db
        for k, v in zip(keys, values, strict=False):
            db[k] = v

    def get_many(self, keys) -> int:
        get = self.db.get
        missing = 0
        for k in keys:
            if get(k) is None:
                missing += 1
        return missing

    def scan(self) -> int:
        db = self.db
        n = 0
        for k in sorted(db.keys()):
            db[k]
            n += 1
        return n

    def delete_many(self, keys) -> None:
        db = self.db
        for k in keys:
            del db[k]

    def reader(self) -> Store:
        raise Unsupported(f"{self.name} is not thread-safe")

    writer = reader


class DbmDumbStore(_DbmStore):
    name = "dbm.dumb"
    module = "dbm.dumb"
    note = "sync() writes the index without fsync; every delete rewrites the index"

    def commit_put(self, key, value) -> None:
        raise Unsupported("dbm.dumb never fsyncs: it has no durable commit")


class DbmGnuStore(_DbmStore):
    name = "dbm.gnu"
    module = "dbm.gnu"
    note = "sync() is gdbm_sync (fsync); scan sorts keys()"

    def commit_put(self, key, value) -> None:
        self.db[key] = value
        self.db.sync()


class DbmNdbmStore(_DbmStore):
    name = "dbm.ndbm"
    module = "dbm.ndbm"
    note = "no sync at all; scan sorts keys()"

    def commit_put(self, key, value) -> None:
        raise Unsupported("dbm.ndbm has no sync: it has no durable commit")


# --------------------------------------------------------------------- dict


class DictStore(Store):
    """A Python dict: the in-memory ceiling. Nothing is durable; the ordered
    scan sorts the keys; "reopen" keeps the same dict."""

    name = "dict"
    note = "in-memory ceiling: nothing durable; scan = sorted(keys) + lookup"
    _kept: dict = {}

    def open(self, *, durable=False, pool_pages=None, direct_io=None) -> None:
        if pool_pages is not None:
            raise Unsupported("a dict has no page pool")
        self.d = self._kept.setdefault(self.dir, {})

    def close(self) -> None:
        """The dict lives in memory; reopening finds the same object."""

    def put_many(self, keys, values) -> None:
        d = self.d
        for k, v in zip(keys, values, strict=False):
            d[k] = v

    def get_many(self, keys) -> int:
        get = self.d.get
        missing = 0
        for k in keys:
            if get(k) is None:
                missing += 1
        return missing

    def scan(self) -> int:
        d = self.d
        n = 0
        for k in sorted(d):
            d[k]
            n += 1
        return n

    def delete_many(self, keys) -> None:
        d = self.d
        for k in keys:
            del d[k]

    def commit_put(self, key, value) -> None:
        raise Unsupported("a dict is not durable")


STORES: dict[str, type[Store]] = {
    cls.name: cls
    for cls in (EngineStore, EngineDefaultPoolStore, SqliteStore, LmdbStore, BPlusTreeStore, DiskCacheStore,
                DbmDumbStore, DbmGnuStore, DbmNdbmStore, DictStore, ModelStore)
}

#: what `python -m bench` runs without --stores (model is for development only)
DEFAULT_STORES = ["engine", "engine-4MiB", "sqlite3", "lmdb", "bplustree", "diskcache",
                  "dbm.dumb", "dbm.gnu", "dbm.ndbm", "dict"]


def available(name: str) -> str | None:
    """None when store `name` can run here, else why not."""
    return STORES[name].available()


def make_store(name: str, directory: str) -> Store:
    return STORES[name](directory)

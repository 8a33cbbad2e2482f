"""Checkpoints of a `Database`: dirty pages written home and the log trimmed
(rule 3 of `wal`), by hand (`checkpoint()`), on close and on open after a
recovery, and automatically once the log passes `checkpoint_bytes`.

Pages go home only under the readers lock held exclusive (rule 9 of `wal`):
a reader's snapshot reads the data file, so a checkpoint either waits for
the snapshots held now to end or, when it must not wait (after a commit, on
close), is deferred and the log kept; an automatic one is then retried once
the log has grown a little more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import log
from engine.bufferpool import BufferPool
from engine.catalog import TreeEntry
from engine.codec import PAGE_SIZE
from engine.errors import DragonDBError, NeedsRecoveryError, StorageIOError
from engine.latch import RWLatch
from engine.locks import ReaderLock
from engine.metapage import Meta, encode_meta
from engine.pager import Pager
from engine.wal import Wal

__all__ = ["CHECKPOINT_BYTES", "CHECKPOINT_RETRY_BYTES", "MIN_CHECKPOINT_BYTES", "Checkpoints"]

CHECKPOINT_BYTES = 64 * 1024 * 1024  # checkpoint automatically past this much log
MIN_CHECKPOINT_BYTES = 16 * 1024  # four pages: a shorter log would checkpoint at about every commit
CHECKPOINT_RETRY_BYTES = 1024 * 1024  # after a checkpoint readers deferred, log grown before the next try


class Checkpoints:
    """Checkpointing of `Database` (a mixin: the state is the database's)."""

    _pool: BufferPool
    _pager: Pager
    _wal: Wal
    _trees: dict[str, TreeEntry]
    _latch: RWLatch
    _rlock: ReaderLock | None
    _ckpt_retry_at: int
    read_only: bool
    checkpoint_bytes: int
    checkpoints: int
    checkpoints_deferred: int
    last_checkpoint_error: BaseException | None

    if TYPE_CHECKING:  # the database's own
        def _ensure_usable(self) -> None: ...

    def checkpoint(self) -> None:
        """Write dirty pages home and trim the log. Waits until the snapshots
        readers hold now have ended (docs/processes.md)."""
        self._ensure_usable()
        if self.read_only:
            return
        self._latch.acquire_write()
        try:
            self._ensure_usable()
            self._checkpoint_locked(wait=True)
        finally:
            self._latch.release_write()

    def _auto_checkpoint(self) -> None:
        """After a commit whose log passed `checkpoint_bytes` (write latch held)."""
        if self._wal.end < self._ckpt_retry_at:
            return  # readers deferred the last try: the log grows a little first
        try:
            if self._checkpoint_locked(wait=False):
                self._ckpt_retry_at = 0
            else:
                self._ckpt_retry_at = self._wal.end + min(CHECKPOINT_RETRY_BYTES, self.checkpoint_bytes // 4)
        except NeedsRecoveryError:
            raise
        except DragonDBError as exc:  # the commit stands; the next commit retries
            self.last_checkpoint_error = exc
            log.warning("automatic checkpoint failed: {}", exc)

    def _checkpoint_locked(self, wait: bool = True) -> bool:
        """Checkpoint under the readers lock held exclusive (rule 9 of `wal`):
        waiting for readers' snapshots to end, or (`wait=False`) returning
        False at once when a reader holds one. A reader's own in-memory
        checkpoint runs under its shared hold."""
        rlock = self._rlock
        if rlock is None or rlock.held:
            self._checkpoint_home()
            return True
        if not rlock.exclusive(wait):
            self.checkpoints_deferred += 1
            return False
        try:
            self._checkpoint_home()
        finally:
            rlock.release()
        return True

    def _checkpoint_home(self) -> None:
        wal, pager, pool = self._wal, self._pager, self._pool
        # Every checkpoint syncs, in every sync mode: writing pages home and
        # resetting the log without ordering them could undo a returned
        # `commit()` at the next power loss (rule 3).
        durable = True
        head, trunks = pager.freelist_images()
        meta_page = bytearray(PAGE_SIZE)
        encode_meta(Meta(pager.page_count, head, pager.free_count, wal.lsn,
                         {n: (e.root, e.count) for n, e in self._trees.items()}), meta_page)
        dirty = pool.dirty_pages()
        in_pool = {pid for pid, _ in dirty}
        spilled = [pid for pid in wal.spilled_pages() if pid not in in_pool]
        n = 1 + len(trunks) + len(dirty) + len(spilled)
        home: list[Any] = [(0, meta_page), *trunks, *dirty]
        wal.checkpoint_begin(n)
        wal.checkpoint_images(home)
        tmp = memoryview(bytearray(PAGE_SIZE))
        spill_at = {}
        for pid in spilled:
            wal.read_spill(pid, tmp)
            spill_at[pid] = wal.checkpoint_image(pid, tmp)
        wal.checkpoint_end(n, durable)
        pager.write_pages(home)
        for pid, at in spill_at.items():
            wal.read_image(at, tmp)
            pager.write(pid, tmp)
        if durable:
            try:
                pager.sync()
            except StorageIOError as exc:
                wal.mark_failed()
                raise NeedsRecoveryError(exc.errno or 5, f"data file fsync failed ({exc}); reopen to recover") from exc
        pool.mark_clean(in_pool)
        wal.forget_spilled()  # every spilled page is home now
        try:
            wal.reset(wal.lsn, sync=durable)
        except StorageIOError as exc:
            # the header may say "empty" while old records remain: nothing
            # more may be appended until a reopen sorts it out (rule 6)
            wal.mark_failed()
            raise NeedsRecoveryError(exc.errno or 5, f"log reset failed ({exc}); reopen to recover") from exc
        self.checkpoints += 1

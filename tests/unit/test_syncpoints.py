"""The sync-point seam: one hook at a time, and `reach` is a no-op without one."""

from __future__ import annotations

import pytest

from engine import syncpoints


def test_one_hook_at_a_time():
    seen: list[str] = []
    syncpoints.install(seen.append)
    try:
        with pytest.raises(RuntimeError, match=r"^install: a sync-point hook is already installed$"):
            syncpoints.install(lambda name: None)
        syncpoints.reach("wal.sync")
        assert seen == ["wal.sync"], "the first hook stays installed"
    finally:
        syncpoints.uninstall()
    assert not syncpoints.installed()
    syncpoints.reach("wal.sync")
    assert seen == ["wal.sync"], "no hook is called after uninstall"

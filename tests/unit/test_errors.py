"""`engine.errors`: one hierarchy under `DragonDBError`, which cannot be
raised itself; each error also inherits the stdlib type callers catch."""

from __future__ import annotations

import errno

import pytest

import engine
from engine import errors

# each public error -> the stdlib type it must also be (Exception: none beyond)
STDLIB = {
    "StorageIOError": OSError, "NeedsRecoveryError": OSError,
    "CorruptionError": Exception, "NotADatabaseError": Exception,
    "DatabaseLockedError": Exception, "DatabaseClosedError": Exception, "ForkedError": Exception,
    "BatchStateError": RuntimeError, "ReadOnlyError": Exception,
    "KeyTooLargeError": ValueError, "BufferPoolFullError": Exception,
    "TreeLimitError": ValueError, "ValueTooLargeError": ValueError,
    "TreeNotEmptyError": ValueError, "UnsortedItemsError": ValueError,
    "BackupTargetError": ValueError, "OptionError": ValueError,
}


def test_the_base_cannot_be_raised_itself():
    with pytest.raises(TypeError, match=r"^DragonDBError is abstract; raise a subclass$"):
        errors.DragonDBError("x")


def test_every_public_error_is_listed_and_checked_here():
    assert set(errors.__all__) == {"DragonDBError", *STDLIB}


@pytest.mark.parametrize("name", sorted(STDLIB))
def test_each_error_is_a_dragondb_error_and_its_stdlib_type(name):
    cls = getattr(errors, name)
    assert getattr(engine, name, cls) is cls  # the package re-exports the same class
    exc = cls(errno.EIO, "what happened") if issubclass(cls, OSError) else cls("what happened")
    assert isinstance(exc, errors.DragonDBError) and isinstance(exc, STDLIB[name])
    assert "what happened" in str(exc)
    assert cls.__doc__ and cls.__doc__.strip()  # says when it is raised and what it leaves


def test_subtypes_a_caller_may_catch_by_their_parent():
    assert issubclass(errors.NeedsRecoveryError, errors.StorageIOError)
    assert issubclass(errors.ForkedError, errors.DatabaseClosedError)
    exc = errors.StorageIOError(errno.ENOSPC, "write x.db: no space")
    assert (exc.errno, exc.strerror) == (errno.ENOSPC, "write x.db: no space")

"""A batch is used inside its `with` block only (finding 4: a reused batch,
or one used without `with`, silently dropped its writes). Every misuse
raises `engine.BatchStateError` at once and changes nothing; the same
sequence on `models.ModelDatabase` raises the same error."""

from __future__ import annotations

import pytest

import engine
import models


class _Abort(Exception):
    pass


@pytest.fixture(params=["engine", "model"])
def side(request, open_db):
    """Each test runs on the engine and on the reference model."""
    if request.param == "engine":
        return open_db()
    return models.ModelDatabase()


def _contents(db) -> dict[bytes, bytes]:
    return dict(db.tree("t").items()) if "t" in db.trees() else {}


def test_the_error_is_a_dragondb_runtime_error():
    assert issubclass(engine.BatchStateError, engine.DragonDBError)
    assert issubclass(engine.BatchStateError, RuntimeError)


def test_a_second_with_on_the_same_batch_raises_and_keeps_the_first(side):
    b = side.batch()
    with b:
        b.put("t", b"a", b"1")
    with pytest.raises(engine.BatchStateError):
        with b:
            b.put("t", b"b", b"2")
    assert _contents(side) == {b"a": b"1"}


def test_put_and_delete_after_the_block_raise(side):
    b = side.batch()
    with b:
        b.put("t", b"a", b"1")
    with pytest.raises(engine.BatchStateError):
        b.put("t", b"c", b"3")
    with pytest.raises(engine.BatchStateError):
        b.delete("t", b"a")
    assert _contents(side) == {b"a": b"1"}


def test_put_and_delete_before_entering_raise(side):
    b = side.batch()
    with pytest.raises(engine.BatchStateError):
        b.put("t", b"a", b"1")
    with pytest.raises(engine.BatchStateError):
        b.delete("t", b"a")
    # the refused calls recorded nothing: the batch still works once entered
    with b:
        b.put("t", b"b", b"2")
    assert _contents(side) == {b"b": b"2"}


def test_an_exception_inside_discards_and_the_batch_is_spent(side):
    b = side.batch()
    with pytest.raises(_Abort):
        with b:
            b.put("t", b"a", b"1")
            raise _Abort
    assert _contents(side) == {}
    with pytest.raises(engine.BatchStateError):
        b.put("t", b"a", b"1")
    with pytest.raises(engine.BatchStateError):
        with b:
            pass
    assert _contents(side) == {}


def test_an_empty_batch_is_spent_too(side):
    b = side.batch()
    with b:
        pass
    with pytest.raises(engine.BatchStateError):
        with b:
            pass


def test_entering_a_batch_while_it_is_open_raises(side):
    b = side.batch()
    with b:
        b.put("t", b"a", b"1")
        with pytest.raises(engine.BatchStateError):
            b.__enter__()
        b.put("t", b"b", b"2")  # the outer block is unharmed
    assert _contents(side) == {b"a": b"1", b"b": b"2"}


def test_a_batch_of_a_closed_database_raises_closed(side):
    b = side.batch()
    with pytest.raises(engine.DatabaseClosedError):
        with b:
            b.put("t", b"a", b"1")
            side.close()
            with pytest.raises(engine.DatabaseClosedError):
                b.put("t", b"b", b"2")  # at once, not only at exit


def test_the_report_sequence(open_db):
    """The sequence of the report: no silent loss."""
    db = open_db()
    b = db.batch()
    with b:
        b.put("t", b"a", b"1")
    with pytest.raises(engine.BatchStateError):
        with b:
            b.put("t", b"b", b"2")
    with pytest.raises(engine.BatchStateError):
        b.put("t", b"c", b"3")
    assert _contents(db) == {b"a": b"1"}
    assert db.check().ok

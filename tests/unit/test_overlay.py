"""`Overlay`: a copy-on-write BlockFile behaves like a plain file that
started as its base's bytes, and never changes the base."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.disk import Overlay
from faults.crash import CrashDisk

# offsets and sizes near block edges, where an overlay's bookkeeping changes
_SIZE = st.one_of(st.integers(0, 3 * 4096 + 700),
                  st.sampled_from([0, 1, 511, 512, 4095, 4096, 4097, 8192, 9000]))
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _SIZE, st.binary(min_size=1, max_size=5000)),
        st.tuples(st.just("truncate"), _SIZE),
        st.tuples(st.just("extend"), _SIZE),
        st.tuples(st.just("read"), _SIZE, st.integers(1, 9000)),
    ),
    max_size=25,
)


@settings(max_examples=500, deadline=None)
@given(base=st.binary(min_size=1, max_size=3 * 4096 + 300), ops=_OPS)
def test_overlay_matches_a_plain_file_and_leaves_the_base(base: bytes, ops) -> None:
    disk = CrashDisk({"/f": base})
    f = Overlay(disk.opener("/f", False))
    model = bytearray(base)
    for op, *args in ops:
        if op == "write":
            at, data = args
            if len(model) < at:
                model.extend(bytes(at - len(model)))
            model[at : at + len(data)] = data
            f.write(at, data)
        elif op == "truncate":
            (n,) = args
            del model[n:]
            model.extend(bytes(n - len(model)))
            f.truncate(n)
        elif op == "extend":
            (n,) = args
            model.extend(bytes(max(0, n - len(model))))
            f.extend(n)
        else:
            at, n = args
            buf = bytearray(n)
            got = f.read_into(at, memoryview(buf))
            assert bytes(buf[:got]) == bytes(model[at : at + n])
        assert f.size() == len(model)
    whole = bytearray(len(model))
    assert f.read_into(0, memoryview(whole)) == len(model)
    assert whole == model
    assert disk.content("/f") == base and disk.events == []

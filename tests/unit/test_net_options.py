"""engine.net.options: one dataclass is the server's options, their checks and
their command-line form, so the Python keywords and the flags agree on every
value (tests/server/test_server_options.py runs the commands themselves)."""

from __future__ import annotations

import argparse
import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.net.options import ServerOptions, add_serve_arguments, options_from_args

FLAGGED = [f for f in dataclasses.fields(ServerOptions) if f.metadata["flag"] is not None]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return parser


def _cli_accepts(flag: str, text: str) -> bool:
    try:
        _parser().parse_args(["db", flag, text])
    except (argparse.ArgumentError, SystemExit):
        return False
    return True


def _python_accepts(**kw: object) -> bool:
    try:
        ServerOptions(**kw)
    except ValueError:
        return False
    return True


def test_defaults_are_the_parsers_defaults():
    args = _parser().parse_args(["db"])
    assert options_from_args(args) == ServerOptions()
    assert (args.path, args.ready_file) == ("db", None)


@pytest.mark.parametrize("name", ["port", "max_body", "workers"])
@given(n=st.integers(-3, 70_000) | st.sampled_from([2**31, 32 * 1024 * 1024]))
def test_integer_options_agree(name, n):
    flag = "--" + name.replace("_", "-")
    assert _cli_accepts(flag, str(n)) == _python_accepts(**{name: n})


@pytest.mark.parametrize("name", ["idle_timeout", "request_timeout"])
@given(x=st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_seconds_options_agree(name, x):
    flag = "--" + name.replace("_", "-")
    ok = _python_accepts(**{name: x})
    assert ok == (math.isfinite(x) and x > 0)
    assert _cli_accepts(flag, repr(x)) == ok


@given(sync=st.sampled_from(["full", "normal", "off", "FULL", "", "none"]))
def test_sync_agrees(sync):
    assert _cli_accepts("--sync", sync) == _python_accepts(sync=sync)


def test_parsed_values_reach_the_options():
    args = _parser().parse_args(["db", "--host", "::1", "--port", "0", "--allow-shutdown",
                                 "--max-body", "8", "--idle-timeout", "1.5",
                                 "--request-timeout", "2", "--tree", "t", "--sync", "off",
                                 "--workers", "1024"])
    assert options_from_args(args) == ServerOptions(
        host="::1", port=0, allow_shutdown=True, max_body=8, idle_timeout=1.5,
        request_timeout=2.0, tree="t", sync="off", workers=1024)


@pytest.mark.parametrize("bad", [
    {"port": True}, {"port": 1.0}, {"max_body": "8"}, {"idle_timeout": "1"},
    {"idle_timeout": False}, {"host": ""}, {"tree": b"t"}, {"allow_shutdown": 1},
    {"inline_reads": None}, {"sync": "always"}, {"workers": 1025},
])
def test_python_values_of_the_wrong_type_or_range_are_value_errors(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=f"^{name} must be"):
        ServerOptions(**bad)


def test_replace_checks_again_and_knows_its_fields():
    opts = ServerOptions()
    assert opts.replace() is opts
    assert opts.replace(port=0).port == 0 and opts.port == 8080
    with pytest.raises(ValueError, match="port must be 0..65535, not 70000"):
        opts.replace(port=70000)
    with pytest.raises(TypeError):
        opts.replace(colour="red")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.port = 1  # type: ignore[misc]


def test_every_flag_has_help_and_only_inline_reads_is_python_only():
    assert {f.name for f in dataclasses.fields(ServerOptions)} - {f.name for f in FLAGGED} == {
        "inline_reads"
    }
    assert all(f.metadata["help"] for f in FLAGGED)

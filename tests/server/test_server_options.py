"""`dragondb serve` and `python -m engine.server` validate their options:
a bad value is a usage error (exit 2) that opens and creates nothing."""

from __future__ import annotations

import pytest

from engine import cli, server

BAD = [
    ["--max-body", "7"], ["--max-body", "0"], ["--max-body", "-5"], ["--max-body", "x"],
    ["--workers", "0"], ["--workers", "-1"], ["--workers", "1025"],
    ["--port", "99999"], ["--port", "-1"],
    ["--request-timeout", "nan"], ["--request-timeout", "inf"], ["--request-timeout", "-1"],
    ["--request-timeout", "0"], ["--idle-timeout", "nan"], ["--idle-timeout", "0"],
]


@pytest.mark.parametrize("opts", BAD, ids=[" ".join(o) for o in BAD])
def test_bad_serve_options_are_usage_errors(tmp_path, monkeypatch, capsys, opts) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        server.main(["db.ddb", *opts])
    assert info.value.code == 2
    assert cli.main(["serve", "db.ddb", *opts]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and opts[0] in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_ready_file_that_is_a_directory_is_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    assert cli.main(["serve", "db.ddb", "--ready-file", "d"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("kw", [dict(request_timeout=float("nan")), dict(idle_timeout=0.0),
                                dict(workers=0), dict(port=70000), dict(max_body=7)])
def test_server_object_refuses_bad_options(tmp_path, kw) -> None:
    import engine

    with engine.open(tmp_path / "db.ddb") as db, pytest.raises(ValueError):
        server.Server(db, **kw)


def test_good_edge_values_parse() -> None:
    import argparse

    p = argparse.ArgumentParser()
    server.add_serve_arguments(p)
    args = p.parse_args(["x", "--port", "0", "--max-body", "8", "--workers", "1",
                         "--request-timeout", "0.5", "--port", "65535"])
    assert (args.port, args.max_body, args.workers, args.request_timeout) == (65535, 8, 1, 0.5)

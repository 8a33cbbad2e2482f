"""`dragondb bench` and `dragondb campaign` find their code through the
`dragondb.commands` entry point group, never through an import of bench/ or
faults/ (engine/cli/plugins.py). A distribution is made here in a temporary
directory on sys.path, so these tests do not depend on how dragondb itself
was installed."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from engine import cli
from engine.cli import plugins
from engine.cli.exits import CommandError

ROOT = Path(__file__).resolve().parents[2]


def _distribution(where: Path, name: str, entry_points: dict[str, str], module: str = "") -> None:
    """A minimal installed distribution `name` offering `entry_points` in the
    dragondb.commands group, and a module `plugin_<name>` with `module`'s code."""
    info = where / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{plugins.GROUP}]\n{lines}")
    if module:
        (where / f"plugin_{name}.py").write_text(module)


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("plugin_")]:
        del sys.modules[mod]


def test_bench_runs_what_its_entry_point_names(site, tmp_path, capsys):
    _distribution(site, "fakebench", {"bench": "plugin_fakebench:measure"},
                  "def measure(path, n):\n    return {'put': {'n': n, 'path': path}}\n")
    assert cli.main(["bench", str(tmp_path / "x"), "-n", "7", "--json"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert '"n": 7' in out and str(tmp_path / "x") in out


def test_campaign_gets_its_arguments_and_its_exit_status(site, capsys):
    _distribution(site, "fakecampaign", {"campaign": "plugin_fakecampaign:main"},
                  "seen = []\ndef main(argv):\n    seen.append(argv)\n    return 6 if argv else None\n")
    assert cli.main(["campaign", "--seconds", "1"]) == 6
    assert cli.main(["campaign"]) == cli.EXIT_OK
    assert sys.modules["plugin_fakecampaign"].seen == [["--seconds", "1"], []]


def test_an_entry_point_that_does_not_import_is_one_line_exit_3(site, capsys):
    _distribution(site, "broken", {"bench": "plugin_missing_module:run"})
    assert cli.main(["bench", str(site), "-n", "1"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("dragondb: error: the benchmark is not available here (")
    assert "plugin_missing_module" in err and len(err.splitlines()) == 1


def test_a_name_no_distribution_offers_is_a_clear_error():
    with pytest.raises(CommandError) as info:
        plugins.load("no-such-command", "the thing")
    assert info.value.code == cli.EXIT_ERROR
    assert info.value.message == (
        "the thing is not available here (no 'no-such-command' entry point in group "
        "'dragondb.commands': install the dragondb package, e.g. pip install -e .)"
    )


def test_pyproject_offers_bench_and_campaign_and_their_targets_exist():
    with open(ROOT / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["entry-points"][plugins.GROUP]
    assert sorted(declared) == ["bench", "campaign"]
    for value in declared.values():
        module, _, attr = value.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), value


def test_the_engine_source_imports_neither_bench_nor_faults():
    """lint-imports checks the import graph; this also catches a sys.path trick."""
    for path in (ROOT / "engine").rglob("*.py"):
        text = path.read_text()
        for needle in ("import bench", "from bench", "import faults", "from faults", "sys.path"):
            assert needle not in text, f"{path.relative_to(ROOT)}: {needle}"

"""`engine.log`: silent by default, loguru imported only when logging is on."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_import_engine_does_not_import_loguru() -> None:
    done = _run("import sys, engine, engine.dbm\nprint('loguru' in sys.modules)")
    assert done.stdout.strip() == "False", done.stderr


def test_warnings_are_silent_by_default_and_reach_loguru_when_enabled() -> None:
    done = _run(
        "import sys, engine\n"
        "from engine import log\n"
        "log.warning('hidden {}', 1)\n"
        "assert 'loguru' not in sys.modules\n"
        "log.enable()\n"
        "from loguru import logger\n"
        "logger.remove(); logger.add(sys.stdout, format='{name} {level} {message}')\n"
        "log.warning('shown {}', 2)\n"
        "log.debug('detail {}', 3)\n"
        "log.disable()\n"
        "log.warning('hidden again')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["__main__ WARNING shown 2", "__main__ DEBUG detail 3"]

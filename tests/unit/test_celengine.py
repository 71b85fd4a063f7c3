"""The CEL engine is loaded without the package's command line, and the package still imports
after it (a fresh interpreter each: the point is what an import leaves in ``sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys

CLI_PACKAGES = ("typer", "prompt_toolkit", "cel.cli")


def _run(code: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_daemon_loads_cel_without_its_command_line() -> None:
    result = _run(
        "import json, sys\n"
        "import middleware.daemon\n"
        "from middleware.celengine import cel\n"
        f"cli = [m for m in sys.modules if m.split('.')[0] in {CLI_PACKAGES[:2]!r} "
        f"or m == {CLI_PACKAGES[2]!r}]\n"
        "print(json.dumps({'cli': cli, 'value': cel.compile('a.b + 1').execute({'a': {'b': 2}}),"
        " 'module': cel.__name__}))\n")
    assert result == {"cli": [], "value": 3, "module": "cel.cel"}


def test_the_package_imports_after_the_engine_and_shares_it() -> None:
    result = _run(
        "import json\n"
        "from middleware.celengine import cel as engine\n"
        "import cel\n"
        "print(json.dumps({'same': cel.compile is engine.compile"
        " and cel.OptionalValue is engine.OptionalValue,"
        " 'value': cel.compile('[1, 2].size()').execute({})}))\n")
    assert result == {"same": True, "value": 2}

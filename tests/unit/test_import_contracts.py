"""The import contracts of pyproject.toml hold, and a deliberately wrong import breaks them.

Each case copies the package tree to a scratch directory, adds one forbidden import and runs
``lint-imports`` there, so the contracts are shown to catch what they are meant to catch (a
contract that passes whatever the code does would pass this file's first test only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    for package in ("middleware", "adapters"):
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_import_contracts_hold_for_the_code_as_it_is(scratch: Path) -> None:
    result = _lint(scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("middleware/pipeline.py", "import adapters.rest  # noqa",
     "Adapters import the core, never the reverse"),
    ("middleware/mapping/engine.py", "import middleware.stores  # noqa",
     "The mapping core does no I/O"),
    ("middleware/config/models.py", "import middleware.adapter  # noqa",
     "Config models and the broker contract import no adapter contract"),
    ("middleware/daemon.py", "import middleware.broker.rabbitmq.publisher  # noqa",
     "Only the broker factory imports the RabbitMQ implementation"),
    ("middleware/broker/ingest.py", "import pika  # noqa",
     "pika only inside the RabbitMQ implementation"),
    ("middleware/routing.py", "import cel  # noqa",
     "CEL only through middleware.celengine"),
])
def test_import_contracts_fail_on_a_forbidden_import(
    scratch: Path, module: str, line: str, contract: str
) -> None:
    path = scratch / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = _lint(scratch)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout, result.stdout
    assert "5 kept, 1 broken" in result.stdout, result.stdout

"""The wheel, installed into a fresh virtual environment, works without the source checkout.

Builds the wheel from a copy of only what the package is made of (as deploy/Dockerfile does),
installs it with the ``demo`` extra (dependencies from the package index), and runs the
installed console script from a directory outside the repository: ``--version``, ``validate``
on the demo config the package ships, and ``demo --help``. Then spyne is removed again and
``silobridge demo`` must say how to install the extra. Slow (a venv and a full dependency
install): 26 to 81 s here, depending on load.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "middleware", "adapters",
                "silobridge_demo")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _pip(bin_dir: Path) -> list[str]:
    """This interpreter's pip working on the new environment: ensurepip (pip and setuptools
    installed and byte-compiled into it) was a good part of the test's time and proves nothing
    about the wheel. ``--no-compile`` in the install skips byte-compiling every dependency for
    the same reason; the installed script compiles what it imports when it runs."""
    return [sys.executable, "-m", "pip", "--python", str(bin_dir / "python")]


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    done = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                 str(tmp / "dist"), str(source)], tmp, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp / "dist").glob("silobridge-*.whl")
    return wheel


def _check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(zipped.read(metadata_name).decode())
    for package in ("middleware", "adapters", "silobridge_demo"):
        assert f"{package}/py.typed" in names
    config = ROOT / "silobridge_demo" / "config"
    data = {p.relative_to(ROOT).as_posix() for p in config.rglob("*") if p.is_file()}
    assert data and data <= names, sorted(data - names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "mappings/", "bench/", "deploy/")) for n in names)
    assert metadata["License-Expression"] == "Apache-2.0"
    urls = metadata.get_all("Project-URL") or []
    assert {u.split(",")[0] for u in urls} >= {"Homepage", "Source", "Issues", "Documentation"}
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    spyne = [r for r in metadata.get_all("Requires-Dist") or [] if r.startswith("spyne")]
    assert spyne and all("extra ==" in r for r in spyne), spyne


def test_wheel_installs_in_a_fresh_venv_and_runs_the_demo_commands(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    _check_contents(wheel)

    # Given a new virtual environment with the wheel and its demo extra installed
    venv.EnvBuilder(with_pip=False).create(tmp_path / "venv")
    bin_dir = tmp_path / "venv" / "bin"
    done = _run([*_pip(bin_dir), "install", "--quiet", "--no-compile", f"{wheel}[demo]"],
                tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr

    # When its console script runs outside the repository, with nothing of the checkout on
    # the path, Then the version, the shipped config and the demo commands are there
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SILOBRIDGE_CONFIG")}
    env["SILOBRIDGE_DEMO_WEBHOOK_SECRET"] = "wheel-test"
    silobridge = str(bin_dir / "silobridge")

    version = _run([silobridge, "--version"], elsewhere, env)
    assert (version.returncode, version.stdout) == (0, f"silobridge {PROJECT['version']}\n")

    config = _run([silobridge, "demo", "config"], elsewhere, env)
    assert config.returncode == 0, config.stderr
    shipped = Path(config.stdout.strip())
    assert shipped.is_relative_to(tmp_path / "venv"), shipped
    validated = _run([silobridge, "validate", "-c", str(shipped)], elsewhere, env)
    assert validated.returncode == 0, validated.stderr
    assert "valid (5 route(s), 4 inbound adapter(s))" in validated.stdout

    helped = _run([silobridge, "demo", "--help"], elsewhere, env)
    assert helped.returncode == 0, helped.stderr
    assert all(word in helped.stdout for word in ("--rate", "--duration", "erp", "crm"))

    # Given the same install without spyne, When the demo is asked for, Then one line says
    # how to install the extra
    removed = _run([*_pip(bin_dir), "uninstall", "--yes", "--quiet", "spyne"], tmp_path)
    assert removed.returncode == 0, removed.stderr
    missing = _run([silobridge, "demo"], elsewhere, env)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert "pip install 'silobridge[demo]'" in missing.stderr

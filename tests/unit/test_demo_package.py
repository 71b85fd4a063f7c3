"""The demo as a package of its own: config as package data, spyne only in the ``demo`` extra,
and ``silobridge demo`` explaining itself where the extra is missing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import silobridge_demo
from middleware.config.loader import load_config
from middleware.errors import SilobridgeError
from silobridge_demo import resources
from silobridge_demo.cli import INSTALL_HINT
from silobridge_demo.crm import SECRET_ENV

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
PACKAGE = Path(silobridge_demo.__file__).parent
CONFIG = PACKAGE / "config"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BLOCK_SPYNE = "import sys; sys.modules['spyne'] = None; "
"""Makes ``import spyne`` fail and ``find_spec('spyne')`` answer None, as without the extra."""


def test_demo_config_is_package_data_inside_the_package() -> None:
    path = resources.config_path()
    assert path == CONFIG / "demo.yaml"
    assert path.is_file()


def test_demo_config_names_only_files_shipped_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the config and every mapping it names, When their file references are resolved,
    # Then each one is inside the package's config/ (a wheel carries nothing else)
    monkeypatch.setenv(SECRET_ENV, "unit")
    loaded = load_config(resources.config_path())
    named: list[Path] = []
    document = yaml.safe_load(resources.config_path().read_text())
    for section in document["inbound"]:
        named += [CONFIG / section[key] for key in ("json_schema", "wsdl") if key in section]
    for route in document["routes"]:
        mapping = CONFIG / route["mapping"]
        named.append(mapping)
        if "wsdl" in route["target"]:
            named.append(CONFIG / route["target"]["wsdl"])
        spec = yaml.safe_load(mapping.read_text())
        named += [mapping.parent / side["schema"] for side in (spec["source"], spec["target"])
                  if "schema" in side]
    assert len(loaded.config.routes) == 5
    for path in named:
        resolved = path.resolve()
        assert resolved.is_relative_to(CONFIG), f"{path} is outside the demo package"
        assert resolved.is_file(), f"{path} is missing"


def _shared_copies() -> list[Path]:
    """Files of the demo config that are copies of reader-facing files under mappings/."""
    return sorted(p.relative_to(CONFIG) for p in CONFIG.rglob("*")
                  if p.is_file() and p.relative_to(CONFIG).parts[0] in ("schemas", "examples"))


def test_demo_config_copies_match_the_files_under_mappings() -> None:
    copies = _shared_copies()
    assert len(copies) >= 7
    for relative in copies:
        original = MAPPINGS / relative
        assert original.is_file(), f"{relative}: no original under mappings/"
        assert (CONFIG / relative).read_bytes() == original.read_bytes(), (
            f"silobridge_demo/config/{relative} differs from mappings/{relative}: edit both, or "
            f"cp mappings/{relative} silobridge_demo/config/{relative}")


def test_demo_config_refuses_a_package_that_is_not_on_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    archive = tmp_path / "silobridge_demo.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("silobridge_demo/config/demo.yaml", "broker: {}\n")
    monkeypatch.setattr(resources, "files",
                        lambda _name: zipfile.Path(archive, "silobridge_demo/"))
    with pytest.raises(SilobridgeError, match=r"not a file on disk; install silobridge"):
        resources.config_path()


def test_demo_package_data_globs_cover_every_config_file() -> None:
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["silobridge_demo"]
    shipped = {p for pattern in globs for p in PACKAGE.glob(pattern)}
    files = {p for p in CONFIG.rglob("*") if p.is_file()}
    assert files and files <= shipped, sorted(files - shipped)
    for package in ("middleware", "adapters", "silobridge_demo"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"][package]


def test_spyne_is_only_in_the_demo_and_dev_extras() -> None:
    def names(requirements: list[str]) -> set[str]:
        return {r.split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in requirements}

    extras = PYPROJECT["project"]["optional-dependencies"]
    assert "spyne" not in names(PYPROJECT["project"]["dependencies"])
    assert "spyne" in names(extras["demo"])
    assert "spyne" in names(extras["dev"])


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own where spyne cannot be imported."""
    code = BLOCK_SPYNE + f"from middleware.cli import main; sys.exit(main({list(argv)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("argv", [("demo",), ("demo", "--rate", "5"), ("demo", "erp"),
                                  ("demo", "crm", "--rate", "2")])
def test_demo_without_the_extra_says_how_to_install_it_in_one_line(argv: tuple[str, ...]) -> None:
    done = _cli(*argv)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert INSTALL_HINT in done.stderr and "spyne" in done.stderr


def test_demo_without_the_extra_is_left_out_of_the_command_list() -> None:
    without = _cli("--help")
    assert without.returncode == 0
    assert "run the daemon" in without.stdout
    assert "the live demo" not in without.stdout
    with_extra = subprocess.run([sys.executable, "-m", "middleware", "--help"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
    assert "the live demo" in with_extra.stdout


def test_core_and_adapters_import_without_spyne() -> None:
    code = BLOCK_SPYNE + (
        "import adapters.soap, adapters.rest, adapters.amqp, silobridge_demo, silobridge_demo.cli,"
        " silobridge_demo.resources, middleware.cli.run; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_demo_config_command_prints_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    from middleware.cli import main

    assert main(["demo", "config"]) == 0
    assert capsys.readouterr().out == f"{CONFIG / 'demo.yaml'}\n"

"""The CLI's conventions: version, help for every argument, one-line errors with documented exit
codes, a closed pipe, NO_COLOR, completion, SILOBRIDGE_CONFIG, and a config reference that is
made from the models."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from middleware.cli import EXIT_CODES, _parser, main
from middleware.config.reference import json_schema
from middleware.log import configure_logging

ROOT = Path(__file__).resolve().parents[2]
CLOSED_BROKER = "amqp://guest:guest@127.0.0.1:1/%2F"  # nothing listens on port 1


def _cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "middleware", *args], capture_output=True,
                          input=stdin, timeout=60, cwd=ROOT, env={**os.environ, **(env or {})})


def _walk(parser: argparse.ArgumentParser, path: str = "silobridge"
          ) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _walk(sub, f"{path} {name}")
    return found


def test_cli_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("silobridge 0.")


def test_cli_every_argument_of_every_command_has_help() -> None:
    missing = []
    for path, parser in _walk(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_cli_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in out


def test_cli_unreachable_broker_is_one_line_and_exit_1() -> None:
    done = _cli("dlq", "list", "some-route", env={"AMQP_URL": CLOSED_BROKER})
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        err.strip().splitlines()[-1]]
    assert "cannot connect to the broker" in err


def test_cli_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _cli("validate", "-c", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr.decode()
    assert "nope.yaml" in done.stderr.decode()
    sent = _cli("send", str(tmp_path / "nope.json"), "--type", "crm.customer.updated")
    assert sent.returncode == 2 and "Traceback" not in sent.stderr.decode()
    assert "nope.json" in sent.stderr.decode()


def test_cli_bad_stdin_for_send_is_an_input_error() -> None:
    done = _cli("send", "-", "--type", "crm.customer.updated", stdin=b"{not json")
    assert done.returncode == 2
    assert done.stderr.decode().startswith("error: -:")


def test_cli_closed_pipe_exits_quietly_with_141() -> None:
    # Given a reader that takes one line and goes away, like `| head -1`
    process = subprocess.Popen([sys.executable, "-m", "middleware", "schema", "config"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(60) == 141
    assert err == ""


def test_cli_no_color_turns_console_colours_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    import structlog

    for no_color, coloured in (("", True), ("1", False)):
        monkeypatch.setenv("NO_COLOR", no_color)
        out = Terminal()
        configure_logging(json=False, stream=out)
        structlog.get_logger("t").warning("hello", route="r")
        assert ("\x1b[" in out.getvalue()) is coloured, out.getvalue()
    configure_logging(json=True)


def test_cli_config_defaults_to_silobridge_config() -> None:
    done = _cli("validate", env={"SILOBRIDGE_CONFIG": "mappings/quickstart.yaml"})
    assert done.returncode == 0, done.stderr.decode()
    assert "mappings/quickstart.yaml: valid" in done.stdout.decode()
    unset = _cli("validate", env={"SILOBRIDGE_CONFIG": ""})
    assert unset.returncode == 2 and "-c/--config" in unset.stderr.decode()


def test_cli_completion_script_knows_the_commands() -> None:
    done = _cli("completion", "bash")
    assert done.returncode == 0
    script = done.stdout.decode()
    for word in ("dlq", "replay", "topology", "prune", "--json"):
        assert word in script


@pytest.mark.parametrize("config", [
    "mappings/quickstart.yaml", "mappings/demo.yaml", "mappings/examples/rest-webhooks.yaml",
    "mappings/examples/soap-erp/silobridge.yaml",
])
def test_config_schema_accepts_the_shipped_configs(config: str) -> None:
    document = yaml.safe_load((ROOT / config).read_text())
    jsonschema.Draft202012Validator(json_schema()).validate(document)


def test_config_schema_refuses_an_unknown_key_in_an_adapter_section() -> None:
    document = yaml.safe_load((ROOT / "mappings/quickstart.yaml").read_text())
    document["routes"][0]["target"]["exchang"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json_schema()).validate(document)


def test_docs_config_md_is_generated_from_the_models() -> None:
    # in a process of its own: tests register adapters of their own in this one
    made = subprocess.run([sys.executable, "-m", "middleware.config.reference"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert made.startswith("# Configuration reference") and "RestEndpointConfig" in made
    assert (ROOT / "docs" / "config.md").read_text() == made, (
        "docs/config.md is stale: python -m middleware.config.reference > docs/config.md")

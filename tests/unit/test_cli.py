"""The CLI's conventions: version, help for every argument, one-line errors with documented exit
codes, a closed pipe, NO_COLOR, completion, SILOBRIDGE_CONFIG, and a config reference that is
made from the models."""

from __future__ import annotations

import argparse
import io
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


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exited:  # argparse's own usage errors
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


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


def test_cli_unreachable_broker_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQP_URL", CLOSED_BROKER)
    code, _out, err = _cli(capsys, "dlq", "list", "some-route")
    assert code == 1, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        err.strip().splitlines()[-1]]
    assert "cannot connect to the broker" in err


def test_cli_missing_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _out, err = _cli(capsys, "validate", "-c", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml" in err and "Traceback" not in err
    code, _out, err = _cli(capsys, "send", str(tmp_path / "nope.json"), "--type",
                           "crm.customer.updated")
    assert code == 2 and "nope.json" in err and "Traceback" not in err


def test_cli_bad_stdin_for_send_is_an_input_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{not json")))
    code, _out, err = _cli(capsys, "send", "-", "--type", "crm.customer.updated")
    assert code == 2
    assert err.startswith("error: -:")


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


def test_cli_config_defaults_to_silobridge_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(ROOT / "mappings" / "quickstart.yaml")
    monkeypatch.setenv("SILOBRIDGE_CONFIG", config)
    code, out, err = _cli(capsys, "validate")
    assert code == 0, err
    assert f"{config}: valid" in out
    monkeypatch.setenv("SILOBRIDGE_CONFIG", "")
    code, _out, err = _cli(capsys, "validate")
    assert code == 2 and "-c/--config" in err


def test_cli_completion_script_knows_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, script, _err = _cli(capsys, "completion", "bash")
    assert code == 0
    for word in ("dlq", "replay", "topology", "prune", "--json"):
        assert word in script


@pytest.mark.parametrize("config", [
    "mappings/quickstart.yaml", "silobridge_demo/config/demo.yaml",
    "mappings/examples/rest-webhooks.yaml", "mappings/examples/soap-erp/silobridge.yaml",
    "mappings/examples/enrich/silobridge.yaml",
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

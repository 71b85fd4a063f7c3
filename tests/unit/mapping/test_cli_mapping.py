"""``silobridge mapping test|run`` and ``schema mapping`` through argparse, as users call them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from middleware.cli import mapping as cli

ROOT = Path(__file__).parents[3] / "mappings"


def call(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_mapping_test_passes_on_the_shipped_mappings(capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert call("mapping", "test", str(ROOT)) == 0
    out = capsys.readouterr().out
    assert "0 failed, 0 file(s) with errors" in out


def test_cli_mapping_test_fails_with_diff(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text("mapping: t\nfields: {a: x}\n")
    (tmp_path / "m.test.yaml").write_text("cases: [{name: bad, input: {x: 1}, expect: {a: 2}}]\n")
    assert call("mapping", "test", str(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and '-  "a": 2' in out and '+  "a": 1' in out


def test_cli_mapping_test_without_tests_is_an_error(tmp_path: Path) -> None:
    assert call("mapping", "test", str(tmp_path)) == 1


def test_cli_mapping_run_prints_result(capsys: pytest.CaptureFixture[str]) -> None:
    code = call("mapping", "run", str(ROOT / "quickstart" / "customer-to-account.yaml"),
                "--input", str(ROOT / "samples" / "crm-customer.json"))
    assert code == 0
    assert json.loads(capsys.readouterr().out)["client_code"] == "CRM-C-1001"


def test_cli_mapping_run_reverse_with_xref(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "account.json"
    source.write_text(json.dumps({"account_id": "A-77", "name": "N", "country_code": "DE",
                                  "currency_code": "EUR", "client_code": "CRM-C-1001"}))
    code = call("mapping", "run", str(ROOT / "crm-erp" / "customer-to-account.yaml"),
                "--input", str(source), "--reverse",
                "--xref", "crm.customer:C-1001 <-> erp.account:A-77")
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {
        "customer_no": "C-1001", "name": "N", "country": "Germany", "currency": "eur"}


def test_cli_mapping_run_error_goes_to_stderr(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "c.json"
    source.write_text(json.dumps({"customer_no": "C-1", "name": "N", "country": "Mars",
                                  "currency": "eur"}))
    assert call("mapping", "run", str(ROOT / "quickstart" / "customer-to-account.yaml"),
                "--input", str(source)) == 1
    assert "MappingError" in capsys.readouterr().err


def test_cli_schema_mapping_validates_every_shipped_mapping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert call("schema", "mapping") == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    documents = [yaml.safe_load(p.read_text()) for p in ROOT.rglob("*.yaml")
                 if not p.name.endswith(".test.yaml")]
    mappings = [d for d in documents if isinstance(d, dict) and "fields" in d]
    assert len(mappings) >= 7
    for document in mappings:
        jsonschema.validate(document, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"mapping": "x", "fields": {"a": {"transform": ["uper"]}}}, schema)

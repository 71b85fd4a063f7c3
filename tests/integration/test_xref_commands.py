"""``silobridge xref`` on both store backends (issue 15 item 2): list with paging and filters,
show, link, unlink, a CSV import in one transaction with conflicts reported per line, the CSV
round trip through export, every change audited, and a conflict message that names both keys
and the command that fixes it. SQLite in a temporary file; PostgreSQL in a schema of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from middleware.cli import main
from middleware.config.models import StoreConfig
from middleware.errors import ProcessingError
from middleware.stores import Stores, open_stores
from middleware.stores.base import XrefLink
from tests.integration.pg_helpers import pg_dsn  # noqa: F401  (a fixture)

pytestmark = pytest.mark.integration

CSV = ("\ufeffcrm.customer,erp.account\n"
       "C-1001,A-77\n"
       " C-1002 , A-78\n"
       "\n"
       "C-1003,A-79\n")


@pytest.fixture(params=["sqlite", "postgres"])
def store_section(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "sqlite":
        return {"kind": "sqlite", "path": str(tmp_path / "store.db")}
    return {"kind": "postgres", "dsn": request.getfixturevalue("pg_dsn")}


@pytest.fixture
def config(store_section: dict[str, str], tmp_path: Path) -> Path:
    path = tmp_path / "silobridge.yaml"
    path.write_text(yaml.safe_dump({"store": store_section}), encoding="utf-8")
    return path


@pytest.fixture
def stores(store_section: dict[str, str]) -> Iterator[Stores]:
    opened = open_stores(StoreConfig.model_validate(store_section))
    yield opened
    opened.close()


def _cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["xref", *args, "-c", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def _audits(err: str) -> list[dict[str, str]]:
    return [line for line in map(json.loads, filter(None, err.splitlines()))
            if line.get("event") == "xref changed"]


def test_xref_store_lists_in_pages_filtered_by_namespace_and_key(stores: Stores) -> None:
    for n in range(7):
        stores.xref.link("crm.customer", f"C-{n}", "erp.account", f"A-{n}")
    stores.xref.link("crm.order", "O-1", "erp.sales_order", "S-1")
    first = stores.xref.links("crm.customer", limit=4)
    rest = stores.xref.links("crm.customer", after=first[-1], limit=4)
    assert [link.key_a for link in first + rest] == [f"C-{n}" for n in range(7)]
    assert stores.xref.links("erp.account", "A-3") == [
        XrefLink("crm.customer", "C-3", "erp.account", "A-3")]
    assert stores.xref.links(key="S-1") == [
        XrefLink("crm.order", "O-1", "erp.sales_order", "S-1")]
    assert len(stores.xref.links()) == 8


def test_xref_store_conflict_names_both_keys_and_the_command_that_fixes_it(
    stores: Stores, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    stores.xref.link("crm.customer", "C-1001", "erp.account", "A-12")
    with pytest.raises(ProcessingError) as caught:
        stores.xref.link("crm.customer", "C-1001", "erp.account", "A-77")
    message = str(caught.value)
    assert "crm.customer:C-1001 <-> erp.account:A-77" in message
    assert "crm.customer:C-1001 is already linked to erp.account:A-12" in message
    command = "silobridge xref unlink crm.customer:C-1001 erp.account"
    assert command in message
    assert not caught.value.retryable
    # and the command it names does fix it
    code, out, _err = _cli(capsys, config, *command.split()[2:])
    assert code == 0, out
    stores.xref.link("crm.customer", "C-1001", "erp.account", "A-77")
    assert stores.xref.lookup("erp.account", "A-77", "crm.customer") == "C-1001"


def test_xref_csv_import_then_export_round_trips_and_is_audited(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "initial-load.csv"
    source.write_text(CSV, encoding="utf-8")
    # A dry run checks and writes nothing
    code, out, _err = _cli(capsys, config, "import", str(source), "--dry-run")
    assert (code, out.strip()) == (0, "would add 3 link(s), 0 already present, "
                                      "0 conflict(s) skipped")
    code, out, _err = _cli(capsys, config, "list", "--json")
    assert json.loads(out) == []
    # The import adds every pair, one audit line each
    code, out, err = _cli(capsys, config, "import", str(source))
    assert code == 0 and out.startswith("added 3 link(s)")
    audits = _audits(err)
    assert [a["after"] for a in audits] == [
        "crm.customer:C-1001 <-> erp.account:A-77", "crm.customer:C-1002 <-> erp.account:A-78",
        "crm.customer:C-1003 <-> erp.account:A-79"]
    assert all(a["action"] == "import" and a["who"] and a["before"] is None for a in audits)
    # show finds a key from either side
    code, out, _err = _cli(capsys, config, "show", "erp.account:A-78", "--json")
    assert json.loads(out) == [{"ns_a": "crm.customer", "key_a": "C-1002",
                                "ns_b": "erp.account", "key_b": "A-78"}]
    # export writes the same pairs, in either column order
    code, out, _err = _cli(capsys, config, "export", "crm.customer", "erp.account")
    assert out == "crm.customer,erp.account\nC-1001,A-77\nC-1002,A-78\nC-1003,A-79\n"
    code, out, _err = _cli(capsys, config, "export", "erp.account", "crm.customer")
    assert out.splitlines()[:2] == ["erp.account,crm.customer", "A-77,C-1001"]
    # and importing the export again changes nothing
    again = tmp_path / "export.csv"
    _cli(capsys, config, "export", "crm.customer", "erp.account", "-o", str(again))
    code, out, err = _cli(capsys, config, "import", str(again))
    assert (code, out.strip()) == (0, "added 0 link(s), 3 already present, 0 conflict(s) skipped")
    assert _audits(err) == []


def test_xref_import_reports_conflicts_by_line_and_writes_the_rest_in_one_go(
    config: Path, stores: Stores, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    stores.xref.link("crm.customer", "C-1", "erp.account", "A-1")
    source = tmp_path / "load.csv"
    source.write_text("crm.customer,erp.account\nC-1,A-9\nC-2,A-2\nC-3,A-2\nC-1,A-1\n",
                      encoding="utf-8")
    code, out, err = _cli(capsys, config, "import", str(source))
    assert code == 1
    assert out.strip() == "added 1 link(s), 1 already present, 2 conflict(s) skipped"
    conflicts = [line for line in err.splitlines() if line.startswith("conflict:")]
    assert conflicts[0].startswith(f"conflict: {source}:2: crm.customer:C-1 is already linked "
                                   f"to erp.account:A-1")
    # a row that contradicts an earlier row of the same file is caught as well
    assert conflicts[1].startswith(f"conflict: {source}:4: erp.account:A-2 is already linked "
                                   f"to crm.customer:C-2")
    assert stores.xref.lookup("erp.account", "A-2", "crm.customer") == "C-2"
    assert stores.xref.lookup("crm.customer", "C-3", "erp.account") is None


def test_xref_import_refuses_a_file_with_bad_rows_naming_each_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("crm.customer,erp.account\nC-1,A-1\nC-2\nC-3,,\n,A-4\n", encoding="utf-8")
    code, _out, err = _cli(capsys, config, "import", str(source))
    assert code == 2
    assert f"{source}:3: 1 columns" in err
    assert f"{source}:4: 3 columns" in err
    assert f"{source}:5: the crm.customer key is empty" in err
    code, out, _err = _cli(capsys, config, "list", "--json")
    assert json.loads(out) == []  # nothing written, not even the good row
    source.write_text("customer,account\nC-1,A-1\n", encoding="utf-8")
    code, _out, err = _cli(capsys, config, "import", str(source))
    assert code == 2 and f"{source}:1: the header must name two different namespaces" in err


def test_xref_link_and_unlink_are_audited_with_before_and_after(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _cli(capsys, config, "link", "crm.customer:C-5", "erp.account:A-5")
    assert code == 0 and out.strip() == "linked crm.customer:C-5 <-> erp.account:A-5"
    (audit,) = _audits(err)
    assert (audit["action"], audit["before"], audit["after"]) == (
        "link", None, "crm.customer:C-5 <-> erp.account:A-5")
    code, out, err = _cli(capsys, config, "unlink", "erp.account:A-5", "crm.customer")
    assert code == 0 and out.strip() == "unlinked erp.account:A-5 <-> crm.customer:C-5"
    (audit,) = _audits(err)
    assert (audit["action"], audit["before"], audit["after"]) == (
        "unlink", "erp.account:A-5 <-> crm.customer:C-5", None)
    code, _out, err = _cli(capsys, config, "unlink", "erp.account:A-5", "crm.customer")
    assert code == 1 and "has no link to crm.customer" in err
    code, _out, err = _cli(capsys, config, "link", "C-5", "erp.account:A-5")
    assert code == 2 and "'C-5' is not NS:KEY" in err

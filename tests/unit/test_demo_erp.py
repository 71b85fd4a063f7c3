"""The demo ERP's state rules, its committed WSDL and its CLI registration."""

from __future__ import annotations

from pathlib import Path

import pytest
from spyne.model.fault import Fault

from middleware.cli import _parser, main
from silobridge_demo.erp import ErpState, generate_wsdl
from tests.unit.soap.helpers import EXAMPLES


def test_demo_erp_request_id_dedupes_per_operation() -> None:
    state = ErpState()
    made: list[str] = []

    def create(new_id: str) -> str:
        made.append(new_id)
        return new_id

    first = state.handle("CreateSalesOrder", "R-1", create)
    again = state.handle("CreateSalesOrder", "R-1", create)
    reservation = state.handle("ReserveInventory", "R-1", create)
    assert first == (made[0], True)
    assert again == (made[0], False)
    assert reservation == (made[1], True)
    assert len(made) == 2


def test_demo_erp_fail_next_answers_server_faults_then_recovers() -> None:
    state = ErpState()
    state.fail_next("CreateSalesOrder", 2)
    for _ in range(2):
        with pytest.raises(Fault) as caught:
            state.handle("CreateSalesOrder", "R-1", lambda new_id: new_id)
        assert caught.value.faultcode == "Server.Unavailable"
    assert state.handle("CreateSalesOrder", "R-1", lambda new_id: new_id)[1] is True
    assert state.calls == [("CreateSalesOrder", "R-1")] * 3


def test_demo_erp_committed_wsdl_is_what_the_server_publishes() -> None:
    committed = (EXAMPLES / "soap-erp" / "demo-erp.wsdl").read_bytes()
    assert committed == generate_wsdl("http://127.0.0.1:8090/soap"), (
        "regenerate it: silobridge demo erp --write-wsdl mappings/examples/soap-erp/demo-erp.wsdl "
        "and copy it to silobridge_demo/config/examples/soap-erp/")


def test_demo_commands_come_from_the_demo_package_entry_point() -> None:
    parser = _parser()
    assert parser.parse_args(["demo", "crm"]).demo_command == "crm"
    args = parser.parse_args(["demo", "erp", "--port", "9999"])
    assert (args.demo_command, args.host, args.port) == ("erp", "127.0.0.1", 9999)
    args = parser.parse_args(["demo", "--rate", "3"])
    assert (args.demo_command, args.rate) == (None, 3.0)


def test_demo_erp_write_wsdl_uses_the_given_address(tmp_path: Path) -> None:
    target = tmp_path / "erp.wsdl"
    assert main(["demo", "erp", "--port", "18090", "--write-wsdl", str(target)]) == 0
    assert b'location="http://127.0.0.1:18090/soap"' in target.read_bytes()

"""The demo ERP's UpdateAccount: an account addressed by the id the ERP assigned, through zeep."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zeep import Client
from zeep.exceptions import Fault

from silobridge_demo.erp_server import DemoErpServer


@pytest.fixture
def erp() -> Iterator[DemoErpServer]:
    server = DemoErpServer(port=0).start()
    yield server
    server.stop()


def test_demo_erp_update_account_changes_only_the_given_fields(erp: DemoErpServer) -> None:
    service = Client(f"{erp.url}?wsdl").service
    created = service.UpsertAccount(RequestId="r-1", AccountNo="CRM-1", Name="Anna",
                                    Country="DE", Email="anna@example.com")
    answer = service.UpdateAccount(RequestId="r-2", AccountId=created.Id, Country="AT")
    assert (answer.Id, answer.Created) == (created.Id, False)
    account = dict(erp.state.accounts["CRM-1"])
    assert account.pop("ChangedAt")  # when it last changed: what its change event reports
    assert account == {"AccountId": created.Id, "AccountNo": "CRM-1", "Name": "Anna",
                       "Country": "AT", "Email": "anna@example.com", "CreditLimit": None,
                       "PaymentTerms": None}
    # an update numbers nothing: the next account gets the next id
    second = service.UpsertAccount(RequestId="r-3", AccountNo="CRM-2", Name="Bo")
    assert (created.Id, second.Id) == ("AC-000001", "AC-000002")


def test_demo_erp_update_account_of_an_unknown_id_is_a_client_fault(
    erp: DemoErpServer,
) -> None:
    service = Client(f"{erp.url}?wsdl").service
    with pytest.raises(Fault) as caught:
        service.UpdateAccount(RequestId="r-1", AccountId="AC-999999", Name="Nobody")
    assert caught.value.code.endswith("Client.UnknownAccount")
    assert erp.state.accounts == {}


def test_demo_erp_upsert_keeps_its_own_fields_and_reports_every_write(
    erp: DemoErpServer,
) -> None:
    changes: list[tuple[str, dict[str, object]]] = []
    erp.state.on_change = lambda action, account: changes.append((action, account))
    service = Client(f"{erp.url}?wsdl").service
    service.UpsertAccount(RequestId="r-1", AccountNo="C-1", Name="Anna", Country="DE",
                          Email="anna@example.com")
    erp.state.edit("C-1", CreditLimit="5000", PaymentTerms="NET30")  # a clerk's edit
    service.UpsertAccount(RequestId="r-2", AccountNo="C-1", Name="Anna B", Country="DE",
                          Email="anna@example.com")
    service.UpsertAccount(RequestId="r-2", AccountNo="C-1", Name="Anna B", Country="DE",
                          Email="anna@example.com")  # a resend: answered, not written again
    assert [(action, account["Name"], account["CreditLimit"]) for action, account in changes] == [
        ("create", "Anna", None), ("update", "Anna", "5000"), ("update", "Anna B", "5000")]
    assert (erp.state.account_writes, erp.state.idle_writes, erp.state.edits) == (2, 0, 1)

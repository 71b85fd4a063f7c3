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
    assert erp.state.accounts["CRM-1"] == {"AccountId": created.Id, "AccountNo": "CRM-1",
                                           "Name": "Anna", "Country": "AT",
                                           "Email": "anna@example.com"}
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

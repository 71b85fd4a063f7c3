"""The demo's two-way parts without a broker: the CRM taking silobridge's writes and reporting
every change, the ERP reporting its changes, the outbox posting them in order, and the closing
field-by-field comparison."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from middleware.http import ServerThread
from middleware.mapping import load_mapping
from silobridge_demo.compare import compare_customers
from silobridge_demo.crm import CrmEvents, DemoCrm
from silobridge_demo.erp import ErpState
from silobridge_demo.resources import config_path
from silobridge_demo.webhooks import Outbox
from tests.integration.helpers import wait_until

MAPPING = load_mapping(config_path().parent / "demo" / "customer-to-account.yaml")


def _crm_with_a_customer(monkeypatch: pytest.MonkeyPatch) -> tuple[DemoCrm, str, list[Any]]:
    crm = DemoCrm("http://127.0.0.1:9", port=0, secret="s")
    reported: list[Any] = []
    monkeypatch.setattr(crm.changes, "put", lambda payload, action, kind: reported.append(
        (payload, action, kind)))
    event = CrmEvents(seed=3).next()
    crm._record(event)  # as if the ingress had confirmed it
    return crm, event.payload["customer_no"], reported


def test_demo_crm_merges_a_write_reports_it_and_counts_an_unchanged_one_as_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm, number, reported = _crm_with_a_customer(monkeypatch)
    crm.server.start_and_wait()
    try:
        url = f"http://127.0.0.1:{crm.server.port}/api/customers/{number}"

        def patch(key: str, **fields: str) -> int:
            return httpx.patch(url, json=fields, headers={"Idempotency-Key": key}).status_code

        assert patch("w-1", credit_limit="5000", payment_terms="NET30") == 200
        assert patch("w-1", credit_limit="5000", payment_terms="NET30") == 200  # a resend
        assert patch("w-2", credit_limit="5000") == 200  # changes nothing: an echo written back
        assert httpx.patch(url.replace(number, "C-0"), json={}).status_code == 404
        record = crm.customers()[number]
        assert (record["credit_limit"], record["payment_terms"]) == ("5000", "NET30")
        assert record["name"].startswith("Demo Customer")  # fields it left out are kept
        sent = crm.counts()
        assert (sent.writes, sent.idle_writes) == (2, 1)
        # every write is reported as a change, the whole record, as an update
        assert [(payload["credit_limit"], action, kind)
                for payload, action, kind in reported] == [("5000", "update", "write")] * 2
    finally:
        crm.server.stop()


def test_demo_crm_edit_reports_the_changed_record_with_a_newer_change_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    crm, number, reported = _crm_with_a_customer(monkeypatch)
    before = crm.customers()[number]["updated_at"]
    assert number in crm.quiet(0.0) and number not in crm.quiet(60.0)
    crm.edit(number, email="new@customer.example")
    [(payload, action, kind)] = reported
    assert (payload["email"], action, kind) == ("new@customer.example", "update", "edit")
    assert payload["updated_at"] > before and len(payload["updated_at"]) > 20  # microseconds


def test_demo_erp_reports_writes_and_edits_in_order_and_counts_idle_writes() -> None:
    changes: list[tuple[str, dict[str, Any]]] = []
    state = ErpState(on_change=lambda action, account: changes.append((action, account)))
    state.accounts["C-1"] = {"AccountId": "AC-1", "AccountNo": "C-1", "CreditLimit": None,
                             "PaymentTerms": None}
    state.wrote("C-1", {"Name": "A", "Email": "a@x.example"}, created=True)
    state.edit("C-1", CreditLimit="5000", PaymentTerms="NET30")
    state.wrote("C-1", {"Name": "A", "Email": "a@x.example"}, created=False)
    assert [(action, account.get("Name"), account["CreditLimit"])
            for action, account in changes] == [
        ("create", "A", None), ("update", "A", "5000"), ("update", "A", "5000")]
    assert changes[0][1]["ChangedAt"] < changes[1][1]["ChangedAt"] < changes[2][1]["ChangedAt"]
    assert (state.account_writes, state.idle_writes, state.edits) == (2, 1, 1)


def test_demo_outbox_posts_changes_in_order_until_the_ingress_confirms() -> None:
    received: list[tuple[str, str]] = []
    refused = {"left": 1}
    lock = threading.Lock()

    async def ingress(request: Request) -> Response:
        body = orjson.loads(await request.body())
        assert request.headers["X-Signature"].startswith("sha256=")
        with lock:
            if refused["left"]:  # the first try finds the ingress busy
                refused["left"] -= 1
                return Response(status_code=503)
            received.append((body["n"], request.headers["X-ERP-Event"]))
        return Response(status_code=202)

    server = ServerThread(Starlette(routes=[Route("/in", ingress, methods=["POST"])]),
                          "127.0.0.1", 0, "test-ingress")
    server.start_and_wait()
    outbox = Outbox(f"http://127.0.0.1:{server.port}", "/in", "X-ERP-Event", "s", "t").start()
    try:
        for n in range(3):
            outbox.put({"n": str(n)}, "update", "change")
        assert not outbox.idle
        assert wait_until(lambda: outbox.idle, 10)
        assert received == [("0", "update"), ("1", "update"), ("2", "update")]
        assert (outbox.sent("change"), outbox.refused) == (3, 0)
    finally:
        outbox.close()
        server.stop()


def _customer(number: str, **fields: Any) -> dict[str, Any]:
    return {"customer_no": number, "name": f"N {number}", "country": "Germany",
            "email": f"{number}@x.example", "currency": "eur", **fields}


def _account(number: str, account_id: str, **fields: Any) -> dict[str, Any]:
    return {"AccountId": account_id, "AccountNo": number, "Name": f"N {number}",
            "Country": "DE", "Email": f"{number}@x.example", "CreditLimit": None,
            "PaymentTerms": None, "ChangedAt": "2026-12-01T07:00:00+00:00", **fields}


def test_demo_compare_finds_customers_that_differ_field_by_field_through_the_xref() -> None:
    crm = {"C-1": _customer("C-1", credit_limit="5000", payment_terms="NET30"),
           "C-2": _customer("C-2"), "C-3": _customer("C-3")}
    erp = {"C-1": _account("C-1", "AC-1", CreditLimit="5000", PaymentTerms="NET30"),
           "C-2": _account("C-2", "AC-2"), "C-3": _account("C-3", "AC-3")}
    links = {"C-1": "AC-1", "C-2": "AC-2", "C-3": "AC-3"}
    assert compare_customers(crm, erp, links.get, MAPPING) == []
    erp["C-2"] = _account("C-2", "AC-2", Email="old@x.example", CreditLimit="100")
    crm["C-3"] = _customer("C-3", country="France")
    assert compare_customers(crm, erp, links.get, MAPPING) == [
        "C-2: Email, CreditLimit differ", "C-3: Country differ"]
    # the link, not the number, says which account is the customer's
    swapped = {**links, "C-1": "AC-2", "C-2": "AC-1"}
    assert len(compare_customers(crm, erp, swapped.get, MAPPING)) == 3
    del links["C-3"]
    assert compare_customers(crm, erp, links.get, MAPPING)[-2:] == [
        "C-3: no linked ERP account", "ERP account AC-3: no CRM customer links to it"]

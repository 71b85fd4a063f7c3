"""The demo's parts without a broker: its config under compose and locally, the CRM's events and
signatures against what that config checks, and the closing count comparison."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import Headers

from adapters.rest.inbound_config import RestEndpointConfig
from adapters.rest.signatures import AuthError, SignedRequest, build_verifier
from middleware.config.loader import load_config
from middleware.errors import MappingError
from middleware.mapping import load_mapping
from middleware.validation import load_schema
from silobridge_demo.compare import TwoWay
from silobridge_demo.crm import SECRET_ENV, CrmEvents, DemoCrm, Sent, sign
from silobridge_demo.resources import config_path
from silobridge_demo.view import KINDS, Totals, render_summary

ROOT = Path(__file__).resolve().parents[2]
DEMO = config_path()
COMPOSE_ENV = {"AMQP_URL": "amqp://guest:guest@rabbitmq:5672/", "SILOBRIDGE_OPS_HOST": "0.0.0.0",
               "SILOBRIDGE_INGRESS_HOST": "0.0.0.0", "SILOBRIDGE_DATA": "/var/lib/silobridge",
               "ERP_URL": "http://erp:8090", "CRM_URL": "http://crm:8091",
               "INGRESS_URL": "http://ingress:8080"}


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*COMPOSE_ENV, "SILOBRIDGE_OPS_PORT", "SILOBRIDGE_INGRESS_PORT"]:
        monkeypatch.delenv(name, raising=False)


def test_demo_config_takes_container_values_from_the_compose_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _clear(monkeypatch)
    for name, value in COMPOSE_ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(DEMO).config
    assert config.broker.url == COMPOSE_ENV["AMQP_URL"]
    assert (config.ops.host, config.ingress.host) == ("0.0.0.0", "0.0.0.0")
    assert config.store.path == "/var/lib/silobridge/silobridge.db"
    assert {getattr(route.target, "address", None) for route in config.routes} == {
        "http://erp:8090/soap", None}
    assert {getattr(route.target, "url", None) for route in config.routes} == {
        "http://crm:8091/callbacks/shipments", "http://crm:8091/api/customers/{envelope.subject}",
        None}


def test_demo_config_defaults_run_everything_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear(monkeypatch)
    config = load_config(DEMO).config
    assert config.broker.url.startswith("amqp://guest:guest@127.0.0.1:5672")
    assert (config.ops.host, config.ops.port) == ("127.0.0.1", 9080)
    assert (config.ingress.host, config.ingress.port) == ("127.0.0.1", 8080)
    assert {getattr(route.target, "address", None) for route in config.routes} == {
        "http://127.0.0.1:8090/soap", None}
    assert [route.name for route in config.routes] == [
        "demo-customer-account", "demo-account-customer", "demo-order-sales-order",
        "demo-order-reservation", "demo-shipment-to-crm"]


def _endpoints(monkeypatch: pytest.MonkeyPatch) -> dict[str, RestEndpointConfig]:
    monkeypatch.setenv(SECRET_ENV, "unit-secret")
    sections = load_config(DEMO).config.inbound
    return {s.path: s for s in sections if isinstance(s, RestEndpointConfig)}


def test_demo_crm_signature_passes_the_demo_config_check_and_tampering_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for path, endpoint in _endpoints(monkeypatch).items():
        assert endpoint.auth is not None
        verifier = build_verifier(endpoint.auth, path)
        body, now = b'{"customer_no": "C-1"}', time.time()

        url = f"http://ingress{path}"
        verifier.verify(_request(url, body, sign(b"unit-secret", body, now)), now)
        with pytest.raises(AuthError):
            verifier.verify(_request(url, body + b" ", sign(b"unit-secret", body, now)), now)
        with pytest.raises(AuthError):
            verifier.verify(_request(url, body, sign(b"other-secret", body, now)), now)


def _request(url: str, body: bytes, headers: dict[str, str]) -> SignedRequest:
    return SignedRequest("POST", url, Headers(headers), {}, body)


def test_demo_crm_events_pass_the_ingress_schemas_and_only_bad_ones_fail_downstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoints = _endpoints(monkeypatch)
    schemas = {path: load_schema(DEMO.parent / str(e.json_schema)) for path, e in endpoints.items()}
    accounts = load_mapping(DEMO.parent / "demo" / "customer-to-account.yaml")
    events = CrmEvents(seed=7, bad_every=5)
    kinds: dict[tuple[str, bool], int] = {}
    for _ in range(200):
        event = events.next()
        events.accepted(event)
        kinds[(event.kind, event.bad)] = kinds.get((event.kind, event.bad), 0) + 1
        schemas[event.path](event.payload)
        if event.kind == "customer":
            if event.bad:
                with pytest.raises(MappingError):
                    accounts.apply(event.payload)
            else:
                assert accounts.apply(event.payload)["Country"]
        else:
            assert (event.payload["currency"] == "xxx") is event.bad
    assert set(kinds) == {("customer", False), ("customer", True), ("order", False),
                          ("order", True)}
    assert sum(n for (_, bad), n in kinds.items() if bad) == 200 // 5


TWO_WAY = TwoWay(crm_changes=12, erp_changes=4, both=2, erp_writes=12, crm_writes=4,
                 idle_writes=0, compared=9, echoes=16, conflicts=2)


def _totals(twoway: TwoWay | None = TWO_WAY, **changes: int) -> Totals:
    sent = Sent(customers=10, orders=20, bad_customers=1, bad_orders=2)
    records = {"accounts": 9, "sales_orders": 18, "reservations": 20, "shipments": 15}
    delivered: dict[str, float | None] = {"accounts": 9.0, "sales_orders": 18.0,
                                          "reservations": 20.0, "shipments": 15.0}
    dead: dict[str, int | None] = {"accounts": 1, "sales_orders": 2, "reservations": 0,
                                   "shipments": 0}
    for key, value in changes.items():
        kind, _, what = key.partition("__")
        if what == "records":
            records[kind] = value
        elif what == "delivered":
            delivered[kind] = value
        else:
            dead[kind] = value
    return Totals(sent, 15, records, delivered, dead, twoway)


def test_demo_totals_match_only_when_sent_delivered_recorded_and_dead_agree() -> None:
    assert _totals().consistent
    assert "result: counts match" in render_summary(_totals())
    assert not _totals(sales_orders__records=17).consistent
    assert not _totals(reservations__delivered=21).consistent
    assert not _totals(shipments__records=14).consistent
    assert not _totals(accounts__dead=0).consistent
    assert not _totals(accounts__records=8).consistent
    assert "MISMATCH" in render_summary(_totals(accounts__dead=0))


def test_demo_totals_need_the_two_way_check_to_pass() -> None:
    assert not _totals(twoway=None).consistent
    for wrong in (TwoWay(12, 4, 2, 13, 4, 0, 9), TwoWay(12, 4, 2, 12, 3, 0, 9),
                  TwoWay(12, 4, 2, 12, 4, 1, 9), TwoWay(12, 4, 2, 12, 4, 0, 9, ["C-1: Email"]),
                  TwoWay(12, 0, 0, 12, 1, 0, 9), TwoWay(12, 4, 2, 12, 4, 0, 0),
                  TwoWay(0, 0, 0, 0, 0, 0, 9)):
        assert not _totals(twoway=wrong).consistent, wrong
    # stopped before any ERP user edited: nothing to write into the CRM, nothing written
    assert _totals(twoway=TwoWay(12, 0, 0, 12, 0, 0, 9)).consistent
    summary = render_summary(_totals())
    assert "writes: into the ERP 12 = 1.00 per CRM change, into the CRM 4 = 1.00 per ERP " \
           "change; writes that changed nothing (echoes written back) 0" in summary
    assert "9 customers compared, 0 mismatches" in summary
    assert "result: counts match" in summary


def test_demo_totals_are_not_consistent_when_events_were_refused_or_none_sent() -> None:
    kinds = ("accounts", *KINDS)
    refused = Totals(Sent(refused=5), 0, dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0.0),
                     dict.fromkeys(kinds, 0), TwoWay(0, 0, 0, 0, 0, 0, 0))
    assert not refused.consistent  # every count is 0 and "matches", yet nothing got through
    assert "refused by the ingress: 5" in render_summary(refused)


def test_demo_crm_counts_a_repeated_callback_once() -> None:
    crm = DemoCrm("http://127.0.0.1:9", port=0, secret="s")
    crm.server.start_and_wait()  # the callback server only; nothing is sent
    try:
        url = f"http://127.0.0.1:{crm.server.port}/callbacks/shipments"
        for key in ("env-1", "env-1", "env-2"):  # env-1 again: retried after a lost answer
            assert httpx.post(url, json={}, headers={"Idempotency-Key": key}).status_code == 204
        assert crm.counts().callbacks == {"shipments": 2}
    finally:
        crm.server.stop()
